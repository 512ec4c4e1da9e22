"""`anon_optax.anon` equals the NumPy reference (docs/algorithm.md).

The reference (`anon_reference.py`) is written from docs/algorithm.md alone, without JAX.
Every comparison here checks the whole parameter trajectory, step by step, over
`NUM_STEPS` steps (9 preconditioner refreshes with the default base 2), in
float64 at a tight tolerance and in float32 at a documented one. Negative
controls prove that the comparison fails for slightly wrong variants of the rule.
"""

import contextlib
import functools
import inspect

import anon_reference as ref
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax

NUM_STEPS = 300  # base 2 refreshes at 1, 2, 4, ..., 256: 9 refreshes.
# The default rule's cap on the gap between refreshes (docs/algorithm.md, "Long runs"): over
# NUM_STEPS it changes nothing; LONG_NUM_STEPS spans capped refreshes (768, 1024, 1280).
DEFAULT_MAX_REFRESH_INTERVAL = 256
LONG_NUM_STEPS = 1300
LR = 1e-2

# float64: both sides compute the same formula in the same precision; what is
# left is round-off from differently ordered operations (e.g. `pow` vs
# exp/log, `lr * (v * m_hat)` vs other groupings), a few ulps per step.
# Measured worst case over every float64 case here: 5.6e-15 (the tolerance
# criterion |a - e| <= tol * (1 + |e|), see `_max_error`). 1e-12 leaves room
# for other XLA backends' transcendental functions and still catches a 1e-8
# deviation at a single step (see the negative controls).
F64_RTOL = 1e-12
F64_ATOL = 1e-12

# float32: the JAX side runs in float32 (parameters, gradients, m, s, v) and is
# compared to the float64 reference started from the same float32 values. The
# error is float32 round-off (6e-8 relative per operation) accumulated over 300
# steps: in the parameters (300 additions of O(1e-2) steps), and in `s`, which
# sums up to 128 squared gradients between refreshes before its bias
# correction, and then enters `v` with power gamma. Measured worst case over
# every float32 case here (same criterion): 4.3e-6 (least squares, gamma = 2,
# where gradients feed back), 1.9e-6 with fixed gradient sequences. The
# tolerance is ~3.5x the worst case.
F32_RTOL = 1.5e-5
F32_ATOL = 1.5e-5

GAMMAS = (-1.0, -0.25, 0.0, 0.5, 1.0, 1.15, 2.0)
DTYPES = (np.float64, np.float32)


def _enable_x64():
  """A context manager enabling float64 in JAX for one test only."""
  if callable(getattr(jax, "enable_x64", None)):
    return jax.enable_x64(True)
  from jax.experimental import enable_x64  # older JAX

  return enable_x64()


def _precision(dtype):
  """float64 enabled inside the context iff `dtype` is float64."""
  if dtype == np.float64:
    return _enable_x64()
  return contextlib.nullcontext()


# --------------------------------------------------------------------------
# Problems: a nested dict/list pytree with several leaf shapes (two scalars),
# and well-scaled gradients (|g| in [0.2, 2.3], sign per element, a mean that
# drifts slowly so the preconditioner changes between refreshes).


def _params(seed, dtype):
  rng = np.random.default_rng(seed)
  return {
    "dense": {
      "kernel": rng.normal(size=(3, 4)).astype(dtype),
      "bias": rng.normal(size=(4,)).astype(dtype),
    },
    "blocks": [rng.normal(size=(2, 3, 2)).astype(dtype), np.asarray(rng.normal(), dtype=dtype)],
    "scale": np.asarray(0.5, dtype=dtype),
  }


MASK = {"dense": {"kernel": True, "bias": False}, "blocks": [True, False], "scale": False}


def _grad_stack(seed, params, num_steps=NUM_STEPS):
  """A fixed gradient sequence: a tree of arrays with a leading step axis."""
  rng = np.random.default_rng(seed + 1000)
  t = np.arange(1, num_steps + 1)

  def one(p):
    p = np.asarray(p)
    shape = p.shape
    mean = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 1.5, shape)
    drift = 1.0 + 0.5 * np.sin(t / 40.0 + rng.uniform(0, 6.3))
    drift = drift.reshape((-1,) + (1,) * len(shape))
    noise = 0.3 * np.clip(rng.normal(size=(num_steps,) + shape), -1, 1)
    return (mean * drift + noise).astype(p.dtype)

  return jax.tree.map(one, params)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


# --------------------------------------------------------------------------
# The two sides.


def _anon(*args, **kwargs):
  """`anon_optax.anon`, with the authors' exact rule unless `exact` is given."""
  return anon_optax.anon(*args, **{"exact": True, **kwargs})


def _reference(params, grads, num_steps=NUM_STEPS, **kwargs):
  """Runs the reference in float64; returns a tree with a leading step axis.

  ``exact`` (default True) is translated into the reference's ``guard``.
  """
  exact = kwargs.pop("exact", True)
  kwargs["guard"] = (
    None if exact else inspect.signature(anon_optax.anon).parameters["guard_factor"].default
  )
  # The default rule caps the gap between refreshes (docs/algorithm.md, "Long runs"); the
  # authors' rule does not.
  kwargs.setdefault("max_refresh_interval", None if exact else DEFAULT_MAX_REFRESH_INTERVAL)
  leaves, treedef = jax.tree.flatten(params)
  is_complex = any(np.iscomplexobj(x) for x in leaves)
  dtype = np.complex128 if is_complex else np.float64
  leaves = [np.asarray(x, dtype) for x in leaves]
  if callable(grads):
    grad_fn = grads
  else:
    stacks = [np.asarray(g, dtype) for g in jax.tree.leaves(grads)]
    grad_fn = lambda t, _: [g[t - 1] for g in stacks]
  if isinstance(kwargs.get("mask"), dict):
    kwargs["mask"] = [bool(b) for b in jax.tree.leaves(kwargs["mask"])]
  snapshots = ref.anon_reference(leaves, grad_fn, num_steps=num_steps, dtype=dtype, **kwargs)
  stacked = [np.stack([snap[i] for snap in snapshots]) for i in range(len(leaves))]
  return jax.tree.unflatten(treedef, stacked)


def _scan_trajectory(tx, params, grads):
  """Jitted `lax.scan` of `tx.update` + `apply_updates` over fixed gradients."""

  def step(carry, g):
    p, state = carry
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
    return (p, state), p

  @jax.jit
  def run(p, gs):
    _, trajectory = jax.lax.scan(step, (p, tx.init(p)), gs)
    return trajectory

  return jax.device_get(run(params, grads))


def _loop_trajectory(tx, params, grad_fn, num_steps, jit):
  """A plain Python loop of `tx.update` + `optax.apply_updates`."""
  update = jax.jit(tx.update) if jit else tx.update
  apply = jax.jit(optax.apply_updates) if jit else optax.apply_updates
  params = jax.tree.map(jnp.asarray, params)
  state = tx.init(params)
  snapshots = []
  for t in range(1, num_steps + 1):
    updates, state = update(grad_fn(t, params), state, params)
    params = apply(params, updates)
    snapshots.append(jax.device_get(params))
  return jax.tree.map(lambda *xs: np.stack(xs), *snapshots)


def _max_error(actual, expected):
  """Largest |a - e| / (1 + |e|) over the trajectory (for diagnostics)."""
  errs = [
    np.max(np.abs(np.asarray(a, np.float64) - e) / (1 + np.abs(e)))
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected))
  ]
  return float(max(errs))


def _assert_matches(actual, expected, dtype):
  """The trajectory agrees at every step (leading axis) and every element."""
  chex.assert_trees_all_equal_shapes(actual, expected)
  actual = jax.tree.map(lambda a: np.asarray(a, np.result_type(a, 1.0)), actual)
  if dtype == np.float64:
    chex.assert_trees_all_close(actual, expected, rtol=F64_RTOL, atol=F64_ATOL)
  else:
    chex.assert_trees_all_close(actual, expected, rtol=F32_RTOL, atol=F32_ATOL)


def _compare_fixed_grads(dtype, seed=0, *, jax_kwargs=None, ref_kwargs=None, num_steps=NUM_STEPS):
  """Builds `anon(**jax_kwargs)`, scans it, compares with the reference."""
  jax_kwargs = dict(jax_kwargs or {})
  ref_kwargs = dict(ref_kwargs or jax_kwargs)
  with _precision(dtype):
    params = _params(seed, dtype)
    grads = _grad_stack(seed, params, num_steps)
    tx = _anon(**jax_kwargs)
    actual = _scan_trajectory(tx, params, grads)
    for leaf, p in zip(jax.tree.leaves(actual), jax.tree.leaves(params)):
      assert leaf.dtype == p.dtype
  expected = _reference(params, grads, num_steps, **ref_kwargs)
  _assert_matches(actual, expected, dtype)
  return actual, expected


# --------------------------------------------------------------------------
# Equivalence over the hyperparameter grid.


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_matches_reference_over_gamma(gamma, dtype):
  _compare_fixed_grads(dtype, seed=1, jax_kwargs=dict(learning_rate=LR, gamma=gamma))


@pytest.mark.parametrize("gamma", [-1.0, 1.0, 2.0])
def test_matches_reference_with_large_eps(gamma):
  """eps comparable to sigma (the default 1e-16 is invisible next to |g|**2 ~
  1), and non-default b1, b2, so where each enters the rule shows."""
  kwargs = dict(learning_rate=LR, gamma=gamma, eps=0.3, b1=0.8, b2=0.95)
  _compare_fixed_grads(np.float64, seed=11, jax_kwargs=kwargs)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("masked", [False, True], ids=["all", "mask"])
@pytest.mark.parametrize("mode", ["l2", "decoupled", "fixed"])
def test_matches_reference_weight_decay(mode, masked, dtype):
  # wd chosen so each mode moves the parameters visibly over 300 steps:
  # `fixed` is not scaled by the learning rate, so it gets a smaller wd.
  wd = {"l2": 0.1, "decoupled": 0.5, "fixed": 5e-3}[mode]
  kwargs = dict(
    learning_rate=LR,
    gamma=1.1,
    weight_decay=wd,
    weight_decay_mode=mode,
    mask=MASK if masked else None,
  )
  _compare_fixed_grads(dtype, seed=2, jax_kwargs=kwargs)


@pytest.mark.parametrize("refresh_base", [2, 3, 4])
@pytest.mark.parametrize("beta3", [0.3, 0.9])
def test_matches_reference_idu_ablation(beta3, refresh_base):
  kwargs = dict(learning_rate=LR, gamma=1.15, beta3=beta3, refresh_base=refresh_base, b2=0.99)
  _compare_fixed_grads(np.float64, seed=3, jax_kwargs=kwargs)


# --------------------------------------------------------------------------
# The default step guard (exact=False) and the refresh cap.


def _waking_grad_stack(seed, params, num_steps=NUM_STEPS):
  """`_grad_stack` where a third of the elements are 1e-4 times smaller until
  step 20 (units that wake up, as dead ReLU units do), others 1e-5 times
  smaller over steps 129-140 (right after the refresh at 128), and every gradient
  grows 4x between steps 100 and 200: the guard binds for gamma > 0 (growing
  gradients) and for gamma < 0 (shrinking ones)."""
  grads = _grad_stack(seed, params, num_steps)
  rng = np.random.default_rng(seed + 2000)
  t = np.arange(1, num_steps + 1)
  growth = np.interp(t, [100, 200], [1.0, 4.0])

  def wake(g):
    asleep = rng.uniform(size=g.shape[1:]) < 1 / 3
    factor = np.where((t[:, None] <= 20) & asleep.reshape(1, -1), 1e-4, 1.0)
    # Others fall asleep (those asleep before kept a small v for gamma < 0).
    falls_asleep = ~asleep & (rng.uniform(size=g.shape[1:]) < 1 / 2)
    factor = np.where(
      (t[:, None] >= 129) & (t[:, None] <= 140) & falls_asleep.reshape(1, -1), 1e-5, factor
    )
    factor = factor.reshape(g.shape) * growth.reshape((-1,) + (1,) * (g.ndim - 1))
    return (g * factor).astype(g.dtype)

  return jax.tree.map(wake, grads)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_default_guard_matches_reference(gamma, dtype):
  kwargs = dict(learning_rate=LR, gamma=gamma, exact=False)
  with _precision(dtype):
    params = _params(5, dtype)
    grads = _waking_grad_stack(5, params)
    actual = _scan_trajectory(_anon(**kwargs), params, grads)
    exact = _scan_trajectory(_anon(**dict(kwargs, exact=True)), params, grads)
  _assert_matches(actual, _reference(params, grads, **kwargs), dtype)
  if gamma != 0:  # gamma = 0 is SGD with momentum either way.
    with pytest.raises(AssertionError):  # The guard binds in this sequence.
      _assert_matches(exact, _reference(params, grads, **kwargs), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", ["l2", "decoupled", "fixed"])
def test_default_guard_matches_reference_weight_decay(mode, dtype):
  wd = {"l2": 0.1, "decoupled": 0.5, "fixed": 5e-3}[mode]
  kwargs = dict(
    learning_rate=LR,
    gamma=1.1,
    weight_decay=wd,
    weight_decay_mode=mode,
    mask=MASK,
    exact=False,
    beta3=0.7,
    refresh_base=3,
  )
  with _precision(dtype):
    params = _params(6, dtype)
    grads = _waking_grad_stack(6, params)
    actual = _scan_trajectory(_anon(**kwargs), params, grads)
  _assert_matches(actual, _reference(params, grads, **kwargs), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("refresh_base, cap", [(2, 1), (2, 24), (3, 10)])
def test_refresh_cap_matches_reference(refresh_base, cap, exact, dtype):
  kwargs = dict(
    learning_rate=LR, gamma=1.15, refresh_base=refresh_base, max_refresh_interval=cap, exact=exact
  )
  with _precision(dtype):
    params = _params(7, dtype)
    grads = _waking_grad_stack(7, params)
    actual = _scan_trajectory(_anon(**kwargs), params, grads)
  _assert_matches(actual, _reference(params, grads, **kwargs), dtype)
  # Without the cap the trajectory differs: the comparison sees the schedule.
  with pytest.raises(AssertionError):
    _assert_matches(
      actual, _reference(params, grads, **dict(kwargs, max_refresh_interval=None)), dtype
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("gamma", [-0.5, 0.5, 1.15])
def test_default_refreshes_every_256_steps_from_512_as_the_reference(gamma, dtype):
  """Over 1300 steps the default refreshes at 768, 1024 and 1280 too, the authors' rule only at
  1024; each matches the reference of its own schedule, not the other's."""
  kwargs = dict(learning_rate=1e-3, gamma=gamma, beta3=0.7)
  with _precision(dtype):
    params = _params(8, dtype)
    grads = _waking_grad_stack(8, params, LONG_NUM_STEPS)
    default = _scan_trajectory(_anon(**kwargs, exact=False), params, grads)
    exact = _scan_trajectory(_anon(**kwargs), params, grads)
  capped = dict(max_refresh_interval=DEFAULT_MAX_REFRESH_INTERVAL)
  uncapped = dict(max_refresh_interval=None)
  _assert_matches(default, _reference(params, grads, LONG_NUM_STEPS, **kwargs, exact=False), dtype)
  _assert_matches(exact, _reference(params, grads, LONG_NUM_STEPS, **kwargs), dtype)
  _assert_matches(exact, _reference(params, grads, LONG_NUM_STEPS, **kwargs, **uncapped), dtype)
  with pytest.raises(AssertionError):  # The comparison sees the schedule.
    _assert_matches(
      default, _reference(params, grads, LONG_NUM_STEPS, **kwargs, exact=False, **uncapped), dtype
    )
  with pytest.raises(AssertionError):
    _assert_matches(exact, _reference(params, grads, LONG_NUM_STEPS, **kwargs, **capped), dtype)


def _linear_schedule(init_value, end_value, transition_steps):
  """`optax.linear_schedule` in the enabled float precision.

  `optax.linear_schedule` divides two integers, which JAX does in float32 even
  under x64, so its values are off by ~1e-8 from the exact line; that alone
  moves float64 trajectories by ~5e-9, far above F64_ATOL.
  """

  def schedule(count):
    frac = jnp.minimum(jnp.asarray(count, float), transition_steps)
    return init_value + (end_value - init_value) * frac / transition_steps

  return schedule


def test_matches_reference_complex():
  """Complex parameters: the second moment accumulates |g|**2."""
  kwargs = dict(learning_rate=LR, gamma=1.15, weight_decay=0.1, weight_decay_mode="l2")
  with _enable_x64():
    real, imag = _params(12, np.float64), _params(13, np.float64)
    params = jax.tree.map(lambda a, b: a + 1j * b, real, imag)
    grads = jax.tree.map(lambda a, b: a + 1j * b, _grad_stack(12, real), _grad_stack(13, imag))
    actual = _scan_trajectory(_anon(**kwargs), params, grads)
  for leaf in jax.tree.leaves(actual):
    assert leaf.dtype == np.complex128
  _assert_matches(actual, _reference(params, grads, **kwargs), np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_reference_with_schedules(dtype):
  """A learning-rate schedule (read at count t - 1 every step) and a gamma
  schedule (read at count t - 1 at refresh steps)."""
  jax_kwargs = dict(
    learning_rate=optax.cosine_decay_schedule(LR, NUM_STEPS, alpha=0.1),
    gamma=_linear_schedule(0.25, 1.5, 200),
    weight_decay=0.3,
    weight_decay_mode="decoupled",
  )
  ref_kwargs = dict(
    jax_kwargs,
    learning_rate=ref.cosine_decay(LR, NUM_STEPS, alpha=0.1),
    gamma=ref.linear(0.25, 1.5, 200),
  )
  actual, _ = _compare_fixed_grads(dtype, seed=4, jax_kwargs=jax_kwargs, ref_kwargs=ref_kwargs)
  # Reading either schedule one step late (count t instead of t - 1) is caught.
  params = _params(4, dtype)
  grads = _grad_stack(4, params)
  for name, schedule in (
    ("learning_rate", ref.cosine_decay(LR, NUM_STEPS, alpha=0.1)),
    ("gamma", ref.linear(0.25, 1.5, 200)),
  ):
    late = dict(ref_kwargs, **{name: lambda c, f=schedule: f(c + 1)})
    with pytest.raises(AssertionError):
      _assert_matches(actual, _reference(params, grads, **late), dtype)


# Un-jitted `tx.update` costs ~0.7 s per call on CPU here (against ~1 ms for
# `optax.adam`): each eager `lax.cond` call is traced and compiled again. So the
# eager loop runs 9 steps (refreshes at 1, 2, 4, 8); the jitted loop, 300.
EAGER_STEPS = 9


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_python_loop_matches_reference(jit):
  """`tx.update` and `apply_updates` called step by step, jitted or not."""
  num_steps = NUM_STEPS if jit else EAGER_STEPS
  kwargs = dict(
    learning_rate=LR, gamma=1.15, weight_decay=0.05, weight_decay_mode="l2", mask=MASK, beta3=0.3
  )
  with _enable_x64():
    params = _params(5, np.float64)
    grads = _grad_stack(5, params, num_steps)
    stacks = jax.tree.leaves(grads)
    treedef = jax.tree.structure(params)
    grad_fn = lambda t, _: jax.tree.unflatten(treedef, [g[t - 1] for g in stacks])
    actual = _loop_trajectory(_anon(**kwargs), params, grad_fn, num_steps, jit)
  _assert_matches(actual, _reference(params, grads, num_steps, **kwargs), np.float64)


# --------------------------------------------------------------------------
# True gradients of a loss: gradients depend on the parameters, so any
# deviation feeds back. A least-squares problem coupling every leaf, with a
# fresh minibatch each step (so gradients never vanish and v stays bounded).

_LSQ_BATCH = 8


def _lsq_data(params, num_steps=NUM_STEPS, seed=6):
  size = sum(np.size(x) for x in jax.tree.leaves(params))
  rng = np.random.default_rng(seed)
  z_star = rng.normal(size=size)
  a = rng.normal(size=(num_steps, _LSQ_BATCH, size)) / np.sqrt(size)
  y = a @ z_star + 0.1 * rng.normal(size=(num_steps, _LSQ_BATCH))
  return a, y


def _lsq_numpy_grads(a, y, params):
  """NumPy gradient of 0.5 * ||A_t z - y_t||^2 with z the flattened leaves."""
  shapes = [np.shape(x) for x in jax.tree.leaves(params)]

  def grad_fn(t, leaves):
    z = np.concatenate([np.ravel(x) for x in leaves])
    gz = a[t - 1].T @ (a[t - 1] @ z - y[t - 1])
    out, start = [], 0
    for shape in shapes:
      size = int(np.prod(shape))
      out.append(gz[start : start + size].reshape(shape))
      start += size
    return out

  return grad_fn


def _lsq_jax_trajectory(tx, params, a, y):
  def loss(p, a_t, y_t):
    z = jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(p)])
    return 0.5 * jnp.sum((a_t @ z - y_t) ** 2)

  def step(carry, data):
    p, state = carry
    g = jax.grad(loss)(p, *data)
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
    return (p, state), p

  @jax.jit
  def run(p, a, y):
    _, trajectory = jax.lax.scan(step, (p, tx.init(p)), (a, y))
    return trajectory

  return jax.device_get(run(params, a, y))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_matches_reference_on_least_squares(gamma, dtype):
  kwargs = dict(
    learning_rate=3e-2, gamma=gamma, weight_decay=1e-2, weight_decay_mode="l2", refresh_base=3
  )
  with _precision(dtype):
    params = _params(6, dtype)
    a, y = _lsq_data(params)
    actual = _lsq_jax_trajectory(_anon(**kwargs), params, a.astype(dtype), y.astype(dtype))
  grad_fn = _lsq_numpy_grads(a.astype(dtype), y.astype(dtype), params)
  expected = _reference(params, grad_fn, **kwargs)
  _assert_matches(actual, expected, dtype)
  # The problem is really being optimised, not sitting still.
  z0 = np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)])
  z_end = np.concatenate([np.ravel(x[-1]) for x in jax.tree.leaves(actual)])
  assert np.linalg.norm(z_end - z0) > 0.5


# --------------------------------------------------------------------------
# gamma = 0 is bias-corrected EMA-momentum SGD, exactly.


@pytest.mark.parametrize("beta3", [0.5, 0.3])
def test_gamma_zero_equals_ema_momentum_sgd(beta3):
  with _enable_x64():
    params = _params(7, np.float64)
    grads = _grad_stack(7, params)
    anon = _scan_trajectory(_anon(LR, gamma=0.0, beta3=beta3), params, grads)
    ema_sgd = _scan_trajectory(
      optax.chain(optax.ema(0.9, debias=True), optax.scale_by_learning_rate(LR)), params, grads
    )
  # float64 round-off only: a few ulps per step on O(1) parameters.
  chex.assert_trees_all_close(anon, ema_sgd, rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------
# Negative controls: the same comparison rejects slightly wrong rules.


_CONTROL_KWARGS = dict(learning_rate=LR, gamma=1.0, eps=0.1)


@functools.cache
def _control_run():
  """One passing float64 comparison, shared by the negative controls."""
  return _compare_fixed_grads(np.float64, seed=8, jax_kwargs=_CONTROL_KWARGS)


@pytest.mark.parametrize("mutation", ref.MUTATIONS)
def test_comparison_detects_wrong_reference(mutation):
  actual, _ = _control_run()
  params = _params(8, np.float64)
  wrong = _reference(params, _grad_stack(8, params), mutation=mutation, **_CONTROL_KWARGS)
  with pytest.raises(AssertionError):
    _assert_matches(actual, wrong, np.float64)
  with pytest.raises(AssertionError):  # not even at the float32 tolerance
    _assert_matches(actual, wrong, np.float32)


def test_comparison_detects_a_one_step_error():
  """Every step is compared: a deviation at one step only is caught."""
  actual, expected = _control_run()
  corrupted = jax.tree.map(np.copy, expected)
  corrupted["dense"]["bias"][150, 2] += 1e-8  # 1e-8 at step 151 only
  with pytest.raises(AssertionError):
    _assert_matches(actual, corrupted, np.float64)


# --------------------------------------------------------------------------
# Sanity of the reference itself (no package code involved).


def test_reference_refresh_steps():
  assert ref.refresh_steps(2, 300) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
  assert ref.refresh_steps(3, 300) == [1, 3, 9, 27, 81, 243]
  assert ref.refresh_steps(4, 256) == [1, 4, 16, 64, 256]
  assert ref.refresh_steps(2, 0) == []
  # n = t / 2 for base 2 (1 at t = 1); n = t - t / base in general.
  assert ref.accumulated_counts(2, 300) == {
    1: 1,
    2: 1,
    4: 2,
    8: 4,
    16: 8,
    32: 16,
    64: 32,
    128: 64,
    256: 128,
  }
  assert ref.accumulated_counts(3, 100) == {1: 1, 3: 2, 9: 6, 27: 18, 81: 54}


def test_reference_refresh_scalar():
  b2, eps = 0.9, 0.0
  # First refresh: sigma ** (-gamma / 2) with sigma = s / (1 - b2).
  s = (1 - b2) * 4.0
  np.testing.assert_allclose(
    ref.refresh_scalar(s, None, 1, b2=b2, eps=eps, gamma=1.0, beta3=0.5), 0.5, rtol=1e-15
  )
  np.testing.assert_allclose(
    ref.refresh_scalar(s, None, 1, b2=b2, eps=eps, gamma=2.0, beta3=0.9), 0.25, rtol=1e-15
  )
  # beta3 = 0.5: the authors' harmonic mean sqrt(2 / (v**-2 + sigma**gamma)).
  s = (1 - b2**3) * 9.0  # n = 3 accumulated steps of g**2 = 9 -> sigma = 9
  got = ref.refresh_scalar(s, 0.5, 3, b2=b2, eps=eps, gamma=1.0, beta3=0.5)
  np.testing.assert_allclose(got, np.sqrt(2 / (0.5**-2 + 9.0)), rtol=1e-15)
  got = ref.refresh_scalar(s, 0.5, 3, b2=b2, eps=eps, gamma=1.0, beta3=0.3)
  np.testing.assert_allclose(got, (0.3 * 4 + 0.7 * 9) ** -0.5, rtol=1e-15)
  # gamma = 0: v == 1 exactly, whatever sigma.
  assert ref.refresh_scalar(s, 1.0, 3, b2=b2, eps=eps, gamma=0.0, beta3=0.3) == 1.0


def test_reference_gamma_zero_is_ema_sgd():
  params = _leaves(_params(9, np.float64))
  grads = [
    [g[t] for g in _leaves(_grad_stack(9, _params(9, np.float64)))] for t in range(NUM_STEPS)
  ]
  expected = ref.ema_sgd_reference(params, grads, learning_rate=LR, b1=0.9)
  for beta3 in (0.5, 0.3):
    got = ref.anon_reference(
      params, grads, num_steps=NUM_STEPS, learning_rate=LR, gamma=0.0, beta3=beta3
    )
    for step_got, step_expected in zip(got, expected):
      for a, b in zip(step_got, step_expected):
        np.testing.assert_array_equal(a, b)


def test_reference_constant_gradient_is_sign_descent():
  """gamma = 1, constant g: every refresh gives v = 1 / |g| exactly (the
  accumulated-step bias correction undoes the restart of s), so the step is
  -lr * sign(g). The b2**t correction would not."""
  g = np.array([[0.5, -2.0], [3.0, -0.25]])
  theta0 = np.zeros_like(g)
  num_steps = 70
  for base in (2, 3):
    for beta3 in (0.5, 0.9):
      got = ref.anon_reference(
        [theta0],
        lambda t, p: [g],
        num_steps=num_steps,
        learning_rate=LR,
        gamma=1.0,
        eps=0.0,
        beta3=beta3,
        refresh_base=base,
      )
      for t, (theta,) in enumerate(got, start=1):
        np.testing.assert_allclose(theta, -LR * t * np.sign(g), rtol=1e-12)
  wrong = ref.anon_reference(
    [theta0],
    lambda t, p: [g],
    num_steps=num_steps,
    learning_rate=LR,
    gamma=1.0,
    eps=0.0,
    mutation="b2_pow_t",
  )
  assert not np.allclose(wrong[-1][0], -LR * num_steps * np.sign(g), rtol=1e-3)


def test_reference_beta3_irrelevant_before_second_refresh():
  params = _leaves(_params(10, np.float64))
  grads = [[g[t] for g in _leaves(_grad_stack(10, _params(10, np.float64)))] for t in range(20)]
  run = lambda beta3: ref.anon_reference(
    params, grads, num_steps=20, learning_rate=LR, gamma=1.0, beta3=beta3, refresh_base=4
  )
  low, high = run(0.1), run(0.9)
  for t in range(3):  # steps 1, 2, 3 use the first-refresh v only
    for a, b in zip(low[t], high[t]):
      np.testing.assert_array_equal(a, b)
  assert not np.allclose(low[3][0], high[3][0], rtol=1e-6)  # step 4 refreshes


def test_reference_weight_decay_modes():
  """With zero gradients (gamma = 0 so v = 1), only weight decay moves theta."""
  theta0 = [np.array([1.0, -2.0]), np.array(3.0)]
  zeros = lambda t, p: [np.zeros_like(x) for x in p]
  run = lambda mode, mask=None: ref.anon_reference(
    theta0,
    zeros,
    num_steps=3,
    learning_rate=0.1,
    gamma=0.0,
    weight_decay=0.2,
    weight_decay_mode=mode,
    mask=mask,
  )
  # fixed: theta_t = (1 - wd)**t theta_0; decoupled: (1 - lr wd)**t theta_0.
  np.testing.assert_allclose(run("fixed")[-1][0], 0.8**3 * theta0[0])
  np.testing.assert_allclose(run("decoupled")[-1][0], 0.98**3 * theta0[0])
  # l2, step 1: g = wd theta, m_hat = g, theta_1 = theta_0 (1 - lr wd).
  np.testing.assert_allclose(run("l2")[0][0], 0.98 * theta0[0])
  # A masked-out leaf does not decay.
  for mode in ref.WEIGHT_DECAY_MODES:
    out = run(mode, mask=[True, False])
    np.testing.assert_array_equal(out[-1][1], theta0[1])
    assert not np.allclose(out[-1][0], theta0[0])


# --------------------------------------------------------------------------
# Compact storage: the cost in accuracy of each dtype option.

# Worst error |a - e| / (1 + |e|) against the float64 reference over 300 steps,
# float32 parameters, gamma in {-0.5, 1, 1.5}, exact and default rules
# (measured: mu 3.8e-2, precond 4.6e-3, nu 5.5e-3, all three 4.0e-2; float32
# storage 1.3e-6). The bounds are ~1.5x those: a bfloat16 moment costs about
# as much as bfloat16 parameters would, the preconditioner and the
# (stochastically rounded) accumulator ten times less.
_COMPACT_BOUNDS = {
  "mu": (dict(mu_dtype=jnp.bfloat16), 6e-2),
  "precond": (dict(precond_dtype=jnp.bfloat16), 8e-3),
  "nu": (dict(nu_dtype=jnp.bfloat16), 8e-3),
  "all": (dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16, precond_dtype=jnp.bfloat16), 6e-2),
}


def _relative_error(actual, expected):
  return max(
    float(np.max(np.abs(np.asarray(a, np.float64) - e) / (1 + np.abs(e))))
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected))
  )


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("gamma", [-0.5, 1.0, 1.5])
@pytest.mark.parametrize("option", sorted(_COMPACT_BOUNDS))
def test_compact_storage_error_is_bounded(option, gamma, exact):
  storage, bound = _COMPACT_BOUNDS[option]
  params = _params(1, np.float32)
  grads = _grad_stack(1, params)
  kwargs = dict(learning_rate=LR, gamma=gamma, exact=exact)
  expected = _reference(params, grads, **kwargs)
  actual = _scan_trajectory(_anon(**kwargs, **storage), params, grads)
  for leaf in jax.tree.leaves(actual):
    assert leaf.dtype == np.float32
  error = _relative_error(actual, expected)
  assert error < bound, (option, error)
  # Not vacuous: compact storage does change the trajectory (float32 storage
  # stays below 1.5e-6).
  assert error > 1e-4, (option, error)
