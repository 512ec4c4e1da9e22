"""A hyperparameter sweep as one compiled program: jax.vmap over a whole run."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax

STEPS = 30  # Refreshes at 1, 2, 4, 8, 16.


def _problem():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(32, 5)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(32, 2)), jnp.float32)
  params = {"w": jnp.zeros((5, 2), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
  return x, y, params


def _train(learning_rate, gamma):
  """A whole training run; returns the loss and the parameters per step."""
  x, y, params = _problem()
  tx = anon_optax.anon(learning_rate, gamma=gamma, weight_decay=1e-3)

  def loss_fn(params):
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

  def step(carry, _):
    params, state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    return (params, state), (loss, params)

  return jax.lax.scan(step, (params, tx.init(params)), length=STEPS)[1]


def _assert_sweep_matches_separate_runs(swept, separate):
  for i, run in enumerate(separate):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=2e-5, atol=1e-6), swept, run)


def test_vmap_over_gamma_equals_separate_runs():
  gammas = [-1.0, 0.0, 1.0, 1.5, 2.5]
  sweep = jax.jit(jax.vmap(lambda gamma: _train(3e-2, gamma)))
  swept = sweep(jnp.asarray(gammas))
  # Independent: each run compiled on its own with gamma a Python float.
  separate = [jax.jit(lambda g=g: _train(3e-2, g))() for g in gammas]
  _assert_sweep_matches_separate_runs(swept, separate)
  # The sweep is one program, and its runs really differ.
  assert sweep._cache_size() == 1
  losses = np.asarray(swept[0])
  assert np.all(losses[:4, -1] < losses[:4, 0])  # gamma 2.5 is too bold here.
  assert len({round(float(loss), 6) for loss in losses[:, -1]}) == len(gammas)


@pytest.mark.slow
def test_vmap_over_learning_rate_and_gamma_grid():
  learning_rates = jnp.asarray([1e-3, 1e-2, 1e-1])
  gammas = jnp.asarray([0.5, 1.1])
  grid = jax.jit(jax.vmap(jax.vmap(_train, in_axes=(None, 0)), in_axes=(0, None)))
  swept = grid(learning_rates, gammas)
  for i, lr in enumerate([1e-3, 1e-2, 1e-1]):
    row = jax.tree.map(lambda a: a[i], swept)
    separate = [jax.jit(lambda lr=lr, g=g: _train(lr, g))() for g in (0.5, 1.1)]
    _assert_sweep_matches_separate_runs(row, separate)
  final_losses = np.asarray(swept[0])[:, :, -1]
  assert len({round(float(loss), 6) for loss in final_losses.ravel()}) == 6
