"""Writes the tables and figures of docs/RESULTS.md from the results dict of run_all.py.

docs/RESULTS.md is written by hand; this module only refills its generated regions,

    <!-- paper-table: NAME -->
    | ... the table of part NAME, its figure and a line naming the results file and command ... |
    <!-- end paper-table -->

with tables of numbers (no verdicts, no sentences) and draws the paper_*.png figures. The prose
around the regions states what the committed results show; after a rerun that changes the
numbers, rewrite it by hand. The paper's numbers are in :data:`PAPER_LM` and :data:`PAPER_IDU`.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
from typing import Any

import numpy as np

from tooling import machine

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "RESULTS.md"  # The hand-written page whose regions are refilled.
COMMAND = "python -m experiments.paper.run_all"
REGION = re.compile(
  r"(<!-- paper-table: (?P<name>\w+) -->\n).*?(<!-- end paper-table -->)", re.DOTALL
)

# The paper's GPT-2 small on OpenWebText table: validation loss.
PAPER_LM = {
  "anon (gamma=1)": 2.937,
  "anon (gamma=1.1)": 2.927,
  "anon (gamma=1.15)": 2.932,
  "adamw": 2.934,
  "lion": 2.992,
  "muon": 3.092,
}
PAPER_LM_NAMES = {"adamw": "Adam(W)", "lion": "Lion", "muon": "Muon"}
# The paper's CIFAR-10 IDU ablation, a_n = 2^(n-1): test accuracy % at beta3 0.1 ... 0.9.
PAPER_IDU = {0.1: 91.76, 0.3: 91.98, 0.5: 92.42, 0.7: 92.43, 0.9: 92.16}


def _table(headers: list[str], rows: list[list[str]]) -> str:
  """Rows of formatted numbers -> a Markdown table (tooling.machine's, without its print)."""
  with contextlib.redirect_stdout(io.StringIO()):
    return machine.print_table(headers, rows)


def _ranks(values) -> np.ndarray:
  order = np.argsort(values, kind="stable")
  ranks = np.empty(len(values), int)
  ranks[order] = np.arange(1, len(values) + 1)
  return ranks


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


# Parts: each returns its table and draws its figure.


def _lm_table(res: dict, fig_dir: pathlib.Path) -> str:
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
  rho = _spearman(paper, ours)
  plt = _plt()
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.3))
  for r in rows:
    ax1.plot(r["eval_steps"], r["val_curve_mean"], marker=".", label=r["label"])
  ax1.set(xlabel="step", ylabel="val loss (nats/char)", title="ours, best lr, mean of seeds")
  ax1.legend(fontsize=7)
  ax2.errorbar(paper, ours, yerr=[r["val_loss_std"] for r in rows], fmt="o", capsize=3)
  for p, o, r in zip(paper, ours, rows):
    ax2.annotate(
      r["label"].replace("anon (gamma=", "g=").rstrip(")"),
      (p, o),
      fontsize=7,
      xytext=(3, 3),
      textcoords="offset points",
    )
  ax2.set(xlabel="paper: OWT val loss", ylabel="ours: char val loss", title=f"rank rho={rho:+.2f}")
  _save(fig, fig_dir / "paper_lm.png")
  headers = ["optimizer", "paper: val loss (OWT)", "paper rank", "ours: val loss", "our rank"]
  return _table(headers + ["best lr", "val loss at each lr of the grid (mean over seeds)"], body)


def _vision_table(res: dict, fig_dir: pathlib.Path) -> str:
  rows = res["rows"]
  names = {"anon": "Anon (gamma=1)", "adam": "Adam", "sgd": "SGD + momentum 0.9"}
  body = [
    [names[r["optimizer"]], f"{r['best_learning_rate']:g}"]
    + [_pm(r["test_accuracy_mean"], r["test_accuracy_std"], 100, 2)]
    + [_pm(r["train_loss_mean"], r["train_loss_std"], 1, 4)]
    + [
      ", ".join(
        f"{g['learning_rate']:g}: {_pm(g['test_accuracy_mean'], g['test_accuracy_std'], 100, 2)}"
        for g in r["grid"]
      )
    ]
    for r in rows
  ]
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5, 3.2))
  for r in rows:
    curve = np.asarray(r["loss_curve_mean"])
    k = res["steps_per_epoch"]
    per_epoch = curve[: len(curve) // k * k].reshape(-1, k).mean(1)
    ax.plot(
      np.arange(1, len(per_epoch) + 1),
      per_epoch,
      label=f"{names[r['optimizer']]} (lr {r['best_learning_rate']:g})",
    )
  ax.set(
    xlabel="epoch",
    ylabel="train loss (batch mean)",
    yscale="log",
    title="digits CNN, best lr, mean of seeds",
  )
  ax.legend(fontsize=7)
  _save(fig, fig_dir / "paper_vision.png")
  headers = ["optimizer", "best lr", "test accuracy % (mean ± std)", "final train loss"]
  return _table(headers + ["test accuracy % at each lr of the grid"], body)


def _idu_table(res: dict, fig_dir: pathlib.Path) -> str:
  ablations = res["ablations"] if "ablations" in res else [res]  # One-lr results JSONs too.
  b3s, bases = ablations[0]["beta3s"], ablations[0]["refresh_bases"]
  paper_vals = [PAPER_IDU.get(b) for b in b3s]
  have_paper = all(v is not None for v in paper_vals)
  body = []
  if have_paper:
    body.append(
      ["paper", "CIFAR-10, 2^(n-1)", *[f"{v:.2f}" for v in paper_vals]]
      + [f"{max(paper_vals) - min(paper_vals):.2f}"]
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
    if have_paper:
      ax2 = ax.twinx()
      ax2.plot(b3s, paper_vals, "k--", marker="s", label="paper (CIFAR-10), 2^(n-1)")
      ax2.set_ylabel("paper CIFAR-10 accuracy %", fontsize=7)
      ax2.legend(fontsize=6, loc="lower right")
  _save(fig, fig_dir / "paper_idu.png")
  return _table(["lr", "a_n", *[f"beta3={b:g}" for b in b3s], "spread (max − min)"], body)


def _gamma_table(res: dict, fig_dir: pathlib.Path) -> str:
  rows, gammas, lrs = res["rows"], res["gammas"], res["learning_rates"]
  loss_grid = np.asarray(res["grid_train_loss_mean"])  # (lrs, gammas)
  acc_grid = np.asarray(res["grid_test_accuracy_mean"])
  body, min_loss = [], []
  for j, r in enumerate(rows):
    col = np.where(np.isfinite(loss_grid[:, j]), loss_grid[:, j], np.inf)
    i = int(np.argmin(col))
    min_loss.append(col[i])
    cells = [f"{r['gamma']:g}", f"{r['learning_rate']:g}"]
    cells += [_pm(r["test_accuracy"], r["test_accuracy_std"], 100, 2), f"{r['train_loss']:.4f}"]
    cells += [f"{col[i]:.4f} ({lrs[i]:g})"]
    body.append([c.replace("nan", "diverged").replace("inf", "diverged") for c in cells])
  accs = [100 * r["test_accuracy"] for r in rows]
  plt = _plt()
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
  a1.errorbar(
    gammas,
    accs,
    yerr=[100 * r["test_accuracy_std"] for r in rows],
    marker="o",
    capsize=3,
    label="best lr per gamma",
  )
  a2.plot(gammas, [r["train_loss"] for r in rows], marker="o", label="at the best-accuracy lr")
  a2.plot(gammas, min_loss, marker="s", label="lowest over the lr grid")
  for i, lr in enumerate(lrs):
    a1.plot(gammas, 100 * acc_grid[i], ls="--", alpha=0.35, label=f"lr={lr:g}")
  a1.set(xlabel="gamma", ylabel="test accuracy %", ylim=(max(0, min(accs) - 10), 100))
  a2.set(xlabel="gamma", ylabel="final train loss", yscale="log")
  a1.legend(fontsize=6)
  a2.legend(fontsize=7)
  _save(fig, fig_dir / "paper_gamma.png")
  headers = ["gamma", "best lr", "test accuracy % (mean ± std)", "train loss at that lr"]
  return _table(headers + ["lowest train loss over the grid (lr)"], body)


def _run_table(results: dict[str, Any]) -> str:
  """Where and when the results were measured, and the wall time of each part."""
  hw = results["hardware"]
  facts = [
    ["mode", results["mode"]],
    ["CPU", f"{hw['cpu']}, {hw['cores']} cores, JAX platform `{hw['platform']}`"],
    ["load average at start / end", f"{hw['load_average_start']} / {hw.get('load_average_end')}"],
    ["software", ", ".join(f"{k} {v}" for k, v in results["versions"].items())],
    ["Python", hw["python"]],
    ["date", results["date"]],
  ]
  facts += [[f"wall time, {k} (s)", f"{v:.0f}"] for k, v in results["seconds"].items()]
  return _table(["", "value"], facts)


PARTS = {"lm": _lm_table, "vision": _vision_table, "idu": _idu_table, "gamma": _gamma_table}
FIGURES = {"lm": "paper_lm.png", "vision": "paper_vision.png", "idu": "paper_idu.png"}
FIGURES["gamma"] = "paper_gamma.png"


def command_line(results: dict[str, Any]) -> str:
  """The command that regenerates these results (the module path of today's checkout)."""
  command = COMMAND + (" --quick" if results["mode"] == "quick" else "")
  if sorted(results["parts"]) != sorted(("lm", "vision", "idu", "gamma")):
    command += " --parts " + ",".join(results["parts"])
  return command


def _relative(path: pathlib.Path, start: pathlib.Path) -> str:
  return pathlib.Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def write(
  results: dict[str, Any], results_md: pathlib.Path, fig_dir: pathlib.Path, json_path: pathlib.Path
) -> pathlib.Path:
  """Draws the figures into ``fig_dir`` and refills the regions of ``results_md`` (a copy of
  docs/RESULTS.md's hand-written page if it does not exist yet); returns its path."""
  results_md, fig_dir = pathlib.Path(results_md), pathlib.Path(fig_dir)
  figures = _relative(fig_dir, results_md.parent)
  try:
    json_shown = _relative(json_path, ROOT)
  except ValueError:  # Another drive (Windows).
    json_shown = str(json_path)
  source = f"<sub>From `{json_shown}`, written by `{command_line(results)}`.</sub>\n"
  bodies = {"run": _run_table(results) + "\n\n" + source}
  for name, render in PARTS.items():
    if name in results:
      table = render(results[name], fig_dir)
      bodies[name] = f"{table}\n\n![{name}]({figures}/{FIGURES[name]})\n\n{source}"

  def refill(match: re.Match) -> str:
    body = bodies.get(match["name"], "Not run in this mode.\n")
    return match.group(1) + body + match.group(3)

  page = (results_md if results_md.exists() else PAGE).read_text()
  results_md.parent.mkdir(parents=True, exist_ok=True)
  results_md.write_text(REGION.sub(refill, page))
  return results_md
