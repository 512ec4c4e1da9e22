"""What every workload shares: the optimizers under test, the digits data, the training loop.

The optimizers, as the runner's ``--optimizers`` flag names them: ``adam``, the Adam-family
optimizer of the original documentation example (``optax.adam``, or ``optax.adamw`` with that
example's weight decay); ``anon``, ``anon_optax.anon`` with its defaults at the same learning rate
(and the same weight decay, decoupled as AdamW's); ``anon_exact``, the same with ``exact=True``.
``EPS_VARIANTS`` are Anon's default with a larger ``eps``, run only when ``--optimizers`` names
them (docs/guide.md compares them with ``anon``, whose ``eps`` is the default 1e-16).
"""

from __future__ import annotations

import functools
import math

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import anon_optax
from tooling import data as datasets

OPTIMIZERS = ("adam", "anon", "anon_exact")
EPS_VARIANTS = {"anon_eps1e-8": 1e-8, "anon_eps1e-6": 1e-6}
ALL_OPTIMIZERS = OPTIMIZERS + tuple(EPS_VARIANTS)


@functools.cache  # One object per configuration: steps that take it as static compile once.
def make_optimizer(name: str, learning_rate, *, adamw_weight_decay=None, b1: float = 0.9):
  """The optimizer ``name`` of ``ALL_OPTIMIZERS`` at ``learning_rate`` (a float or a schedule).

  ``adamw_weight_decay``: None where the example uses ``optax.adam``, else the weight decay of its
  ``optax.adamw`` (Anon gets it decoupled); ``b1``: the example's first-moment decay.
  """
  if name not in ALL_OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {ALL_OPTIMIZERS}, got {name!r}")
  if name == "adam":
    if adamw_weight_decay is None:
      return optax.adam(learning_rate, b1=b1)
    return optax.adamw(learning_rate, b1=b1, weight_decay=adamw_weight_decay)
  kwargs = {"b1": b1, "exact": name == "anon_exact"}
  if adamw_weight_decay is not None:
    kwargs.update(weight_decay=adamw_weight_decay, weight_decay_mode="decoupled")
  if name in EPS_VARIANTS:
    kwargs["eps"] = EPS_VARIANTS[name]
  return anon_optax.anon(learning_rate, **kwargs)


def all_finite(tree) -> jax.Array:
  """One boolean: every leaf of ``tree`` is finite everywhere."""
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


class NonFiniteWatch:
  """Collects per-step (loss, finite) pairs and finds the first step (from 1) that went non-finite.

  Checking syncs with the device, so workloads check once per epoch or every few dozen steps.
  """

  def __init__(self):
    self.losses, self.finite, self.first_nonfinite_step, self._checked = [], [], None, 0

  def record(self, loss, finite):
    self.losses.append(loss)
    self.finite.append(finite)

  def check(self) -> bool:
    """True while every recorded step was finite; otherwise sets ``first_nonfinite_step``."""
    if self.first_nonfinite_step is None and len(self.finite) > self._checked:
      bad = np.flatnonzero(~np.asarray(jnp.stack(self.finite[self._checked :])))
      if bad.size:
        self.first_nonfinite_step = self._checked + int(bad[0]) + 1
      self._checked = len(self.finite)
    return self.first_nonfinite_step is None


def result(final_metric, metric_name: str, watch: NonFiniteWatch, loss_steps: int, **extra):
  """What every workload's ``run`` returns; ``train_loss``: the mean of the last ``loss_steps``."""
  assert metric_name in ("accuracy", "loss"), metric_name
  watch.check()
  return dict(
    final_metric=float(final_metric),
    metric_name=metric_name,
    first_nonfinite_step=watch.first_nonfinite_step,
    train_loss=float(np.mean(np.asarray(jnp.stack(watch.losses[-loss_steps:]), np.float64))),
    steps=len(watch.losses),
    **extra,
  )


def mean_spread(values) -> tuple[float, float]:
  """Mean and half the max-min range over seeds; NaN when any seed's value is not finite."""
  values = [math.nan if v is None else float(v) for v in values]
  if not values or not all(math.isfinite(v) for v in values):
    return math.nan, math.nan
  return float(np.mean(values)), float((max(values) - min(values)) / 2)


@functools.cache
def digits() -> dict[str, np.ndarray]:
  """``tooling.data.load_digits`` split 80/20 (seed 0: the same for every seed and optimizer)."""
  data = datasets.load_digits(seed=0, test_fraction=0.2)
  return {
    "train_image": data.x_train,
    "train_label": data.y_train,
    "test_image": data.x_test,
    "test_label": data.y_test,
  }


def test_batch() -> dict[str, np.ndarray]:
  """The whole digits test set as one batch."""
  return {"image": digits()["test_image"], "label": digits()["test_label"]}


def train_epochs(step, carry, *, epochs: int, batch_size: int, seed: int):
  """Runs ``carry, loss, finite = step(carry, batch)`` over shuffled epochs of full digits
  batches, stopping after an epoch that went non-finite; returns ``carry`` and the watch."""
  data, rng, watch = digits(), np.random.default_rng(seed), NonFiniteWatch()
  count = len(data["train_label"])
  for _ in range(epochs):
    order = rng.permutation(count)
    for start in range(0, count - batch_size + 1, batch_size):
      idx = order[start : start + batch_size]
      carry, loss, finite = step(
        carry, {"image": data["train_image"][idx], "label": data["train_label"][idx]}
      )
      watch.record(loss, finite)
    if not watch.check():
      break
  return carry, watch


class MLP(nn.Module):
  """The Linen MLP of Optax's examples: flatten, ``Dense -> ReLU`` per hidden size, 10 logits."""

  hidden_sizes: tuple[int, ...] = (1000, 1000)

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    for size in self.hidden_sizes:
      x = nn.relu(nn.Dense(size)(x))
    return nn.Dense(10)(x)


def cross_entropy_and_accuracy(logits, labels):
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, jnp.mean(jnp.argmax(logits, axis=-1) == labels)
