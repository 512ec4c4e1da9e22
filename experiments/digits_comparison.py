"""Anon against Adam, SGD with momentum and HVAdam on the digits CNN: tuning and comparison.

The model is the CNN of ``examples/digits_cnn.py`` (the Flax NNX MNIST tutorial's: two 3x3
convolutions with 2x2 average pools, two dense layers, ReLU), defined again here so this file
imports no example. Every optimizer trains the same initial model on the same batches for a seed.

    python -m experiments.digits_comparison                  # every optimizer at its tuned rate
    python -m experiments.digits_comparison --tune           # rerun the learning-rate grids
    python -m experiments.digits_comparison --seeds 3        # mean and spread over seeds 0, 1, 2
    python -m experiments.digits_comparison --optimizers anon --mu-dtype bfloat16 \\
        --precond-dtype bfloat16                             # Anon's compact state
    python -m experiments.digits_comparison --dataset cifar10   # only with local TFDS data
    python -m experiments.digits_comparison --quick          # a few seconds
    python -m experiments.digits_comparison --json PATH      # also a results file (see below)
    python -m experiments.digits_comparison --render PATH    # only rewrite its table

``--json PATH`` writes the machine (``tooling.machine.machine_info``: CPU, versions, git commit,
command) and the results: per optimizer the means over seeds, the sizes of the parameters and the
optimizer state, the dtypes of m/s/v found in the state, and every seed's run with its per-epoch
train loss and test accuracy and loss (``history``); and its table beside it (the same name ending
in ``.md``). ``docs/make_figures.py`` writes ``docs/results/digits_cnn.json`` and its figure this
way.

Tuning (``--tune``; seed 0, 20 epochs, batch 64, final test accuracy on 450 images, where one image
is 0.0022; Anon with its defaults, gamma 1.0). The rate kept is the best accuracy, ties broken by
the lower final train loss; ``examples/digits_cnn.py`` hard-codes Anon's and Adam's::

    optimizer  3e-4    1e-3    3e-3    1e-2     (sgd: 1e-2, 3e-2, 1e-1, 3e-1)
    anon       0.9200  0.9578  0.9756  0.9778*
    adam       0.9022  0.9489  0.9800* 0.9733
    sgd        0.9089  0.9533  0.9778* 0.9644
    hvadam     0.8244  0.9022  0.9689  0.9844*

(* kept). Anon's and HVAdam's best rate is the top of their grid. Measured on a 2-core AMD EPYC CPU
with JAX 0.10.2 and Flax 0.12.8.

These are near-ties on a small test set: a smoke-level comparison, not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from flax import nnx
import jax
import numpy as np
import optax

import anon_optax
from tooling import machine
from tooling.data import Dataset
from tooling.data import load_digits

OPTIMIZERS = ("anon", "adam", "sgd", "hvadam")
TUNING_GRIDS = {
  "anon": (3e-4, 1e-3, 3e-3, 1e-2),
  "adam": (3e-4, 1e-3, 3e-3, 1e-2),
  "sgd": (1e-2, 3e-2, 1e-1, 3e-1),
  "hvadam": (3e-4, 1e-3, 3e-3, 1e-2),
}
# The grid winners (see the module docstring).
TUNED_LEARNING_RATES = {"anon": 1e-2, "adam": 3e-3, "sgd": 1e-1, "hvadam": 1e-2}
STORAGE_DTYPES = ("mu_dtype", "nu_dtype", "precond_dtype")  # Anon's m, s and v.


class CNN(nnx.Module):
  """The example's CNN for any image shape whose sides are divisible by 4."""

  def __init__(self, image_shape: tuple[int, int, int], num_classes: int = 10, *, rngs: nnx.Rngs):
    height, width, channels = image_shape
    self.conv1 = nnx.Conv(channels, 32, kernel_size=(3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
    self.linear1 = nnx.Linear((height // 4) * (width // 4) * 64, 256, rngs=rngs)
    self.linear2 = nnx.Linear(256, num_classes, rngs=rngs)

  def __call__(self, x):
    x = nnx.avg_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
    x = nnx.avg_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
    x = nnx.relu(self.linear1(x.reshape(x.shape[0], -1)))
    return self.linear2(x)


def load_cifar10(data_dir: str | None = None) -> Dataset:
  """CIFAR-10 from TensorFlow Datasets, never downloading; exits with a message if unavailable."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError:
    sys.exit(
      "error: --dataset cifar10 needs tensorflow_datasets (`pip install tensorflow "
      "tensorflow-datasets`) and the cifar10 data already prepared in its data_dir "
      "(this experiment never downloads)."
    )
  try:
    train, test = tfds.load(
      "cifar10", split=["train", "test"], batch_size=-1, as_supervised=True,
      data_dir=data_dir, download=False,
    )  # fmt: skip
  except Exception as e:  # tfds raises several types for "not prepared here".
    sys.exit(
      f"error: cifar10 is not available locally (data_dir={data_dir or '~/tensorflow_datasets'}; "
      f"this experiment never downloads): {type(e).__name__}: {e}"
    )
  (x_train, y_train), (x_test, y_test) = tfds.as_numpy(train), tfds.as_numpy(test)
  mean, std = np.float32([0.4914, 0.4822, 0.4465]), np.float32([0.2470, 0.2435, 0.2616])
  norm = lambda x: (x.astype(np.float32) / 255.0 - mean) / std
  return Dataset(
    norm(x_train), y_train.astype(np.int32), norm(x_test), y_test.astype(np.int32), "cifar10"
  )


def make_optimizer(
  name: str, learning_rate: float, *, exact: bool = False, storage: dict[str, str] | None = None
) -> optax.GradientTransformation:
  """``exact`` and ``storage`` (some of STORAGE_DTYPES -> dtype name) apply to Anon only."""
  if name == "anon":
    return anon_optax.anon(learning_rate, exact=exact, **(storage or {}))
  if name == "adam":
    return optax.adam(learning_rate)
  if name == "sgd":
    return optax.sgd(learning_rate, momentum=0.9)
  if name == "hvadam":
    return anon_optax.hvadam(learning_rate)
  raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")


def loss_fn(model: CNN, x, y):
  logits = model(x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@nnx.jit
def train_step(model: CNN, optimizer: nnx.Optimizer, metrics: nnx.MultiMetric, x, y):
  (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
  metrics.update(loss=loss, logits=logits, labels=y)
  optimizer.update(model, grads)


@nnx.jit
def eval_step(model: CNN, metrics: nnx.MultiMetric, x, y):
  loss, logits = loss_fn(model, x, y)
  metrics.update(loss=loss, logits=logits, labels=y)


def new_metrics() -> nnx.MultiMetric:
  return nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))


def train(
  tx, data: Dataset, *, epochs: int, batch_size: int, seed: int, curves: bool = False
) -> dict:
  """A fresh CNN trained with ``tx``: final train loss, test accuracy and loss, sizes.

  ``curves``: also ``history``, each epoch's mean train loss and test accuracy and loss (one
  extra evaluation per epoch, not timed).
  """
  model = CNN(data.x_train.shape[1:], rngs=nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  train_metrics, rng = new_metrics(), np.random.default_rng(seed)
  history = {"epoch": [], "train_loss": [], "test_accuracy": [], "test_loss": []}
  seconds = 0.0
  for epoch in range(1, epochs + 1):
    start = time.perf_counter()
    train_metrics.reset()
    perm = rng.permutation(len(data.x_train))
    for i in range(len(perm) // batch_size):
      idx = perm[i * batch_size : (i + 1) * batch_size]
      train_step(model, optimizer, train_metrics, data.x_train[idx], data.y_train[idx])
    seconds += time.perf_counter() - start
    if curves:
      test = evaluate(model, data)
      history["epoch"].append(epoch)
      history["train_loss"].append(float(train_metrics.compute()["loss"]))
      history["test_accuracy"].append(test["accuracy"])
      history["test_loss"].append(test["loss"])
  test = evaluate(model, data)
  state = nnx.state(optimizer, nnx.OptState)
  return {
    "train_loss": float(train_metrics.compute()["loss"]),
    "test_loss": test["loss"],
    "test_accuracy": test["accuracy"],
    "seconds": round(seconds, 2),
    "param_bytes": tree_bytes(nnx.to_pure_dict(nnx.state(model, nnx.Param))),
    "state_bytes": tree_bytes(nnx.to_pure_dict(state)),
    "state_dtypes": state_dtypes(nnx.to_pure_dict(state)),
    **({"history": history} if curves else {}),
  }


def evaluate(model: CNN, data: Dataset) -> dict[str, float]:
  """Test accuracy and loss, in batches of 1000 images."""
  test_metrics = new_metrics()
  for i in range(0, len(data.x_test), 1000):
    eval_step(model, test_metrics, data.x_test[i : i + 1000], data.y_test[i : i + 1000])
  return {k: float(v) for k, v in test_metrics.compute().items()}


def state_dtypes(tree) -> dict[str, str]:
  """The dtypes of the ``mu``, ``nu`` and ``precond`` arrays in a pure-dict optimizer state
  (Anon's m, s and v; Adam's m and v), as found after training."""
  found: dict[str, str] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    for key in path:
      if getattr(key, "key", None) in ("mu", "nu", "precond"):
        found.setdefault(key.key, str(leaf.dtype))
  return found


def tree_bytes(tree) -> int:
  """Bytes of the arrays in a pure dict (``nnx.to_pure_dict``)."""
  if isinstance(tree, dict):
    return sum(tree_bytes(value) for value in tree.values())
  return np.asarray(tree).nbytes


def tune(optimizers, data: Dataset, *, epochs: int, batch_size: int) -> dict[str, float]:
  """Every rate of each optimizer's grid at seed 0; prints each point, returns the winners."""
  best = {}
  for name in optimizers:
    scores = []
    for lr in TUNING_GRIDS[name]:
      r = train(make_optimizer(name, lr), data, epochs=epochs, batch_size=batch_size, seed=0)
      loss = r["train_loss"] if np.isfinite(r["train_loss"]) else float("inf")
      print(f"{name:>7s} lr {lr:<7g} test accuracy {r['test_accuracy']:.4f} train loss {loss:.3g}")
      scores.append((-r["test_accuracy"], loss, lr))
    best[name] = min(scores)[2]
  print("best:", json.dumps(best))
  return best


def compare(
  optimizers,
  data: Dataset,
  *,
  seeds: int,
  epochs: int,
  batch_size: int,
  curves: bool = False,
  **anon_kw,
):
  """Each optimizer at its tuned rate over ``seeds`` seeds: mean and spread of the test metrics,
  and every seed's run (``runs``; with ``curves``, each with its per-epoch ``history``)."""
  rows = []
  for name in optimizers:
    kw = anon_kw if name == "anon" else {}
    lr = TUNED_LEARNING_RATES[name]
    sizes = dict(epochs=epochs, batch_size=batch_size, curves=curves)
    runs = [train(make_optimizer(name, lr, **kw), data, seed=s, **sizes) for s in range(seeds)]
    acc = np.array([r["test_accuracy"] for r in runs])
    rows.append(
      {
        "optimizer": name,
        "learning_rate": lr,
        **({"exact": kw.get("exact", False), **kw.get("storage", {})} if name == "anon" else {}),
        "test_accuracy_mean": float(acc.mean()),
        "test_accuracy_std": float(acc.std()),
        "train_loss_mean": float(np.mean([r["train_loss"] for r in runs])),
        "seconds_mean": float(np.mean([r["seconds"] for r in runs])),
        "param_bytes": runs[0]["param_bytes"],
        "state_bytes": runs[0]["state_bytes"],
        "state_dtypes": runs[0]["state_dtypes"],
        "runs": [{"seed": s, **r} for s, r in enumerate(runs)],
      }
    )
    r = rows[-1]
    print(
      f"{name:>7s} lr {lr:<7g} test accuracy {r['test_accuracy_mean']:.4f} "
      f"+- {r['test_accuracy_std']:.4f} ({seeds} seeds)  train loss {r['train_loss_mean']:.3g}  "
      f"state {r['state_bytes']} bytes  {r['seconds_mean']:.1f} s",
      flush=True,
    )
  return rows


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma-separated")
  parser.add_argument("--dataset", choices=("digits", "cifar10"), default="digits")
  parser.add_argument("--data-dir", default=None, help="tensorflow_datasets data_dir (cifar10)")
  parser.add_argument("--epochs", type=int, default=None, help="20 (digits), 10 (cifar10)")
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--seeds", type=int, default=1)
  parser.add_argument("--tune", action="store_true", help="run TUNING_GRIDS instead")
  parser.add_argument("--exact", action="store_true", help="Anon with exact=True (no step guard)")
  for arg in STORAGE_DTYPES:
    parser.add_argument("--" + arg.replace("_", "-"), choices=("float32", "bfloat16"))
  parser.add_argument("--quick", action="store_true", help="2 epochs: a few seconds")
  parser.add_argument(
    "--json",
    type=pathlib.Path,
    default=None,
    metavar="PATH",
    help="also write the results, each run's per-epoch curves and the machine to PATH",
  )
  parser.add_argument("--render", metavar="JSON", help="only rewrite JSON's table beside it")
  args = parser.parse_args(argv)
  if args.render:
    machine.render_results(args.render, render)
    return
  optimizers = [o for o in args.optimizers.split(",") if o]
  if unknown := set(optimizers) - set(OPTIMIZERS):
    parser.error(f"unknown optimizers {sorted(unknown)}; choose from {', '.join(OPTIMIZERS)}")
  epochs = args.epochs or (2 if args.quick else 10 if args.dataset == "cifar10" else 20)
  data = load_digits() if args.dataset == "digits" else load_cifar10(args.data_dir)
  kw = {"epochs": epochs, "batch_size": args.batch_size}
  if args.tune:
    tune(optimizers, data, **kw)
    return
  storage = {k: getattr(args, k) for k in STORAGE_DTYPES if getattr(args, k)}
  anon_kw = dict(exact=args.exact, storage=storage, curves=args.json is not None)
  rows = compare(optimizers, data, seeds=args.seeds, **anon_kw, **kw)
  results = {"dataset": args.dataset, "epochs": epochs, "batch_size": args.batch_size}
  results["results"] = rows
  if args.json is not None:
    machine.write_results(args.json.stem, results, render(results), args.json.parent)
  print(json.dumps(results))


def render(results: dict) -> str:
  """One row per optimizer (means over the seeds when there are several)."""
  n = len(results["results"][0]["runs"])
  options = lambda r: [k for k in ("exact", *STORAGE_DTYPES) if r.get(k)]
  rows = [
    [" ".join([r["optimizer"], *(f"{k}={r[k]}" for k in options(r))])]
    + [f"{r['learning_rate']:g}", f"{r['test_accuracy_mean']:.4f}"]
    + ([f"± {r['test_accuracy_std']:.4f}"] if n > 1 else [])
    + [f"{np.mean([run['test_loss'] for run in r['runs']]):.4f}", f"{r['train_loss_mean']:.2e}"]
    + [f"{r['seconds_mean']:.1f}"]
    for r in results["results"]
  ]
  headers = ["optimizer", "learning rate", "test accuracy", *(["std"] if n > 1 else [])]
  headers += ["test loss", "final train loss", "training seconds"]
  seeds = f"mean over seeds 0 .. {n - 1}" if n > 1 else "seed 0"
  return (
    f"{results['dataset']}, {results['epochs']} epochs of batch {results['batch_size']}, "
    f"{seeds}:\n\n" + machine.markdown_table(headers, rows)
  )


if __name__ == "__main__":
  main()
