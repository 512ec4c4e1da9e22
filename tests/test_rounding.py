"""Stochastic rounding of statistics to bfloat16 and float16 (`anon_optax._rounding`).

A value ``x = lo + p * gap`` between two neighbours ``lo`` and ``hi = lo + gap`` of the
narrow dtype rounds to ``hi`` with probability ``p`` and to ``lo`` otherwise, so one rounding
has mean ``x`` and standard deviation ``gap * sqrt(p * (1 - p))``, and the mean of ``N``
independent roundings is within ``5 * gap * sqrt(p * (1 - p) / N)`` of ``x`` with probability
1 - 6e-7. The noise is a hash of the element's index, the step and the salt, so each check
below is deterministic: the bound is what a rounding with independent uniform noise passes.
A biased rounding does not: truncation misses by ``p * gap`` and round-to-nearest by
``min(p, 1 - p) * gap``, more than 20 of those standard deviations for the fractions and ``N``
used here.
"""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from anon_optax import _rounding

_NARROW = [jnp.bfloat16, jnp.float16]
# Lower neighbours across each dtype's normal range, both signs (for a negative ``lo`` the
# upper neighbour is the one nearer zero).
_LOWS = {
  jnp.bfloat16: [1.0, 3.0, -1.0, -5.5, 1.2e-38, 1e-30, 7e-5, 1e30, -2e37],
  jnp.float16: [1.0, 3.0, -1.0, -5.5, 6.104e-5, 1e-3, -0.3, 1000.0, 6e4],
}
_FRACTIONS = [1 / 8, 0.25, 0.3, 0.5, 0.7, 0.9]
_N = 4096
# Compiled once per dtype and shape rather than op by op (the eager result is the same: see
# test_deterministic_for_step_and_salt).
_round = jax.jit(_rounding.stochastic_round, static_argnums=(1, 3))
_store = jax.jit(_rounding.store, static_argnames=("dtype", "salt"))


def _between_neighbours(dtype):
  """(x, lo, hi): float32 values ``lo + p * (hi - lo)`` for every low and fraction."""
  lo = jnp.asarray(_LOWS[dtype], dtype)
  hi = jnp.nextafter(lo, jnp.asarray(jnp.inf, dtype))
  lo64, hi64 = (np.asarray(v, np.float64) for v in (lo, hi))
  x = (lo64[:, None] + np.asarray(_FRACTIONS) * (hi64 - lo64)[:, None]).astype(np.float32)
  shape = x.shape
  return (
    x.ravel(),
    np.broadcast_to(lo64[:, None], shape).ravel(),
    np.broadcast_to(hi64[:, None], shape).ravel(),
  )


def _assert_unbiased(rounded, x, lo, hi):
  """``rounded`` (N, K): each row a rounding of ``x``; each column's mean within the bound."""
  rounded = np.asarray(rounded, np.float64)
  # Each result is one of the two neighbours.
  assert np.all((rounded == lo) | (rounded == hi))
  x = np.asarray(x, np.float64)
  p = (x - lo) / (hi - lo)
  bound = 5 * (hi - lo) * np.sqrt(p * (1 - p) / rounded.shape[0])
  error = rounded.mean(axis=0) - x
  assert np.all(np.abs(error) <= bound), np.max(np.abs(error) / bound)


@pytest.mark.parametrize("dtype", _NARROW)
def test_unbiased_over_elements(dtype):
  # The same values in N rows of one array, rounded at one step.
  x, lo, hi = _between_neighbours(dtype)
  rounded = _round(jnp.tile(jnp.asarray(x), (_N, 1)), dtype, jnp.asarray(7), 3)
  assert rounded.dtype == dtype
  _assert_unbiased(rounded, x, lo, hi)


@pytest.mark.parametrize("dtype", _NARROW)
def test_unbiased_over_steps(dtype):
  # The same elements at N steps: what an accumulator sees over a run.
  x, lo, hi = _between_neighbours(dtype)
  rounded = jax.jit(
    jax.vmap(lambda step: _rounding.stochastic_round(jnp.asarray(x), dtype, step, salt=0))
  )(jnp.arange(_N))
  _assert_unbiased(rounded, x, lo, hi)


@pytest.mark.parametrize("dtype", _NARROW)
def test_deterministic_for_step_and_salt(dtype):
  # Halfway between 1 and its upper neighbour: two independent patterns differ in half the
  # elements (standard deviation 0.5 / sqrt(N) = 0.008).
  x = jnp.full(_N, (1.0 + float(jnp.nextafter(jnp.asarray(1.0, dtype), 2))) / 2, jnp.float32)
  bits = lambda step, salt: np.asarray(_round(x, dtype, jnp.asarray(step), salt)).view(np.uint16)
  same = bits(5, 2)
  np.testing.assert_array_equal(bits(5, 2), same)
  # Op by op, not compiled as one program: the same bits.
  eager = _rounding.stochastic_round(x, dtype, jnp.asarray(5), 2)
  np.testing.assert_array_equal(np.asarray(eager).view(np.uint16), same)
  for other in (bits(6, 2), bits(5, 3), bits(4, 1)):
    assert 0.45 < np.mean(other != same) < 0.55


@pytest.mark.parametrize("dtype", _NARROW)
def test_exact_values_stay_exact(dtype):
  # Every 16-bit pattern of the dtype (zeros, subnormals, the largest finite value,
  # infinities, NaNs), widened to float32 exactly, comes back bit for bit.
  patterns = np.arange(2**16, dtype=np.uint16)
  values = patterns.view(ml_dtypes.bfloat16 if dtype == jnp.bfloat16 else np.float16)
  x = jnp.asarray(values.astype(np.float32))
  nan = np.isnan(values.astype(np.float32))
  for step in (0, 1, 12345):
    rounded = np.asarray(_round(x, dtype, jnp.asarray(step), step))
    np.testing.assert_array_equal(rounded.view(np.uint16)[~nan], patterns[~nan])
    np.testing.assert_array_equal(np.isnan(rounded.astype(np.float32)), nan)


@pytest.mark.parametrize("dtype", _NARROW)
def test_store_without_step_rounds_to_nearest(dtype):
  x, lo, hi = _between_neighbours(dtype)
  # Ties between the neighbours go to the even one.
  x = np.concatenate([x, ((lo + hi) / 2).astype(np.float32)])
  nearest = x.astype(ml_dtypes.bfloat16 if dtype == jnp.bfloat16 else np.float16)
  stored = _store(jnp.asarray(x), dtype=dtype)
  assert stored.dtype == dtype
  np.testing.assert_array_equal(np.asarray(stored).view(np.uint16), nearest.view(np.uint16))


def test_store_with_step_rounds_stochastically_below_32_bits():
  x = jnp.asarray(_between_neighbours(jnp.bfloat16)[0])
  step = jnp.asarray(3)
  for dtype in _NARROW:
    np.testing.assert_array_equal(
      np.asarray(_store(x, dtype=dtype, step=step, salt=4)).view(np.uint16),
      np.asarray(_round(x, dtype, step, 4)).view(np.uint16),
    )
  # float32 has nothing to round.
  stored = _store(x, dtype=jnp.float32, step=step, salt=4)
  assert stored.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(stored), np.asarray(x))


@pytest.mark.parametrize("dtype", _NARROW)
def test_accumulator_below_resolution_grows_on_average(dtype):
  # M accumulators start at 1 and gain an eighth of the dtype's resolution at 1 at each of T
  # steps, so they end at 2 on average. Each step's rounding error has mean 0 and standard
  # deviation at most half the gap, at most ulp below 4; so the mean of M accumulators is within
  # 5 * sqrt(T / M) * ulp of 2 (0.04 for bfloat16, 0.014 for float16).
  ulp = float(jnp.finfo(dtype).eps)
  increment, num_steps, num_accumulators = ulp / 8, int(8 / ulp), 1024

  def run(store):
    def body(step, acc):
      return store(acc.astype(jnp.float32) + increment, step)

    return jax.jit(
      lambda: jax.lax.fori_loop(0, num_steps, body, jnp.ones(num_accumulators, dtype))
    )()

  stochastic = run(lambda x, step: _rounding.store(x, dtype, step=step, salt=1))
  mean = float(np.mean(np.asarray(stochastic, np.float64)))
  assert abs(mean - 2.0) <= 5 * np.sqrt(num_steps / num_accumulators) * ulp, mean
  # Round to nearest: each increment is lost, the accumulator never moves.
  nearest = run(lambda x, step: _rounding.store(x, dtype))
  np.testing.assert_array_equal(np.asarray(nearest, np.float32), 1.0)


def test_hash_bits_are_balanced_and_vary():
  # Each of the 32 bits is set in half of 2**16 elements (standard deviation 0.002).
  shape = (256, 256)
  bits = np.asarray(_rounding.hash_bits(shape, jnp.asarray(0), 0))
  assert bits.shape == shape and bits.dtype == np.uint32
  set_fraction = ((bits.ravel()[:, None] >> np.arange(32, dtype=np.uint32)) & 1).mean(axis=0)
  np.testing.assert_allclose(set_fraction, 0.5, atol=0.01)
  np.testing.assert_array_equal(np.asarray(_rounding.hash_bits(shape, jnp.asarray(0), 0)), bits)
  for step, salt in ((1, 0), (0, 1), (2**20, 7)):
    other = np.asarray(_rounding.hash_bits(shape, jnp.asarray(step), salt))
    assert np.mean(other == bits) < 1e-3
  assert _rounding.hash_bits((), jnp.asarray(0), 0).shape == ()
