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
import pathlib
import re
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


def render_guard_ablation(results: dict[str, Any]) -> str:
  """experiments/guard/ablation.py: the IDU ablation, default guard beside the exact rule."""
  rules = results["rules"]
  parts = []
  for index, ablation in enumerate(rules["default"]["ablations"]):
    beta3s = ablation["beta3s"]
    body = []
    for base in ablation["refresh_bases"]:
      for rule, label in (("default", "default"), ("exact", "exact")):
        if rule not in rules:
          continue
        cells = {
          c["beta3"]: c
          for c in rules[rule]["ablations"][index]["cells"]
          if c["refresh_base"] == base
        }
        body.append(
          [f"{base}^n", label]
          + [
            f"{100 * cells[b]['test_accuracy_mean']:.2f}"
            + (f" ± {100 * cells[b]['test_accuracy_std']:.2f}" if len(results["seeds"]) > 1 else "")
            for b in beta3s
          ]
        )
    seeds = len(results["seeds"])
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    parts.append(
      f"lr {_rate(ablation['learning_rate'])}, test accuracy %, {spread}:\n\n"
      + _markdown_table(["a_n", "rule", *[f"beta3 {b:g}" for b in beta3s]], body)
    )
  return "\n\n".join(parts)


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
    f"{', '.join(map(str, results['seeds']))}; seconds are wall-clock on a shared CPU:\n\n"
    + table
    + "\n\n"
    + " ".join([summary, *caveats])
  )


def render_compact_summary(results: dict[str, Any]) -> str:
  """experiments/compact/run.py in one sentence per compact configuration (for the README)."""
  models = list(results["models"].values())
  sentences = []
  for index in range(1, len(models[0]["summary"])):
    rows = [model["summary"][index] for model in models]
    effects = []
    for model, row in zip(models, rows):
      effect = (
        f"the {model['label'].split(',')[0]}'s final {_METRIC_NAMES[model['metric']]} moves by "
        f"{row['diff_vs_default']:+.4f} (seed spread of the difference "
        f"{row['spread_of_difference']:.4f}: {row['verdict']}"
      )
      if not row["within_default_spread"]:
        bad = row["seeds_beyond_default_range"] or [row["worst_seed"]]
        index = [row["seeds"].index(seed) for seed in bad]
        default = model["summary"][0]["per_seed"]
        effect += (
          f"; {'seed' if len(bad) == 1 else 'seeds'} {_and([str(b) for b in bad])}: "
          + _and([f"{row['per_seed'][i]:.4f}" for i in index])
          + " against "
          + _and([f"{default[i]:.4f}" for i in index])
          + " for the default"
        )
      effects.append(effect + ")")
    state = f"{rows[0]['state_vs_adam']:.2f}x `optax.adam`'s state"
    sentences.append(f"With {_storage(rows[0])} ({state}), " + " and ".join(effects) + ".")
  seeds = len(results["seeds"])
  return f"Over {seeds} seeds, against the default storage. " + " ".join(sentences)


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
  "compact-summary": Table(
    results="experiments/compact/results/compact.json",
    command="python -m experiments.compact.run",
    render=render_compact_summary,
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
    command="python -m experiments.guard.ablation --seeds 1 --lrs 0.01 --beta3s 0.1,0.5,0.9",
    render=render_guard_ablation,
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
