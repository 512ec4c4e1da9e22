r"""HVAdam: Adam with a hidden vector of invariant gradient components.

Zhang et al., "HVAdam: A Full-Dimension Adaptive Optimizer", arXiv 2511.20277
(https://arxiv.org/abs/2511.20277).

HVAdam's second moment tracks the deviations of the gradients from a hidden
vector :math:`h` instead of the gradients themselves, and :math:`h` itself takes
a second step whose size grows with the running agreement :math:`\delta`
between :math:`h` and the momentum. When the agreement falls below 0.1 the
hidden vector is restarted from the momentum. The agreement terms are inner
products over the whole parameter tree, so one transformation is one
parameter group of the authors' code.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from anon_optax import _common
from anon_optax import _validation
from anon_optax import _weight_decay


class ScaleByHVAdamState(NamedTuple):
  r"""State for :func:`scale_by_hvadam`.

  Attributes:
    count: number of steps taken so far, :math:`t`.
    mu: first moment :math:`m` (at least float32).
    var: second moment of the deviations from the hidden vector, including
      the ``eps`` that the authors' code adds to it at every step (real, at
      least float32).
    hidden: the hidden vector :math:`h` (zeros before the first step; at least
      float32).
    flag: -1 when the hidden vector is restarted from the momentum at the next
      step (so at the first step), 0 otherwise.
    step2: number of agreement updates since the last restart.
    exp_delta: exponential moving average (decay ``b2``) of the agreement
      :math:`\delta` since the last restart.
  """

  count: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  mu: optax.Updates
  var: optax.Updates
  hidden: optax.Updates
  flag: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  step2: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  exp_delta: jax.typing.ArrayLike  # shape=(), dtype=jnp.float32 (float64 with float64 params).


def _scalar_dtype(params: optax.Params) -> Any:
  """float64 if any leaf has float64 (or complex128) precision, else float32."""
  dtypes = [_common.real_statistics_dtype(jnp.result_type(x)) for x in jax.tree.leaves(params)]
  return jnp.result_type(jnp.float32, *dtypes) if dtypes else jnp.float32


_GAMMA_RANGE_REASON = (
  " With gamma < 0 the weighting's denominator q + gamma r + eps becomes "
  "negative when a gradient equals the previous momentum (q = 0 < r), and "
  "at the first step already for gamma < -b1**2 (where q = b1**2 r), which "
  "makes the second moment negative and the step NaN."
)


# An XLA:CPU device of `_partial_inner_products`, its only user: a leaf of at
# least _FOLD_MIN_SIZE elements with an axis that _FOLD divides is cut into
# _FOLD slices along that axis for its inner products, so that the sums are
# independent chains (and round like a blocked sum). What it earns, from
# benchmarks/results/hvadam_fold.md (`python -m benchmarks.step_time --sizes 4M
# --contenders floor_exact,hvadam,hvadam_no_fold,adam --rounds 7 --name
# hvadam_fold`; AMD EPYC family 25, 4M float32 parameters in 40 leaves): the
# step is 1.85x floor_exact with it and 1.95x without, paired (5%; the round-off
# of a sum over a 4M-element leaf is the other half of its case).
_FOLD = 16
_FOLD_MIN_SIZE = 1 << 12


@jax.custom_jvp
def _partial_inner_products(m, hidden, bias1):
  """``(sum |mh|^2, sum Re(conj(mh) h), sum |h|^2)`` of one leaf, ``mh = m / bias1``.

  One pass over ``m`` and ``h`` computes all three products (a variadic
  reduction) instead of a pass for each: on CPU every sum is its own loop
  over memory, and the division stays inside the loop instead of writing
  ``mh`` out first. A plain sum in that loop is a chain of additions, each
  waiting for the previous one, and rounds like one. So a large leaf is cut
  into `_FOLD` slices along an axis that it divides, the slices are added
  elementwise (independent sums, side by side in vector registers), and
  the three ``1/_FOLD``-sized results are summed by `jnp.sum` (XLA's
  blocked reduction: the round-off of the sums stays that of summing the
  products directly). Smaller leaves, and leaves sharded over explicit mesh
  axes (where reshaping a sharded axis is a type error), are reduced along
  their last axis and then over the rest.
  """
  mu_hat = m / bias1.astype(jnp.real(m).dtype)
  products = (
    _real_product(mu_hat, mu_hat),
    _real_product(mu_hat, hidden),
    _real_product(hidden, hidden),
  )
  zeros = (jnp.zeros([], products[0].dtype),) * 3
  add = lambda x, y: tuple(a + b for a, b in zip(x, y))
  axis = next((i for i, n in enumerate(m.shape) if n % _FOLD == 0), None)
  if (
    axis is not None
    and m.size >= _FOLD_MIN_SIZE
    and all(name is None for name in jax.typeof(m).sharding.spec)
  ):
    shape = (*m.shape[:axis], _FOLD, m.shape[axis] // _FOLD, *m.shape[axis + 1 :])
    partial = jax.lax.reduce(tuple(p.reshape(shape) for p in products), zeros, add, (axis,))
    return tuple(jnp.sum(p) for p in partial)
  if products[0].ndim > 1:
    products = jax.lax.reduce(products, zeros, add, (products[0].ndim - 1,))
  return jax.lax.reduce(products, zeros, add, tuple(range(products[0].ndim)))


@_partial_inner_products.defjvp
def _partial_inner_products_jvp(primals, tangents):
  """The tangents of the plain sums, beside the fast sums' values.

  JAX cannot differentiate the variadic reduction when one of its operands
  has a zero tangent (``ad_util.Zero`` reaches ``reshape``). The sums are
  bilinear, so their tangents are plain sums too: ``d sum(a b) = sum(da b +
  a db)``, which `jax.jvp` of the direct expression computes.
  """
  return _partial_inner_products(*primals), jax.jvp(_plain_inner_products, primals, tangents)[1]


def _plain_inner_products(m, hidden, bias1):
  """`_partial_inner_products` as three `jnp.sum`: the same sums, rounded otherwise."""
  mu_hat = m / bias1.astype(jnp.real(m).dtype)
  pairs = ((mu_hat, mu_hat), (mu_hat, hidden), (hidden, hidden))
  return tuple(jnp.sum(_real_product(x, y)) for x, y in pairs)


def _real_product(x, y):
  """Elementwise ``Re(conj(x) y)``; ``x * y`` for real arrays."""
  if jnp.iscomplexobj(x) or jnp.iscomplexobj(y):
    return jnp.real(x) * jnp.real(y) + jnp.imag(x) * jnp.imag(y)
  return x * y


def _divide_or_zero(numerator, denominator):
  """``numerator / denominator``, defined as 0 where the denominator is 0."""
  is_zero = denominator == 0
  return jnp.where(is_zero, 0, numerator / jnp.where(is_zero, 1, denominator)).astype(
    jnp.result_type(numerator, denominator)
  )


def _weighting(g, m, h, gamma, eps):
  """``w = r / (q + gamma r + eps) * r`` for ``r = |g - h|^2``, ``q = |g - m|^2``; never NaN.

  With finite inputs and ``gamma >= 0`` the formula is NaN exactly where
  ``r`` overflows (``inf / inf``, or ``0 * inf`` at ``gamma = 0``). ``w`` is
  ``r`` there, inf: the second moment becomes inf and the coordinate's Adam
  step 0, as `optax.adam`'s is for such gradients (``w`` is that large
  unless ``gamma`` or ``q / r`` is). Where only ``q`` or ``gamma r``
  overflows, the formula gives 0, not NaN. Elsewhere ``w`` is the formula's,
  bit for bit.
  """
  r = _real_product(g - h, g - h)
  q = _real_product(g - m, g - m)
  w = _divide_or_zero(r, q + gamma * r + eps) * r
  # A compare and a select. Evaluated exactly there, from differences scaled
  # down, w took this pass 1.2-1.7x its time (float32 on CPU), for a regime
  # where Adam's step is 0 too.
  return jnp.where(jnp.isnan(w), r, w)


def _rescaled_inner_products(mu_leaves, hidden_leaves, bias1, dtype):
  """The tree-wide ``(MM, ML, LL)`` times ``2**(-2 e)``, ``2**e`` above every ``|m|`` and ``|h|``.

  For gradients whose inner products overflow, though their elements do not:
  ``k`` and the agreement are ratios of the three sums, unchanged by the
  common factor.
  """
  largest = functools.reduce(
    jnp.maximum,
    [jnp.max(jnp.abs(x), initial=0).astype(dtype) for x in (*mu_leaves, *hidden_leaves)],
  )
  scale = jax.lax.stop_gradient(jnp.ldexp(jnp.ones([], dtype), -jnp.frexp(largest)[1]))
  sums = []
  for m, h in zip(mu_leaves, hidden_leaves):
    leaf_scale = scale.astype(jnp.real(m).dtype)
    sums.append(_partial_inner_products(m * leaf_scale, h * leaf_scale, bias1))
  zero = jnp.zeros([], dtype)
  return tuple(sum((x[i].astype(dtype) for x in sums), zero) for i in range(3))


def _agreement(mm, ml, ll):
  """``(k, delta)``: the momentum's agreement with the hidden vector, from the tree-wide sums.

  ``k h + (1 - k) mh`` is the point of smallest norm on the line through
  ``h`` and ``mh``, and ``delta`` its norm over that of ``mh`` (0 where
  either is 0). Both are unchanged when the three sums share a factor.
  """
  k = _divide_or_zero(mm - ml, mm + ll - 2 * ml)
  vv = jnp.abs(k**2 * ll + (1 - k) ** 2 * mm + 2 * k * (1 - k) * ml)
  cosine_denominator = _sqrt_or_zero(vv) * _sqrt_or_zero(mm)
  return k, _divide_or_zero(k * ml + (1 - k) * mm, cosine_denominator)


def _sqrt_or_zero(x):
  """``sqrt(x)`` for ``x >= 0``, with a zero derivative at 0 instead of an infinite one.

  ``vv`` is 0 at every restart from zero (``h = 0``) and whenever ``h`` and
  ``mh`` are collinear; there the agreement is defined as 0, and an infinite
  derivative times that branch's zero cotangent would make gradients NaN.
  """
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1)), 0).astype(x.dtype)


@jax.jit
def _update(updates, state, params, b1, b2, eps, gamma, one_minus_b1, one_minus_b2):
  """One HVAdam step (see `scale_by_hvadam`); `gamma` already evaluated.

  One compiled program per tree structure and dtypes: the hyperparameters
  are arguments, not constants, so eager calls (and every optimizer built
  with other values) reuse it instead of compiling op by op.
  """
  # The scalar arithmetic runs in the scalar state's dtype (at least
  # float32) and each leaf's in its statistics' dtype, whatever the dtype
  # of the hyperparameters (`inject_hyperparams` may hand them in bfloat16).
  scalar_dtype = jnp.promote_types(state.exp_delta.dtype, jnp.float32)
  # A state restored from another configuration (`flax.serialization` does not
  # cast) is back in the statistics' dtypes after one step, as `optax.adam`'s.
  restore = lambda real: lambda g, x: x.astype(_common.restored_dtype(g, x, real=real))
  state = state._replace(
    mu=jax.tree.map(restore(False), updates, state.mu),
    var=jax.tree.map(restore(True), updates, state.var),
    hidden=jax.tree.map(restore(False), updates, state.hidden),
  )
  as_scalar = lambda x: jnp.asarray(x, scalar_dtype)
  b1_, b2_, eps_ = as_scalar(b1), as_scalar(b2), as_scalar(eps)
  one_minus_b1 = as_scalar(1 - b1_ if one_minus_b1 is None else one_minus_b1)
  one_minus_b2 = as_scalar(1 - b2_ if one_minus_b2 is None else one_minus_b2)
  gamma_ = as_scalar(gamma)
  count = optax.safe_increment(state.count)
  # `lax.pow` with an array exponent: `b ** count` with a concrete count
  # (an eager call) would compile a new `integer_pow` for every step.
  bias1 = 1 - jax.lax.pow(b1_, count)
  sqrt_bias2 = jnp.sqrt(1 - jax.lax.pow(b2_, count))

  # The step is five passes over each leaf: the first moment, the second
  # moment, the inner products, the hidden vector, the parameters' update.
  # Each new moment is written in place of the old one (donated buffers) and
  # read back by the later passes. Left alone, XLA recomputes the cheap part
  # of the new second moment inside the update's pass, from the old one,
  # which the second-moment pass overwrites in place, and so keeps a copy of
  # it; dividing the new second moment by a run-time 1 prevents that.
  one = _common.one_known_at_run_time(count, scalar_dtype)

  def first_moment(g, m):
    real = lambda x: x.astype(jnp.real(m).dtype)
    return real(b1_) * m + real(one_minus_b1) * g.astype(m.dtype)

  def second_moment(g, m, v, h):
    """``v`` from the new first moment ``m`` and the old hidden vector ``h``."""
    real = lambda x: x.astype(v.dtype)
    w = _weighting(g.astype(m.dtype), m, h, real(gamma_), real(eps_))
    return (real(b2_) * v + real(one_minus_b2) * w + real(eps_)) / real(one)

  leaves = jax.tree.leaves
  treedef = jax.tree.structure(state.mu)
  grad_leaves, hidden_leaves = leaves(updates), leaves(state.hidden)
  mu_leaves = [first_moment(g, m) for g, m in zip(grad_leaves, leaves(state.mu))]
  var_leaves = [
    second_moment(g, m, v, h)
    for g, m, v, h in zip(grad_leaves, mu_leaves, leaves(state.var), hidden_leaves)
  ]
  # The passes of the hidden vector and of the update divide by `bias1`
  # too. Were the three divisions the same expression, XLA would compute it
  # once and write `m / bias1` out as a whole array for all of them; `one`
  # keeps this one apart (`bias1 * 1` is `bias1` exactly).
  sums = [_partial_inner_products(m, h, bias1 * one) for m, h in zip(mu_leaves, hidden_leaves)]
  zero = jnp.zeros([], scalar_dtype)
  mm, ml, ll = (sum((x[i].astype(scalar_dtype) for x in sums), zero) for i in range(3))
  k, delta = _agreement(mm, ml, ll)
  # Gradients above about sqrt(largest float / size) overflow the sums, or
  # the agreement's terms, though not the elements. The agreement is then
  # recomputed from scaled leaves, in a branch that other steps do not run.
  k, delta = jax.lax.cond(
    jnp.isfinite(k) & jnp.isfinite(delta),
    lambda: (k, delta),
    lambda: _agreement(*_rescaled_inner_products(mu_leaves, hidden_leaves, bias1, scalar_dtype)),
  )

  # Branches: restart, skip, switch-off, extra step. A zero momentum leaves
  # the agreement undefined, and a NaN one fails `<=`: both skip. (No NaN
  # stands for "undefined": JAX's NaN debugging would stop every step.)
  restart = state.flag == -1
  accept = (~restart) & (mm > 0) & (jnp.abs(delta) <= 1)
  step2 = jnp.where(
    restart,
    0,
    jnp.where(accept, optax.safe_increment(state.step2), state.step2),
  ).astype(jnp.int32)
  exp_delta = jnp.where(
    restart,
    0,
    jnp.where(accept, b2_ * state.exp_delta + one_minus_b2 * delta, state.exp_delta),
  ).astype(scalar_dtype)
  bias = jnp.where(step2 > 0, 1 - jax.lax.pow(b2_, step2), 1)
  switch_off = jnp.logical_and(accept, exp_delta / bias < 0.1)
  extra_step = jnp.logical_and(accept, ~switch_off)
  flag = jnp.where(restart, 0, jnp.where(switch_off, -1, state.flag))
  hidden_scale = jnp.where(extra_step, jnp.power(as_scalar(10), 6 * exp_delta - 3), 0)

  def new_hidden(m, h):
    """The hidden vector after this step's branch (``m`` the new first moment)."""
    real = lambda x: x.astype(jnp.real(h).dtype)
    mu_hat = m / real(bias1)
    return jnp.where(
      restart,
      mu_hat,
      jnp.where(extra_step, real(k) * h + real(1 - k) * mu_hat, h),
    ).astype(h.dtype)

  def step(m, v, h, g, p):
    """The update, both parameter moves (``h`` the new hidden vector)."""
    real = lambda x: x.astype(v.dtype)
    mu_hat = m / real(bias1)
    adam_step = _divide_or_zero(mu_hat, jnp.sqrt(v) / real(sqrt_bias2) + real(eps_))
    update = adam_step + real(hidden_scale) * h
    if p is None and not jnp.issubdtype(jnp.result_type(g), jnp.inexact):
      return update.astype(m.dtype)  # Integer gradients: the statistics' dtype.
    # As Adam's: typed hyperparameters take part in the promotion (np.float32
    # b1 with bfloat16 parameters gives float32); the statistics' dtype does
    # not, since Adam's first moment is in the parameters' dtype.
    return update.astype(_common.update_dtype(g, p, b1, b2, eps))

  # The second-moment pass reads the old hidden vector, which the hidden
  # vector's pass then overwrites in place. XLA orders the two only by data
  # dependencies, and the new hidden vector does not depend on the new
  # second moment, so XLA would keep a copy of the whole old hidden vector.
  # The hidden vector's pass therefore selects the new second moment where
  # `never` holds: never (bit 31 of a 32-bit integer, shifted down, is 0 or
  # 1), but XLA does not know it.
  never = _common.never_at_run_time(count)
  hidden_leaves = [
    jnp.where(never, v.astype(h.dtype), new_hidden(m, h))
    for m, v, h in zip(mu_leaves, var_leaves, hidden_leaves)
  ]
  param_leaves = leaves(params) if params is not None else [None] * len(mu_leaves)
  update_leaves = [
    step(m, v, h, g, p)
    for m, v, h, g, p in zip(mu_leaves, var_leaves, hidden_leaves, grad_leaves, param_leaves)
  ]
  mu = jax.tree.unflatten(treedef, mu_leaves)
  var = jax.tree.unflatten(treedef, var_leaves)
  hidden = jax.tree.unflatten(treedef, hidden_leaves)
  new_updates = jax.tree.unflatten(jax.tree.structure(updates), update_leaves)
  return new_updates, ScaleByHVAdamState(
    count=count,
    mu=mu,
    var=var,
    hidden=hidden,
    flag=flag.astype(jnp.int32),
    step2=step2,
    exp_delta=exp_delta,
  )


def scale_by_hvadam(
  b1: jax.typing.ArrayLike = 0.9,
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-16,
  gamma: optax.ScalarOrSchedule = 0.0,
) -> optax.GradientTransformation:
  r"""Rescale updates according to the HVAdam algorithm.

  For gradient :math:`g_t` at step :math:`t = 1, 2, \dots`, with the hidden
  vector :math:`h` (zeros at the start) and squares taken elementwise:

  .. math::
    m_t &= b_1 m_{t-1} + (1 - b_1) g_t, \qquad
      \hat m_t = m_t / (1 - b_1^t) \\
    r_t &= |g_t - h|^2, \qquad q_t = |g_t - m_t|^2, \qquad
      w_t = \frac{r_t}{q_t + \gamma r_t + \epsilon}\, r_t \\
    v_t &= b_2 v_{t-1} + (1 - b_2) w_t + \epsilon, \qquad
      d_t = \sqrt{v_t} / \sqrt{1 - b_2^t} + \epsilon \\
    u_t &= \hat m_t / d_t + s_t\, h_{\mathrm{new}}

  The hidden step :math:`s_t h_\mathrm{new}` follows from the tree-wide
  agreement :math:`\delta \in [0, 1]` between :math:`h` and :math:`\hat m`:
  :math:`h` restarts from :math:`\hat m` at the first step and after a
  switch-off (running agreement :math:`\bar\delta` below 0.1); otherwise it
  moves to the point of smallest norm on the line through :math:`h` and
  :math:`\hat m`, with :math:`s_t = 10^{6\bar\delta - 3}`. The branches, the
  cases where the authors' code divides by zero, and the costs are in the
  repository's ``docs/algorithm.md`` ("HVAdam"). Like
  :func:`optax.scale_by_adam`, the output carries no learning rate and no
  sign; the updates have the dtype :func:`optax.adam` gives.

  Args:
    b1: decay rate of the first moment, in [0, 1). Default 0.9.
    b2: decay rate of the second moment and of the agreement average, in
      [0, 1). Default 0.999.
    eps: added to the weighting's denominator, to the second moment at every
      step (as in the authors' code) and to the step's denominator, >= 0.
      Default 1e-16.
    gamma: weight of the deviation :math:`r` in the weighting's denominator,
      a finite number >= 0 (below 0 the denominator can turn negative and the
      step NaN), or a schedule of the step count. Default 0.0.

  Returns:
    A :class:`optax.GradientTransformation` with state
    :class:`ScaleByHVAdamState`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import anon_optax
    >>> tx = anon_optax.scale_by_hvadam()
    >>> params = {'w': jnp.array([1.0, -2.0]), 'b': jnp.array(0.5)}
    >>> state = tx.init(params)
    >>> grads = {'w': jnp.array([0.5, -4.0]), 'b': jnp.array(1.0)}
    >>> updates, state = tx.update(grads, state)
    >>> print(jnp.round(updates['w'], 4))  # 0.9 sign(g) at the first step.
    [ 0.9 -0.9]
    >>> print(state.flag)  # The hidden vector was started at the momentum.
    0

  References:
    Zhang et al., `HVAdam: A Full-Dimension Adaptive Optimizer
    <https://arxiv.org/abs/2511.20277>`_, 2025
  """
  _validation.check_real("b1", b1, 0.0, 1.0)
  _validation.check_real("b2", b2, 0.0, 1.0)
  _validation.check_real("eps", eps, 0.0)
  _validation.check_real_or_schedule("gamma", gamma, 0.0, why=_GAMMA_RANGE_REASON)

  def init_fn(params):
    _validation.check_params(params)
    # zeros_like keeps each parameter's sharding (also under `jax.eval_shape`).
    moment = lambda x: jnp.zeros_like(x, _common.statistics_dtype(jnp.result_type(x)))
    real_moment = lambda x: jnp.zeros_like(x, _common.real_statistics_dtype(jnp.result_type(x)))
    return ScaleByHVAdamState(
      count=jnp.zeros([], jnp.int32),
      mu=jax.tree.map(moment, params),
      var=jax.tree.map(real_moment, params),
      hidden=jax.tree.map(moment, params),
      flag=jnp.full([], -1, jnp.int32),
      step2=jnp.zeros([], jnp.int32),
      exp_delta=jnp.zeros([], _scalar_dtype(params)),
    )

  def update_fn(updates, state, params=None):
    _validation.check_updates_match(updates, state.mu)
    for grad, moment in zip(jax.tree.leaves(updates), jax.tree.leaves(state.mu)):
      if jnp.iscomplexobj(grad) and not jnp.issubdtype(moment.dtype, jnp.complexfloating):
        raise TypeError(
          "scale_by_hvadam got complex gradients for real parameters; "
          "the parameters must be complex too."
        )
    _validation.check_params_match(params, state.mu)
    return _update(
      updates,
      state,
      params,
      b1,
      b2,
      eps,
      _common.resolve_schedule(gamma, state.count),
      _common.exact_one_minus(b1),
      _common.exact_one_minus(b2),
    )

  return optax.GradientTransformation(init_fn, update_fn)


def hvadam(
  learning_rate: optax.ScalarOrSchedule,
  b1: jax.typing.ArrayLike = 0.9,
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-16,
  gamma: optax.ScalarOrSchedule = 0.0,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  weight_decay_mode: str = "l2",
  mask: optax.MaskOrFn | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""The HVAdam optimizer.

  HVAdam is Adam whose second moment measures how far the gradients stray
  from a hidden vector :math:`h` of their invariant components, plus a second
  step along :math:`h` whose size :math:`10^{6\bar\delta - 3}` grows with the
  running agreement :math:`\bar\delta` between :math:`h` and the momentum;
  when the agreement drops below 0.1 the hidden vector restarts from the
  momentum. With :math:`\eta_t` the learning rate and the notation of
  :func:`scale_by_hvadam`:

  .. math::
    \theta_{t+1} = \theta_t - \eta_t \left(\hat m_t / d_t
      + s_t\, h_{\mathrm{new}}\right),

  where :math:`s_t = 10^{6\bar\delta - 3}` on steps that move the hidden
  vector and 0 otherwise. It is the chain of weight decay (by
  ``weight_decay_mode``), :func:`scale_by_hvadam` and
  :func:`optax.scale_by_learning_rate`. Both of the authors' parameter moves
  are additive and neither depends on :math:`\theta`, so ``"decoupled"`` and
  ``"fixed"`` decay shrink :math:`\theta` once per step, as in their code.

  Args:
    learning_rate: a finite number or an Optax schedule of the step count.
    b1: decay rate of the first moment, in [0, 1). Default 0.9.
    b2: decay rate of the second moment and of the agreement average, in
      [0, 1). Default 0.999.
    eps: numerical-stability constant (see :func:`scale_by_hvadam`), >= 0.
      Default 1e-16.
    gamma: weight of the deviation in the second moment's weighting, a
      finite number >= 0 or a schedule. Default 0.0.
    weight_decay: as in :func:`anon_optax.anon`, >= 0 (in [0, 1] for
      ``"fixed"``); default 0.0.
    weight_decay_mode: as there: ``"l2"`` (default), ``"decoupled"`` or
      ``"fixed"``.
    mask: as there; default `None` (decay every leaf).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import anon_optax
    >>> def f(x): return jnp.sum(x ** 2)  # simple quadratic function
    >>> solver = anon_optax.hvadam(learning_rate=0.1)
    >>> params = jnp.array([1., 2., 3.])
    >>> print('Objective function: ', f(params))
    Objective function:  14.0
    >>> opt_state = solver.init(params)
    >>> for _ in range(5):
    ...  grad = jax.grad(f)(params)
    ...  updates, opt_state = solver.update(grad, opt_state, params)
    ...  params = optax.apply_updates(params, updates)
    ...  print('Objective function: {:.1E}'.format(f(params)))
    Objective function: 1.3E+01
    Objective function: 1.2E+01
    Objective function: 1.0E+01
    Objective function: 9.4E+00
    Objective function: 8.5E+00

  References:
    Zhang et al., `HVAdam: A Full-Dimension Adaptive Optimizer
    <https://arxiv.org/abs/2511.20277>`_, 2025
  """
  return _weight_decay.chain_with_weight_decay(
    scale_by_hvadam(b1=b1, b2=b2, eps=eps, gamma=gamma),
    learning_rate,
    weight_decay,
    weight_decay_mode,
    mask,
  )
