"""Runs every benchmark in turn (the commands the tables of benchmarks/README.md come from).

From the repository root (or with it on ``PYTHONPATH``)::

    python -m benchmarks                  # full tables (tens of minutes on 2 cores)
    python -m benchmarks --quick          # smoke configuration, JSON to a temporary directory
    python -m benchmarks --only memory,step_time

Each benchmark also runs on its own: ``python -m benchmarks.<name>``.
"""

import argparse
import subprocess
import sys
import tempfile

BENCHMARKS = ("memory", "compile_time", "vmapped_sweep", "step_time")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--only", default=",".join(BENCHMARKS), help="subset of the default")
  args, extra = parser.parse_known_args()
  only = [s.strip() for s in args.only.split(",") if s.strip()]
  if unknown := set(only) - set(BENCHMARKS):
    parser.error(f"--only: unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS}")
  if args.quick:
    extra += ["--quick", "--out-dir", tempfile.mkdtemp(prefix="anon_bench_")]
  for name in [b for b in BENCHMARKS if b in only]:
    print(f"\n### python -m benchmarks.{name} {' '.join(extra)}", flush=True)
    subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *extra], check=True)


if __name__ == "__main__":
  main()
