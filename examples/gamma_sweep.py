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

The last line on stdout is one JSON object::

    {"results": [{"optimizer": "anon", "gamma": -0.5, "learning_rate": ..., "test_accuracy": ...,
                  "train_loss": ...}, ...], "seconds": ..., "grid": {...}}
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any, NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import anon_optax


class Dataset(NamedTuple):
  x_train: np.ndarray  # float32, (n, 8, 8, 1), in [0, 1]
  y_train: np.ndarray  # int32, (n,)
  x_test: np.ndarray
  y_test: np.ndarray


def load_digits(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
  """sklearn's 1797 8x8 digits scaled to [0, 1]; the fixed stratified split of digits_cnn.py."""
  from sklearn.datasets import load_digits as _load
  from sklearn.model_selection import train_test_split

  digits = _load()
  x = (digits.images / 16.0).astype(np.float32)[..., None]
  y = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=test_fraction, random_state=seed, stratify=y
  )
  return Dataset(x_train, y_train, x_test, y_test)


class MLP(nnx.Module):
  """Flattened 8x8 image -> two GELU hidden layers -> 10 logits.

  An MLP rather than the CNN of digits_cnn.py: under vmap a batch of conv kernels becomes a grouped
  convolution, which is slow on CPU, while a batch of dense layers is a batched matmul.
  """

  def __init__(
    self, in_features: int = 64, hidden: int = 128, num_classes: int = 10, *, rngs: nnx.Rngs
  ):
    self.linear1 = nnx.Linear(in_features, hidden, rngs=rngs)
    self.linear2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.linear3 = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    x = nnx.gelu(self.linear1(x))
    x = nnx.gelu(self.linear2(x))
    return self.linear3(x)


DEFAULT_GAMMAS = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
DEFAULT_LRS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def sweep(
  gammas,
  learning_rates=(3e-3,),
  seeds=(0,),
  *,
  epochs: int = 20,
  batch_size: int = 64,
  hidden: int = 128,
  data: Dataset | None = None,
  beta3: float = 0.5,
  refresh_base: int = 2,
) -> dict[str, np.ndarray]:
  """Trains one MLP per (seed, learning rate, gamma) in a single vmapped program.

  Returns arrays of shape (len(seeds), len(learning_rates), len(gammas)): "test_accuracy",
  "train_loss" (final loss on the whole training set) and "loss_curve" (..., steps) of batch losses.
  """
  data = data or load_digits()
  x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
  x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
  steps_per_epoch = len(x_train) // batch_size

  # One init and one batch order per seed, shared by every (lr, gamma) lane of that seed.
  graphdef = None
  inits, orders = [], []
  for seed in seeds:
    model = MLP(int(np.prod(data.x_train.shape[1:])), hidden, rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(model, nnx.Param)
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
    tx = anon_optax.anon(lr, gamma=gamma, beta3=beta3, refresh_base=refresh_base)

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
  acc = np.nan_to_num(out["test_accuracy"].mean(0), nan=-1.0)  # (lrs, gammas)
  loss = out["train_loss"].mean(0)
  rows = []
  for j, g in enumerate(gammas):
    i = int(np.argmax(acc[:, j]))
    rows.append(
      {
        "optimizer": "anon",
        "gamma": float(g),
        "learning_rate": float(learning_rates[i]),
        "test_accuracy": float(out["test_accuracy"][:, i, j].mean()),
        "test_accuracy_std": float(out["test_accuracy"][:, i, j].std()),
        "train_loss": float(loss[i, j]),
      }
    )
  return rows


def plot_sweep(rows, path: str, out=None, learning_rates=None, gammas=None) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.4))
  g = [r["gamma"] for r in rows]
  ax_acc.errorbar(
    g,
    [r["test_accuracy"] for r in rows],
    yerr=[r["test_accuracy_std"] for r in rows],
    marker="o",
    capsize=3,
    label="best lr per gamma",
  )
  ax_loss.plot(g, [r["train_loss"] for r in rows], marker="o", label="best lr per gamma")
  if out is not None and len(learning_rates) > 1:
    for i, lr in enumerate(learning_rates):
      ax_acc.plot(
        gammas, out["test_accuracy"][:, i].mean(0), alpha=0.35, ls="--", label=f"lr={lr:g}"
      )
      ax_loss.plot(gammas, out["train_loss"][:, i].mean(0), alpha=0.35, ls="--", label=f"lr={lr:g}")
  ax_acc.set(xlabel="gamma", ylabel="test accuracy", ylim=(0.8, 1.0))
  ax_loss.set(xlabel="gamma", ylabel="final train loss", yscale="log")
  ax_loss.set_ylim(top=10.0)  # Diverged lanes would otherwise squash the axis.
  ax_acc.legend(fontsize=7)
  fig.suptitle("Anon on digits: adaptivity (gamma) vs accuracy and train loss")
  fig.tight_layout()
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _floats(text: str) -> list[float]:
  return [float(t) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--gammas",
    default=",".join(map(str, DEFAULT_GAMMAS)),
    help="comma-separated; use --gammas=-0.5,... for negative values",
  )
  parser.add_argument(
    "--lrs",
    default=",".join(map(str, DEFAULT_LRS)),
    help="learning-rate grid shared by every gamma",
  )
  parser.add_argument("--seeds", type=int, default=1, help="number of seeds (vmapped as well)")
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--hidden", type=int, default=128, help="width of the MLP's hidden layers")
  parser.add_argument("--plot", default=None, metavar="PATH", help="save a PNG of the curves")
  parser.add_argument("--quick", action="store_true", help="a few seconds, for CI")
  args = parser.parse_args(argv)

  gammas, lrs = _floats(args.gammas), _floats(args.lrs)
  epochs = args.epochs
  if args.quick:
    gammas, lrs, epochs = [0.0, 1.0], [3e-3, 3e-2], 3
  seeds = list(range(args.seeds))
  n = len(gammas) * len(lrs) * len(seeds)
  print(
    f"jax {jax.__version__} on {jax.devices()[0].platform}; {len(gammas)} gammas x "
    f"{len(lrs)} lrs x {len(seeds)} seeds = {n} runs of {epochs} epochs in one vmap",
    flush=True,
  )
  start = time.perf_counter()
  with tqdm(total=1, desc=f"vmapped sweep ({n} runs)", file=sys.stderr) as bar:
    out = sweep(gammas, lrs, seeds, epochs=epochs, batch_size=args.batch_size, hidden=args.hidden)
    bar.update(1)
  seconds = time.perf_counter() - start
  rows = best_per_gamma(out, gammas, lrs)
  print(f"{'gamma':>6s} {'best lr':>8s} {'test acc':>9s} {'train loss':>11s}")
  for r in rows:
    print(
      f"{r['gamma']:>6g} {r['learning_rate']:>8g} {r['test_accuracy']:>9.4f} "
      f"{r['train_loss']:>11.4g}"
    )
  print(f"{seconds:.1f}s for the whole sweep (compile included)", flush=True)
  if args.plot:
    plot_sweep(rows, args.plot, out, lrs, gammas)
    print(f"saved {args.plot}", flush=True)
  print(
    json.dumps(
      {
        "results": rows,
        "seconds": round(seconds, 2),
        "grid": {"gammas": gammas, "learning_rates": lrs, "seeds": len(seeds), "epochs": epochs},
      }
    ),
    flush=True,
  )


if __name__ == "__main__":
  main()
