"""JAX's NaN and Inf debugging on healthy training: nothing trips inside the optimizers.

Under `jax.disable_jit()` with `jax_debug_nans` or `jax_debug_infs` on (the standard way to find
where a NaN comes from), JAX checks the output of every operation, also those of the branches a
`where` discards. A user hunting their own NaN must not be sent into the optimizer, so a healthy
step computes no infinity and no NaN at all. The runs span several refreshes (steps 1, 2, 4, ...,
32), with the guard binding between them, for `anon` (guarded and exact) and `scale_by_idu`,
across gamma, beta3, the refresh cap and the dtypes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax

_STEPS = 40
_FLAGS = {"jax_debug_nans": jax.debug_nans, "jax_debug_infs": jax.debug_infs}

# Each configuration is run guarded and exact.
_CONFIGS = {
  "default": {},
  "gamma_negative": {"gamma": -0.5},
  "gamma_above_one": {"gamma": 2.5},
  "gamma_zero": {"gamma": 0.0},
  "beta3": {"beta3": 0.3},
  "capped_interval": {"max_refresh_interval": 3},
  "base_three": {"refresh_base": 3},
  "gamma_schedule": {"gamma": optax.linear_schedule(0.5, 1.5, _STEPS)},
}


def _grads(step, shape, dtype):
  """Healthy gradients: nonzero, of varying sign and size, with spikes between refreshes."""
  size = int(np.prod(shape))
  values = np.sin(1.7 * np.arange(size) + step) + 0.05 * np.sign(np.cos(np.arange(size)))
  if step in (3, 6, 7, 12):  # Not refresh steps: the guard binds.
    values = 100 * values
  values = values.reshape(shape)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    values = values + 0.5j * values[::-1]
  return jnp.asarray(values, dtype)


def _run_under(flag, tx, dtype=jnp.float32):
  params = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3).astype(dtype)
  state = tx.init(params)
  with jax.disable_jit(), _FLAGS[flag](True):
    for step in range(1, _STEPS + 1):
      updates, state = tx.update(_grads(step, params.shape, dtype), state, params)
      params = optax.apply_updates(params, updates)
  assert bool(jnp.all(jnp.isfinite(params)))
  return params


@pytest.mark.parametrize("flag", sorted(_FLAGS))
@pytest.mark.parametrize("exact", [False, True], ids=["guarded", "exact"])
@pytest.mark.parametrize("config", sorted(_CONFIGS))
def test_anon_trips_no_debug_flag(flag, exact, config):
  _run_under(flag, anon_optax.anon(1e-2, exact=exact, **_CONFIGS[config]))


@pytest.mark.parametrize("flag", sorted(_FLAGS))
@pytest.mark.parametrize("exact", [False, True], ids=["guarded", "exact"])
@pytest.mark.parametrize("config", ["default", "gamma_negative", "gamma_above_one", "beta3"])
def test_scale_by_idu_trips_no_debug_flag(flag, exact, config):
  tx = optax.chain(
    optax.trace(0.9),
    anon_optax.scale_by_idu(exact=exact, **_CONFIGS[config]),
    optax.scale(-1e-2),
  )
  _run_under(flag, tx)


@pytest.mark.parametrize("flag", sorted(_FLAGS))
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.complex64])
def test_anon_trips_no_debug_flag_with_other_param_dtypes(flag, dtype):
  _run_under(flag, anon_optax.anon(1e-2), dtype)


@pytest.mark.parametrize("flag", sorted(_FLAGS))
def test_anon_with_narrow_storage_trips_no_debug_flag(flag):
  tx = anon_optax.anon(
    1e-2, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16, precond_dtype=jnp.bfloat16
  )
  _run_under(flag, tx)


@pytest.mark.parametrize("flag", sorted(_FLAGS))
def test_injected_hyperparameters_trip_no_debug_flag(flag):
  # Injected (array) refresh settings are checked in the step, which turns invalid ones into a
  # NaN step; valid ones must not compute that NaN.
  tx = optax.inject_hyperparams(anon_optax.anon)(
    learning_rate=1e-2, gamma=1.1, beta3=0.4, refresh_base=2, max_refresh_interval=8
  )
  _run_under(flag, tx)


@pytest.mark.parametrize("flag", sorted(_FLAGS))
def test_gradient_through_guarded_steps_trips_no_debug_flag(flag):
  # Meta-gradients through the optimizer differentiate the guard's power and the refresh.
  def loss(learning_rate):
    tx = anon_optax.anon(learning_rate, gamma=1.1)
    params = jnp.array([0.5, -1.0, 2.0])
    state = tx.init(params)
    for step in range(1, 10):
      grads = _grads(step, params.shape, jnp.float32) * jnp.tanh(params)
      updates, state = tx.update(grads, state, params)
      params = optax.apply_updates(params, updates)
    return jnp.sum(params**2)

  with jax.disable_jit(), _FLAGS[flag](True):
    value = jax.grad(loss)(jnp.asarray(1e-2))
  assert bool(jnp.isfinite(value))
