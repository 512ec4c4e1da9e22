"""Writes docs/RESULTS.md and docs/figures/paper_*.png from the results dict of run_all.py.

Every sentence about agreement with the paper is computed from the numbers (so a rerun that comes
out differently says so), against the numbers in the Anon paper (arXiv 2605.02317).
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

# The Anon paper's table: GPT-2 small on OpenWebText, validation loss.
PAPER_LM = {"anon (gamma=1)": 2.937, "anon (gamma=1.1)": 2.927, "anon (gamma=1.15)": 2.932,
            "adamw": 2.934, "lion": 2.992, "muon": 3.092}
PAPER_LM_NAMES = {"adamw": "Adam(W)", "lion": "Lion", "muon": "Muon"}
# The Anon paper's table: CIFAR-10 IDU ablation, a_n = 2^(n-1), test accuracy % at beta3 0.1 ... 0.9.
PAPER_IDU = {0.1: 91.76, 0.3: 91.98, 0.5: 92.42, 0.7: 92.43, 0.9: 92.16}


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


def _edge_note(rows, label) -> list[str]:
  """A note naming the rows whose selected learning rate sits at an end of their grid."""
  edge = [f"{label(r)} ({'top' if r['best_learning_rate'] == max(r['learning_rates']) else 'bottom'})"
          for r in rows if r["best_learning_rate"] in (min(r["learning_rates"]),
                                                       max(r["learning_rates"]))]
  if not edge:
    return ["- Every selected learning rate is inside its grid (not at an end)."]
  return ["- Selected learning rate at an end of its grid, so a wider search might improve it: "
          + ", ".join(edge) + "."]


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


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


def _lm_section(res: dict, fig_dir: pathlib.Path, summary: list[str]) -> list[str]:
  rows, cfg = res["rows"], res["config"]
  ours = np.array([r["val_loss_mean"] if np.isfinite(r["val_loss_mean"]) else np.inf
                   for r in rows])
  paper = np.array([PAPER_LM[r["label"]] for r in rows], float)
  our_rank, paper_rank = _ranks(ours), _ranks(paper)
  n_seeds = len(cfg["seeds"])
  out = [
      "## 1. Language model: char-level GPT (the paper's GPT-2 / OpenWebText table in miniature)",
      "",
      f"`examples/char_gpt.py`'s GPT ({cfg['layers']} layers, width {cfg['width']}, "
      f"{cfg['heads']} heads, context {cfg['context']}, vocabulary {cfg['vocab']}) on "
      f"{cfg['corpus']} ({cfg['train_chars']:,} train / {cfg['val_chars']:,} validation "
      f"characters). Every optimizer: {cfg['steps']} steps of batch {cfg['batch_size']}, the "
      "same warmup-cosine schedule shape (5% warmup, decay to 10% of peak), decoupled weight "
      "decay 0.1, the same init and batches per seed. Learning-rate search: 3 peak values per "
      "optimizer (a factor-2 grid around the rate `char_gpt.py` tuned once); the best by mean "
      f"validation loss over {n_seeds} seeds is reported, mean ± std over seeds (validation loss "
      f"in nats/char, {8 * cfg['batch_size'] * cfg['context']:,} held-out characters per seed). "
      "Lower is better. The paper's numbers are GPT-2 small on OpenWebText (tokens, not "
      "characters), so compare rankings, not values.",
      "",
      "| optimizer | paper: val loss (OWT) | paper rank | ours: val loss | our rank | best lr "
      "| val loss at each lr of the grid (mean over seeds) |",
      "|---|---|---|---|---|---|---|",
  ]
  for r, pr, orank, p in zip(rows, paper_rank, our_rank, paper):
    grid = ", ".join(f"{lr:g}: {m:.4f}" if np.isfinite(m) else f"{lr:g}: diverged"
                     for lr, m in zip(r["learning_rates"], r["grid_val_loss_mean"]))
    name = r["label"] if r["optimizer"] == "anon" else PAPER_LM_NAMES[r["optimizer"]]
    out.append(f"| {name} | {p:.3f} | {pr} | {_pm(r['val_loss_mean'], r['val_loss_std'])} | "
               f"{orank} | {r['best_learning_rate']:g} | {grid} |")
  rho = _spearman(paper, ours)
  by = {r["label"]: r for r in rows}
  anon_rows = [r for r in rows if r["optimizer"] == "anon"]
  best_anon = min(anon_rows, key=lambda r: r["val_loss_mean"])
  adam = by.get("adamw")
  notes = [f"- Rank correlation (Spearman) between the paper's ordering and ours: **{rho:+.2f}** "
           f"(+1 = same order). Paper order: "
           + " < ".join(rows[i]["label"] for i in np.argsort(paper))
           + "; ours: " + " < ".join(rows[i]["label"] for i in np.argsort(ours)) + "."]
  if adam:
    diff = best_anon["val_loss_mean"] - adam["val_loss_mean"]
    noise = float(np.hypot(best_anon["val_loss_std"], adam["val_loss_std"]))
    verdict = ("within the seed spread" if abs(diff) <= noise else
               ("better than AdamW by more than the seed spread" if diff < 0 else
                "worse than AdamW by more than the seed spread"))
    notes.append(f"- Best Anon ({best_anon['label']}) minus AdamW: {diff:+.4f} nats/char "
                 f"(seed spread of the difference ≈ {noise:.4f}): {verdict}. The paper has "
                 f"Anon gamma=1.1 ahead of Adam by 0.007.")
  for other in ("lion", "muon"):
    if other in by and adam:
      worse = by[other]["val_loss_mean"] > max(adam["val_loss_mean"], best_anon["val_loss_mean"])
      notes.append(f"- {PAPER_LM_NAMES[other]} {'is' if worse else 'is not'} behind both AdamW and "
                   f"the best Anon here ({by[other]['val_loss_mean']:.4f}); in the paper it is "
                   f"behind both ({PAPER_LM[other]:.3f}).")
  order = [r["gamma"] for r in sorted(anon_rows, key=lambda r: r["val_loss_mean"])]
  notes.append("- Anon's gammas, best first: " + ", ".join(f"{g:g}" for g in order)
               + " (paper: 1.1, 1.15, 1.0).")
  notes += _edge_note(rows, lambda r: r["label"])
  lm_verdict = ("the same order as the paper" if rho > 0.99 else
                "an order close to the paper's" if rho >= 0.6 else
                "an order only loosely like the paper's" if rho > 0 else
                "an order unlike the paper's")
  summary.append(f"**Language model** (char GPT): {lm_verdict} (rank correlation {rho:+.2f}; "
                 "ours, best first: " + ", ".join(rows[i]["label"] for i in np.argsort(ours))
                 + "; paper: " + ", ".join(rows[i]["label"] for i in np.argsort(paper)) + "). "
                 + notes[1][2:].split(". The paper")[0] + ".")
  out += ["", *notes, "", "![LM validation loss](figures/paper_lm.png)", ""]

  plt = _plt()
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.3))
  for r in rows:
    ax1.plot(r["eval_steps"], r["val_curve_mean"], marker=".", label=r["label"])
  ax1.set(xlabel="step", ylabel="val loss (nats/char)", title="ours, best lr, mean of seeds")
  ax1.legend(fontsize=7)
  ax2.errorbar(paper, ours, yerr=[r["val_loss_std"] for r in rows], fmt="o", capsize=3)
  for p, o, r in zip(paper, ours, rows):
    ax2.annotate(r["label"].replace("anon (gamma=", "g=").rstrip(")"), (p, o), fontsize=7,
                 xytext=(3, 3), textcoords="offset points")
  ax2.set(xlabel="paper: OWT val loss", ylabel="ours: char val loss", title=f"rank rho={rho:+.2f}")
  _save(fig, fig_dir / "paper_lm.png")
  return out


def _vision_section(res: dict, cfg: dict, seeds: int, fig_dir: pathlib.Path,
                    summary: list[str]) -> list[str]:
  rows = res["rows"]
  steps = cfg["epochs"] * res["steps_per_epoch"]
  names = {"anon": "Anon (gamma=1)", "adam": "Adam", "sgd": "SGD + momentum 0.9"}
  out = [
      "## 2. Vision: Anon vs Adam vs SGD with momentum (digits CNN)",
      "",
      f"`examples/digits_cnn.py`'s CNN (conv width {cfg['width']}, dense {cfg['hidden']}) on "
      f"scikit-learn's 8x8 digits (1347 train / 450 test images, fixed split), {cfg['epochs']} "
      f"epochs of batch {cfg['batch_size']} ({steps} steps), no weight decay, no schedule. "
      f"3 learning rates per optimizer, {seeds} seeds each; the best by mean test accuracy is "
      "shown (the digits data have no separate validation split, so the selection uses the test "
      "set for every optimizer alike: an optimistic number, equally so for all). CIFAR-10 was "
      "not run: its data are not present on this machine and nothing is downloaded.",
      "",
      "| optimizer | best lr | test accuracy % (mean ± std) | final train loss | "
      "test accuracy % at each lr of the grid |",
      "|---|---|---|---|---|",
  ]
  for r in rows:
    grid = ", ".join(f"{g['learning_rate']:g}: {_pm(g['test_accuracy_mean'], g['test_accuracy_std'], 100, 2)}"
                     for g in r["grid"])
    out.append(f"| {names[r['optimizer']]} | {r['best_learning_rate']:g} | "
               f"{_pm(r['test_accuracy_mean'], r['test_accuracy_std'], 100, 2)} | "
               f"{_pm(r['train_loss_mean'], r['train_loss_std'], 1, 4)} | {grid} |")
  accs = {r["optimizer"]: r for r in rows}
  notes = []
  if "anon" in accs:
    a = accs["anon"]
    for other in ("adam", "sgd"):
      if other in accs:
        o = accs[other]
        d = 100 * (a["test_accuracy_mean"] - o["test_accuracy_mean"])
        noise = 100 * float(np.hypot(a["test_accuracy_std"], o["test_accuracy_std"]))
        verdict = ("within the seed spread: these runs do not separate them" if abs(d) <= noise
                   else ("ahead by more than the seed spread" if d > 0 else
                         "behind by more than the seed spread"))
        notes.append(f"- Anon minus {names[other]}: {d:+.2f} points of test accuracy (seed spread "
                     f"of the difference ≈ {noise:.2f}): {verdict}.")
  if notes:
    summary.append("**Vision** (digits CNN): " + " ".join(n[2:] for n in notes))
  notes += _edge_note(rows, lambda r: names[r["optimizer"]])
  out += ["", *notes, "", "![digits training curves](figures/paper_vision.png)", ""]

  plt = _plt()
  fig, ax = plt.subplots(figsize=(5, 3.2))
  for r in rows:
    curve = np.asarray(r["loss_curve_mean"])
    k = res["steps_per_epoch"]
    per_epoch = curve[: len(curve) // k * k].reshape(-1, k).mean(1)
    ax.plot(np.arange(1, len(per_epoch) + 1), per_epoch,
            label=f"{names[r['optimizer']]} (lr {r['best_learning_rate']:g})")
  ax.set(xlabel="epoch", ylabel="train loss (batch mean)", yscale="log",
         title="digits CNN, best lr, mean of seeds")
  ax.legend(fontsize=7)
  _save(fig, fig_dir / "paper_vision.png")
  return out


def _idu_section(res: dict, seeds: int, fig_dir: pathlib.Path, summary: list[str]) -> list[str]:
  ablations = res["ablations"] if "ablations" in res else [res]  # One-lr results JSONs too.
  b3s, bases = ablations[0]["beta3s"], ablations[0]["refresh_bases"]
  paper_vals = [PAPER_IDU.get(b) for b in b3s]
  have_paper = all(v is not None for v in paper_vals)
  lrs = [ab["learning_rate"] for ab in ablations]
  out = [
      "## 3. IDU ablation: beta3 x refresh sequence a_n (the paper's CIFAR-10 table in miniature)",
      "",
      f"Anon, gamma=1, same model and budget as section 2, at the learning rate selected there "
      f"({lrs[0]:g})" + (f" and at {', '.join(f'{x:g}' for x in lrs[1:])} (a third of it, to see "
                         "whether the picture depends on the step size)" if len(lrs) > 1 else "")
      + f"; test accuracy %, mean ± std over {seeds} seeds. The paper's row is CIFAR-10 (a "
      "different data set and model: compare the shape across beta3 and the robustness, not the "
      "level). a_n = base^(n-1) means the preconditioner is refreshed at steps 1, base, base², …",
      "",
      "| lr | a_n | " + " | ".join(f"beta3={b:g}" for b in b3s) + " | spread (max − min) |",
      "|---|---|" + "---|" * (len(b3s) + 1),
  ]
  if have_paper:
    out.append("| paper | CIFAR-10, 2^(n-1) | " + " | ".join(f"{v:.2f}" for v in paper_vals)
               + f" | {max(paper_vals) - min(paper_vals):.2f} |")
  notes, first_summary = [], None
  for ab in ablations:
    cell = {(c["refresh_base"], c["beta3"]): c for c in ab["cells"]}
    lr = ab["learning_rate"]
    for base in bases:
      means = [100 * cell[(base, b)]["test_accuracy_mean"] for b in b3s]
      out.append(f"| {lr:g} | ours, digits, {base}^(n-1) | "
                 + " | ".join(_pm(cell[(base, b)]["test_accuracy_mean"],
                                  cell[(base, b)]["test_accuracy_std"], 100, 2) for b in b3s)
                 + f" | {max(means) - min(means):.2f} |")
    all_means = np.array([100 * c["test_accuracy_mean"] for c in ab["cells"]])
    seed_std = float(np.median([100 * c["test_accuracy_std"] for c in ab["cells"]]))
    span = all_means.max() - all_means.min()
    robust = span <= 2 * seed_std
    failed = [f"{c['refresh_base']}^(n-1)/beta3={c['beta3']:g} "
              f"({100 * c['test_accuracy_mean']:.1f}%)" for c in ab["cells"]
              if 100 * c["test_accuracy_mean"] < all_means.max() - max(5.0, 4 * seed_std)]
    base_spread = {b: np.ptp([100 * cell[(b, x)]["test_accuracy_mean"] for x in b3s])
                   for b in bases}
    text = (f"- lr {lr:g}: the {len(ab['cells'])} cells span {all_means.min():.2f}–"
            f"{all_means.max():.2f} ({span:.2f} points; median seed std of a cell "
            f"{seed_std:.2f}). Spread across beta3 per a_n: "
            + ", ".join(f"{b}^(n-1): {v:.2f}" for b, v in base_spread.items()) + ". "
            + ("Robust: no setting is outside about twice the seed noise." if robust else
               (f"Not robust: {len(failed)} setting(s) collapse or diverge: "
                + ", ".join(failed) + "." if failed else
                "Mildly sensitive: no setting collapses, but the spread exceeds twice the seed "
                "noise.")))
    notes.append(text)
    if first_summary is None:
      first_summary = text[2:]
    if 2 in bases and have_paper:
      ours2 = [100 * cell[(2, b)]["test_accuracy_mean"] for b in b3s]
      rho = _spearman(paper_vals, ours2)
      notes.append(f"- lr {lr:g}, a_n = 2^(n-1) (the paper's row): our best beta3 is "
                   f"{b3s[int(np.argmax(ours2))]:g} (paper: {b3s[int(np.argmax(paper_vals))]:g}); "
                   f"rank correlation with the paper's row across beta3 {rho:+.2f}; our spread "
                   f"{np.ptp(ours2):.2f} points vs the paper's {np.ptp(paper_vals):.2f}.")
  summary.append("**IDU ablation** (digits CNN): " + first_summary
                 + (" At the lower lr: " + notes[-2 if have_paper else -1][2:].split(": ", 1)[1]
                    if len(ablations) > 1 else "")
                 + f" The paper (CIFAR-10, a_n = 2^(n-1) only) reports a spread of "
                 f"{np.ptp(paper_vals):.2f} points across beta3.")
  if any("collapse" in n for n in notes):
    notes.append(
        "- Why the slower refresh sequences can collapse (traced with "
        "`python -m benchmarks.paper.diagnose_idu`): the first refresh (t = 1) builds v from a "
        "single gradient, so with eps = 1e-16 a coordinate whose first gradient is tiny gets a "
        "huge v (about 1/|g_1|). With a_n = 2^(n-1) it is refreshed at t = 2; with 4^(n-1) that "
        "v is applied unchanged at t = 2 and 3, when those coordinates' gradients are no longer "
        "tiny, so the update norm jumps by orders of magnitude, the loss blows up at t = 4 and "
        "the small network does not recover within the budget. Larger beta3 keeps more of the old "
        "v at each refresh, plausibly why the collapses concentrate at large beta3. This follows "
        "from the update rule as specified (docs/algorithm.md), not from a numerical fault; the rows "
        "at the smaller learning rate show how much of it is the step size.")
  out += ["", *notes, "", "![IDU ablation](figures/paper_idu.png)", ""]

  plt = _plt()
  fig, axes = plt.subplots(1, len(ablations), figsize=(4.6 * len(ablations), 3.2), squeeze=False)
  for ax, ab in zip(axes[0], ablations):
    cell = {(c["refresh_base"], c["beta3"]): c for c in ab["cells"]}
    for base in bases:
      ax.errorbar(b3s, [100 * cell[(base, b)]["test_accuracy_mean"] for b in b3s],
                  yerr=[100 * cell[(base, b)]["test_accuracy_std"] for b in b3s], marker="o",
                  capsize=3, label=f"ours (digits), a_n={base}^(n-1)")
    ax.set(xlabel="beta3", ylabel="digits test accuracy %", title=f"lr {ab['learning_rate']:g}")
    ax.legend(fontsize=6, loc="lower left")
    if have_paper:
      ax2 = ax.twinx()
      ax2.plot(b3s, paper_vals, "k--", marker="s", label="paper (CIFAR-10), 2^(n-1)")
      ax2.set_ylabel("paper CIFAR-10 accuracy %", fontsize=7)
      ax2.legend(fontsize=6, loc="lower right")
  _save(fig, fig_dir / "paper_idu.png")
  return out


def _gamma_section(res: dict, seeds: int, fig_dir: pathlib.Path, summary: list[str]) -> list[str]:
  rows, gammas, lrs = res["rows"], res["gammas"], res["learning_rates"]
  loss_grid = np.asarray(res["grid_train_loss_mean"])  # (lrs, gammas)
  acc_grid = np.asarray(res["grid_test_accuracy_mean"])
  out = [
      "## 4. Adaptivity curve: gamma from -0.5 to 1.5",
      "",
      f"`examples/gamma_sweep.py`'s program: every (seed, lr, gamma) is one lane of a single "
      f"`jax.vmap`-ped, `jax.jit`-ted training run ({seeds * len(lrs) * len(gammas)} lanes, "
      f"{res['seconds']:.0f} s including compilation) on that example's MLP (two hidden layers of "
      f"{res['hidden']}; the sweep uses an MLP because a vmapped conv is a grouped convolution, "
      f"slow on CPU), digits, {res['epochs']} epochs of batch {res['batch_size']}. Anon's "
      "effective step scales like lr·|g|^(1−gamma), so every gamma gets the same shared "
      f"learning-rate grid ({', '.join(f'{x:g}' for x in lrs)}) and the table shows, per gamma, "
      "the lr with the best mean test accuracy and its final full-train-set loss, plus the lowest "
      "train loss any lr of the grid reached (the convergence side of the trade-off).",
      "",
      "| gamma | best lr | test accuracy % (mean ± std) | train loss at that lr | "
      "lowest train loss over the grid (lr) |",
      "|---|---|---|---|---|",
  ]
  min_loss = []
  for j, r in enumerate(rows):
    col = np.where(np.isfinite(loss_grid[:, j]), loss_grid[:, j], np.inf)
    i = int(np.argmin(col))
    min_loss.append(col[i])
    out.append(f"| {r['gamma']:g} | {r['learning_rate']:g} | "
               f"{_pm(r['test_accuracy'], r['test_accuracy_std'], 100, 2)} | "
               f"{r['train_loss']:.4f} | {col[i]:.4f} ({lrs[i]:g}) |"
               .replace("nan", "diverged").replace("inf", "diverged"))
  accs = [100 * r["test_accuracy"] for r in rows]
  rho_loss = _spearman(gammas, min_loss)
  rho_acc = _spearman(gammas, accs)
  notes = [
      f"- Convergence: rank correlation of gamma with the lowest train loss reached is "
      f"{rho_loss:+.2f} (the paper's claim, larger gamma converges faster, predicts negative).",
      f"- Generalization: rank correlation of gamma with the best test accuracy is {rho_acc:+.2f} "
      f"(the claim, smaller gamma generalizes better, predicts negative). Best accuracy at gamma="
      f"{gammas[int(np.argmax(accs))]:g}; spread across gammas {max(accs) - min(accs):.2f} points "
      f"vs a mean seed std of {np.mean([100 * r['test_accuracy_std'] for r in rows]):.2f}.",
  ]
  edge = [f"{g:g} ({'top' if r['learning_rate'] == max(lrs) else 'bottom'})"
          for g, r in zip(gammas, rows) if r["learning_rate"] in (min(lrs), max(lrs))]
  if edge:
    notes.append("- Best lr at an end of the shared grid for gamma " + ", ".join(edge)
                 + ": those points are limited by the grid, which colours both correlations.")
  agree = lambda r: "agrees" if r < 0 else "disagrees"
  summary.append(f"**Adaptivity (gamma)**: faster convergence with larger gamma "
                 f"{agree(rho_loss)} with the paper (rank correlation {rho_loss:+.2f}); better "
                 f"generalization with smaller gamma {agree(rho_acc)} (rank correlation "
                 f"{rho_acc:+.2f}; best accuracy at gamma={gammas[int(np.argmax(accs))]:g}).")
  out += ["", *notes, "", "![gamma sweep](figures/paper_gamma.png)", ""]

  plt = _plt()
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
  a1.errorbar(gammas, accs, yerr=[100 * r["test_accuracy_std"] for r in rows], marker="o",
              capsize=3, label="best lr per gamma")
  a2.plot(gammas, [r["train_loss"] for r in rows], marker="o", label="at the best-accuracy lr")
  a2.plot(gammas, min_loss, marker="s", label="lowest over the lr grid")
  for i, lr in enumerate(lrs):
    a1.plot(gammas, 100 * acc_grid[i], ls="--", alpha=0.35, label=f"lr={lr:g}")
  a1.set(xlabel="gamma", ylabel="test accuracy %", ylim=(max(0, min(accs) - 10), 100))
  a2.set(xlabel="gamma", ylabel="final train loss", yscale="log")
  a1.legend(fontsize=6)
  a2.legend(fontsize=7)
  _save(fig, fig_dir / "paper_gamma.png")
  return out


def write(results: dict[str, Any], docs_dir: pathlib.Path, json_path: pathlib.Path) -> pathlib.Path:
  docs_dir = pathlib.Path(docs_dir)
  fig_dir = docs_dir / "figures"
  cfg, hw, sec = results["config"], results["hardware"], results["seconds"]
  seeds = cfg["seeds"]
  try:
    json_rel = json_path.resolve().relative_to(docs_dir.resolve().parent)
  except ValueError:
    json_rel = json_path
  lines = [
      "# Does it hold up? The paper's claims at small scale",
      "",
      "Anon's paper claims it matches or beats Adam, SGD, Lion and Muon across vision and "
      "language, that gamma trades convergence speed against generalization, and that IDU is "
      "robust to its own hyperparameters. Below: the same experiments in miniature, rerunnable "
      "on a laptop CPU, beside the paper's numbers, whatever they show.",
      "",
      f"- Command: `{results['command']}` (mode `{results['mode']}`; all numbers, tables and "
      f"figures on this page are written by it; raw results in `{json_rel}`).",
      f"- Hardware: {hw['cpu']}, {hw['cores']} cores, JAX platform `{hw['platform']}`; load average "
      f"at start {hw['load_average_start']}, at end {hw.get('load_average_end')} (the cores were "
      "shared with other jobs, so wall times are pessimistic).",
      f"- Software: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
      + f", Python {hw['python']}. Date: {results['date']}.",
      "- Wall time: " + "; ".join(f"{k} {_fmt_time(v)}" for k, v in sec.items()) + ".",
      "- No GPU was lent to this task, so there are no GPU tables.",
      "",
  ]
  summary: list[str] = []
  body: list[str] = []
  if "lm" in results:
    body += _lm_section(results["lm"], fig_dir, summary)
  if "vision" in results:
    body += _vision_section(results["vision"], cfg["vision"], seeds, fig_dir, summary)
  if "idu" in results:
    body += _idu_section(results["idu"], seeds, fig_dir, summary)
  if "gamma" in results:
    body += _gamma_section(results["gamma"], seeds, fig_dir, summary)
  lines += ["## Summary: where we agree with the paper and where we do not", "",
            *[f"- {x}" for x in summary], "", *body]
  lines += [
      "## Caveats",
      "",
      "- Scale: the paper trains GPT-2 small on OpenWebText and ResNets on CIFAR-10 on GPUs; these "
      "runs are thousands of times smaller, sized to finish in under 45 minutes on a shared "
      "2-core CPU. Absolute numbers are not comparable; orderings and trends are what we test.",
      "- Digits accuracies sit near the ceiling, where optimizers are hard to separate; the seed "
      "spreads are reported so that differences can be read against them. With 3 seeds, "
      "differences smaller than about one seed std are not evidence either way.",
      "- Learning rates were searched on small grids (3 values per optimizer, same size for "
      "everyone); a wider search could reorder close contenders.",
      "",
  ]
  docs_dir.mkdir(parents=True, exist_ok=True)
  path = docs_dir / "RESULTS.md"
  path.write_text("\n".join(lines))
  return path
