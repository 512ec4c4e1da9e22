"""The accelerator benchmark in one command: step time, memory and bandwidth on whatever JAX sees.

One command, from the repository root::

    python -m benchmarks.gpu            # on the GPU (a few minutes on an H100)
    python -m benchmarks.gpu --smoke    # tiny sizes, 1-2 rounds: runs on a CPU in seconds

On ``jax.devices()[0]``: the step-time tables of ``benchmarks.step_time`` at 4M parameters / 40
leaves and 64M / 200 leaves (``anon``, ``anon_exact``, ``floor``, ``floor_exact``, ``adam`` and the
device's streaming copy), the memory table of ``benchmarks.memory`` at 4M / 40, and the GPU targets
at 64M: ``anon`` / ``optax.adam`` <= 1.15 and ``anon``'s bandwidth >= 0.70 of the copy's. Writes
``benchmarks/results/gpu.json`` and its tables beside it, ``gpu.md``. Nothing here is GPU-specific:
on a CPU it measures the CPU.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax

from benchmarks import common
from benchmarks import memory
from benchmarks import step_time
from tooling import machine

CONTENDERS = ("anon", "anon_exact", "floor", "floor_exact", "adam")
# (parameters, leaves, rounds, steps per window, refresh-spike rounds). From step 1000 the
# discarded warm-up window holds the refresh at t = 1024; the timed windows hold none
# (1065..1640 at 4M, 1033..1256 at 64M).
SIZES = ((4 << 20, 40, 9, 64, 5), (64 << 20, 200, 7, 32, 3))
SMOKE_SIZES = ((1 << 14, 6, 2, 4, 1), (1 << 16, 6, 1, 4, 1))
MEMORY_SIZE = (4 << 20, 40)
SMOKE_MEMORY = (1 << 14, 6)
SMOKE_MEMORY_CONTENDERS = ("anon", "anon (exact=True)", "optax.adam")
TARGETS = {  # The GPU targets, at the largest size.
  "anon_over_adam": ("<=", 1.15),
  "anon_fraction_of_copy_bandwidth": (">=", 0.70),
}


def device_info() -> dict[str, Any]:
  """The device the benchmark ran on."""
  device = jax.devices()[0]
  return dict(
    platform=device.platform, device_kind=device.device_kind, num_devices=jax.device_count()
  )


def targets(res: dict[str, Any]) -> dict[str, Any]:
  """Each target's value measured at one size (``step_time.run_size``'s result), and whether met."""
  anon = res["per_step"]["anon"]
  measured = {
    "anon_over_adam": anon["ratio_vs"].get("adam"),
    "anon_fraction_of_copy_bandwidth": anon["fraction_of_copy_bandwidth"],
  }
  out = {}
  for key, (op, bound) in TARGETS.items():
    value = measured[key]
    met = None if value is None else (value <= bound if op == "<=" else value >= bound)
    out[key] = {"measured": value, "target": f"{op} {bound}", "met": met}
  return out


def render(results: dict[str, Any]) -> str:
  """The Markdown tables of a GPU results file: step time, memory, and the targets."""
  targets_rows = [
    [key, "-" if t["measured"] is None else f"{t['measured']:.3f}", t["target"], str(t["met"])]
    for key, t in results["targets"].items()
  ]
  device = results["device"]["device_kind"]
  return (
    f"On {device}.\n\n"
    + step_time.render({"config": results["config"], "results": results["step_time"]})
    + "\n\n"
    + memory.render(results["memory"])
    + f"\n\nThe targets at {results['targets_at']}:\n\n"
    + machine.markdown_table(["ratio", "measured", "target", "met"], targets_rows)
  )


def main(argv=None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--smoke",
    action="store_true",
    help="tiny sizes (16K and 64K parameters in 6 leaves), 1-2 rounds of 4 steps, memory of three "
    "optimizers on float32 parameters: a check that it runs, not a measurement.",
  )
  parser.add_argument("--out-dir", default=str(common.RESULTS_DIR))
  parser.add_argument("--name", default="gpu")
  parser.add_argument("--quiet", action="store_true", help="no per-round log lines.")
  parser.add_argument("--render", metavar="JSON", help="only rewrite JSON's table beside it")
  args = parser.parse_args(argv)
  if args.render:
    return machine.render_results(args.render, render)
  log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))

  device = device_info()
  print(f"device: {device['device_kind']} ({device['platform']}), jax {jax.__version__}")
  results = []
  for num_params, num_leaves, rounds, window, refresh_rounds in (
    SMOKE_SIZES if args.smoke else SIZES
  ):
    t0 = machine.timer()
    res = step_time.run_size(
      num_params,
      num_leaves,
      CONTENDERS,
      rounds=rounds,
      window=window,
      refresh_rounds=refresh_rounds,
      log=log,
    )
    res["wall_s"] = machine.timer() - t0
    results.append(res)

  t0 = machine.timer()
  if args.smoke:
    memory_config, memory_results = memory.measure(
      *SMOKE_MEMORY, names=SMOKE_MEMORY_CONTENDERS, param_dtypes=("float32",)
    )
  else:
    memory_config, memory_results = memory.measure(*MEMORY_SIZE)
  memory_config["wall_s"] = machine.timer() - t0

  payload = {
    "device": device,
    "config": {**step_time.config(1000, args.smoke), "smoke": args.smoke},
    "targets_at": results[-1]["num_params_label"],
    "targets": targets(results[-1]),
    "step_time": results,
    "memory": {"config": memory_config, "results": memory_results},
  }
  machine.write_results(args.name, payload, render(payload), args.out_dir)
  return payload


if __name__ == "__main__":
  main()
