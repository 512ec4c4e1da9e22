"""Checkpoint and resume: Orbax and flax.serialization, bit for bit."""

from conftest import count_compilations
from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import anon_optax

SAVE_AFTER = 5  # Mid-way, before the refresh at step 8.
TOTAL = 12


def _params():
  return {
    "w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(4, 3),
    "emb": jnp.linspace(0.5, 1.5, 6, dtype=jnp.float32).astype(jnp.bfloat16),
  }


def _tx():
  # Schedules and a wrapper give the state more than Anon's own counters.
  schedule = optax.linear_schedule(1e-2, 1e-3, TOTAL)
  return optax.chain(
    optax.clip_by_global_norm(5.0),
    anon_optax.anon(schedule, gamma=1.1, weight_decay=1e-2, weight_decay_mode="decoupled"),
  )


def _grads(step, params):
  rng = np.random.default_rng(step)
  return jax.tree.map(
    lambda p: (jnp.asarray(rng.normal(size=p.shape), jnp.float32) + p.astype(jnp.float32)).astype(
      p.dtype
    ),
    params,
  )


@jax.jit
def _step(params, state, grads):
  updates, state = _tx().update(grads, state, params)
  return optax.apply_updates(params, updates), state


def _train(params, state, first, last):
  history = []
  for step in range(first, last):
    params, state = _step(params, state, _grads(step, params))
    history.append((params, state))
  return params, state, history


def _assert_bitwise(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert a.dtype == e.dtype and a.shape == e.shape
    np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def _orbax_round_trip(directory, tree):
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(directory, tree)
  checkpointer.wait_until_finished()
  # Restore into a fresh template (what a new process would build).
  template = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
  return checkpointer.restore(directory, template)


def _flax_bytes_round_trip(tree, template):
  return serialization.from_bytes(template, serialization.to_bytes(tree))


def _flax_state_dict_round_trip(tree, template):
  state_dict = serialization.to_state_dict(tree)
  assert "num_refreshes" in str(state_dict)  # Named fields, not positions.
  return serialization.from_state_dict(template, state_dict)


@pytest.mark.parametrize("method", ["orbax", "flax_bytes", "flax_state_dict"])
def test_resume_before_refresh_is_bit_for_bit(method, tmp_path):
  params = _params()
  state = _tx().init(params)
  _, _, uninterrupted = _train(params, state, 0, TOTAL)

  params, state, _ = _train(params, state, 0, SAVE_AFTER)
  saved_state = optax.tree.get(state, "ScaleByAnonState")
  assert int(saved_state.count) == SAVE_AFTER
  assert int(saved_state.next_refresh) == 8
  tree = {"params": params, "opt_state": state}
  fresh = {"params": _params(), "opt_state": _tx().init(_params())}
  if method == "orbax":
    restored = _orbax_round_trip(tmp_path / "checkpoint", tree)
  elif method == "flax_bytes":
    restored = _flax_bytes_round_trip(tree, fresh)
  else:
    restored = _flax_state_dict_round_trip(tree, fresh)
  _assert_bitwise(restored, tree)
  assert isinstance(
    optax.tree.get(restored["opt_state"], "ScaleByAnonState"), anon_optax.ScaleByAnonState
  )

  # Resume across the refresh at step 8: every later step is bit-identical.
  _, _, resumed = _train(restored["params"], restored["opt_state"], SAVE_AFTER, TOTAL)
  for got, want in zip(resumed, uninterrupted[SAVE_AFTER:]):
    _assert_bitwise(got, want)
  final_state = optax.tree.get(resumed[-1][1], "ScaleByAnonState")
  assert int(final_state.num_refreshes) == 4  # Steps 1, 2, 4 and 8.
  assert int(final_state.next_refresh) == 16


def test_restoring_into_another_refresh_base_follows_the_documented_schedule():
  # Defined behaviour (docs/algorithm.md, "changing refresh_base"): the state
  # carries next_refresh; that pending refresh happens, and the new base's
  # rule a_{k+1} = a_k + (base - 1) a_k continues from it. Saved at count 10
  # with base 2 (refreshes 1, 2, 4, 8; next 16), restored with base 3:
  # refreshes at 16, 48 and 144.
  params = jnp.array([1.0, -2.0, 0.5])
  grads = jnp.array([0.3, -0.1, 2.0])
  # The powers of the base alone (the default also caps the gap at 256 steps).
  uncapped = dict(max_refresh_interval=None)
  old_tx, new_tx = (
    anon_optax.anon(1e-3, **uncapped),
    anon_optax.anon(1e-3, refresh_base=3, **uncapped),
  )
  state = old_tx.init(params)
  old_update, new_update = jax.jit(old_tx.update), jax.jit(new_tx.update)
  for _ in range(10):
    _, state = old_update(grads, state, params)
  assert int(optax.tree.get(state, "next_refresh")) == 16
  refresh_steps = []
  for _ in range(150):
    before = int(optax.tree.get(state, "num_refreshes"))
    _, state = new_update(grads, state, params)
    if int(optax.tree.get(state, "num_refreshes")) > before:
      refresh_steps.append(int(optax.tree.get(state, "count")))
  assert refresh_steps == [16, 48, 144]
  assert int(optax.tree.get(state, "next_refresh")) == 432


def test_orbax_restore_of_inject_hyperparams_does_not_recompile(tmp_path):
  # The documented recipe: refresh_base and max_refresh_interval are
  # structural, so they are static_args of inject_hyperparams and not in the
  # state. (Injected, the int refresh_base is stored weakly typed and comes
  # back from Orbax strongly typed: a second compilation of the step.)
  tx = optax.inject_hyperparams(
    anon_optax.anon,
    static_args=("refresh_base", "max_refresh_interval"),
    hyperparam_dtype=jnp.float32,
  )(learning_rate=1e-2, gamma=1.1, refresh_base=3)
  # Committed to a device, as Orbax restores them: uncommitted arrays would
  # give a second compilation for that difference alone.
  params = jax.device_put(_params(), jax.devices()[0])
  state = jax.device_put(tx.init(params), jax.devices()[0])
  assert "refresh_base" not in state.hyperparams
  step = jax.jit(tx.update)
  for i in range(4):
    _, state = step(_grads(i, params), state, params)
  restored = _orbax_round_trip(tmp_path / "checkpoint", state)
  _assert_bitwise(restored, state)
  with count_compilations() as compilations:
    for i in range(4, 10):
      _, restored = step(_grads(i, params), restored, params)
  assert compilations == []
  assert int(optax.tree.get(restored, "num_refreshes")) == 3  # 1, 3, 9.


def test_orbax_restore_of_injected_int_refresh_base_changes_its_type(tmp_path):
  # Why the recipe above: without static_args the weak int32 comes back
  # strongly typed, and the jitted step compiles once more. If this starts
  # failing (Orbax or Optax keep weak types), the recipe is no longer needed.
  tx = optax.inject_hyperparams(anon_optax.anon)(learning_rate=1e-2, refresh_base=3)
  params = jax.device_put(_params(), jax.devices()[0])
  state = jax.device_put(tx.init(params), jax.devices()[0])
  assert state.hyperparams["refresh_base"].weak_type
  step = jax.jit(tx.update)
  for i in range(2):
    _, state = step(_grads(i, params), state, params)
  restored = _orbax_round_trip(tmp_path / "checkpoint", state)
  with count_compilations() as compilations:
    _, restored = step(_grads(2, params), restored, params)
  assert compilations
