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

`tests/test_quoted_tables.py` fails when a region no longer matches its results file. After
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
  """A quoted table: where its numbers live and how they are rendered."""

  results: str  # The results file, relative to ROOT.
  command: str  # The command that writes the results file.
  render: Callable[[Any], str]  # Results (parsed JSON) -> Markdown, without the source line.


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
  accuracies = [r["test_accuracy"] for r in results["results"]]
  losses = {r["optimizer"]: r["train_loss"] for r in results["results"]}
  spread = f"Test accuracies range from {min(accuracies):.4f} to {max(accuracies):.4f}"
  if "anon" in losses and "adam" in losses:
    ratio = losses["adam"] / losses["anon"]
    comparison = (
      f"lower than Adam's ({ratio:.1f}x)"
      if ratio >= 1
      else f"higher than Adam's ({1 / ratio:.1f}x)"
    )
    spread += f"; Anon's final train loss is {comparison} at the rates above"
  return table + "\n\n" + spread + "."


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
  grid = results["grid"]
  rows = [
    [
      f"{r['gamma']:g}",
      _rate(r["learning_rate"]),
      f"{r['test_accuracy']:.4f}",
      f"{r['train_loss']:.4f}",
    ]
    for r in results["results"]
  ]
  table = _markdown_table(["gamma", "best lr", "test accuracy", "final train loss"], rows)
  return (
    f"{len(grid['gammas'])} gammas x {len(grid['learning_rates'])} learning rates x "
    f"{grid['seeds']} seed{'s' if grid['seeds'] != 1 else ''}, {grid['epochs']} epochs each, in one vmapped program: "
    f"{results['seconds']:.1f} s including compilation.\n\n" + table
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


# The main workload suite's results: its `anon` (eps 1e-16, the default) and `adam` columns sit
# beside the eps variants of render_workloads_eps.
WORKLOADS_RESULTS = "experiments/workloads/results/workloads.json"
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


def render_workloads_eps(results: dict[str, Any]) -> str:
  """experiments/workloads/run.py with --optimizers anon_eps1e-8,anon_eps1e-6: Anon's default at
  larger eps, beside its default eps 1e-16 and Adam(W) from the main suite's results file."""
  main = json.loads((ROOT / WORKLOADS_RESULTS).read_text())
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
    f" `Adam(W)` columns of [workloads.md](workloads.md), from `{WORKLOADS_RESULTS}`.\n\n"
    + _markdown_table(headers, body)
    + "\n\n"
    + "\n".join(notes)
  )


TABLES: dict[str, Table] = {
  "digits": Table(
    results="docs/results/digits_cnn.json",
    command="python docs/make_figures.py --only digits",
    render=render_digits,
  ),
  "sharded": Table(
    results="docs/results/sharded_training.json",
    command="python examples/sharded_training.py | tail -n 1 > docs/results/sharded_training.json",
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
  "memory": Table(
    results="benchmarks/results/memory.json",
    command="python -m benchmarks.memory",
    render=render_memory,
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
    results="experiments/workloads/results/workloads_eps.json",
    command=(
      "python -m experiments.workloads.run --optimizers anon_eps1e-8,anon_eps1e-6"
      " --json experiments/workloads/results/workloads_eps.json --no-docs"
    ),
    render=render_workloads_eps,
  ),
}


# ----------------------------------------------------------------------------
# Regions.
# ----------------------------------------------------------------------------


def render(name: str) -> str:
  """The body of region ``name``: the table and a line naming its source."""
  table = TABLES[name]
  results = json.loads((ROOT / table.results).read_text())
  source = f"<sub>From `{table.results}`, written by `{table.command}`.</sub>"
  return table.render(results) + "\n\n" + source + "\n"


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
