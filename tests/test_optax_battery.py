"""The battery Optax runs on every optimizer (`optax/_src/alias_test.py`).

Converges on a parabola and on Rosenbrock; does not recompile on the second
update; accepts extra args; works under `inject_hyperparams`; preserves the
parameters' dtype (bfloat16, float32, complex64); keeps state shapes, dtypes and
shardings stable across steps; works under gradient accumulation.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax

# name -> (factory, kwargs); learning rates are set per problem below.
_OPTIMIZERS = {
  "anon_gamma_-0.5": (anon_optax.anon, dict(learning_rate=1e-2, gamma=-0.5)),
  "anon_gamma_0": (anon_optax.anon, dict(learning_rate=1e-2, gamma=0.0)),
  "anon_gamma_0.5": (anon_optax.anon, dict(learning_rate=1e-2, gamma=0.5)),
  "anon_gamma_1": (anon_optax.anon, dict(learning_rate=1e-2, gamma=1.0)),
  "anon_gamma_1.5": (anon_optax.anon, dict(learning_rate=1e-2, gamma=1.5)),
  "anon_decoupled": (
    anon_optax.anon,
    dict(learning_rate=1e-2, gamma=1.0, weight_decay=1e-4, weight_decay_mode="decoupled"),
  ),
  "anon_base3_beta3": (
    anon_optax.anon,
    dict(learning_rate=1e-2, gamma=1.1, beta3=0.9, refresh_base=3),
  ),
  "hvadam": (anon_optax.hvadam, dict(learning_rate=1e-2)),
}
# Learning rates tuned once on a grid {1e-3, 3e-3, 1e-2, 3e-2, 1e-1}. The more
# adaptive settings need larger ones: late in a run the preconditioner is
# refreshed rarely (steps 1024, 2048, ...) and still reflects the larger
# gradients seen earlier, which shrinks the step for gamma > 1.
_PARABOLA_LR = {
  "anon_gamma_-0.5": 1e-2,
  "anon_gamma_0": 1e-2,
  "anon_gamma_0.5": 1e-2,
  "anon_gamma_1": 3e-2,
  "anon_gamma_1.5": 1e-1,
  "anon_decoupled": 3e-2,
  "anon_base3_beta3": 1e-1,
  # HVAdam's hidden step is lr * 10**(6 * exp_delta - 3): on a parabola the
  # agreement tends to 1, the hidden step to 1000 * lr, so it needs a small lr.
  "hvadam": 3e-3,
}
# Every Anon gamma gets 10k steps to come within 5e-2 of the optimum (those that cannot are
# in _ROSENBROCK_XFAIL); the learning rates are the best of the same grid, extended down.
_ROSENBROCK = {  # name -> (learning rate, steps, tolerance)
  "anon_gamma_-0.5": (3e-4, 10_000, 5e-2),
  "anon_gamma_0": (3e-3, 10_000, 5e-2),
  "anon_gamma_0.5": (3e-3, 10_000, 5e-2),
  "anon_gamma_1": (1e-2, 10_000, 5e-2),
  # Under the default's refresh cap (every 256 steps from step 512) the best rate of the grid is
  # 1e-2 (within 1e-6 of the optimum; 1e-1, best without the cap, ends 0.22 away).
  "anon_gamma_1.5": (1e-2, 10_000, 5e-2),
  "anon_decoupled": (1e-2, 10_000, 5e-2),
  # Base 3 refreshes less often (1, 3, 9, ..., 6561): it needs more steps.
  "anon_base3_beta3": (1e-1, 20_000, 5e-2),
  # HVAdam: median over an ensemble of starts (_assert_hvadam_ensemble_makes_progress).
  "hvadam": (1e-2, 20_000, 2e-2),
}
_NAMES = sorted(_OPTIMIZERS)
# Rosenbrock cases that do not converge within their budget above, and why (measured).
_ROSENBROCK_XFAIL = {
  "anon_gamma_-0.5": (
    "gamma < 0 makes the step grow with the gradient (v = sigma**(+1/4)): from lr 5e-4 up it "
    "diverges to NaN on Rosenbrock's steep walls, and at 3e-4 it crawls along the flat valley "
    "floor, 0.30 from the optimum after 10k steps (0.16 after 20k, 0.03 after 80k)"
  ),
}
_ROSENBROCK_CASES = [
  pytest.param(
    name,
    marks=pytest.mark.xfail(reason=_ROSENBROCK_XFAIL[name], raises=AssertionError, strict=True),
  )
  if name in _ROSENBROCK_XFAIL
  else name
  for name in _NAMES
]


def _make(name, **overrides):
  factory, kwargs = _OPTIMIZERS[name]
  return factory(**{**kwargs, **overrides})


def _parabola():
  # Unlike Optax's parabola no coordinate starts at its optimum: with the
  # authors' eps = 1e-16, an exactly zero gradient at the first refresh gives
  # v = eps**(-gamma / 2), and any later push (here decoupled weight decay) is
  # amplified by it. That is the update rule, not what this test is about.
  target = jnp.array([1.0, -1.0, 1.0])
  return jnp.array([-1.0, 10.0, 3.0]), target, lambda p: jnp.sum((p - target) ** 2)


def _rosenbrock():
  target = jnp.array([1.0, 1.0])

  def loss(p):
    return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2

  return jnp.array([-1.2, 1.0]), target, loss


def _minimise(tx, params, loss, num_steps):
  def body(carry, _):
    params, state = carry
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=num_steps)
  return params


@pytest.mark.parametrize("name", _NAMES)
def test_converges_on_parabola(name):
  params, target, loss = _parabola()
  tx = _make(name, learning_rate=_PARABOLA_LR[name])
  if name == "hvadam":
    _assert_hvadam_ensemble_makes_progress(tx, params, loss, 2000, good_loss=2.5)
    return
  final = jax.jit(lambda p: _minimise(tx, p, loss, 2000))(params)
  chex.assert_trees_all_close(final, target, atol=5e-2)


@pytest.mark.parametrize("name", _ROSENBROCK_CASES)
def test_converges_on_rosenbrock(name):
  params, target, loss = _rosenbrock()
  learning_rate, num_steps, tolerance = _ROSENBROCK[name]
  tx = _make(name, learning_rate=learning_rate)
  if name == "hvadam":
    _assert_hvadam_ensemble_makes_progress(tx, params, loss, num_steps, good_loss=tolerance)
    return
  final = jax.jit(lambda p: _minimise(tx, p, loss, num_steps))(params)
  chex.assert_trees_all_close(final, target, atol=tolerance)


def _assert_hvadam_ensemble_makes_progress(tx, params, loss, num_steps, *, good_loss):
  """HVAdam from 64 starts within 1e-6 of ``params``: every loss halves, many reach ``good_loss``.

  The authors' HVAdam is chaotic on both problems (its hidden step amplifies
  round-off ~2x per step), so where one run ends depends on the last bit of
  its start and on the CPU's rounding: a threshold on one run holds on one CPU
  and fails on another (Rosenbrock ended at 0.0246 on an Intel Xeon, 0.0086 on
  an AMD EPYC). A CPU's rounding is one more perturbation of ~1e-7, inside this
  ensemble, so what is asserted is a property of the distribution, with a wide
  margin. Measured over 2048-4096 starts: parabola (lr 3e-3, start loss 129),
  57% end below 2.5, all below 50; Rosenbrock (start 24.2), 69% end below 0.02,
  all below 0.1. At least a quarter of 64 is > 5 standard deviations below
  either fraction.
  """
  rng = np.random.default_rng(0)
  starts = params + jnp.asarray(rng.normal(size=(64, params.size)), params.dtype) * 1e-6
  finals = jax.jit(jax.vmap(lambda p: loss(_minimise(tx, p, loss, num_steps))))(starts)
  finals = np.asarray(finals)
  initial = float(loss(params))
  assert np.all(finals < initial / 2), (initial, finals.max())
  assert np.mean(finals < good_loss) >= 0.25, np.sort(finals)


@pytest.mark.parametrize("name", _NAMES)
def test_no_recompilation_and_stable_state(name):
  tx = _make(name)
  params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  for step in range(5):
    grads = jax.tree.map(lambda p: p * (step + 1) - 0.3, params)
    updates, new_state = update(grads, state, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
    state = new_state
    params = optax.apply_updates(params, updates)
  assert update._cache_size() == 1


@pytest.mark.parametrize("name", _NAMES)
def test_accepts_extra_args(name):
  tx = optax.with_extra_args_support(_make(name))
  params = jnp.ones(3)
  state = tx.init(params)
  updates, _ = tx.update(params, state, params, some_extra_arg=1.0)
  assert updates.shape == params.shape


@pytest.mark.parametrize("name", _NAMES)
def test_inject_hyperparams_matches_plain(name):
  factory, kwargs = _OPTIMIZERS[name]
  plain = factory(**kwargs)
  injected = optax.inject_hyperparams(factory)(**kwargs)
  params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
  plain_state, injected_state = plain.init(params), injected.init(params)
  plain_params = injected_params = params
  plain_update, injected_update = jax.jit(plain.update), jax.jit(injected.update)
  for step in range(12):
    grads = jax.tree.map(lambda p: jnp.sin(p * (step + 1)), plain_params)
    u1, plain_state = plain_update(grads, plain_state, plain_params)
    u2, injected_state = injected_update(grads, injected_state, injected_params)
    plain_params = optax.apply_updates(plain_params, u1)
    injected_params = optax.apply_updates(injected_params, u2)
  chex.assert_trees_all_close(plain_params, injected_params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", _NAMES)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32, jnp.complex64])
def test_preserves_parameter_dtype(name, dtype):
  tx = _make(name)
  params = {"w": jnp.ones((3, 2), dtype), "b": jnp.full(2, 0.5, dtype)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(4):
    grads = jax.tree.map(lambda p: (p * 0.3 + 0.1).astype(dtype), params)
    updates, state = update(grads, state, params)
    chex.assert_trees_all_equal_dtypes(updates, params)
    params = optax.apply_updates(params, updates)
    chex.assert_trees_all_equal_dtypes(params, {"w": params["w"], "b": params["b"]})
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("name", _NAMES)
def test_gradient_accumulation_matches_averaged_gradients(name):
  # MultiSteps over k micro-batches equals one step on the averaged gradient.
  k = 3
  accumulated = optax.MultiSteps(_make(name), every_k_schedule=k)
  direct = _make(name)
  params = jnp.array([0.5, -1.0, 2.0])
  acc_params, acc_state = params, accumulated.init(params)
  dir_params, dir_state = params, direct.init(params)
  accumulated_update, direct_update = (jax.jit(accumulated.update), jax.jit(direct.update))
  rng = np.random.default_rng(0)
  for _ in range(6):
    micro = [jnp.asarray(rng.normal(size=3), jnp.float32) for _ in range(k)]
    for g in micro:
      updates, acc_state = accumulated_update(g, acc_state, acc_params)
      acc_params = optax.apply_updates(acc_params, updates)
    updates, dir_state = direct_update(sum(micro) / k, dir_state, dir_params)
    dir_params = optax.apply_updates(dir_params, updates)
  chex.assert_trees_all_close(acc_params, dir_params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", _NAMES)
def test_state_sharding_is_stable(name):
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("x",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
  tx = _make(name)
  params = jax.device_put(jnp.ones(4), sharding)
  state = tx.init(params)
  update = jax.jit(tx.update)
  updates, new_state = update(params, state, params)
  _, newer_state = update(updates, new_state, params)
  for before, after in zip(jax.tree.leaves(new_state), jax.tree.leaves(newer_state)):
    assert before.sharding.is_equivalent_to(after.sharding, before.ndim)
