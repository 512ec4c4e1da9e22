"""Tests of `anon_optax.preconditioner_stats`, the logging helper."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax


def _params():
  return {
    "dense": {"kernel": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "bias": jnp.zeros(4)},
    "scale": jnp.ones(5),
  }


def _grads(step):
  rng = np.random.default_rng(step)
  return jax.tree.map(
    lambda p: jnp.asarray(
      rng.normal(size=p.shape) * 10.0 ** rng.uniform(-2, 1, size=p.shape), p.dtype
    ),
    _params(),
  )


def _run(tx, steps, params=None):
  params = _params() if params is None else params
  state = tx.init(params)
  update = jax.jit(tx.update)
  for step in range(steps):
    updates, state = update(_grads(step), state, params)
    params = optax.apply_updates(params, updates)
  return state


def _expected(anon_state, prefix=""):
  """The stats computed independently in NumPy from the state's fields."""
  leaves = {
    "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): np.asarray(v)
    for path, v in jax.tree_util.tree_leaves_with_path(anon_state.precond)
  }
  expected = {}
  for name, v in leaves.items():
    expected[f"{prefix}v_min/{name}"] = v.min()
    expected[f"{prefix}v_median/{name}"] = np.median(v)
    expected[f"{prefix}v_max/{name}"] = v.max()
  every_v = np.concatenate([v.ravel() for v in leaves.values()])
  expected[f"{prefix}v_min"] = every_v.min()
  expected[f"{prefix}v_median"] = np.median(every_v)
  expected[f"{prefix}v_max"] = every_v.max()
  expected[f"{prefix}num_refreshes"] = int(anon_state.num_refreshes)
  expected[f"{prefix}count"] = int(anon_state.count)
  expected[f"{prefix}next_refresh"] = int(anon_state.next_refresh)
  return expected


def _assert_stats_equal(stats, expected):
  assert set(stats) == set(expected)
  for key, value in expected.items():
    np.testing.assert_allclose(np.asarray(stats[key]), value, rtol=1e-6, err_msg=key)
    assert np.asarray(stats[key]).shape == (), key


def test_values_match_numpy_for_anon_in_a_chain():
  state = _run(
    optax.chain(optax.clip_by_global_norm(1.0), anon_optax.anon(1e-2, gamma=1.1)), steps=6
  )
  anon_state = optax.tree.get(state, "ScaleByAnonState")
  stats = anon_optax.preconditioner_stats(state)
  _assert_stats_equal(stats, _expected(anon_state))
  # After 6 steps: refreshes at 1, 2, 4; the next at 8.
  assert int(stats["num_refreshes"]) == 3
  assert int(stats["count"]) == 6
  assert int(stats["next_refresh"]) == 8
  # The preconditioner is not trivial here, so min < median < max.
  assert stats["v_min"] < stats["v_median"] < stats["v_max"]


def test_finds_scale_by_idu_state_and_uses_param_paths():
  state = _run(optax.chain(optax.trace(0.9), anon_optax.scale_by_idu()), 3)
  stats = anon_optax.preconditioner_stats(state)
  idu_state = state[1]
  assert isinstance(idu_state, anon_optax.ScaleByIDUState)
  _assert_stats_equal(stats, _expected(idu_state))
  assert "v_max/dense/kernel" in stats and "v_median/scale" in stats


def test_single_array_params_give_global_keys_only():
  params = jnp.array([1.0, -2.0, 3.0])
  tx = anon_optax.scale_by_anon()
  state = tx.init(params)
  _, state = tx.update(jnp.array([0.5, -4.0, 2.0]), state)
  stats = anon_optax.preconditioner_stats(state)
  assert set(stats) == {"v_min", "v_median", "v_max", "num_refreshes", "count", "next_refresh"}
  # First refresh at gamma = 1: v = 1 / |g| (eps is negligible).
  np.testing.assert_allclose(
    [stats["v_min"], stats["v_median"], stats["v_max"]], [0.25, 0.5, 2.0], rtol=1e-6
  )


@pytest.mark.parametrize("wrapper", ["inject_hyperparams", "multi_steps"])
def test_finds_the_state_inside_wrappers(wrapper):
  if wrapper == "inject_hyperparams":
    tx = optax.inject_hyperparams(anon_optax.anon)(learning_rate=1e-2, gamma=1.1)
    state = _run(tx, 5)
    anon_state = state.inner_state[1]
    expected_count = 5
  else:
    tx = optax.MultiSteps(anon_optax.anon(1e-2), every_k_schedule=2)
    state = _run(tx, 5)
    anon_state = state.inner_opt_state[1]
    expected_count = 2  # Two real optimizer steps after five micro-steps.
  assert isinstance(anon_state, anon_optax.ScaleByAnonState)
  stats = anon_optax.preconditioner_stats(state)
  _assert_stats_equal(stats, _expected(anon_state))
  assert int(stats["count"]) == expected_count


def test_multi_transform_prefixes_each_group():
  labels = {"dense": {"kernel": "matrix", "bias": "vector"}, "scale": "vector"}
  tx = optax.multi_transform(
    {"matrix": anon_optax.anon(1e-2, gamma=1.1), "vector": anon_optax.anon(1e-2, gamma=0.0)},
    labels,
  )
  state = _run(tx, 4)
  stats = anon_optax.preconditioner_stats(state)
  matrix_state = state.inner_states["matrix"].inner_state[1]
  vector_state = state.inner_states["vector"].inner_state[1]
  matrix_prefix = "inner_states/matrix/inner_state/1/"
  vector_prefix = "inner_states/vector/inner_state/1/"
  assert set(stats) == (
    set(_expected(matrix_state, matrix_prefix)) | set(_expected(vector_state, vector_prefix))
  )
  _assert_stats_equal(
    {k: v for k, v in stats.items() if k.startswith(matrix_prefix)},
    _expected(matrix_state, matrix_prefix),
  )
  # Only the kernel is in the matrix group; gamma = 0 gives v == 1 exactly.
  assert f"{matrix_prefix}v_max/dense/kernel" in stats
  assert f"{matrix_prefix}v_max/dense/bias" not in stats
  assert float(stats[f"{vector_prefix}v_min"]) == 1.0
  assert float(stats[f"{vector_prefix}v_max"]) == 1.0


def test_jittable_and_agrees_with_eager():
  state = _run(anon_optax.anon(1e-2, gamma=2.0), 5)
  eager = anon_optax.preconditioner_stats(state)
  jitted = jax.jit(anon_optax.preconditioner_stats)(state)
  assert set(eager) == set(jitted)
  for key in eager:
    np.testing.assert_array_equal(np.asarray(eager[key]), np.asarray(jitted[key]), err_msg=key)


def test_state_without_anon_raises():
  state = optax.adam(1e-3).init(_params())
  with pytest.raises(ValueError, match="ScaleByAnonState"):
    anon_optax.preconditioner_stats(state)


def test_zero_size_leaf_is_left_out():
  # A zero-size array has no minimum, median or maximum: no entries of its
  # own, and the global entries are those of the other arrays. (Before, the
  # reductions raised "zero-size array to reduction operation".)
  params = dict(_params(), empty=jnp.zeros((0, 3)))
  tx = anon_optax.anon(1e-2, gamma=1.1)
  state = tx.init(params)
  grads = dict(_grads(0), empty=jnp.zeros((0, 3)))
  _, state = tx.update(grads, state, params)
  for stats in (
    anon_optax.preconditioner_stats(state),
    jax.jit(anon_optax.preconditioner_stats)(state),
  ):
    assert not any(key.endswith("/empty") for key in stats)
    without_empty = optax.tree.get(state, "ScaleByAnonState")
    without_empty = without_empty._replace(
      precond={k: v for k, v in without_empty.precond.items() if k != "empty"}
    )
    _assert_stats_equal(stats, _expected(without_empty))


@pytest.mark.parametrize("params", [jnp.zeros((0,)), {"a": jnp.zeros((2, 0)), "b": jnp.zeros(0)}])
def test_all_empty_leaves_give_nan(params):
  tx = anon_optax.scale_by_idu()
  state = tx.init(params)
  _, state = tx.update(params, state)
  stats = jax.jit(anon_optax.preconditioner_stats)(state)
  assert set(stats) == {"v_min", "v_median", "v_max", "num_refreshes", "count", "next_refresh"}
  for key in ("v_min", "v_median", "v_max"):
    assert np.isnan(stats[key]), key
  assert int(stats["count"]) == 1
