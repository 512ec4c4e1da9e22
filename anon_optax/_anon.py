r"""Anon: adaptivity extrapolated beyond SGD and Adam.

Zhang et al., "Anon: Extrapolating Adaptivity Beyond SGD and Adam",
arXiv 2605.02317 (https://arxiv.org/abs/2605.02317).

Anon is momentum scaled by a preconditioner :math:`v \approx \sigma^{-\gamma/2}`,
with a real exponent :math:`\gamma` (0: SGD with momentum, 1: Adam-like,
beyond: more or less adaptive than both), refreshed only at the log-spaced
steps 1, 2, 4, 8, ... by the incremental delay update (IDU) of
:mod:`anon_optax._idu`.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from anon_optax import _common
from anon_optax import _idu
from anon_optax import _validation
from anon_optax import _weight_decay


class ScaleByAnonState(NamedTuple):
  """State for :func:`scale_by_anon`.

  Attributes:
    count, next_refresh, num_refreshes, num_accumulated: the step counters of
      :class:`ScaleByIDUState`.
    mu: first moment :math:`m` (dtype ``mu_dtype``, else the parameters').
    nu, precond: the accumulator :math:`s` and the preconditioner :math:`v`,
      as in :class:`ScaleByIDUState`.
  """

  count: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  next_refresh: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  num_refreshes: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  num_accumulated: jax.typing.ArrayLike  # shape=(), dtype=jnp.int32.
  mu: optax.Updates
  nu: optax.Updates
  precond: optax.Updates


def _first_moment(update, moment, b1):
  """``b1 m + (1 - b1) g`` in the moment's computation dtype (at least float32).

  `optax.tree.update_moment` with a Python ``b1`` computes in the moment's
  dtype: with bfloat16 moments each product is rounded to bfloat16, and XLA
  keeps the rounded products as parameter-sized scratch buffers, because both
  the stored moment and the step read them.
  """
  dtype = _common.statistics_dtype(jnp.result_type(moment))
  b1 = _common.at_least_float32(b1).astype(jnp.finfo(dtype).dtype)
  return (1 - b1) * jnp.asarray(update).astype(dtype) + b1 * moment.astype(dtype)


@functools.partial(jax.jit, static_argnames=("mu_dtype",))
def _anon_update(updates, state, params, b1, config: _idu.PreconditionerConfig, *, mu_dtype):
  """One step of :func:`scale_by_anon`, with ``config``'s gamma at this step."""
  scale, new_state = _idu.preconditioner_step(updates, state, config, config.gamma)
  # The moment is computed in at least float32 and stored in its dtype; the
  # step uses the stored value, so that no parameter-sized float32 moment is
  # kept beside the stored one (with bfloat16 moments that was a whole
  # float32 scratch buffer).
  mu = jax.tree.map(
    lambda g, m: _first_moment(g, m, b1).astype(mu_dtype or jnp.result_type(g, m)),
    updates,
    state.mu,
  )
  # The bias correction as one scalar reciprocal times the moment: dividing
  # every element (optax.tree.bias_correction) costs ~15% of a CPU step. The
  # power takes a traced exponent: a concrete integer one would compile a new
  # program for every step count.
  inverse_bias_correction = 1 / (1 - jax.lax.pow(_common.at_least_float32(b1), new_state.count))
  validity = _idu.invalid_schedule_to_nan(config)
  if validity is not None:
    inverse_bias_correction = inverse_bias_correction * validity
  leaves = jax.tree.leaves
  params_leaves = leaves(params) if params is not None else [None] * len(leaves(mu))
  step = [
    (v * (m * inverse_bias_correction)).astype(
      _common.update_dtype(g, p, m, b1, config.b2, config.eps)
    )
    for v, m, g, p in zip(leaves(scale), leaves(mu), leaves(updates), params_leaves)
  ]
  return jax.tree.structure(mu).unflatten(step), new_state._replace(mu=mu)


def scale_by_anon(
  b1: jax.typing.ArrayLike = 0.9,
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-16,
  gamma: optax.ScalarOrSchedule = 1.0,
  *,
  beta3: jax.typing.ArrayLike = 0.5,
  refresh_base: int = 2,
  max_refresh_interval: int | str | None = "auto",
  guard_factor: jax.typing.ArrayLike = 10.0,
  exact: bool = False,
  mu_dtype: jax.typing.DTypeLike | None = None,
  nu_dtype: jax.typing.DTypeLike | None = None,
  precond_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
  r"""Rescale updates according to the Anon algorithm.

  For gradient :math:`g_t` at step :math:`t = 1, 2, \dots`, with :math:`n_t`
  the steps accumulated since the latest refresh:

  .. math::
    m_t &= b_1 m_{t-1} + (1 - b_1) g_t, \qquad
      s_t = b_2 s_{t-1} + (1 - b_2) |g_t|^2 \\
    \sigma_t &= s_t / (1 - b_2^{n_t}) + \epsilon \\
    \text{at } t = a_k:\quad v &\leftarrow
      \left(\beta_3 v^{-2} + (1 - \beta_3)\sigma_t^{\gamma}\right)^{-1/2}
      \ (v \leftarrow \sigma_t^{-\gamma/2} \text{ at } k = 0),
      \quad s_t \leftarrow 0 \\
    \text{update}_t &= \min\left(v,\ C \sigma_t^{-\gamma/2}\right) \odot
      m_t / (1 - b_1^t)

  where the refresh steps are :math:`a_k = \mathrm{refresh\_base}^k` (1, 2, 4,
  8, ...) until they are 256 steps apart (``max_refresh_interval``), then
  every 256 steps; :math:`C` is ``guard_factor`` and the min (the guard) is
  skipped at refresh steps. ``exact=True`` is the authors' rule, with no cap
  on the gap: :math:`\text{update}_t = v \odot m_t / (1 - b_1^t)`. Like
  :func:`optax.scale_by_adam`, the output carries no learning rate and no
  sign; see :func:`anon` for the full optimizer.

  Args:
    b1: decay rate of the first moment, in [0, 1). Default 0.9.
    b2: decay rate of the second-moment accumulator, in [0, 1). Default 0.999.
    eps: added to the bias-corrected second moment, >= 0. Default 1e-16.
    gamma: the adaptivity exponent, a finite real number or a schedule of the
      step count: 0 is SGD with momentum (:math:`v = 1`), 1 Adam-like, > 1
      more adaptive, < 0 less. Default 1.0.
    beta3: weight of the previous preconditioner in a refresh, in [0, 1).
      Default 0.5 (the authors' harmonic mean).
    refresh_base: integer >= 2; refreshes happen at steps
      ``refresh_base**k``. Default 2.
    max_refresh_interval: the most steps between two refreshes (also on a
      resumed state): an integer >= 1, `None` (no cap), or ``"auto"``
      (default): 256 under the guard, so that late in a long run :math:`v`
      follows the gradients' current scale; no cap with ``exact=True``.
    guard_factor: :math:`C`, a finite number >= 1: a step never uses a
      preconditioner more than :math:`C` times the one a refresh at that step
      would give. Default 10.0.
    exact: if `True`, the authors' rule without the guard (then leave
      ``guard_factor`` at its default: another value raises, unless it is
      traced, when it cannot be checked and is ignored). Default `False`.
    mu_dtype: storage dtype of :math:`m`; `None` (default) keeps the
      parameters'. As in :func:`optax.adam`, float16 loses gradients below
      about 1e-5 (subnormal); floats under 16 bits are refused.
    nu_dtype: storage dtype of :math:`s`; `None` (default) keeps at least
      float32. bfloat16 halves its memory (written with unbiased stochastic
      rounding); dtypes with less range than float32 (float16, float8) are
      refused (squared gradients underflow).
    precond_dtype: storage dtype of :math:`v`; `None` (default) keeps at least
      float32. bfloat16 halves its memory; dtypes with less range than
      float32 (float16, float8) are refused: :math:`v` would be clipped at
      their largest value (65504 for float16), and the steps of small
      gradients come out too small. Arithmetic is always in at least float32.

  Returns:
    A :class:`optax.GradientTransformation` with state
    :class:`ScaleByAnonState`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import anon_optax
    >>> tx = anon_optax.scale_by_anon(gamma=1.0)
    >>> params = jnp.array([1.0, -2.0])
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jnp.array([0.5, -4.0]), state)
    >>> print(jnp.round(updates, 4))  # The first step is sign-like at gamma = 1.
    [ 1. -1.]

  References:
    Zhang et al., `Anon: Extrapolating Adaptivity Beyond SGD and Adam
    <https://arxiv.org/abs/2605.02317>`_, 2026
  """
  _validation.check_real("b1", b1, 0.0, 1.0)
  b1 = _common.real_part(b1)
  mu_dtype = _validation.check_storage_dtype("mu_dtype", mu_dtype, complex_ok=True)
  config = _idu.make_config(
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
    return ScaleByAnonState(
      **_idu.init_counters_and_statistics(params, config),
      mu=optax.tree.zeros_like(params, dtype=mu_dtype),
    )

  def update_fn(updates, state, params=None):
    _validation.check_updates_match(updates, state.nu)
    _validation.check_params_match(params, state.nu)
    # Jitted, with the config's numbers as arguments: an eager call compiles
    # once, not op by op, and under the caller's jit it is inlined.
    config_now = config.at_step(state.count)
    return _anon_update(updates, state, params, b1, config_now, mu_dtype=mu_dtype)

  return optax.GradientTransformation(init_fn, update_fn)


def anon(
  learning_rate: optax.ScalarOrSchedule,
  b1: jax.typing.ArrayLike = 0.9,
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-16,
  gamma: optax.ScalarOrSchedule = 1.0,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  weight_decay_mode: str = "l2",
  mask: optax.MaskOrFn | None = None,
  beta3: jax.typing.ArrayLike = 0.5,
  refresh_base: int = 2,
  max_refresh_interval: int | str | None = "auto",
  guard_factor: jax.typing.ArrayLike = 10.0,
  exact: bool = False,
  mu_dtype: jax.typing.DTypeLike | None = None,
  nu_dtype: jax.typing.DTypeLike | None = None,
  precond_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""The Anon optimizer.

  Anon raises the second moment to a tunable real power :math:`\gamma`: 0 is
  SGD with momentum, 1 is Adam-like, and values above 1 or below 0 extrapolate
  beyond both. Its preconditioner :math:`v` is refreshed only at steps 1, 2,
  4, 8, ... by a harmonic-mean incremental delay update (IDU). With
  :math:`\eta_t` the learning rate and :math:`n_t` the steps accumulated since
  the latest refresh:

  .. math::
    m_t &= b_1 m_{t-1} + (1 - b_1) g_t, \qquad
      s_t = b_2 s_{t-1} + (1 - b_2) g_t^2 \\
    \sigma_t &= s_t / (1 - b_2^{n_t}) + \epsilon \\
    \text{at } t = a_k:\quad v &\leftarrow
      \left(\beta_3 v^{-2} + (1 - \beta_3)\sigma_t^{\gamma}\right)^{-1/2}
      \ (v \leftarrow \sigma_t^{-\gamma/2} \text{ at } k = 0),
      \quad s_t \leftarrow 0 \\
    \theta_{t+1} &= \theta_t - \eta_t \min\left(v,\ C \sigma_t^{-\gamma/2}
      \right) \odot m_t / (1 - b_1^t)

  with :math:`a_k = \mathrm{refresh\_base}^k` until the refreshes are
  ``max_refresh_interval`` (256) steps apart, then every 256 steps, and
  :math:`C` = ``guard_factor``. The min (the guard) keeps a preconditioner refreshed while
  a gradient was tiny (a ReLU unit dead for the first batches) from
  multiplying it when it returns; ``exact=True`` drops it, which is the
  authors' rule (and keeps their schedule, uncapped). It is the chain of weight decay (by ``weight_decay_mode``),
  :func:`scale_by_anon` and :func:`optax.scale_by_learning_rate`; the
  derivation and the guard's measurements are in the repository's
  ``docs/algorithm.md``.

  With :func:`optax.inject_hyperparams`, pass ``hyperparam_dtype=jnp.float32``
  for bfloat16 parameters (``b2 = 0.999`` rounds to 1.0 in bfloat16) and
  ``static_args=("refresh_base", "max_refresh_interval")``. Traced values are
  not range-checked, except ``refresh_base`` and ``max_refresh_interval``:
  invalid ones would silently stop refreshing, so they make the step NaN.

  Args:
    learning_rate: a finite number or an Optax schedule of the step count.
    b1: decay rate of the first moment, in [0, 1). Default 0.9.
    b2: decay rate of the second-moment accumulator, in [0, 1). Default 0.999.
    eps: added to the bias-corrected second moment, >= 0. Default 1e-16.
    gamma: the adaptivity exponent, a finite real number or a schedule of the
      step count. Default 1.0; the paper's language models used 1.0 to 1.15.
    weight_decay: weight-decay strength or schedule, >= 0 (in [0, 1] for
      ``"fixed"``). Default 0.0.
    weight_decay_mode: ``"l2"`` (default, the authors': ``g += wd * theta``
      before the moments), ``"decoupled"`` (AdamW: ``theta *= 1 - lr * wd``)
      or ``"fixed"`` (``theta *= 1 - wd``, not scaled by the learning rate).
    mask: a tree with the structure of (or a prefix of) the parameters, or a
      callable returning one, with `True` for the leaves to decay; as in
      :func:`optax.adamw`. Default `None` (decay every leaf).
    beta3: weight of the previous preconditioner in a refresh, in [0, 1).
      Default 0.5 (the authors' harmonic mean).
    refresh_base: integer >= 2; refreshes happen at steps
      ``refresh_base**k``. Default 2.
    max_refresh_interval: the most steps between two refreshes (also on a
      resumed state): an integer >= 1, `None` (no cap), or ``"auto"``
      (default): 256 under the guard, which keeps long runs' final loss near
      Adam's; no cap with ``exact=True`` (the authors' schedule).
    guard_factor: :math:`C`, a finite number >= 1. Default 10.0.
    exact: if `True`, the authors' rule without the guard (then leave
      ``guard_factor`` at its default: another value raises, unless it is
      traced, when it cannot be checked and is ignored). Default `False`.
    mu_dtype: storage dtype of :math:`m`; `None` (default) keeps the
      parameters'. float16 is accepted, as in :func:`optax.adam`.
    nu_dtype: storage dtype of :math:`s`; `None` (default) keeps at least
      float32. bfloat16 halves its memory (stochastic rounding); float16 and
      float8 are refused.
    precond_dtype: storage dtype of :math:`v`; `None` (default) keeps at least
      float32. bfloat16 halves its memory; float16 and float8 are refused
      (their range clips :math:`v`, and small gradients would take too small
      steps).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import anon_optax
    >>> def f(x): return jnp.sum(x ** 2)  # simple quadratic function
    >>> solver = anon_optax.anon(learning_rate=0.1, gamma=1.1)
    >>> params = jnp.array([1., 2., 3.])
    >>> print('Objective function: ', f(params))
    Objective function:  14.0
    >>> opt_state = solver.init(params)
    >>> for _ in range(5):
    ...  grad = jax.grad(f)(params)
    ...  updates, opt_state = solver.update(grad, opt_state, params)
    ...  params = optax.apply_updates(params, updates)
    ...  print('Objective function: {:.2E}'.format(f(params)))
    Objective function: 1.30E+01
    Objective function: 1.20E+01
    Objective function: 1.11E+01
    Objective function: 1.02E+01
    Objective function: 9.44E+00

  References:
    Zhang et al., `Anon: Extrapolating Adaptivity Beyond SGD and Adam
    <https://arxiv.org/abs/2605.02317>`_, 2026
  """
  return _weight_decay.chain_with_weight_decay(
    scale_by_anon(
      b1=b1,
      b2=b2,
      eps=eps,
      gamma=gamma,
      beta3=beta3,
      refresh_base=refresh_base,
      max_refresh_interval=max_refresh_interval,
      guard_factor=guard_factor,
      exact=exact,
      mu_dtype=mu_dtype,
      nu_dtype=nu_dtype,
      precond_dtype=precond_dtype,
    ),
    learning_rate,
    weight_decay,
    weight_decay_mode,
    mask,
  )
