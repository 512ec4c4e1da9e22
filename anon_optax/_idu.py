r"""The gamma-preconditioner and its incremental delay update (IDU).

Anon (Zhang et al., arXiv 2605.02317) scales its momentum by a preconditioner
:math:`v \approx \sigma^{-\gamma/2}` refreshed only at the steps
:math:`a_k = \mathrm{base}^k`, each time as a weighted harmonic mean of the
previous :math:`v` and the new :math:`\sigma^{-\gamma/2}`. This module holds
the pure building blocks (refresh schedule, bias correction, harmonic refresh,
step guard), the state-update path that :func:`scale_by_idu` and
:func:`anon_optax.scale_by_anon` share, and :func:`scale_by_idu`. The
algorithm, the numerics (no power of :math:`\sigma` is formed, so large
:math:`|\gamma|` does not underflow in float32) and every deviation from the
authors' code are in the repository's ``docs/algorithm.md``.
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from anon_optax import _common
from anon_optax import _rounding
from anon_optax import _validation

_MAX_INT32 = _validation.MAX_INT32


class ScaleByIDUState(NamedTuple):
  """State for :func:`scale_by_idu`.

  Attributes:
    count: number of steps taken so far.
    next_refresh: the step at which the preconditioner is next refreshed; 0
      once the next refresh step would not fit in int32 (no refresh ever again).
    num_refreshes: number of preconditioner refreshes so far.
    num_accumulated: number of steps accumulated in ``nu`` since the latest
      refresh (0 right after a refresh).
    nu: second-moment accumulator :math:`s` of the incoming updates, reset to
      zero after every refresh (dtype ``nu_dtype``, else at least float32).
    precond: the preconditioner :math:`v` from the latest refresh (dtype
      ``precond_dtype``, else at least float32; ones before the first step).
  """

  count: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  next_refresh: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  num_refreshes: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  num_accumulated: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  nu: optax.Updates
  precond: optax.Updates


# ----------------------------------------------------------------------------
# Pure building blocks.
# ----------------------------------------------------------------------------


def next_refresh_step(
  refresh_step: jax.Array,
  refresh_base: Any,
  max_refresh_interval: Any | None = None,
) -> jax.Array:
  r"""Returns the refresh step after ``refresh_step``.

  .. math::
    a_{k+1} = a_k + \min\left((\mathrm{base} - 1)\, a_k,\
      \mathrm{max\_refresh\_interval}\right)

  so refreshes happen at the powers of the base (1, 2, 4, 8, ...) until the
  gap between two of them would exceed ``max_refresh_interval``, and every
  ``max_refresh_interval`` steps from then on. Overflow-safe: when the next
  step would not fit in int32 it returns 0, a step that is never reached
  (steps start at 1), so a saturated step counter never triggers a spurious
  refresh.

  Args:
    refresh_step: the current refresh step :math:`a_k` (int32 scalar).
    refresh_base: the integer base of the refresh sequence (maybe traced).
    max_refresh_interval: the largest gap between two refreshes, or `None`
      for no cap (maybe traced).

  Returns:
    :math:`a_{k+1}` as an int32 scalar, or 0 if it exceeds int32.
  """
  growth = jnp.asarray(refresh_base).astype(jnp.int32) - 1
  # (base - 1) * a_k, saturated at int32's maximum instead of wrapping around.
  gap = jnp.where(refresh_step <= _MAX_INT32 // growth, refresh_step * growth, _MAX_INT32)
  if max_refresh_interval is not None:
    gap = jnp.minimum(gap, jnp.asarray(max_refresh_interval).astype(jnp.int32))
  fits = refresh_step <= _MAX_INT32 - gap
  return jnp.where(fits, refresh_step + gap, 0).astype(jnp.int32)


def bias_correction(one_minus_b2: Any, num_accumulated: jax.Array, dtype: Any) -> jax.Array:
  r"""Returns :math:`1 - b_2^n` as a scalar of ``dtype``.

  Computed as :math:`-\mathrm{expm1}(n \log(1 - (1 - b_2)))`, which keeps
  full precision for ``b2`` close to 1 and any ``n``.

  Args:
    one_minus_b2: :math:`1 - b_2`, formed exactly as the accumulator forms it
      (in Python for a Python ``b2``). Rounding ``b2`` to float32 first and
      subtracting then would cancel three digits at ``b2 = 0.999`` and skew
      :math:`\sigma` by about 1e-5.
    num_accumulated: :math:`n`, the steps accumulated since the last refresh.
    dtype: the dtype of the result.
  """
  one_minus_b2 = jnp.asarray(one_minus_b2, dtype)
  return -jnp.expm1(num_accumulated.astype(dtype) * jnp.log1p(-one_minus_b2))


def log_bias_corrected_sigma(
  nu: jax.Array, one_minus_b2: Any, num_accumulated: jax.Array, eps: Any
) -> jax.Array:
  r"""Returns :math:`\log \sigma` with :math:`\sigma = s / (1 - b_2^n) + \epsilon`.

  Args:
    nu: the second-moment accumulator :math:`s` after ``num_accumulated`` steps.
    one_minus_b2: :math:`1 - b_2` (see :func:`bias_correction`).
    num_accumulated: :math:`n`, the steps accumulated since the last refresh.
    eps: added after the bias correction.

  Returns:
    :math:`\log \sigma`, in the dtype of ``nu``.
  """
  dtype = nu.dtype
  correction = bias_correction(one_minus_b2, num_accumulated, dtype)
  return jnp.log(nu / correction + jnp.asarray(eps, dtype))


def harmonic_refresh(precond: jax.Array, log_sigma: jax.Array, gamma: Any, beta3: Any) -> jax.Array:
  r"""The IDU refresh: a weighted harmonic mean of :math:`v^2` and :math:`\sigma^{-\gamma}`.

  .. math::
    v_{new} = \left(\beta_3 v^{-2} + (1 - \beta_3) \sigma^{\gamma}\right)^{-1/2}

  With :math:`p = v / \sqrt{\beta_3}` and :math:`q = ((1 - \beta_3)
  \sigma^\gamma)^{-1/2} = \exp(-\tfrac12(\log(1-\beta_3) + \gamma\log\sigma))`
  this is :math:`v_{new}^{-2} = p^{-2} + q^{-2}`, computed like ``hypot`` as
  :math:`\min(p, q) / \sqrt{1 + (\min(p,q) / \max(p,q))^2}`. No square of
  :math:`v` and no power of :math:`\sigma` is formed, so nothing overflows or
  underflows in float32 for large :math:`|\gamma|` unless the result itself
  does, and the cost is one ``exp`` per element besides the ``log`` of
  :math:`\sigma`. With :math:`\beta_3 = 0.5` this is the authors' harmonic mean
  :math:`v_{new} = \sqrt{2 / (v^{-2} + \sigma^\gamma)}`.

  Args:
    precond: the previous preconditioner :math:`v` (positive).
    log_sigma: :math:`\log \sigma` (see :func:`log_bias_corrected_sigma`).
    gamma: the adaptivity exponent.
    beta3: the weight of the previous preconditioner, in [0, 1).

  Returns:
    The refreshed preconditioner, in the dtype of ``precond``.
  """
  dtype = precond.dtype
  gamma = jnp.asarray(gamma, dtype)
  beta3 = jnp.asarray(beta3, dtype)
  # sigma**0 is 1 even where sigma overflowed to inf (as in NumPy), so gamma = 0
  # stays SGD instead of producing 0 * inf = NaN.
  log_sigma_to_gamma = jnp.where(gamma == 0, 0, gamma * log_sigma)
  new_root = jnp.exp(-0.5 * (jnp.log1p(-beta3) + log_sigma_to_gamma))
  # beta3 = 0 (the first refresh): the previous term vanishes (also where v is 0), so p is
  # infinite and the result is q. It is selected, not computed from p = v / sqrt(0): no
  # infinity is formed on a healthy step, also in a discarded branch, so that
  # `jax_debug_infs` finds the user's infinities, not this one.
  absent = beta3 == 0
  previous_root = precond * jax.lax.rsqrt(jnp.where(absent, 1, beta3))
  smaller = jnp.where(absent, new_root, jnp.minimum(previous_root, new_root))
  larger = jnp.maximum(previous_root, new_root)
  # Equal terms give ratio 1 (also inf / inf and 0 / 0, which would be NaN); a vanishing
  # previous term gives 0, which is what q / inf was.
  equal = smaller == larger
  ratio = jnp.where(equal, 1, smaller / jnp.where(equal, 1, larger))
  ratio = jnp.where(absent, 0, ratio)
  precond_new = smaller / jnp.sqrt(1 + ratio * ratio)
  # With gamma = 0 and v = 1 the terms are exactly beta3 and 1 - beta3, so
  # v_new = 1; keep that fixed point exact (rounding in exp and sqrt would move
  # it by an ulp for some beta3), so that gamma = 0 stays exactly SGD.
  return jnp.where((gamma == 0) & (precond == 1), 1, precond_new).astype(dtype)


def refresh_preconditioner(
  nu: jax.Array,
  precond: jax.Array,
  *,
  num_accumulated: jax.Array,
  is_first: jax.Array,
  one_minus_b2: Any,
  eps: Any,
  gamma: Any,
  beta3: Any,
) -> jax.Array:
  r"""Returns the preconditioner refreshed from ``nu``, in the dtype of ``nu``.

  The first refresh (``is_first``) sets :math:`v = \sigma^{-\gamma/2}`; every
  later one is :func:`harmonic_refresh`. The first is the harmonic refresh with
  :math:`\beta_3 = 0` (the previous preconditioner gets no weight), and that
  is exact: with :math:`p = \infty` the refresh returns :math:`q`.

  Args:
    nu: the accumulator :math:`s` after ``num_accumulated`` steps.
    precond: the previous preconditioner.
    num_accumulated: :math:`n`, the number of steps accumulated in ``nu``.
    is_first: whether this is the first refresh.
    one_minus_b2: :math:`1 - b_2` (see :func:`log_bias_corrected_sigma`).
    eps: added to the bias-corrected second moment.
    gamma: the adaptivity exponent.
    beta3: the weight of the previous preconditioner.
  """
  log_sigma = log_bias_corrected_sigma(nu, one_minus_b2, num_accumulated, eps)
  effective_beta3 = jnp.where(is_first, 0, beta3)
  return harmonic_refresh(precond.astype(nu.dtype), log_sigma, gamma, effective_beta3)


# Quadratic approximations on [0, 1] that are exact at both ends, so that the
# power below is continuous and increasing across powers of two:
# log2(1 + f) ~ f (LOG2_A - LOG2_B f), 2**f ~ 1 + f (EXP2_A + EXP2_B f).
_LOG2_A, _LOG2_B = 1.3465553, 0.3465553
_EXP2_A, _EXP2_B = 0.6565, 0.3435


def _power_of_two(whole: jax.Array, dtype: Any) -> jax.Array:
  """``2.0 ** whole`` for integer-valued ``whole`` in the normal range, by its bits."""
  info = jnp.finfo(dtype)
  int_dtype = jnp.int32 if info.bits == 32 else jnp.int64
  biased = whole.astype(int_dtype) + (info.maxexp - 1)
  return jax.lax.bitcast_convert_type(biased << info.nmant, dtype)


def _split_power(x: jax.Array, exponent: jax.Array):
  """The pieces of :func:`approximate_power`: ``(result, f, e, y, whole, r)``."""
  dtype = x.dtype
  info = jnp.finfo(dtype)
  int_dtype = jnp.int32 if info.bits == 32 else jnp.int64
  num_mantissa_bits = info.nmant
  bias = info.maxexp - 1
  bits = jax.lax.bitcast_convert_type(x, int_dtype)
  biased_exponent = bits >> num_mantissa_bits
  one_plus_f = jax.lax.bitcast_convert_type(
    (bits & ((1 << num_mantissa_bits) - 1)) | (bias << num_mantissa_bits), dtype
  )
  f = one_plus_f - 1
  e = biased_exponent - bias
  log2_x = e.astype(dtype) + f * (_LOG2_A - _LOG2_B * f)
  y = jnp.clip(exponent * log2_x, 1 - bias, bias)
  whole = jnp.floor(y)
  r = y - whole
  mantissa = 1 + r * (_EXP2_A + _EXP2_B * r)  # In [1, 2].
  result_bits = jax.lax.bitcast_convert_type(mantissa, int_dtype) + (
    whole.astype(int_dtype) << num_mantissa_bits
  )
  result = jax.lax.bitcast_convert_type(result_bits, dtype)
  return result, f, e, log2_x, y, whole, r


@jax.custom_jvp
def _approximate_power(x: jax.Array, exponent: jax.Array) -> jax.Array:
  return _split_power(x, exponent)[0]


@_approximate_power.defjvp
def _approximate_power_jvp(primals, tangents):
  # The bit manipulations have no derivative in JAX; this is the derivative
  # of the piecewise quadratic the primal computes, so that gradients through
  # a guarded step equal its finite differences.
  x, exponent = primals
  dx, dexponent = tangents
  result, f, e, log2_x, y, whole, r = _split_power(x, exponent)
  dtype = x.dtype
  bias = jnp.finfo(dtype).maxexp - 1
  normal = e > -bias  # Zero and subnormal x count as a constant 2**-bias.
  inside = (y > 1 - bias) & (y < bias)  # Outside, the result is clipped.
  # The coefficients are zeroed, not the tangents: reverse mode multiplies the
  # cotangent by each coefficient, and an infinite one would give 0 * inf.
  dresult_dy = jnp.where(inside, _power_of_two(whole, dtype) * (_EXP2_A + 2 * _EXP2_B * r), 0)
  dlog2_dx = (_LOG2_A - 2 * _LOG2_B * f) / _power_of_two(jnp.where(normal, e, 0), dtype)
  dy = jnp.where(normal, exponent * dlog2_dx, 0) * dx + log2_x * dexponent
  return result, (dresult_dy * dy).astype(dtype)


def approximate_power(x: jax.Array, exponent: Any) -> jax.Array:
  r"""``x ** exponent`` for ``x >= 0``, to about ``0.9% * max(1, |exponent|)``.

  :math:`x = (1 + f)\,2^e` is split exactly by its bits,
  :math:`\log_2 x \approx e + f(a - b f)`, and
  :math:`2^y = 2^{\lfloor y \rfloor}\, 2^{r}` with
  :math:`2^r \approx 1 + r(c + d r)`: a few multiply-adds and integer
  operations, where ``exp(exponent * log(x))`` costs more than the rest of an
  optimizer step on a CPU. Both quadratics are exact at the ends of [0, 1], so
  the result is continuous and monotone in ``x``. ``x = 0`` counts as
  :math:`2^{-127}` (float32), ``inf`` as :math:`2^{128}`; the result is
  clipped to the normal range, so it is never 0, inf or NaN for a non-NaN
  ``x``. Differentiable: its derivatives are those of the piecewise quadratic
  it computes (zero where the result is clipped).

  Args:
    x: a float32 or float64 array, >= 0.
    exponent: a scalar (maybe traced).

  Returns:
    The approximate power, in the dtype of ``x``.
  """
  return _approximate_power(x, jnp.asarray(exponent, x.dtype))


def guarded_preconditioner(
  precond: jax.Array,
  nu: jax.Array,
  *,
  inverse_correction: jax.Array,
  eps: Any,
  gamma: Any,
  factor: Any,
) -> jax.Array:
  r"""The preconditioner a step between refreshes uses under the guard.

  .. math::
    v_\mathrm{step} = \min\left(v,\ C \sigma_t^{-\gamma/2}\right), \qquad
    \sigma_t = \frac{s_t}{1 - b_2^{n_t}} + \epsilon

  where :math:`s_t` is this step's accumulator (``nu``, this step's update
  included), :math:`n_t` the number of steps it holds and :math:`C` the
  ``factor``. The power is :func:`approximate_power`.

  Args:
    precond: the preconditioner :math:`v` of the latest refresh.
    nu: the accumulator :math:`s_t` after this step.
    inverse_correction: :math:`1 / (1 - b_2^{n_t})` (a scalar).
    eps: added to the bias-corrected second moment.
    gamma: the adaptivity exponent.
    factor: :math:`C` (infinite: no bound).

  Returns:
    :math:`v_\mathrm{step}`, in at least float32.
  """
  dtype = jnp.promote_types(nu.dtype, jnp.float32)
  sigma = nu.astype(dtype) * inverse_correction.astype(dtype) + jnp.asarray(eps, dtype)
  gamma = _common.at_least_float32(gamma)
  bound = factor * approximate_power(sigma, -0.5 * gamma)
  return jnp.minimum(precond.astype(dtype), bound)


def _at_most_largest_finite(x: jax.Array, dtype: Any) -> jax.Array:
  """Clips ``x`` at the largest finite value of ``dtype``; NaN stays NaN.

  A preconditioner that overflows (a zero second moment with a large gamma,
  or ``eps = 0``) is then stored finite, so that a zero momentum gives a zero
  step instead of ``0 * inf = NaN``.
  """
  return jnp.minimum(x, jnp.asarray(jnp.finfo(dtype).max, x.dtype))


# ----------------------------------------------------------------------------
# The state-update path shared by `scale_by_idu` and `scale_by_anon`.
# ----------------------------------------------------------------------------


@functools.partial(
  jax.tree_util.register_dataclass,
  data_fields=[
    "b2",
    "eps",
    "gamma",
    "beta3",
    "refresh_base",
    "max_refresh_interval",
    "guard_factor",
    "one_minus_b2",
  ],
  meta_fields=["exact", "nu_dtype", "precond_dtype", "check_schedule_at_run_time"],
)
@dataclasses.dataclass(frozen=True)
class PreconditionerConfig:
  """The hyperparameters of the preconditioner, checked once at construction.

  A pytree: the jitted step takes it as an argument, its numbers (the data
  fields) traced, so that one compiled program serves every value and an
  eager call compiles once; the rest (the meta fields) are static. The
  numbers are the arguments of :func:`scale_by_idu` of the same names (real
  parts; see :func:`anon_optax._common.real_part`); ``one_minus_b2`` is
  :math:`1 - b_2` formed exactly for a Python ``b2`` (`None` for an array).
  ``nu_dtype`` and ``precond_dtype`` are canonical or `None`, and
  ``check_schedule_at_run_time`` says whether ``refresh_base`` or
  ``max_refresh_interval`` is an array, whose value
  :func:`invalid_schedule_to_nan` checks in the step.
  """

  b2: Any
  eps: Any
  gamma: Any
  beta3: Any
  refresh_base: Any
  max_refresh_interval: Any
  guard_factor: Any
  one_minus_b2: Any
  exact: bool
  nu_dtype: Any
  precond_dtype: Any
  check_schedule_at_run_time: bool

  def at_step(self, count: jax.Array) -> "PreconditionerConfig":
    """This config with ``gamma`` evaluated at ``count`` if it is a schedule."""
    return dataclasses.replace(self, gamma=_common.resolve_schedule(self.gamma, count))


def make_config(
  *,
  b2,
  eps,
  gamma,
  beta3,
  refresh_base,
  max_refresh_interval,
  guard_factor,
  exact,
  nu_dtype,
  precond_dtype,
) -> PreconditionerConfig:
  """Validates the preconditioner's arguments and bundles them."""
  max_refresh_interval = _validation.resolve_max_refresh_interval(max_refresh_interval, exact)
  _validation.check_preconditioner(
    b2, eps, gamma, beta3, refresh_base, max_refresh_interval, guard_factor, exact
  )
  # Complex numbers (with zero imaginary part) count as their real part.
  real = _common.real_part
  return PreconditionerConfig(
    b2=real(b2),
    eps=real(eps),
    gamma=real(gamma),
    beta3=real(beta3),
    refresh_base=real(refresh_base),
    max_refresh_interval=real(max_refresh_interval),
    guard_factor=real(guard_factor),
    one_minus_b2=_common.exact_one_minus(real(b2)),
    exact=exact,
    nu_dtype=_validation.check_storage_dtype("nu_dtype", nu_dtype),
    precond_dtype=_validation.check_storage_dtype("precond_dtype", precond_dtype),
    check_schedule_at_run_time=not isinstance(refresh_base, int)
    or not (max_refresh_interval is None or isinstance(max_refresh_interval, int)),
  )


def init_counters_and_statistics(params: optax.Params, config: PreconditionerConfig) -> dict:
  """The counters, ``nu`` (zeros) and ``precond`` (ones) for ``params``.

  Their dtypes are ``nu_dtype`` and ``precond_dtype``, by default the real
  dtype of the parameters' and at least float32. Built with ``zeros_like`` of
  the parameters, so that (as in :func:`optax.adam`) they get the parameters'
  sharding.
  """
  _validation.check_params(params)

  def zeros(p, dtype):
    return jnp.zeros_like(p, dtype=dtype or _common.real_statistics_dtype(jnp.result_type(p)))

  return dict(
    count=jnp.zeros([], jnp.int32),
    next_refresh=jnp.ones([], jnp.int32),
    num_refreshes=jnp.zeros([], jnp.int32),
    num_accumulated=jnp.zeros([], jnp.int32),
    nu=jax.tree.map(lambda p: zeros(p, config.nu_dtype), params),
    precond=jax.tree.map(lambda p: zeros(p, config.precond_dtype) + 1, params),
  )


def _squared_magnitude(update: jax.Array, dtype: Any) -> jax.Array:
  """Returns ``|update|**2`` in ``dtype``, squaring after the upcast."""
  update = jnp.asarray(update)
  update = update.astype(jnp.promote_types(update.dtype, dtype))
  return jnp.real(update * jnp.conj(update)).astype(dtype)


def _accumulate(updates, nu, b2, one_minus_b2):
  """``(1 - b2) |u|**2 + b2 s`` of every leaf, in at least float32.

  As `optax.tree.update_moment` computes it, but with ``1 - b2`` given, so
  that the refresh branch (where ``b2`` is an operand) and the normal pass
  round it the same way.
  """

  def leaf(u, s):
    dtype = jnp.promote_types(s.dtype, jnp.float32)
    return jnp.asarray(one_minus_b2, dtype) * _squared_magnitude(u, dtype) + jnp.asarray(
      b2, dtype
    ) * s.astype(dtype)

  return jax.tree.map(leaf, updates, nu)


# The two branches of the refresh `lax.cond` are module-level functions that get
# every input as an operand: un-jitted (eager) calls then hit JAX's cache instead
# of tracing and compiling a new conditional at every step.
def _refresh_branch(updates, nu, precond, b2, refresh, hyperparams):
  accumulated = _accumulate(updates, nu, b2, hyperparams["one_minus_b2"])
  new_precond = jax.tree.map(
    lambda s, v: _rounding.store(
      _at_most_largest_finite(refresh_preconditioner(s, v, **refresh, **hyperparams), v.dtype),
      v.dtype,
    ),
    accumulated,
    precond,
  )
  return new_precond, jnp.asarray(True)


def _keep_branch(updates, nu, precond, b2, refresh, hyperparams):
  del updates, nu, b2, refresh, hyperparams
  return precond, jnp.asarray(False)


def _cap_reached(num_accumulated, num_refreshes, max_refresh_interval):
  """Whether the latest refresh is ``max_refresh_interval`` steps old or more.

  Normally the schedule refreshes first; this catches a cap set (or lowered)
  on a resumed state whose next scheduled refresh is further away.
  """
  if max_refresh_interval is None:
    return jnp.asarray(False)
  interval = jnp.asarray(max_refresh_interval).astype(jnp.int32)
  return (num_refreshes > 0) & (num_accumulated >= interval)


def update_preconditioner(updates: optax.Updates, state: Any, config: PreconditionerConfig, gamma):
  """Advances the preconditioner state by one step of ``updates``.

  Accumulates :math:`|u|^2` into ``nu``; at a refresh step (the schedule's, or
  ``max_refresh_interval`` steps after the latest refresh), refreshes
  ``precond`` from ``nu`` and resets ``nu``. One `jax.lax.cond` for the whole
  tree returns only the new preconditioner and a "reset" flag, so a normal
  step does no refresh work; the accumulation and reset are one elementwise
  pass after it, written in place into the (donated) ``nu``. Passing the
  accumulated ``nu`` through the cond instead makes XLA copy all of it on
  every step (benchmarks/README.md).

  Args:
    updates: this step's updates.
    state: a :class:`ScaleByIDUState` or :class:`anon_optax.ScaleByAnonState`.
    config: the preconditioner's hyperparameters.
    gamma: the adaptivity exponent at this step (a schedule evaluated).

  Returns:
    ``state`` with the counters, ``nu`` and ``precond`` after this step.
  """
  b2 = config.b2
  step = optax.safe_increment(state.count)
  num_accumulated = optax.safe_increment(state.num_accumulated)
  is_refresh = (step == state.next_refresh) | _cap_reached(
    num_accumulated, state.num_refreshes, config.max_refresh_interval
  )
  one_minus_b2 = one_minus(config)
  update_leaves = jax.tree.leaves(updates)
  precond = jax.tree.map(
    lambda u, v: v.astype(_common.restored_dtype(u, v, config.precond_dtype, real=True)),
    updates,
    state.precond,
  )
  hyperparams = dict(one_minus_b2=one_minus_b2, eps=config.eps, gamma=gamma, beta3=config.beta3)
  refresh = dict(num_accumulated=num_accumulated, is_first=state.num_refreshes == 0)
  precond, reset = jax.lax.cond(
    is_refresh,
    _refresh_branch,
    _keep_branch,
    updates,
    state.nu,
    precond,
    b2,
    refresh,
    hyperparams,
  )
  accumulated, treedef = jax.tree.flatten(_accumulate(updates, state.nu, b2, one_minus_b2))
  accumulated = [jnp.where(reset, jnp.zeros_like(s), s) for s in accumulated]
  if not config.exact:
    # The guard reads the new accumulator in the step's pass: read it back
    # rather than recompute it from the old one, overwritten in place.
    accumulated = [_common.read_back_from_memory(s, u) for s, u in zip(accumulated, update_leaves)]
  nu = [
    _rounding.store(
      s, _common.restored_dtype(u, old, config.nu_dtype, real=True), step=step, salt=index
    )
    for index, (s, u, old) in enumerate(zip(accumulated, update_leaves, jax.tree.leaves(state.nu)))
  ]
  next_refresh = jnp.where(
    is_refresh,
    next_refresh_step(jnp.asarray(step), config.refresh_base, config.max_refresh_interval),
    state.next_refresh,
  )
  return state._replace(
    count=step,
    next_refresh=next_refresh,
    num_refreshes=jnp.where(
      is_refresh, optax.safe_increment(state.num_refreshes), state.num_refreshes
    ),
    num_accumulated=jnp.where(is_refresh, 0, num_accumulated).astype(jnp.int32),
    nu=treedef.unflatten(nu),
    precond=precond,
  )


def step_preconditioner(new_state: Any, config: PreconditionerConfig, gamma) -> optax.Updates:
  r"""The preconditioner this step multiplies by: ``precond``, or guarded.

  With ``exact=True`` it is the latest refresh's ``new_state.precond`` (the
  authors' rule). Otherwise, on steps between refreshes, it is
  :func:`guarded_preconditioner` of it and of the accumulator after this step;
  on a refresh step it is the fresh ``precond``, which needs no guard: the
  refresh itself gives :math:`v \le \sigma^{-\gamma/2} / \sqrt{1 - \beta_3}`.
  Either way it is meant to be consumed elementwise in the same pass as the
  step, so that XLA fuses it and nothing parameter-sized is materialised. It
  reads the accumulator after this step (the state's output), not before: the
  old one is overwritten in place, and reading it here too would make XLA copy
  it.
  """
  if config.exact:
    return new_state.precond
  one_minus_b2 = one_minus(config)
  # On a refresh step the accumulator was reset: n = 1 keeps the bound finite,
  # and the fresh preconditioner is selected (not bounded by an infinite
  # factor: its derivative would turn a zero cotangent into 0 * inf = NaN).
  refreshed = new_state.num_accumulated == 0
  num_accumulated = jnp.maximum(new_state.num_accumulated, 1)

  def guard(v, s):
    dtype = jnp.promote_types(s.dtype, jnp.float32)
    inverse_correction = 1 / bias_correction(one_minus_b2, num_accumulated, dtype)
    guarded = guarded_preconditioner(
      v,
      s,
      inverse_correction=inverse_correction,
      eps=config.eps,
      gamma=gamma,
      factor=jnp.asarray(config.guard_factor, dtype),
    )
    return jnp.where(refreshed, v.astype(dtype), guarded)

  return jax.tree.map(guard, new_state.precond, new_state.nu)


def invalid_schedule_to_nan(config: PreconditionerConfig) -> jax.Array | None:
  """NaN if a run-time ``refresh_base`` or ``max_refresh_interval`` is invalid, else 1.

  Python numbers are checked at construction. Injected ones (with
  `optax.inject_hyperparams`) can be changed in the state; a ``refresh_base``
  below 2 or a ``max_refresh_interval`` below 1 would stop every later
  refresh, silently, so the step turns NaN instead. `None` when both are
  Python numbers.
  """
  if not config.check_schedule_at_run_time:
    return None
  valid = jnp.asarray(config.refresh_base) >= 2
  if config.max_refresh_interval is not None:
    valid &= jnp.asarray(config.max_refresh_interval) >= 1
  # sqrt(-1) is the NaN, formed only when invalid: a NaN constant selected away would still
  # be computed, and trip `jax_debug_nans` on every valid step.
  return jnp.sqrt(jnp.where(valid, 1.0, -1.0))


def preconditioner_step(updates, state, config: PreconditionerConfig, gamma):
  """One step of the preconditioner: ``(scale, new_state)``.

  ``scale`` is the tree the step multiplies by elementwise (see
  :func:`step_preconditioner`); ``new_state`` has the counters, ``nu`` and
  ``precond`` advanced.
  """
  new_state = update_preconditioner(updates, state, config, gamma)
  return step_preconditioner(new_state, config, gamma), new_state


def one_minus(config: PreconditionerConfig) -> Any:
  """``1 - b2``: exact for a Python ``b2``; at least float32 for an array."""
  if config.one_minus_b2 is not None:
    return config.one_minus_b2
  return 1 - _common.at_least_float32(config.b2)


@jax.jit
def _idu_update(updates, state, config: PreconditionerConfig):
  scale, new_state = preconditioner_step(updates, state, config, config.gamma)
  validity = invalid_schedule_to_nan(config)
  if validity is not None:
    scale = jax.tree.map(lambda v: v * validity.astype(v.dtype), scale)
  updates = jax.tree.map(lambda v, u: (v * u).astype(_common.update_dtype(u)), scale, updates)
  return updates, new_state


def scale_by_idu(
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-16,
  gamma: optax.ScalarOrSchedule = 1.0,
  *,
  beta3: jax.typing.ArrayLike = 0.5,
  refresh_base: int = 2,
  max_refresh_interval: int | str | None = "auto",
  guard_factor: jax.typing.ArrayLike = 10.0,
  exact: bool = False,
  nu_dtype: jax.typing.DTypeLike | None = None,
  precond_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
  r"""Scale updates by the gamma-preconditioner refreshed by IDU.

  The preconditioner of Anon alone, applied to whatever updates :math:`u_t`
  reach it, so it composes after clipping, :func:`optax.trace`, etc. For
  :math:`t = 1, 2, \dots`, with :math:`n_t` the steps accumulated since the
  latest refresh:

  .. math::
    s_t &= b_2 s_{t-1} + (1 - b_2) |u_t|^2 \\
    \sigma_t &= s_t / (1 - b_2^{n_t}) + \epsilon \\
    \text{at } t = a_k:\quad v &\leftarrow
      \left(\beta_3 v^{-2} + (1 - \beta_3)\sigma_t^{\gamma}\right)^{-1/2}
      \ (v \leftarrow \sigma_t^{-\gamma/2} \text{ at } k = 0),
      \quad s_t \leftarrow 0 \\
    \text{output}_t &= \min\left(v,\ C \sigma_t^{-\gamma/2}\right) \odot u_t

  with refresh steps :math:`a_k` = 1, ``refresh_base``, ``refresh_base**2``,
  ... until they are ``max_refresh_interval`` (256) steps apart, then every
  256 steps, and :math:`C` = ``guard_factor`` (the min is skipped at refresh
  steps). ``exact=True`` is the authors' rule, uncapped:
  :math:`\text{output}_t = v \odot u_t`.

  Args:
    b2: as in :func:`anon_optax.scale_by_anon`, in [0, 1); default 0.999.
    eps: as there, >= 0; default 1e-16.
    gamma: as there (0 gives :math:`v = 1`); default 1.0.
    beta3: as there, in [0, 1); default 0.5.
    refresh_base: as there, an integer >= 2; default 2.
    max_refresh_interval: as there, ``"auto"`` (default: 256, or no cap with
      ``exact=True``), `None` (no cap) or an integer >= 1.
    guard_factor: as there, a finite number >= 1; default 10.0.
    exact: as there; default `False`.
    nu_dtype: as there; default `None` (at least float32); bfloat16 halves
      its memory, float16 and float8 are refused.
    precond_dtype: as there; default `None` (at least float32); bfloat16
      halves its memory, float16 and float8 are refused (their range clips
      :math:`v`, and small updates would be scaled too little).

  Returns:
    A :class:`optax.GradientTransformation` with state
    :class:`ScaleByIDUState`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import anon_optax
    >>> tx = optax.chain(optax.trace(decay=0.9), anon_optax.scale_by_idu(gamma=1.0))
    >>> params = jnp.array([1.0, -2.0])
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jnp.array([0.5, -4.0]), state)
    >>> print(jnp.round(updates, 4))
    [ 1. -1.]

  References:
    Zhang et al., `Anon: Extrapolating Adaptivity Beyond SGD and Adam
    <https://arxiv.org/abs/2605.02317>`_, 2026
  """
  config = make_config(
    b2=b2,
    eps=eps,
    gamma=gamma,
    beta3=beta3,
    refresh_base=refresh_base,
    max_refresh_interval=max_refresh_interval,
    guard_factor=guard_factor,
    exact=exact,
    nu_dtype=nu_dtype,
    precond_dtype=precond_dtype,
  )

  def init_fn(params):
    return ScaleByIDUState(**init_counters_and_statistics(params, config))

  def update_fn(updates, state, params=None):
    del params
    _validation.check_updates_match(updates, state.nu)
    # Jitted, with the config's numbers as arguments: an eager call compiles
    # once, not op by op, and under the caller's jit it is inlined.
    return _idu_update(updates, state, config.at_step(state.count))

  return optax.GradientTransformation(init_fn, update_fn)
