"""Sweep Anon's gamma on digits (an MLP) as ONE ``jax.vmap``-ped, ``jax.jit``-ted program.

gamma sets the adaptivity: 0 is SGD with bias-corrected momentum (the preconditioner is 1), 1 is
Adam-like, > 1 is more than Adam, < 0 less than SGD. The paper argues it trades convergence speed
(train loss) against generalization (test accuracy). Here every (gamma, learning rate, seed) point
is one lane of a single vmapped program: the optimizer is built *inside* the vmapped function as
``anon_optax.anon(lr, gamma=g)`` with ``g`` and ``lr`` traced, the model is plain functional JAX
(``nnx.split`` once, ``nnx.merge`` inside the loss) and the epochs run in ``jax.lax.scan``.

The effective step of Anon scales like ``lr * |g|**(1 - gamma)``, so one learning rate cannot
suit every gamma. The sweep therefore also vmaps over a learning-rate grid (``--lrs``, the same
grid for every gamma) and reports, per gamma, the run with the best final test accuracy (mean over
seeds), with its train loss; ``--lrs 3e-3`` gives the fixed-learning-rate curve instead.

    python examples/gamma_sweep.py                     # 9 gammas x 7 lrs, ~1-2 minutes on CPU
    python examples/gamma_sweep.py --gammas=-0.5,0,0.5,1,1.5 --lrs 3e-3 --seeds 3 --plot sweep.png
    python examples/gamma_sweep.py --quick             # a few seconds (CI)

``--out DIR`` writes ``DIR/gamma_sweep.json`` and its Markdown table ``DIR/gamma_sweep.md``. The
last line on stdout is one JSON object: ``{"results": [{"optimizer": "anon", "gamma": -0.5,
"learning_rate": ..., "test_accuracy": ..., "train_loss": ...}, ...], "seconds": ...,
"grid": {...}}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import anon_optax


def load_digits():
  """(x_train, x_test, y_train, y_test): the 8x8 digits in [0, 1], digits_cnn.py's split."""
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  from sklearn import model_selection  # pylint: disable=import-outside-toplevel

  digits = datasets.load_digits()
  x, y = (digits.images / 16.0).astype(np.float32)[..., None], digits.target.astype(np.int32)
  return model_selection.train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


class MLP(nnx.Module):
  """Flattened 8x8 image -> two GELU hidden layers -> 10 logits.

  An MLP rather than the CNN of digits_cnn.py: under vmap a batch of conv kernels becomes a grouped
  convolution, which is slow on CPU, while a batch of dense layers is a batched matmul.
  """

  def __init__(self, in_features: int = 64, hidden: int = 128, *, rngs: nnx.Rngs):
    self.linear1 = nnx.Linear(in_features, hidden, rngs=rngs)
    self.linear2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.linear3 = nnx.Linear(hidden, 10, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    x = nnx.gelu(self.linear1(x))
    x = nnx.gelu(self.linear2(x))
    return self.linear3(x)


DEFAULT_GAMMAS = "-0.5,-0.25,0,0.25,0.5,0.75,1,1.25,1.5"
DEFAULT_LRS = "1e-5,1e-4,1e-3,1e-2,1e-1,1,10"


def sweep(gammas, learning_rates=(3e-3,), seeds=(0,), *, epochs=20, batch_size=64, hidden=128):
  """Trains one MLP per (seed, learning rate, gamma) in a single vmapped program.

  Returns arrays of shape (len(seeds), len(learning_rates), len(gammas)): "test_accuracy",
  "train_loss" (final loss on the whole training set) and "loss_curve" (..., steps) of batch losses.
  """
  x_train, x_test, y_train, y_test = map(jnp.asarray, load_digits())
  steps_per_epoch = len(x_train) // batch_size

  # One init and one batch order per seed, shared by every (lr, gamma) lane of that seed.
  graphdef = None
  inits, orders = [], []
  for seed in seeds:
    graphdef, params = nnx.split(MLP(64, hidden, rngs=nnx.Rngs(seed)), nnx.Param)
    inits.append(params)
    rng = np.random.default_rng(seed)
    orders.append(
      np.stack(
        [rng.permutation(len(x_train))[: steps_per_epoch * batch_size] for _ in range(epochs)]
      ).reshape(-1, batch_size)
    )
  params0 = jax.tree.map(lambda *p: jnp.stack(p), *inits)
  order = jnp.asarray(np.stack(orders))

  def loss_and_logits(params, x, y):
    logits = nnx.merge(graphdef, params)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

  def train_one(params, order, lr, gamma):
    tx = anon_optax.anon(lr, gamma=gamma)

    def step(carry, idx):
      params, opt_state = carry
      (loss, _), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(
        params, x_train[idx], y_train[idx]
      )
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), order)
    train_loss, _ = loss_and_logits(params, x_train, y_train)
    _, logits = loss_and_logits(params, x_test, y_test)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y_test)
    return {"test_accuracy": accuracy, "train_loss": train_loss, "loss_curve": losses}

  over_gamma = jax.vmap(train_one, in_axes=(None, None, None, 0))
  over_lr = jax.vmap(over_gamma, in_axes=(None, None, 0, None))
  over_seed = jax.vmap(over_lr, in_axes=(0, 0, None, None))
  out = jax.jit(over_seed)(
    params0, order, jnp.asarray(learning_rates, jnp.float32), jnp.asarray(gammas, jnp.float32)
  )
  return {k: np.asarray(v) for k, v in out.items()}


def best_per_gamma(out: dict[str, np.ndarray], gammas, learning_rates) -> list[dict[str, Any]]:
  """Per gamma: the learning rate with the best seed-mean test accuracy (NaN/diverged: worst)."""
  best = np.argmax(np.nan_to_num(out["test_accuracy"].mean(0), nan=-1.0), axis=0)  # Per gamma.
  accuracy = lambda i, j: out["test_accuracy"][:, i, j]
  return [
    {
      "optimizer": "anon",
      "gamma": float(g),
      "learning_rate": float(learning_rates[i]),
      "test_accuracy": float(accuracy(i, j).mean()),
      "test_accuracy_std": float(accuracy(i, j).std()),
      "train_loss": float(out["train_loss"][:, i, j].mean()),
    }
    for j, (g, i) in enumerate(zip(gammas, best))
  ]


def plot_sweep(rows, path: str, out, learning_rates, gammas) -> None:
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
  acc, std = ([r[k] for r in rows] for k in ("test_accuracy", "test_accuracy_std"))
  axes[0].errorbar(gammas, acc, yerr=std, marker="o", capsize=3, label="best lr per gamma")
  axes[1].plot(gammas, [r["train_loss"] for r in rows], marker="o", label="best lr per gamma")
  for ax, key in zip(axes, ("test_accuracy", "train_loss")):
    for i, lr in enumerate(learning_rates if len(learning_rates) > 1 else []):
      ax.plot(gammas, out[key][:, i].mean(0), alpha=0.35, ls="--", label=f"lr={lr:g}")
  axes[0].set(xlabel="gamma", ylabel="test accuracy", ylim=(0.8, 1.0))
  # Diverged lanes would otherwise squash the loss axis.
  axes[1].set(xlabel="gamma", ylabel="final train loss", yscale="log", ylim=(None, 10.0))
  axes[0].legend(fontsize=7)
  fig.suptitle("Anon on digits: adaptivity (gamma) vs accuracy and train loss")
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def write_results(out_dir: str, name: str, payload: dict, table: str) -> None:
  """DIR/NAME.json (the payload and the machine) and DIR/NAME.md: the table under one line naming
  the CPU, the git commit, the date and the command, as every results file of the repository."""
  try:
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in cpuinfo)}
    cpu = "{model name} (family {cpu family}, model {model})".format_map(fields)
  except (OSError, KeyError):
    cpu = platform.processor() or platform.machine()
  git = ["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"]
  try:
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip() or None
  except OSError:  # No git.
    commit = None
  date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  command = shlex.join(["python", *sys.argv])
  machine = dict(cpu=cpu, cores=os.cpu_count(), git_commit=commit, date=date, command=command)
  machine.update(jax=jax.__version__, devices=f"{jax.device_count()} {jax.default_backend()}")
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  data = {"benchmark": name, "machine": machine, **payload}
  (out / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
  source = (
    f"Measured on {cpu} ({os.cpu_count()} cores), commit {commit or 'not recorded'}, "
    f"{date[:10]}, by `{command}`"
  )
  (out / f"{name}.md").write_text(f"{source}; numbers in `{name}.json`.\n\n{table.strip()}\n")


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--gammas", default=DEFAULT_GAMMAS, help="--gammas=-0.5,... if negative")
  parser.add_argument("--lrs", default=DEFAULT_LRS, help="learning rates, the same per gamma")
  parser.add_argument("--seeds", type=int, default=1, help="number of seeds (vmapped as well)")
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--hidden", type=int, default=128, help="width of the MLP's hidden layers")
  parser.add_argument("--plot", default=None, metavar="PATH", help="save a PNG of the curves")
  parser.add_argument("--out", default=None, metavar="DIR", help="write gamma_sweep.json and .md")
  parser.add_argument("--quick", action="store_true", help="a few seconds, for CI")
  args = parser.parse_args(argv)
  gammas, lrs = ([float(t) for t in text.split(",") if t] for text in (args.gammas, args.lrs))
  epochs, seeds = args.epochs, list(range(args.seeds))
  if args.quick:
    gammas, lrs, epochs = [0.0, 1.0], [3e-3, 3e-2], 3
  n = len(gammas) * len(lrs) * len(seeds)
  start = time.perf_counter()
  with tqdm(total=1, desc=f"{n} runs of {epochs} epochs in one vmap", file=sys.stderr) as bar:
    out = sweep(gammas, lrs, seeds, epochs=epochs, batch_size=args.batch_size, hidden=args.hidden)
    bar.update(1)
  seconds = round(time.perf_counter() - start, 2)  # Compilation included.
  rows = best_per_gamma(out, gammas, lrs)
  table = ["| gamma | best lr | test accuracy | final train loss |", "|---|---|---|---|"]
  table += [
    f"| {r['gamma']:g} | {r['learning_rate']:g} | {r['test_accuracy']:.4f} "
    f"| {r['train_loss']:.4f} |"
    for r in rows
  ]
  print("\n".join(table) + f"\n\n{seconds:.1f} s for the whole sweep, compilation included")
  if args.plot:
    plot_sweep(rows, args.plot, out, lrs, gammas)
  grid = {"gammas": gammas, "learning_rates": lrs, "seeds": len(seeds), "epochs": epochs}
  results = {"results": rows, "seconds": seconds, "grid": grid}
  if args.out:
    write_results(args.out, "gamma_sweep", results, "\n".join(table))
  print(json.dumps(results), flush=True)


if __name__ == "__main__":
  main()
