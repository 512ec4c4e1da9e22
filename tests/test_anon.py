"""`anon_optax.anon` and `scale_by_anon` off the beaten path.

Gradients through guarded steps, the guard factor, the update and state dtypes (also for a
state restored from another configuration), and traced hyperparameters that would otherwise
be silently dropped. Equivalence with the authors' rule is in test_reference_equivalence.py.
"""

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax

# Gradients c_t * p with spikes between refreshes (steps 3, 6, 7 are not refresh steps): the
# preconditioner of the latest refresh is ~100x too large there, so the guard binds.
_SPIKES = (1.0, 1.0, 100.0, 1.0, 1.0, 100.0, 100.0, 1.0)


def _loss_after_steps(learning_rate, gamma, params, *, exact=False):
  tx = anon_optax.anon(learning_rate, gamma=gamma, exact=exact)
  state = tx.init(params)
  for scale in _SPIKES:
    grads = scale * jnp.tanh(params) + 0.1
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return jnp.sum(params**2)


def _central_difference(f, x, h):
  return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.usefixtures("x64")
def test_gradient_through_guarded_steps_equals_finite_differences():
  lr, gamma, params = 3e-2, 1.5, jnp.array([1.0, -2.0, 0.5])
  # The guard binds: the default's trajectory differs from the authors' rule.
  guarded = float(_loss_after_steps(lr, gamma, params))
  assert abs(guarded - float(_loss_after_steps(lr, gamma, params, exact=True))) > 1e-3
  d_lr, d_gamma, d_params = jax.grad(_loss_after_steps, argnums=(0, 1, 2))(lr, gamma, params)
  fd_lr = _central_difference(lambda x: _loss_after_steps(x, gamma, params), lr, 1e-7)
  fd_gamma = _central_difference(lambda x: _loss_after_steps(lr, x, params), gamma, 1e-6)
  fd_params = [
    _central_difference(
      lambda x, i=i: _loss_after_steps(lr, gamma, params.at[i].set(x)), params[i], 1e-6
    )
    for i in range(params.size)
  ]
  np.testing.assert_allclose(d_lr, fd_lr, rtol=1e-4)
  np.testing.assert_allclose(d_gamma, fd_gamma, rtol=1e-4)
  np.testing.assert_allclose(d_params, fd_params, rtol=1e-4)


def test_gradient_through_guarded_steps_is_finite_in_float32():
  grads = jax.grad(_loss_after_steps, argnums=(0, 1, 2))(3e-2, 1.5, jnp.array([1.0, -2.0, 0.5]))
  chex.assert_tree_all_finite(grads)
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))


def test_guard_factor_is_an_argument():
  params = jnp.array([1.0, -2.0, 0.5])
  losses = {
    factor: float(_loss_after_steps_with(dict(guard_factor=factor), params))
    for factor in (1.0, 10.0, 1e6)
  }
  assert losses[1.0] != losses[10.0] != losses[1e6]
  # A factor too large to bind is the authors' rule, exactly.
  assert losses[1e6] == float(_loss_after_steps_with(dict(exact=True), params))


def _loss_after_steps_with(kwargs, params):
  tx = anon_optax.anon(3e-2, gamma=1.5, **kwargs)
  state = tx.init(params)
  for scale in _SPIKES:
    updates, state = tx.update(scale * jnp.tanh(params) + 0.1, state, params)
    params = optax.apply_updates(params, updates)
  return jnp.sum(params**2)


def test_traced_guard_factor_compiles_once():
  params = jnp.array([1.0, -2.0, 0.5])
  run = jax.jit(lambda factor: _loss_after_steps_with(dict(guard_factor=factor), params))
  for factor in (1.0, 10.0):
    assert float(run(factor)) == pytest.approx(
      float(_loss_after_steps_with(dict(guard_factor=factor), params)), rel=1e-6
    )
  assert run._cache_size() == 1


@pytest.mark.parametrize("factor", [0.5, float("inf"), float("nan"), -1.0])
def test_guard_factor_out_of_range_raises(factor):
  with pytest.raises(ValueError, match=r"`guard_factor` must be a real number in \[1, inf\)"):
    anon_optax.anon(1e-3, guard_factor=factor)


def test_guard_factor_with_exact_raises():
  with pytest.raises(ValueError, match="`guard_factor`.*exact=True"):
    anon_optax.scale_by_anon(guard_factor=3.0, exact=True)


def test_float16_accumulator_is_refused_with_a_pointer_to_bfloat16():
  with pytest.raises(ValueError, match="`nu_dtype`.*bfloat16"):
    anon_optax.anon(1e-3, nu_dtype=jnp.float16)
  with pytest.raises(ValueError, match="`nu_dtype`.*bfloat16"):
    anon_optax.scale_by_idu(nu_dtype=jnp.float16)


@pytest.mark.parametrize("exact", [False, True])
def test_update_dtype_with_mu_dtype_is_adams(exact):
  for param_dtype, grad_dtype in [
    (jnp.float32, jnp.bfloat16),
    (jnp.float32, jnp.float32),
    (jnp.bfloat16, jnp.bfloat16),
  ]:
    params = jnp.ones(3, param_dtype)
    grads = jnp.full(3, 0.5, grad_dtype)
    adam = optax.adam(1e-3, mu_dtype=jnp.bfloat16)
    tx = anon_optax.anon(1e-3, mu_dtype=jnp.bfloat16, exact=exact)
    expected = adam.update(grads, adam.init(params), params)[0].dtype
    assert tx.update(grads, tx.init(params), params)[0].dtype == expected


@pytest.mark.parametrize("mu_dtype", [None, jnp.bfloat16])
def test_injected_scale_by_anon_update_dtype_is_adams(mu_dtype):
  # bfloat16 parameters with float32 hyperparameters (as the docstring advises): float32 updates.
  params = jnp.ones(3, jnp.bfloat16)
  grads = jnp.full(3, 0.5, jnp.bfloat16)
  inject = lambda f: optax.inject_hyperparams(
    f, hyperparam_dtype=jnp.float32, static_args=("mu_dtype",)
  )(mu_dtype=mu_dtype)
  adam, tx = inject(optax.scale_by_adam), inject(anon_optax.scale_by_anon)
  expected = adam.update(grads, adam.init(params), params)[0].dtype
  assert tx.update(grads, tx.init(params), params)[0].dtype == expected


_COMPACT = dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16, precond_dtype=jnp.bfloat16)


@pytest.mark.parametrize(
  "source, target",
  [(_COMPACT, {}), ({}, _COMPACT)],
  ids=["compact_to_default", "default_to_compact"],
)
def test_restored_anon_state_returns_to_the_configured_dtypes(source, target):
  params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(3)}
  state = anon_optax.anon(1e-3, **source).init(params)
  _assert_restored_state_returns_to_configured_dtypes(
    anon_optax.anon(1e-3, **target), state, params
  )


def test_restored_hvadam_state_returns_to_the_configured_dtypes():
  params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(3)}
  tx = anon_optax.hvadam(1e-3)
  # HVAdam has no storage options: restore from a copy of its state cast to bfloat16.
  state = jax.tree.map(
    lambda x: x.astype(jnp.bfloat16) if x.dtype == jnp.float32 else x, tx.init(params)
  )
  _assert_restored_state_returns_to_configured_dtypes(tx, state, params)


def _assert_restored_state_returns_to_configured_dtypes(tx, saved_state, params):
  grads = jax.tree.map(lambda p: 0.1 * p + 0.05, params)
  # flax.serialization restores the saved arrays as they are (no cast to the target's).
  restored = flax.serialization.from_bytes(
    tx.init(params), flax.serialization.to_bytes(saved_state)
  )
  chex.assert_trees_all_equal_dtypes(restored, saved_state)
  update = jax.jit(tx.update)
  fresh = update(grads, tx.init(params), params)[1]
  _, restored = update(grads, restored, params)
  chex.assert_trees_all_equal_dtypes(restored, fresh)


def _injected_step(name, value):
  tx = optax.inject_hyperparams(anon_optax.anon)(1e-3, max_refresh_interval=100)
  params = jnp.ones(3)
  state = tx.init(params)
  state.hyperparams[name] = jnp.asarray(value, state.hyperparams[name].dtype)
  updates, _ = jax.jit(tx.update)(params, state, params)
  return updates


@pytest.mark.parametrize(
  "name, value", [("max_refresh_interval", 0), ("max_refresh_interval", -5), ("refresh_base", 1)]
)
def test_invalid_injected_schedule_values_make_the_step_nan(name, value):
  assert bool(jnp.all(jnp.isnan(_injected_step(name, value))))


@pytest.mark.parametrize("name, value", [("max_refresh_interval", 1), ("refresh_base", 3)])
def test_valid_injected_schedule_values_give_finite_steps(name, value):
  chex.assert_tree_all_finite(_injected_step(name, value))
