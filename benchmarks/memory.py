"""Optimizer memory: state bytes, and the compiled step's scratch and peak (exact).

One command::

    python -m benchmarks.memory
    python -m benchmarks.memory --render benchmarks/results/memory.json   # its table only

State: ``sum(size * itemsize)`` over ``tx.init(params)`` (via `jax.eval_shape`, so nothing is
allocated) over the same sum over the parameters; the scalar counters are why the ratios are a hair
above the round numbers.

Step: ``jax.jit(step, donate_argnums=(0, 1))`` of ``update`` + ``apply_updates``, lowered on
abstract arguments and compiled (nothing is run); from XLA's ``memory_analysis()``: ``temp``
(scratch the step needs besides its arguments and outputs) and ``peak`` = arguments + outputs that
do not alias a donated argument + temp, each per parameter byte. The scratch covers both branches of
Anon's refresh ``cond``, so it holds for normal and refresh steps alike. The ``... off`` rows are
the package with one of its XLA:CPU memory devices (:data:`DEVICES_OFF`) replaced by the plain
expression it stands for: what the device saves.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import contextlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import anon_optax
from anon_optax import _common
from benchmarks import common
from tooling import machine


def tree_bytes(tree) -> int:
  return int(
    sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))
  )


def state_ratio(tx, params) -> tuple[int, int, float]:
  state = jax.eval_shape(tx.init, params)
  sb, pb = tree_bytes(state), tree_bytes(params)
  return sb, pb, sb / pb


def step_memory(tx, params) -> tuple[int, int]:
  """(temp bytes, peak bytes) of the compiled, donated step."""
  state = jax.eval_shape(tx.init, params)

  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile()
  analysis = compiled.memory_analysis()
  peak = (
    analysis.argument_size_in_bytes
    + analysis.output_size_in_bytes
    - analysis.alias_size_in_bytes
    + analysis.temp_size_in_bytes
  )
  return int(analysis.temp_size_in_bytes), int(peak)


BF16 = jnp.bfloat16


def contenders():
  out = {
    "anon": lambda: anon_optax.anon(1e-3),
    "anon (exact=True)": lambda: anon_optax.anon(1e-3, exact=True),
    "anon (mu_dtype=bfloat16)": lambda: anon_optax.anon(1e-3, mu_dtype=BF16),
    "anon (mu, precond bfloat16)": lambda: anon_optax.anon(1e-3, mu_dtype=BF16, precond_dtype=BF16),
    "anon (mu, nu, precond bfloat16)": lambda: anon_optax.anon(
      1e-3, mu_dtype=BF16, nu_dtype=BF16, precond_dtype=BF16
    ),
    "optax.adam": lambda: optax.adam(1e-3),
    "optax.adam (mu_dtype=bfloat16)": lambda: optax.adam(1e-3, mu_dtype=jnp.bfloat16),
    "optax.adamw": lambda: optax.adamw(1e-3),
    "optax.sgd (momentum 0.9)": lambda: optax.sgd(1e-3, momentum=0.9),
    "optax.lion": lambda: optax.lion(1e-4),
    "anon_optax.hvadam": lambda: anon_optax.hvadam(1e-3),
  }
  return out


# The package's XLA:CPU memory devices, each switched off (replaced by the plain expression it
# stands for) to measure what it saves: the contender's name -> (optimizer, helper, stand-in).
DEVICES_OFF = {
  "anon, read_back_from_memory off": (
    lambda: anon_optax.anon(1e-3),
    "read_back_from_memory",
    lambda moment, like: moment,
  ),
  "anon_optax.hvadam, one_known_at_run_time off": (
    lambda: anon_optax.hvadam(1e-3),
    "one_known_at_run_time",
    lambda count, dtype: jnp.asarray(1, dtype),
  ),
  "anon_optax.hvadam, never_at_run_time off": (
    lambda: anon_optax.hvadam(1e-3),
    "never_at_run_time",
    lambda count: jnp.asarray(False),
  ),
}


@contextlib.contextmanager
def device_off(helper: str, stand_in):
  """Replaces ``anon_optax._common.<helper>`` by ``stand_in`` (and retraces) while active."""
  original = getattr(_common, helper)
  setattr(_common, helper, stand_in)
  jax.clear_caches()  # The package's jitted steps were traced with the device.
  try:
    yield
  finally:
    setattr(_common, helper, original)
    jax.clear_caches()


def measure(
  num_params: int,
  num_leaves: int,
  names: Sequence[str] | None = None,
  param_dtypes: Sequence[Any] = (jnp.float32, jnp.bfloat16),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """State bytes and the compiled step's scratch and peak of the contenders.

  Returns the ``config`` and ``results`` entries of a memory results file: one result per
  contender (``names``, a subset of :func:`contenders` that holds ``optax.adam``; default
  all) and parameter dtype, with its ``ratio_vs_adam``.
  """
  shapes = common.leaf_sizes(num_params, num_leaves)
  chosen = {n: (make, None) for n, make in contenders().items()}
  chosen.update(
    {n: (make, (helper, stand_in)) for n, (make, helper, stand_in) in DEVICES_OFF.items()}
  )
  chosen = {n: c for n, c in chosen.items() if names is None or n in names}
  results = []
  for param_dtype in param_dtypes:
    params = {f"layer_{i:03d}": jax.ShapeDtypeStruct(s, param_dtype) for i, s in enumerate(shapes)}
    for name, (make, switched_off) in chosen.items():
      tx = make()
      sb, pb, ratio = state_ratio(tx, params)
      with device_off(*switched_off) if switched_off else contextlib.nullcontext():
        temp, peak = step_memory(tx, params)
      results.append(
        {
          "optimizer": name,
          "param_dtype": jnp.dtype(param_dtype).name,
          "state_bytes": sb,
          "param_bytes": pb,
          "state_bytes_per_param_byte": ratio,
          "step_temp_bytes": temp,
          "step_peak_bytes": peak,
          "step_temp_per_param_byte": temp / pb,
          "step_peak_per_param_byte": peak / pb,
        }
      )
  by_key = {(r["optimizer"], r["param_dtype"]): r for r in results}
  for r in results:
    adam = by_key[("optax.adam", r["param_dtype"])]["state_bytes_per_param_byte"]
    r["ratio_vs_adam"] = r["state_bytes_per_param_byte"] / adam
  num_params = int(sum(np.prod(s) for s in shapes))
  return {"num_params": num_params, "num_leaves": len(shapes)}, results


def render(results: dict[str, Any]) -> str:
  """The Markdown table of a memory results file: bytes per parameter byte."""
  rows = [
    [r["optimizer"], r["param_dtype"], f"{r['state_bytes_per_param_byte']:.6f}"]
    + [f"{r['ratio_vs_adam']:.2f}", f"{r['step_temp_per_param_byte']:.4f}"]
    + [f"{r['step_peak_per_param_byte']:.3f}"]
    for r in results["results"]
  ]
  config = results["config"]
  headers = ["optimizer", "params", "state bytes / param byte", "x optax.adam"]
  return (
    f"{config['num_params']:,} parameters in {config['num_leaves']} leaves; per parameter byte: "
    "the optimizer state, and the jitted step's scratch and peak.\n\n"
    + machine.markdown_table(headers + ["step scratch", "step peak"], rows)
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", default="4M")
  parser.add_argument("--leaves", type=int, default=40)
  parser.add_argument("--quick", action="store_true", help="64K params in 12 leaves.")
  parser.add_argument("--out-dir", default=str(common.RESULTS_DIR))
  parser.add_argument("--name", default="memory")
  parser.add_argument("--render", metavar="JSON", help="only rewrite JSON's table beside it")
  args = parser.parse_args(argv)
  if args.render:
    return machine.render_results(args.render, render)
  num_params = (1 << 16) if args.quick else machine.parse_sizes(args.size)[0]
  num_leaves = 12 if args.quick else args.leaves
  config, results = measure(num_params, num_leaves)
  payload = {"config": {**config, "quick": args.quick}, "results": results}
  machine.write_results(args.name, payload, render(payload), args.out_dir)


if __name__ == "__main__":
  main()
