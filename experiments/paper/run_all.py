"""Regenerates docs/RESULTS.md, its figures and a results JSON: the paper's claims, small scale.

Run from the repository root (or with the repository root on ``PYTHONPATH``)::

    python -m experiments.paper.run_all               # full default run (<= 45 min, 2-core CPU)
    python -m experiments.paper.run_all --parts lm    # one part only (lm, vision, idu, gamma)
    python -m experiments.paper.run_all --quick --results-md /tmp/x/RESULTS.md \
        --figures-dir /tmp/x/figures --json /tmp/x/r.json                         # CI
    python -m experiments.paper.run_all --from-json experiments/paper/results/paper.json
                                                      # re-render the page and figures only

Outputs default to paths inside the repository (found from this file, not the working
directory): ``docs/RESULTS.md``, ``experiments/paper/figures/paper_*.png`` and
``experiments/paper/results/paper[_quick].json``.

Parts (see lm.py and vision.py): the char-GPT language-model table (Anon gamma 1.0/1.1/1.15 vs
AdamW, Lion, Muon), Anon vs Adam vs SGD on the digits CNN, the IDU ablation (beta3 x
refresh_base) and the adaptivity curve (gamma from -0.5 to 1.5). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

import jax

from experiments.paper import lm
from experiments.paper import report
from experiments.paper import vision

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMMAND = "python -m experiments.paper.run_all"
PARTS = ("lm", "vision", "idu", "gamma")

CONFIGS = {
  "default": {
    "seeds": 3,
    "lm": {
      "steps": 300,
      "batch_size": 16,
      "context": 64,
      "width": 64,
      "layers": 2,
      "heads": 4,
      "evals": 4,
      "max_chars": None,
    },
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
    "lm": {
      "steps": 16,
      "batch_size": 4,
      "context": 16,
      "width": 16,
      "layers": 1,
      "heads": 2,
      "evals": 2,
      "max_chars": 100_000,
    },
    "vision": {"width": 4, "hidden": 16, "epochs": 1, "batch_size": 64},
    "idu": {"beta3s": (0.1, 0.5, 0.9), "refresh_bases": (2, 3, 4), "lr_factors": (1,)},
    "gamma": {"gammas": (-0.5, 0.5, 1.5), "lrs": (1e-2, 1e-1), "hidden": 16, "epochs": 1},
  },
}


def hardware() -> dict:
  cpu = platform.processor() or "unknown"
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  dev = jax.devices()[0]
  return {
    "cpu": cpu,
    "cores": os.cpu_count(),
    "platform": dev.platform,
    "device": getattr(dev, "device_kind", str(dev)),
    "python": platform.python_version(),
    "load_average_start": [round(x, 2) for x in os.getloadavg()],
  }


def versions() -> dict:
  import flax
  import optax

  from anon_optax import __version__ as anon_optax_version

  return {
    "jax": jax.__version__,
    "optax": optax.__version__,
    "flax": flax.__version__,
    "anon_optax": anon_optax_version,
  }


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="tiny sizes, a few minutes (CI)")
  parser.add_argument(
    "--results-md",
    default=str(ROOT / "docs" / "RESULTS.md"),
    help="the page to write (default: docs/RESULTS.md)",
  )
  parser.add_argument(
    "--figures-dir",
    default=str(HERE / "figures"),
    help="where paper_*.png go (default: experiments/paper/figures/)",
  )
  parser.add_argument(
    "--json",
    default=None,
    help="results JSON (default experiments/paper/results/paper[_quick].json)",
  )
  parser.add_argument("--parts", default=",".join(PARTS), help="subset of " + ",".join(PARTS))
  parser.add_argument(
    "--from-json",
    default=None,
    metavar="PATH",
    help="only re-render RESULTS.md and the figures from a saved results JSON",
  )
  args = parser.parse_args(argv)
  if args.from_json:
    results = json.loads(pathlib.Path(args.from_json).read_text())
    print(
      report.write(
        results,
        pathlib.Path(args.results_md),
        pathlib.Path(args.figures_dir),
        pathlib.Path(args.from_json),
      )
    )
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
  command = COMMAND + (" --quick" if args.quick else "")
  if args.parts != ",".join(PARTS):
    command += f" --parts {args.parts}"
  seeds = list(range(cfg["seeds"]))

  def log(msg: str) -> None:
    print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

  t0 = time.perf_counter()
  results = {
    "mode": mode,
    "command": command,
    "config": cfg,
    "parts": parts,
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "hardware": hardware(),
    "versions": versions(),
    "seconds": {},
  }
  log(f"paper benchmarks, mode={mode}, parts={parts}, {results['hardware']}")

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
      lr = next(r for r in results["vision"]["rows"] if r["optimizer"] == "anon")[
        "best_learning_rate"
      ]
    t = time.perf_counter()
    ablations = []
    for f in cfg["idu"]["lr_factors"]:
      log(f"IDU ablation at lr={lr * f:g}")
      ablations.append(
        vision.idu_ablation(
          runner,
          seeds,
          float(f"{lr * f:.2g}"),
          log=log,
          beta3s=cfg["idu"]["beta3s"],
          refresh_bases=cfg["idu"]["refresh_bases"],
        )
      )
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
  results["hardware"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

  json_path.parent.mkdir(parents=True, exist_ok=True)
  json_path.write_text(json.dumps(results, indent=1, default=float) + "\n")
  md = report.write(
    results, pathlib.Path(args.results_md), pathlib.Path(args.figures_dir), json_path
  )
  log(
    f"wrote {json_path}, {md} and figures in {args.figures_dir} "
    f"(total {results['seconds']['total']:.0f}s)"
  )
  return results


if __name__ == "__main__":
  main()
