"""Compact optimizer-state storage against the default: its cost in accuracy, over seeds.

    python -m experiments.compact.run                  # 2 models x 3 configs x 3 seeds (~40 min)
    python -m experiments.compact.run --quick          # the examples' --quick sizes (CI, tests)
    python -m experiments.compact.run --models digits --seeds 1 --json /tmp/compact.json

Runs Anon (gamma 1, the tuned learning rate, default guard) in ``experiments/digits_comparison.py``
(the CNN of ``examples/digits_cnn.py``, 20 epochs; final test accuracy and train loss; every seed of
a configuration in one subprocess) and ``examples/char_gpt.py`` (300 steps; final validation and
train loss; one subprocess per seed), under the storage configurations of ``CONFIGS``: the default
(m, s and v in float32, 1.5x ``optax.adam``'s state with float32 parameters), m and v in bfloat16
(exactly Adam's size) and all three in bfloat16 (0.75x; s stochastically rounded). Seeds 0 .. N-1
change the initialisation and the batches alike for every configuration (the digits' train/test
split is digits_comparison's fixed one).

``results/compact.json`` and ``compact_digits_{6,20}_seeds.json`` were measured on the earlier
GELU ``examples/digits_cnn.py`` (docs/guide.md); ``compact_digits_relu*.json`` are this runner's.

Writes every run and a per-(model, config) summary to ``results/compact.json`` (with the machine,
versions, git commit, date and the command) and its table beside it, ``compact.md``, which
docs/guide.md includes (``--render JSON`` rewrites the table of a results file). A compact
configuration is **within the seed spread** of the default when the difference of the mean final
metrics is at most the seed spread of that difference, ``hypot(std_default, std_compact)``
(population std over seeds), the rule of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import numpy as np

from tooling import machine

REPO = pathlib.Path(__file__).resolve().parents[2]
RESULTS = pathlib.Path(__file__).resolve().parent / "results"
COMMAND = "python -m experiments.compact.run"


class Model(NamedTuple):
  argv: tuple[str, ...]  # After `python`, besides the seed(s) and the storage flags.
  metric: str  # The final metric compared; the train loss is recorded too.
  higher_is_better: bool
  label: str
  # True: one process runs seeds 0 .. N-1 (`--seeds N --json PATH`, experiments.digits_comparison);
  # False: one process per seed (`--seed S`, its result the last output line: the examples).
  all_seeds_in_one_run: bool = False


MODELS = {
  "digits": Model(
    ("-m", "experiments.digits_comparison", "--optimizers", "anon"),
    "test_accuracy",
    True,
    "digits CNN, 20 epochs",
    all_seeds_in_one_run=True,
  ),
  "char_gpt": Model(
    ("examples/char_gpt.py", "--optimizers", "anon", "--gammas", "1.0"),
    "val_loss",
    False,
    "char GPT, 300 steps",
  ),
}
# Storage dtypes of Anon's m (mu), s (nu) and v (precond); unset ones keep the default (float32).
CONFIGS = {
  "default": {},
  "compact": {"mu_dtype": "bfloat16", "precond_dtype": "bfloat16"},
  "compact-all": {"mu_dtype": "bfloat16", "nu_dtype": "bfloat16", "precond_dtype": "bfloat16"},
}


def command(model: Model, config: dict[str, str], seeds: list[int], quick: bool) -> list[str]:
  """The argv after `python` of one run: one seed, or all of them (``all_seeds_in_one_run``)."""
  if model.all_seeds_in_one_run:
    if seeds != list(range(len(seeds))):
      raise ValueError(f"{model.argv} runs seeds 0 .. N-1 only; got {seeds}")
    seed_flags = ["--seeds", str(len(seeds))]
  else:
    (seed,) = seeds
    seed_flags = ["--seed", str(seed)]
  flags = [f"--{k.replace('_', '-')}={v}" for k, v in config.items()]
  return [*model.argv, *seed_flags, *flags, *(["--quick"] if quick else [])]


def run_config(model: Model, config: dict[str, str], seeds: list[int], quick: bool) -> list[dict]:
  """The result rows of ``seeds`` under one storage configuration, each seed's row."""
  if model.all_seeds_in_one_run:
    with tempfile.TemporaryDirectory() as tmp:
      out = pathlib.Path(tmp) / "results.json"
      argv = command(model, config, seeds, quick)
      wall, _ = _run([*argv, "--json", str(out)])
      (row,) = json.loads(out.read_text())["results"]
    return [_row(model, "python " + " ".join(argv), run, wall / len(seeds)) for run in row["runs"]]
  rows = []
  for seed in seeds:
    argv = command(model, config, [seed], quick)
    wall, stdout = _run(argv)
    (row,) = json.loads(stdout.strip().splitlines()[-1])["results"]
    rows.append(_row(model, "python " + " ".join(argv), {"seed": seed, **row}, wall))
  return rows


def _run(argv: list[str]) -> tuple[float, str]:
  """Runs ``python *argv`` from the repository root (the package of this checkout); returns its
  wall-clock seconds and its stdout."""
  path = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
  start = time.perf_counter()
  proc = subprocess.run(
    [sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, check=False
  )
  if proc.returncode:
    raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
  return time.perf_counter() - start, proc.stdout


def _row(model: Model, command_line: str, run: dict, wall: float) -> dict:
  return {
    "command": command_line,
    "seed": run["seed"],
    model.metric: run[model.metric],
    "train_loss": run["train_loss"],
    "seconds": run["seconds"],  # The training loop (the script's timer).
    "wall_seconds": round(wall, 1),  # The whole subprocess (digits: divided among its seeds).
    "param_bytes": run["param_bytes"],
    "state_bytes": run["state_bytes"],
    "state_dtypes": run["state_dtypes"],
  }


def _mean_std(values) -> tuple[float, float]:
  values = np.asarray(values, dtype=float)
  if not np.all(np.isfinite(values)):
    return math.nan, math.nan
  return float(values.mean()), float(values.std())


def summarize(model: Model, runs: dict[str, list[dict]]) -> list[dict]:
  """One row per config: mean and std over seeds, and the comparison with the default."""
  rows = []
  for name, group in runs.items():
    metric_mean, metric_std = _mean_std([r[model.metric] for r in group])
    loss_mean, loss_std = _mean_std([r["train_loss"] for r in group])
    (state_bytes,) = {r["state_bytes"] for r in group}
    (param_bytes,) = {r["param_bytes"] for r in group}
    row = {
      "config": name,
      "storage": {f: group[0]["state_dtypes"][f] for f in ("mu", "nu", "precond")},
      "seeds": [r["seed"] for r in group],
      "metric": model.metric,
      "per_seed": [r[model.metric] for r in group],
      "mean": metric_mean,
      "std": metric_std,
      "train_loss_per_seed": [r["train_loss"] for r in group],
      "train_loss_mean": loss_mean,
      "train_loss_std": loss_std,
      "seconds_mean": float(np.mean([r["seconds"] for r in group])),
      "wall_seconds_mean": float(np.mean([r["wall_seconds"] for r in group])),
      "param_bytes": param_bytes,
      "state_bytes": state_bytes,
      # optax.adam keeps two parameter-sized arrays (and one int32 count) for float32 params.
      "state_vs_adam": state_bytes / (2 * param_bytes),
    }
    rows.append(row)
  default = rows[0]
  for row in rows[1:]:
    row.update(_compare(row, default, "", model.higher_is_better))
    row.update(_compare(row, default, "train_loss_", False))
    row.update(verdict=verdict(row), train_loss_verdict=verdict(row, "train_loss_"))
  return rows


def _compare(row: dict, default: dict, prefix: str, higher_is_better: bool) -> dict:
  """Difference of the means of ``prefix + "mean"`` and whether it is inside the seed spread.

  Also the same test with the default's std on both sides (``within_default_spread``: a config
  can be within the seed spread only because bad seeds widen its own), the change per seed
  against the default's run with the same seed (same init, data and batches), the worst seed, and
  the seeds whose change is worse than the whole range (max - min) of the default's seeds.
  """
  diff = row[prefix + "mean"] - default[prefix + "mean"]
  spread = float(np.hypot(row[prefix + "std"], default[prefix + "std"]))
  better = diff > 0 if higher_is_better else diff < 0
  sign = 1.0 if higher_is_better else -1.0
  paired = [a - b for a, b in zip(row[prefix + "per_seed"], default[prefix + "per_seed"])]
  worst = min(range(len(paired)), key=lambda i: sign * paired[i])
  default_range = max(default[prefix + "per_seed"]) - min(default[prefix + "per_seed"])
  return {
    prefix + "diff_vs_default": diff,
    prefix + "spread_of_difference": spread,
    prefix + "within_seed_spread": bool(abs(diff) <= spread),
    prefix + "better_than_default": bool(better),
    prefix + "within_default_spread": bool(abs(diff) <= math.sqrt(2) * default[prefix + "std"]),
    prefix + "paired_diff_per_seed": paired,
    prefix + "worst_seed": row["seeds"][worst],
    prefix + "default_range": default_range,
    prefix + "seeds_beyond_default_range": [
      seed for seed, d in zip(row["seeds"], paired) if -sign * d > default_range
    ],
  }


def verdict(row: dict, prefix: str = "") -> str:
  """The verdict on one compact row (``prefix="train_loss_"``: on its train loss)."""
  if row[prefix + "within_seed_spread"]:
    if not row[prefix + "within_default_spread"]:
      return "within the seed spread only through its own wider spread"
    return "within the seed spread"
  better = row[prefix + "better_than_default"]
  return ("better" if better else "worse") + " by more than the seed spread"


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="the examples' --quick sizes")
  parser.add_argument("--models", default=",".join(MODELS), help="subset of " + ",".join(MODELS))
  parser.add_argument("--configs", default=",".join(CONFIGS), help="subset of " + ",".join(CONFIGS))
  parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (default 3)")
  parser.add_argument(
    "--json",
    type=pathlib.Path,
    default=None,
    help="output (default results/compact.json, or results/compact_quick.json with --quick)",
  )
  parser.add_argument("--render", metavar="JSON", help="only rewrite JSON's table beside it")
  args = parser.parse_args(argv)
  args.models, args.configs = args.models.split(","), args.configs.split(",")
  if unknown := set(args.models) - set(MODELS) or set(args.configs) - set(CONFIGS):
    parser.error(f"unknown models or configs: {sorted(unknown)}")
  if args.seeds < 1:
    parser.error(f"--seeds must be >= 1, got {args.seeds}")
  if args.configs[0] != "default":
    parser.error("--configs must start with default (the others are compared with it)")
  if args.json is None:
    args.json = RESULTS / ("compact_quick.json" if args.quick else "compact.json")
  return args


METRIC_NAMES = {"test_accuracy": "test accuracy", "val_loss": "validation loss"}


def render(results: dict) -> str:
  """Default against compact storage, per model, over seeds; each difference from the default
  beside the seed spread of that difference."""
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
        + [f"{row['state_vs_adam']:.2f}", f"{row['mean']:.4f} ± {row['std']:.4f}", versus[0]]
        + [f"{row['train_loss_mean']:.3g} ± {row['train_loss_std']:.2g}", versus[1]]
        + [f"{row['seconds_mean']:.0f}"]
      )
  headers = ["model", "m / s / v stored in", "state, x optax.adam"]
  headers += [f"final metric, mean ± std over {len(results['seeds'])} seeds"]
  headers += ["minus the default (± seed spread)", "final train loss", "minus the default"]
  return machine.markdown_table([*headers, "training seconds"], body)


def main(argv=None) -> dict:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  if args.render:
    return machine.render_results(args.render, render)
  seeds = list(range(args.seeds))
  results = {
    "note": (
      "Anon only, gamma 1, each example's tuned learning rate and "
      + (
        "the examples' --quick sizes."
        if args.quick
        else "full default budget (digits: 20 epochs, char GPT: 300 steps), nothing reduced."
      )
      + " Seconds are wall-clock on a CPU shared with other jobs (see the load average):"
      " compare them only loosely."
    ),
    "quick": args.quick,
    "seeds": seeds,
    "configs": {name: CONFIGS[name] for name in args.configs},
    "models": {},
  }
  t0 = time.perf_counter()
  for key in args.models:
    model = MODELS[key]
    runs: dict[str, list[dict]] = {}
    for name in args.configs:
      runs[name] = run_config(model, CONFIGS[name], seeds, args.quick)
      for r in runs[name]:
        print(
          f"[{time.perf_counter() - t0:5.0f}s] {key} {name} seed {r['seed']}: "
          f"{model.metric} {r[model.metric]:.4f} train_loss {r['train_loss']:.4g} "
          f"({r['wall_seconds']:.0f}s)",
          flush=True,
        )
    results["models"][key] = {
      "label": model.label.split(",")[0] + ", --quick" if args.quick else model.label,
      "metric": model.metric,
      "higher_is_better": model.higher_is_better,
      "runs": runs,
      "summary": summarize(model, runs),
    }
    for row in results["models"][key]["summary"][1:]:
      print(
        f"{key} {row['config']} - default: {model.metric} {row['diff_vs_default']:+.4f} "
        f"(seed spread {row['spread_of_difference']:.4f}): {verdict(row)}; train loss "
        f"{row['train_loss_diff_vs_default']:+.3g} (seed spread "
        f"{row['train_loss_spread_of_difference']:.3g}): {verdict(row, 'train_loss_')}",
        flush=True,
      )
    results["seconds"] = round(time.perf_counter() - t0, 1)
    machine.write_results(args.json.stem, results, render(results), args.json.parent)
  return results


if __name__ == "__main__":
  main()
