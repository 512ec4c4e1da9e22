"""The paper's claims at small scale: its results file, its Markdown tables and its figures.

Run from the repository root (or with the repository root on ``PYTHONPATH``)::

    python -m experiments.paper.run_all               # full default run (<= 45 min, 2-core CPU)
    python -m experiments.paper.run_all --parts lm    # one part only (lm, vision, idu, gamma)
    python -m experiments.paper.run_all --quick --json /tmp/x/paper.json --figures-dir /tmp/x
    python -m experiments.paper.run_all --render experiments/paper/results/paper.json
                                                      # its tables and figures only

Writes ``experiments/paper/results/paper[_quick].json``, its tables beside it (``paper.md``, which
docs/RESULTS.md includes part by part) and ``experiments/paper/figures/paper_*.png``.

Parts (see lm.py and vision.py): the char-GPT language-model table (Anon gamma 1.0/1.1/1.15 vs
AdamW, Lion, Muon), Anon vs Adam vs SGD on the digits CNN, the IDU ablation (beta3 x refresh_base)
and the adaptivity curve (gamma from -0.5 to 1.5). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import sys
import time
from typing import Any

import numpy as np

from experiments.paper import lm
from experiments.paper import vision
from tooling import machine

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PARTS = ("lm", "vision", "idu", "gamma")

LM_DEFAULT = dict(steps=300, batch_size=16, context=64, width=64, layers=2, heads=4, evals=4)
LM_QUICK = dict(steps=16, batch_size=4, context=16, width=16, layers=1, heads=2, evals=2)
CONFIGS = {
  "default": {
    "seeds": 3,
    "lm": {**LM_DEFAULT, "max_chars": None},
    "vision": {"width": 8, "hidden": 32, "epochs": 10, "batch_size": 64},
    "idu": {
      "beta3s": (0.1, 0.3, 0.5, 0.7, 0.9),
      "refresh_bases": (2, 3, 4),
      "lr_factors": (1, 1 / 3),
    },
    "gamma": {"gammas": vision.SWEEP_GAMMAS, "lrs": vision.SWEEP_LRS, "hidden": 128, "epochs": 20},
  },
  "quick": {
    "seeds": 2,
    "lm": {**LM_QUICK, "max_chars": 100_000},
    "vision": {"width": 4, "hidden": 16, "epochs": 1, "batch_size": 64},
    "idu": {"beta3s": (0.1, 0.5, 0.9), "refresh_bases": (2, 3, 4), "lr_factors": (1,)},
    "gamma": {"gammas": (-0.5, 0.5, 1.5), "lrs": (1e-2, 1e-1), "hidden": 16, "epochs": 1},
  },
}


def versions() -> dict:
  names = ("jax", "optax", "flax", "anon_optax")
  return {name: importlib.import_module(name).__version__ for name in names}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="tiny sizes, a few minutes (CI)")
  parser.add_argument("--figures-dir", default=str(HERE / "figures"), help="paper_*.png go here")
  parser.add_argument("--json", default=None, help="default results/paper[_quick].json")
  parser.add_argument("--parts", default=",".join(PARTS), help="subset of " + ",".join(PARTS))
  parser.add_argument("--render", metavar="JSON", help="only redraw JSON's table and figures")
  args = parser.parse_args(argv)
  if args.render:
    results = json.loads(pathlib.Path(args.render).read_text())
    draw_figures(results, pathlib.Path(args.figures_dir))
    machine.render_results(args.render, render)
    return results

  mode = "quick" if args.quick else "default"
  cfg = CONFIGS[mode]
  parts = [p.strip() for p in args.parts.split(",") if p.strip()]
  for p in parts:
    if p not in PARTS:
      parser.error(f"unknown part {p!r}")
  json_path = pathlib.Path(
    args.json or HERE / "results" / f"paper{'_quick' if args.quick else ''}.json"
  )
  seeds = list(range(cfg["seeds"]))

  def log(msg: str) -> None:
    print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

  t0 = time.perf_counter()
  results: dict[str, Any] = {
    "mode": mode,
    "config": cfg,
    "parts": parts,
    "versions": versions(),
    "load_average_start": [round(x, 2) for x in os.getloadavg()],
    "seconds": {},
  }
  log(f"paper benchmarks, mode={mode}, parts={parts}")
  runner = None
  if "vision" in parts or "idu" in parts:
    runner = vision.DigitsRunner(**cfg["vision"])
  if "vision" in parts:
    log("vision: Anon vs Adam vs SGD+momentum on digits")
    t = time.perf_counter()
    results["vision"] = vision.compare(runner, seeds, log=log)
    results["seconds"]["vision"] = round(time.perf_counter() - t, 1)
  if "idu" in parts:
    lr = vision.LR_GRIDS["anon"][1]
    if "vision" in results:  # The ablation runs at Anon's selected learning rate, and a third.
      (lr,) = [
        r["best_learning_rate"] for r in results["vision"]["rows"] if r["optimizer"] == "anon"
      ]
    t = time.perf_counter()
    grid = {k: cfg["idu"][k] for k in ("beta3s", "refresh_bases")}
    lrs = [float(f"{lr * f:.2g}") for f in cfg["idu"]["lr_factors"]]
    ablations = [vision.idu_ablation(runner, seeds, lr, log=log, **grid) for lr in lrs]
    results["idu"] = {"ablations": ablations}
    results["seconds"]["idu"] = round(time.perf_counter() - t, 1)
  if "gamma" in parts:
    log("adaptivity curve (vmapped gamma sweep)")
    t = time.perf_counter()
    g = cfg["gamma"]
    results["gamma"] = vision.adaptivity(
      seeds, g["gammas"], g["lrs"], hidden=g["hidden"], epochs=g["epochs"], log=log
    )
    results["seconds"]["gamma"] = round(time.perf_counter() - t, 1)
  if "lm" in parts:
    log("language model: char GPT, 6 contenders x 3 LRs x seeds")
    t = time.perf_counter()
    results["lm"] = lm.run(cfg["lm"], seeds, log=log)
    results["seconds"]["lm"] = round(time.perf_counter() - t, 1)
  results["seconds"]["total"] = round(time.perf_counter() - t0, 1)
  results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
  results = json.loads(json.dumps(results, default=float))  # NumPy scalars -> numbers.
  draw_figures(results, pathlib.Path(args.figures_dir))
  machine.write_results(json_path.stem, results, render(results), json_path.parent)
  return results


# The paper's GPT-2 small on OpenWebText table: validation loss.
PAPER_LM = dict(
  zip(
    (*(f"anon (gamma={g})" for g in ("1", "1.1", "1.15")), "adamw", "lion", "muon"),
    (2.937, 2.927, 2.932, 2.934, 2.992, 3.092),
  )
)
PAPER_LM_NAMES = {"adamw": "Adam(W)", "lion": "Lion", "muon": "Muon"}
# The paper's CIFAR-10 IDU ablation, a_n = 2^(n-1): test accuracy % at beta3 0.1 ... 0.9.
PAPER_IDU = {0.1: 91.76, 0.3: 91.98, 0.5: 92.42, 0.7: 92.43, 0.9: 92.16}


def _ranks(values) -> np.ndarray:
  return np.argsort(np.argsort(values, kind="stable"), kind="stable") + 1


def _spearman(a, b) -> float:
  ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
  if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
    return float("nan")
  return float(np.corrcoef(ra, rb)[0, 1])


def _pm(mean, std, scale=1.0, digits=4) -> str:
  if not np.isfinite(mean):
    return "diverged"
  return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def _plt():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _save(fig, path: pathlib.Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=72)
  _plt().close(fig)


# Each part: its table (Markdown) and its figure.


def _lm_table(res: dict) -> str:
  rows = res["rows"]
  ours = np.array([r["val_loss_mean"] if np.isfinite(r["val_loss_mean"]) else np.inf for r in rows])
  paper = np.array([PAPER_LM[r["label"]] for r in rows], float)
  body = []
  for r, pr, orank, p in zip(rows, _ranks(paper), _ranks(ours), paper):
    grid = ", ".join(
      f"{lr:g}: {m:.4f}" if np.isfinite(m) else f"{lr:g}: diverged"
      for lr, m in zip(r["learning_rates"], r["grid_val_loss_mean"])
    )
    name = r["label"] if r["optimizer"] == "anon" else PAPER_LM_NAMES[r["optimizer"]]
    body.append(
      [name, f"{p:.3f}", str(pr), _pm(r["val_loss_mean"], r["val_loss_std"]), str(orank)]
      + [f"{r['best_learning_rate']:g}", grid]
    )
  headers = ["optimizer", "paper: val loss (OWT)", "paper rank", "ours: val loss", "our rank"]
  headers += ["best lr", "val loss at each lr of the grid (mean over seeds)"]
  return machine.markdown_table(headers, body)


def _lm_figure(res: dict, path: pathlib.Path) -> None:
  rows = res["rows"]
  ours = [r["val_loss_mean"] for r in rows]
  paper = [PAPER_LM[r["label"]] for r in rows]
  plt = _plt()
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.3))
  for r in rows:
    ax1.plot(r["eval_steps"], r["val_curve_mean"], marker=".", label=r["label"])
  ax1.set(xlabel="step", ylabel="val loss (nats/char)", title="ours, best lr, mean of seeds")
  ax1.legend(fontsize=7)
  ax2.errorbar(paper, ours, yerr=[r["val_loss_std"] for r in rows], fmt="o", capsize=3)
  for p, o, r in zip(paper, ours, rows):
    name = r["label"].replace("anon (gamma=", "g=").rstrip(")")
    ax2.annotate(name, (p, o), fontsize=7, xytext=(3, 3), textcoords="offset points")
  rho = _spearman(paper, [o if np.isfinite(o) else np.inf for o in ours])
  ax2.set(xlabel="paper: OWT val loss", ylabel="ours: char val loss", title=f"rank rho={rho:+.2f}")
  _save(fig, path)


VISION_NAMES = {"anon": "Anon (gamma=1)", "adam": "Adam", "sgd": "SGD + momentum 0.9"}


def _vision_table(res: dict) -> str:
  body = [
    [VISION_NAMES[r["optimizer"]], f"{r['best_learning_rate']:g}"]
    + [_pm(r["test_accuracy_mean"], r["test_accuracy_std"], 100, 2)]
    + [_pm(r["train_loss_mean"], r["train_loss_std"], 1, 4)]
    + [
      ", ".join(
        f"{g['learning_rate']:g}: {_pm(g['test_accuracy_mean'], g['test_accuracy_std'], 100, 2)}"
        for g in r["grid"]
      )
    ]
    for r in res["rows"]
  ]
  headers = ["optimizer", "best lr", "test accuracy % (mean ± std)", "final train loss"]
  return machine.markdown_table(headers + ["test accuracy % at each lr of the grid"], body)


def _vision_figure(res: dict, path: pathlib.Path) -> None:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5, 3.2))
  for r in res["rows"]:
    curve, k = np.asarray(r["loss_curve_mean"]), res["steps_per_epoch"]
    per_epoch = curve[: len(curve) // k * k].reshape(-1, k).mean(1)
    label = f"{VISION_NAMES[r['optimizer']]} (lr {r['best_learning_rate']:g})"
    ax.plot(np.arange(1, len(per_epoch) + 1), per_epoch, label=label)
  ax.set(xlabel="epoch", ylabel="train loss (batch mean)", yscale="log")
  ax.set(title="digits CNN, best lr, mean of seeds")
  ax.legend(fontsize=7)
  _save(fig, path)


def _idu_table(res: dict) -> str:
  ablations = res["ablations"]
  b3s, bases = ablations[0]["beta3s"], ablations[0]["refresh_bases"]
  paper = [PAPER_IDU.get(b) for b in b3s]
  body = []
  if all(v is not None for v in paper):
    body.append(
      ["paper", "CIFAR-10, 2^(n-1)", *[f"{v:.2f}" for v in paper], f"{max(paper) - min(paper):.2f}"]
    )
  for ab in ablations:
    cell = {(c["refresh_base"], c["beta3"]): c for c in ab["cells"]}
    for base in bases:
      row = [cell[(base, b)] for b in b3s]
      means = [100 * c["test_accuracy_mean"] for c in row]
      body.append(
        [f"{ab['learning_rate']:g}", f"ours, digits, {base}^(n-1)"]
        + [_pm(c["test_accuracy_mean"], c["test_accuracy_std"], 100, 2) for c in row]
        + [f"{max(means) - min(means):.2f}"]
      )
  headers = ["lr", "a_n", *[f"beta3={b:g}" for b in b3s], "spread (max − min)"]
  return machine.markdown_table(headers, body)


def _idu_figure(res: dict, path: pathlib.Path) -> None:
  ablations = res["ablations"]
  b3s, bases = ablations[0]["beta3s"], ablations[0]["refresh_bases"]
  paper = [PAPER_IDU.get(b) for b in b3s]
  plt = _plt()
  fig, axes = plt.subplots(1, len(ablations), figsize=(4.6 * len(ablations), 3.2), squeeze=False)
  for ax, ab in zip(axes[0], ablations):
    cell = {(c["refresh_base"], c["beta3"]): c for c in ab["cells"]}
    for base in bases:
      ax.errorbar(
        b3s,
        [100 * cell[(base, b)]["test_accuracy_mean"] for b in b3s],
        yerr=[100 * cell[(base, b)]["test_accuracy_std"] for b in b3s],
        marker="o",
        capsize=3,
        label=f"ours (digits), a_n={base}^(n-1)",
      )
    ax.set(xlabel="beta3", ylabel="digits test accuracy %", title=f"lr {ab['learning_rate']:g}")
    ax.legend(fontsize=6, loc="lower left")
    if all(v is not None for v in paper):
      ax2 = ax.twinx()
      ax2.plot(b3s, paper, "k--", marker="s", label="paper (CIFAR-10), 2^(n-1)")
      ax2.set_ylabel("paper CIFAR-10 accuracy %", fontsize=7)
      ax2.legend(fontsize=6, loc="lower right")
  _save(fig, path)


def _lowest_train_loss(res: dict) -> tuple[np.ndarray, np.ndarray]:
  """Per gamma: the lowest final train loss over the learning-rate grid, and its grid index."""
  grid = np.asarray(res["grid_train_loss_mean"])  # (lrs, gammas)
  grid = np.where(np.isfinite(grid), grid, np.inf)
  best = grid.argmin(0)
  return grid[best, np.arange(grid.shape[1])], best


def _gamma_table(res: dict) -> str:
  lowest, at = _lowest_train_loss(res)
  body = []
  for r, loss, i in zip(res["rows"], lowest, at):
    cells = [f"{r['gamma']:g}", f"{r['learning_rate']:g}"]
    cells += [_pm(r["test_accuracy"], r["test_accuracy_std"], 100, 2), f"{r['train_loss']:.4f}"]
    cells += [f"{loss:.4f} ({res['learning_rates'][i]:g})"]
    body.append([c.replace("nan", "diverged").replace("inf", "diverged") for c in cells])
  headers = ["gamma", "best lr", "test accuracy % (mean ± std)", "train loss at that lr"]
  return machine.markdown_table(headers + ["lowest train loss over the grid (lr)"], body)


def _gamma_figure(res: dict, path: pathlib.Path) -> None:
  rows, gammas = res["rows"], res["gammas"]
  accs = [100 * r["test_accuracy"] for r in rows]
  plt = _plt()
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
  yerr = [100 * r["test_accuracy_std"] for r in rows]
  a1.errorbar(gammas, accs, yerr=yerr, marker="o", capsize=3, label="best lr per gamma")
  a2.plot(gammas, [r["train_loss"] for r in rows], marker="o", label="at the best-accuracy lr")
  a2.plot(gammas, _lowest_train_loss(res)[0], marker="s", label="lowest over the lr grid")
  for i, lr in enumerate(res["learning_rates"]):
    grid = 100 * np.asarray(res["grid_test_accuracy_mean"][i])
    a1.plot(gammas, grid, ls="--", alpha=0.35, label=f"lr={lr:g}")
  a1.set(xlabel="gamma", ylabel="test accuracy %", ylim=(max(0, min(accs) - 10), 100))
  a2.set(xlabel="gamma", ylabel="final train loss", yscale="log")
  a1.legend(fontsize=6)
  a2.legend(fontsize=7)
  _save(fig, path)


FIGURES = {"lm": _lm_figure, "vision": _vision_figure, "idu": _idu_figure, "gamma": _gamma_figure}


def _run_table(results: dict[str, Any]) -> str:
  """Where and when the results were measured, and the wall time of each part."""
  hw = results.get("hardware", {})  # Files written before write_results: their own machine info.
  start = hw.get("load_average_start", results.get("load_average_start"))
  end = hw.get("load_average_end", results.get("load_average_end"))
  facts = [
    ["mode", results["mode"]],
    ["load average at start / end", f"{start} / {end}"],
    ["software", ", ".join(f"{k} {v}" for k, v in results["versions"].items())],
  ]
  facts += [[f"wall time, {k} (s)", f"{v:.0f}"] for k, v in results["seconds"].items()]
  return machine.markdown_table(["", "value"], facts)


TABLES = {"lm": _lm_table, "vision": _vision_table, "idu": _idu_table, "gamma": _gamma_table}


def render(results: dict[str, Any], figures: str = "../figures") -> str:
  """The run table, then each part's table and figure between ``<!-- part -->`` and
  ``<!-- /part -->`` lines (docs/RESULTS.md includes the parts one by one)."""
  text = _run_table(results)
  for name, table in TABLES.items():
    if name in results:
      text += f"\n\n<!-- {name} -->\n{table(results[name])}\n\n"
      text += f"![{name}]({figures}/paper_{name}.png)\n<!-- /{name} -->"
  return text


def draw_figures(results: dict[str, Any], fig_dir: pathlib.Path) -> None:
  """Draws ``paper_<part>.png`` for every part in ``results``."""
  for name, draw in FIGURES.items():
    if name in results:
      draw(results[name], fig_dir / f"paper_{name}.png")


if __name__ == "__main__":
  main()
