"""Sweeps the step guard's factor C of ``anon`` (its ``guard_factor`` argument, default 10).

Run from the repository root::

    python -m experiments.guard.sweep                 # all parts: results/sweep.json and .md
    python -m experiments.guard.sweep --quick --json /tmp/guard.json     # a smoke run
    python -m experiments.guard.sweep --render experiments/guard/results/sweep.json  # tables only

Three parts, each over 3 seeds and C in 1, 3, 10, 30, inf (inf: ``min(v, inf) = v``, the authors'
rule):

* ``cnn``: the GELU digits CNN of ``tooling.models.CNN`` (the earlier ``examples/digits_cnn.py``'s,
  up to commit 8695e43) at the paper reproduction's small size, at its tuned learning rate 0.01 and
  at 3x and 10x that: how much does the guard change a well-conditioned run?
* ``mlp``: a ReLU MLP in the style of Optax's ``reduce_on_plateau`` example (64-128-128-10,
  ``optax.chain(anon, optax.contrib.reduce_on_plateau)``) at lr 5e-3 and 1e-2, where the exact rule
  diverges.
* ``binding``: in the CNN run at the tuned rate, the fraction of parameters for which the package's
  ``anon_optax._idu.guarded_preconditioner`` lowers ``v``, per step between refreshes.

C is passed to ``anon(..., guard_factor=C)`` traced, so one compilation serves every C, rate and
seed; a traced inf is not refused (a concrete one is: ``exact=True`` asks for the authors' rule) and
gives that rule bit for bit in the same program.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import anon_optax
from anon_optax import _idu
from experiments.paper import run_all
from experiments.paper import vision
from tooling import data as datasets
from tooling import machine

HERE = pathlib.Path(__file__).resolve().parent
FACTORS = (1.0, 3.0, 10.0, 30.0, float("inf"))
CNN_LRS = (1e-2, 3e-2, 1e-1)
MLP_LRS = (5e-3, 1e-2)
SEEDS = (0, 1, 2)


def label(factor: float) -> str:
  return "inf" if np.isinf(factor) else f"{factor:g}"


def _first_nonfinite(curve: np.ndarray) -> int | None:
  bad = np.flatnonzero(~np.isfinite(curve))
  return int(bad[0]) + 1 if bad.size else None


def summary(outs: list[dict[str, Any]]) -> dict[str, Any]:
  accs = np.array([float(o["test_accuracy"]) for o in outs])
  losses = np.array([float(o["train_loss"]) for o in outs])
  first = [_first_nonfinite(np.asarray(o["loss_curve"])) for o in outs]
  return {
    "test_accuracy_mean": float(accs.mean()),
    "test_accuracy_std": float(accs.std()),
    "test_accuracy_per_seed": accs.tolist(),
    "train_loss_per_seed": losses.tolist(),
    "first_nonfinite_step_per_seed": first,
  }


def record_binding(opt_state, hp) -> dict[str, jax.Array]:
  """How many elements the package's own guard lowers below ``v`` at this step (b2, eps and gamma
  are anon's defaults), and whether the step is between refreshes."""
  precond = optax.tree_utils.tree_get(opt_state, "precond")
  num_accumulated = optax.tree_utils.tree_get(opt_state, "num_accumulated")
  correction = _idu.bias_correction(1 - 0.999, jnp.maximum(num_accumulated, 1), jnp.float32)
  guarded = jax.tree.map(
    lambda v, s: _idu.guarded_preconditioner(
      v, s, inverse_correction=1 / correction, eps=1e-16, gamma=1.0, factor=hp["factor"]
    ),
    precond,
    optax.tree_utils.tree_get(opt_state, "nu"),
  )
  lowered = sum(jnp.sum(g < v) for g, v in zip(jax.tree.leaves(guarded), jax.tree.leaves(precond)))
  return {"lowered": lowered, "between_refreshes": num_accumulated > 0}


def cnn_sweep(digits: vision.DigitsRunner, factors, lrs, seeds, log=print) -> list[dict[str, Any]]:
  rows = []
  for factor in factors:
    for lr in lrs:
      outs = [digits.run("anon", s, lr=lr, factor=factor) for s in seeds]
      rows.append({"factor": label(factor), "learning_rate": lr, **summary(outs)})
      log(
        f"  cnn C={label(factor):>3s} lr={lr:<6g} acc {rows[-1]['test_accuracy_mean']:.4f}"
        f" first non-finite {rows[-1]['first_nonfinite_step_per_seed']}"
      )
  return rows


def cnn_binding(digits: vision.DigitsRunner, factors, lr: float, seed: int) -> list[dict[str, Any]]:
  """Fraction of parameters the guard lowers, per step between refreshes, in one CNN run."""
  parameters = sum(np.size(p) for p in jax.tree.leaves(digits.init(seed)[0]))
  rows = []
  for factor in factors:
    if np.isinf(factor):
      continue  # An infinite factor never binds.
    out = digits.run("anon", seed, lr=lr, factor=factor, record=record_binding)
    between = out["between_refreshes"]
    frac = out["lowered"] / parameters
    rows.append(
      {
        "factor": label(factor),
        "learning_rate": lr,
        "seed": seed,
        "parameters": int(parameters),
        "steps": int(len(between)),
        "steps_between_refreshes": int(between.sum()),
        "fraction_of_elements_lowered": float(frac[between].mean()),
        "fraction_of_steps_with_any_lowered": float((out["lowered"][between] > 0).mean()),
        "max_fraction_in_one_step": float(frac[between].max()),
      }
    )
  return rows


def mlp_init(key, widths=(64, 128, 128, 10)):
  """Flax Linen's Dense init: lecun_normal kernels, zero biases."""
  params = []
  for layer_key, fan_in, fan_out in zip(jax.random.split(key, len(widths) - 1), widths, widths[1:]):
    params.append(
      {
        "w": jax.nn.initializers.lecun_normal()(layer_key, (fan_in, fan_out)),
        "b": jnp.zeros(fan_out),
      }
    )
  return params


def mlp_apply(params, x):
  x = x.reshape(x.shape[0], -1)
  for layer in params[:-1]:
    x = jax.nn.relu(x @ layer["w"] + layer["b"])
  return x @ params[-1]["w"] + params[-1]["b"]


def mlp_sweep(
  data, factors, lrs, seeds, *, epochs: int, batch_size: int = 32, log=print
) -> list[dict[str, Any]]:
  x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
  x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
  steps_per_epoch = len(x_train) // batch_size

  def loss_fn(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(mlp_apply(params, x), y).mean()

  def batch_order(seed):
    rng = np.random.default_rng(seed)
    n = steps_per_epoch * batch_size
    return jnp.asarray(
      np.stack([rng.permutation(len(x_train))[:n] for _ in range(epochs)]).reshape(-1, batch_size)
    )

  def make_tx(name, lr, factor):
    base = anon_optax.anon(lr, guard_factor=factor) if name == "anon" else optax.adam(lr)
    return optax.chain(
      base,
      optax.contrib.reduce_on_plateau(
        factor=0.5, patience=5, cooldown=0, accumulation_size=steps_per_epoch
      ),
    )

  # Seeds, rates and factors loop over one compiled program per optimizer: a vmap would batch
  # the refresh counters.
  @functools.partial(jax.jit, static_argnums=0)
  def train(name, seed, order, lr, factor):
    tx = make_tx(name, lr, factor)
    params = mlp_init(jax.random.key(seed))

    def step(carry, idx):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, x_train[idx], y_train[idx])
      updates, opt_state = tx.update(grads, opt_state, params, value=loss)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), curve = jax.lax.scan(step, (params, tx.init(params)), order)
    accuracy = jnp.mean(jnp.argmax(mlp_apply(params, x_test), -1) == y_test)
    return {
      "test_accuracy": accuracy,
      "train_loss": loss_fn(params, x_train, y_train),
      "loss_curve": curve,
    }

  orders = {s: batch_order(s) for s in seeds}
  rows = []
  for name, row_factors in (("anon", factors), ("adam", (1.0,))):
    for factor in row_factors:
      for lr in lrs:
        outs = [
          jax.tree.map(
            np.asarray, train(name, jnp.int32(s), orders[s], jnp.float32(lr), jnp.float32(factor))
          )
          for s in seeds
        ]
        rows.append(
          {
            "factor": label(factor) if name == "anon" else "adam",
            "learning_rate": lr,
            **summary(outs),
          }
        )
        log(
          f"  mlp {rows[-1]['factor']:>4s} lr={lr:<6g} acc "
          f"{rows[-1]['test_accuracy_mean']:.4f} first non-finite "
          f"{rows[-1]['first_nonfinite_step_per_seed']}"
        )
  return rows


def main(argv=None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--parts", default="binding,mlp,cnn")
  parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
  parser.add_argument("--json", default=str(HERE / "results" / "sweep.json"))
  parser.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds per cell (default 3)")
  parser.add_argument("--cnn-lrs", default=",".join(map(str, CNN_LRS)))
  parser.add_argument(
    "--update",
    action="store_true",
    help="keep the other parts of an existing --json file, rerun --parts",
  )
  parser.add_argument("--render", metavar="JSON", help="only rewrite JSON's tables beside it")
  args = parser.parse_args(argv)
  if args.render:
    return machine.render_results(args.render, render)
  parts = args.parts.split(",")
  cfg = dict(run_all.CONFIGS["quick" if args.quick else "default"]["vision"])
  mlp_epochs = 1 if args.quick else 10
  seeds = SEEDS[:1] if args.quick else tuple(range(args.seeds))
  cnn_lrs = tuple(float(x) for x in args.cnn_lrs.split(","))
  data = datasets.load_digits()
  digits = vision.DigitsRunner(**cfg, data=data)
  t0 = time.perf_counter()

  def log(msg):
    print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", flush=True)

  command = "python -m experiments.guard.sweep" + (" --quick" if args.quick else "")
  if args.seeds != len(SEEDS) or cnn_lrs != CNN_LRS:
    command += f" --parts {args.parts} --seeds {args.seeds} --cnn-lrs {args.cnn_lrs}"
  path = pathlib.Path(args.json)
  results: dict[str, Any] = {
    "factors": [label(f) for f in FACTORS],
    "cnn_config": cfg,
    "mlp_config": {
      "widths": [64, 128, 128, 10],
      "activation": "relu",
      "epochs": mlp_epochs,
      "batch_size": 32,
      "plateau": {"factor": 0.5, "patience": 5},
    },
    "versions": run_all.versions(),
    "seconds": {},
    "commands": {},
    "seeds": {},
  }
  if args.update and path.exists():
    kept = json.loads(path.read_text())
    results = {k: v for k, v in kept.items() if k not in ("benchmark", "machine")}
  for part in parts:
    t = time.perf_counter()
    if part == "cnn":
      results["cnn"] = cnn_sweep(digits, FACTORS, cnn_lrs, seeds, log=log)
    elif part == "mlp":
      results["mlp"] = mlp_sweep(data, FACTORS, MLP_LRS, seeds, epochs=mlp_epochs, log=log)
    elif part == "binding":
      results["binding"] = cnn_binding(digits, FACTORS, CNN_LRS[0], seeds[0])
      for row in results["binding"]:
        log(f"  binding C={row['factor']}: {100 * row['fraction_of_elements_lowered']:.2f}%")
    else:
      parser.error(f"unknown part {part!r}")
    results["seconds"][part] = round(time.perf_counter() - t, 1)
    results["commands"][part] = command
    results["seeds"][part] = list(seeds)
    # Written after every part, so that a long run keeps what it has measured.
    machine.write_results(path.stem, results, render(results), path.parent)
  return results


def nonfinite(per_seed: list[int | None]) -> str:
  """`` (k/n non-finite)`` when k of the n seeds went non-finite."""
  broken = sum(s is not None for s in per_seed)
  return f" ({broken}/{len(per_seed)} non-finite)" if broken else ""


def _factor_table(rows: list[dict[str, Any]]) -> str:
  """Test accuracy, one line per guard factor and one column per learning rate."""
  rates = sorted({r["learning_rate"] for r in rows})
  cells = {(r["factor"], r["learning_rate"]): r for r in rows}
  names = {"adam": "optax.adam", "inf": "C = inf (exact rule)"}
  body = []
  for factor in dict.fromkeys(r["factor"] for r in rows):
    line = [names.get(factor, f"C = {factor}")]
    for lr in rates:
      r = cells.get((factor, lr))
      if r is None:
        line.append("")
        continue
      spread = f" ± {r['test_accuracy_std']:.4f}" if len(r["test_accuracy_per_seed"]) > 1 else ""
      line.append(
        f"{r['test_accuracy_mean']:.4f}{spread}{nonfinite(r['first_nonfinite_step_per_seed'])}"
      )
    body.append(line)
  return machine.markdown_table(["", *[f"lr {lr:g}" for lr in rates]], body)


def render(results: dict[str, Any]) -> str:
  """Each part's table between ``<!-- part -->`` and ``<!-- /part -->`` lines (docs/algorithm.md
  includes them one by one): how often the guard binds, then test accuracy (mean ± std over the
  seeds) per factor on the CNN and on the MLP."""
  parts = {}
  if "binding" in results:
    headers = ["factor", "elements lowered (mean over steps)", "most in one step"]
    rows = [
      [f"C = {r['factor']}"]
      + [f"{100 * r[k]:.2f}%" for k in ("fraction_of_elements_lowered", "max_fraction_in_one_step")]
      + [f"{100 * r['fraction_of_steps_with_any_lowered']:.0f}%"]
      for r in results["binding"]
    ]
    parts["binding"] = machine.markdown_table([*headers, "steps with any lowered"], rows)
  for part in ("cnn", "mlp"):
    if part in results:
      parts[part] = _factor_table(results[part])
  return "\n\n".join(f"<!-- {k} -->\n{table}\n<!-- /{k} -->" for k, table in parts.items())


if __name__ == "__main__":
  main()
