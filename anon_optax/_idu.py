r"""The gamma-preconditioner and its incremental delay update (IDU).

Anon (Zhang et al., "Anon: Extrapolating Adaptivity Beyond SGD and Adam",
arXiv 2605.02317) scales its momentum by a preconditioner
:math:`v \approx \sigma^{-\gamma/2}` built from the second moment
:math:`\sigma` of the gradients. The preconditioner is refreshed only at the
log-spaced steps :math:`t = a_k = \mathrm{base}^k` (1, 2, 4, 8, ... for base 2),
each time as a weighted harmonic mean of the previous preconditioner and the
new :math:`\sigma^\gamma`; between refreshes the second moment keeps
accumulating and is reset after each refresh.

This module holds the pure building blocks (the refresh schedule, the
accumulated-step bias correction, the harmonic-mean refresh, whose
:math:`\beta_3 = 0` case is the first refresh :math:`v = \sigma^{-\gamma/2}`) and
:func:`scale_by_idu`, the preconditioner alone as an Optax transformation.
:func:`anon_optax.scale_by_anon` is built from the same blocks.

Numerics: the refresh never forms :math:`\sigma^\gamma` or :math:`v^{-2}`
(see :func:`harmonic_refresh`: :math:`\sigma` enters only through
:math:`\exp(-\tfrac{\gamma}{2}\log\sigma)`, and the two terms are combined
like ``hypot``). Formed directly, both underflow in float32 for large
:math:`|\gamma|` (with ``eps = 1e-16``, :math:`\sigma^\gamma < 10^{-45}`
already for :math:`\gamma \geq 3`), which turns a tiny or zero gradient into
an infinite preconditioner and a NaN step. In float64 this form agrees with
the direct formula to round-off.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from anon_optax import _common
from anon_optax import _validation

_MAX_INT32 = jnp.iinfo(jnp.int32).max


class ScaleByIDUState(NamedTuple):
  """State for :func:`scale_by_idu`.

  Attributes:
    count: number of steps taken so far.
    next_refresh: the step at which the preconditioner is next refreshed; 0
      once the next refresh step would not fit in int32 (no refresh ever again).
    num_refreshes: number of preconditioner refreshes so far.
    nu: second-moment accumulator :math:`s` of the incoming updates, reset to
      zero after every refresh (at least float32).
    precond: the preconditioner :math:`v` from the latest refresh (at least
      float32; ones before the first step).
  """

  count: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  next_refresh: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  num_refreshes: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  nu: optax.Updates
  precond: optax.Updates


# ----------------------------------------------------------------------------
# Pure building blocks.
# ----------------------------------------------------------------------------


def next_refresh_step(refresh_step: jax.Array, refresh_base: Any) -> jax.Array:
  """Returns the refresh step after ``refresh_step``: ``refresh_step * base``.

  Overflow-safe: when the product would not fit in int32 it returns 0, a step
  that is never reached (steps start at 1), so a saturated step counter never
  triggers a spurious refresh.

  Args:
    refresh_step: the current refresh step :math:`a_k` (int32 scalar).
    refresh_base: the integer base of the refresh sequence (maybe traced).

  Returns:
    :math:`a_{k+1}` as an int32 scalar, or 0 if it exceeds int32.
  """
  base = jnp.asarray(refresh_base).astype(jnp.int32)
  fits = refresh_step <= _MAX_INT32 // base
  return jnp.where(fits, refresh_step * base, 0).astype(jnp.int32)


def accumulated_steps(refresh_step: jax.Array, refresh_base: Any) -> jax.Array:
  r"""Number of steps accumulated in the second moment at a refresh step.

  The accumulator restarts after every refresh, so at :math:`t = a_k` it holds
  :math:`n = a_k - a_{k-1} = t - t / \mathrm{base}` steps. At the first refresh,
  :math:`t = a_0 = 1`, integer division gives :math:`n = 1 - 0 = 1` as well.

  Args:
    refresh_step: the refresh step :math:`t = a_k` (int32 scalar).
    refresh_base: the integer base of the refresh sequence (maybe traced).

  Returns:
    :math:`n` as an int32 scalar.
  """
  base = jnp.asarray(refresh_base).astype(jnp.int32)
  return refresh_step - refresh_step // base


def log_bias_corrected_sigma(
    nu: jax.Array, one_minus_b2: Any, num_accumulated: jax.Array, eps: Any
) -> jax.Array:
  r"""Returns :math:`\log \sigma` with :math:`\sigma = s / (1 - b_2^n) + \epsilon`.

  Args:
    nu: the second-moment accumulator :math:`s` after ``num_accumulated`` steps.
    one_minus_b2: :math:`1 - b_2`, formed exactly as the accumulator forms it
      (in Python for a Python ``b2``). Rounding ``b2`` to float32 first and
      subtracting then would cancel three digits at ``b2 = 0.999`` and skew
      :math:`\sigma` by about 1e-5.
    num_accumulated: :math:`n`, the steps accumulated since the last refresh.
    eps: added after the bias correction.

  Returns:
    :math:`\log \sigma`, in the dtype of ``nu``.
  """
  dtype = nu.dtype
  one_minus_b2 = jnp.asarray(one_minus_b2, dtype)
  # 1 - b2**n as -expm1(n * log(b2)), with log(b2) = log1p(-(1 - b2)).
  correction = -jnp.expm1(
      num_accumulated.astype(dtype) * jnp.log1p(-one_minus_b2)
  )
  return jnp.log(nu / correction + jnp.asarray(eps, dtype))


def harmonic_refresh(
    precond: jax.Array, log_sigma: jax.Array, gamma: Any, beta3: Any
) -> jax.Array:
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
  # beta3 = 0 (the first refresh): that term vanishes (also where v is 0).
  previous_root = jnp.where(beta3 == 0, jnp.inf, precond * jax.lax.rsqrt(beta3))
  new_root = jnp.exp(-0.5 * (jnp.log1p(-beta3) + log_sigma_to_gamma))
  smaller = jnp.minimum(previous_root, new_root)
  larger = jnp.maximum(previous_root, new_root)
  # inf / inf (both terms vanish) would be NaN; the answer is then inf.
  ratio = jnp.where(smaller == larger, 1, smaller / larger)
  precond_new = smaller / jnp.sqrt(1 + ratio * ratio)
  # With gamma = 0 and v = 1 the terms are exactly beta3 and 1 - beta3, so
  # v_new = 1; keep that fixed point exact (rounding in exp and sqrt would move
  # it by an ulp for some beta3), so that gamma = 0 stays exactly SGD.
  return jnp.where((gamma == 0) & (precond == 1), 1, precond_new).astype(dtype)


def refresh_preconditioner(
    nu: jax.Array,
    precond: jax.Array,
    *,
    refresh_step: jax.Array,
    one_minus_b2: Any,
    eps: Any,
    gamma: Any,
    beta3: Any,
    refresh_base: Any,
) -> jax.Array:
  r"""Returns the preconditioner refreshed at ``refresh_step`` from ``nu``.

  The first refresh (step 1) sets :math:`v = \sigma^{-\gamma/2}`; every later
  one is :func:`harmonic_refresh`. The first is the harmonic refresh with
  :math:`\beta_3 = 0` (the previous preconditioner gets no weight), and that
  is exact: with :math:`p = \infty` the refresh returns :math:`q`.
  """
  num_accumulated = accumulated_steps(refresh_step, refresh_base)
  log_sigma = log_bias_corrected_sigma(nu, one_minus_b2, num_accumulated, eps)
  effective_beta3 = jnp.where(refresh_step == 1, 0, beta3)
  return harmonic_refresh(precond, log_sigma, gamma, effective_beta3)


# ----------------------------------------------------------------------------
# The preconditioner state machine shared by `scale_by_idu` and `scale_by_anon`.
# ----------------------------------------------------------------------------


def _squared_magnitude(update: jax.Array, dtype: jnp.dtype) -> jax.Array:
  """Returns ``|update|**2`` in ``dtype``, squaring after the upcast."""
  update = update.astype(jnp.promote_types(update.dtype, dtype))
  return jnp.real(update * jnp.conj(update)).astype(dtype)


def init_preconditioner(params: optax.Params):
  """Returns ``(nu, precond)`` for ``params``: zeros and ones, at least float32.

  Built with ``zeros_like`` / ``ones_like`` of the parameters, so that (as for
  ``mu`` and as in :func:`optax.adam`) they get the parameters' sharding.
  """
  _common.check_params(params)
  nu = jax.tree.map(
      lambda p: jnp.zeros_like(p, dtype=_common.real_statistics_dtype(p.dtype)), params
  )
  precond = jax.tree.map(jnp.ones_like, nu)
  return nu, precond


def _accumulate(updates, nu, b2, one_minus_b2):
  """The second-moment accumulation ``(1 - b2) * |u|**2 + b2 * s``.

  As `optax.tree.update_moment` computes it, but with ``1 - b2`` given, so
  that the refresh branch (where ``b2`` is an operand) and the normal pass
  round it the same way.
  """
  return jax.tree.map(
      lambda u, s: one_minus_b2 * _squared_magnitude(u, s.dtype) + b2 * s,
      updates, nu,
  )


# The two branches of the refresh `lax.cond` are module-level functions that get
# every input as an operand: un-jitted (eager) calls then hit JAX's cache instead
# of tracing and compiling a new conditional at every step.
def _refresh_branch(updates, nu, precond, b2, refresh_step, hyperparams):
  nu = _accumulate(updates, nu, b2, hyperparams["one_minus_b2"])
  new_precond = jax.tree.map(
      lambda s, v: refresh_preconditioner(
          s, v, refresh_step=refresh_step, **hyperparams),
      nu, precond,
  )
  return new_precond, jnp.asarray(True)


def _keep_branch(updates, nu, precond, b2, refresh_step, hyperparams):
  del updates, nu, b2, refresh_step, hyperparams
  return precond, jnp.asarray(False)


def update_preconditioner(
    updates: optax.Updates,
    count: jax.Array,
    next_refresh: jax.Array,
    num_refreshes: jax.Array,
    nu: optax.Updates,
    precond: optax.Updates,
    *,
    b2: Any,
    eps: Any,
    gamma: Any,
    beta3: Any,
    refresh_base: Any,
):
  """Advances the preconditioner by one step of ``updates``.

  Accumulates :math:`|u|^2` into ``nu``; if this step is a refresh step,
  refreshes ``precond`` from ``nu`` and resets ``nu``. The choice is one
  `jax.lax.cond` for the whole tree, so a normal step does no refresh work.

  Speed (see benchmarks/README.md): the cond returns only the preconditioner
  and a "reset" flag; the accumulation and the reset are one elementwise pass
  after it, ``where(reset, 0, b2 * s + (1 - b2) |u|^2)``, written in place into
  the (donated) ``nu``. The refresh branch recomputes the accumulation itself
  from the old ``nu``; the flag makes that pass wait for the cond, so XLA can
  update ``nu`` in place. Passing the accumulated ``nu`` through the cond
  instead makes XLA copy all of ``nu`` on every normal step.

  Returns:
    ``(count, next_refresh, num_refreshes, nu, precond)`` after this step.
  """
  step = optax.safe_increment(count)
  is_refresh = step == next_refresh
  one_minus_b2 = 1 - b2
  hyperparams = dict(
      one_minus_b2=one_minus_b2, eps=eps, gamma=gamma, beta3=beta3,
      refresh_base=refresh_base,
  )
  precond, reset = jax.lax.cond(
      is_refresh, _refresh_branch, _keep_branch,
      updates, nu, precond, b2, step, hyperparams,
  )
  nu = jax.tree.map(
      lambda s: jnp.where(reset, jnp.zeros_like(s), s),
      _accumulate(updates, nu, b2, one_minus_b2),
  )
  next_refresh = jnp.where(
      is_refresh, next_refresh_step(next_refresh, refresh_base), next_refresh
  )
  num_refreshes = jnp.where(
      is_refresh, optax.safe_increment(num_refreshes), num_refreshes
  )
  return step, next_refresh, num_refreshes, nu, precond


def check_preconditioner_hyperparams(b2, eps, gamma, beta3, refresh_base):
  """Eagerly validates the hyperparameters shared by the preconditioners."""
  _validation.check_interval("b2", b2, 0.0, 1.0)
  _validation.check_interval("eps", eps, 0.0)
  if not callable(gamma):
    _validation.check_finite("gamma", gamma)
  _validation.check_interval("beta3", beta3, 0.0, 1.0)
  _validation.check_integer_at_least("refresh_base", refresh_base, 2)
  _validation.check_interval(
      "refresh_base", refresh_base, 2, int(_MAX_INT32), high_inclusive=True
  )


def scale_by_idu(
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-16,
    gamma: optax.ScalarOrSchedule = 1.0,
    *,
    beta3: jax.typing.ArrayLike = 0.5,
    refresh_base: int = 2,
) -> optax.GradientTransformation:
  r"""Scale updates by the gamma-preconditioner refreshed by IDU.

  The preconditioner of Anon alone, applied to whatever updates :math:`u_t`
  reach it, so it composes after clipping, :func:`optax.trace`, etc.:

  .. math::
    s_t &= b_2 s_{t-1} + (1 - b_2) |u_t|^2 \\
    \text{at } t = a_k:\quad \sigma &= s_t / (1 - b_2^{n}) + \epsilon,
      \quad n = a_k - a_{k-1},\ s_t \leftarrow 0 \\
    v &= \sigma^{-\gamma/2} \ (k = 0), \qquad
    v = \left(\beta_3 v^{-2} + (1 - \beta_3)\sigma^{\gamma}\right)^{-1/2}
      \ (k > 0) \\
    \text{output}_t &= v \odot u_t

  with refresh steps :math:`a_k = \mathrm{refresh\_base}^k` (1, 2, 4, 8, ...).

  Args:
    b2: decay rate of the second-moment accumulator, in [0, 1).
    eps: added to the bias-corrected second moment, >= 0.
    gamma: the adaptivity exponent (any real number, or a schedule of the step
      count, evaluated at refresh steps): 0 gives :math:`v = 1`, 1 an
      Adam-like :math:`v \approx 1/\sqrt{\sigma}`.
    beta3: weight of the previous preconditioner in the refresh, in [0, 1).
    refresh_base: integer >= 2; refreshes happen at steps ``refresh_base**k``.

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
  check_preconditioner_hyperparams(b2, eps, gamma, beta3, refresh_base)

  def init_fn(params):
    nu, precond = init_preconditioner(params)
    return ScaleByIDUState(
        count=jnp.zeros([], jnp.int32),
        next_refresh=jnp.ones([], jnp.int32),
        num_refreshes=jnp.zeros([], jnp.int32),
        nu=nu,
        precond=precond,
    )

  def update_fn(updates, state, params=None):
    del params
    _common.check_updates_match(updates, state.nu)
    count, next_refresh, num_refreshes, nu, precond = update_preconditioner(
        updates, state.count, state.next_refresh, state.num_refreshes,
        state.nu, state.precond,
        b2=b2, eps=eps, gamma=_common.resolve_schedule(gamma, state.count), beta3=beta3,
        refresh_base=refresh_base,
    )
    updates = jax.tree.map(
        lambda v, u: (v * u).astype(u.dtype), precond, updates
    )
    return updates, ScaleByIDUState(
        count=count, next_refresh=next_refresh, num_refreshes=num_refreshes,
        nu=nu, precond=precond,
    )

  return optax.GradientTransformation(init_fn, update_fn)
