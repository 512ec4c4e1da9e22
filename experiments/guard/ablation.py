"""The IDU ablation of the paper reproduction under the default guard and under the exact rule.

Run from the repository root::

    python -m experiments.guard.ablation              # writes results/ablation.json and .md
    python -m experiments.guard.ablation --render experiments/guard/results/ablation.json
    python -m experiments.guard.ablation --seeds 1 --lrs 0.01 --json /tmp/a.json   # shorter
    python -m experiments.guard.ablation --lrs 0.01 && \
      python -m experiments.guard.ablation --lrs 0.0033 --append       # the same, in two parts

The digits CNN and budget of ``python -m experiments.paper.run_all`` (its default vision config: the
program of ``experiments.paper.vision.DigitsRunner``), Anon with gamma 1 over beta3 in {0.1, ...,
0.9} x refresh sequences a_n = base^(n-1), base in {2, 3, 4}, at the learning rate the paper
reproduction selected (0.01) and a third of it; once with the default guard (``guard_factor`` C =
10) and once with C = inf, the authors' rule (the rule of ``exact=True``; passed as a traced inf, so
both rules share one compiled program: ``experiments.guard.sweep``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

from experiments.guard import sweep
from experiments.paper import run_all
from experiments.paper import vision
from tooling import data as datasets
from tooling import machine

HERE = pathlib.Path(__file__).resolve().parent


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--lrs", default="0.01,0.0033")
  parser.add_argument("--beta3s", default=None, help="default: the paper reproduction's five")
  parser.add_argument("--json", default=str(HERE / "results" / "ablation.json"))
  parser.add_argument(
    "--append",
    action="store_true",
    help="keep the other learning rates already in --json (run with the same seeds, beta3s, "
    "config and versions) and add these",
  )
  parser.add_argument("--render", metavar="JSON", help="only rewrite JSON's table beside it")
  args = parser.parse_args(argv)
  if args.render:
    return machine.render_results(args.render, render)
  path = pathlib.Path(args.json)
  cfg = run_all.CONFIGS["default"]
  seeds = list(range(args.seeds))
  lrs = [float(x) for x in args.lrs.split(",")]
  command = "python -m experiments.guard.ablation"
  beta3s = (
    tuple(float(b) for b in args.beta3s.split(",")) if args.beta3s else tuple(cfg["idu"]["beta3s"])
  )
  if args.seeds != 3 or args.lrs != "0.01,0.0033" or args.beta3s:
    command += f" --seeds {args.seeds} --lrs {args.lrs}"
    command += f" --beta3s {args.beta3s}" if args.beta3s else ""
  prior = json.loads(path.read_text()) if args.append else None
  if prior is not None:
    command += " --append"
    kept = [a for a in prior["rules"]["default"]["ablations"] if a["learning_rate"] not in lrs]
    mismatch = [
      name
      for name, theirs, ours in (
        ("seeds", prior["seeds"], seeds),
        ("config", prior["config"], cfg["vision"]),
        ("versions", prior["versions"], run_all.versions()),
        ("beta3s", {tuple(a["beta3s"]) for a in kept} | {beta3s}, {beta3s}),
      )
      if theirs != ours
    ]
    if mismatch:
      parser.error(f"--append: {args.json} differs from this run in {', '.join(mismatch)}")
  digits = vision.DigitsRunner(**cfg["vision"], data=datasets.load_digits())
  rules = {"default": vision.GUARD_FACTOR, "exact": float("inf")}
  results = {
    "command": command,
    "config": cfg["vision"],
    "seeds": seeds,
    "versions": run_all.versions(),
    "rules": {rule: {"guard_factor": sweep.label(f), "ablations": []} for rule, f in rules.items()},
  }
  seconds = 0.0
  if prior is not None:
    results["command"] = f"{prior['command']}; {command}"
    seconds = prior["seconds"]
    for rule in rules:
      results["rules"][rule]["ablations"] = [
        a for a in prior["rules"][rule]["ablations"] if a["learning_rate"] not in lrs
      ]
  t0 = time.perf_counter()
  for lr in lrs:
    cells = {rule: [] for rule in rules}
    for base in cfg["idu"]["refresh_bases"]:
      for beta3 in beta3s:
        for rule, factor in rules.items():
          outs = [
            digits.run("anon", s, lr=lr, factor=factor, beta3=beta3, refresh_base=base)
            for s in seeds
          ]
          cells[rule].append({"refresh_base": base, "beta3": beta3, **sweep.summary(outs)})
          print(
            f"[{time.perf_counter() - t0:5.0f}s] lr {lr:g} {base}^n beta3 {beta3:g} {rule}: "
            f"{cells[rule][-1]['test_accuracy_mean']:.4f}",
            flush=True,
          )
    for rule in rules:
      results["rules"][rule]["ablations"].append(
        {
          "learning_rate": lr,
          "beta3s": list(beta3s),
          "refresh_bases": list(cfg["idu"]["refresh_bases"]),
          "cells": cells[rule],
        }
      )
    results["seconds"] = round(seconds + time.perf_counter() - t0, 1)
    machine.write_results(path.stem, results, render(results), path.parent)
  return results


def render(results: dict) -> str:
  """Test accuracy % per (lr, a_n, rule) and beta3, mean ± std over the seeds, and the spread
  across beta3."""
  rules = [rule for rule in ("default", "exact") if rule in results["rules"]]
  ablations = results["rules"]["default"]["ablations"]
  body = []
  for index, ablation in enumerate(ablations):
    for base in ablation["refresh_bases"]:
      for rule in rules:
        cells = {
          c["beta3"]: c
          for c in results["rules"][rule]["ablations"][index]["cells"]
          if c["refresh_base"] == base
        }
        row = [cells[b] for b in ablation["beta3s"]]
        means = [100 * c["test_accuracy_mean"] for c in row]
        body.append(
          [f"{ablation['learning_rate']:g}", f"{base}^(n-1)", rule]
          + [
            f"{100 * c['test_accuracy_mean']:.2f} ± {100 * c['test_accuracy_std']:.2f}"
            + sweep.nonfinite(c["first_nonfinite_step_per_seed"])
            for c in row
          ]
          + [f"{max(means) - min(means):.2f}"]
        )
  headers = ["lr", "a_n", "rule", *[f"beta3 {b:g}" for b in ablations[0]["beta3s"]]]
  return machine.markdown_table([*headers, "spread (max − min)"], body)


if __name__ == "__main__":
  main()
