"""Writes docs/RESULTS.md and the paper_*.png figures from the results dict of run_all.py.

The page is ``RESULTS.template.md`` (beside this file): the prose is written by hand there, and
this module fills in what the results determine: the tables, the numbers, and the verdicts. Every
verdict phrase comes from one table, :data:`VERDICTS`, keyed by the statistic it judges, so a rerun
that comes out differently says so and the thresholds are in one place. The paper's numbers are in
:data:`PAPER_LM` and :data:`PAPER_IDU`.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any

import numpy as np

TEMPLATE = pathlib.Path(__file__).resolve().parent / "RESULTS.template.md"
COMMAND = "python -m experiments.paper.run_all"

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

ABOVE = 1e-9  # `x + ABOVE` as a lower bound means "strictly above x".

# Every verdict on the page: for each statistic, (lower bound, phrase) rows; the first row whose
# bound the value reaches gives the phrase ({words} are filled in by the caller).
VERDICTS = {
  # Spearman correlation of our LM ordering with the paper's.
  "rank_correlation": (
    (0.99 + ABOVE, "the same order as the paper"),
    (0.6, "an order close to the paper's"),
    (0.0 + ABOVE, "an order only loosely like the paper's"),
    (-np.inf, "an order unlike the paper's"),
  ),
  # Anon's advantage (positive: Anon better) over the seed spread of the difference.
  "advantage_in_spread": (
    (1.0 + ABOVE, "{better} by more than the seed spread"),
    (-1.0, "within the seed spread{within}"),
    (-np.inf, "{worse} by more than the seed spread"),
  ),
  # 1 when a contender's loss is above both AdamW's and the best Anon's.
  "behind_both": ((1.0, "is"), (-np.inf, "is not")),
  # How many rows selected a learning rate at an end of their grid.
  "rows_at_grid_end": (
    (
      1.0,
      "Selected learning rate at an end of its grid, so a wider search might improve it: {rows}.",
    ),
    (-np.inf, "Every selected learning rate is inside its grid (not at an end)."),
  ),
  # IDU ablation: how many cells collapsed (see COLLAPSE_*), then the span over the seed noise.
  "idu_collapsed_cells": ((1.0, "Not robust: {count} setting(s) collapse or diverge: {cells}."),),
  "idu_span_in_noise": (
    (
      2.0 + ABOVE,
      "Mildly sensitive: no setting collapses, but the spread exceeds twice the seed noise.",
    ),
    (-np.inf, "Robust: no setting is outside about twice the seed noise."),
  ),
  # A rank correlation that the paper's claim predicts to be negative.
  "claim_predicts_negative": ((0.0, "disagrees"), (-np.inf, "agrees")),
}
# A cell "collapses" when its mean accuracy is this far below the best cell: the larger of
# COLLAPSE_POINTS and COLLAPSE_SEED_STDS median seed stds.
COLLAPSE_POINTS, COLLAPSE_SEED_STDS = 5.0, 4.0


def verdict(statistic: str, value: float, **words: str) -> str:
  """The phrase of VERDICTS[statistic] whose lower bound ``value`` meets (inclusive)."""
  for bound, phrase in VERDICTS[statistic]:
    if value >= bound:
      return phrase.format(**words)
  raise ValueError(f"{statistic}: no verdict for {value!r}")


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


def _fmt_time(seconds: float) -> str:
  return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


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


def _advantage_in_spread(advantage: float, spread: float) -> float:
  if spread > 0:
    return advantage / spread
  return 0.0 if advantage == 0 else np.sign(advantage) * np.inf


def _edge_note(rows, label) -> str:
  """Names the rows whose selected learning rate sits at an end of their grid."""
  edge = [
    f"{label(r)} ({'top' if r['best_learning_rate'] == max(r['learning_rates']) else 'bottom'})"
    for r in rows
    if r["best_learning_rate"] in (min(r["learning_rates"]), max(r["learning_rates"]))
  ]
  return "- " + verdict("rows_at_grid_end", len(edge), rows=", ".join(edge))


def _bullets(lines) -> str:
  return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Sections: each returns its template fields and its line of the summary, and draws its figure.
# ----------------------------------------------------------------------------------------------


def _lm_section(res: dict, fig_dir: pathlib.Path) -> tuple[dict, str]:
  rows, cfg = res["rows"], res["config"]
  ours = np.array([r["val_loss_mean"] if np.isfinite(r["val_loss_mean"]) else np.inf for r in rows])
  paper = np.array([PAPER_LM[r["label"]] for r in rows], float)
  our_rank, paper_rank = _ranks(ours), _ranks(paper)
  table = [
    "| optimizer | paper: val loss (OWT) | paper rank | ours: val loss | our rank | best lr "
    "| val loss at each lr of the grid (mean over seeds) |",
    "|---|---|---|---|---|---|---|",
  ]
  for r, pr, orank, p in zip(rows, paper_rank, our_rank, paper):
    grid = ", ".join(
      f"{lr:g}: {m:.4f}" if np.isfinite(m) else f"{lr:g}: diverged"
      for lr, m in zip(r["learning_rates"], r["grid_val_loss_mean"])
    )
    name = r["label"] if r["optimizer"] == "anon" else PAPER_LM_NAMES[r["optimizer"]]
    table.append(
      f"| {name} | {p:.3f} | {pr} | {_pm(r['val_loss_mean'], r['val_loss_std'])} | "
      f"{orank} | {r['best_learning_rate']:g} | {grid} |"
    )
  rho = _spearman(paper, ours)
  by = {r["label"]: r for r in rows}
  anon_rows = [r for r in rows if r["optimizer"] == "anon"]
  best_anon = min(anon_rows, key=lambda r: r["val_loss_mean"])
  adam = by.get("adamw")
  paper_order = [rows[i]["label"] for i in np.argsort(paper)]
  our_order = [rows[i]["label"] for i in np.argsort(ours)]
  notes = [
    f"- Rank correlation (Spearman) between the paper's ordering and ours: **{rho:+.2f}** "
    f"(+1 = same order). Paper order: {' < '.join(paper_order)}; ours: "
    f"{' < '.join(our_order)}."
  ]
  comparison = ""
  if adam:
    diff = best_anon["val_loss_mean"] - adam["val_loss_mean"]
    spread = float(np.hypot(best_anon["val_loss_std"], adam["val_loss_std"]))
    comparison = (
      f"Best Anon ({best_anon['label']}) minus AdamW: {diff:+.4f} nats/char (seed "
      f"spread of the difference ≈ {spread:.4f}): "
      + verdict(
        "advantage_in_spread",
        _advantage_in_spread(-diff, spread),
        better="better than AdamW",
        worse="worse than AdamW",
        within="",
      )
    )
    notes.append(f"- {comparison}. The paper has Anon gamma=1.1 ahead of Adam by 0.007.")
  for other in ("lion", "muon"):
    if other in by and adam:
      behind = by[other]["val_loss_mean"] > max(adam["val_loss_mean"], best_anon["val_loss_mean"])
      notes.append(
        f"- {PAPER_LM_NAMES[other]} {verdict('behind_both', float(behind))} behind "
        f"both AdamW and the best Anon here ({by[other]['val_loss_mean']:.4f}); in the "
        f"paper it is behind both ({PAPER_LM[other]:.3f})."
      )
  order = [r["gamma"] for r in sorted(anon_rows, key=lambda r: r["val_loss_mean"])]
  notes.append(
    "- Anon's gammas, best first: "
    + ", ".join(f"{g:g}" for g in order)
    + " (paper: 1.1, 1.15, 1.0)."
  )
  notes.append(_edge_note(rows, lambda r: r["label"]))
  summary = (
    f"**Language model** (char GPT): {verdict('rank_correlation', rho)} (rank "
    f"correlation {rho:+.2f}; ours, best first: {', '.join(our_order)}; paper: "
    f"{', '.join(paper_order)}). " + (comparison + "." if comparison else "")
  )

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
  fields = dict(
    cfg,
    seeds=len(cfg["seeds"]),
    val_chars_per_seed=8 * cfg["batch_size"] * cfg["context"],
    table="\n".join(table),
    notes=_bullets(notes),
  )
  return fields, summary


def _vision_section(res: dict, cfg: dict, seeds: int, fig_dir: pathlib.Path) -> tuple[dict, str]:
  rows = res["rows"]
  names = {"anon": "Anon (gamma=1)", "adam": "Adam", "sgd": "SGD + momentum 0.9"}
  table = [
    "| optimizer | best lr | test accuracy % (mean ± std) | final train loss | "
    "test accuracy % at each lr of the grid |",
    "|---|---|---|---|---|",
  ]
  for r in rows:
    grid = ", ".join(
      f"{g['learning_rate']:g}: {_pm(g['test_accuracy_mean'], g['test_accuracy_std'], 100, 2)}"
      for g in r["grid"]
    )
    table.append(
      f"| {names[r['optimizer']]} | {r['best_learning_rate']:g} | "
      f"{_pm(r['test_accuracy_mean'], r['test_accuracy_std'], 100, 2)} | "
      f"{_pm(r['train_loss_mean'], r['train_loss_std'], 1, 4)} | {grid} |"
    )
  accs = {r["optimizer"]: r for r in rows}
  notes = []
  if "anon" in accs:
    a = accs["anon"]
    for other in ("adam", "sgd"):
      if other in accs:
        o = accs[other]
        d = 100 * (a["test_accuracy_mean"] - o["test_accuracy_mean"])
        spread = 100 * float(np.hypot(a["test_accuracy_std"], o["test_accuracy_std"]))
        words = verdict(
          "advantage_in_spread",
          _advantage_in_spread(d, spread),
          better="ahead",
          worse="behind",
          within=": these runs do not separate them",
        )
        notes.append(
          f"- Anon minus {names[other]}: {d:+.2f} points of test accuracy (seed spread "
          f"of the difference ≈ {spread:.2f}): {words}."
        )
  summary = "**Vision** (digits CNN): " + " ".join(n[2:] for n in notes) if notes else ""
  notes.append(_edge_note(rows, lambda r: names[r["optimizer"]]))

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
  fields = dict(
    cfg,
    seeds=seeds,
    steps=cfg["epochs"] * res["steps_per_epoch"],
    table="\n".join(table),
    notes=_bullets(notes),
  )
  return fields, summary


def _idu_robustness(ab: dict, bases, b3s) -> tuple[str, str]:
  """One ablation's robustness note (and the same text without the lr, for the summary)."""
  cell = {(c["refresh_base"], c["beta3"]): c for c in ab["cells"]}
  all_means = np.array([100 * c["test_accuracy_mean"] for c in ab["cells"]])
  seed_std = float(np.median([100 * c["test_accuracy_std"] for c in ab["cells"]]))
  span = all_means.max() - all_means.min()
  collapsed = [
    f"{c['refresh_base']}^(n-1)/beta3={c['beta3']:g} ({100 * c['test_accuracy_mean']:.1f}%)"
    for c in ab["cells"]
    if 100 * c["test_accuracy_mean"]
    < all_means.max() - max(COLLAPSE_POINTS, COLLAPSE_SEED_STDS * seed_std)
  ]
  base_spread = {b: np.ptp([100 * cell[(b, x)]["test_accuracy_mean"] for x in b3s]) for b in bases}
  judgement = (
    verdict("idu_collapsed_cells", len(collapsed), count=len(collapsed), cells=", ".join(collapsed))
    if collapsed
    else verdict("idu_span_in_noise", span / seed_std if seed_std > 0 else np.inf)
  )
  text = (
    f"the {len(ab['cells'])} cells span {all_means.min():.2f}–{all_means.max():.2f} "
    f"({span:.2f} points; median seed std of a cell {seed_std:.2f}). Spread across beta3 "
    "per a_n: "
    + ", ".join(f"{b}^(n-1): {v:.2f}" for b, v in base_spread.items())
    + ". "
    + judgement
  )
  return f"- lr {ab['learning_rate']:g}: {text}", text


def _idu_section(res: dict, seeds: int, fig_dir: pathlib.Path) -> tuple[dict, str]:
  ablations = res["ablations"] if "ablations" in res else [res]  # One-lr results JSONs too.
  b3s, bases = ablations[0]["beta3s"], ablations[0]["refresh_bases"]
  paper_vals = [PAPER_IDU.get(b) for b in b3s]
  have_paper = all(v is not None for v in paper_vals)
  lrs = [ab["learning_rate"] for ab in ablations]
  table = [
    "| lr | a_n | " + " | ".join(f"beta3={b:g}" for b in b3s) + " | spread (max − min) |",
    "|---|---|" + "---|" * (len(b3s) + 1),
  ]
  if have_paper:
    table.append(
      "| paper | CIFAR-10, 2^(n-1) | "
      + " | ".join(f"{v:.2f}" for v in paper_vals)
      + f" | {max(paper_vals) - min(paper_vals):.2f} |"
    )
  notes, summaries = [], []
  for ab in ablations:
    cell = {(c["refresh_base"], c["beta3"]): c for c in ab["cells"]}
    lr = ab["learning_rate"]
    for base in bases:
      means = [100 * cell[(base, b)]["test_accuracy_mean"] for b in b3s]
      table.append(
        f"| {lr:g} | ours, digits, {base}^(n-1) | "
        + " | ".join(
          _pm(cell[(base, b)]["test_accuracy_mean"], cell[(base, b)]["test_accuracy_std"], 100, 2)
          for b in b3s
        )
        + f" | {max(means) - min(means):.2f} |"
      )
    note, summary_text = _idu_robustness(ab, bases, b3s)
    notes.append(note)
    summaries.append(summary_text)
    if 2 in bases and have_paper:
      ours2 = [100 * cell[(2, b)]["test_accuracy_mean"] for b in b3s]
      rho = _spearman(paper_vals, ours2)
      notes.append(
        f"- lr {lr:g}, a_n = 2^(n-1) (the paper's row): our best beta3 is "
        f"{b3s[int(np.argmax(ours2))]:g} (paper: {b3s[int(np.argmax(paper_vals))]:g}); "
        f"rank correlation with the paper's row across beta3 {rho:+.2f}; our spread "
        f"{np.ptp(ours2):.2f} points vs the paper's {np.ptp(paper_vals):.2f}."
      )
  summary = (
    f"**IDU ablation** (digits CNN): lr {lrs[0]:g}: {summaries[0]}"
    + (f" At the lower lr: {summaries[-1]}" if len(ablations) > 1 else "")
    + (
      f" The paper (CIFAR-10, a_n = 2^(n-1) only) reports a spread of "
      f"{np.ptp(paper_vals):.2f} points across beta3."
      if have_paper
      else ""
    )
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
  lr_text = f"{lrs[0]:g}" + (
    f") and at {', '.join(f'{x:g}' for x in lrs[1:])} (a third of it, to see whether the "
    "picture depends on the step size"
    if len(lrs) > 1
    else ""
  )
  fields = dict(seeds=seeds, learning_rates=lr_text, table="\n".join(table), notes=_bullets(notes))
  return fields, summary


def _gamma_section(res: dict, seeds: int, fig_dir: pathlib.Path) -> tuple[dict, str]:
  rows, gammas, lrs = res["rows"], res["gammas"], res["learning_rates"]
  loss_grid = np.asarray(res["grid_train_loss_mean"])  # (lrs, gammas)
  acc_grid = np.asarray(res["grid_test_accuracy_mean"])
  table = [
    "| gamma | best lr | test accuracy % (mean ± std) | train loss at that lr | "
    "lowest train loss over the grid (lr) |",
    "|---|---|---|---|---|",
  ]
  min_loss = []
  for j, r in enumerate(rows):
    col = np.where(np.isfinite(loss_grid[:, j]), loss_grid[:, j], np.inf)
    i = int(np.argmin(col))
    min_loss.append(col[i])
    table.append(
      f"| {r['gamma']:g} | {r['learning_rate']:g} | "
      f"{_pm(r['test_accuracy'], r['test_accuracy_std'], 100, 2)} | "
      f"{r['train_loss']:.4f} | {col[i]:.4f} ({lrs[i]:g}) |".replace("nan", "diverged").replace(
        "inf", "diverged"
      )
    )
  accs = [100 * r["test_accuracy"] for r in rows]
  rho_loss = _spearman(gammas, min_loss)
  rho_acc = _spearman(gammas, accs)
  best_gamma = gammas[int(np.argmax(accs))]
  notes = [
    f"- Convergence: rank correlation of gamma with the lowest train loss reached is "
    f"{rho_loss:+.2f} (the paper's claim, larger gamma converges faster, predicts negative).",
    f"- Generalization: rank correlation of gamma with the best test accuracy is {rho_acc:+.2f} "
    f"(the claim, smaller gamma generalizes better, predicts negative). Best accuracy at "
    f"gamma={best_gamma:g}; spread across gammas {max(accs) - min(accs):.2f} points vs a mean "
    f"seed std of {np.mean([100 * r['test_accuracy_std'] for r in rows]):.2f}.",
  ]
  edge = [
    f"{g:g} ({'top' if r['learning_rate'] == max(lrs) else 'bottom'})"
    for g, r in zip(gammas, rows)
    if r["learning_rate"] in (min(lrs), max(lrs))
  ]
  if edge:
    notes.append(
      "- Best lr at an end of the shared grid for gamma "
      + ", ".join(edge)
      + ": those points are limited by the grid, which colours both correlations."
    )
  summary = (
    f"**Adaptivity (gamma)**: faster convergence with larger gamma "
    f"{verdict('claim_predicts_negative', rho_loss)} with the paper (rank correlation "
    f"{rho_loss:+.2f}); better generalization with smaller gamma "
    f"{verdict('claim_predicts_negative', rho_acc)} (rank correlation {rho_acc:+.2f}; "
    f"best accuracy at gamma={best_gamma:g})."
  )

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
  fields = dict(
    lanes=seeds * len(lrs) * len(gammas),
    seconds=res["seconds"],
    hidden=res["hidden"],
    epochs=res["epochs"],
    batch_size=res["batch_size"],
    learning_rates=", ".join(f"{x:g}" for x in lrs),
    table="\n".join(table),
    notes=_bullets(notes),
  )
  return fields, summary


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------


def _template() -> tuple[str, dict[str, str]]:
  """The page's frame and its section templates (after `<!-- section: name -->` markers)."""
  parts = re.split(r"^<!-- section: (\w+) -->\n", TEMPLATE.read_text(), flags=re.M)
  return parts[0].rstrip("\n") + "\n", dict(zip(parts[1::2], parts[2::2]))


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
  """Draws the figures into ``fig_dir`` and writes the page to ``results_md``; returns its path."""
  results_md, fig_dir = pathlib.Path(results_md), pathlib.Path(fig_dir)
  frame, section_templates = _template()
  cfg, hw, sec = results["config"], results["hardware"], results["seconds"]
  seeds = cfg["seeds"]
  figures = _relative(fig_dir, results_md.parent)
  built = []
  if "lm" in results:
    built.append(("lm", *_lm_section(results["lm"], fig_dir)))
  if "vision" in results:
    built.append(("vision", *_vision_section(results["vision"], cfg["vision"], seeds, fig_dir)))
  if "idu" in results:
    built.append(("idu", *_idu_section(results["idu"], seeds, fig_dir)))
  if "gamma" in results:
    built.append(("gamma", *_gamma_section(results["gamma"], seeds, fig_dir)))
  sections = "\n".join(
    section_templates[name].format(figures=figures, **fields) for name, fields, _ in built
  )
  try:
    json_shown = _relative(json_path, TEMPLATE.parents[2])
  except ValueError:  # Another drive (Windows).
    json_shown = str(json_path)
  page = frame.format(
    command=command_line(results),
    mode=results["mode"],
    json_path=json_shown,
    cpu=hw["cpu"],
    cores=hw["cores"],
    platform=hw["platform"],
    load_start=hw["load_average_start"],
    load_end=hw.get("load_average_end"),
    software=", ".join(f"{k} {v}" for k, v in results["versions"].items())
    + f", Python {hw['python']}",
    date=results["date"],
    wall_time="; ".join(f"{k} {_fmt_time(v)}" for k, v in sec.items()),
    summary="\n".join(f"- {line}" for _, _, line in built if line),
    sections=sections.rstrip("\n"),
  )
  results_md.parent.mkdir(parents=True, exist_ok=True)
  results_md.write_text(page)
  return results_md
