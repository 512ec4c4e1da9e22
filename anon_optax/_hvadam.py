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

from typing import Any, NamedTuple, Optional

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
  dtypes = [_common.real_statistics_dtype(x.dtype) for x in jax.tree.leaves(params)]
  return jnp.result_type(jnp.float32, *dtypes) if dtypes else jnp.float32


def _real_vdot(tree_x: optax.Updates, tree_y: optax.Updates) -> jax.Array:
  """Tree-wide real inner product: sum over leaves of Re(conj(x) . y)."""
  parts = jax.tree.leaves(
      jax.tree.map(lambda x, y: jnp.real(jnp.vdot(x, y)), tree_x, tree_y))
  return sum(parts[1:], parts[0]) if parts else jnp.zeros([], jnp.float32)


def _divide_or_zero(numerator, denominator):
  """``numerator / denominator``, defined as 0 where the denominator is 0."""
  is_zero = denominator == 0
  return jnp.where(
      is_zero, 0, numerator / jnp.where(is_zero, 1, denominator)
  ).astype(jnp.result_type(numerator, denominator))


def scale_by_hvadam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-16,
    gamma: optax.ScalarOrSchedule = 0.0,
) -> optax.GradientTransformation:
  r"""Rescale updates according to the HVAdam algorithm.

  For gradient :math:`g_t` at step :math:`t = 1, 2, \dots`, with the hidden
  vector :math:`h` (zeros at the start) and squares taken elementwise
  (:math:`|\cdot|^2` for complex values):

  .. math::
    m_t &= b_1 m_{t-1} + (1 - b_1) g_t, \qquad
      \hat m_t = m_t / (1 - b_1^t) \\
    r_t &= |g_t - h|^2, \qquad q_t = |g_t - m_t|^2, \qquad
      w_t = \frac{r_t}{q_t + \gamma r_t + \epsilon}\, r_t \\
    v_t &= b_2 v_{t-1} + (1 - b_2) w_t + \epsilon, \qquad
      d_t = \sqrt{v_t} / \sqrt{1 - b_2^t} + \epsilon \\
    u_t &= \hat m_t / d_t + s_t\, h_{\mathrm{new}}

  The hidden step :math:`s_t h_\mathrm{new}` comes from tree-wide inner
  products :math:`MM = \langle \hat m, \hat m\rangle`,
  :math:`ML = \langle \hat m, h\rangle`, :math:`LL = \langle h, h\rangle`
  (:math:`h` before this step's change):

  .. math::
    k &= \frac{MM - ML}{MM + LL - 2 ML}, \qquad
    p = k h + (1 - k) \hat m, \qquad
    \delta = \frac{\langle p, \hat m\rangle}{\|p\| \|\hat m\|}

  where :math:`p` is the minimum-norm point on the line through :math:`h`
  and :math:`\hat m` (so :math:`\delta = \|p\| / \|\hat m\| \in [0, 1]`) and
  :math:`\|p\|^2 = |k^2 LL + (1-k)^2 MM + 2k(1-k) ML|`. Then, by branch:

  - restart (the first step, and after a switch-off):
    :math:`h \leftarrow \hat m`, the agreement average :math:`\bar\delta` and
    its count :math:`n` are reset to 0, :math:`s_t = 0`;
  - skip (:math:`|\delta| > 1` or :math:`\delta` undefined): nothing changes,
    :math:`s_t = 0`;
  - otherwise :math:`\bar\delta \leftarrow b_2 \bar\delta + (1 - b_2)\delta`,
    :math:`n \leftarrow n + 1`, and

    - switch-off if :math:`\bar\delta / (1 - b_2^n) < 0.1`: the next step
      restarts, :math:`s_t = 0`;
    - extra step otherwise: :math:`h \leftarrow p` and
      :math:`s_t = 10^{6 \bar\delta - 3}`.

  Like :func:`optax.scale_by_adam` the output carries no learning rate and no
  sign: the authors' two parameter moves per step,
  :math:`\theta \mathrel{-}= \eta \hat m / d` and
  :math:`\theta \mathrel{-}= \eta\, 10^{6\bar\delta - 3} h`, are both scaled by
  the learning rate :math:`\eta`, so :math:`-\eta u_t` is their sum.

  Where the authors' code divides by zero, the result is defined as follows
  (everything else is their arithmetic):

  - :math:`k = 0` when :math:`MM + LL - 2ML = 0` (:math:`h = \hat m`);
  - :math:`\delta = 0` when :math:`\|p\| = 0 < \|\hat m\|` (:math:`h` and
    :math:`\hat m` collinear, the line through them passes through the
    origin), the limit of :math:`\|p\| / \|\hat m\|`; the authors get 0/0 = NaN
    there, which poisons :math:`\bar\delta` and the parameters. The
    denominator is computed as :math:`\|p\| \|\hat m\|` (not
    :math:`\sqrt{\|p\|^2 MM}`) so that it cannot underflow to zero;
  - :math:`\delta` is undefined when :math:`\hat m = 0`, and any undefined or
    non-finite :math:`\delta` takes the skip branch;
  - :math:`w = 0` where :math:`q + \gamma r + \epsilon = 0`, and
    :math:`\hat m / d = 0` where :math:`d = 0` (both only possible with
    ``eps = 0``, or with ``gamma < 0`` for the former).

  Inner products of complex leaves use the real part,
  :math:`\mathrm{Re} \sum \bar x y`, i.e. complex numbers are treated as
  pairs of reals. Moments are kept in at least float32 and the scalar state
  in float32 (float64 if any parameter is float64); the updates come out in
  the dtype of the incoming updates.

  Args:
    b1: decay rate of the first moment, in [0, 1).
    b2: decay rate of the second moment and of the agreement average, in
      [0, 1).
    eps: added to the weighting denominator, to the second moment at every
      step (as in the authors' code) and to the step's denominator, >= 0.
    gamma: weight of the deviation :math:`r` in the denominator of the
      weighting :math:`w`; a finite number, or a schedule of the step count
      (0-based). With ``gamma < 0`` that denominator can become negative.

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
  _validation.check_interval("b1", b1, 0.0, 1.0)
  _validation.check_interval("b2", b2, 0.0, 1.0)
  _validation.check_interval("eps", eps, 0.0)
  if not callable(gamma):
    _validation.check_finite("gamma", gamma)

  def init_fn(params):
    moment = lambda x: jnp.zeros(jnp.shape(x), _common.statistics_dtype(x.dtype))
    real_moment = lambda x: jnp.zeros(
        jnp.shape(x), _common.real_statistics_dtype(x.dtype))
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
    del params
    gamma_t = _common.resolve_schedule(gamma, state.count)
    count = optax.safe_increment(state.count)
    grads = optax.tree.cast_like(updates, state.mu)
    h = state.hidden

    # Adam on the deviations from the hidden vector.
    mu = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g, grads, state.mu)
    def deviation_weight(g, m, h):
      r = jnp.real(jnp.conj(g - h) * (g - h))
      q = jnp.real(jnp.conj(g - m) * (g - m))
      return _divide_or_zero(r, q + gamma_t * r + eps) * r
    w = jax.tree.map(deviation_weight, grads, mu, h)
    var = jax.tree.map(lambda v, w: b2 * v + (1 - b2) * w + eps, state.var, w)
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    adam_step = jax.tree.map(
        lambda m, v: _divide_or_zero(
            m, jnp.sqrt(v) / jnp.sqrt(1 - b2**count) + eps),
        mu_hat, var)

    # Agreement between the momentum and the hidden vector, tree-wide.
    dtype = state.exp_delta.dtype
    mm = _real_vdot(mu_hat, mu_hat).astype(dtype)
    ml = _real_vdot(mu_hat, h).astype(dtype)
    ll = _real_vdot(h, h).astype(dtype)
    k = _divide_or_zero(mm - ml, mm + ll - 2 * ml)
    vv = jnp.abs(k**2 * ll + (1 - k) ** 2 * mm + 2 * k * (1 - k) * ml)
    cosine_denominator = jnp.sqrt(vv) * jnp.sqrt(mm)
    delta = jnp.where(
        mm > 0, _divide_or_zero(k * ml + (1 - k) * mm, cosine_denominator),
        jnp.nan)

    # Branches: restart, skip (NaN fails `<=`), switch-off, extra step.
    restart = state.flag == -1
    accept = jnp.logical_and(~restart, jnp.abs(delta) <= 1)
    step2 = jnp.where(
        restart, 0,
        jnp.where(accept, optax.safe_increment(state.step2), state.step2),
    ).astype(jnp.int32)
    exp_delta = jnp.where(
        restart, 0,
        jnp.where(accept, b2 * state.exp_delta + (1 - b2) * delta,
                  state.exp_delta),
    ).astype(dtype)
    bias = jnp.where(step2 > 0, 1 - b2**step2, 1)
    switch_off = jnp.logical_and(accept, exp_delta / bias < 0.1)
    extra_step = jnp.logical_and(accept, ~switch_off)
    flag = jnp.where(restart, 0, jnp.where(switch_off, -1, state.flag))
    hidden = jax.tree.map(
        lambda h, m: jnp.where(
            restart, m, jnp.where(extra_step, k * h + (1 - k) * m, h)
        ).astype(h.dtype),
        h, mu_hat)
    hidden_scale = jnp.where(extra_step, 10.0 ** (6 * exp_delta - 3), 0)

    updates = jax.tree.map(
        lambda a, h, g: (a + hidden_scale.astype(a.dtype) * h).astype(
            jax.dtypes.canonicalize_dtype(jnp.result_type(g))),
        adam_step, hidden, updates)
    return updates, ScaleByHVAdamState(
        count=count,
        mu=optax.tree.cast_like(mu, state.mu),
        var=optax.tree.cast_like(var, state.var),
        hidden=hidden,
        flag=flag.astype(jnp.int32),
        step2=step2,
        exp_delta=exp_delta,
    )

  return optax.GradientTransformation(init_fn, update_fn)


def hvadam(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-16,
    gamma: optax.ScalarOrSchedule = 0.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    weight_decay_mode: str = "l2",
    mask: Optional[optax.MaskOrFn] = None,
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
    learning_rate: a float or an Optax schedule of the step count.
    b1: decay rate of the first moment, in [0, 1).
    b2: decay rate of the second moment and of the agreement average, in
      [0, 1).
    eps: numerical-stability constant (see :func:`scale_by_hvadam`), >= 0.
    gamma: weight of the deviation in the second moment's weighting, a
      finite number or a schedule.
    weight_decay: weight-decay strength, >= 0.
    weight_decay_mode: ``"l2"`` (the authors' default: ``g += wd * theta``
      before the moments), ``"decoupled"`` (AdamW style:
      ``theta *= 1 - lr * wd``) or ``"fixed"`` (``theta *= 1 - wd``, not scaled
      by the learning rate).
    mask: a tree with the structure of (or a prefix of) the parameters, or a
      callable returning one, with `True` for the leaves to decay; as in
      :func:`optax.adamw`.

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
    ...  print('Objective function: {:.2E}'.format(f(params)))
    Objective function: 1.29E+01
    Objective function: 1.16E+01
    Objective function: 1.04E+01
    Objective function: 9.42E+00
    Objective function: 8.46E+00

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
