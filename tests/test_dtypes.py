"""Dtypes and leaves off the float32 path: update dtypes as optax.adam's,
Python float leaves, a zero gradient at a refresh with a large gamma, and
inject_hyperparams with bfloat16 parameters.

float32 parameters with bfloat16 gradients give float32 updates (as Adam's), and
integer gradients floating updates that are not zero; a Python float leaf works;
a zero gradient at a refresh with gamma >= 4.9 (or eps <= 1e-38, or eps = 0)
keeps the preconditioner finite, so the parameter does not become 0 * inf = NaN.
"""

from conftest import UPDATE_DTYPE_PAIRS
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax


def _update(tx, param_dtype, grad_dtype, jit):
  params = jnp.array([1.0, -2.0, 3.0]).astype(param_dtype)
  grads = jnp.array([1, -2, 0]).astype(grad_dtype)
  update = jax.jit(tx.update) if jit else tx.update
  state = tx.init(params)
  updates, state = update(grads, state, params)
  updates, _ = update(grads, state, params)
  return updates


@pytest.mark.parametrize("param_dtype, grad_dtype", UPDATE_DTYPE_PAIRS)
def test_update_dtype_is_adams(param_dtype, grad_dtype):
  expected = _update(optax.adam(1e-2), param_dtype, grad_dtype, jit=True).dtype
  for exact in (False, True):
    got = _update(anon_optax.anon(1e-2, exact=exact), param_dtype, grad_dtype, jit=True)
    assert got.dtype == expected, (exact, got.dtype, expected)
    assert bool(jnp.all(jnp.isfinite(got)))
  # Integer gradients are not silently zero: the nonzero ones move.
  assert bool(jnp.any(got != 0))


def test_update_dtype_is_adams_float64(x64):
  for param_dtype in (jnp.float64, jnp.float32):
    for grad_dtype in (jnp.float64, jnp.float32, jnp.int32):
      expected = _update(optax.adam(1e-2), param_dtype, grad_dtype, True).dtype
      got = _update(anon_optax.anon(1e-2), param_dtype, grad_dtype, True)
      assert got.dtype == expected, (param_dtype, grad_dtype)


def test_scale_by_idu_gives_floating_output_for_integer_input():
  tx = anon_optax.scale_by_idu()
  params = jnp.ones(3)
  state = tx.init(params)
  updates, _ = tx.update(jnp.array([1, -2, 4], jnp.int32), state)
  assert jnp.issubdtype(updates.dtype, jnp.floating)
  # First refresh at gamma = 1: v = 1/|u|, so the output is the sign.
  np.testing.assert_allclose(updates, [1.0, -1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_python_float_leaf_works_like_adam(jit):
  params = {"scale": 2.0, "w": jnp.array([1.0, -1.0])}
  results = {}
  for name, tx in (("adam", optax.adam(1e-1)), ("anon", anon_optax.anon(1e-1))):
    p = params
    state = tx.init(p)
    update = jax.jit(tx.update) if jit else tx.update
    for step in range(5):
      grads = {"scale": 0.5 * (step + 1), "w": jnp.array([0.3, -0.2])}
      updates, state = update(grads, state, p)
      p = optax.apply_updates(p, updates)
    results[name] = p
  # At gamma = 1 with a constant-sign gradient both take the same first step
  # of lr; and both moved the float leaf down.
  assert float(results["anon"]["scale"]) < 2.0
  assert jnp.shape(results["anon"]["scale"]) == jnp.shape(results["adam"]["scale"])


@pytest.mark.parametrize(
  "eps, gamma", [(1e-16, 4.9), (1e-16, 8.0), (1e-38, 1.0), (1e-45, 2.0), (0.0, 1.0), (0.0, 0.5)]
)
@pytest.mark.parametrize("kind", ["anon", "anon_exact", "scale_by_idu"])
def test_zero_gradient_at_refresh_keeps_params_finite(kind, eps, gamma):
  if kind == "scale_by_idu":
    tx = optax.chain(
      optax.trace(0.9), anon_optax.scale_by_idu(eps=eps, gamma=gamma), optax.scale(-1e-2)
    )
  else:
    tx = anon_optax.anon(1e-2, eps=eps, gamma=gamma, exact=kind == "anon_exact")
  params = jnp.array([1.0, -2.0, 0.5], jnp.float32)
  state = tx.init(params)
  update = jax.jit(tx.update)
  # Coordinate 0 has a zero gradient at every refresh (1, 2, 4, 8) and a
  # nonzero one between them; the others are ordinary.
  for step in range(1, 13):
    first = 0.0 if step in (1, 2, 4, 8) else 1e-3
    grads = jnp.array([first, 0.5, -1.0], jnp.float32)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    assert bool(jnp.all(jnp.isfinite(params))), (step, params)
  precond = optax.tree.get(state, "precond")
  assert bool(jnp.all(jnp.isfinite(precond)))


def test_inject_hyperparams_with_bfloat16_params_and_float32_hyperparams():
  tx = optax.inject_hyperparams(anon_optax.anon, hyperparam_dtype=jnp.float32)(
    learning_rate=1e-2, b2=0.999, gamma=1.1
  )
  params = {"w": jnp.linspace(-1, 1, 8, dtype=jnp.bfloat16)}
  state = tx.init(params)
  assert state.hyperparams["b2"].dtype == jnp.float32
  step = jax.jit(tx.update)
  start = params
  for i in range(50):
    grads = jax.tree.map(lambda p: (p - 0.3 + 0.01 * i).astype(jnp.bfloat16), params)
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params)), i
  assert params["w"].dtype == jnp.bfloat16
  assert float(jnp.max(jnp.abs(params["w"] - start["w"]))) > 0.05


def test_low_precision_hyperparameters_are_computed_in_float32():
  """`inject_hyperparams` casts hyperparameters to a low dtype; Anon's arithmetic
  on them is float32, so the step equals Anon built from the
  same (already rounded) values as Python numbers. (Powers and differences
  like 1 - b1**t formed in bfloat16 were off by up to 1%.)"""
  params = {"w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4)}
  values = dict(b1=0.9, b2=0.99, gamma=1.1, beta3=0.7)
  rounded = {k: float(jnp.asarray(v, jnp.bfloat16)) for k, v in values.items()}
  injected = optax.inject_hyperparams(anon_optax.anon, hyperparam_dtype=jnp.bfloat16)(
    learning_rate=1e-2, **values
  )
  plain = anon_optax.anon(learning_rate=float(jnp.asarray(1e-2, jnp.bfloat16)), **rounded)
  state_injected, state_plain = injected.init(params), plain.init(params)
  update_injected, update_plain = jax.jit(injected.update), jax.jit(plain.update)
  for step in range(40):
    grads = jax.tree.map(lambda p: jnp.cos(p * (step + 1)) * 0.1, params)
    got, state_injected = update_injected(grads, state_injected, params)
    want, state_plain = update_plain(grads, state_plain, params)
    np.testing.assert_allclose(got["w"], want["w"], rtol=2e-5, atol=1e-9)
    params = optax.apply_updates(params, want)


def _step_after(tx, grad, steps=20):
  params = jnp.zeros(3)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(steps):
    updates, state = update(jnp.full(3, grad, jnp.float32), state, params)
  return float(updates[0])


@pytest.mark.parametrize("grad", [1e-6, 1.0, 1e6])
def test_bfloat16_preconditioner_gives_float32_steps_at_any_gradient_scale(grad):
  # At gamma = 1 the step is about -lr whatever the gradient's scale: bfloat16 has float32's
  # range, so v ~ 1/|g| is stored as it is (float16's, clipped at 65504, was 15x too small at
  # g = 1e-6, float8_e4m3fn's 2000x; those are refused, test_validation.py).
  want = _step_after(anon_optax.anon(1.0), grad)
  got = _step_after(anon_optax.anon(1.0, precond_dtype=jnp.bfloat16), grad)
  np.testing.assert_allclose(got, want, rtol=1e-2)
  np.testing.assert_allclose(got, -1.0, rtol=1e-2)


@pytest.mark.parametrize("grad", [1e-4, 1e-2, 1.0, 1e3])
def test_float16_first_moment_is_as_accurate_as_adams(grad):
  # `mu_dtype=jnp.float16` is accepted, as by optax.adam: Anon's step is v * m and Adam's
  # m / sqrt(nu), both with m stored in float16, so both lose the same gradients (below ~1e-5,
  # where m is subnormal; above 65504, where it overflows). Measured over 30 noisy steps, their
  # median errors against float32 moments agree within 2x at every scale from 1e-7 to 1e4.
  def relative_error(make):
    return abs(_step_after(make(jnp.float16), grad) / _step_after(make(None), grad) - 1)

  anon_error = relative_error(lambda dtype: anon_optax.anon(1.0, mu_dtype=dtype))
  adam_error = relative_error(lambda dtype: optax.adam(1.0, mu_dtype=dtype))
  assert anon_error < 2e-3
  assert anon_error <= 2 * adam_error + 1e-3
