"""Compile time of a jitted train step (forward, grad, optimizer update) with
``anon_optax.anon`` against ``optax.adam``.

One command::

    python -m benchmarks.compile_time
    python -m benchmarks.compile_time --render benchmarks/results/compile_time.json   # table only

Every sample builds a fresh train-step function (a new closure, so neither `jax.jit`'s trace cache
nor XLA's in-memory executable cache can answer it) and times ``jax.jit(step).lower(...)`` (trace +
lowering to StableHLO) and ``.compile()`` (XLA) separately. Optimizers and models are interleaved
round-robin over several rounds; medians and same-round ratios are reported. Two models: an MLP and
a small CNN (the digits CNN of ``vmapped_sweep.py``).

The eager table times what a notebook user pays without `jax.jit`: an un-jitted ``tx.update`` +
``optax.apply_updates`` on 4 small leaves, the first call in the process (tracing and compiling
included; one sample, the warm-up round's) and the median of the calls after it, interleaved with
``optax.adam`` the same way.
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import optax

import anon_optax
from benchmarks import common
from tooling import machine
from tooling import models


def make_optimizers():
  return {"anon": lambda: anon_optax.anon(1e-3, gamma=1.0), "adam": lambda: optax.adam(1e-3)}


def sample(model: str, make_tx, quick: bool):
  """Builds a fresh train step and returns (trace+lower s, compile s)."""
  if model == "mlp":
    widths = (64, 128, 10) if quick else (784, 1024, 1024, 1024, 10)
    params = models.mlp_init(jax.random.key(0), widths)
    x = jnp.zeros((32, widths[0]), jnp.float32)
    apply = models.mlp_apply
  else:
    params = models.cnn_init(jax.random.key(0), quick=quick)
    x = jnp.zeros((32, 8, 8, 1), jnp.float32)
    apply = models.cnn_apply
  y = jnp.zeros((32,), jnp.int32)
  tx = make_tx()
  opt_state = tx.init(params)

  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y).mean()

  def train_step(p, s, x, y):  # A new function object every sample.
    loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss

  t0 = machine.timer()
  lowered = jax.jit(train_step, donate_argnums=(0, 1)).lower(params, opt_state, x, y)
  t1 = machine.timer()
  lowered.compile()
  t2 = machine.timer()
  return t1 - t0, t2 - t1


EAGER_SHAPES = ((64, 32), (32,), (32, 10), (10,))


def eager_sample(make_tx, num_calls: int) -> tuple[float, float]:
  """A fresh optimizer's first un-jitted step and the median of the next ``num_calls``, in s."""
  params = {f"w{i}": jnp.full(shape, 0.5, jnp.float32) for i, shape in enumerate(EAGER_SHAPES)}
  grads = jax.tree.map(lambda p: 0.1 * p, params)
  tx = make_tx()
  state = tx.init(params)
  times = []
  for _ in range(num_calls + 1):
    t0 = machine.timer()
    updates, state = tx.update(grads, state, params)
    params = jax.block_until_ready(optax.apply_updates(params, updates))
    times.append(machine.timer() - t0)
  return times[0], statistics.median(times[1:])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--quick", action="store_true", help="tiny MLP only, 1 round, no warm-up")
  parser.add_argument("--eager-calls", type=int, default=50)
  parser.add_argument("--out-dir", default=str(common.RESULTS_DIR))
  parser.add_argument("--name", default="compile_time")
  parser.add_argument("--render", metavar="JSON", help="only rewrite JSON's table beside it")
  args = parser.parse_args(argv)
  if args.render:
    return machine.render_results(args.render, render)
  rounds = 1 if args.quick else args.rounds
  warmup = 0 if args.quick else 1
  model_names = ("mlp",) if args.quick else ("mlp", "cnn")
  if jax.config.jax_compilation_cache_dir:
    print("warning: a persistent compilation cache is configured; disabling it.")
    jax.config.update("jax_compilation_cache_dir", None)

  optimizers = make_optimizers()
  results = {}
  for model in model_names:
    split: dict[str, dict[str, list[float]]] = {n: {"lower": [], "compile": []} for n in optimizers}

    def contender(name, model=model, split=split):
      def go():
        lower_s, compile_s = sample(model, optimizers[name], args.quick)
        split[name]["lower"].append(lower_s)
        split[name]["compile"].append(compile_s)
        return lower_s + compile_s

      return go

    samples = machine.interleaved(
      {n: contender(n) for n in optimizers}, rounds, warmup_rounds=warmup
    )
    summary = machine.summarise(samples, baselines=("adam",))
    for n in optimizers:  # Without the warm-up round's.
      summary[n].update({k: statistics.median(v[warmup:]) for k, v in split[n].items()})
    results[model] = summary

  first: dict[str, list[float]] = {n: [] for n in optimizers}

  def eager(name):
    def go():
      first_s, steady_s = eager_sample(optimizers[name], 5 if args.quick else args.eager_calls)
      first[name].append(first_s)
      return steady_s

    return go

  eager_samples = machine.interleaved(
    {n: eager(n) for n in optimizers}, rounds, warmup_rounds=warmup
  )
  eager_results = machine.summarise(eager_samples, baselines=("adam",))
  for n in optimizers:
    # The process's first call compiles; later fresh optimizers hit JAX's caches.
    eager_results[n]["cold_first_call_s"] = first[n][0]
    eager_results[n]["warm_first_call_s"] = statistics.median(first[n][warmup:])

  config = dict(rounds=rounds, warmup_rounds=warmup, quick=args.quick, eager_shapes=EAGER_SHAPES)
  payload = {
    "config": {**config, "eager_calls": args.eager_calls},
    "results": results,
    "eager": eager_results,
  }
  machine.write_results(args.name, payload, render(payload), args.out_dir)


def render(results):
  """The Markdown tables of a compile-time results file: the jitted train step, then the
  un-jitted update."""
  label = {"anon": "anon", "adam": "optax.adam"}
  rows = [
    [model.upper(), label.get(name, name)]
    + [f"{1e3 * entry[k]:.0f}" for k in ("lower", "compile", "median_s")]
    + ["1.00" if name == "adam" else f"{entry['paired_ratio_vs']['adam']:.2f}"]
    for model, per in results["results"].items()
    for name, entry in per.items()
  ]
  headers = ["model", "optimizer", "trace+lower ms", "XLA compile ms", "total ms"]
  eager = [
    [label.get(name, name), f"{1e3 * e['cold_first_call_s']:.0f}", f"{1e3 * e['median_s']:.3f}"]
    + ["1.00" if name == "adam" else f"{e['paired_ratio_vs']['adam']:.2f}"]
    for name, e in results["eager"].items()
  ]
  rounds = results["config"]["rounds"]
  return (
    f"A jitted train step compiled afresh, medians of {rounds} interleaved rounds:\n\n"
    + machine.markdown_table([*headers, "x adam (paired)"], rows)
    + f"\n\nThe un-jitted update + apply on {len(results['config']['eager_shapes'])} small "
    "leaves: the process's first call, and the median of the later calls:\n\n"
    + machine.markdown_table(
      ["optimizer", "first call ms", "later calls ms", "x adam (paired)"], eager
    )
  )


if __name__ == "__main__":
  main()
