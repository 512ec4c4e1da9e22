"""`anon_optax.hvadam` and `scale_by_hvadam`: the NumPy reference of docs/algorithm.md, inputs
off the happy path (dtypes, leaves, argument checks, bfloat16 hyperparameters) and eager steps.

The reference (`hvadam_reference.py`) is written from docs/algorithm.md alone, without JAX.
The gradients are precomputed and independent of the parameters (except for
the `l2` decay, which adds `wd * theta`), so the hidden-vector state evolves
the same way on both sides and whole trajectories stay comparable at a tight
tolerance over `NUM_STEPS` steps (docs/algorithm.md notes that HVAdam is chaotic in a smooth
valley, where the gradients feed back on the parameters).

The gradient sequence walks through every branch of the hidden vector:

- steps 1-2: zero gradients. Step 1 restarts the hidden vector (`h = mh = 0`),
  step 2 has `mh = 0`, an undefined agreement: skip;
- step 3: `h = 0` is collinear with any `mh` (the authors' 0/0 = NaN): our
  `delta = 0`, a switch-off; step 4 restarts;
- steps 4-20: gradients growing along one direction plus a little noise, so
  `mh - h` is parallel to `mh`, `delta` is small, and switch-offs and restarts
  alternate;
- steps 21-48: noise of the same size, so `mh - h` is nearly orthogonal to
  `mh`, `delta` is near 1 and the hidden vector takes extra steps.

The tests assert from the reference's branch log that each branch was taken.

Eager (un-jitted) `update` calls compile nothing per step: `b ** count` with a concrete step
count would take `jnp.power`'s concrete-integer path (`lax.integer_pow` specialised on the
exponent), a new program for each step number.
"""

import functools
import resource

import chex
from conftest import assert_restored_state_returns_to_configured_dtypes
from conftest import COMPILE_EVENT
from conftest import count_compilations
from conftest import UPDATE_DTYPE_PAIRS
import hvadam_reference as ref
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax

NUM_STEPS = 48
LR = 0.1
GROWTH_END = 20

# float64: the same formulas in the same precision; what is left is round-off
# from differently ordered reductions (tree-wide inner products, `pow`), a few
# ulps per step. Measured worst case about 1e-13 relative.
F64_RTOL = 1e-10
F64_ATOL = 1e-12

GAMMAS = (0.0, 0.5, 2.0)
# (mode, weight_decay): "fixed" is not scaled by the learning rate.
DECAYS = (("l2", 0.1), ("decoupled", 0.1), ("fixed", 0.01))

SHAPES = {"a": [(3,), (2, 2)], "b": {"c": (4,), "s": ()}}
MASK = {"a": [True, False], "b": {"c": True, "s": False}}


def _leaves_shapes():
  return jax.tree.leaves(SHAPES, is_leaf=lambda x: isinstance(x, tuple))


def _to_tree(leaves):
  treedef = jax.tree.structure(SHAPES, is_leaf=lambda x: isinstance(x, tuple))
  return jax.tree.unflatten(treedef, list(leaves))


def _gradients(seed=0, num_steps=NUM_STEPS, growth=1.3, noise=0.01):
  """One list of leaves per step (see the module docstring)."""
  rng = np.random.default_rng(seed)
  shapes = _leaves_shapes()
  direction = [rng.normal(size=s) for s in shapes]
  grads = []
  for t in range(1, num_steps + 1):
    if t <= 2:
      grads.append([np.zeros(s) for s in shapes])
    elif t <= GROWTH_END:
      grads.append([growth ** (t - 2) * d + noise * rng.normal(size=d.shape) for d in direction])
    else:
      size = growth ** (GROWTH_END - 2)
      grads.append([size * rng.normal(size=s) for s in shapes])
  return grads


def _initial_params():
  # Zeros, so that the `l2` decay leaves the first two gradients at zero.
  return [np.zeros(s) for s in _leaves_shapes()]


def _hvadam_state(state):
  """The ScaleByHVAdamState inside a chain's state."""
  found = [
    s
    for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, anon_optax.ScaleByHVAdamState))
    if isinstance(s, anon_optax.ScaleByHVAdamState)
  ]
  assert len(found) == 1
  return found[0]


def _branch(before, after):
  """Which branch the transformation took, read from its scalar state."""
  if int(before.flag) == -1:
    return "restart"
  if int(after.step2) == int(before.step2):
    return "skip"
  return "switch_off" if int(after.flag) == -1 else "extra_step"


def _run(tx, params, grads, *, update=None, state=None):
  """Runs `tx`; returns per-step params, hidden vectors, exp_delta, branches.

  `update` defaults to `jax.jit(tx.update)`; `state` to `tx.init(params)`.
  """
  state = tx.init(params) if state is None else state
  update = jax.jit(tx.update) if update is None else update
  out = {"params": [], "hidden": [], "exp_delta": [], "branches": []}
  for step_grads in grads:
    before = _hvadam_state(state)
    updates, state = update(_to_tree(step_grads), state, params)
    params = optax.apply_updates(params, updates)
    after = _hvadam_state(state)
    out["params"].append(jax.tree.leaves(params))
    out["hidden"].append(jax.tree.leaves(after.hidden))
    out["exp_delta"].append(float(after.exp_delta))
    out["branches"].append(_branch(before, after))
  return out


def _assert_matches(out, trace, rtol=F64_RTOL, atol=F64_ATOL):
  assert out["branches"] == trace.branches
  chex.assert_trees_all_close(out["params"], trace.params, rtol=rtol, atol=atol)
  chex.assert_trees_all_close(out["hidden"], trace.hidden, rtol=rtol, atol=atol)
  np.testing.assert_allclose(out["exp_delta"], trace.exp_delta, rtol=rtol, atol=atol)


def _assert_all_branches(trace):
  taken = set(trace.branches)
  assert taken == set(ref.BRANCHES), taken
  # A restart after the first step, i.e. one that follows a switch-off.
  assert "restart" in trace.branches[1:]


# ----------------------------------------------------------------------------
# Equivalence with the reference, float64.
# ----------------------------------------------------------------------------


@functools.cache
def _update_with_traced_gamma(mode, weight_decay):
  """One compiled `hvadam(...).update` per decay mode, gamma an argument.

  Building the optimizer inside `jit` with a traced gamma also checks that no
  Python branch looks at gamma's value; and the three gammas share one
  compilation, which keeps this file fast.
  """

  def update(gamma, grads, state, params):
    tx = anon_optax.hvadam(
      LR, gamma=gamma, weight_decay=weight_decay, weight_decay_mode=mode, mask=MASK
    )
    return tx.update(grads, state, params)

  return jax.jit(update)


@pytest.mark.parametrize("mode,weight_decay", DECAYS)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_matches_reference(x64, gamma, mode, weight_decay):
  del x64
  grads = _gradients()
  trace = ref.hvadam_reference(
    _initial_params(),
    grads,
    learning_rate=LR,
    gamma=gamma,
    weight_decay=weight_decay,
    weight_decay_mode=mode,
    mask=jax.tree.leaves(MASK),
  )
  _assert_all_branches(trace)
  tx = anon_optax.hvadam(
    LR, gamma=gamma, weight_decay=weight_decay, weight_decay_mode=mode, mask=MASK
  )
  update = functools.partial(_update_with_traced_gamma(mode, weight_decay), jnp.asarray(gamma))
  out = _run(tx, _to_tree(jnp.asarray(p) for p in _initial_params()), grads, update=update)
  _assert_matches(out, trace)


def test_matches_reference_without_jit(x64):
  del x64
  # Eager dispatch is slow: a short run on a small tree (restart, skip,
  # switch-off, restart, ...).
  params = {"w": jnp.zeros(3), "b": [jnp.zeros(())]}
  rng = np.random.default_rng(1)
  grads = [[np.zeros(()), np.zeros(3)]] * 2 + [
    [
      1.3**t * np.array(0.5) + 0.01 * rng.normal(),
      1.3**t * np.array([1.0, -2.0, 0.5]) + 0.01 * rng.normal(size=3),
    ]
    for t in range(6)
  ]
  trace = ref.hvadam_reference([np.zeros(()), np.zeros(3)], grads, learning_rate=LR, gamma=0.5)
  assert {"restart", "skip", "switch_off"} <= set(trace.branches)
  tx = anon_optax.hvadam(LR, gamma=0.5)
  state = tx.init(params)
  for step_grads, expected in zip(grads, trace.params):
    updates, state = tx.update(
      {"b": [jnp.asarray(step_grads[0])], "w": jnp.asarray(step_grads[1])}, state, params
    )
    params = optax.apply_updates(params, updates)
    chex.assert_trees_all_close(jax.tree.leaves(params), expected, rtol=F64_RTOL, atol=F64_ATOL)


def test_schedules_match_reference(x64):
  del x64
  grads = _gradients(seed=2)
  # Schedules computed in float64 (Optax's own schedules compute in float32,
  # whose eager and compiled evaluations may differ by an ulp).
  learning_rate = lambda count: 0.2 / (1.0 + 0.05 * count)
  gamma = lambda count: 2.0 / (1.0 + count)
  # eps = 1e-3 is large enough for each of its three uses (in w, stored into
  # var every step, in the denominator) to show at the tolerance.
  trace = ref.hvadam_reference(
    _initial_params(),
    grads,
    b1=0.8,
    b2=0.99,
    eps=1e-3,
    learning_rate=learning_rate,
    gamma=gamma,
    weight_decay=0.05,
    weight_decay_mode="decoupled",
  )
  tx = anon_optax.hvadam(
    learning_rate,
    b1=0.8,
    b2=0.99,
    eps=1e-3,
    gamma=gamma,
    weight_decay=0.05,
    weight_decay_mode="decoupled",
  )
  out = _run(tx, _to_tree(jnp.asarray(p) for p in _initial_params()), grads)
  _assert_matches(out, trace)


def test_complex_params_match_reference(x64):
  del x64
  rng = np.random.default_rng(3)
  real = _gradients(seed=3)
  grads = [
    [g + 1j * rng.normal(size=g.shape) * np.max(np.abs(g)) * 0.01 for g in step] for step in real
  ]
  params = [np.zeros(s, np.complex128) for s in _leaves_shapes()]
  trace = ref.hvadam_reference(
    params, grads, learning_rate=LR, gamma=0.5, weight_decay=0.1, weight_decay_mode="l2"
  )
  tx = anon_optax.hvadam(LR, gamma=0.5, weight_decay=0.1)
  out = _run(tx, _to_tree(jnp.asarray(p) for p in params), grads)
  _assert_matches(out, trace)


def test_float32_close_to_reference():
  grads = _gradients(seed=4)
  trace = ref.hvadam_reference(_initial_params(), grads, learning_rate=LR, gamma=0.5)
  tx = anon_optax.hvadam(LR, gamma=0.5)
  grads32 = [[g.astype(np.float32) for g in step] for step in grads]
  params = _to_tree(jnp.zeros(s, jnp.float32) for s in _leaves_shapes())
  out = _run(tx, params, grads32)
  assert out["branches"] == trace.branches
  chex.assert_trees_all_close(out["params"][-1], trace.params[-1], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------
# The authors' division by zero: collinear h and mh.
# ----------------------------------------------------------------------------


def _alternating_grads(num_steps=6):
  g = [np.linspace(-1.0, 1.0, int(np.prod(s))).reshape(s) + 0.25 for s in _leaves_shapes()]
  return [[(-1) ** t * x for x in g] for t in range(num_steps)]


@pytest.mark.parametrize("case", ["zero_hidden", "opposite_hidden"])
def test_collinear_hidden_vector_stays_finite(case):
  if case == "zero_hidden":  # h = 0 after a restart on zero gradients.
    grads, b1 = _gradients(num_steps=6), 0.9
  else:  # b1 = 0 and alternating signs: mh = -h exactly.
    grads, b1 = _alternating_grads(), 0.0
  literal = ref.hvadam_reference(
    _initial_params(), grads, learning_rate=LR, b1=b1, literal_division=True
  )
  assert not np.all(np.isfinite(literal.params[-1][0]))  # The authors' NaN.
  trace = ref.hvadam_reference(_initial_params(), grads, learning_rate=LR, b1=b1)
  assert "switch_off" in trace.branches  # Our delta = 0 there.
  tx = anon_optax.hvadam(LR, b1=b1)
  params = _to_tree(jnp.zeros(s, jnp.float32) for s in _leaves_shapes())
  out = _run(tx, params, grads)
  assert out["branches"] == trace.branches
  chex.assert_tree_all_finite(out["params"][-1])
  chex.assert_trees_all_close(out["params"][-1], trace.params[-1], rtol=1e-5, atol=1e-6)


def test_zero_eps_and_zero_gradients_stay_finite():
  tx = anon_optax.scale_by_hvadam(eps=0.0, gamma=0.0)
  params = {"w": jnp.zeros(3)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  for g in ([0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]):
    updates, state = update({"w": jnp.array(g)}, state)
    chex.assert_tree_all_finite((updates, state))


# ----------------------------------------------------------------------------
# Differentiation: gradients through HVAdam's steps equal central finite
# differences (float64).
# ----------------------------------------------------------------------------


def _forcing(seed=0, size=6, num_growth=6, num_noise=8):
  """Gradients growing along one direction (restarts, switch-offs), then noise (extra steps)."""
  rng = np.random.default_rng(seed)
  direction = rng.normal(size=size)
  growth = [1.3**t * direction + 0.01 * rng.normal(size=size) for t in range(num_growth)]
  noise = [1.3**num_growth * rng.normal(size=size) for _ in range(num_noise)]
  return np.stack(growth + noise)


def _loss_after_steps(learning_rate, b1, params, forcing, branches=None):
  """sum(params**2) after one step per row of `forcing`; gradients `forcing[t] + 0.1 params`."""
  tx = anon_optax.hvadam(learning_rate, b1=b1, gamma=0.5)
  state = tx.init(params)
  for step_forcing in forcing:
    before = _hvadam_state(state)
    updates, state = tx.update(step_forcing + 0.1 * params, state, params)
    params = optax.apply_updates(params, updates)
    if branches is not None:
      branches.append(_branch(before, _hvadam_state(state)))
  return jnp.sum(params**2)


def _directional_difference(f, x, direction, h):
  """Central difference of `f` at `x` along `direction` (of the same shape)."""
  return (f(x + h * direction) - f(x - h * direction)) / (2 * h)


@pytest.mark.usefixtures("x64")
def test_gradient_through_steps_equals_finite_differences():
  learning_rate, b1 = 0.05, 0.9
  params = jnp.asarray(0.01 * np.random.default_rng(1).normal(size=6))
  forcing = jnp.asarray(_forcing())
  branches = []
  _loss_after_steps(learning_rate, b1, params, forcing, branches)
  assert {"restart", "switch_off", "extra_step"} <= set(branches), branches
  assert "restart" in branches[1:]  # One that follows a switch-off.
  loss = lambda lr, b1, p, g: _loss_after_steps(lr, b1, p, g)
  d_lr, d_b1, d_params, d_forcing = jax.grad(loss, argnums=(0, 1, 2, 3))(
    learning_rate, b1, params, forcing
  )
  rng = np.random.default_rng(2)
  along_params = jnp.asarray(rng.normal(size=params.shape))
  along_forcing = jnp.asarray(rng.normal(size=forcing.shape))
  expected = {
    "lr": _directional_difference(lambda x: loss(x, b1, params, forcing), learning_rate, 1.0, 1e-6),
    "b1": _directional_difference(lambda x: loss(learning_rate, x, params, forcing), b1, 1.0, 1e-6),
    "params": _directional_difference(
      lambda x: loss(learning_rate, b1, x, forcing), params, along_params, 1e-6
    ),
    "forcing": _directional_difference(
      lambda x: loss(learning_rate, b1, params, x), forcing, along_forcing, 1e-6
    ),
  }
  got = {
    "lr": d_lr,
    "b1": d_b1,
    "params": jnp.vdot(d_params, along_params),
    "forcing": jnp.vdot(d_forcing, along_forcing),
  }
  for name, value in got.items():
    np.testing.assert_allclose(value, expected[name], rtol=1e-6, err_msg=name)
  # Forward mode agrees with reverse mode.
  _, tangent = jax.jvp(
    lambda p, g: loss(learning_rate, b1, p, g), (params, forcing), (along_params, along_forcing)
  )
  np.testing.assert_allclose(tangent, got["params"] + got["forcing"], rtol=1e-9)


def test_scale_by_hvadam_is_differentiable_with_respect_to_its_input():
  tx = anon_optax.scale_by_hvadam()
  state = tx.init(jnp.zeros(3))
  # At the first step the update is 0.9 sign(g) + O(eps), flat in g.
  grad = jax.grad(lambda g: jnp.sum(tx.update(g, state)[0]))(jnp.array([1.0, -2.0, 0.5]))
  chex.assert_tree_all_finite(grad)
  np.testing.assert_allclose(grad, 0.0, atol=1e-6)


# ----------------------------------------------------------------------------
# JAX's NaN and Inf debugging: no NaN or infinity is computed on a healthy
# step, not even in a branch that `where` discards.
# ----------------------------------------------------------------------------


def _debug_flag(flag):
  return {"nans": jax.debug_nans, "infs": jax.debug_infs}[flag](True)


@pytest.mark.parametrize("flag", ["nans", "infs"])
@pytest.mark.parametrize("jit", [False, True], ids=["op_by_op", "jit"])
def test_healthy_steps_trip_no_nan_or_inf_debugging(flag, jit):
  # Zero gradients (an undefined agreement), then growth (switch-offs and
  # restarts), then noise (extra steps): every branch.
  grads = [[g.astype(np.float32) for g in step] for step in _gradients(seed=7, num_steps=24)]
  trace = ref.hvadam_reference(_initial_params(), grads, learning_rate=LR, gamma=0.5)
  assert set(trace.branches) == set(ref.BRANCHES)
  tx = anon_optax.hvadam(LR, gamma=0.5, weight_decay=1e-3)
  params = _to_tree(jnp.zeros(s, jnp.float32) for s in _leaves_shapes())
  with _debug_flag(flag), jax.disable_jit(not jit):
    out = _run(tx, params, grads, update=jax.jit(tx.update) if jit else tx.update)
  assert out["branches"] == trace.branches
  chex.assert_tree_all_finite(out["params"])


# ----------------------------------------------------------------------------
# Huge finite gradients: squares and inner products beyond float32's range.
# ----------------------------------------------------------------------------


def _unit_gradients(num_steps=12, size=64, seed=8, num_growth=6):
  """Largest magnitude 1: growth along one direction (restarts, switch-offs), then noise."""
  rng = np.random.default_rng(seed)
  direction = rng.uniform(-1.0, 1.0, size)
  steps = [1.3**t * direction + 0.01 * rng.uniform(-1.0, 1.0, size) for t in range(num_growth)]
  steps += [1.3**num_growth * rng.uniform(-1.0, 1.0, size) for _ in range(num_steps - num_growth)]
  largest = max(np.max(np.abs(x)) for x in steps)
  return [x / largest for x in steps]


@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("scale", [1e20, 1e30, 3e38])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_huge_finite_gradients_give_finite_updates(scale, jit, gamma):
  """optax.adam's updates are 0 there (its second moment is inf); HVAdam's must not be NaN."""
  tx = anon_optax.hvadam(1e-3, gamma=gamma)
  params = {"w": jnp.zeros(64, jnp.float32)}
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  for step, unit in enumerate(_unit_gradients()):
    grads = {"w": jnp.asarray(scale * unit, jnp.float32)}
    assert bool(jnp.all(jnp.isfinite(grads["w"])))
    updates, state = update(grads, state, params)
    non_finite = int(jnp.sum(~jnp.isfinite(updates["w"])))
    assert non_finite == 0, f"step {step}: {non_finite} of 64 updates not finite"
    params = optax.apply_updates(params, updates)


# With these gammas no second moment leaves float32's range: w = r^2 / (q + gamma r + eps) is
# at most r / gamma. (At gamma = 0 one would, and its step be 0 against the reference's.)
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_gradients_whose_inner_products_overflow_match_the_reference(gamma):
  """|g| up to 3e18 on 256 elements: the squares fit float32, their sums over the leaf do not.

  The agreement is a ratio of the sums, so it is computed from rescaled sums;
  branches and parameters follow the float64 reference at float32 precision.
  """
  grads = [[3e18 * u] for u in _unit_gradients(size=256)]
  assert all(np.all(np.isfinite(np.square(g[0]).astype(np.float32))) for g in grads)
  with np.errstate(over="ignore"):
    assert not all(np.isfinite(np.sum(np.square(g[0]), dtype=np.float32)) for g in grads)
  trace = ref.hvadam_reference([np.zeros(256)], grads, learning_rate=LR, gamma=gamma)
  assert {"restart", "switch_off", "extra_step"} <= set(trace.branches), trace.branches
  tx = anon_optax.hvadam(LR, gamma=gamma)
  params = jnp.zeros(256, jnp.float32)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for step, (step_grads, expected) in enumerate(zip(grads, trace.params)):
    before = _hvadam_state(state)
    updates, state = update(jnp.asarray(step_grads[0], jnp.float32), state, params)
    params = optax.apply_updates(params, updates)
    assert _branch(before, _hvadam_state(state)) == trace.branches[step], step
    np.testing.assert_allclose(
      params, expected[0], rtol=1e-4, atol=1e-4 * np.max(np.abs(expected[0]))
    )


# ----------------------------------------------------------------------------
# Optax behaviour: dtypes, traced hyperparameters, validation.
# ----------------------------------------------------------------------------


def _state_signature(state):
  return jax.tree.map(lambda x: (jnp.shape(x), jnp.asarray(x).dtype), state)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32, jnp.complex64])
def test_dtypes_are_kept(dtype):
  tx = anon_optax.hvadam(1e-2, gamma=0.5, weight_decay=1e-3, weight_decay_mode="decoupled")
  params = {"w": jnp.ones((3, 2), dtype), "b": [jnp.zeros((2,), dtype)]}
  state = tx.init(params)
  signature = _state_signature(state)
  hv_state = _hvadam_state(state)
  assert hv_state.mu["w"].dtype == jnp.promote_types(dtype, jnp.float32)
  assert hv_state.var["w"].dtype == jnp.float32
  assert hv_state.exp_delta.dtype == jnp.float32
  update = jax.jit(tx.update)
  rng = np.random.default_rng(0)
  for _ in range(3):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    jax.tree.map(lambda u, p: (u.dtype == p.dtype) or pytest.fail(u.dtype), updates, params)
    assert _state_signature(state) == signature
    chex.assert_tree_all_finite(params)
  assert update._cache_size() == 1  # pylint: disable=protected-access


def test_inject_hyperparams_matches_plain():
  grads = [[g.astype(np.float32) for g in step] for step in _gradients(seed=5, num_steps=24)]
  params = _to_tree(jnp.zeros(s, jnp.float32) for s in _leaves_shapes())
  kwargs = dict(b1=0.85, b2=0.995, eps=1e-12, weight_decay=0.05, weight_decay_mode="fixed")
  plain = _run(anon_optax.hvadam(LR, gamma=2.0, **kwargs), params, grads)
  injected_tx = optax.inject_hyperparams(anon_optax.hvadam)(learning_rate=LR, gamma=2.0, **kwargs)
  update = jax.jit(injected_tx.update)
  injected = _run(injected_tx, params, grads, update=update)
  assert injected["branches"] == plain["branches"]
  chex.assert_trees_all_close(injected["params"], plain["params"], rtol=1e-5, atol=1e-6)
  # A hyperparameter changed in the state takes effect, without recompiling.
  state = injected_tx.init(params)
  state.hyperparams["gamma"] = jnp.full_like(state.hyperparams["gamma"], 0.5)
  changed = _run(injected_tx, params, grads, update=update, state=state)
  assert update._cache_size() == 1  # pylint: disable=protected-access
  expected = _run(anon_optax.hvadam(LR, gamma=0.5, **kwargs), params, grads)
  chex.assert_trees_all_close(changed["params"], expected["params"], rtol=1e-5, atol=1e-6)
  assert not np.allclose(changed["params"][-1][0], plain["params"][-1][0])


def test_vmap_over_gamma():
  steps = [[g.astype(np.float32) for g in step] for step in _gradients(seed=6, num_steps=24)]
  grads = _to_tree(np.stack([step[i] for step in steps]) for i in range(len(_leaves_shapes())))
  params = _to_tree(jnp.zeros(s, jnp.float32) for s in _leaves_shapes())

  def final_params(gamma):
    tx = anon_optax.hvadam(LR, gamma=gamma)

    def step(carry, step_grads):
      p, state = carry
      updates, state = tx.update(step_grads, state, p)
      return (optax.apply_updates(p, updates), state), None

    (p, _), _ = jax.lax.scan(step, (params, tx.init(params)), grads)
    return p

  swept = jax.jit(jax.vmap(final_params))(jnp.array(GAMMAS))
  for i, gamma in enumerate(GAMMAS):
    trace = ref.hvadam_reference(_initial_params(), steps, learning_rate=LR, gamma=gamma)
    chex.assert_trees_all_close(
      jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], swept)),
      trace.params[-1],
      rtol=1e-4,
      atol=1e-5,
    )


@pytest.mark.parametrize(
  "kwargs,name",
  [
    ({"b1": 1.0}, "b1"),
    ({"b1": -0.1}, "b1"),
    ({"b2": 1.0}, "b2"),
    ({"b2": float("nan")}, "b2"),
    ({"eps": -1e-8}, "eps"),
    ({"gamma": float("inf")}, "gamma"),
    ({"gamma": float("nan")}, "gamma"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"weight_decay_mode": "l1"}, "weight_decay_mode"),
    ({"learning_rate": float("nan")}, "learning_rate"),
  ],
)
def test_invalid_hyperparameters_raise(kwargs, name):
  kwargs = {"learning_rate": 1e-3, **kwargs}
  with pytest.raises(ValueError, match=name):
    anon_optax.hvadam(**kwargs)
  scale_kwargs = {k: v for k, v in kwargs.items() if k in ("b1", "b2", "eps", "gamma")}
  if scale_kwargs:
    with pytest.raises(ValueError, match=name):
      anon_optax.scale_by_hvadam(**scale_kwargs)


def test_first_state_restarts_hidden_vector():
  tx = anon_optax.scale_by_hvadam()
  state = tx.init({"w": jnp.zeros(2)})
  assert int(state.flag) == -1
  grads = {"w": jnp.array([1.0, -2.0])}
  updates, state = jax.jit(tx.update)(grads, state)
  assert int(state.flag) == 0 and int(state.step2) == 0
  chex.assert_trees_all_close(state.hidden, grads, rtol=1e-6)  # h = mh.
  # The first step: 0.9 sign(g) at gamma = 0 (r = g^2, q = 0.81 g^2).
  chex.assert_trees_all_close(updates, {"w": jnp.array([0.9, -0.9])}, rtol=1e-5)


def _tree(dtype, values=(0.5, -1.5, 2.0)):
  return {"w": jnp.asarray(np.reshape(values, (3, 1)), dtype), "b": jnp.asarray(values[0], dtype)}


def _first_update(tx, param_dtype, grad_dtype):
  params = _tree(param_dtype)
  grads = _tree(grad_dtype, values=(1, -2, 3))
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


# ----------------------------------------------------------------------------
# Inputs off the happy path: dtypes and leaves.
# ----------------------------------------------------------------------------


# Complex gradients of real parameters raise: see the test below.
@pytest.mark.parametrize("param_dtype, grad_dtype", UPDATE_DTYPE_PAIRS)
def test_update_dtype_is_adams(param_dtype, grad_dtype):
  expected = _first_update(optax.adam(1e-2), param_dtype, grad_dtype)
  updates = _first_update(anon_optax.hvadam(1e-2, gamma=0.5), param_dtype, grad_dtype)
  chex.assert_trees_all_equal_dtypes(updates, expected)
  # Integer gradients are not cast back to int (zero updates).
  for leaf in jax.tree.leaves(updates):
    assert np.all(np.abs(np.asarray(leaf, np.complex64)) > 0)


def test_update_dtype_is_adams_in_float64(x64):
  for param_dtype in (jnp.float64, jnp.float32, jnp.complex128):
    for grad_dtype in (jnp.float64, jnp.float32, jnp.bfloat16, jnp.int64):
      expected = _first_update(optax.adam(1e-2), param_dtype, grad_dtype)
      updates = _first_update(anon_optax.hvadam(1e-2), param_dtype, grad_dtype)
      chex.assert_trees_all_equal_dtypes(updates, expected)


def _typed_hyperparameters(float64):
  """The types of a hyperparameter: a Python float, NumPy and JAX scalars (float64 under x64)."""
  kinds = {
    "python": float,
    "np32": np.float32,
    "np64": np.float64,
    "jnp32": lambda x: jnp.asarray(x, jnp.float32),
    "jnp16": lambda x: jnp.asarray(x, jnp.bfloat16),
  }
  if float64:
    kinds["jnp64"] = lambda x: jnp.asarray(x, jnp.float64)
  return kinds


def _assert_update_dtype_with_typed_hyperparameters_is_adams(param_dtypes, float64):
  values = {"b1": 0.875, "b2": 0.9921875, "eps": 2.0**-30}
  for param_dtype in param_dtypes:
    params = jnp.ones(3, param_dtype)
    for kind, make in _typed_hyperparameters(float64).items():
      for name, value in values.items():
        kwargs = {name: make(value)}
        adam = optax.adam(1e-3, **kwargs)
        expected = adam.update(params, adam.init(params), params)[0].dtype
        tx = anon_optax.hvadam(1e-3, **kwargs)
        got = tx.update(params, tx.init(params), params)[0].dtype
        assert got == expected, (param_dtype, kind, name, got, expected)


def test_update_dtype_with_typed_hyperparameters_is_adams():
  _assert_update_dtype_with_typed_hyperparameters_is_adams((jnp.float32, jnp.bfloat16), False)


def test_update_dtype_with_typed_hyperparameters_is_adams_in_float64(x64):
  del x64
  _assert_update_dtype_with_typed_hyperparameters_is_adams(
    (jnp.float64, jnp.float32, jnp.bfloat16), True
  )


def test_restored_hvadam_state_returns_to_the_configured_dtypes():
  params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(3)}
  tx = anon_optax.hvadam(1e-3)
  # HVAdam has no storage options: restore from a copy of its state cast to bfloat16.
  saved_state = jax.tree.map(
    lambda x: x.astype(jnp.bfloat16) if x.dtype == jnp.float32 else x, tx.init(params)
  )
  assert_restored_state_returns_to_configured_dtypes(tx, saved_state, params)


def test_complex_gradients_of_real_parameters_raise():
  tx = anon_optax.hvadam(1e-2)
  params = _tree(jnp.float32)
  with pytest.raises(TypeError, match="complex gradients for real"):
    tx.update(_tree(jnp.complex64), tx.init(params), params)


def test_scale_by_hvadam_without_params_keeps_the_gradient_dtype():
  tx = anon_optax.scale_by_hvadam()
  state = tx.init(_tree(jnp.float32))
  updates, _ = tx.update(_tree(jnp.bfloat16), state)
  chex.assert_trees_all_equal_dtypes(updates, _tree(jnp.bfloat16))
  # Integer gradients: the statistics' dtype, not a truncation to zero.
  updates, _ = tx.update(_tree(jnp.int32, values=(1, -2, 3)), state)
  chex.assert_trees_all_equal_dtypes(updates, _tree(jnp.float32))
  chex.assert_trees_all_close(updates, _tree(jnp.float32, (0.9, -0.9, 0.9)), rtol=1e-5)


def test_python_float_leaves_work_like_arrays():
  tx = anon_optax.hvadam(0.1, gamma=0.5)
  as_floats = {"a": 1.0, "b": [2.0, -3.0]}
  as_arrays = jax.tree.map(jnp.asarray, as_floats)
  expected = jax.tree.map(
    jnp.asarray, optax.adam(0.1).update(as_floats, optax.adam(0.1).init(as_floats), as_floats)[0]
  )
  state_f, state_a = tx.init(as_floats), tx.init(as_arrays)
  params_f, params_a = as_floats, as_arrays
  for step in range(4):
    grads_f = {"a": 1.0 + step, "b": [0.5, -0.25 * step]}
    updates_f, state_f = tx.update(grads_f, state_f, params_f)
    updates_a, state_a = tx.update(jax.tree.map(jnp.asarray, grads_f), state_a, params_a)
    chex.assert_trees_all_equal_dtypes(updates_f, expected)
    chex.assert_trees_all_close(updates_f, updates_a)
    params_f = optax.apply_updates(params_f, updates_f)
    params_a = optax.apply_updates(params_a, updates_a)


def test_integer_parameters_raise():
  with pytest.raises(TypeError, match="floating-point or complex"):
    anon_optax.hvadam(0.1).init({"w": jnp.arange(3)})


# ----------------------------------------------------------------------------
# Validation at construction.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
  "kwargs,error,match",
  [
    ({"gamma": None}, TypeError, "`gamma` must be a real number"),
    ({"gamma": "1.1"}, TypeError, "`gamma` must be a real number"),
    ({"b1": "0.9"}, TypeError, r"`b1` must be a real number in \[0, 1\)"),
    ({"b2": None}, TypeError, "`b2`"),
    ({"eps": True}, TypeError, "`eps`"),
    ({"gamma": 1.0 + 0.5j}, ValueError, "`gamma`.*imaginary part"),
    ({"gamma": jnp.array([0.0, 1.0])}, ValueError, r"`gamma` .*shape \(2,\)"),
    ({"b1": np.full((1,), 0.9)}, ValueError, r"`b1` .*shape \(1,\)"),
    ({"gamma": jnp.array(jnp.nan)}, ValueError, "`gamma`"),
    ({"gamma": np.float32("nan")}, ValueError, "`gamma`"),
    ({"gamma": np.array(float("nan"))}, ValueError, "`gamma`"),
    ({"b2": jnp.array(1.0)}, ValueError, r"`b2` must be a real number in \[0, 1\)"),
    ({"eps": float("inf")}, ValueError, "`eps`"),
    ({"gamma": -1.0}, ValueError, r"`gamma` must be a real number in \[0, inf\)"),
    ({"gamma": -0.01}, ValueError, r"-b1\*\*2"),
    ({"gamma": jnp.array(-0.5)}, ValueError, "`gamma`"),
  ],
)
def test_invalid_hyperparameters_raise_at_construction(kwargs, error, match):
  with pytest.raises(error, match=match):
    anon_optax.scale_by_hvadam(**kwargs)
  with pytest.raises(error, match=match):
    anon_optax.hvadam(1e-2, **kwargs)


@pytest.mark.parametrize(
  "kwargs,error,match",
  [
    ({"learning_rate": "0.1"}, TypeError, "`learning_rate`"),
    ({"learning_rate": jnp.ones(2)}, ValueError, "`learning_rate`"),
    ({"weight_decay": None}, TypeError, "`weight_decay`"),
    ({"weight_decay": "0.1"}, TypeError, "`weight_decay`"),
  ],
)
def test_invalid_optimizer_arguments_raise(kwargs, error, match):
  with pytest.raises(error, match=match):
    anon_optax.hvadam(**{"learning_rate": 1e-2, **kwargs})


@pytest.mark.parametrize(
  "kwargs",
  [
    {"gamma": 0.0},
    {"gamma": jnp.asarray(2.0)},
    {"gamma": np.float32(0.5)},
    {"b1": np.float64(0.0)},
    {"eps": 0},
    {"gamma": optax.linear_schedule(1.0, 0.0, 10)},
  ],
)
def test_valid_hyperparameters_are_accepted(kwargs):
  tx = anon_optax.hvadam(1e-2, **kwargs)
  params = _tree(jnp.float32)
  updates, _ = tx.update(_tree(jnp.float32), tx.init(params), params)
  chex.assert_tree_all_finite(updates)


def _two_steps_with_traced_gamma(gamma):
  """g1 = 1, then g2 = (1 - b1) g1: q = 0 < r at the second step."""
  tx = anon_optax.scale_by_hvadam(gamma=gamma)
  params = {"w": jnp.zeros(3)}
  state = tx.init(params)
  outs = []
  for scale in (1.0, 0.1):
    updates, state = tx.update({"w": jnp.full(3, scale)}, state)
    outs.append(updates["w"])
  return outs


def test_negative_gamma_is_unstable_so_the_range_is_tight():
  """Traced values pass unchecked; this shows why concrete ones are not.

  At the second step the gradient equals the previous momentum, so q = 0 and
  the weighting's denominator is gamma r + eps < 0 for any gamma < 0: here the
  second moment turns negative and the step NaN (gamma = -0.01).
  """
  run = jax.jit(_two_steps_with_traced_gamma)
  first, second = run(jnp.float32(-0.01))
  chex.assert_tree_all_finite(first)
  assert np.all(np.isnan(second))
  chex.assert_tree_all_finite(run(jnp.float32(0.0)))
  # gamma < -b1**2 = -0.81: NaN at the first step already.
  first, _ = run(jnp.float32(-0.9))
  assert np.all(np.isnan(first))


def test_traced_hyperparameters_pass_unchecked():
  def first_update(b1, gamma):
    tx = anon_optax.hvadam(1e-2, b1=b1, gamma=gamma)
    params = _tree(jnp.float32)
    return tx.update(_tree(jnp.float32), tx.init(params), params)[0]

  swept = jax.jit(jax.vmap(first_update))(jnp.array([0.8, 0.9]), jnp.array([0.0, 1.0]))
  chex.assert_tree_all_finite(swept)


@pytest.mark.parametrize(
  "grads,match",
  [
    ({"w": jnp.ones((3, 1))}, "structure"),
    ({"w": jnp.ones((3, 1)), "b": jnp.ones(()), "c": jnp.ones(2)}, "structure"),
    ({"w": jnp.ones((1, 3)), "b": jnp.ones(())}, r"\['w'\] has shape \(1, 3\)"),
  ],
)
def test_mismatched_gradients_raise(grads, match):
  tx = anon_optax.hvadam(1e-2)
  params = _tree(jnp.float32)
  with pytest.raises(ValueError, match=match):
    tx.update(grads, tx.init(params), params)


def test_mismatched_params_raise():
  tx = anon_optax.scale_by_hvadam()
  params = _tree(jnp.float32)
  with pytest.raises(ValueError, match="parameters passed to update"):
    tx.update(params, tx.init(params), {"w": params["w"]})


# ----------------------------------------------------------------------------
# inject_hyperparams with bfloat16 parameters.
# ----------------------------------------------------------------------------


def _bf16_run(tx, num_steps=12, grad_dtype=jnp.bfloat16):
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(16,)), jnp.bfloat16)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  all_updates = []
  for _ in range(num_steps):
    grads = {"w": jnp.asarray(rng.normal(size=(16,)), grad_dtype)}
    updates, state = update(grads, state, params)
    all_updates.append(updates)
    params = optax.apply_updates(params, updates)
  return params, all_updates


def test_inject_hyperparams_float32_with_bfloat16_params():
  tx = optax.inject_hyperparams(anon_optax.hvadam, hyperparam_dtype=jnp.float32)(1e-2, gamma=0.5)
  params, _ = _bf16_run(tx, num_steps=30)
  chex.assert_tree_all_finite(params)
  start = _bf16_run(tx, num_steps=0)[0]
  assert not np.allclose(np.asarray(params["w"], np.float32), np.asarray(start["w"], np.float32))


def test_bfloat16_hyperparameters_do_not_make_the_arithmetic_bfloat16():
  """With bfloat16 b1, b2 and gamma, HVAdam computes in float32.

  The hyperparameters below are exact in bfloat16, so the injected optimizer
  must give the float32 updates of the plain one: no `1 - b2**t` in bfloat16.
  """
  values = {"b1": 0.875, "b2": 0.9921875, "gamma": 0.5, "eps": 2.0**-30}
  for value in values.values():
    assert float(jnp.bfloat16(value)) == value
  plain = anon_optax.hvadam(0.0078125, **values)
  injected = optax.inject_hyperparams(anon_optax.hvadam)(0.0078125, **values)
  state = injected.init({"w": jnp.zeros(2, jnp.bfloat16)})
  assert state.hyperparams["b2"].dtype == jnp.bfloat16
  # float32 gradients: float32 updates, which show the arithmetic's precision.
  _, expected = _bf16_run(plain, grad_dtype=jnp.float32)
  _, got = _bf16_run(injected, grad_dtype=jnp.float32)
  chex.assert_trees_all_equal_dtypes(got, expected)
  chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------
# Eager (un-jitted) steps: no compile per step, flat memory.
# ----------------------------------------------------------------------------


def _eager_loop(tx, params, num_steps, seed=0):
  """`num_steps` un-jitted updates with gradients that switch branches."""
  rng = np.random.default_rng(seed)
  direction = jax.tree.map(lambda p: rng.normal(size=np.shape(p)), params)
  state = tx.init(params)
  for t in range(num_steps):
    # Growing along one direction (switch-offs, restarts), then noise
    # (extra steps), in cycles of 20 steps.
    phase = t % 20
    grads = jax.tree.map(
      lambda d, phase=phase: jnp.asarray(
        1.3**phase * d if phase < 10 else 1.3**10 * rng.normal(size=d.shape), jnp.float32
      ),
      direction,
    )
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def _eager_params():
  return {"w": jnp.zeros((4, 3)), "b": [jnp.zeros(3), jnp.zeros(())]}


@pytest.mark.parametrize(
  "make_tx",
  [
    lambda: anon_optax.hvadam(0.05, gamma=0.5, weight_decay=1e-3),
    lambda: anon_optax.scale_by_hvadam(gamma=0.5),
    lambda: anon_optax.hvadam(
      optax.linear_schedule(0.1, 0.01, 100), gamma=optax.linear_schedule(1.0, 0.0, 100)
    ),
  ],
  ids=["hvadam", "scale_by_hvadam", "schedules"],
)
def test_eager_steps_do_not_compile(make_tx):
  tx = make_tx()
  params = _eager_params()
  _eager_loop(tx, params, num_steps=3)  # Warm-up: the first compilations.
  with count_compilations() as events:
    final, state = _eager_loop(tx, params, num_steps=200)
  chex.assert_tree_all_finite(final)
  hv_state = _hvadam_state(state)
  assert int(hv_state.count) == 200
  # The agreement branch ran (extra steps or switch-offs), not only restarts.
  assert int(hv_state.step2) > 0 or int(hv_state.flag) == -1
  compiles = events.count(COMPILE_EVENT)
  assert compiles <= 3, compiles


def test_a_new_optimizer_reuses_the_compiled_step():
  params = _eager_params()
  _eager_loop(anon_optax.hvadam(0.05, gamma=0.5), params, num_steps=2)
  with count_compilations() as events:
    _eager_loop(anon_optax.hvadam(0.01, b1=0.8, gamma=2.0), params, num_steps=5)
  compiles = events.count(COMPILE_EVENT)
  assert compiles <= 3, compiles


def _resident_bytes():
  with open("/proc/self/statm") as statm:
    return int(statm.read().split()[1]) * resource.getpagesize()


def test_eager_memory_stays_flat():
  tx = anon_optax.hvadam(0.05, gamma=0.5)
  params = _eager_params()
  _eager_loop(tx, params, num_steps=50)  # Caches and allocator settle.
  arrays_before = len(jax.live_arrays())
  rss_before = _resident_bytes()
  _eager_loop(tx, params, num_steps=300)
  growth = _resident_bytes() - rss_before
  # A compiled program per step would grow it by about 1 MiB per step.
  assert growth < 32 * 2**20, growth / 2**20
  assert len(jax.live_arrays()) <= arrays_before + 5
