"""The vision tables on the GELU digits CNN of ``tooling.models.CNN``.

That CNN (two 3x3 convs, one 2x2 average pool, GELU) is the model of the earlier
``examples/digits_cnn.py`` (up to commit 8695e43); the example now trains the Flax NNX MNIST
tutorial's ReLU CNN, and ``experiments/digits_comparison.py`` compares optimizers on that one.

* Anon vs Adam vs SGD with momentum: each over a 3-value learning-rate grid, 3 seeds.
* The IDU ablation: beta3 in {0.1, ..., 0.9} x refresh_base in {2, 3, 4}, 3 seeds.
* The adaptivity curve: :func:`sweep`, the program of ``examples/gamma_sweep.py`` (one vmapped
  program over gamma, lr and seed, on that example's MLP).

Seed ``s`` inits ``CNN(rngs=nnx.Rngs(s))`` and shuffles with ``np.random.default_rng(s)``. For
the CNN every hyperparameter (lr, gamma, beta3, the guard factor) is an *argument* of one jitted
program (a ``jax.lax.scan`` over all steps), and the lanes are looped over it: a vmapped conv over
per-lane weights is a grouped convolution, no faster per lane on a CPU and slower to compile.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import inspect
import time
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import anon_optax
from tooling import data as datasets
from tooling import models

# The learning rates the earlier examples/digits_cnn.py tuned once on this GELU CNN (its
# TUNED_LEARNING_RATES at commit 8695e43; the ReLU example's: experiments/digits_comparison.py).
TUNED_LEARNING_RATES = {"anon": 1e-2, "adam": 1e-2, "sgd": 1e-1}
# Learning-rate grids, 3 values each: the tuned rate, /3 and x3.
LR_GRIDS = {
  name: tuple(float(f"{lr * f:.2g}") for f in (1 / 3, 1, 3))
  for name, lr in TUNED_LEARNING_RATES.items()
}
# The grids of examples/gamma_sweep.py's sweep (its DEFAULT_GAMMAS and DEFAULT_LRS).
SWEEP_GAMMAS = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
SWEEP_LRS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
BETA3S = (0.1, 0.3, 0.5, 0.7, 0.9)
REFRESH_BASES = (2, 3, 4)
GUARD_FACTOR = inspect.signature(anon_optax.anon).parameters["guard_factor"].default


class DigitsRunner:
  """One compiled training program per (optimizer, refresh_base); lanes are calls to it."""

  def __init__(
    self,
    *,
    width: int,
    hidden: int,
    epochs: int,
    batch_size: int = 64,
    data: datasets.Dataset | None = None,
  ):
    self.data = data or datasets.load_digits()
    self.width, self.hidden, self.epochs, self.batch_size = width, hidden, epochs, batch_size
    self.x_train, self.y_train = jnp.asarray(self.data.x_train), jnp.asarray(self.data.y_train)
    self.x_test, self.y_test = jnp.asarray(self.data.x_test), jnp.asarray(self.data.y_test)
    self.steps_per_epoch = len(self.data.x_train) // batch_size
    self._programs: dict[tuple, Callable] = {}
    self.graphdef = None

  def init(self, seed: int):
    """The earlier digits_cnn.train's init and batch order for this seed."""
    model = models.CNN(
      self.data.x_train.shape[1:], width=self.width, hidden=self.hidden, rngs=nnx.Rngs(seed)
    )
    self.graphdef, params = nnx.split(model, nnx.Param)
    rng = np.random.default_rng(seed)
    n = self.steps_per_epoch * self.batch_size
    order = np.stack([rng.permutation(len(self.data.x_train))[:n] for _ in range(self.epochs)])
    return params, jnp.asarray(order.reshape(-1, self.batch_size))

  def _loss(self, params, x, y):
    logits = nnx.merge(self.graphdef, params)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

  def _program(self, name: str, refresh_base: int, record: Callable | None = None):
    """``record(opt_state, hp)``: a dict of values to return for every step (stacked)."""
    key = (name, refresh_base, record)
    if key not in self._programs:

      def make_tx(hp):
        # The earlier digits_cnn.make_optimizer, with Anon's beta3, refresh_base and guard exposed.
        if name == "anon":
          return anon_optax.anon(
            hp["lr"],
            gamma=hp["gamma"],
            beta3=hp["beta3"],
            refresh_base=refresh_base,
            guard_factor=hp["factor"],
          )
        if name == "adam":
          return optax.adam(hp["lr"])
        if name == "sgd":
          return optax.sgd(hp["lr"], momentum=0.9)
        raise ValueError(f"unknown optimizer {name!r}")

      def train(params, order, hp):
        tx = make_tx(hp)

        def step(carry, idx):
          params, opt_state = carry
          (loss, _), grads = jax.value_and_grad(self._loss, has_aux=True)(
            params, self.x_train[idx], self.y_train[idx]
          )
          updates, opt_state = tx.update(grads, opt_state, params)
          out = {"loss_curve": loss, **(record(opt_state, hp) if record else {})}
          return (optax.apply_updates(params, updates), opt_state), out

        (params, _), outs = jax.lax.scan(step, (params, tx.init(params)), order)
        train_loss, _ = self._loss(params, self.x_train, self.y_train)
        _, logits = self._loss(params, self.x_test, self.y_test)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == self.y_test)
        return {"test_accuracy": accuracy, "train_loss": train_loss, **outs}

      self._programs[key] = jax.jit(train)
    return self._programs[key]

  def run(
    self,
    name: str,
    seed: int,
    *,
    lr: float,
    gamma: float = 1.0,
    beta3: float = 0.5,
    refresh_base: int = 2,
    factor: float = GUARD_FACTOR,
    record: Callable | None = None,
  ) -> dict[str, Any]:
    """One run; lr, gamma, beta3 and Anon's guard factor (traced: inf is the exact rule) are
    arguments of the compiled program."""
    params, order = self.init(seed)
    hp = {
      k: jnp.float32(v) for k, v in dict(lr=lr, gamma=gamma, beta3=beta3, factor=factor).items()
    }
    out = self._program(name, refresh_base if name == "anon" else 0, record)(params, order, hp)
    return {k: np.asarray(v) for k, v in out.items()}


def _stats(accs, losses) -> dict[str, Any]:
  accs, losses = np.asarray(accs, float), np.asarray(losses, float)
  return {
    "test_accuracy_mean": float(accs.mean()),
    "test_accuracy_std": float(accs.std()),
    "test_accuracy_per_seed": accs.tolist(),
    "train_loss_mean": float(losses.mean()),
    "train_loss_std": float(losses.std()),
  }


def compare(
  runner: DigitsRunner, seeds: Sequence[int], log=print, optimizers=("anon", "adam", "sgd")
) -> dict[str, Any]:
  """Anon (gamma 1) vs Adam vs SGD+momentum, each over its LR grid; best LR by mean accuracy."""
  rows = []
  for name in optimizers:
    start = time.perf_counter()
    grid = []
    for lr in LR_GRIDS[name]:
      outs = [runner.run(name, s, lr=lr) for s in seeds]
      grid.append(
        dict(
          _stats([o["test_accuracy"] for o in outs], [o["train_loss"] for o in outs]),
          learning_rate=lr,
          loss_curve_mean=np.mean([o["loss_curve"] for o in outs], 0).tolist(),
        )
      )
    score = [g["test_accuracy_mean"] if np.isfinite(g["train_loss_mean"]) else -1 for g in grid]
    best = grid[int(np.argmax(score))]
    seconds = time.perf_counter() - start
    rows.append(
      {
        "optimizer": name,
        "learning_rates": list(LR_GRIDS[name]),
        "best_learning_rate": best["learning_rate"],
        **{k: v for k, v in best.items() if k != "learning_rate"},
        "grid": [{k: v for k, v in g.items() if k != "loss_curve_mean"} for g in grid],
        "seconds": round(seconds, 1),
      }
    )
    log(
      f"  vision {name:>5s}: best lr {best['learning_rate']:g}  test acc "
      f"{100 * best['test_accuracy_mean']:.2f} +- {100 * best['test_accuracy_std']:.2f}  "
      f"train loss {best['train_loss_mean']:.4f}  {seconds:.0f}s"
    )
  return {"rows": rows, "steps_per_epoch": runner.steps_per_epoch}


def idu_ablation(
  runner: DigitsRunner,
  seeds: Sequence[int],
  lr: float,
  log=print,
  beta3s=BETA3S,
  refresh_bases=REFRESH_BASES,
) -> dict[str, Any]:
  """Anon (gamma 1) at one learning rate over beta3 x refresh_base x seeds."""
  cells = []
  for base in refresh_bases:
    start = time.perf_counter()
    for b3 in beta3s:
      outs = [runner.run("anon", s, lr=lr, beta3=b3, refresh_base=base) for s in seeds]
      cells.append(
        dict(
          refresh_base=base,
          beta3=b3,
          **_stats([o["test_accuracy"] for o in outs], [o["train_loss"] for o in outs]),
        )
      )
    row = [c for c in cells if c["refresh_base"] == base]
    log(
      f"  IDU a_n={base}^(n-1): "
      + " / ".join(f"{100 * c['test_accuracy_mean']:.2f}" for c in row)
      + f"  ({time.perf_counter() - start:.0f}s)"
    )
  return {
    "learning_rate": lr,
    "beta3s": list(beta3s),
    "refresh_bases": list(refresh_bases),
    "cells": cells,
  }


def adaptivity(
  seeds: Sequence[int],
  gammas: Sequence[float],
  lrs: Sequence[float],
  *,
  hidden: int,
  epochs: int,
  batch_size: int = 64,
  log=print,
) -> dict[str, Any]:
  """examples/gamma_sweep.py's vmapped program (its MLP): every (seed, lr, gamma) is one lane."""
  start = time.perf_counter()
  out = sweep(
    list(gammas), tuple(lrs), tuple(seeds), epochs=epochs, batch_size=batch_size, hidden=hidden
  )
  seconds = time.perf_counter() - start
  acc = np.nan_to_num(out["test_accuracy"].mean(0), nan=-1.0)  # (lrs, gammas); diverged: worst
  rows = []
  for j, g in enumerate(gammas):  # Per gamma, the learning rate with the best mean accuracy.
    i = int(np.argmax(acc[:, j]))
    accuracy, loss = out["test_accuracy"][:, i, j], out["train_loss"][:, i, j]
    rows.append(
      dict(optimizer="anon", gamma=float(g), learning_rate=float(lrs[i]))
      | dict(test_accuracy=float(accuracy.mean()), test_accuracy_std=float(accuracy.std()))
      | dict(train_loss=float(loss.mean()), train_loss_std=float(loss.std()))
      | dict(test_accuracy_per_seed=accuracy.tolist())
    )
  log(
    f"  gamma sweep ({len(seeds) * len(lrs) * len(gammas)} lanes, one vmap): "
    + ", ".join(f"{r['gamma']:g}:{100 * r['test_accuracy']:.1f}" for r in rows)
    + f"  ({seconds:.0f}s)"
  )
  return {
    "gammas": list(gammas),
    "learning_rates": list(lrs),
    "rows": rows,
    "hidden": hidden,
    "epochs": epochs,
    "batch_size": batch_size,
    "grid_test_accuracy_mean": out["test_accuracy"].mean(0).tolist(),  # (lrs, gammas)
    "grid_train_loss_mean": out["train_loss"].mean(0).tolist(),
    "seconds": round(seconds, 1),
  }


def sweep(gammas, learning_rates, seeds, *, epochs: int, batch_size: int, hidden: int):
  """``examples/gamma_sweep.py``'s ``sweep``: one MLP per (seed, lr, gamma), one vmapped program.

  Returns arrays of shape (len(seeds), len(learning_rates), len(gammas)): "test_accuracy",
  "train_loss" (final loss on the whole training set) and "loss_curve" (..., steps) of batch losses.
  """
  data = datasets.load_digits()
  x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
  x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
  steps_per_epoch = len(x_train) // batch_size

  # One init and one batch order per seed, shared by every (lr, gamma) lane of that seed.
  graphdef = None
  inits, orders = [], []
  for seed in seeds:
    model = models.MLP(int(np.prod(data.x_train.shape[1:])), hidden, rngs=nnx.Rngs(seed))
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
