"""Storage of optimizer statistics in narrow dtypes, with unbiased rounding.

A statistic stored in bfloat16 and updated by increments below its resolution
would freeze under round-to-nearest; stochastic rounding keeps it growing on
average. The randomness is a hash of the element's index, the step and the
leaf, so no key is passed and runs are deterministic.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def stochastic_round(x: jax.Array, dtype: Any, step: jax.Array, salt: int):
  """Rounds float32 ``x`` to ``dtype`` (bfloat16 or float16) without bias.

  Each element is rounded up with probability equal to its distance from the
  value below, so the rounding error has zero mean and an accumulator that
  grows by increments below the storage dtype's resolution still grows on
  average (plain rounding would freeze it). The randomness is a hash of the
  element's index, the step and the leaf (``salt``): deterministic, with no
  key to pass, and different at every step.
  """
  dtype = jnp.dtype(dtype)
  if dtype == jnp.bfloat16:
    # bfloat16 is float32's top 16 bits: add uniform noise below them, then
    # truncate.
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    noise = hash_bits(x.shape, step, salt) >> 16
    rounded = (bits + noise) & jnp.uint32(0xFFFF0000)
    return jax.lax.bitcast_convert_type(rounded, jnp.float32).astype(dtype)
  # Other dtypes: round down, then up with the probability of the remainder.
  x = x.astype(jnp.float32)
  low = x.astype(dtype)
  low = jnp.where(low.astype(jnp.float32) > x, jnp.nextafter(low, -jnp.inf), low)
  high = jnp.nextafter(low, jnp.inf)
  gap = high.astype(jnp.float32) - low.astype(jnp.float32)
  fraction = jnp.where(gap > 0, (x - low.astype(jnp.float32)) / gap, 0)
  uniform = (hash_bits(x.shape, step, salt) >> 8).astype(jnp.float32) * 2.0**-24
  return jnp.where(uniform < fraction, high, low)


def hash_bits(shape, step: jax.Array, salt: int) -> jax.Array:
  """32 well-mixed pseudo-random bits per element of ``shape`` (uint32)."""
  index = jax.lax.iota(jnp.uint32, int(np.prod(shape, dtype=np.int64)))
  index = index.reshape(shape)
  h = (
    index * jnp.uint32(0x9E3779B1)
    + step.astype(jnp.uint32) * jnp.uint32(0x85EBCA77)
    + jnp.uint32((salt * 0xC2B2AE3D) & 0xFFFFFFFF)
  )
  # A 32-bit finaliser (xor-shift-multiply rounds) mixes every input bit.
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x7FEB352D)
  h = h ^ (h >> 15)
  h = h * jnp.uint32(0x846CA68B)
  return h ^ (h >> 16)


def store(x: jax.Array, dtype: Any, *, step=None, salt: int = 0):
  """Casts a statistic to its storage dtype.

  Narrower than float32 and with a ``step``: stochastic rounding; otherwise
  round to nearest.
  """
  dtype = jnp.dtype(dtype)
  if step is not None and jnp.finfo(dtype).bits < 32:
    return stochastic_round(x, dtype, step, salt)
  return x.astype(dtype)
