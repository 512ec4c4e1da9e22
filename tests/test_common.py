"""The numeric and dtype helpers of `anon_optax._common`."""

import jax.numpy as jnp

from anon_optax import _common


def test_real_statistics_dtype_is_at_least_float32(request):
  assert _common.real_statistics_dtype(jnp.bfloat16) == jnp.float32
  assert _common.real_statistics_dtype(jnp.float16) == jnp.float32
  assert _common.real_statistics_dtype(jnp.float32) == jnp.float32
  assert _common.real_statistics_dtype(jnp.complex64) == jnp.float32
  request.getfixturevalue("x64")
  assert _common.real_statistics_dtype(jnp.float64) == jnp.float64
