"""A plain NumPy reference for Anon, written straight from the algorithm in docs/algorithm.md.

Anon: "Adaptivity beyond SGD and Adam" -- the update with a tunable adaptivity
``gamma`` and the incremental delay update (IDU) of its preconditioner.

This module is deliberately naive and independent of the package under test:
no JAX, no Optax, one Python loop over steps, one loop over parameter arrays,
and the preconditioner refresh evaluated element by element with the scalar
formula below. Everything runs in ``dtype`` (float64 by default). The tests in
``test_reference_equivalence.py`` compare ``anon_optax.anon`` to it.

Per array, with gradient ``g_t`` at step ``t = 1, 2, ...`` (docs/algorithm.md, Anon)::

    m_t = b1 m_{t-1} + (1 - b1) g_t
    s_t = b2 s_{t-1} + (1 - b2) |g_t|**2
    if t == a_k (a_k = refresh_base**k):
        n     = t - a_{k-1}               (n = 1 at k = 0)
        sigma = s_t / (1 - b2**n) + eps
        v     = sigma**(-gamma / 2)                                     k == 0
        v     = (beta3 v**-2 + (1 - beta3) sigma**gamma)**-0.5          k >= 1
        s_t   = 0
    theta_t = theta_{t-1} - lr_t v m_t / (1 - b1**t)

Weight decay (docs/algorithm.md, the authors' three modes), applied to masked arrays only:
``l2``: ``g_t += wd theta`` before the moments; ``decoupled``:
``theta *= 1 - lr_t wd`` then the step; ``fixed``: ``theta *= 1 - wd`` then the
step. Schedules follow ``optax.scale_by_learning_rate``: ``lr_t = lr(t - 1)``
(zero-based count); a ``gamma`` schedule is read at refresh steps, also with
count ``t - 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import math

import numpy as np

Scalar = float | Callable[[int], float]

WEIGHT_DECAY_MODES = ("l2", "decoupled", "fixed")

# Deliberately wrong variants of the rule, used only by the negative-control
# tests to prove that the equivalence tests can fail.
MUTATIONS = (
  "refresh_every_step",  # refresh the preconditioner at every step
  "b2_pow_t",  # sigma = s / (1 - b2**t) instead of (1 - b2**n)
  "b2_in_first_moment",  # m_hat = m / (1 - b2**t), as in the seed text
  "no_accumulator_reset",  # s is not restarted after a refresh
  "eps_before_bias_correction",  # sigma = (s + eps) / (1 - b2**n)
)


def refresh_steps(base: int, up_to: int, max_interval: int | None = None) -> list[int]:
  """The refresh steps ``1, base, base**2, ...`` that are ``<= up_to``.

  With ``max_interval``, once the gap to the next power would exceed it, the
  refreshes come every ``max_interval`` steps instead.
  """
  steps = []
  a = 1
  while a <= up_to:
    steps.append(a)
    gap = (base - 1) * a
    if max_interval is not None and gap > max_interval:
      gap = max_interval
    a += gap
  return steps


def accumulated_counts(base: int, up_to: int, max_interval: int | None = None) -> dict[int, int]:
  """Maps each refresh step ``a_k`` to ``n = a_k - a_{k-1}`` (1 at ``a_0``)."""
  counts = {}
  previous = None
  for a in refresh_steps(base, up_to, max_interval):
    counts[a] = 1 if previous is None else a - previous
    previous = a
  return counts


def refresh_scalar(
  s: float,
  v_prev: float | None,
  n: int,
  *,
  b2: float,
  eps: float,
  gamma: float,
  beta3: float,
  b2_power: int | None = None,
  eps_inside: bool = False,
) -> float:
  """The preconditioner refresh for one element (docs/algorithm.md, refresh steps).

  Args:
    s: the second-moment accumulator ``s_t`` at the refresh step.
    v_prev: the previous preconditioner, or ``None`` at the first refresh.
    n: number of steps accumulated in ``s`` since the previous refresh.
    b2, eps, gamma, beta3: the hyperparameters.
    b2_power: exponent of ``b2`` in the bias correction; ``n`` unless a
      negative-control mutation overrides it.
    eps_inside: negative control only: add ``eps`` before the correction.

  Returns:
    The new preconditioner ``v`` for this element.
  """
  power = n if b2_power is None else b2_power
  if eps_inside:
    sigma = (s + eps) / (1.0 - b2**power)
  else:
    sigma = s / (1.0 - b2**power) + eps
  if v_prev is None:
    return sigma ** (-gamma / 2.0)
  return (beta3 * v_prev**-2.0 + (1.0 - beta3) * sigma**gamma) ** -0.5


def approximate_power(x: np.ndarray, exponent: float) -> np.ndarray:
  """The guard's power ``x ** exponent`` (docs/algorithm.md, "The default guard (exact=False)").

  ``x = (1 + f) 2**e`` with ``f`` in [0, 1); ``log2 x ~ e + f (a - b f)``;
  ``2**y = 2**floor(y) * 2**r`` with ``2**r ~ 1 + r (c + d r)``, ``y`` clipped
  to the float64 normal range (x > 0 here: eps > 0 in every test).
  """
  mantissa, exponent2 = np.frexp(np.asarray(x, np.float64))  # in [0.5, 1)
  f = 2 * mantissa - 1
  log2_x = (exponent2 - 1) + f * (1.3465553 - 0.3465553 * f)
  y = np.clip(exponent * log2_x, -1022, 1023)
  whole = np.floor(y)
  r = y - whole
  return np.ldexp(1 + r * (0.6565 + 0.3435 * r), whole.astype(np.int64))


def _value(x: Scalar, count: int) -> float:
  return float(x(count)) if callable(x) else float(x)


def anon_reference(
  params: Sequence[np.ndarray],
  grads: Callable[[int, list[np.ndarray]], Sequence[np.ndarray]] | Sequence[Sequence[np.ndarray]],
  *,
  num_steps: int,
  learning_rate: Scalar = 1e-3,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-16,
  gamma: Scalar = 1.0,
  weight_decay: float = 0.0,
  weight_decay_mode: str = "l2",
  mask: Sequence[bool] | None = None,
  beta3: float = 0.5,
  refresh_base: int = 2,
  max_refresh_interval: int | None = None,
  guard: float | None = None,
  dtype=np.float64,
  mutation: str | None = None,
) -> list[list[np.ndarray]]:
  """Runs Anon for ``num_steps`` steps and returns the parameters after each.

  Args:
    params: the initial parameter arrays (a flat list of leaves).
    grads: either a function ``grads(t, params) -> list of arrays`` called
      with the 1-based step ``t`` and the current parameters, or a sequence
      whose ``t - 1``-th entry is the list of gradients for step ``t``.
    num_steps: number of steps to run.
    learning_rate: a float or a function of the zero-based count ``t - 1``.
    b1, b2, eps, beta3, refresh_base: as in docs/algorithm.md (Anon).
    gamma: a float or a function of the zero-based count, read at refreshes.
    weight_decay: the decay coefficient ``wd``.
    weight_decay_mode: one of ``"l2"``, ``"decoupled"``, ``"fixed"``.
    mask: one bool per leaf; weight decay applies where ``True``. ``None``
      means every leaf.
    dtype: the dtype of all arithmetic (real or complex).
    max_refresh_interval: ``None``, or the largest gap between refreshes.
    guard: ``None`` for the authors' exact step, or the guard factor ``C`` of
      the package's default: each step between refreshes multiplies by
      ``min(v, C * approximate_power(sigma_t, -gamma / 2))`` with ``sigma_t = s_t / (1 -
      b2**n_t) + eps`` from this step's accumulator (before any reset), ``n_t``
      the steps it holds; ``v`` itself is unchanged.
    mutation: ``None``, or one of ``MUTATIONS`` (negative controls only).

  Returns:
    ``snapshots`` with ``snapshots[t - 1]`` the list of parameter arrays after
    step ``t``.
  """
  if weight_decay_mode not in WEIGHT_DECAY_MODES:
    raise ValueError(f"weight_decay_mode must be one of {WEIGHT_DECAY_MODES}")
  if mutation is not None and mutation not in MUTATIONS:
    raise ValueError(f"mutation must be None or one of {MUTATIONS}")
  if mask is None:
    mask = [True] * len(params)
  if len(mask) != len(params):
    raise ValueError("mask needs one bool per parameter array")

  theta = [np.array(p, dtype=dtype) for p in params]
  m = [np.zeros_like(p) for p in theta]
  s = [np.zeros(p.shape, dtype=np.abs(p).dtype) for p in theta]
  v = [None] * len(theta)  # the preconditioner, set at the first refresh
  refreshes = accumulated_counts(refresh_base, num_steps, max_refresh_interval)
  last_refresh = 0  # steps accumulated in s: t - last_refresh

  snapshots = []
  for t in range(1, num_steps + 1):
    count = t - 1
    lr = _value(learning_rate, count)
    if callable(grads):
      g_t = grads(t, [p.copy() for p in theta])
    else:
      g_t = grads[t - 1]
    g_t = [np.array(g, dtype=dtype) for g in g_t]

    # Moments (with L2 weight decay folded into the gradient first).
    for i in range(len(theta)):
      g = g_t[i]
      if weight_decay_mode == "l2" and mask[i]:
        g = g + weight_decay * theta[i]
      m[i] = b1 * m[i] + (1 - b1) * g
      s[i] = b2 * s[i] + (1 - b2) * (g * np.conj(g)).real

    # The guard's bound, from the accumulator before any reset.
    bounds = None
    is_refresh = t in refreshes or mutation == "refresh_every_step"
    if guard is not None and not is_refresh:  # A fresh v needs no guard.
      n_t = t - last_refresh
      gamma_t = _value(gamma, count)
      bounds = []
      for i in range(len(theta)):
        sigma_t = s[i] / (1 - b2**n_t) + eps
        bounds.append(guard * approximate_power(sigma_t, -gamma_t / 2.0))

    # IDU refresh of the preconditioner, element by element.
    if t in refreshes or mutation == "refresh_every_step":
      n = refreshes.get(t, 1)
      gamma_t = _value(gamma, count)
      b2_power = t if mutation == "b2_pow_t" else None
      for i in range(len(theta)):
        new_v = np.empty_like(s[i])
        for idx in np.ndindex(s[i].shape):
          prev = None if v[i] is None else v[i][idx]
          new_v[idx] = refresh_scalar(
            s[i][idx],
            prev,
            n,
            b2=b2,
            eps=eps,
            gamma=gamma_t,
            beta3=beta3,
            b2_power=b2_power,
            eps_inside=mutation == "eps_before_bias_correction",
          )
        v[i] = new_v
        if mutation != "no_accumulator_reset":
          s[i] = np.zeros_like(s[i])
      last_refresh = t

    # The step, after decoupled or fixed weight decay.
    b_first = b2 if mutation == "b2_in_first_moment" else b1
    for i in range(len(theta)):
      v_step = v[i] if bounds is None else np.minimum(v[i], bounds[i])
      update = v_step * m[i] / (1 - b_first**t)
      if weight_decay_mode == "decoupled" and mask[i]:
        theta[i] = theta[i] * (1 - lr * weight_decay)
      elif weight_decay_mode == "fixed" and mask[i]:
        theta[i] = theta[i] * (1 - weight_decay)
      theta[i] = theta[i] - lr * update
    snapshots.append([p.copy() for p in theta])
  return snapshots


def ema_sgd_reference(
  params: Sequence[np.ndarray],
  grads: Sequence[Sequence[np.ndarray]],
  *,
  learning_rate: float,
  b1: float,
) -> list[list[np.ndarray]]:
  """Bias-corrected EMA-momentum SGD, the gamma = 0 special case of Anon."""
  theta = [np.array(p, dtype=np.float64) for p in params]
  m = [np.zeros_like(p) for p in theta]
  snapshots = []
  for t, g_t in enumerate(grads, start=1):
    for i in range(len(theta)):
      m[i] = b1 * m[i] + (1 - b1) * np.asarray(g_t[i], dtype=np.float64)
      m_hat = m[i] / (1 - b1**t)
      theta[i] = theta[i] - learning_rate * m_hat
    snapshots.append([p.copy() for p in theta])
  return snapshots


def cosine_decay(init_value: float, decay_steps: int, alpha: float = 0.0):
  """NumPy twin of ``optax.cosine_decay_schedule`` (count is zero-based)."""

  def schedule(count: int) -> float:
    frac = min(count, decay_steps) / decay_steps
    cosine = 0.5 * (1 + math.cos(math.pi * frac))
    return init_value * ((1 - alpha) * cosine + alpha)

  return schedule


def linear(init_value: float, end_value: float, transition_steps: int):
  """NumPy twin of ``optax.linear_schedule`` (count is zero-based)."""

  def schedule(count: int) -> float:
    frac = min(max(count, 0), transition_steps) / transition_steps
    return init_value + (end_value - init_value) * frac

  return schedule
