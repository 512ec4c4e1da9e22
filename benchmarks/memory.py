"""Optimizer-state memory: bytes of state per byte of parameters (exact).

One command::

    python -m benchmarks.memory

Counts every leaf of ``tx.init(params)`` (via `jax.eval_shape`, so nothing is
allocated): ``sum(size * itemsize)`` over the state, divided by the same sum
over the parameters. Scalar counters are included (they are why the ratios
are a hair above the round numbers on small trees).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import anon_optax
from benchmarks import common


def tree_bytes(tree) -> int:
  return int(sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(tree)))


def state_ratio(tx, params) -> tuple[int, int, float]:
  state = jax.eval_shape(tx.init, params)
  sb, pb = tree_bytes(state), tree_bytes(params)
  return sb, pb, sb / pb


def contenders():
  out = {
      "anon": lambda: anon_optax.anon(1e-3),
      "anon (mu_dtype=bfloat16)": lambda: anon_optax.anon(1e-3, mu_dtype=jnp.bfloat16),
      "optax.adam": lambda: optax.adam(1e-3),
      "optax.adam (mu_dtype=bfloat16)": lambda: optax.adam(1e-3, mu_dtype=jnp.bfloat16),
      "optax.adamw": lambda: optax.adamw(1e-3),
      "optax.sgd (momentum 0.9)": lambda: optax.sgd(1e-3, momentum=0.9),
      "optax.lion": lambda: optax.lion(1e-4),
      "anon_optax.hvadam": lambda: anon_optax.hvadam(1e-3),
  }
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", default="4M")
  parser.add_argument("--leaves", type=int, default=40)
  parser.add_argument("--quick", action="store_true", help="64K params in 12 leaves.")
  parser.add_argument("--out-dir", default=None)
  parser.add_argument("--name", default="memory")
  args = parser.parse_args(argv)
  num_params = (1 << 16) if args.quick else common.parse_sizes(args.size)[0]
  num_leaves = 12 if args.quick else args.leaves
  shapes = common.leaf_sizes(num_params, num_leaves)

  results = []
  for param_dtype in (jnp.float32, jnp.bfloat16):
    params = {f"layer_{i:03d}": jax.ShapeDtypeStruct(s, param_dtype)
              for i, s in enumerate(shapes)}
    for name, make in contenders().items():
      sb, pb, ratio = state_ratio(make(), params)
      results.append({"optimizer": name, "param_dtype": jnp.dtype(param_dtype).name,
                      "state_bytes": sb, "param_bytes": pb,
                      "state_bytes_per_param_byte": ratio})

  by_key = {(r["optimizer"], r["param_dtype"]): r for r in results}
  rows = []
  for r in results:
    adam = by_key[("optax.adam", r["param_dtype"])]["state_bytes_per_param_byte"]
    r["ratio_vs_adam"] = r["state_bytes_per_param_byte"] / adam
    rows.append([r["optimizer"], r["param_dtype"], f"{r['state_bytes'] / 2**20:.2f}",
                 f"{r['state_bytes_per_param_byte']:.6f}", f"{r['ratio_vs_adam']:.4f}"])
  common.print_table(["optimizer", "params", "state MiB", "state bytes / param byte",
                      "x optax.adam"],
                     rows, title=f"optimizer state, {common.tree_size(shapes_tree(shapes))} "
                                 f"params in {len(shapes)} leaves")
  path = common.write_json(args.name, {
      "config": {"num_params": common.tree_size(shapes_tree(shapes)),
                 "num_leaves": len(shapes), "quick": args.quick},
      "results": results}, args.out_dir)
  print(f"\nwrote {path}")


def shapes_tree(shapes):
  return [np.empty(s, np.uint8) for s in shapes]


if __name__ == "__main__":
  main()
