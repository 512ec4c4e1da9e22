"""A plain NumPy reference for HVAdam, written straight from docs/algorithm.md (HVAdam).

HVAdam (Zhang et al., "HVAdam: A Full-Dimension Adaptive Optimizer", arXiv
2511.20277): Adam on the deviations of the gradients from a hidden vector ``h``,
plus a second step along ``h`` whose size follows the agreement between ``h``
and the momentum, with restarts.

This module is deliberately naive and independent of the package under test:
no JAX, no Optax, one Python loop over steps, loops over the parameter arrays,
and the tree-wide agreement computed with Python scalars. Everything runs in
``dtype`` (float64 by default). ``test_hvadam.py`` compares
``anon_optax.hvadam`` to it.

Per step ``t = 1, 2, ...``, per array (docs/algorithm.md, HVAdam)::

    m   = b1 m + (1 - b1) g
    r   = |g - h|**2;  q = |g - m|**2;  w = r / (q + gamma r + eps) * r
    mh  = m / (1 - b1**t)
    var = b2 var + (1 - b2) w;  var += eps          (stored)
    denom = sqrt(var) / sqrt(1 - b2**t) + eps
    theta -= lr mh / denom

then over the whole tree (``h`` before this step's change)::

    MM = <mh, mh>;  ML = <mh, h>;  LL = <h, h>
    k = 0 if MM + LL - 2 ML == 0 else (MM - ML) / (MM + LL - 2 ML)
    if flag == -1:                                    -> "restart"
        h = mh; flag = 0; step2 = 0; exp_delta = 0
    else:
        vv    = |k**2 LL + (1 - k)**2 MM + 2 k (1 - k) ML|
        delta = (k ML + (1 - k) MM) / sqrt(vv MM)
        if |delta| > 1:                               -> "skip"
            pass
        else:
            exp_delta = b2 exp_delta + (1 - b2) delta; step2 += 1
            if exp_delta / (1 - b2**step2) < 0.1:     -> "switch_off"
                flag = -1
            else:                                     -> "extra_step"
                h = k h + (1 - k) mh
                theta -= lr 10**(6 exp_delta - 3) h

Where the authors divide by zero in ``delta`` this reference follows the
definitions documented in ``anon_optax.scale_by_hvadam`` (unless
``literal_division=True``, which keeps the authors' 0/0 = NaN):

- ``delta = 0`` when ``vv == 0 < MM`` (``h`` and ``mh`` collinear);
- ``delta`` is undefined when ``MM == 0``; undefined or non-finite ``delta``
  takes the skip branch. The denominator is computed as
  ``sqrt(vv) * sqrt(MM)``;
- ``w = 0`` where ``q + gamma r + eps == 0`` and the Adam step is 0 where
  ``denom == 0`` (only reachable with ``eps == 0``).

Inner products of complex arrays are ``Re(sum(conj(x) * y))``.

Weight decay (docs/algorithm.md: as for Anon), applied to masked arrays only, with
``theta`` the parameters at the start of the step: ``l2``:
``g += wd theta`` before the moments; ``decoupled``: ``theta -= lr wd theta``;
``fixed``: ``theta -= wd theta``. Both HVAdam moves are added on top. A
learning-rate or gamma schedule is read with the zero-based count ``t - 1``,
as ``optax.scale_by_learning_rate`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
import math

import numpy as np

Scalar = float | Callable[[int], float]

WEIGHT_DECAY_MODES = ("l2", "decoupled", "fixed")
BRANCHES = ("restart", "skip", "switch_off", "extra_step")


@dataclasses.dataclass
class HVAdamTrace:
  """What the reference did, one entry per step.

  Attributes:
    params: the parameters after each step (a list of arrays per step).
    branches: the branch taken at each step, one of ``BRANCHES``.
    delta: the agreement at each step (NaN at restarts and where undefined).
    exp_delta: the agreement average after each step.
    hidden: the hidden vector after each step (a list of arrays per step).
  """

  params: list[list[np.ndarray]]
  branches: list[str]
  delta: list[float]
  exp_delta: list[float]
  hidden: list[list[np.ndarray]]


def _value(x: Scalar, count: int) -> float:
  return float(x(count)) if callable(x) else float(x)


def _real_inner(x: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> float:
  """Sum over arrays of Re(sum(conj(x) * y)), as one Python float."""
  total = 0.0
  for a, b in zip(x, y):
    total += float(np.real(np.sum(np.conj(a) * b)))
  return total


def _agreement(mm: float, ml: float, ll: float, literal: bool):
  """Returns ``(k, delta)`` for the tree-wide inner products."""
  den = mm + ll - 2.0 * ml
  k = 0.0 if den == 0.0 else (mm - ml) / den
  vv = abs(k * k * ll + (1.0 - k) ** 2 * mm + 2.0 * k * (1.0 - k) * ml)
  numerator = k * ml + (1.0 - k) * mm
  if literal:  # The authors' arithmetic: 0/0 is NaN.
    with np.errstate(divide="ignore", invalid="ignore"):
      return k, float(np.float64(numerator) / np.sqrt(np.float64(vv * mm)))
  if mm == 0.0:
    return k, math.nan  # Undefined: the momentum is zero.
  norm = math.sqrt(vv) * math.sqrt(mm)
  if norm == 0.0:
    return k, 0.0  # Collinear h and mh: the limit of |p| / |mh|.
  return k, numerator / norm


def hvadam_reference(
  params: Sequence[np.ndarray],
  grads: Sequence[Sequence[np.ndarray]],
  *,
  learning_rate: Scalar,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-16,
  gamma: Scalar = 0.0,
  weight_decay: float = 0.0,
  weight_decay_mode: str = "l2",
  mask: Sequence[bool] | None = None,
  literal_division: bool = False,
  dtype=np.float64,
) -> HVAdamTrace:
  """Runs HVAdam for ``len(grads)`` steps from ``params``.

  Args:
    params: the initial parameters, a list of arrays (the pytree's leaves).
    grads: one list of arrays per step: the loss gradients, independent of the
      parameters (the ``l2`` decay is added to them here).
    learning_rate: a float or a function of the zero-based step count.
    b1: first-moment decay.
    b2: second-moment and agreement-average decay.
    eps: the authors' eps.
    gamma: a float or a function of the zero-based step count.
    weight_decay: decay strength.
    weight_decay_mode: one of ``WEIGHT_DECAY_MODES``.
    mask: which arrays are decayed (all by default).
    literal_division: keep the authors' 0/0 = NaN in ``delta``.
    dtype: the arithmetic dtype of the arrays.

  Returns:
    An :class:`HVAdamTrace`.
  """
  if weight_decay_mode not in WEIGHT_DECAY_MODES:
    raise ValueError(weight_decay_mode)
  is_complex = any(np.iscomplexobj(p) for p in params)
  array_dtype = np.result_type(dtype, np.complex64) if is_complex else dtype
  theta = [np.array(p, dtype=array_dtype) for p in params]
  mask = [True] * len(theta) if mask is None else list(mask)
  m = [np.zeros_like(p) for p in theta]
  h = [np.zeros_like(p) for p in theta]
  var = [np.zeros(p.shape, dtype) for p in theta]
  flag, step2, exp_delta = -1, 0, 0.0
  trace = HVAdamTrace([], [], [], [], [])

  for t, step_grads in enumerate(grads, start=1):
    lr = _value(learning_rate, t - 1)
    gam = _value(gamma, t - 1)
    g = [np.array(x, dtype=array_dtype) for x in step_grads]
    start = [p.copy() for p in theta]

    # Weight decay, on the parameters at the start of the step.
    for i in range(len(theta)):
      if not mask[i]:
        continue
      if weight_decay_mode == "l2":
        g[i] = g[i] + weight_decay * start[i]
      elif weight_decay_mode == "decoupled":
        theta[i] = theta[i] - lr * weight_decay * start[i]
      else:
        theta[i] = theta[i] - weight_decay * start[i]

    # The Adam-like move, array by array.
    mh = []
    for i in range(len(theta)):
      m[i] = b1 * m[i] + (1.0 - b1) * g[i]
      r = np.real(np.conj(g[i] - h[i]) * (g[i] - h[i]))
      q = np.real(np.conj(g[i] - m[i]) * (g[i] - m[i]))
      w_den = q + gam * r + eps
      w = np.zeros_like(r)
      nonzero = w_den != 0
      w[nonzero] = r[nonzero] / w_den[nonzero] * r[nonzero]
      var[i] = b2 * var[i] + (1.0 - b2) * w
      var[i] = var[i] + eps
      mh.append(m[i] / (1.0 - b1**t))
      denom = np.sqrt(var[i]) / math.sqrt(1.0 - b2**t) + eps
      step = np.zeros_like(mh[i])
      nonzero = denom != 0
      step[nonzero] = mh[i][nonzero] / denom[nonzero]
      theta[i] = theta[i] - lr * step

    # The hidden vector, over the whole tree.
    mm, ml, ll = _real_inner(mh, mh), _real_inner(mh, h), _real_inner(h, h)
    k, delta = _agreement(mm, ml, ll, literal_division)
    if flag == -1:
      branch = "restart"
      h = [x.copy() for x in mh]
      flag, step2, exp_delta = 0, 0, 0.0
      delta = math.nan
    elif literal_division and abs(delta) > 1:
      branch = "skip"
    elif not literal_division and not abs(delta) <= 1:  # Also NaN.
      branch = "skip"
    else:
      exp_delta = b2 * exp_delta + (1.0 - b2) * delta
      step2 += 1
      if exp_delta / (1.0 - b2**step2) < 0.1:
        branch = "switch_off"
        flag = -1
      else:
        branch = "extra_step"
        h = [k * hi + (1.0 - k) * mi for hi, mi in zip(h, mh)]
        scale = 10.0 ** (6.0 * exp_delta - 3.0)
        theta = [p - lr * scale * hi for p, hi in zip(theta, h)]

    trace.params.append([p.copy() for p in theta])
    trace.branches.append(branch)
    trace.delta.append(delta)
    trace.exp_delta.append(exp_delta)
    trace.hidden.append([x.copy() for x in h])
  return trace
