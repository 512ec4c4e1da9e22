"""Anon inside the Optax and Flax machinery a JAX user puts it in.

Each test compares the composed optimizer against an independent computation:
the same optimizer run without the wrapper on what the wrapper should hand it.
"""

import functools
import inspect

import anon_reference
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax

STEPS = 20  # Refreshes at steps 1, 2, 4, 8, 16.


def _params():
  return {
    "w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(4, 3),
    "b": jnp.array([0.1, -0.2, 0.3], jnp.float32),
    "norm_scale": jnp.ones(3, jnp.float32),
  }


def _grads(steps=STEPS, seed=0):
  """A fixed sequence of gradients (leading axis: step), varied magnitudes."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda p: jnp.asarray(
      rng.normal(size=(steps,) + p.shape) * 10.0 ** rng.uniform(-2, 1, size=(steps,) + p.shape),
      jnp.float32,
    ),
    _params(),
  )


@functools.cache
def _compiled_scan(tx):
  """One jitted scan per transformation (reused for every run of it)."""

  def step(carry, grad):
    params, state = carry
    updates, state = tx.update(grad, state, params)
    params = optax.apply_updates(params, updates)
    return (params, state), (params, state)

  return jax.jit(lambda carry, grads: jax.lax.scan(step, carry, grads)[1])


def _run(tx, grads, params=None, state=None):
  """Applies `tx` to a gradient sequence (leading axis: step).

  Returns:
    ``(trajectory, states)``: the parameters and the optimizer states after
    every step, stacked along a leading step axis.
  """
  params = _params() if params is None else params
  state = tx.init(params) if state is None else state
  return _compiled_scan(tx)((params, state), grads)


def _at(tree, step):
  """The entry of a stacked trajectory after 1-based `step`."""
  return jax.tree.map(lambda x: x[step - 1], tree)


def _slice(tree, start, stop=None):
  return jax.tree.map(lambda x: x[start:stop], tree)


def _concat(a, b):
  return jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)


def _assert_close(actual, expected, rtol=1e-6, atol=1e-7):
  jax.tree.map(
    functools.partial(np.testing.assert_allclose, rtol=rtol, atol=atol), actual, expected
  )


def _assert_equal(actual, expected):
  jax.tree.map(np.testing.assert_array_equal, actual, expected)


def _first_difference(trajectory_a, trajectory_b):
  """The first step (1-based) at which two trajectories differ, or None."""
  differs = None
  for a, b in zip(jax.tree.leaves(trajectory_a), jax.tree.leaves(trajectory_b)):
    a, b = np.asarray(a), np.asarray(b)
    leaf_differs = (a != b).reshape(len(a), -1).any(axis=1)
    differs = leaf_differs if differs is None else differs | leaf_differs
  return int(np.argmax(differs)) + 1 if differs.any() else None


def _reference(grads, params=None, **hyperparams):
  """The float64 NumPy reference (tests/anon_reference.py), as a trajectory.

  Of `anon`'s default rule (with the step guard) unless ``exact=True``.
  """
  exact = hyperparams.pop("exact", False)
  hyperparams["guard"] = (
    None if exact else inspect.signature(anon_optax.anon).parameters["guard_factor"].default
  )
  params = _params() if params is None else params
  leaves, treedef = jax.tree.flatten(params)
  grad_leaves = [np.asarray(g, np.float64) for g in jax.tree.leaves(grads)]
  steps = len(grad_leaves[0])
  snapshots = anon_reference.anon_reference(
    [np.asarray(p, np.float64) for p in leaves],
    [[g[t] for g in grad_leaves] for t in range(steps)],
    num_steps=steps,
    **hyperparams,
  )
  return jax.tree.unflatten(
    treedef, [np.stack([s[i] for s in snapshots]) for i in range(len(leaves))]
  )


# ----------------------------------------------------------------------------
# optax.chain, inject_hyperparams, multi_transform, MultiSteps,
# apply_if_finite, masked, schedules.
# ----------------------------------------------------------------------------


def test_chain_after_clip_by_global_norm_sees_clipped_gradients():
  grads = _grads()
  clipped, _ = _run(
    optax.chain(optax.clip_by_global_norm(1.0), anon_optax.anon(1e-2, gamma=1.1)), grads
  )
  # Independent: clip each step's gradients by hand, then plain anon.
  norms = np.sqrt(
    sum(np.sum(np.asarray(g).reshape(STEPS, -1) ** 2, axis=1) for g in jax.tree.leaves(grads))
  )
  assert np.all(norms > 1.0)  # Every step is clipped.
  factor = jnp.asarray(1.0 / norms, jnp.float32)
  by_hand = jax.tree.map(lambda g: g * factor.reshape((-1,) + (1,) * (g.ndim - 1)), grads)
  plain = anon_optax.anon(1e-2, gamma=1.1)
  _assert_close(clipped, _run(plain, by_hand)[0], rtol=2e-5, atol=1e-6)
  unclipped, _ = _run(plain, grads)
  assert not np.allclose(clipped["w"], unclipped["w"], rtol=1e-3)


_HYPERPARAMS = dict(learning_rate=1e-2, gamma=1.1, b1=0.9, b2=0.999, eps=1e-16, weight_decay=1e-2)
_CHANGED = dict(learning_rate=3e-2, gamma=-0.5, b1=0.5, b2=0.9, eps=1e-3, weight_decay=0.3)


def test_inject_hyperparams_all_six_are_injected_and_used():
  grads = _grads()
  injected = optax.inject_hyperparams(anon_optax.anon)(**_HYPERPARAMS)
  state0 = injected.init(_params())
  assert set(_HYPERPARAMS) <= set(state0.hyperparams)
  baseline, _ = _run(injected, grads, state=state0)
  _assert_close(baseline, _run(anon_optax.anon(**_HYPERPARAMS), grads)[0], rtol=1e-4, atol=1e-6)
  _assert_close(baseline, _reference(grads, **_HYPERPARAMS), rtol=1e-4, atol=1e-6)
  # Setting each hyperparameter in the injected state (same compiled program)
  # gives what the float64 reference gives with that value, and not the
  # baseline: the injected value is used.
  for name, value in _CHANGED.items():
    hyperparams = dict(state0.hyperparams)
    hyperparams[name] = jnp.asarray(value, jnp.float32)
    trajectory, _ = _run(injected, grads, state=state0._replace(hyperparams=hyperparams))
    expected = _reference(grads, **{**_HYPERPARAMS, name: value})
    _assert_close(trajectory, expected, rtol=1e-4, atol=1e-6)
    assert _first_difference(trajectory, baseline) is not None, name


def test_injected_gamma_change_takes_effect_at_next_refresh():
  # The authors' rule: gamma enters only at refreshes. (The default's step
  # guard reads the current gamma at every step; see docs/algorithm.md.)
  grads = _grads()
  injected = optax.inject_hyperparams(anon_optax.anon)(learning_rate=1e-2, gamma=1.0, exact=True)

  def run_changing_gamma_after_step_5(new_gamma):
    first, states = _run(injected, _slice(grads, 0, 5))
    state = _at(states, 5)
    hyperparams = dict(state.hyperparams, gamma=jnp.asarray(new_gamma, jnp.float32))
    rest, _ = _run(
      injected,
      _slice(grads, 5),
      params=_at(first, 5),
      state=state._replace(hyperparams=hyperparams),
    )
    return _concat(first, rest)

  # The same compiled programs either way, so the comparison is bitwise:
  # identical through step 7, different from the refresh at step 8 on.
  unchanged = run_changing_gamma_after_step_5(1.0)
  changed = run_changing_gamma_after_step_5(3.0)
  assert _first_difference(changed, unchanged) == 8
  # The same as a gamma schedule that switches at count 5.
  schedule = lambda count: jnp.where(count < 5, 1.0, 3.0)
  scheduled, _ = _run(anon_optax.anon(1e-2, gamma=schedule, exact=True), grads)
  _assert_close(changed, scheduled)


def test_gamma_schedule_is_read_only_at_refresh_steps():
  # The authors' rule: gamma enters only at refreshes. (The default's step
  # guard reads the current gamma at every step; see docs/algorithm.md.)
  grads = _grads()

  @jax.jit
  def run_with_window(start, stop, value):
    # gamma is 1 except `value` for counts in [start, stop); one program for
    # every window, so trajectories compare bitwise.
    gamma = lambda count: jnp.where((count >= start) & (count < stop), value, 1.0)
    return _compiled_scan.__wrapped__(anon_optax.anon(1e-2, gamma=gamma, exact=True))(
      (_params(), anon_optax.anon(1e-2).init(_params())), grads
    )[0]

  constant = run_with_window(0, 0, 1.0)
  # Refreshes read gamma at counts 0, 1, 3, 7, 15 (steps 1, 2, 4, 8, 16). A
  # change at counts 8..14 is undone before the next refresh: no effect.
  _assert_equal(run_with_window(8, 15, 3.0), constant)
  # A switch at count 10 changes nothing until the refresh at step 16...
  switched = run_with_window(10, 10**6, 3.0)
  assert _first_difference(switched, constant) == 16
  # ... and from there it is gamma = 3 continued from the state at step 10.
  first, states = _run(anon_optax.anon(1e-2, gamma=1.0, exact=True), _slice(grads, 0, 10))
  rest, _ = _run(
    anon_optax.anon(1e-2, gamma=3.0, exact=True),
    _slice(grads, 10),
    params=_at(first, 10),
    state=_at(states, 10),
  )
  _assert_close(switched, _concat(first, rest))
  # And it is read at the refresh itself: a window covering only count 15.
  assert _first_difference(run_with_window(15, 16, 3.0), constant) == 16


def test_learning_rate_schedule_scales_each_step():
  grads = _grads()
  schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 5, STEPS, 1e-4)
  params = _params()

  # With fixed gradients and no weight decay the Anon state does not depend
  # on the parameters, so the updates are schedule(t - 1) times those at lr 1.
  def updates_of(tx):
    def step(state, grad):
      updates, state = tx.update(grad, state, params)
      return state, updates

    return jax.jit(lambda g: jax.lax.scan(step, tx.init(params), g)[1])(grads)

  scheduled = updates_of(anon_optax.anon(schedule, gamma=1.1))
  unit = updates_of(anon_optax.anon(1.0, gamma=1.1))
  lrs = np.array([schedule(i) for i in range(STEPS)], np.float32)
  assert lrs[0] == 0.0 and lrs.max() > lrs[-1]
  _assert_close(
    scheduled,
    jax.tree.map(lambda u: u * lrs.reshape((-1,) + (1,) * (u.ndim - 1)), unit),
    rtol=1e-5,
    atol=1e-12,
  )


def test_multi_transform_per_group_gamma_equals_separate_optimizers():
  grads = _grads()
  labels = {"w": "matrices", "b": "vectors", "norm_scale": "vectors"}
  tx = optax.multi_transform(
    {"matrices": anon_optax.anon(1e-2, gamma=1.1), "vectors": anon_optax.anon(1e-2, gamma=0.0)},
    labels,
  )
  trajectory, states = _run(tx, grads)
  params = _params()
  matrices, _ = _run(anon_optax.anon(1e-2, gamma=1.1), {"w": grads["w"]}, params={"w": params["w"]})
  vectors, _ = _run(
    anon_optax.anon(1e-2, gamma=0.0),
    {"b": grads["b"], "norm_scale": grads["norm_scale"]},
    params={"b": params["b"], "norm_scale": params["norm_scale"]},
  )
  _assert_close(trajectory, {**matrices, **vectors})
  # gamma = 0 keeps v == 1 for the vectors; gamma = 1.1 does not for w.
  stats = anon_optax.preconditioner_stats(_at(states, STEPS))
  assert float(stats["inner_states/vectors/inner_state/1/v_max"]) == 1.0
  assert float(stats["inner_states/vectors/inner_state/1/v_min"]) == 1.0
  assert float(stats["inner_states/matrices/inner_state/1/v_max"]) != 1.0


def test_multi_steps_refreshes_count_optimizer_steps():
  k, real_steps = 3, 7
  micro = _grads(steps=k * real_steps, seed=1)
  tx = optax.MultiSteps(anon_optax.anon(1e-2, gamma=1.1), every_k_schedule=k)
  trajectory, states = _run(tx, micro)
  state = _at(states, k * real_steps)
  inner = optax.tree.get(state, "ScaleByAnonState")
  assert int(inner.count) == real_steps
  assert int(inner.num_refreshes) == 3  # Steps 1, 2, 4 of 7 real steps.
  assert int(inner.next_refresh) == 8
  assert int(state.gradient_step) == real_steps
  # Equal to plain anon on the averages of each k micro-gradients.
  averaged = jax.tree.map(lambda g: g.reshape((real_steps, k) + g.shape[1:]).mean(axis=1), micro)
  expected, expected_states = _run(anon_optax.anon(1e-2, gamma=1.1), averaged)
  after_real_steps = jax.tree.map(lambda x: x[k - 1 :: k], trajectory)
  _assert_close(after_real_steps, expected, rtol=1e-5, atol=1e-6)
  _assert_close(inner.precond, _at(expected_states, real_steps)[1].precond, rtol=1e-5)


@pytest.mark.parametrize("bad_step", [4, 6])  # A refresh step and another.
def test_apply_if_finite_skips_nan_step_leaving_state_untouched(bad_step):
  grads = _grads(steps=10)
  poisoned = jax.tree.map(lambda g: g.at[bad_step - 1, 0].set(jnp.nan), grads)
  tx = optax.apply_if_finite(anon_optax.anon(1e-2, gamma=1.1), 3)
  trajectory, states = _run(tx, poisoned)
  before, after = _at(states, bad_step - 1), _at(states, bad_step)
  # The NaN step: the parameters and the whole Anon state are bit-identical.
  _assert_equal(_at(trajectory, bad_step), _at(trajectory, bad_step - 1))
  _assert_equal(after.inner_state, before.inner_state)
  assert int(after.notfinite_count) == 1 and not bool(after.last_finite)
  assert int(_at(states, 10).total_notfinite) == 1
  # The whole run equals plain anon with that step's gradient left out.
  skipped = jax.tree.map(lambda g: jnp.concatenate([g[: bad_step - 1], g[bad_step:]]), grads)
  expected, _ = _run(anon_optax.anon(1e-2, gamma=1.1), skipped)
  without_bad = jax.tree.map(
    lambda x: jnp.concatenate([x[: bad_step - 1], x[bad_step:]]), trajectory
  )
  _assert_close(without_bad, expected)


def test_masked_applies_anon_to_the_masked_leaves_only():
  grads = _grads()
  mask = {"w": True, "b": False, "norm_scale": False}
  tx = optax.chain(
    optax.masked(anon_optax.anon(1e-2, gamma=1.1), mask),
    optax.masked(optax.sgd(0.1), {"w": False, "b": True, "norm_scale": True}),
  )
  trajectory, _ = _run(tx, grads)
  params = _params()
  expected_w, _ = _run(
    anon_optax.anon(1e-2, gamma=1.1), {"w": grads["w"]}, params={"w": params["w"]}
  )
  _assert_close(trajectory["w"], expected_w["w"])
  for name in ("b", "norm_scale"):
    sgd = params[name] - 0.1 * np.cumsum(np.asarray(grads[name]), axis=0)
    np.testing.assert_allclose(trajectory[name], sgd, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# Flax: nnx.Optimizer and train_state.TrainState.
# ----------------------------------------------------------------------------


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 4)).astype(np.float32)
  y = (x @ rng.normal(size=(4, 1)) + 0.5 * np.sin(x[:, :1])).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(y)


def _hand_rolled(loss_fn, params, tx, steps):
  """The plain Optax loop: grads, tx.update, apply_updates."""
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  losses = []
  for _ in range(steps):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  return params, losses


def test_flax_nnx_optimizer_trains_and_matches_optax_loop():
  from flax import nnx  # pylint: disable=g-import-not-at-top

  class MLP(nnx.Module):
    def __init__(self, rngs):
      self.hidden = nnx.Linear(4, 16, rngs=rngs)
      self.norm = nnx.LayerNorm(16, rngs=rngs)
      self.out = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
      return self.out(nnx.relu(self.norm(self.hidden(x))))

  x, y = _data()
  tx = anon_optax.anon(3e-2, gamma=1.1, weight_decay=1e-4)
  model = MLP(nnx.Rngs(0))
  graphdef, initial = nnx.split(nnx.clone(model), nnx.Param)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer):
    loss_fn = lambda model: jnp.mean((model(x) - y) ** 2)
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(train_step(model, optimizer)) for _ in range(30)]
  assert losses[-1] < 0.5 * losses[0]
  anon_state = optax.tree.get(nnx.to_pure_dict(nnx.state(optimizer)), "num_refreshes")
  assert int(anon_state) == 5  # Steps 1, 2, 4, 8, 16.

  def loss_fn(params):
    return jnp.mean((nnx.merge(graphdef, params)(x) - y) ** 2)

  expected, expected_losses = _hand_rolled(loss_fn, initial, tx, 30)
  np.testing.assert_allclose(losses, expected_losses, rtol=1e-5)
  _assert_close(nnx.state(model, nnx.Param), expected, rtol=1e-5, atol=1e-6)


def test_flax_train_state_trains_and_matches_optax_loop():
  from flax import linen as nn  # pylint: disable=g-import-not-at-top
  from flax.training import train_state  # pylint: disable=g-import-not-at-top

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.LayerNorm()(nn.Dense(16)(x)))
      return nn.Dense(1)(x)

  x, y = _data()
  model = MLP()
  params = model.init(jax.random.key(0), x)["params"]
  tx = anon_optax.anon(3e-2, gamma=1.1, weight_decay=1e-2, weight_decay_mode="decoupled")
  state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

  def loss_fn(params):
    return jnp.mean((model.apply({"params": params}, x) - y) ** 2)

  @jax.jit
  def train_step(state):
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss

  losses = []
  for _ in range(30):
    state, loss = train_step(state)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0]
  assert int(state.step) == 30
  expected, expected_losses = _hand_rolled(loss_fn, params, tx, 30)
  np.testing.assert_allclose(losses, expected_losses, rtol=1e-5)
  _assert_close(state.params, expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# inject_hyperparams with complex parameters.
# ----------------------------------------------------------------------------


def _complex_params(real_leaf):
  params = {
    "w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3) * (1 - 0.5j),
    "b": jnp.ones(3, jnp.complex64),
  }
  if real_leaf:
    # inject_hyperparams makes the hyperparameters of the whole tree complex; the updates of a
    # real leaf stay real, as without it. (optax.adam's become complex.)
    params["scale"] = jnp.linspace(0.5, 1.5, 3, dtype=jnp.float32)
  return params


def _complex_grads(step, params):
  def grad(p):
    real = jnp.sin(3.0 * p.real + step)
    if not jnp.iscomplexobj(p):
      return real
    return (real + 1j * jnp.cos(p.imag - 2.0 * step)).astype(p.dtype)

  return jax.tree.map(grad, params)


def _complex_trajectory(tx, steps=STEPS, jit=True, real_leaf=True):
  params = _complex_params(real_leaf)
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  trajectory = []
  for step in range(1, steps + 1):
    updates, state = update(_complex_grads(step, params), state, params)
    params = optax.apply_updates(params, updates)
    trajectory.append(updates)
  return trajectory


_COMPLEX_INJECTABLE = {
  "anon": anon_optax.anon,
  "anon_exact": functools.partial(anon_optax.anon, exact=True),
  "hvadam": anon_optax.hvadam,
}


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("name", sorted(_COMPLEX_INJECTABLE))
def test_inject_hyperparams_with_complex_params_equals_plain_hyperparams(name, jit):
  # optax.inject_hyperparams casts every float hyperparameter to the parameters' dtype, so with
  # complex parameters b1, b2, ... arrive complex (imaginary part zero), as optax.adam takes them.
  factory = _COMPLEX_INJECTABLE[name]
  hyperparams = dict(learning_rate=1e-2, b1=0.8, b2=0.99, gamma=0.5)
  # HVAdam's real leaves still get complex updates from complex hyperparameters, as Adam's do.
  real_leaf = name != "hvadam"
  injected = optax.inject_hyperparams(factory)(**hyperparams)
  injected = _complex_trajectory(injected, jit=jit, real_leaf=real_leaf)
  plain = _complex_trajectory(factory(**hyperparams), jit=jit, real_leaf=real_leaf)
  # Injected values are float32 where the plain ones are Python numbers (1 - b2 is formed in
  # float32), so they agree to float32 round-off, amplified a little by the refreshes.
  for got, want in zip(injected, plain):
    assert jax.tree.map(lambda x: x.dtype, got) == jax.tree.map(lambda x: x.dtype, want)
    _assert_close(got, want, rtol=2e-4, atol=1e-7)


def test_inject_hyperparams_complex_and_real_hyperparameters_agree_bitwise():
  # A complex hyperparameter with zero imaginary part is its real part, exactly.
  hyperparams = dict(learning_rate=1e-2, b1=0.8, b2=0.99, gamma=1.1, beta3=0.3)
  as_complex = optax.inject_hyperparams(anon_optax.anon)(**hyperparams)
  as_real = optax.inject_hyperparams(anon_optax.anon, hyperparam_dtype=jnp.float32)(**hyperparams)
  for got, want in zip(_complex_trajectory(as_complex), _complex_trajectory(as_real)):
    _assert_equal(got, want)
