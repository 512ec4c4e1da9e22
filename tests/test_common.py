"""The numeric and dtype helpers of `anon_optax._common`.

Also run in CI's "oldest versions" step (jax 0.6.0, optax 0.2.5): only APIs both have.
"""

from conftest import UPDATE_DTYPE_PAIRS
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from anon_optax import _common


def test_resolve_schedule():
  count = jnp.asarray(5)
  for value in (0.5, 3, jnp.asarray(0.25, jnp.bfloat16)):
    assert _common.resolve_schedule(value, count) is value
  schedule = optax.linear_schedule(1.0, 0.0, transition_steps=10)
  assert float(_common.resolve_schedule(schedule, count)) == 0.5
  # A traced count, as in a compiled update.
  resolved = jax.jit(lambda c: _common.resolve_schedule(schedule, c))(jnp.arange(0, 12, 5))
  np.testing.assert_allclose(resolved, [1.0, 0.5, 0.0], atol=1e-7)


def test_statistics_dtype_is_at_least_float32_and_keeps_complexness(request):
  for dtype, expected in [
    (jnp.bfloat16, jnp.float32),
    (jnp.float16, jnp.float32),
    (jnp.float32, jnp.float32),
    (jnp.int32, jnp.float32),
    (jnp.complex64, jnp.complex64),
  ]:
    assert _common.statistics_dtype(dtype) == expected, dtype
  request.getfixturevalue("x64")
  assert _common.statistics_dtype(jnp.float64) == jnp.float64
  assert _common.statistics_dtype(jnp.complex128) == jnp.complex128


def test_real_statistics_dtype_is_at_least_float32(request):
  assert _common.real_statistics_dtype(jnp.bfloat16) == jnp.float32
  assert _common.real_statistics_dtype(jnp.float16) == jnp.float32
  assert _common.real_statistics_dtype(jnp.float32) == jnp.float32
  assert _common.real_statistics_dtype(jnp.complex64) == jnp.float32
  request.getfixturevalue("x64")
  assert _common.real_statistics_dtype(jnp.float64) == jnp.float64
  assert _common.real_statistics_dtype(jnp.complex128) == jnp.float64


@pytest.mark.parametrize("param_dtype", [jnp.bfloat16, jnp.float16, jnp.float32, jnp.complex64])
@pytest.mark.parametrize("stored_dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_restored_dtype_is_the_init_dtype(param_dtype, stored_dtype):
  # A statistic stored in another dtype (a state from another configuration) comes back in
  # the dtype init gives it, from an update in the parameters' dtype.
  update = jnp.ones(2, param_dtype)
  stored = jnp.zeros(2, stored_dtype)
  restored = _common.restored_dtype(update, stored)
  assert restored == _common.statistics_dtype(param_dtype)
  assert _common.restored_dtype(update, stored, real=True) == _common.real_statistics_dtype(
    param_dtype
  )
  # A configured dtype wins.
  assert _common.restored_dtype(update, stored, jnp.bfloat16) == jnp.bfloat16


def test_at_least_float32():
  # Narrow floats are widened with their (already rounded) value.
  for dtype in (jnp.bfloat16, jnp.float16):
    value = jnp.asarray(0.999, dtype)
    widened = _common.at_least_float32(value)
    assert widened.dtype == jnp.float32
    assert float(widened) == float(value)
  # Wider values and integers are left as they are; Python numbers become arrays.
  for value in (jnp.asarray(0.999, jnp.float32), jnp.asarray(3, jnp.int32)):
    assert _common.at_least_float32(value).dtype == value.dtype
  assert _common.at_least_float32(0.5).dtype == jnp.float32
  assert jax.jit(_common.at_least_float32)(jnp.asarray(0.5, jnp.bfloat16)).dtype == jnp.float32


def _adam_update_dtype(param_dtype, grad_dtype, **kwargs):
  tx = optax.adam(1e-2, **kwargs)
  params = jnp.array([1.0, -2.0, 3.0]).astype(param_dtype)
  updates, _ = tx.update(jnp.array([1, -2, 0]).astype(grad_dtype), tx.init(params), params)
  return updates.dtype


@pytest.mark.parametrize("param_dtype, grad_dtype", UPDATE_DTYPE_PAIRS)
def test_update_dtype_is_adams(param_dtype, grad_dtype):
  grads, params = jnp.zeros(3, grad_dtype), jnp.zeros(3, param_dtype)
  expected = _adam_update_dtype(param_dtype, grad_dtype)
  assert _common.update_dtype(grads, params) == expected
  # Python hyperparameters are weakly typed and change nothing; nor does a missing argument.
  assert _common.update_dtype(grads, params, 0.9, 0.999, 1e-8, None) == expected


@pytest.mark.parametrize("param_dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("mu_dtype", [jnp.bfloat16, jnp.float32])
def test_update_dtype_with_mu_dtype_is_adams(param_dtype, mu_dtype):
  params = jnp.zeros(3, param_dtype)
  got = _common.update_dtype(params, params, jnp.zeros(3, mu_dtype))
  assert got == _adam_update_dtype(param_dtype, param_dtype, mu_dtype=mu_dtype)


@pytest.mark.parametrize("param_dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("hyperparam_dtype", [jnp.bfloat16, jnp.float32])
def test_update_dtype_with_injected_hyperparameters_is_adams(param_dtype, hyperparam_dtype):
  tx = optax.inject_hyperparams(optax.adam, hyperparam_dtype=hyperparam_dtype)(learning_rate=1e-2)
  params = jnp.ones(3, param_dtype)
  state = tx.init(params)
  updates, _ = tx.update(params, state, params)
  hyperparams = [state.hyperparams[name] for name in ("b1", "b2", "eps")]
  assert _common.update_dtype(params, params, *hyperparams) == updates.dtype


def test_exact_one_minus():
  # Python numbers are subtracted in double precision: closer to the decimal than float32.
  assert _common.exact_one_minus(0.999) == 1 - 0.999
  float32_error = abs(float(1 - np.float32(0.999)) - 0.001)
  assert abs(_common.exact_one_minus(0.999) - 0.001) < float32_error / 1000
  assert _common.exact_one_minus(0) == 1.0
  assert isinstance(_common.exact_one_minus(0), float)
  # A NumPy scalar: its own value, subtracted exactly.
  assert _common.exact_one_minus(np.float32(0.999)) == 1 - float(np.float32(0.999))
  # Not real numbers: the caller subtracts.
  for value in (True, np.bool_(False), 0.5j, jnp.asarray(0.9), np.asarray([0.9])):
    assert _common.exact_one_minus(value) is None, value
  assert jax.jit(lambda b: jnp.asarray(_common.exact_one_minus(b) is None))(0.9)


# Zeros of both signs, the extremes, infinities and a NaN. Not subnormals: XLA's CPU flushes
# them to zero in any arithmetic (``x * 1`` included), so a moment would not be one.
_EDGES = np.array(
  [0.0, -0.0, 1.2e-38, -1.2e-38, 0.3, -1.0, 2.5, 1e8, 3.4e38, np.inf, -np.inf, np.nan], np.float32
)


def _assert_same_bits(a, b):
  a, b = np.asarray(a), np.asarray(b)
  assert a.dtype == b.dtype
  np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


# Real moments, as the package divides (a complex division would turn -0 into 0 and inf into
# inf + nan j), with a one in a dtype of float32's range (the package's is float32 or wider;
# in float16 a count above 65504 is inf, and 0 * inf NaN).
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_one_known_at_run_time_divides_exactly(dtype):
  moment = jnp.asarray(_EDGES).astype(dtype)
  divide = jax.jit(lambda m, c: m / _common.one_known_at_run_time(c, m.dtype))
  for count in (0, 1, 1000, np.iinfo(np.int32).max):
    one = jax.jit(_common.one_known_at_run_time, static_argnums=1)(count, dtype)
    assert one.dtype == dtype and one == 1
    _assert_same_bits(divide(moment, jnp.asarray(count)), moment)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("like_dtype", [jnp.float32, jnp.bfloat16, jnp.complex64])
def test_read_back_from_memory_is_the_identity(dtype, like_dtype):
  moment = jnp.asarray(_EDGES).astype(dtype)
  # ``like`` (the update), with NaNs and infinities of its own.
  like = jnp.asarray(np.roll(_EDGES, 3)).astype(like_dtype)
  _assert_same_bits(jax.jit(_common.read_back_from_memory)(moment, like), moment)
