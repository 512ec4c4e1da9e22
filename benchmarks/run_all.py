"""Runs every benchmark in turn (the commands the README's tables come from).

    python benchmarks/run_all.py            # full tables (tens of minutes on 2 cores)
    python benchmarks/run_all.py --quick    # smoke configuration, JSON to /tmp

Each script also runs on its own; see benchmarks/README.md.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
SCRIPTS = ("memory.py", "compile_time.py", "refresh_formula.py", "gamma_sweep.py", "step_time.py")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--only", default="", help="comma-separated script names")
  args, rest = parser.parse_known_args()
  only = {s.strip() for s in args.only.split(",") if s.strip()}
  extra = list(rest)
  if args.quick:
    extra += ["--quick", "--out-dir", tempfile.mkdtemp(prefix="anon_bench_")]
  for script in SCRIPTS:
    if only and script not in only and script.removesuffix(".py") not in only:
      continue
    print(f"\n### python benchmarks/{script} {' '.join(extra)}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *extra], check=True)


if __name__ == "__main__":
  main()
