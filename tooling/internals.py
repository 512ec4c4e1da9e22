"""Local copies of the package internals that the benchmarks and experiments measure against.

The tooling uses only ``anon_optax``'s public API; where a benchmark or an experiment needs a
formula the package keeps private (the timing floor's guard, the guard's bound for counting where
it binds, the refresh formula timed against its predecessors), it uses the copy here.
``tests/tooling/test_internals.py`` checks that every copy still computes what the package's
private function computes, so a change in the package shows up as a failing test, not as a
benchmark that silently measures an old formula.

Copied from ``anon_optax/_common.py`` (:func:`read_back_from_memory`) and ``anon_optax/_idu.py``
(:func:`harmonic_refresh`, :func:`approximate_power`, :func:`guarded_preconditioner`, and
:func:`step_preconditioner` for a state between refreshes or right after one).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

DEFAULT_GUARD_FACTOR = 10.0  # The default of anon's ``guard_factor``.


def read_back_from_memory(moment: jax.Array, like: jax.Array) -> jax.Array:
  """``moment / (1 + 0 * isnan(like))``: ``moment`` bit for bit, which XLA reads back from memory.

  XLA cannot fold the division by this per-element array of ones, so a later pass of the same
  step reads the new moment back from its (donated) buffer instead of recomputing it from the old
  one (for which it would keep a copy of the whole old moment).
  """
  ones = 1 + 0 * jnp.isnan(like).astype(moment.dtype)
  return moment / ones


def harmonic_refresh(precond: jax.Array, log_sigma: jax.Array, gamma: Any, beta3: Any) -> jax.Array:
  """The IDU refresh ``(beta3 v**-2 + (1 - beta3) sigma**gamma)**-1/2``, in the ``hypot`` form."""
  dtype = precond.dtype
  gamma = jnp.asarray(gamma, dtype)
  beta3 = jnp.asarray(beta3, dtype)
  log_sigma_to_gamma = jnp.where(gamma == 0, 0, gamma * log_sigma)
  previous_root = jnp.where(beta3 == 0, jnp.inf, precond * jax.lax.rsqrt(beta3))
  new_root = jnp.exp(-0.5 * (jnp.log1p(-beta3) + log_sigma_to_gamma))
  smaller = jnp.minimum(previous_root, new_root)
  larger = jnp.maximum(previous_root, new_root)
  ratio = jnp.where(smaller == larger, 1, smaller / larger)
  precond_new = smaller / jnp.sqrt(1 + ratio * ratio)
  return jnp.where((gamma == 0) & (precond == 1), 1, precond_new).astype(dtype)


# log2(1 + f) ~ f (LOG2_A - LOG2_B f), 2**f ~ 1 + f (EXP2_A + EXP2_B f) on [0, 1].
_LOG2_A, _LOG2_B = 1.3465553, 0.3465553
_EXP2_A, _EXP2_B = 0.6565, 0.3435


def approximate_power(x: jax.Array, exponent: Any) -> jax.Array:
  """``x ** exponent`` for ``x >= 0`` from the float's bits and two quadratics (about 1%)."""
  dtype = x.dtype
  info = jnp.finfo(dtype)
  int_dtype = jnp.int32 if info.bits == 32 else jnp.int64
  num_mantissa_bits = info.nmant
  bias = info.maxexp - 1
  bits = jax.lax.bitcast_convert_type(x, int_dtype)
  biased_exponent = bits >> num_mantissa_bits
  one_plus_f = jax.lax.bitcast_convert_type(
    (bits & ((1 << num_mantissa_bits) - 1)) | (bias << num_mantissa_bits), dtype
  )
  f = one_plus_f - 1
  log2_x = (biased_exponent - bias).astype(dtype) + f * (_LOG2_A - _LOG2_B * f)
  y = jnp.clip(jnp.asarray(exponent, dtype) * log2_x, 1 - bias, bias)
  whole = jnp.floor(y)
  r = y - whole
  mantissa = 1 + r * (_EXP2_A + _EXP2_B * r)
  result_bits = jax.lax.bitcast_convert_type(mantissa, int_dtype) + (
    whole.astype(int_dtype) << num_mantissa_bits
  )
  return jax.lax.bitcast_convert_type(result_bits, dtype)


def _at_least_float32(value: Any) -> jax.Array:
  value = jnp.asarray(value)
  if jnp.issubdtype(value.dtype, jnp.floating) and jnp.finfo(value.dtype).bits < 32:
    return value.astype(jnp.float32)
  return value


def guarded_preconditioner(
  precond: jax.Array,
  nu: jax.Array,
  *,
  inverse_correction: jax.Array,
  eps: Any,
  gamma: Any,
  factor: Any = DEFAULT_GUARD_FACTOR,
) -> jax.Array:
  """``min(v, C * sigma**(-gamma/2))`` with ``sigma = s * inverse_correction + eps``."""
  dtype = jnp.promote_types(nu.dtype, jnp.float32)
  sigma = nu.astype(dtype) * inverse_correction.astype(dtype) + jnp.asarray(eps, dtype)
  bound = factor * approximate_power(sigma, -0.5 * _at_least_float32(gamma))
  return jnp.minimum(precond.astype(dtype), bound)


def step_preconditioner(
  precond: Any, nu: Any, num_accumulated: jax.Array, *, b2: float, eps: Any, gamma: Any, factor: Any
) -> Any:
  """The preconditioner tree a guarded step multiplies by (``precond`` on a refresh step).

  ``precond``, ``nu`` and ``num_accumulated`` are the fields of anon's state after the step
  (``num_accumulated == 0`` right after a refresh, when no bound applies).
  """
  refreshed = num_accumulated == 0
  n = jnp.maximum(num_accumulated, 1)
  factor = jnp.where(refreshed, jnp.inf, factor)

  def guard(v, s):
    dtype = jnp.promote_types(s.dtype, jnp.float32)
    # 1 - b2**n as -expm1(n log1p(-(1 - b2))), with 1 - b2 formed in Python.
    correction = -jnp.expm1(n.astype(dtype) * jnp.log1p(-jnp.asarray(1 - b2, dtype)))
    return guarded_preconditioner(
      v, s, inverse_correction=1 / correction, eps=eps, gamma=gamma, factor=factor.astype(dtype)
    )

  return jax.tree.map(guard, precond, nu)
