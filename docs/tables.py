"""The tables that README.md and docs/ quote, rendered from their committed results files.

A quoted table lives in a generated region of a Markdown file:

    <!-- generated: NAME by `python -m docs.tables --write` -->
    | ... the table, rendered from the results file of NAME ... |
    <!-- end generated -->

`TABLES` maps each NAME to its results file(s), the command that writes each, and the function
that renders the region. A renderer returns Markdown tables of the file's numbers and nothing
else: what the numbers mean is written by hand next to the region. The region ends with one
fixed line naming the results file(s) and the command(s).

    python -m docs.tables           # lists the regions that differ from their results; exit 1
    python -m docs.tables --write   # rewrites every region from its results file

`tests/tooling/test_quoted_tables.py` fails when a region no longer matches its results file. After
rerunning an experiment, run the `--write` command, commit the results file with the text, and
check the hand-written prose beside the region against the new numbers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import contextlib
import io
import json
import pathlib
import re
import sys
from typing import Any, NamedTuple

from tooling import machine

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
  """A quoted table: its results file(s), relative to ROOT, and the function that renders them.

  ``render`` receives the parsed JSON of the one file, or ``{file: parsed JSON}`` for several.
  """

  results: tuple[str, ...]
  render: Callable[[Any], str]

  def sources(self) -> list[tuple[str, str]]:
    """``(results file, the command that writes it)`` pairs."""
    return [(path, COMMANDS[path]) for path in self.results]


# Number formats and the one table helper.


def table(headers: list[str], rows: list[list[str]]) -> str:
  """Rows of formatted numbers -> a Markdown table (tooling.machine's, without its print)."""
  with contextlib.redirect_stdout(io.StringIO()):
    return machine.print_table(headers, rows)


def _rate(value: float) -> str:
  """A learning rate as the docs write it: 0.01, 0.1, 1, 10, 1e-4."""
  return f"{value:g}"


def _ms(seconds: float) -> str:
  """Milliseconds with about four significant digits: 0.964, 3.373, 32.34, 173.2."""
  ms = 1e3 * seconds
  return f"{ms:.3f}" if ms < 10 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def _s(seconds: float) -> str:
  return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def _x(ratio: float | None) -> str:
  return "-" if ratio is None else f"{ratio:.2f}"


def _pm(mean: float, std: float, spec: str = ".4f", scale: float = 1.0) -> str:
  return f"{scale * mean:{spec}} ± {scale * std:{spec}}"


def _nonfinite(per_seed: list[int | None]) -> str:
  """ " (k/n non-finite)" when k of the n seeds went non-finite."""
  broken = sum(s is not None for s in per_seed)
  return f" ({broken}/{len(per_seed)} non-finite)" if broken else ""


# Examples (docs/results/*.json) and experiments.


def render_digits(results: dict[str, Any]) -> str:
  """experiments/digits_comparison.py's --json file: one row per optimizer (mean ± std over the
  seeds when there are several)."""
  seeds = {len(r["runs"]) for r in results["results"]}
  (n,) = seeds
  rows = [
    [
      r["optimizer"],
      _rate(r["learning_rate"]),
      f"{r['test_accuracy_mean']:.4f}"
      if n == 1
      else _pm(r["test_accuracy_mean"], r["test_accuracy_std"]),
      f"{sum(run['test_loss'] for run in r['runs']) / n:.4f}",
      f"{r['train_loss_mean']:.2e}",
      f"{r['seconds_mean']:.1f}",
    ]
    for r in results["results"]
  ]
  headers = ["optimizer", "learning rate", "test accuracy", "test loss", "final train loss"]
  if n > 1:
    headers = [*headers[:2], *(f"{h}, mean over {n} seeds" for h in headers[2:])]
  return table([*headers, "training seconds"], rows)


def render_sharded(results: dict[str, Any]) -> str:
  """examples/sharded_training.py's JSON line: one Anon run on a device mesh."""
  (run,) = results["results"]
  mesh = " x ".join(f"{axis}={size}" for axis, size in results["mesh"].items())
  headers = ["devices", "mesh", "gamma", "learning rate", "test accuracy", "final train loss"]
  headers += ["seconds", "state sharded like the params"]
  row = [str(results["devices"]), mesh, f"{run['gamma']:g}", _rate(run["learning_rate"])]
  row += [f"{run['test_accuracy']:.4f}", f"{run['train_loss']:.2e}", f"{run['seconds']:.1f}"]
  return table(headers, [row + [str(results["state_sharded_like_params"])]])


def render_gamma_sweep(results: dict[str, Any]) -> str:
  """examples/gamma_sweep.py's JSON line: the best learning rate per gamma."""
  rows = [
    [f"{r['gamma']:g}", _rate(r["learning_rate"])]
    + [f"{r['test_accuracy']:.4f}", f"{r['train_loss']:.4f}"]
    for r in results["results"]
  ]
  return table(["gamma", "best lr", "test accuracy", "final train loss"], rows)


GRADIENT_SIZE = 1e-2  # docs/guide.md's typical |g| for the gamma sweep's MLP.


def render_gamma_rule(results: dict[str, Any]) -> str:
  """The best rates beside docs/guide.md's rule best_lr(gamma 1) * |g|**(gamma - 1)."""
  best = {r["gamma"]: r["learning_rate"] for r in results["results"]}
  rule = {gamma: best[1.0] * GRADIENT_SIZE ** (gamma - 1) for gamma in best}
  rows = [[f"{g:g}", _rate(lr), f"{rule[g]:.2g}", f"{lr / rule[g]:.2g}"] for g, lr in best.items()]
  return table(["gamma", "measured best lr", "rule", "measured / rule"], rows)


def render_char_gpt(results: dict[str, Any]) -> str:
  """examples/char_gpt.py's JSON line: one row per optimizer (Anon once per gamma)."""
  rows = [
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
  ]
  headers = ["optimizer", "peak lr", "validation loss (nats/char)", "train loss", "seconds"]
  return table(headers, rows)


def _factor_table(rows: list[dict[str, Any]]) -> str:
  """experiments/guard/sweep.py rows: one line per guard factor, one column per rate."""
  rates = sorted({r["learning_rate"] for r in rows})
  cells = {(r["factor"], r["learning_rate"]): r for r in rows}
  names = {"adam": "optax.adam", "inf": "C = inf (exact rule)"}
  body = []
  for factor in dict.fromkeys(r["factor"] for r in rows):
    line = [names.get(factor, f"C = {factor}")]
    for lr in rates:
      r = cells.get((factor, lr))
      std = len(r["test_accuracy_per_seed"]) > 1 if r else False
      mean = f"{r['test_accuracy_mean']:.4f}" if r else ""
      line.append(mean + (f" ± {r['test_accuracy_std']:.4f}" if std else ""))
      line[-1] += _nonfinite(r["first_nonfinite_step_per_seed"]) if r else ""
    body.append(line)
  return table(["", *[f"lr {_rate(lr)}" for lr in rates]], body)


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
  headers = ["factor", "elements lowered (mean over steps)", "most in one step"]
  return table(headers + ["steps with any lowered"], rows)


def render_guard_ablation(results: dict[str, Any]) -> str:
  """experiments/guard/ablation.py: test accuracy % per (lr, a_n, rule) and beta3, mean ± std
  over the seeds, and the spread across beta3."""
  rules = [rule for rule in ("default", "exact") if rule in results["rules"]]
  first = results["rules"]["default"]["ablations"][0]
  body = []
  for index, ablation in enumerate(results["rules"]["default"]["ablations"]):
    for base in ablation["refresh_bases"]:
      for rule in rules:
        cells = results["rules"][rule]["ablations"][index]["cells"]
        row = [
          c
          for b in ablation["beta3s"]
          for c in cells
          if (c["refresh_base"], c["beta3"]) == (base, b)
        ]
        means = [100 * c["test_accuracy_mean"] for c in row]
        body.append(
          [_rate(ablation["learning_rate"]), f"{base}^(n-1)", rule]
          + [
            _pm(c["test_accuracy_mean"], c["test_accuracy_std"], ".2f", 100)
            + _nonfinite(c["first_nonfinite_step_per_seed"])
            for c in row
          ]
          + [f"{max(means) - min(means):.2f}"]
        )
  headers = ["lr", "a_n", "rule", *[f"beta3 {b:g}" for b in first["beta3s"]]]
  return table(headers + ["spread (max − min)"], body)


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


def _eps(value: float) -> str:
  """An eps as the docs write it: 1e-16, 1e-8."""
  return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{value:.0e}")


def render_workloads_eps(files: dict[str, Any]) -> str:
  """Anon's default at larger eps (workloads_eps.json) beside its default eps 1e-16 and Adam(W)
  (workloads.json): mean ± half the range over seeds of the final metric."""
  results, main = files[WORKLOADS_EPS_RESULTS], files[WORKLOADS_RESULTS]
  rows = {(r["workload"], r["optimizer"]): r for r in main["summary"] + results["summary"]}
  variants = list(dict.fromkeys(r["optimizer"] for r in results["summary"]))
  columns = ["anon", *variants, "adam"]
  done = {r["workload"] for r in results["summary"]}
  body = []
  for w in (w for w in WORKLOAD_ORDER if w in done):
    first = rows[w, "anon"]
    body.append(
      [f"`{w}`", f"{first['metric_name']} (lr {_rate(first['learning_rate'])})"]
      + [
        _pm(float(rows[w, c]["mean"]), float(rows[w, c]["spread"]), ".3f")
        + (
          f" ({rows[w, c]['nonfinite_seeds']}/{len(rows[w, c]['seeds'])} non-finite)"
          if rows[w, c]["nonfinite_seeds"]
          else ""
        )
        for c in columns
      ]
    )
  eps = [f"eps {_eps(float(v.removeprefix('anon_eps')))}" for v in variants]
  return table(["workload", "metric", "eps 1e-16 (default)", *eps, "Adam(W)"], body)


# Benchmarks (benchmarks/results/*.json).

STEP_TIME = "benchmarks/results/step_time.json"
COMPILE_TIME = "benchmarks/results/compile_time.json"
GUARD_COST = "benchmarks/results/guard_cost.json"
GUARD_COST_COMMAND = (
  "python -m benchmarks.step_time --sizes 4M,64M --contenders floor_exact,floor_read_back,"
  "floor_no_power,floor_rsqrt,floor,adam --rounds 9 --name guard_cost"
)
STEP_TIME_LARGE = "benchmarks/results/step_time_large.json"
VMAPPED_SWEEP = "benchmarks/results/vmapped_sweep.json"
VMAPPED_SWEEP_1CORE = "benchmarks/results/vmapped_sweep_1core.json"
STEP_TIME_COMMAND = (  # The commands the two step-time files record.
  "python -m benchmarks.step_time --sizes 1M,4M --contenders anon,anon_exact,"
  "anon_bf16_mu_precond,anon_bf16_all,floor,floor_exact,adam,adamw,sgd_momentum,lion,hvadam,"
  "torch,torch_1thread --rounds 7"
)
STEP_TIME_LARGE_COMMAND = (
  "python -m benchmarks.step_time --sizes 16M,64M"
  " --contenders anon,anon_exact,floor,floor_exact,adam,sgd_momentum,torch_1thread"
  " --rounds 7 --refresh-rounds 3 --start-step 1100 --name step_time_large"
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
  "copy": "copy (streaming, in place)",
}


def _ratio(per_step: dict[str, Any], name: str, base: str, paired: bool = False) -> float | None:
  """``name``'s time over ``base``'s (ratio of medians, or the median per-round ratio)."""
  if base not in per_step or name not in per_step:
    return None
  if name == base:
    return 1.0
  return per_step[name]["paired_ratio_vs" if paired else "ratio_vs"].get(base)


def _floor_of(name: str, per_step: dict[str, Any]) -> str | None:
  """The one-pass floor a contender is compared with: the exact rule's for the exact-rule
  contenders (``*_exact``), the guarded (default) floor for every other one."""
  if "exact" in name and "floor_exact" in per_step:
    return "floor_exact"
  return "floor" if "floor" in per_step else None


def render_step_time(results: dict[str, Any]) -> str:
  """benchmarks/step_time.py: one row per size and contender, every contender the file holds."""
  threads = results["config"].get("jax_threads", "?")
  sizes = results["results"]
  bases = [b for b in ("adam", "torch", "torch_1thread") if any(b in s["per_step"] for s in sizes)]
  headers = ["size / leaves", "contender", "ms/step", "x floor (paired)"]
  headers += [
    {"adam": "x adam", "torch": f"x torch ({threads} thr)"}.get(b, "x torch (1 thr)") for b in bases
  ]
  # Loops per leaf of the compiled step: only in files written since step_time.py counts them.
  loops = any("loops_per_leaf" in e for s in sizes for e in s["per_step"].values())
  rows = []
  for size in sizes:
    per = size["per_step"]
    order = [n for n in CONTENDER_LABELS if n in per and n != "copy"]
    order += [n for n in per if n not in CONTENDER_LABELS] + (["copy"] if "copy" in per else [])
    for name in order:
      entry, floor = per[name], _floor_of(name, per)
      cell = _x(_ratio(per, name, floor, paired=True)) if floor else "-"
      if floor == "floor_exact" and name != "floor_exact" and cell != "-":
        cell += " (vs floor_exact)"
      gbps, fraction = entry.get("achieved_gbps"), entry.get("fraction_of_copy_bandwidth")
      rows.append(
        [f"{size['num_params_label']} / {size['num_leaves']}"]
        + [CONTENDER_LABELS.get(name, f"`{name}`").format(threads=threads), _ms(entry["median_s"])]
        + [cell, *[_x(_ratio(per, name, b)) for b in bases]]
        + ["-" if gbps is None else f"{gbps:.1f}", _x(fraction)]
      )
      if loops:
        per_leaf = entry.get("loops_per_leaf")
        rows[-1].append("-" if per_leaf is None else f"{per_leaf:g}")
  return table(headers + ["GB/s", "x copy"] + (["loops / leaf"] if loops else []), rows)


def render_refresh_step(files: dict[str, Any]) -> str:
  """benchmarks/step_time.py's refresh-spike test (anon), every size of both files."""
  rows = []
  for size in [s for path in (STEP_TIME, STEP_TIME_LARGE) for s in files[path]["results"]]:
    if not size.get("refresh_spike"):
      continue
    normal = size["refresh_spike"]["normal_step_t1001"]
    refresh = size["refresh_spike"]["refresh_step_t1024"]
    rows.append(
      [f"{size['num_params_label']} / {size['num_leaves']}", str(len(refresh["samples_s"]))]
      + [_ms(normal["median_s"]), _ms(refresh["median_s"])]
      + [_x(refresh[k].get("normal_step_t1001")) for k in ("ratio_vs", "paired_ratio_vs")]
    )
  headers = ["size / leaves", "rounds", "normal step ms", "refresh step ms", "ratio (median)"]
  return table(headers + ["ratio (paired)"], rows)


def render_targets(files: dict[str, Any]) -> str:
  """The step-cost targets: each measured ratio beside its target (no verdict)."""
  step_time, sweep = files[STEP_TIME], files[VMAPPED_SWEEP]
  size = next((s for s in step_time["results"] if s["num_params_label"] == TARGET_SIZE), {})
  per, spike = size.get("per_step", {}), size.get("refresh_spike")
  refresh = spike["refresh_step_t1024"]["ratio_vs"].get("normal_step_t1001") if spike else None
  threads = step_time["config"].get("jax_threads", "?")
  large = next(
    (s for s in files[STEP_TIME_LARGE]["results"] if s["num_params_label"] == "64M"), {}
  ).get("per_step", {})
  rows = [
    ["`anon` / `optax.adam`", _x(_ratio(per, "anon", "adam")), "<= 1.00"],
    ["`anon` / `optax.adam`, 64M", _x(_ratio(large, "anon", "adam")), "<= 1.00"],
    ["`anon` / `floor_exact`, paired", _x(_ratio(per, "anon", "floor_exact", True)), "<= 1.25"],
    [
      "`anon` / `floor_exact`, 64M, paired",
      _x(_ratio(large, "anon", "floor_exact", True)),
      "<= 1.25",
    ],
    [
      "`anon_exact` / `floor_exact`, paired",
      _x(_ratio(per, "anon_exact", "floor_exact", True)),
      "<= 1.10",
    ],
    ["`hvadam` / `floor_exact`, paired", _x(_ratio(per, "hvadam", "floor_exact", True)), "<= 2.5"],
    ["`anon` / `floor` (its guarded floor), paired", _x(_ratio(per, "anon", "floor", True)), "-"],
    [
      f"`anon` / PyTorch per-tensor ({threads} threads)",
      _x(_ratio(per, "anon", "torch")),
      "-",
    ],
    ["refresh step / normal step", _x(refresh), "<= 3"],
    [
      "un-jitted `anon` update / `optax.adam`'s, 4 small leaves, paired",
      _x(
        files[COMPILE_TIME].get("eager", {}).get("anon", {}).get("paired_ratio_vs", {}).get("adam")
      ),
      "<= 3",
    ],
  ]
  for mode, entry in sweep["results"].items():
    gammas = len(sweep["config"]["gammas"])
    rows.append(
      [
        f"{gammas}-gamma vmapped sweep / {gammas} sequential runs ({mode}, paired)",
        _x(entry["paired_ratio_run_s"]),
        "<= 0.5",
      ]
    )
  gpu = [
    s
    for r in (step_time, files[STEP_TIME_LARGE])
    if r["machine"].get("jax_backend") == "gpu"
    for s in r["results"]
    if s["num_params_label"] == "64M"
  ]
  gper = gpu[0]["per_step"] if gpu else {}
  rows.append(["GPU, 64M: `anon` / `optax.adam`", _x(_ratio(gper, "anon", "adam")), "<= 1.15"])
  rows.append(
    [
      "GPU, 64M: `anon` bandwidth / copy's",
      _x(gper.get("anon", {}).get("fraction_of_copy_bandwidth")),
      ">= 0.70",
    ]
  )
  return table(["ratio (CPU, 4M parameters, unless named)", "measured", "target"], rows)


GUARD_COST_ROWS = {  # benchmarks/step_time.py's floor variants, as benchmarks/README.md names them.
  "floor_exact": "no guard (`floor_exact`)",
  "floor_read_back": "no guard, the new s read back (division by ones)",
  "floor_no_power": "guard with a bound that needs no power, `C * sigma`",
  "floor_rsqrt": "guard with `C * rsqrt(sigma)` (the exact power at gamma = 1)",
  "floor": "guard as the package computes it (`floor`)",
  "adam": "optax.adam",
}


def render_guard_cost(results: dict[str, Any]) -> str:
  """The guard taken apart: each floor variant against `floor_exact`, per size."""
  rows = [
    [
      f"{size['num_params_label']} / {size['num_leaves']}",
      label,
      f"{1e3 * size['per_step'][name]['median_s']:.3f}",
      _x(_ratio(size["per_step"], name, "floor_exact", True)),
      f"{size['per_step'][name].get('loops_per_leaf', float('nan')):g}",
    ]
    for size in results["results"]
    for name, label in GUARD_COST_ROWS.items()
    if name in size["per_step"]
  ]
  return table(["size / leaves", "step", "ms/step", "x floor_exact (paired)", "loops / leaf"], rows)


def render_compile_time(results: dict[str, Any]) -> str:
  """benchmarks/compile_time.py: trace + lower and XLA compile of one train step (medians)."""
  rows = [
    [model.upper(), CONTENDER_LABELS.get(name, name)]
    + [f"{1e3 * entry[k]:.0f}" for k in ("lower", "compile", "median_s")]
    + ["1.00" if name == "adam" else _x(entry["paired_ratio_vs"].get("adam"))]
    for model, per in results["results"].items()
    for name, entry in per.items()
  ]
  headers = ["model", "optimizer", "trace+lower ms", "XLA compile ms", "total ms"]
  return table(headers + ["x adam (paired)"], rows)


def render_vmapped_sweep(results: dict[str, Any]) -> str:
  """benchmarks/vmapped_sweep.py: seconds for the whole sweep, vmapped vs sequential per mode,
  then the test accuracy per gamma."""
  rows = []
  for mode, entry in results["results"].items():
    v, s = entry["vmapped"], entry["sequential"]
    rows += [
      [mode, "vmapped", _s(v["run_s"]), _s(v["compile_s"]), _s(v["total_s"]), ""],
      [mode, "sequential", _s(s["run_s"]), _s(s["compile_s"]), _s(s["total_s"])]
      + [_s(s["total_s_compile_per_gamma"])],
      [mode, "vmapped / sequential (paired)", _x(entry["paired_ratio_run_s"]), ""]
      + [_x(entry["paired_ratio_total_s"]), _x(entry["ratio_total_s_compile_per_gamma"])],
    ]
  headers = ["mode", "program", "run s", "compile s", "run + compile s"]
  timing = table(headers + ["sequential with one compile per gamma"], rows)
  accuracy = next(iter(results["results"].values()))["test_accuracy"]
  gammas = table(
    ["gamma", *[f"{float(g):g}" for g in accuracy]],
    [["test accuracy", *[f"{a:.2f}" for a in accuracy.values()]]],
  )
  return timing + "\n\n" + gammas


def render_vmapped_profile(results: dict[str, Any]) -> str:
  """benchmarks/vmapped_sweep.py --profile: matmul vs other op ms per step of the whole sweep."""
  v, s = results["results"]["vmapped"], results["results"]["sequential"]
  keys = ("matmul_ms_per_sweep_step", "other_ms_per_sweep_step")
  rows = [
    [
      label,
      str(e["calls_per_sweep_step"]),
      *[f"{e[k]:.2f}" for k in keys],
      f"{e[keys[0]] + e[keys[1]]:.2f}",
    ]
    for label, e in (("vmapped", v), ("sequential", s))
  ]
  rows.append(["sequential / vmapped", "", *[_x(s[k] / v[k]) for k in keys], ""])
  return table(["program", "calls per sweep step", "matmul ms", "other ms", "total ms"], rows)


def render_sweep_cores(files: dict[str, Any]) -> str:
  """The loop-mode sweep on one core (taskset) beside the same sweep on every core."""
  rows = []
  for path in (VMAPPED_SWEEP_1CORE, VMAPPED_SWEEP):
    loop, m = files[path]["results"]["loop"], files[path]["machine"]
    rows.append(
      [str(m.get("cpus_usable") or m.get("cpu_count")), _s(loop["vmapped"]["run_s"])]
      + [_s(loop["sequential"]["run_s"]), _x(loop["paired_ratio_run_s"])]
    )
  return table(
    ["cores", "vmapped run s", "sequential run s", "vmapped / sequential (paired)"], rows
  )


REFRESH_FORMULA_LABELS = {
  "current": "current (`hypot` form)",
  "logaddexp": "`logaddexp` form (before)",
  "power": "`hypot` form with `jnp.power(sigma, -gamma / 2)`",
  "axpy": "`0.9 * v + s` (memory traffic only)",
}


def render_refresh_formula(results: dict[str, Any]) -> str:
  """experiments/notes/refresh_formula.py: the refresh pass alone, per formulation (medians)."""
  per, diff = results["results"], results.get("max_rel_diff_vs_current", {})
  rows = [
    [REFRESH_FORMULA_LABELS.get(name, f"`{name}`"), _ms(entry["median_s"])]
    + [_x(_ratio(per, name, "current")), _x(_ratio(per, name, "axpy"))]
    + [f"{diff[name]:.1e}" if name in diff else "-"]
    for name, entry in per.items()
  ]
  return table(["formulation", "ms", "x current", "x axpy", "max rel. diff vs current"], rows)


def render_memory(results: dict[str, Any]) -> str:
  """benchmarks/memory.py: optimizer-state bytes per parameter byte."""
  rows = [
    [r["optimizer"], r["param_dtype"], f"{r['state_bytes_per_param_byte']:.6f}"]
    + [f"{r['ratio_vs_adam']:.2f}", f"{r['step_temp_per_param_byte']:.4f}"]
    + [f"{r['step_peak_per_param_byte']:.3f}"]
    for r in results["results"]
  ]
  headers = ["optimizer", "params", "state bytes / param byte", "x optax.adam"]
  return table(headers + ["step scratch / param byte", "step peak / param byte"], rows)


def render_memory_summary(results: dict[str, Any]) -> str:
  """benchmarks/memory.py, the package's rows: state and step scratch against optax.adam."""
  cells: dict[str, dict[str, Any]] = {}
  for r in results["results"]:
    if r["optimizer"].startswith("anon"):  # anon's options and anon_optax.hvadam
      cells.setdefault(r["optimizer"], {})[r["param_dtype"]] = r
  dtypes = list(dict.fromkeys(r["param_dtype"] for r in results["results"]))
  headers = ["optimizer", *[f"state x optax.adam ({d} params)" for d in dtypes]]
  headers += [f"step scratch / param byte ({d} params)" for d in dtypes]
  body = [
    [name]
    + [f"{c[d]['ratio_vs_adam']:.2f}" if d in c else "-" for d in dtypes]
    + [f"{c[d]['step_temp_per_param_byte']:.2f}" if d in c else "-" for d in dtypes]
    for name, c in cells.items()
  ]
  return table(headers, body)


GUARD_EXAMPLES = {
  # run -> (command, default-guard results file, exact-rule results file)
  "digits CNN (ReLU), Anon gamma 1, 20 epochs": (
    "python -m experiments.digits_comparison --optimizers anon [--exact]",
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
GUARD_SWEEP = "experiments/guard/results/sweep.json"


def _anon_row(results: dict[str, Any], exact: bool) -> dict[str, Any]:
  (row,) = [
    r
    for r in results["results"]
    if r["optimizer"] == "anon" and bool(r.get("exact")) == exact and r.get("gamma", 1.0) == 1.0
  ]
  return row


def _anon_cell(row: dict[str, Any]) -> str:
  if "val_loss" in row:
    return f"val loss {row['val_loss']:.3f}, train loss {row['train_loss']:.3f}"
  if "runs" in row:  # experiments/digits_comparison.py: means over its seeds (here one).
    return f"test accuracy {row['test_accuracy_mean']:.4f}, train loss {row['train_loss_mean']:.2e}"
  return f"test accuracy {row['test_accuracy']:.4f}, train loss {row['train_loss']:.2e}"


def render_guard_examples(files: dict[str, Any]) -> str:
  """The examples' Anon runs under the default guard beside the same runs with exact=True."""
  rows = []
  for run, (command, default, exact) in GUARD_EXAMPLES.items():
    default_row, exact_row = _anon_row(files[default], False), _anon_row(files[exact], True)
    rows.append(
      [run, f"`{command}`", _rate(default_row["learning_rate"])]
      + [_anon_cell(default_row), _anon_cell(exact_row)]
    )
  return table(["run", "command", "lr", "default guard", "exact rule"], rows)


METRIC_NAMES = {"test_accuracy": "test accuracy", "val_loss": "validation loss"}


def render_compact(results: dict[str, Any]) -> str:
  """experiments/compact/run.py: default against compact storage, per model, over seeds; each
  difference from the default beside the seed spread of that difference."""
  body = []
  for model in results["models"].values():
    for index, row in enumerate(model["summary"]):
      versus = ["-", "-"]
      if index:
        versus = [
          f"{row[p + 'diff_vs_default']:+.{d}} (± {row[p + 'spread_of_difference']:.{d}})"
          for p, d in (("", "4f"), ("train_loss_", "2g"))
        ]
      body.append(
        [f"{model['label']} ({METRIC_NAMES[model['metric']]})" if index == 0 else ""]
        + [" / ".join(row["storage"][f] for f in ("mu", "nu", "precond"))]
        + [f"{row['state_vs_adam']:.2f}", _pm(row["mean"], row["std"]), versus[0]]
        + [f"{row['train_loss_mean']:.3g} ± {row['train_loss_std']:.2g}", versus[1]]
        + [f"{row['seconds_mean']:.0f}"]
      )
  headers = ["model", "m / s / v stored in", "state, x optax.adam"]
  headers += [f"final metric, mean ± std over {len(results['seeds'])} seeds"]
  headers += ["minus the default (± seed spread)", "final train loss", "minus the default"]
  return table(headers + ["training seconds"], body)


# Every results file a table reads -> the command that writes it.
COMMANDS = {
  "docs/results/digits_cnn.json": "python docs/make_figures.py --only digits",
  "docs/results/sharded_training.json": (
    "python examples/sharded_training.py | tail -n 1 > docs/results/sharded_training.json"
  ),
  "docs/results/gamma_sweep.json": (
    "python examples/gamma_sweep.py --plot docs/figures/gamma_sweep.png"
    " | tail -n 1 > docs/results/gamma_sweep.json"
  ),
  "docs/results/char_gpt.json": (
    "python examples/char_gpt.py --plot docs/figures/char_gpt.png"
    " | tail -n 1 > docs/results/char_gpt.json"
  ),
  "benchmarks/results/memory.json": "python -m benchmarks.memory",
  STEP_TIME: STEP_TIME_COMMAND,
  STEP_TIME_LARGE: STEP_TIME_LARGE_COMMAND,
  GUARD_COST: GUARD_COST_COMMAND,
  VMAPPED_SWEEP: "python -m benchmarks.vmapped_sweep --rounds 3 --steps 200",
  VMAPPED_SWEEP_1CORE: (
    "taskset -c 0 python -m benchmarks.vmapped_sweep --modes loop --rounds 3 --steps 200"
    " --name vmapped_sweep_1core"
  ),
  "benchmarks/results/compile_time.json": "python -m benchmarks.compile_time",
  "benchmarks/results/vmapped_sweep_cnn_lax.json": (
    "python -m benchmarks.vmapped_sweep --model cnn_lax --rounds 2 --steps 200"
    " --name vmapped_sweep_cnn_lax"
  ),
  "benchmarks/results/vmapped_sweep_mlp.json": (
    "python -m benchmarks.vmapped_sweep --model mlp --rounds 2 --steps 200 --name vmapped_sweep_mlp"
  ),
  "benchmarks/results/vmapped_sweep_profile.json": (
    "python -m benchmarks.vmapped_sweep --profile --steps 40 --name vmapped_sweep_profile"
  ),
  "experiments/notes/results/refresh_formula.json": "python -m experiments.notes.refresh_formula",
  "experiments/compact/results/compact.json": "python -m experiments.compact.run",
  **{
    f"experiments/compact/results/compact_digits_{n}_seeds.json": (
      f"python -m experiments.compact.run --models digits --configs default,compact-all --seeds {n}"
      f" --json experiments/compact/results/compact_digits_{n}_seeds.json"
    )
    for n in (6, 20)
  },
  "experiments/compact/results/compact_digits_relu.json": (
    "python -m experiments.compact.run --models digits"
    " --json experiments/compact/results/compact_digits_relu.json"
  ),
  "experiments/compact/results/compact_digits_relu_20_seeds.json": (
    "python -m experiments.compact.run --models digits --configs default,compact-all --seeds 20"
    " --json experiments/compact/results/compact_digits_relu_20_seeds.json"
  ),
  GUARD_SWEEP: (
    "python -m experiments.guard.sweep --parts binding,mlp;"
    " python -m experiments.guard.sweep --parts cnn --cnn-lrs 0.01,0.1 --update"
  ),
  "experiments/guard/results/ablation.json": (
    "python -m experiments.guard.ablation --seeds 3 --lrs 0.01;"
    " python -m experiments.guard.ablation --seeds 3 --lrs 0.0033 --append"
  ),
  **{
    # An experiment writes its results file with --json; an example's is its last output line.
    path: command.replace(" [--exact]", flag)
    + (f" --json {path}" if command.startswith("python -m ") else f" | tail -n 1 > {path}")
    for command, *paths in GUARD_EXAMPLES.values()
    for path, flag in zip(paths, ("", " --exact"))
    if path.startswith("experiments/")
  },
  WORKLOADS_EPS_RESULTS: (
    "python -m experiments.workloads.run --optimizers anon_eps1e-8,anon_eps1e-6"
    f" --json {WORKLOADS_EPS_RESULTS} --no-docs"
  ),
  WORKLOADS_RESULTS: "python -m experiments.workloads.run",
}
COMPACT = "experiments/compact/results/compact{}.json"
VMAPPED = "benchmarks/results/vmapped_sweep{}.json"

TABLES: dict[str, Table] = {
  "digits": Table(("docs/results/digits_cnn.json",), render_digits),
  "sharded": Table(("docs/results/sharded_training.json",), render_sharded),
  "gamma-sweep": Table(("docs/results/gamma_sweep.json",), render_gamma_sweep),
  "gamma-rule": Table(("docs/results/gamma_sweep.json",), render_gamma_rule),
  "char-gpt": Table(("docs/results/char_gpt.json",), render_char_gpt),
  "memory": Table(("benchmarks/results/memory.json",), render_memory),
  "memory-summary": Table(("benchmarks/results/memory.json",), render_memory_summary),
  "step-time": Table((STEP_TIME,), render_step_time),
  "step-time-large": Table((STEP_TIME_LARGE,), render_step_time),
  "refresh-step": Table((STEP_TIME, STEP_TIME_LARGE), render_refresh_step),
  "benchmark-targets": Table(
    (STEP_TIME, STEP_TIME_LARGE, VMAPPED_SWEEP, COMPILE_TIME), render_targets
  ),
  "compile-time": Table((COMPILE_TIME,), render_compile_time),
  "guard-cost": Table((GUARD_COST,), render_guard_cost),
  "vmapped-sweep": Table((VMAPPED_SWEEP,), render_vmapped_sweep),
  "vmapped-sweep-cnn-lax": Table((VMAPPED.format("_cnn_lax"),), render_vmapped_sweep),
  "vmapped-sweep-mlp": Table((VMAPPED.format("_mlp"),), render_vmapped_sweep),
  "vmapped-sweep-cores": Table((VMAPPED_SWEEP_1CORE, VMAPPED_SWEEP), render_sweep_cores),
  "vmapped-sweep-profile": Table((VMAPPED.format("_profile"),), render_vmapped_profile),
  "refresh-formula": Table(
    ("experiments/notes/results/refresh_formula.json",), render_refresh_formula
  ),
  "guard-examples": Table(
    tuple(p for _, *paths in GUARD_EXAMPLES.values() for p in paths), render_guard_examples
  ),
  "compact": Table((COMPACT.format(""),), render_compact),
  "compact-digits-6-seeds": Table((COMPACT.format("_digits_6_seeds"),), render_compact),
  "compact-digits-20-seeds": Table((COMPACT.format("_digits_20_seeds"),), render_compact),
  "compact-digits-relu": Table((COMPACT.format("_digits_relu"),), render_compact),
  "compact-digits-relu-20-seeds": Table((COMPACT.format("_digits_relu_20_seeds"),), render_compact),
  "guard-cnn": Table((GUARD_SWEEP,), lambda results: _factor_table(results["cnn"])),
  "guard-mlp": Table((GUARD_SWEEP,), lambda results: _factor_table(results["mlp"])),
  "guard-binding": Table((GUARD_SWEEP,), render_guard_binding),
  "guard-ablation": Table(("experiments/guard/results/ablation.json",), render_guard_ablation),
  "workloads-eps": Table((WORKLOADS_EPS_RESULTS, WORKLOADS_RESULTS), render_workloads_eps),
}


def render(name: str) -> str:
  """The body of region ``name``: its tables and one fixed line naming the sources."""
  entry = TABLES[name]
  loaded = {path: json.loads((ROOT / path).read_text()) for path in entry.results}
  body = entry.render(loaded if len(loaded) > 1 else loaded[entry.results[0]])
  cited = "; ".join(
    f"`{path}`{_measured_on(loaded[path])}, written by `{command}`"
    for path, command in entry.sources()
  )
  return f"{body}\n\n<sub>From {cited}.</sub>\n"


def _measured_on(results: dict) -> str:
  """`` (CPU, commit)`` where the results file records them: ratios differ between CPUs."""
  machine_info = results.get("machine", {}) if isinstance(results, dict) else {}
  facts = [machine_info.get(key) for key in ("cpu", "git_commit")]
  facts = [str(fact) for fact in facts if fact]
  return f" ({', '.join(facts)})" if facts else ""


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
