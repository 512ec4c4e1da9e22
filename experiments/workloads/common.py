"""What every workload shares: the optimizers under test, the digits data, non-finite tracking.

The optimizers are named as the runner's ``--optimizers`` flag names them:

* ``adam``: the Adam-family optimizer the original documentation example uses, ``optax.adam`` or
  ``optax.adamw`` (then with that example's weight decay);
* ``anon``: ``anon_optax.anon`` with its defaults and the same learning rate (and, where the
  example uses AdamW, the same weight decay, decoupled as AdamW decouples it);
* ``anon_exact``: the same with ``exact=True``, the authors' exact update rule.

Beside these, ``EPS_VARIANTS`` names Anon's default with a larger ``eps`` (``anon_eps1e-8``,
``anon_eps1e-6``). They are not in ``OPTIMIZERS``, so the runner runs them only when
``--optimizers`` names them, and the main table of docs/workloads.md does not have them; the
``eps`` table of docs/guide.md compares them with ``anon`` (whose ``eps`` is the default, 1e-16).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import anon_optax
from tooling import data as datasets

OPTIMIZERS = ("adam", "anon", "anon_exact")
# Anon's default (the guarded rule) with another eps, by name; run only when asked for.
EPS_VARIANTS = {"anon_eps1e-8": 1e-8, "anon_eps1e-6": 1e-6}
ALL_OPTIMIZERS = OPTIMIZERS + tuple(EPS_VARIANTS)


@functools.cache
def make_optimizer(
  name: str,
  learning_rate: optax.ScalarOrSchedule,
  *,
  adamw_weight_decay: float | None = None,
  b1: float = 0.9,
) -> optax.GradientTransformation:
  """The optimizer ``name`` at ``learning_rate``.

  Args:
    name: one of ``ALL_OPTIMIZERS``.
    learning_rate: a float or an Optax schedule, the same for every optimizer.
    adamw_weight_decay: `None` when the example uses ``optax.adam``; otherwise the example uses
      ``optax.adamw`` with this weight decay, and Anon gets it decoupled.
    b1: the first-moment decay the example passes to Adam (Anon gets the same).

  Returns:
    An Optax gradient transformation. Transformations are pure functions, so one object per
    configuration is shared (cached): jitted steps that take it as a static argument, or hold it
    as NNX static state, then compile once for all seeds.
  """
  if name not in ALL_OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {ALL_OPTIMIZERS}, got {name!r}")
  if name == "adam":
    if adamw_weight_decay is None:
      return optax.adam(learning_rate, b1=b1)
    return optax.adamw(learning_rate, b1=b1, weight_decay=adamw_weight_decay)
  kwargs: dict[str, Any] = {"b1": b1}
  if adamw_weight_decay is not None:
    kwargs.update(weight_decay=adamw_weight_decay, weight_decay_mode="decoupled")
  if name == "anon_exact":
    kwargs["exact"] = True
  if name in EPS_VARIANTS:
    kwargs["eps"] = EPS_VARIANTS[name]
  return anon_optax.anon(learning_rate, **kwargs)


def all_finite(tree) -> jax.Array:
  """One boolean: every leaf of ``tree`` is finite everywhere."""
  leaves = jax.tree.leaves(tree)
  return functools.reduce(
    jnp.logical_and, [jnp.all(jnp.isfinite(x)) for x in leaves], jnp.asarray(True)
  )


class NonFiniteWatch:
  """Collects per-step (loss, finite) pairs and finds the first step that went non-finite.

  Steps are numbered from 1 in the order they are recorded. Checking syncs with the device, so
  workloads check once per epoch (or every few dozen steps), not after every step.
  """

  def __init__(self):
    self.losses: list[jax.Array] = []
    self.finite: list[jax.Array] = []
    self.first_nonfinite_step: int | None = None
    self._checked = 0

  def record(self, loss, finite):
    self.losses.append(loss)
    self.finite.append(finite)

  def check(self) -> bool:
    """True while every recorded step was finite; otherwise sets ``first_nonfinite_step``."""
    if self.first_nonfinite_step is None and len(self.finite) > self._checked:
      flags = np.asarray(jnp.stack(self.finite[self._checked :]))
      bad = np.flatnonzero(~flags)
      if bad.size:
        self.first_nonfinite_step = self._checked + int(bad[0]) + 1
      self._checked = len(self.finite)
    return self.first_nonfinite_step is None

  def recent_loss(self, count: int) -> float:
    """Mean training loss over the last ``count`` recorded steps."""
    tail = np.asarray(jnp.stack(self.losses[-count:]), dtype=np.float64)
    return float(np.mean(tail))


def result(
  final_metric, metric_name: str, watch: NonFiniteWatch, train_loss_steps: int, **extra
) -> dict:
  """The dictionary every workload's ``run`` returns."""
  if metric_name not in ("accuracy", "loss"):
    raise ValueError(f"metric_name must be 'accuracy' or 'loss', got {metric_name!r}")
  watch.check()
  return dict(
    final_metric=float(final_metric),
    metric_name=metric_name,
    first_nonfinite_step=watch.first_nonfinite_step,
    train_loss=watch.recent_loss(train_loss_steps),
    steps=len(watch.losses),
    **extra,
  )


# ----------------------------------------------------------------------------------------------
# Data: scikit-learn's bundled 8x8 digits (no download), one fixed stratified split.
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def digits(test_fraction: float = 0.2) -> dict[str, np.ndarray]:
  """``tooling.data.load_digits`` split 80/20 (seed 0), as a dict of NHWC images and labels.

  The split is the same for every seed and optimizer; seeds change initialisation, dropout and
  batch order only.
  """
  data = datasets.load_digits(seed=0, test_fraction=test_fraction)
  return dict(
    train_image=data.x_train,
    train_label=data.y_train,
    test_image=data.x_test,
    test_label=data.y_test,
  )


def epoch_batches(rng: np.random.Generator, count: int, batch_size: int):
  """Index arrays of a shuffled epoch, full batches only (as ``drop_remainder=True``)."""
  order = rng.permutation(count)
  for start in range(0, count - batch_size + 1, batch_size):
    yield order[start : start + batch_size]


def steps_per_epoch(count: int, batch_size: int) -> int:
  return count // batch_size


def mean_spread(values) -> tuple[float, float]:
  """Mean and half the max-min range over seeds; NaN when any seed's value is not finite."""
  values = [math.nan if v is None else float(v) for v in values]
  if not values or not all(math.isfinite(v) for v in values):
    return math.nan, math.nan
  return float(np.mean(values)), float((max(values) - min(values)) / 2)


# ----------------------------------------------------------------------------------------------
# The Linen MLP of Optax's examples and a jitted classification loss over it.
# ----------------------------------------------------------------------------------------------


class MLP(nn.Module):
  """Flatten, then ``Dense -> ReLU`` per hidden size, then a 10-way ``Dense``."""

  hidden_sizes: tuple[int, ...] = (1000, 1000)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    for size in self.hidden_sizes:
      x = nn.relu(nn.Dense(size)(x))
    return nn.Dense(self.num_classes)(x)


def cross_entropy_and_accuracy(logits, labels):
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, jnp.mean(jnp.argmax(logits, axis=-1) == labels)
