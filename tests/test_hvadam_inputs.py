"""HVAdam off the happy path: dtypes, leaves, validation, low-precision hyperparameters.

Each test here failed on the implementation before issue 12's fixes: updates in
the gradient's dtype (integer gradients truncated to zero updates), Python
float leaves rejected, hyperparameters of the wrong type or shape accepted or
failing late with unrelated messages, a negative gamma giving NaN, and the
scalar arithmetic done in the hyperparameters' (bfloat16) dtype under
`optax.inject_hyperparams`.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax

FLOAT_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
PARAM_DTYPES = FLOAT_DTYPES + (jnp.complex64,)
GRAD_DTYPES = FLOAT_DTYPES + (jnp.complex64, jnp.int32)


def _tree(dtype, values=(0.5, -1.5, 2.0)):
  return {"w": jnp.asarray(np.reshape(values, (3, 1)), dtype), "b": jnp.asarray(values[0], dtype)}


def _first_update(tx, param_dtype, grad_dtype):
  params = _tree(param_dtype)
  grads = _tree(grad_dtype, values=(1, -2, 3))
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


# --------------------------------------------------------------------------
# Dtypes and leaves.


@pytest.mark.parametrize("grad_dtype", GRAD_DTYPES)
@pytest.mark.parametrize("param_dtype", PARAM_DTYPES)
def test_update_dtype_is_adams(param_dtype, grad_dtype):
  if jnp.issubdtype(grad_dtype, jnp.complexfloating) and not jnp.issubdtype(
    param_dtype, jnp.complexfloating
  ):
    pytest.skip("complex gradients of real parameters: see the test below")
  expected = _first_update(optax.adam(1e-2), param_dtype, grad_dtype)
  updates = _first_update(anon_optax.hvadam(1e-2, gamma=0.5), param_dtype, grad_dtype)
  chex.assert_trees_all_equal_dtypes(updates, expected)
  # Integer gradients used to be cast back to int: zero updates.
  for leaf in jax.tree.leaves(updates):
    assert np.all(np.abs(np.asarray(leaf, np.complex64)) > 0)


def test_update_dtype_is_adams_in_float64():
  with jax.enable_x64(True):
    for param_dtype in (jnp.float64, jnp.float32, jnp.complex128):
      for grad_dtype in (jnp.float64, jnp.float32, jnp.bfloat16, jnp.int64):
        expected = _first_update(optax.adam(1e-2), param_dtype, grad_dtype)
        updates = _first_update(anon_optax.hvadam(1e-2), param_dtype, grad_dtype)
        chex.assert_trees_all_equal_dtypes(updates, expected)


def test_complex_gradients_of_real_parameters_raise():
  tx = anon_optax.hvadam(1e-2)
  params = _tree(jnp.float32)
  with pytest.raises(TypeError, match="complex gradients for real"):
    tx.update(_tree(jnp.complex64), tx.init(params), params)


def test_scale_by_hvadam_without_params_keeps_the_gradient_dtype():
  tx = anon_optax.scale_by_hvadam()
  state = tx.init(_tree(jnp.float32))
  updates, _ = tx.update(_tree(jnp.bfloat16), state)
  chex.assert_trees_all_equal_dtypes(updates, _tree(jnp.bfloat16))
  # Integer gradients: the statistics' dtype, not a truncation to zero.
  updates, _ = tx.update(_tree(jnp.int32, values=(1, -2, 3)), state)
  chex.assert_trees_all_equal_dtypes(updates, _tree(jnp.float32))
  chex.assert_trees_all_close(updates, _tree(jnp.float32, (0.9, -0.9, 0.9)), rtol=1e-5)


def test_python_float_leaves_work_like_arrays():
  tx = anon_optax.hvadam(0.1, gamma=0.5)
  as_floats = {"a": 1.0, "b": [2.0, -3.0]}
  as_arrays = jax.tree.map(jnp.asarray, as_floats)
  expected = jax.tree.map(
    jnp.asarray, optax.adam(0.1).update(as_floats, optax.adam(0.1).init(as_floats), as_floats)[0]
  )
  state_f, state_a = tx.init(as_floats), tx.init(as_arrays)
  params_f, params_a = as_floats, as_arrays
  for step in range(4):
    grads_f = {"a": 1.0 + step, "b": [0.5, -0.25 * step]}
    updates_f, state_f = tx.update(grads_f, state_f, params_f)
    updates_a, state_a = tx.update(jax.tree.map(jnp.asarray, grads_f), state_a, params_a)
    chex.assert_trees_all_equal_dtypes(updates_f, expected)
    chex.assert_trees_all_close(updates_f, updates_a)
    params_f = optax.apply_updates(params_f, updates_f)
    params_a = optax.apply_updates(params_a, updates_a)


def test_integer_parameters_raise():
  with pytest.raises(TypeError, match="floating-point or complex"):
    anon_optax.hvadam(0.1).init({"w": jnp.arange(3)})


# --------------------------------------------------------------------------
# Validation at construction.


@pytest.mark.parametrize(
  "kwargs,error,match",
  [
    ({"gamma": None}, TypeError, "`gamma` must be a real number"),
    ({"gamma": "1.1"}, TypeError, "`gamma` must be a real number"),
    ({"b1": "0.9"}, TypeError, r"`b1` must be a real number in \[0, 1\)"),
    ({"b2": None}, TypeError, "`b2`"),
    ({"eps": True}, TypeError, "`eps`"),
    ({"gamma": 1.0 + 0.5j}, TypeError, "`gamma`"),
    ({"gamma": jnp.array([0.0, 1.0])}, ValueError, r"`gamma` .*shape \(2,\)"),
    ({"b1": np.full((1,), 0.9)}, ValueError, r"`b1` .*shape \(1,\)"),
    ({"gamma": jnp.array(jnp.nan)}, ValueError, "`gamma`"),
    ({"gamma": np.float32("nan")}, ValueError, "`gamma`"),
    ({"gamma": np.array(float("nan"))}, ValueError, "`gamma`"),
    ({"b2": jnp.array(1.0)}, ValueError, r"`b2` must be a real number in \[0, 1\)"),
    ({"eps": float("inf")}, ValueError, "`eps`"),
    ({"gamma": -1.0}, ValueError, r"`gamma` must be a real number in \[0, inf\)"),
    ({"gamma": -0.01}, ValueError, r"-b1\*\*2"),
    ({"gamma": jnp.array(-0.5)}, ValueError, "`gamma`"),
  ],
)
def test_invalid_hyperparameters_raise_at_construction(kwargs, error, match):
  with pytest.raises(error, match=match):
    anon_optax.scale_by_hvadam(**kwargs)
  with pytest.raises(error, match=match):
    anon_optax.hvadam(1e-2, **kwargs)


@pytest.mark.parametrize(
  "kwargs,error,match",
  [
    ({"learning_rate": "0.1"}, TypeError, "`learning_rate`"),
    ({"learning_rate": jnp.ones(2)}, ValueError, "`learning_rate`"),
    ({"weight_decay": None}, TypeError, "`weight_decay`"),
    ({"weight_decay": "0.1"}, TypeError, "`weight_decay`"),
  ],
)
def test_invalid_optimizer_arguments_raise(kwargs, error, match):
  with pytest.raises(error, match=match):
    anon_optax.hvadam(**{"learning_rate": 1e-2, **kwargs})


@pytest.mark.parametrize(
  "kwargs",
  [
    {"gamma": 0.0},
    {"gamma": jnp.asarray(2.0)},
    {"gamma": np.float32(0.5)},
    {"b1": np.float64(0.0)},
    {"eps": 0},
    {"gamma": optax.linear_schedule(1.0, 0.0, 10)},
  ],
)
def test_valid_hyperparameters_are_accepted(kwargs):
  tx = anon_optax.hvadam(1e-2, **kwargs)
  params = _tree(jnp.float32)
  updates, _ = tx.update(_tree(jnp.float32), tx.init(params), params)
  chex.assert_tree_all_finite(updates)


def _two_steps_with_traced_gamma(gamma):
  """g1 = 1, then g2 = (1 - b1) g1: q = 0 < r at the second step."""
  tx = anon_optax.scale_by_hvadam(gamma=gamma)
  params = {"w": jnp.zeros(3)}
  state = tx.init(params)
  outs = []
  for scale in (1.0, 0.1):
    updates, state = tx.update({"w": jnp.full(3, scale)}, state)
    outs.append(updates["w"])
  return outs


def test_negative_gamma_is_unstable_so_the_range_is_tight():
  """Traced values pass unchecked; this shows why concrete ones are not.

  At the second step the gradient equals the previous momentum, so q = 0 and
  the weighting's denominator is gamma r + eps < 0 for any gamma < 0: here the
  second moment turns negative and the step NaN (gamma = -0.01).
  """
  run = jax.jit(_two_steps_with_traced_gamma)
  first, second = run(jnp.float32(-0.01))
  chex.assert_tree_all_finite(first)
  assert np.all(np.isnan(second))
  chex.assert_tree_all_finite(run(jnp.float32(0.0)))
  # gamma < -b1**2 = -0.81: NaN at the first step already.
  first, _ = run(jnp.float32(-0.9))
  assert np.all(np.isnan(first))


def test_traced_hyperparameters_pass_unchecked():
  def first_update(b1, gamma):
    tx = anon_optax.hvadam(1e-2, b1=b1, gamma=gamma)
    params = _tree(jnp.float32)
    return tx.update(_tree(jnp.float32), tx.init(params), params)[0]

  swept = jax.jit(jax.vmap(first_update))(jnp.array([0.8, 0.9]), jnp.array([0.0, 1.0]))
  chex.assert_tree_all_finite(swept)


@pytest.mark.parametrize(
  "grads,match",
  [
    ({"w": jnp.ones((3, 1))}, "structure"),
    ({"w": jnp.ones((3, 1)), "b": jnp.ones(()), "c": jnp.ones(2)}, "structure"),
    ({"w": jnp.ones((1, 3)), "b": jnp.ones(())}, r"\['w'\] has shape \(1, 3\)"),
  ],
)
def test_mismatched_gradients_raise(grads, match):
  tx = anon_optax.hvadam(1e-2)
  params = _tree(jnp.float32)
  with pytest.raises(ValueError, match=match):
    tx.update(grads, tx.init(params), params)


def test_mismatched_params_raise():
  tx = anon_optax.scale_by_hvadam()
  params = _tree(jnp.float32)
  with pytest.raises(ValueError, match="parameters passed to update"):
    tx.update(params, tx.init(params), {"w": params["w"]})


# --------------------------------------------------------------------------
# inject_hyperparams with bfloat16 parameters.


def _bf16_run(tx, num_steps=12, grad_dtype=jnp.bfloat16):
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(16,)), jnp.bfloat16)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  all_updates = []
  for _ in range(num_steps):
    grads = {"w": jnp.asarray(rng.normal(size=(16,)), grad_dtype)}
    updates, state = update(grads, state, params)
    all_updates.append(updates)
    params = optax.apply_updates(params, updates)
  return params, all_updates


def test_inject_hyperparams_float32_with_bfloat16_params():
  tx = optax.inject_hyperparams(anon_optax.hvadam, hyperparam_dtype=jnp.float32)(1e-2, gamma=0.5)
  params, _ = _bf16_run(tx, num_steps=30)
  chex.assert_tree_all_finite(params)
  start = _bf16_run(tx, num_steps=0)[0]
  assert not np.allclose(np.asarray(params["w"], np.float32), np.asarray(start["w"], np.float32))


def test_bfloat16_hyperparameters_do_not_make_the_arithmetic_bfloat16():
  """With bfloat16 b1, b2 and gamma, HVAdam computes in float32.

  The hyperparameters below are exact in bfloat16, so the injected optimizer
  must give the float32 updates of the plain one: no `1 - b2**t` in bfloat16.
  """
  values = {"b1": 0.875, "b2": 0.9921875, "gamma": 0.5, "eps": 2.0**-30}
  for value in values.values():
    assert float(jnp.bfloat16(value)) == value
  plain = anon_optax.hvadam(0.0078125, **values)
  injected = optax.inject_hyperparams(anon_optax.hvadam)(0.0078125, **values)
  state = injected.init({"w": jnp.zeros(2, jnp.bfloat16)})
  assert state.hyperparams["b2"].dtype == jnp.bfloat16
  # float32 gradients: float32 updates, which show the arithmetic's precision.
  _, expected = _bf16_run(plain, grad_dtype=jnp.float32)
  _, got = _bf16_run(injected, grad_dtype=jnp.float32)
  chex.assert_trees_all_equal_dtypes(got, expected)
  chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-7)
