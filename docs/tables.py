"""The tables that README.md and docs/ quote, rendered from their committed results files.

A quoted table lives in a generated region of a Markdown file:

    <!-- generated: NAME by `python -m docs.tables --write` -->
    | ... the table, rendered from the results file of NAME ... |
    <!-- end generated -->

`TABLES` maps each NAME to its results file, the command that writes that file, and the function
that renders the region from it. The rendered region ends with a line naming both, so every
quoted number sits next to the command that produced it.

    python -m docs.tables           # lists the regions that differ from their results; exit 1
    python -m docs.tables --write   # rewrites every region from its results file

`tests/tooling/test_quoted_tables.py` fails when a region no longer matches its results file. After
rerunning an experiment, run the `--write` command and commit the results file with the text.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import math
import pathlib
import re
import statistics
import sys
from typing import Any, NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Markdown files that may hold generated regions, relative to ROOT. Folders are searched
# recursively; build outputs are skipped.
SEARCHED = ("README.md", "docs", "benchmarks", "experiments")
SKIPPED_PARTS = {"_build", "_notebooks", ".git", ".venv", "node_modules"}

REGION = re.compile(
  r"(?P<open><!-- generated: (?P<name>[\w-]+) by `python -m docs\.tables --write` -->\n)"
  r"(?P<body>.*?)"
  r"(?P<close><!-- end generated -->)",
  re.DOTALL,
)


class Table(NamedTuple):
  """A quoted table: where its numbers live and how they are rendered.

  A table drawn from several results files names them all in ``results`` (and their commands,
  in the same order, in ``command``); its ``render`` then receives ``{file: parsed JSON}``.
  """

  results: str | tuple[str, ...]  # The results file(s), relative to ROOT.
  command: str | tuple[str, ...]  # The command that writes each results file.
  render: Callable[[Any], str]  # Results (parsed JSON) -> Markdown, without the source line.

  def sources(self) -> list[tuple[str, str]]:
    """``(results file, command)`` pairs."""
    if isinstance(self.results, str):
      assert isinstance(self.command, str)
      return [(self.results, self.command)]
    assert isinstance(self.command, tuple) and len(self.command) == len(self.results)
    return list(zip(self.results, self.command))


# ----------------------------------------------------------------------------
# Formatting helpers.
# ----------------------------------------------------------------------------


def _markdown_table(headers: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def _rate(value: float) -> str:
  """A learning rate as the docs write it: 0.01, 0.1, 1, 10, 1e-4."""
  return f"{value:g}"


def _optimizer_label(row: dict[str, Any]) -> str:
  return row["optimizer"] + (f" (gamma {row['gamma']:g})" if "gamma" in row else "")


# ----------------------------------------------------------------------------
# Renderers, one per table.
# ----------------------------------------------------------------------------


def render_digits(results: dict[str, Any]) -> str:
  """examples/digits_cnn.py's JSON line: one row per optimizer."""
  rows = [
    [
      _optimizer_label(r),
      _rate(r["learning_rate"]),
      f"{r['test_accuracy']:.4f}",
      f"{r['train_loss']:.2e}",
      f"{r['seconds']:.1f}",
    ]
    for r in results["results"]
  ]
  table = _markdown_table(
    ["optimizer", "learning rate", "test accuracy", "final train loss", "seconds"], rows
  )
  return table


def render_sharded(results: dict[str, Any]) -> str:
  """examples/sharded_training.py's JSON line: one Anon run on a device mesh."""
  (run,) = results["results"]
  mesh = " x ".join(f"{axis}={size}" for axis, size in results["mesh"].items())
  table = _markdown_table(
    [
      "devices",
      "mesh",
      "gamma",
      "learning rate",
      "test accuracy",
      "final train loss",
      "seconds",
      "state sharded like the params",
    ],
    [
      [
        str(results["devices"]),
        mesh,
        f"{run['gamma']:g}",
        _rate(run["learning_rate"]),
        f"{run['test_accuracy']:.4f}",
        f"{run['train_loss']:.2e}",
        f"{run['seconds']:.1f}",
        str(results["state_sharded_like_params"]),
      ]
    ],
  )
  return table


def render_gamma_sweep(results: dict[str, Any]) -> str:
  """examples/gamma_sweep.py's JSON line: the best learning rate per gamma."""
  rows = [
    [
      f"{r['gamma']:g}",
      _rate(r["learning_rate"]),
      f"{r['test_accuracy']:.4f}",
      f"{r['train_loss']:.4f}",
    ]
    for r in results["results"]
  ]
  return _markdown_table(["gamma", "best lr", "test accuracy", "final train loss"], rows)


GRADIENT_SIZE = 1e-2  # docs/guide.md's typical |g| for the gamma sweep's MLP.


def render_gamma_rule(results: dict[str, Any]) -> str:
  """The gamma sweep's best rates beside docs/guide.md's rule lr_1 * |g|**(gamma - 1)."""
  best = {r["gamma"]: r["learning_rate"] for r in results["results"]}
  if 1.0 not in best:
    return "The sweep has no gamma 1 to anchor the rule."
  rows = [
    [
      f"{gamma:g}",
      _rate(lr),
      f"{best[1.0] * GRADIENT_SIZE ** (gamma - 1):.2g}",
      f"{lr / (best[1.0] * GRADIENT_SIZE ** (gamma - 1)):.2g}",
    ]
    for gamma, lr in best.items()
  ]
  return (
    f"The rule with `|g| = {GRADIENT_SIZE:g}`, anchored at gamma 1's best rate"
    f" ({_rate(best[1.0])}):\n\n"
    + _markdown_table(["gamma", "measured best lr", "rule", "measured / rule"], rows)
  )


def render_memory(results: dict[str, Any]) -> str:
  """benchmarks/memory.py: optimizer-state bytes per parameter byte."""
  rows = [
    [
      r["optimizer"],
      r["param_dtype"],
      f"{r['state_bytes_per_param_byte']:.6f}",
      f"{r['ratio_vs_adam']:.2f}",
      f"{r['step_temp_per_param_byte']:.4f}",
      f"{r['step_peak_per_param_byte']:.3f}",
    ]
    for r in results["results"]
  ]
  return _markdown_table(
    [
      "optimizer",
      "params",
      "state bytes / param byte",
      "x optax.adam",
      "step scratch / param byte",
      "step peak / param byte",
    ],
    rows,
  )


def _accuracy_cell(row: dict[str, Any]) -> str:
  """Mean test accuracy over seeds, its std, and the seeds that went non-finite (and when)."""
  cell = f"{row['test_accuracy_mean']:.4f}"
  if len(row["test_accuracy_per_seed"]) > 1:
    cell += f" ± {row['test_accuracy_std']:.4f}"
  broken = [s for s in row["first_nonfinite_step_per_seed"] if s is not None]
  if broken:
    cell += (
      f" (non-finite in {len(broken)} seed{'s' if len(broken) != 1 else ''},"
      f" first at step {min(broken)})"
    )
  return cell


def _seed_count(rows: list[dict[str, Any]]) -> str:
  (count,) = {len(r["test_accuracy_per_seed"]) for r in rows}
  return f"mean ± std over {count} seeds" if count > 1 else "one seed"


def _factor_table(rows: list[dict[str, Any]]) -> str:
  """Rows keyed by (factor, learning_rate) -> one line per factor, one column per rate."""
  rates = sorted({r["learning_rate"] for r in rows})
  factors = list(dict.fromkeys(r["factor"] for r in rows))
  cells = {(r["factor"], r["learning_rate"]): r for r in rows}

  def name(factor: str) -> str:
    if factor == "adam":
      return "optax.adam"
    return "C = inf (exact rule)" if factor == "inf" else f"C = {factor}"

  body = [
    [name(f)] + [_accuracy_cell(cells[f, lr]) if (f, lr) in cells else "" for lr in rates]
    for f in factors
  ]
  return _markdown_table(["", *[f"lr {_rate(lr)}" for lr in rates]], body)


def render_guard_cnn(results: dict[str, Any]) -> str:
  """experiments/guard/sweep.py, part cnn: the digits CNN per guard factor and learning rate."""
  seeds = _seed_count(results["cnn"])
  return f"Test accuracy of the digits CNN (GELU), {seeds}:\n\n" + _factor_table(results["cnn"])


def render_guard_mlp(results: dict[str, Any]) -> str:
  """experiments/guard/sweep.py, part mlp: the reduce_on_plateau ReLU MLP."""
  seeds = _seed_count(results["mlp"])
  return f"Test accuracy of the `reduce_on_plateau` ReLU MLP, {seeds}:\n\n" + _factor_table(
    results["mlp"]
  )


def render_guard_binding(results: dict[str, Any]) -> str:
  """experiments/guard/sweep.py, part binding: how often the guard lowers v in a CNN run."""
  rows = [
    [
      f"C = {r['factor']}",
      f"{100 * r['fraction_of_elements_lowered']:.2f}%",
      f"{100 * r['max_fraction_in_one_step']:.2f}%",
      f"{100 * r['fraction_of_steps_with_any_lowered']:.0f}%",
    ]
    for r in results["binding"]
  ]
  first = results["binding"][0]
  return (
    f"Digits CNN, lr {_rate(first['learning_rate'])}, seed {first['seed']}: "
    f"{first['parameters']} parameters, {first['steps_between_refreshes']} of "
    f"{first['steps']} steps between refreshes.\n\n"
    + _markdown_table(
      [
        "factor",
        "elements lowered (mean over steps)",
        "most in one step",
        "steps with any lowered",
      ],
      rows,
    )
  )


# A cell of an IDU ablation "collapses" when its mean accuracy is more than the larger of
# COLLAPSE_POINTS and COLLAPSE_SEED_STDS median seed stds below the best cell: the criterion of
# experiments/paper/report.py, which wrote the exact-rule ablation of docs/RESULTS.md.
COLLAPSE_POINTS, COLLAPSE_SEED_STDS = 5.0, 4.0


def _ablation_cell(cell: dict[str, Any]) -> str:
  """Mean test accuracy % over seeds, its std, and how many seeds went non-finite."""
  seeds = len(cell["test_accuracy_per_seed"])
  text = f"{100 * cell['test_accuracy_mean']:.2f}"
  if seeds > 1:
    text += f" ± {100 * cell['test_accuracy_std']:.2f}"
  broken = sum(s is not None for s in cell["first_nonfinite_step_per_seed"])
  if broken:
    text += f" ({broken}/{seeds} non-finite)"
  return text


def _ablation_statistics(cells: list[dict[str, Any]]) -> dict[str, Any]:
  """Span, median seed std, spread across beta3 per a_n, collapsed cells, non-finite runs."""
  means = [100 * c["test_accuracy_mean"] for c in cells]
  seed_std = statistics.median(100 * c["test_accuracy_std"] for c in cells)
  bar = max(means) - max(COLLAPSE_POINTS, COLLAPSE_SEED_STDS * seed_std)
  bases = list(dict.fromkeys(c["refresh_base"] for c in cells))
  spread = {}
  for base in bases:
    row = [100 * c["test_accuracy_mean"] for c in cells if c["refresh_base"] == base]
    spread[base] = max(row) - min(row)
  runs = [s for c in cells for s in c["first_nonfinite_step_per_seed"]]
  return dict(
    low=min(means),
    high=max(means),
    seed_std=seed_std,
    spread=spread,
    collapsed=[c for c in cells if 100 * c["test_accuracy_mean"] < bar],
    nonfinite=sum(s is not None for s in runs),
    runs=len(runs),
  )


def render_guard_ablation(results: dict[str, Any]) -> str:
  """experiments/guard/ablation.py: the IDU ablation, default guard beside the exact rule.

  Per learning rate: a table of mean ± std test accuracy (a_n x rule by beta3, with the spread
  across beta3), then per rule the span of its cells, the median seed std of a cell, the cells
  that collapse (``COLLAPSE_POINTS``) and the runs that went non-finite, and the difference of
  the two rules over the cells where neither collapses.
  """
  rules = results["rules"]
  names = [rule for rule in ("default", "exact") if rule in rules]
  seeds = len(results["seeds"])
  parts = []
  for index, ablation in enumerate(rules["default"]["ablations"]):
    beta3s = ablation["beta3s"]
    cells = {rule: rules[rule]["ablations"][index]["cells"] for rule in names}
    keyed = {(rule, c["refresh_base"], c["beta3"]): c for rule in names for c in cells[rule]}
    body = []
    for base in ablation["refresh_bases"]:
      for rule in names:
        row = [keyed[rule, base, b] for b in beta3s]
        means = [100 * c["test_accuracy_mean"] for c in row]
        body.append(
          [f"{base}^(n-1)", rule, *map(_ablation_cell, row), f"{max(means) - min(means):.2f}"]
        )
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    table = _markdown_table(
      ["a_n", "rule", *[f"beta3 {b:g}" for b in beta3s], "spread (max − min)"], body
    )
    notes = []
    stats = {rule: _ablation_statistics(cells[rule]) for rule in names}
    for rule in names:
      s = stats[rule]
      collapsed = (
        ", ".join(
          f"{c['refresh_base']}^(n-1)/beta3 {c['beta3']:g} ({100 * c['test_accuracy_mean']:.1f}%)"
          for c in s["collapsed"]
        )
        or "none"
      )
      noise = f"; median seed std of a cell {s['seed_std']:.2f}" if seeds > 1 else ""
      notes.append(
        f"- {rule}: the {len(cells[rule])} cells span {s['low']:.2f}–{s['high']:.2f} "
        f"({s['high'] - s['low']:.2f} points{noise}); spread across beta3 per a_n: "
        + ", ".join(f"{b}^(n-1) {v:.2f}" for b, v in s["spread"].items())
        + f". Collapsed cells: {collapsed}. Non-finite runs: {s['nonfinite']} of {s['runs']}."
      )
    if len(names) == 2:
      dropped = {
        (c["refresh_base"], c["beta3"]) for rule in names for c in stats[rule]["collapsed"]
      }
      both = [
        100
        * (
          keyed["default", base, b]["test_accuracy_mean"]
          - keyed["exact", base, b]["test_accuracy_mean"]
        )
        for base in ablation["refresh_bases"]
        for b in beta3s
        if (base, b) not in dropped
      ]
      if both:
        notes.append(
          f"- default minus exact over the {len(both)} cells where neither collapses: "
          f"mean {sum(both) / len(both):+.2f} points, from {min(both):+.2f} to {max(both):+.2f}."
        )
    parts.append(
      f"lr {_rate(ablation['learning_rate'])}, test accuracy %, {spread}:\n\n"
      + table
      + "\n\n"
      + "\n".join(notes)
    )
  return "\n\n".join(parts)


# The workload suite's main results (its `anon` column has the default eps 1e-16; `adam`) and the
# run of Anon's default at larger eps that render_workloads_eps sets beside them.
WORKLOADS_RESULTS = "experiments/workloads/results/workloads.json"
WORKLOADS_EPS_RESULTS = "experiments/workloads/results/workloads_eps.json"
WORKLOAD_ORDER = (
  "nnx_cnn",
  "linen_trainstate",
  "reduce_on_plateau",
  "lookahead",
  "multisteps",
  "char_gpt",
)  # experiments.workloads.WORKLOADS, not imported: this module loads without the experiments.


DIVERGED_TRAIN_LOSS = 10.0  # As experiments/workloads/run.py: a finite run that blew up.


def _eps(value: float) -> str:
  """An eps as the docs write it: 1e-16, 1e-8."""
  return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{value:.0e}")


def _workload_cell(row: dict[str, Any]) -> str:
  """Mean ± half the range over seeds, non-finite seeds and a finite blow-up, as workloads.md."""
  mean, spread = float(row["mean"]), float(row["spread"])
  text = f"{mean:.3f} ± {spread:.3f}" if math.isfinite(mean) else "NaN"
  if row["nonfinite_seeds"]:
    text += (
      f"; non-finite in {row['nonfinite_seeds']}/{len(row['seeds'])} seeds,"
      f" first at step {row['first_nonfinite_step']}"
    )
  elif max(map(float, row["train_losses"])) > DIVERGED_TRAIN_LOSS:
    text += f"; diverged, train loss up to {max(map(float, row['train_losses'])):.2g}"
  return text


def render_workloads_eps(files: dict[str, Any]) -> str:
  """experiments/workloads/run.py with --optimizers anon_eps1e-8,anon_eps1e-6: Anon's default at
  larger eps, beside its default eps 1e-16 and Adam(W) from the main suite's results file."""
  results, main = files[WORKLOADS_EPS_RESULTS], files[WORKLOADS_RESULTS]
  rows = {(r["workload"], r["optimizer"]): r for r in main["summary"] + results["summary"]}
  variants = list(dict.fromkeys(r["optimizer"] for r in results["summary"]))
  columns = [("anon", 1e-16)] + [(v, float(v.removeprefix("anon_eps"))) for v in variants]
  workloads = [w for w in WORKLOAD_ORDER if any(r["workload"] == w for r in results["summary"])]
  body = []
  for w in workloads:
    first = rows[w, "anon"]
    body.append(
      [f"`{w}`", f"{first['metric_name']} (lr {_rate(first['learning_rate'])})"]
      + [_workload_cell(rows[w, name]) for name, _ in columns]
      + [_workload_cell(rows[w, "adam"])]
    )
  headers = [
    "workload",
    "metric",
    *[f"eps {_eps(eps)}" + (" (default)" if name == "anon" else "") for name, eps in columns],
    "Adam(W)",
  ]
  notes = []
  for name, eps in columns[1:]:
    accuracy, loss, broken = [], [], []
    for w in workloads:
      new, old = float(rows[w, name]["mean"]), float(rows[w, "anon"]["mean"])
      if not math.isfinite(new - old):
        broken.append(f"`{w}`")
      elif rows[w, name]["metric_name"] == "accuracy":
        accuracy.append(100 * (new - old))
      else:
        loss.append(100 * (new / old - 1))
    said = []
    if accuracy:
      said.append(
        f"accuracy {min(accuracy):+.2f} to {max(accuracy):+.2f} points over"
        f" {len(accuracy)} classifiers (mean {sum(accuracy) / len(accuracy):+.2f})"
      )
    if loss:
      said.append("held-out loss " + ", ".join(f"{x:+.1f}%" for x in loss))
    if broken:
      said.append("a NaN mean in " + ", ".join(broken))
    runs = sum(len(rows[w, name]["seeds"]) for w in workloads)
    nonfinite = sum(rows[w, name]["nonfinite_seeds"] for w in workloads)
    # Seeds share initialisation and batch order across optimizers: pair them.
    ratios = []
    for w in workloads:
      pairs = zip(rows[w, name]["train_losses"], rows[w, "anon"]["train_losses"])
      ratios.append(f"`{w}` {statistics.median(float(x) / float(y) for x, y in pairs):.2f}")
    train = ", ".join(ratios)
    notes.append(
      f"- eps {_eps(eps)} minus eps 1e-16: {'; '.join(said)}; non-finite runs: {nonfinite} of"
      f" {runs}. Final training loss over eps 1e-16's (median over seeds of the per-seed ratio):"
      f" {train}."
    )
  spreads = [
    100 * float(rows[w, name]["spread"])
    for w in workloads
    for name, _ in columns
    if rows[w, name]["metric_name"] == "accuracy" and math.isfinite(float(rows[w, name]["spread"]))
  ]
  if spreads:
    notes.append(
      f"- For scale: half the range over seeds of an Anon accuracy cell above is at most"
      f" {max(spreads):.2f} points (median {statistics.median(spreads):.2f})."
    )
  return (
    f"Mean ± half the range over seeds {', '.join(map(str, results['summary'][0]['seeds']))} of"
    f" the final test accuracy (or held-out loss); the eps columns took"
    f" {results['total_seconds']:.0f} s on {results['device']} (commit"
    f" `{results['git_commit']}`). The eps 1e-16 and Adam(W) columns are the `anon default` and"
    f" `Adam(W)` columns of [workloads.md](workloads.md).\n\n"
    + _markdown_table(headers, body)
    + "\n\n"
    + "\n".join(notes)
  )


# ----------------------------------------------------------------------------
# Benchmarks (benchmarks/results/*.json): step time, refresh step, targets, compile time,
# the vmapped sweep, and the refresh-formula note.
# ----------------------------------------------------------------------------

STEP_TIME = "benchmarks/results/step_time.json"
STEP_TIME_LARGE = "benchmarks/results/step_time_large.json"
VMAPPED_SWEEP = "benchmarks/results/vmapped_sweep.json"
VMAPPED_SWEEP_1CORE = "benchmarks/results/vmapped_sweep_1core.json"
# The commands that wrote the committed files. A results file written since
# benchmarks/common.py records its own command line (machine.command) names that instead.
STEP_TIME_COMMAND = (
  "python -m benchmarks.step_time --sizes 1M,4M"
  " --contenders anon,anon_exact,floor,floor_exact,adam,hvadam --rounds 5"
)
STEP_TIME_LARGE_COMMAND = (
  "python -m benchmarks.step_time --sizes 16M,64M"
  " --contenders anon,floor,adam,sgd_momentum,torch_1thread"
  " --rounds 3 --refresh-rounds 3 --start-step 1100 --name step_time_large"
)
VMAPPED_SWEEP_COMMAND = "python -m benchmarks.vmapped_sweep --rounds 3 --steps 200"
VMAPPED_SWEEP_1CORE_COMMAND = (
  "taskset -c 0 python -m benchmarks.vmapped_sweep --modes loop --rounds 3 --steps 200"
  " --name vmapped_sweep_1core"
)
TARGET_SIZE = "4M"  # The size the CPU targets are stated for.

# Row order and labels of the step-time tables; a contender not listed here is shown by its
# name, after the listed ones and before the copy.
CONTENDER_LABELS = {
  "anon": "anon",
  "anon_exact": "anon (exact=True)",
  "anon_bf16_mu_precond": "anon (mu, precond bfloat16)",
  "anon_bf16_all": "anon (mu, nu, precond bfloat16)",
  "floor": "floor",
  "floor_exact": "floor_exact",
  "adam": "optax.adam",
  "adamw": "optax.adamw",
  "sgd_momentum": "optax.sgd (momentum 0.9)",
  "lion": "optax.lion",
  "hvadam": "anon_optax.hvadam",
  "torch": "PyTorch per-tensor, {threads} threads",
  "torch_1thread": "PyTorch per-tensor, 1 thread",
}


def _ms(seconds: float) -> str:
  """Milliseconds with about four significant digits: 0.964, 3.373, 32.34, 173.2."""
  ms = 1e3 * seconds
  return f"{ms:.3f}" if ms < 10 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def _s(seconds: float) -> str:
  return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def _times(ratio: float | None) -> str:
  return "-" if ratio is None else f"{ratio:.2f}"


def _floor_of(name: str, per_step: dict[str, Any]) -> str | None:
  """The one-pass floor a contender is compared with: the exact rule's for the exact-rule
  contenders (``*_exact``), the guarded (default) floor for every other one."""
  if "exact" in name and "floor_exact" in per_step:
    return "floor_exact"
  return "floor" if "floor" in per_step else None


def _ratio(per_step: dict[str, Any], name: str, base: str, paired: bool = False) -> float | None:
  """``name``'s time over ``base``'s (ratio of medians, or the median per-round ratio)."""
  if base not in per_step or name not in per_step:
    return None
  if name == base:
    return 1.0
  return per_step[name]["paired_ratio_vs" if paired else "ratio_vs"].get(base)


def _contender_order(per_step: dict[str, Any]) -> list[str]:
  known = [n for n in CONTENDER_LABELS if n in per_step]
  other = [n for n in per_step if n not in CONTENDER_LABELS and n != "copy"]
  return known + other + (["copy"] if "copy" in per_step else [])


def _size_caption(size: dict[str, Any]) -> str:
  first, last = size["timed_steps"]
  inside = size["refresh_steps_in_timed_windows"]
  refreshes = (
    "no refresh inside them"
    if not inside
    else f"refresh steps {', '.join(map(str, inside))} inside them"
  )
  return (
    f"**{size['num_params_label']} parameters / {size['num_leaves']} leaves** "
    f"({size['rounds']} rounds of {size['window_steps']} steps, steps {first}..{last}, "
    f"{refreshes})"
  )


def _step_time_table(size: dict[str, Any], threads: int) -> str:
  per = size["per_step"]
  torches = [t for t in ("torch", "torch_1thread") if t in per]
  headers = ["contender", "ms/step", "x floor (paired)"]
  headers += ["x adam"] if "adam" in per else []
  headers += [f"x torch ({threads} thr)" if t == "torch" else "x torch (1 thr)" for t in torches]
  headers += ["GB/s", "x copy"]
  rows = []
  for name in _contender_order(per):
    entry = per[name]
    label = CONTENDER_LABELS.get(name, f"`{name}`").format(threads=threads)
    if name == "copy":
      label = "copy (streaming, in place)"
    floor = _floor_of(name, per)
    floor_cell = _times(_ratio(per, name, floor, paired=True)) if floor else "-"
    if floor == "floor_exact" and name != "floor_exact" and floor_cell != "-":
      floor_cell += " (vs floor_exact)"
    row = [label, _ms(entry["median_s"]), floor_cell]
    row += [_times(_ratio(per, name, "adam"))] if "adam" in per else []
    row += [_times(_ratio(per, name, t)) for t in torches]
    gbps, fraction = entry.get("achieved_gbps"), entry.get("fraction_of_copy_bandwidth")
    row += ["-" if gbps is None else f"{gbps:.1f}", "-" if fraction is None else f"{fraction:.2f}"]
    rows.append(row)
  return _size_caption(size) + "\n\n" + _markdown_table(headers, rows)


def render_step_time(results: dict[str, Any]) -> str:
  """benchmarks/step_time.py: one table per size, every contender the file holds."""
  threads = results["config"].get("jax_threads", "?")
  return "\n\n".join(_step_time_table(size, threads) for size in results["results"])


def _spike_rows(results: dict[str, Any]) -> list[list[str]]:
  rows = []
  for size in results["results"]:
    spike = size.get("refresh_spike")
    if not spike:
      continue
    normal, refresh = spike["normal_step_t1001"], spike["refresh_step_t1024"]
    rows.append(
      [
        f"{size['num_params_label']} / {size['num_leaves']} leaves"
        f" ({len(refresh['samples_s'])} rounds)",
        _ms(normal["median_s"]),
        _ms(refresh["median_s"]),
        _times(refresh["ratio_vs"].get("normal_step_t1001")),
        _times(refresh["paired_ratio_vs"].get("normal_step_t1001")),
      ]
    )
  return rows


def render_refresh_step(files: dict[str, Any]) -> str:
  """benchmarks/step_time.py's refresh-spike test (anon), every size of both files."""
  rows = [row for path in (STEP_TIME, STEP_TIME_LARGE) for row in _spike_rows(files[path])]
  return _markdown_table(
    ["size", "normal step ms", "refresh step ms", "ratio (median)", "ratio (paired)"], rows
  )


def _size(results: dict[str, Any], label: str) -> dict[str, Any] | None:
  return next((s for s in results["results"] if s["num_params_label"] == label), None)


def _verdict(value: float | None, limit: float, at_most: bool = True) -> str:
  if value is None:
    return "not measured"
  met = value <= limit if at_most else value >= limit
  return "**met**" if met else "**missed**"


def _x(value: float | None) -> str:
  return "-" if value is None else f"{value:.2f}x"


def render_targets(files: dict[str, Any]) -> str:
  """Issue 4's targets, each measured value read from the results files and checked."""
  step_time, large, sweep = files[STEP_TIME], files[STEP_TIME_LARGE], files[VMAPPED_SWEEP]
  size = _size(step_time, TARGET_SIZE)
  per = size["per_step"] if size else {}
  rows = []

  def floor_row(name: str, floor: str, label: str) -> None:
    paired = _ratio(per, name, floor, paired=True)
    measured = (
      f"{_x(paired)} paired ({_x(_ratio(per, name, floor))} of medians)"
      if paired is not None
      else f"no `{name}` and `{floor}` rows at {TARGET_SIZE}"
    )
    if name == "anon" and floor == "floor" and _ratio(per, "anon", "floor_exact") is not None:
      measured += (
        f"; {_x(_ratio(per, 'anon', 'floor_exact', paired=True))} paired against"
        " `floor_exact` (the guard's extra read included)"
      )
    rows.append([label, measured, _verdict(paired, 1.10)])

  floor_row("anon", "floor", "default step (`anon`) <= 1.10x its fused one-pass floor (`floor`)")
  if "anon_exact" in per:
    floor_row(
      "anon_exact",
      "floor_exact",
      "exact rule (`anon_exact`) <= 1.10x its fused one-pass floor (`floor_exact`)",
    )

  if "hvadam" in per and "floor_exact" in per:
    paired = _ratio(per, "hvadam", "floor_exact", paired=True)
    rows.append(
      [
        "HVAdam step (`hvadam`) <= 2.5x the fused one-pass floor (`floor_exact`)",
        f"{_x(paired)} paired ({_x(_ratio(per, 'hvadam', 'floor_exact'))} of medians)",
        _verdict(paired, 2.5),
      ]
    )

  torch = next((t for t in ("torch", "torch_1thread") if t in per), None)
  if torch and "anon" in per:
    threads = step_time["config"].get("jax_threads")
    parts = [
      f"{_x(_ratio(per, 'anon', t))} vs torch on "
      + (f"{threads} threads" if t == "torch" else "1 thread")
      for t in ("torch", "torch_1thread")
      if t in per
    ]
    rows.append(
      [
        "anon step <= 0.80x the PyTorch per-tensor reference",
        ", ".join(parts) + " (medians)",
        _verdict(_ratio(per, "anon", torch), 0.80),
      ]
    )
  else:
    rows.append(
      [
        "anon step <= 0.80x the PyTorch per-tensor reference",
        f"no PyTorch rows at {TARGET_SIZE} (torch was not installed where the file was written)",
        "not measured",
      ]
    )

  to_adam = _ratio(per, "anon", "adam")
  parts = [f"anon {_x(to_adam)}"] if to_adam is not None else []
  parts += [
    f"{CONTENDER_LABELS[n]} {_x(_ratio(per, n, 'adam'))}"
    for n in ("anon_exact", "floor", "floor_exact")
    if _ratio(per, n, "adam") is not None
  ]
  rows.append(
    [
      "anon step <= 0.75x `optax.adam`",
      "; ".join(parts) + " (medians)" if parts else f"no `anon` and `adam` rows at {TARGET_SIZE}",
      _verdict(to_adam, 0.75),
    ]
  )

  spike = size.get("refresh_spike") if size else None
  refresh = spike["refresh_step_t1024"] if spike else None
  refresh_ratio = refresh["ratio_vs"].get("normal_step_t1001") if refresh else None
  rows.append(
    [
      "refresh step <= 3x a normal step",
      f"{_x(refresh_ratio)} (median), "
      f"{_x(refresh['paired_ratio_vs'].get('normal_step_t1001'))} paired"
      if refresh
      else f"no refresh-step test at {TARGET_SIZE}",
      _verdict(refresh_ratio, 3.0),
    ]
  )

  modes = sweep["results"]
  sweep_ratios = {
    mode: modes[mode]["paired_ratio_run_s"] for mode in ("loop", "scan") if mode in modes
  }
  rows.append(
    [
      f"{len(sweep['config']['gammas'])}-gamma vmapped sweep <= 0.5x"
      f" {len(sweep['config']['gammas'])} sequential runs",
      ", ".join(f"{_x(r)} ({mode}, paired)" for mode, r in sweep_ratios.items()),
      _verdict(max(sweep_ratios.values()) if sweep_ratios else None, 0.5),
    ]
  )

  gpu = [r for r in (step_time, large) if r["machine"].get("jax_backend") == "gpu"]
  gpu_size = next((s for r in gpu for s in r["results"] if s["num_params_label"] == "64M"), None)
  if gpu_size:
    gper = gpu_size["per_step"]
    to_adam_gpu = _ratio(gper, "anon", "adam")
    copy_fraction = gper.get("anon", {}).get("fraction_of_copy_bandwidth")
    met = to_adam_gpu is not None and copy_fraction is not None
    rows.append(
      [
        "GPU: anon <= 1.15x adam, >= 70% of copy bandwidth at 64M",
        f"{_x(to_adam_gpu)} adam, {copy_fraction or 0:.0%} of the copy's bandwidth",
        (
          "**met**"
          if met and to_adam_gpu <= 1.15 and copy_fraction >= 0.70
          else "**missed**"
          if met
          else "not measured"
        ),
      ]
    )
  else:
    backends = sorted({r["machine"].get("jax_backend", "?") for r in (step_time, large)})
    rows.append(
      [
        "GPU: anon <= 1.15x adam, >= 70% of copy bandwidth at 64M",
        f"no GPU results: the step-time files are from the {'/'.join(backends)} backend",
        "not measured",
      ]
    )
  return _markdown_table(["target", "measured", "met?"], rows)


def render_compile_time(results: dict[str, Any]) -> str:
  """benchmarks/compile_time.py: trace + lower and XLA compile of one train step."""
  rows = []
  for model, per in results["results"].items():
    for name, entry in per.items():
      rows.append(
        [
          model.upper(),
          CONTENDER_LABELS.get(name, name),
          f"{1e3 * entry['lower']:.0f}",
          f"{1e3 * entry['compile']:.0f}",
          f"{1e3 * entry['median_s']:.0f}",
          "1.00" if name == "adam" else _times(entry["paired_ratio_vs"].get("adam")),
        ]
      )
  rounds = results["config"]["rounds"]
  return f"{rounds} interleaved rounds, medians:\n\n" + _markdown_table(
    ["model", "optimizer", "trace+lower ms", "XLA compile ms", "total ms", "x adam (paired)"],
    rows,
  )


def _sweep_caption(results: dict[str, Any]) -> str:
  config = results["config"]
  cores = results["machine"].get("cpus_usable") or results["machine"].get("cpu_count")
  return (
    f"Model `{config['model']}`, {len(config['gammas'])} gammas, batch {config['batch']},"
    f" {config['steps']} steps, {config['rounds']} rounds, {cores} core{'s' if cores != 1 else ''};"
    " seconds for the whole sweep:"
  )


def render_vmapped_sweep(results: dict[str, Any]) -> str:
  """benchmarks/vmapped_sweep.py: vmapped vs sequential per mode, with the per-gamma accuracy."""
  rows = []
  for mode, entry in results["results"].items():
    vmapped, sequential = entry["vmapped"], entry["sequential"]
    rows += [
      [mode, "vmapped", _s(vmapped["run_s"]), _s(vmapped["compile_s"]), _s(vmapped["total_s"]), ""],
      [
        mode,
        f"{len(results['config']['gammas'])} sequential",
        _s(sequential["run_s"]),
        _s(sequential["compile_s"]),
        _s(sequential["total_s"]),
        _s(sequential["total_s_compile_per_gamma"]),
      ],
      [
        mode,
        "**vmapped / sequential** (paired)",
        f"**{entry['paired_ratio_run_s']:.2f}**",
        "",
        f"**{entry['paired_ratio_total_s']:.2f}**",
        f"{entry['ratio_total_s_compile_per_gamma']:.2f}",
      ],
    ]
  table = _markdown_table(
    [
      "mode",
      "program",
      "run s",
      "compile s",
      "run + compile s",
      "sequential with one compile per gamma",
    ],
    rows,
  )
  first = next(iter(results["results"].values()))
  diff = first["max_rel_param_diff_vmapped_vs_sequential"]
  agreement = (
    f"agree to {diff:.1e} relative"
    if diff == diff
    else "do not compare (some lanes are not finite)"
  )
  accuracy = ", ".join(f"{float(g):g}: {a:.2f}" for g, a in first["test_accuracy"].items())
  return (
    _sweep_caption(results)
    + "\n\n"
    + table
    + f"\n\nThe vmapped and sequential final parameters {agreement}. Test accuracy per gamma: "
    + accuracy
    + "."
  )


def render_vmapped_profile(results: dict[str, Any]) -> str:
  """benchmarks/vmapped_sweep.py --profile: matmul vs other op time per step of the sweep."""
  vmapped, sequential = results["results"]["vmapped"], results["results"]["sequential"]
  rows = []
  for label, entry in (("vmapped", vmapped), ("sequential", sequential)):
    rows.append(
      [
        label,
        str(entry["calls_per_sweep_step"]),
        f"{entry['matmul_ms_per_sweep_step']:.2f}",
        f"{entry['other_ms_per_sweep_step']:.2f}",
        f"{entry['matmul_ms_per_sweep_step'] + entry['other_ms_per_sweep_step']:.2f}",
      ]
    )
  rows.append(
    [
      "sequential / vmapped",
      "",
      _x(sequential["matmul_ms_per_sweep_step"] / vmapped["matmul_ms_per_sweep_step"]),
      _x(sequential["other_ms_per_sweep_step"] / vmapped["other_ms_per_sweep_step"]),
      "",
    ]
  )
  table = _markdown_table(
    ["program", "calls per sweep step", "matmul ms", "other ms", "total ms"], rows
  )
  sequential_total = sequential["matmul_ms_per_sweep_step"] + sequential["other_ms_per_sweep_step"]
  budget = sequential_total / 2 - vmapped["other_ms_per_sweep_step"]
  if budget > 0:
    need = (
      f"with {vmapped['other_ms_per_sweep_step']:.1f} ms of non-matmul work that leaves"
      f" {budget:.1f} ms for matmuls that take {sequential['matmul_ms_per_sweep_step']:.1f} ms"
      f" one model at a time, a {sequential['matmul_ms_per_sweep_step'] / budget:.1f}x gain"
    )
  else:
    need = "the non-matmul work alone takes more than that"
  return (
    f"{results['config']['traced_steps']} traced steps, per step of all"
    f" {len(results['config']['gammas'])} gammas:\n\n"
    + table
    + f"\n\nFor 0.5x the vmapped step would have to fit in half of {sequential_total:.1f} ms; "
    + need
    + "."
  )


def render_sweep_cores(files: dict[str, Any]) -> str:
  """The loop-mode sweep on one core (taskset) beside the same sweep on every core."""
  rows = []
  for path in (VMAPPED_SWEEP_1CORE, VMAPPED_SWEEP):
    results = files[path]
    loop = results["results"]["loop"]
    cores = results["machine"].get("cpus_usable") or results["machine"].get("cpu_count")
    rows.append(
      [
        str(cores),
        _s(loop["vmapped"]["run_s"]),
        _s(loop["sequential"]["run_s"]),
        f"{loop['paired_ratio_run_s']:.2f}",
      ]
    )
  return _markdown_table(
    ["cores", "vmapped run s", "sequential run s", "vmapped / sequential (paired)"], rows
  )


REFRESH_FORMULA_LABELS = {
  "current": "current (`hypot` form)",
  "logaddexp": "`logaddexp` form (before)",
  "power": "`hypot` form with `jnp.power(sigma, -gamma / 2)`",
  "axpy": "`0.9 * v + s` (memory traffic only)",
}


def render_refresh_formula(results: dict[str, Any]) -> str:
  """experiments/notes/refresh_formula.py: the refresh pass alone, per formulation."""
  per = results["results"]
  rows = [
    [
      REFRESH_FORMULA_LABELS.get(name, f"`{name}`"),
      _ms(entry["median_s"]),
      _times(_ratio(per, name, "current")),
      _times(_ratio(per, name, "axpy")),
    ]
    for name, entry in per.items()
  ]
  worst = max(results.get("max_rel_diff_vs_current", {}).values(), default=None)
  agree = f" All agree with the current form to {worst:.1e} relative." if worst is not None else ""
  return (
    f"{results['config']['size']} float32 elements, {results['config']['rounds']} interleaved"
    " rounds, medians:\n\n"
    + _markdown_table(["formulation", "ms", "x current", "x axpy"], rows)
    + "\n\n"
    + agree.strip()
  ).strip()


def render_memory_summary(results: dict[str, Any]) -> str:
  """benchmarks/memory.py, the package's rows: state and step scratch against optax.adam."""
  rows = {}
  for r in results["results"]:
    if not r["optimizer"].startswith("anon"):  # anon's options and anon_optax.hvadam
      continue
    rows.setdefault(r["optimizer"], {})[r["param_dtype"]] = r
  dtypes = list(dict.fromkeys(r["param_dtype"] for r in results["results"]))
  headers = ["optimizer"]
  headers += [f"state x optax.adam ({d} params)" for d in dtypes]
  headers += [f"step scratch / param byte ({d} params)" for d in dtypes]
  body = [
    [name]
    + [f"{cells[d]['ratio_vs_adam']:.2f}" if d in cells else "-" for d in dtypes]
    + [f"{cells[d]['step_temp_per_param_byte']:.2f}" if d in cells else "-" for d in dtypes]
    for name, cells in rows.items()
  ]
  config = results["config"]
  return (
    f"{config['num_params']} parameters in {config['num_leaves']} leaves:\n\n"
    + _markdown_table(headers, body)
  )


def render_char_gpt(results: dict[str, Any]) -> str:
  """examples/char_gpt.py's JSON line: one row per optimizer (Anon once per gamma)."""
  return _markdown_table(
    ["optimizer", "peak lr", "validation loss (nats/char)", "train loss", "seconds"],
    [
      [
        r["optimizer"]
        + (f" gamma {r['gamma']:g}" if "gamma" in r else "")
        + (" (exact=True)" if r.get("exact") else ""),
        _rate(r["learning_rate"]),
        f"{r['val_loss']:.4f}",
        f"{r['train_loss']:.4f}",
        f"{r['seconds']:.1f}",
      ]
      for r in results["results"]
    ],
  )


GUARD_EXAMPLES = {
  # run -> (command, default-guard results file, exact-rule results file, metrics)
  "digits CNN (GELU), Anon gamma 1, default epochs": (
    "python examples/digits_cnn.py --optimizers anon [--exact]",
    "docs/results/digits_cnn.json",
    "experiments/guard/results/digits_cnn_exact.json",
  ),
  "char GPT, Anon gamma 1, default steps": (
    "python examples/char_gpt.py --optimizers anon --gammas 1.0 [--exact]",
    "experiments/guard/results/char_gpt_default.json",
    "experiments/guard/results/char_gpt_exact.json",
  ),
  "sharded digits CNN, 8 simulated devices, seed 0": (
    "python examples/sharded_training.py [--exact]",
    "docs/results/sharded_training.json",
    "experiments/guard/results/sharded_training_exact.json",
  ),
  "sharded digits CNN, 8 simulated devices, seed 1": (
    "python examples/sharded_training.py --seed 1 [--exact]",
    "experiments/guard/results/sharded_training_seed1.json",
    "experiments/guard/results/sharded_training_seed1_exact.json",
  ),
}


def _anon_cell(results: dict[str, Any], exact: bool) -> str:
  (row,) = [
    r
    for r in results["results"]
    if r["optimizer"] == "anon" and bool(r.get("exact")) == exact and r.get("gamma", 1.0) == 1.0
  ]
  if "val_loss" in row:
    return f"val loss {row['val_loss']:.3f}, train loss {row['train_loss']:.3f}"
  return f"test accuracy {row['test_accuracy']:.4f}, train loss {row['train_loss']:.2e}"


def render_guard_examples(files: dict[str, Any]) -> str:
  """The examples' Anon runs under the default guard beside the same runs with exact=True."""
  rows = [
    [
      run,
      f"`{command}`",
      _rate(files[default]["results"][0]["learning_rate"]),
      _anon_cell(files[default], False),
      _anon_cell(files[exact], True),
    ]
    for run, (command, default, exact) in GUARD_EXAMPLES.items()
  ]
  return _markdown_table(["run", "command", "lr", "default guard", "exact rule"], rows)


def _guard_example_sources() -> tuple[tuple[str, ...], tuple[str, ...]]:
  files, commands = [], []
  for command, default, exact in GUARD_EXAMPLES.values():
    for path, flag in ((default, ""), (exact, " --exact")):
      if path in files:
        continue
      files.append(path)
      if path == "docs/results/digits_cnn.json":
        commands.append("python docs/make_figures.py --only digits")
      elif path == "docs/results/sharded_training.json":
        commands.append(f"{TABLES_SHARDED_COMMAND}")
      else:
        base = command.replace(" [--exact]", "")
        commands.append(f"{base}{flag} | tail -n 1 > {path}")
  return tuple(files), tuple(commands)


TABLES_SHARDED_COMMAND = (
  "python examples/sharded_training.py | tail -n 1 > docs/results/sharded_training.json"
)


_METRIC_NAMES = {"test_accuracy": "test accuracy", "val_loss": "validation loss"}


def _compact_comparison(row: dict[str, Any], prefix: str, digits: str) -> str:
  diff, spread = row[prefix + "diff_vs_default"], row[prefix + "spread_of_difference"]
  return f"{diff:+.{digits}} (± {spread:.{digits}}): {row[prefix + 'verdict']}"


def _storage(row: dict[str, Any]) -> str:
  """ "m and v in bfloat16", "m, s and v in bfloat16" from a summary row's storage dtypes."""
  short = {"mu": "m", "nu": "s", "precond": "v"}
  narrow = [short[f] for f, dtype in row["storage"].items() if dtype == "bfloat16"]
  if not narrow:
    return "all in float32"
  return (", ".join(narrow[:-1]) + " and " if len(narrow) > 1 else "") + narrow[-1] + " in bfloat16"


def _and(items: list[str]) -> str:
  return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _bad_seeds(model: dict[str, Any], row: dict[str, Any]) -> str:
  """The seeds that widened a config's spread, against the default's runs with the same seeds."""
  default = model["summary"][0]
  bad = row["seeds_beyond_default_range"] or [row["worst_seed"]]
  index = [row["seeds"].index(seed) for seed in bad]
  metric = _METRIC_NAMES[model["metric"]]
  others = [d for i, d in enumerate(row["paired_diff_per_seed"]) if i not in index]

  def values(summary_row: dict[str, Any], key: str, spec: str) -> str:
    return _and([format(summary_row[key][i], spec) for i in index])

  worded = "seed {} lost" if len(bad) == 1 else "seeds {} each lost"
  return (
    f"The {model['label'].split(',')[0]} with {_storage(row)} is within the seed spread only "
    f"because its own seeds spread wider: {worded.format(_and([str(s) for s in bad]))} more "
    f"{metric} than the whole range of the default's seeds ({row['default_range']:.4f}), ending "
    f"at {values(row, 'per_seed', '.4f')} against {values(default, 'per_seed', '.4f')} for the "
    f"default with the same seed (same init, data and batches; final train loss "
    f"{values(row, 'train_loss_per_seed', '.3g')} against "
    f"{values(default, 'train_loss_per_seed', '.3g')}). Measured with the default's own seed "
    f"spread, it is outside. The other seeds changed {metric} by "
    + _and([f"{d:+.4f}" for d in others])
    + "."
  )


def render_compact(results: dict[str, Any]) -> str:
  """experiments/compact/run.py: default against compact storage, per model, over seeds."""
  body, outside, caveats = [], [], []
  for model in results["models"].values():
    metric = _METRIC_NAMES[model["metric"]]
    for index, row in enumerate(model["summary"]):
      storage = " / ".join(row["storage"][f] for f in ("mu", "nu", "precond"))
      versus = loss_versus = "(the default)"
      if index:
        versus = _compact_comparison(row, "", "4f")
        loss_versus = _compact_comparison(row, "train_loss_", "2g")
        for prefix, what in (("", metric), ("train_loss_", "train loss")):
          if not row[prefix + "within_seed_spread"]:
            outside.append(f"{model['label']}, {_storage(row)}, {what}")
        if row["within_seed_spread"] and not row["within_default_spread"]:
          caveats.append(_bad_seeds(model, row))
      body.append(
        [
          f"{model['label']} ({metric})" if index == 0 else "",
          storage,
          f"{row['state_vs_adam']:.2f}",
          f"{row['mean']:.4f} ± {row['std']:.4f}",
          versus,
          f"{row['train_loss_mean']:.3g} ± {row['train_loss_std']:.2g}",
          loss_versus,
          f"{row['seconds_mean']:.0f}",
        ]
      )
  seeds = len(results["seeds"])
  table = _markdown_table(
    [
      "model (final metric)",
      "m / s / v stored in",
      "state, x optax.adam",
      f"final metric, mean ± std over {seeds} seeds",
      "minus the default (± seed spread of the difference)",
      "final train loss",
      "minus the default",
      "training seconds",
    ],
    body,
  )
  summary = (
    "By the rule above, every compact configuration is within the seed spread of the default, on "
    "the final metric and on the train loss."
    if not outside
    else "Outside the seed spread of the default: " + "; ".join(outside) + "; everything else is "
    "within it."
  )
  return (
    f"Anon (gamma 1, default guard, each example's tuned learning rate), seeds "
    f"{', '.join(map(str, results['seeds']))}; seconds are wall-clock on a shared CPU"
    + (f" ({results['cpu']}, {results['cpu_count']} cores)" if "cpu" in results else "")
    + ":\n\n"
    + table
    + "\n\n"
    + " ".join([summary, *caveats])
  )


TABLES: dict[str, Table] = {
  "digits": Table(
    results="docs/results/digits_cnn.json",
    command="python docs/make_figures.py --only digits",
    render=render_digits,
  ),
  "sharded": Table(
    results="docs/results/sharded_training.json",
    command=TABLES_SHARDED_COMMAND,
    render=render_sharded,
  ),
  "gamma-sweep": Table(
    results="docs/results/gamma_sweep.json",
    command=(
      "python examples/gamma_sweep.py --plot docs/figures/gamma_sweep.png"
      " | tail -n 1 > docs/results/gamma_sweep.json"
    ),
    render=render_gamma_sweep,
  ),
  "char-gpt": Table(
    results="docs/results/char_gpt.json",
    command=(
      "python examples/char_gpt.py --plot docs/figures/char_gpt.png"
      " | tail -n 1 > docs/results/char_gpt.json"
    ),
    render=render_char_gpt,
  ),
  "gamma-rule": Table(
    results="docs/results/gamma_sweep.json",
    command=(
      "python examples/gamma_sweep.py --plot docs/figures/gamma_sweep.png"
      " | tail -n 1 > docs/results/gamma_sweep.json"
    ),
    render=render_gamma_rule,
  ),
  "memory": Table(
    results="benchmarks/results/memory.json",
    command="python -m benchmarks.memory",
    render=render_memory,
  ),
  "memory-summary": Table(
    results="benchmarks/results/memory.json",
    command="python -m benchmarks.memory",
    render=render_memory_summary,
  ),
  "step-time": Table(results=STEP_TIME, command=STEP_TIME_COMMAND, render=render_step_time),
  "step-time-large": Table(
    results=STEP_TIME_LARGE, command=STEP_TIME_LARGE_COMMAND, render=render_step_time
  ),
  "refresh-step": Table(
    results=(STEP_TIME, STEP_TIME_LARGE),
    command=(STEP_TIME_COMMAND, STEP_TIME_LARGE_COMMAND),
    render=render_refresh_step,
  ),
  "benchmark-targets": Table(
    results=(STEP_TIME, STEP_TIME_LARGE, VMAPPED_SWEEP),
    command=(STEP_TIME_COMMAND, STEP_TIME_LARGE_COMMAND, VMAPPED_SWEEP_COMMAND),
    render=render_targets,
  ),
  "compile-time": Table(
    results="benchmarks/results/compile_time.json",
    command="python -m benchmarks.compile_time",
    render=render_compile_time,
  ),
  "vmapped-sweep": Table(
    results=VMAPPED_SWEEP, command=VMAPPED_SWEEP_COMMAND, render=render_vmapped_sweep
  ),
  "vmapped-sweep-cnn-lax": Table(
    results="benchmarks/results/vmapped_sweep_cnn_lax.json",
    command=(
      "python -m benchmarks.vmapped_sweep --model cnn_lax --rounds 2 --steps 200"
      " --name vmapped_sweep_cnn_lax"
    ),
    render=render_vmapped_sweep,
  ),
  "vmapped-sweep-mlp": Table(
    results="benchmarks/results/vmapped_sweep_mlp.json",
    command=(
      "python -m benchmarks.vmapped_sweep --model mlp --rounds 2 --steps 200"
      " --name vmapped_sweep_mlp"
    ),
    render=render_vmapped_sweep,
  ),
  "vmapped-sweep-cores": Table(
    results=(VMAPPED_SWEEP_1CORE, VMAPPED_SWEEP),
    command=(VMAPPED_SWEEP_1CORE_COMMAND, VMAPPED_SWEEP_COMMAND),
    render=render_sweep_cores,
  ),
  "vmapped-sweep-profile": Table(
    results="benchmarks/results/vmapped_sweep_profile.json",
    command=(
      "python -m benchmarks.vmapped_sweep --profile --steps 40 --name vmapped_sweep_profile"
    ),
    render=render_vmapped_profile,
  ),
  "refresh-formula": Table(
    results="experiments/notes/results/refresh_formula.json",
    command="python -m experiments.notes.refresh_formula",
    render=render_refresh_formula,
  ),
  "guard-examples": Table(
    *_guard_example_sources(),
    render=render_guard_examples,
  ),
  "compact": Table(
    results="experiments/compact/results/compact.json",
    command="python -m experiments.compact.run",
    render=render_compact,
  ),
  "compact-digits-6-seeds": Table(
    results="experiments/compact/results/compact_digits_6_seeds.json",
    command=(
      "python -m experiments.compact.run --models digits --configs default,compact-all --seeds 6"
      " --json experiments/compact/results/compact_digits_6_seeds.json"
    ),
    render=render_compact,
  ),
  "compact-digits-20-seeds": Table(
    results="experiments/compact/results/compact_digits_20_seeds.json",
    command=(
      "python -m experiments.compact.run --models digits --configs default,compact-all --seeds 20"
      " --json experiments/compact/results/compact_digits_20_seeds.json"
    ),
    render=render_compact,
  ),
  "guard-cnn": Table(
    results="experiments/guard/results/sweep.json",
    command="python -m experiments.guard.sweep --parts cnn --cnn-lrs 0.01,0.1 --update",
    render=render_guard_cnn,
  ),
  "guard-mlp": Table(
    results="experiments/guard/results/sweep.json",
    command="python -m experiments.guard.sweep --parts binding,mlp",
    render=render_guard_mlp,
  ),
  "guard-binding": Table(
    results="experiments/guard/results/sweep.json",
    command="python -m experiments.guard.sweep --parts binding,mlp",
    render=render_guard_binding,
  ),
  "guard-ablation": Table(
    results="experiments/guard/results/ablation.json",
    command=(
      "python -m experiments.guard.ablation --seeds 3 --lrs 0.01;"
      " python -m experiments.guard.ablation --seeds 3 --lrs 0.0033 --append"
    ),
    render=render_guard_ablation,
  ),
  "workloads-eps": Table(
    results=(WORKLOADS_EPS_RESULTS, WORKLOADS_RESULTS),
    command=(
      "python -m experiments.workloads.run --optimizers anon_eps1e-8,anon_eps1e-6"
      f" --json {WORKLOADS_EPS_RESULTS} --no-docs",
      "python -m experiments.workloads.run",
    ),
    render=render_workloads_eps,
  ),
}


# ----------------------------------------------------------------------------
# Regions.
# ----------------------------------------------------------------------------


def _provenance(results: Any) -> str:
  """When, where and at which commit a results file was written, from its ``machine`` record."""
  machine = results.get("machine") if isinstance(results, dict) else None
  if not isinstance(machine, dict):
    return ""
  facts = []
  if machine.get("git_commit"):
    facts.append(f"commit {machine['git_commit']}")
  if machine.get("date"):
    facts.append(machine["date"][:16].replace("T", " ") + " UTC")
  where = machine.get("cpu") or ""
  if machine.get("cpu_count"):
    usable = machine.get("cpus_usable")
    cores = f"{machine['cpu_count']} cores"
    if usable and usable != machine["cpu_count"]:
      cores += f", {usable} usable"
    where = f"{where}, {cores}" if where else cores
  if machine.get("jax_backend"):
    where += f", jax {machine.get('jax', '?')} on {machine['jax_backend']}"
  if where:
    facts.append(where)
  if machine.get("load_average"):
    facts.append("load average " + " / ".join(f"{x:g}" for x in machine["load_average"]))
  return f" ({'; '.join(facts)})" if facts else ""


def render(name: str) -> str:
  """The body of region ``name``: the table and a line naming its sources."""
  table = TABLES[name]
  loaded = {path: json.loads((ROOT / path).read_text()) for path, _ in table.sources()}
  cited = []
  for path, command in table.sources():
    results = loaded[path]
    machine = results.get("machine") if isinstance(results, dict) else None
    # A results file that records its own command line names it; otherwise the registry's.
    if isinstance(machine, dict) and machine.get("command"):
      command = machine["command"]
    cited.append(f"`{path}`{_provenance(results)}, written by `{command}`")
  source = "<sub>From " + "; ".join(cited) + ".</sub>"
  body = table.render(loaded[table.results] if isinstance(table.results, str) else loaded)
  return body + "\n\n" + source + "\n"


def markdown_files() -> list[pathlib.Path]:
  found = []
  for entry in SEARCHED:
    path = ROOT / entry
    candidates = [path] if path.is_file() else sorted(path.rglob("*.md")) if path.is_dir() else []
    found += [p for p in candidates if not SKIPPED_PARTS.intersection(p.relative_to(ROOT).parts)]
  return found


def regenerate(text: str) -> str:
  """Returns ``text`` with every generated region re-rendered from its results file."""

  def replace(match: re.Match) -> str:
    name = match["name"]
    if name not in TABLES:
      raise KeyError(f"generated region {name!r} has no entry in docs/tables.py's TABLES")
    return match["open"] + render(name) + match["close"]

  return REGION.sub(replace, text)


def stale_regions(path: pathlib.Path, text: str | None = None) -> list[str]:
  """Names of the generated regions in ``path`` (or ``text``) that differ from their results."""
  text = path.read_text() if text is None else text
  current = {m["name"]: m["body"] for m in REGION.finditer(text)}
  return [name for name, body in current.items() if body != render(name)]


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--write", action="store_true", help="rewrite the regions in place")
  args = parser.parse_args(argv)
  stale = []
  for path in markdown_files():
    text = path.read_text()
    if not REGION.search(text):
      continue
    if args.write:
      new_text = regenerate(text)
      if new_text != text:
        path.write_text(new_text)
        print(f"rewrote {path.relative_to(ROOT)}")
    else:
      stale += [f"{path.relative_to(ROOT)}: {name}" for name in stale_regions(path, text)]
  for entry in stale:
    print(f"stale: {entry} (run `python -m docs.tables --write`)", file=sys.stderr)
  return 1 if stale else 0


if __name__ == "__main__":
  sys.exit(main())
