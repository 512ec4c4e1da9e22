"""Checkpoint and resume: Orbax and flax.serialization, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import serialization

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
      anon_optax.anon(schedule, gamma=1.1, weight_decay=1e-2,
                      weight_decay_mode="decoupled"),
  )


def _grads(step, params):
  rng = np.random.default_rng(step)
  return jax.tree.map(
      lambda p: (jnp.asarray(rng.normal(size=p.shape), jnp.float32)
                 + p.astype(jnp.float32)).astype(p.dtype), params)


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
  assert isinstance(optax.tree.get(restored["opt_state"], "ScaleByAnonState"),
                    anon_optax.ScaleByAnonState)

  # Resume across the refresh at step 8: every later step is bit-identical.
  _, _, resumed = _train(restored["params"], restored["opt_state"],
                         SAVE_AFTER, TOTAL)
  for got, want in zip(resumed, uninterrupted[SAVE_AFTER:]):
    _assert_bitwise(got, want)
  final_state = optax.tree.get(resumed[-1][1], "ScaleByAnonState")
  assert int(final_state.num_refreshes) == 4  # Steps 1, 2, 4 and 8.
  assert int(final_state.next_refresh) == 16
