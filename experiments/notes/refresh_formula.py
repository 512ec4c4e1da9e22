"""The IDU refresh formula alone: the current form against the ones it replaced.

A one-off investigation behind the refresh rewrite (see ``experiments/notes/README.md``), kept
runnable; from the repository root::

    python -m experiments.notes.refresh_formula --out-dir experiments/notes/results

A refresh step costs a normal step plus one elementwise pass that turns the
accumulated second moment into a new preconditioner; on a CPU that pass is
bound by its transcendental functions. This times, on one flat float32 array
of ``--size`` elements (default 4M, the target configuration), jitted,
interleaved rounds:

* ``current``: ``anon_optax._idu.harmonic_refresh`` (the ``hypot`` form: one
  ``log`` of sigma and one ``exp`` per element);
* ``logaddexp``: the form it replaced, ``exp(-logaddexp(log beta3 - 2 log v,
  log(1 - beta3) + gamma log sigma) / 2)`` (two ``log``, two ``exp``, one
  ``log1p``);
* ``power``: the ``hypot`` form with ``sigma ** (-gamma / 2)`` by
  ``jnp.power`` instead of ``exp(-gamma / 2 * log sigma)``;
* ``axpy``: ``0.9 * v + sigma``, one read of each input and one write, for
  scale (the memory traffic of the pass without its arithmetic).

Each variant computes ``log sigma`` (or ``sigma``) from the same inputs, and
the results are checked against each other (the largest relative difference
is recorded).
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from anon_optax import _idu
from tooling import machine

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"

GAMMA, BETA3, EPS = 1.0, 0.5, 1e-16


def current(precond, sigma_raw):
  return _idu.harmonic_refresh(precond, jnp.log(sigma_raw + EPS), GAMMA, BETA3)


def logaddexp(precond, sigma_raw):
  log_sigma = jnp.log(sigma_raw + EPS)
  log_previous = np.log(BETA3) - 2 * jnp.log(precond)
  log_new = np.log1p(-BETA3) + GAMMA * log_sigma
  return jnp.exp(-0.5 * jnp.logaddexp(log_previous, log_new))


def power(precond, sigma_raw):
  previous_root = precond / np.float32(np.sqrt(BETA3))
  new_root = jnp.power(sigma_raw + EPS, -0.5 * GAMMA) / np.float32(np.sqrt(1 - BETA3))
  smaller = jnp.minimum(previous_root, new_root)
  larger = jnp.maximum(previous_root, new_root)
  ratio = jnp.where(smaller == larger, 1, smaller / larger)
  return smaller / jnp.sqrt(1 + ratio * ratio)


def axpy(precond, sigma_raw):
  return 0.9 * precond + sigma_raw


VARIANTS = {"current": current, "logaddexp": logaddexp, "power": power, "axpy": axpy}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", default="4M", help="elements (K/M suffix)")
  parser.add_argument("--rounds", type=int, default=9)
  parser.add_argument("--reps", type=int, default=10, help="calls per sample")
  parser.add_argument("--quick", action="store_true", help="64K elements, 2 rounds")
  parser.add_argument("--out-dir", default=str(RESULTS_DIR))
  parser.add_argument("--name", default="refresh_formula")
  args = parser.parse_args(argv)
  size = 1 << 16 if args.quick else machine.parse_sizes(args.size)[0]
  rounds = 2 if args.quick else args.rounds
  # Preconditioners and raw second moments spread over a few decades, as in
  # training (v ~ 1/|g|, s ~ |g|**2).
  keys = jax.random.split(jax.random.key(0), 2)
  precond = jnp.exp(2 * jax.random.normal(keys[0], (size,), jnp.float32))
  sigma_raw = jnp.exp(4 * jax.random.normal(keys[1], (size,), jnp.float32))
  jitted = {name: jax.jit(fn) for name, fn in VARIANTS.items()}
  outputs = {name: np.asarray(fn(precond, sigma_raw)) for name, fn in jitted.items()}
  reference = outputs["current"]
  max_rel_diff = {
    name: float(np.max(np.abs(out - reference) / reference))
    for name, out in outputs.items()
    if name != "axpy"
  }

  def sample(fn):
    def go():
      jax.block_until_ready((precond, sigma_raw))
      t0 = machine.timer()
      for _ in range(args.reps):
        out = fn(precond, sigma_raw)
      jax.block_until_ready(out)
      return (machine.timer() - t0) / args.reps

    return go

  samples = machine.interleaved({n: sample(f) for n, f in jitted.items()}, rounds, warmup_rounds=1)
  summary = machine.summarise(samples, baselines=("current", "axpy"))
  payload = {
    "config": {"size": size, "gamma": GAMMA, "beta3": BETA3, "eps": EPS, "rounds": rounds},
    "results": summary,
    "max_rel_diff_vs_current": max_rel_diff,
  }
  payload["config"].update(reps=args.reps, quick=args.quick)
  machine.write_results(args.name, payload, render(payload), args.out_dir)


LABELS = {
  "current": "current (`hypot` form)",
  "logaddexp": "`logaddexp` form (before)",
  "power": "`hypot` form with `jnp.power(sigma, -gamma / 2)`",
  "axpy": "`0.9 * v + s` (memory traffic only)",
}


def render(results):
  """The refresh pass alone, per formulation: medians and ratios."""
  per, diff = results["results"], results["max_rel_diff_vs_current"]
  rows = [
    [LABELS.get(name, name), f"{1e3 * entry['median_s']:.3f}"]
    + [f"{entry['ratio_vs'].get(b, 1.0):.2f}" for b in ("current", "axpy")]
    + [f"{diff[name]:.1e}" if name in diff else "-"]
    for name, entry in per.items()
  ]
  headers = ["formulation", "ms", "x current", "x axpy", "max rel. diff vs current"]
  return machine.markdown_table(headers, rows)


if __name__ == "__main__":
  main()
