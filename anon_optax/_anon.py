r"""Anon: adaptivity extrapolated beyond SGD and Adam.

Zhang et al., "Anon: Extrapolating Adaptivity Beyond SGD and Adam",
arXiv 2605.02317 (https://arxiv.org/abs/2605.02317).

Anon is momentum scaled by a preconditioner :math:`v \approx \sigma^{-\gamma/2}`,
with a real exponent :math:`\gamma` (0: SGD with momentum, 1: Adam-like,
beyond: more or less adaptive than both), refreshed only at the log-spaced
steps 1, 2, 4, 8, ... by the incremental delay update (IDU) of
:mod:`anon_optax._idu`.
"""

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
    count: number of steps taken so far.
    next_refresh: the step at which the preconditioner is next refreshed; 0
      once the next refresh step would not fit in int32 (no refresh ever again).
    num_refreshes: number of preconditioner refreshes so far.
    num_accumulated: number of steps accumulated in ``nu`` since the latest
      refresh (0 right after a refresh).
    mu: first moment :math:`m` (dtype ``mu_dtype``, else the parameters').
    nu: second-moment accumulator :math:`s`, reset to zero after every refresh
      (dtype ``nu_dtype``, else at least float32).
    precond: the preconditioner :math:`v` from the latest refresh (dtype
      ``precond_dtype``, else at least float32; ones before the first step).
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


def scale_by_anon(
  b1: jax.typing.ArrayLike = 0.9,
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-16,
  gamma: optax.ScalarOrSchedule = 1.0,
  *,
  beta3: jax.typing.ArrayLike = 0.5,
  refresh_base: int = 2,
  max_refresh_interval: int | None = None,
  exact: bool = False,
  mu_dtype: jax.typing.DTypeLike | None = None,
  nu_dtype: jax.typing.DTypeLike | None = None,
  precond_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
  r"""Rescale updates according to the Anon algorithm.

  For gradient :math:`g_t` at step :math:`t = 1, 2, \dots`:

  .. math::
    m_t &= b_1 m_{t-1} + (1 - b_1) g_t \\
    s_t &= b_2 s_{t-1} + (1 - b_2) |g_t|^2 \\
    \text{at } t = a_k:\quad \sigma &= s_t / (1 - b_2^{n}) + \epsilon,
      \quad n = a_k - a_{k-1},\ s_t \leftarrow 0 \\
    v &= \sigma^{-\gamma/2} \ (k = 0), \qquad
    v = \left(\beta_3 v^{-2} + (1 - \beta_3)\sigma^{\gamma}\right)^{-1/2}
      \ (k > 0) \\
    \text{update}_t &= v \odot m_t / (1 - b_1^t)

  where the refresh steps are :math:`a_k = \mathrm{refresh\_base}^k`
  (1, 2, 4, 8, ... by default) and :math:`v` is the preconditioner of the latest
  refresh. Like :func:`optax.scale_by_adam`, the output carries no learning
  rate and no sign; see :func:`anon` for the full optimizer.

  Args:
    b1: decay rate of the first moment, in [0, 1).
    b2: decay rate of the second-moment accumulator, in [0, 1).
    eps: added to the bias-corrected second moment, >= 0.
    gamma: the adaptivity exponent, any real number or a schedule of the step
      count (evaluated at refresh steps): 0 is SGD with momentum
      (:math:`v = 1`), 1 Adam-like, > 1 more adaptive, < 0 less.
    beta3: weight of the previous preconditioner in the IDU refresh, in
      [0, 1); 0.5 is the authors' harmonic mean.
    refresh_base: integer >= 2; the preconditioner is refreshed at steps
      ``refresh_base**k``.
    mu_dtype: optional dtype of the first moment; if `None` it is the
      parameters' dtype. The second moment and the preconditioner are kept in
      at least float32 whatever the parameters' dtype.

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
  _validation.check_interval("b1", b1, 0.0, 1.0)
  _idu.check_preconditioner_hyperparams(b2, eps, gamma, beta3, refresh_base, max_refresh_interval)
  _validation.check_bool("exact", exact)
  mu_dtype = _idu.check_storage_dtype("mu_dtype", mu_dtype, complex_ok=True)
  nu_dtype = _idu.check_storage_dtype("nu_dtype", nu_dtype)
  precond_dtype = _idu.check_storage_dtype("precond_dtype", precond_dtype)

  def init_fn(params):
    nu, precond = _idu.init_preconditioner(params, nu_dtype, precond_dtype)
    return ScaleByAnonState(
      count=jnp.zeros([], jnp.int32),
      next_refresh=jnp.ones([], jnp.int32),
      num_refreshes=jnp.zeros([], jnp.int32),
      num_accumulated=jnp.zeros([], jnp.int32),
      mu=optax.tree.zeros_like(params, dtype=mu_dtype),
      nu=nu,
      precond=precond,
    )

  def update_fn(updates, state, params=None):
    del params
    _common.check_updates_match(updates, state.nu)
    gamma_t = _common.resolve_schedule(gamma, state.count)
    new_state = _idu.update_preconditioner(
      updates,
      state,
      b2=b2,
      eps=eps,
      gamma=gamma_t,
      beta3=beta3,
      refresh_base=refresh_base,
      max_refresh_interval=max_refresh_interval,
      guarded=not exact,
    )
    scale = _idu.step_preconditioner(new_state, exact=exact, b2=b2, eps=eps, gamma=gamma_t)
    # The moment is computed in at least float32 and stored in its dtype; the
    # step uses the stored value, so that no parameter-sized float32 moment is
    # kept beside the stored one (with bfloat16 moments that was a whole
    # float32 scratch buffer).
    mu = jax.tree.map(lambda g, m: _first_moment(g, m, b1).astype(m.dtype), updates, state.mu)
    # The bias correction as one scalar reciprocal times the moment: dividing
    # every element (optax.tree.bias_correction) costs ~15% of a CPU step. The
    # power takes a traced exponent: a concrete integer one (an eager call)
    # would compile a new program for every step count.
    inverse_bias_correction = 1 / (1 - jax.lax.pow(_common.at_least_float32(b1), new_state.count))
    updates = jax.tree.map(
      lambda v, m, g: (v * (m * inverse_bias_correction)).astype(_common.update_dtype(g, m)),
      scale,
      mu,
      updates,
    )
    return updates, new_state._replace(mu=mu)

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
  max_refresh_interval: int | None = None,
  exact: bool = False,
  mu_dtype: jax.typing.DTypeLike | None = None,
  nu_dtype: jax.typing.DTypeLike | None = None,
  precond_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""The Anon optimizer.

  Anon raises the second moment to a tunable real power :math:`\gamma`: 0 is
  SGD with momentum, 1 is Adam-like, and values above 1 or below 0 extrapolate
  beyond both. Its preconditioner is refreshed only at steps 1, 2, 4, 8, ...
  through a harmonic-mean incremental delay update (IDU), which damps how
  much one refresh can change it. With :math:`\eta_t` the learning rate:

  .. math::
    m_t &= b_1 m_{t-1} + (1 - b_1) g_t, \qquad
    s_t = b_2 s_{t-1} + (1 - b_2) g_t^2 \\
    \text{at } t = a_k:\quad \sigma &= s_t / (1 - b_2^{n}) + \epsilon,\quad
      v = \left(\beta_3 v^{-2} + (1 - \beta_3)\sigma^{\gamma}\right)^{-1/2},
      \quad s_t \leftarrow 0 \\
    \theta_{t+1} &= \theta_t - \eta_t\, v \odot m_t / (1 - b_1^t)

  with :math:`a_k = \mathrm{refresh\_base}^k`, :math:`n = a_k - a_{k-1}` and
  :math:`v = \sigma^{-\gamma/2}` at the first refresh (see
  :func:`scale_by_anon`). It is the chain of weight decay (by
  ``weight_decay_mode``), :func:`scale_by_anon` and
  :func:`optax.scale_by_learning_rate`.

  The preconditioner is held between refreshes: a parameter whose gradient is
  zero or tiny at a refresh (a ReLU unit dead for the first batches) gets a
  huge :math:`v` (up to :math:`\epsilon^{-\gamma/2}`, 1e8 at the default
  ``eps`` and ``gamma = 1``) until the next one, and under the authors' rule
  (``exact=True``) its steps are that much too large when its gradient
  returns; clipping the gradients does not prevent it. The default guard
  bounds each step's :math:`v` by 10 times what a refresh at that step would
  give (docs/algorithm.md, "The default guard").

  With :func:`optax.inject_hyperparams`, pass
  ``hyperparam_dtype=jnp.float32`` for bfloat16 (or float16) parameters:
  otherwise the hyperparameters are stored in the parameters' dtype, and
  ``b2 = 0.999`` rounds to 1.0 in bfloat16 (as for :func:`optax.adam`). Pass
  ``static_args=("refresh_base", "max_refresh_interval")``: they are
  structural integers, and injected they come back from a checkpoint with
  another type, which compiles the step again.

  Args:
    learning_rate: a float or an Optax schedule of the step count.
    b1: decay rate of the first moment, in [0, 1).
    b2: decay rate of the second-moment accumulator, in [0, 1).
    eps: added to the bias-corrected second moment, >= 0.
    gamma: the adaptivity exponent, any real number or a schedule (evaluated at
      refresh steps). The paper's language models used 1.0 to 1.15.
    weight_decay: weight-decay strength, >= 0.
    weight_decay_mode: ``"l2"`` (the authors' default: ``g += wd * theta``
      before the moments), ``"decoupled"`` (AdamW style:
      ``theta *= 1 - lr * wd``) or ``"fixed"`` (``theta *= 1 - wd``, not scaled
      by the learning rate).
    mask: a tree with the structure of (or a prefix of) the parameters, or a
      callable returning one, with `True` for the leaves to decay; as in
      :func:`optax.adamw`.
    beta3: weight of the previous preconditioner in the IDU refresh, in
      [0, 1); 0.5 is the authors' harmonic mean.
    refresh_base: integer >= 2; refreshes happen at steps ``refresh_base**k``.
    mu_dtype: optional dtype of the first moment (for example
      ``jnp.bfloat16`` to halve its memory); `None` keeps the parameters'.

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
