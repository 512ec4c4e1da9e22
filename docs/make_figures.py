"""Regenerates the figures and the digits results that docs/EXAMPLES.md and the README show.

    python docs/make_figures.py                      # everything (about 2-4 minutes on 2 CPU cores)
    python docs/make_figures.py --only trajectories  # docs/figures/trajectories.png
    python docs/make_figures.py --only digits        # docs/results/digits_cnn.{json,md}, the curves

The trajectory figure is notebooks/anon_tour.ipynb's (section 1): every optimizer at the rate of one
log-spaced grid with the lowest mean loss over the second half of its 500-step path. The digits
table and curves come from `python -m experiments.digits_comparison --json
docs/results/digits_cnn.json` (each optimizer at its tuned rate, the example's defaults).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import optax

import anon_optax

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"


def rastrigin(p, a=10.0):
  return a * p.shape[0] + jnp.sum(p**2 - a * jnp.cos(2 * jnp.pi * p))


def rosenbrock(p):
  return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


PROBLEMS = {
  "Rastrigin": dict(
    f=rastrigin, start=(-2.0, 3.5), minimum=(0.0, 0.0), box=((-4.5, 4.5), (-4.5, 4.5))
  ),
  "Rosenbrock": dict(
    f=rosenbrock, start=(-2.0, 2.0), minimum=(1.0, 1.0), box=((-2.5, 2.5), (-1.0, 3.5))
  ),
}
LR_GRID = jnp.logspace(-6, 1, 29)
STEPS = 500


def contenders():
  out = {
    f"anon gamma={g:g}": (lambda g: lambda lr: anon_optax.anon(lr, gamma=g))(g)
    for g in (-0.5, 0.0, 0.5, 1.0, 1.5)
  }
  out.update(
    {
      "adam": optax.adam,
      "sgd (momentum 0.9)": lambda lr: optax.sgd(lr, momentum=0.9),
      "adabelief": optax.adabelief,
      "radam": optax.radam,
      "yogi": optax.yogi,
      "hvadam": anon_optax.hvadam,
    }
  )
  return out


def trajectory(make_tx, lr, f, start, steps=STEPS):
  tx = make_tx(lr)
  p0 = jnp.asarray(start)

  def step(carry, _):
    p, state = carry
    updates, state = tx.update(jax.grad(f)(p), state, p)
    p = optax.apply_updates(p, updates)
    return (p, state), p

  _, path = jax.lax.scan(step, (p0, tx.init(p0)), length=steps)
  return jnp.concatenate([p0[None], path])


def best_path(make_tx, problem):
  paths = jax.jit(jax.vmap(lambda lr: trajectory(make_tx, lr, problem["f"], problem["start"])))(
    LR_GRID
  )
  # Mean loss over the second half of the path: ends low and stays there (no lucky jumps).
  score = jax.vmap(jax.vmap(problem["f"]))(paths[:, paths.shape[1] // 2 :]).mean(-1)
  score = jnp.where(jnp.isfinite(score), score, jnp.inf)  # Diverged: worst.
  i = int(jnp.argmin(score))
  return float(LR_GRID[i]), np.asarray(paths[i])


def make_trajectories(path=FIGURES / "trajectories.png"):
  tx = contenders()
  results = {
    name: {label: best_path(make, prob) for label, make in tx.items()}
    for name, prob in PROBLEMS.items()
  }
  anon_labels = [k for k in tx if k.startswith("anon")]
  other_labels = ["anon gamma=1", *[k for k in tx if not k.startswith("anon")]]
  fig, axes = plt.subplots(2, 2, figsize=(10, 9.5))
  for row, name in enumerate(PROBLEMS):
    prob = PROBLEMS[name]
    (x0, x1), (y0, y1) = prob["box"]
    xs, ys = np.meshgrid(np.linspace(x0, x1, 150), np.linspace(y0, y1, 150))
    zs = np.asarray(jax.vmap(prob["f"])(jnp.stack([xs.ravel(), ys.ravel()], -1))).reshape(xs.shape)
    for col, (labels, what) in enumerate(
      ((anon_labels, "Anon across gamma"), (other_labels, "Anon vs Optax"))
    ):
      ax = axes[row, col]
      ax.contourf(xs, ys, np.log1p(zs), levels=20, cmap="Greys")
      for label in labels:
        lr, p = results[name][label]
        if np.all(np.isfinite(p)):
          ax.plot(p[:, 0], p[:, 1], lw=1.1, label=f"{label} (lr {lr:.2g})")
      ax.plot(*prob["start"], "ko", ms=4)
      ax.plot(*prob["minimum"], "r*", ms=12)
      ax.set(xlim=(x0, x1), ylim=(y0, y1), title=f"{name}: {what}")
      ax.legend(fontsize=6, loc="lower left")
  fig.suptitle(
    f"{STEPS} steps from the black dot; red star = minimum; "
    "each optimizer at its best learning rate of one grid",
    fontsize=9,
  )
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=60)
  plt.close(fig)
  print(f"saved {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")
  for name, res in results.items():
    for label, (lr, p) in res.items():
      print(f"  {name:<10s} {label:<20s} lr={lr:<8.2g} end=({p[-1, 0]: .3f}, {p[-1, 1]: .3f})")


def make_digits(
  results_file=ROOT / "docs" / "results" / "digits_cnn.json", curves=FIGURES / "digits_curves.png"
):
  """Runs experiments/digits_comparison.py with its defaults (its results JSON, with the machine,
  and its table beside it); draws the curves from the JSON."""
  subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.digits_comparison",
      "--json",
      str(results_file.relative_to(ROOT)),
    ],
    check=True,
    cwd=ROOT,
  )
  results = json.loads(results_file.read_text())
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
  for row in results["results"]:
    history = row["runs"][0]["history"]  # Seed 0.
    label = f"{row['optimizer']} (lr {row['learning_rate']:g})"
    ax_loss.plot(history["epoch"], history["train_loss"], label=label)
    ax_acc.plot(history["epoch"], history["test_accuracy"], label=label)
  lowest = min(min(row["runs"][0]["history"]["test_accuracy"]) for row in results["results"])
  ax_loss.set(xlabel="epoch", ylabel="train loss (epoch mean)", yscale="log")
  ax_acc.set(xlabel="epoch", ylabel="test accuracy", ylim=(max(0.0, lowest), 1.0))
  ax_acc.legend(fontsize=7, loc="lower right")
  fig.suptitle(f"digits CNN, seed 0, batch {results['batch_size']}", fontsize=10)
  fig.tight_layout()
  curves.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(curves, dpi=100)
  plt.close(fig)
  print(f"saved {results_file.relative_to(ROOT)} and {curves.relative_to(ROOT)}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--only", choices=("trajectories", "digits"), default=None)
  args = parser.parse_args()
  if args.only in (None, "trajectories"):
    make_trajectories()
  if args.only in (None, "digits"):
    make_digits()


if __name__ == "__main__":
  main()
