"""A gamma sweep on the digits CNN: 8 gammas as one `jax.vmap`ped program against 8 sequential
runs of the same jitted program.

One command::

    python -m benchmarks.vmapped_sweep
    python -m benchmarks.vmapped_sweep --render benchmarks/results/vmapped_sweep.json  # table only

sklearn's ``load_digits`` (1500 train, 297 test), the small CNN of ``tooling/models.py`` with its
convolutions as patches @ matrix (``models.conv_im2col``: under ``vmap`` a batched matmul, where a
``jax.lax`` convolution becomes a grouped one), ``anon_optax.anon(1e-3, gamma=g)`` with ``g`` a
traced argument (so the 8 sequential runs share one compiled program), batch 64, the same batch
order for every gamma. Two ways of driving training, both timed:

* ``loop``: a jitted ``train_step`` called from a Python loop; vmapped: one call per step advances
  all 8 models.
* ``scan``: the whole run as one jitted `jax.lax.scan`; vmapped: one call.

The vmapped program batches the parameters and moments and shares the scalar step counters
(`batch_axes`). Reported: the runs alone and with the compile (fresh each round), the agreement
of the vmapped and sequential final parameters (round-off), and the test accuracy per gamma.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import anon_optax
from benchmarks import common
from tooling import data
from tooling import machine
from tooling import models

# gamma > 1 diverges on this small ReLU CNN with eps = 1e-16 at this learning
# rate (dead units give sigma ~ eps), so the sweep stays at or below 1.
GAMMAS = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
LR = 1e-3
BATCH = 64


def make_programs(train, num_steps):
  """Returns the pieces shared by all modes (fresh closures on every call)."""
  x_train, y_train = (jnp.asarray(a) for a in train)
  rng = np.random.default_rng(1)
  batches = np.stack([rng.choice(len(x_train), BATCH, replace=False) for _ in range(num_steps)])
  batches = jnp.asarray(batches.astype(np.int32))
  params0 = models.cnn_init(jax.random.key(0))
  opt_state0 = anon_optax.anon(LR).init(params0)

  def loss_fn(p, x, y):
    logits = models.cnn_apply_im2col(p, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def train_step(params, opt_state, idx, gamma):
    tx = anon_optax.anon(LR, gamma=gamma)
    x, y = x_train[idx], y_train[idx]
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def run(params, opt_state, gamma):
    def body(carry, idx):
      p, s = carry
      p, s, loss = train_step(p, s, idx, gamma)
      return (p, s), loss

    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), batches)
    return params, opt_state, losses

  return params0, opt_state0, batches, train_step, run


def stack(tree, n):
  """Stacks ``n`` copies of the array leaves; scalar leaves stay shared."""
  return jax.tree.map(
    lambda x: x if jnp.ndim(x) == 0 else jnp.broadcast_to(x, (n,) + x.shape), tree
  )


def batch_axes(tree):
  """vmap axes: 0 for array leaves, None for scalars (the step counters).

  The 8 runs take their steps together, so the optimizer's step counters are
  shared, not batched. That keeps the refresh `lax.cond` a real branch: with a
  batched counter, vmap turns the cond into a select and every step would pay
  for the refresh of all 8 models.
  """
  return jax.tree.map(lambda x: None if jnp.ndim(x) == 0 else 0, tree)


def time_mode(mode, vmapped, train, num_steps):
  """Fresh compile + one full sweep of 8 gammas; returns timings and params."""
  params0, state0, batches, train_step, run = make_programs(train, num_steps)
  gammas, n, axes = jnp.asarray(GAMMAS, jnp.float32), len(GAMMAS), batch_axes(state0)
  # loop: one step per call (the batch indices unbatched); scan: the whole run in one call.
  fn, batch = (train_step, (batches[0],)) if mode == "loop" else (run, ())
  if vmapped:
    in_axes = (0, axes, *(None for _ in batch), 0)
    fn = jax.vmap(fn, in_axes=in_axes, out_axes=(0, axes, 0))
    args = (stack(params0, n), stack(state0, n), *batch, gammas)
  else:
    args = (params0, state0, *batch, gammas[0])
  jitted = jax.jit(fn, donate_argnums=(0, 1))
  t0 = machine.timer()
  compiled = jitted.lower(*args).compile()
  compile_s = machine.timer() - t0

  def one_run(params, state, gamma):
    if mode == "loop":
      for i in range(num_steps):
        params, state, _ = compiled(params, state, batches[i], gamma)
    else:
      params, state, _ = compiled(params, state, gamma)
    return params

  copy = lambda t: jax.tree.map(jnp.array, t)  # Donated below; keep originals.
  if vmapped:
    p, s = copy(stack(params0, n)), copy(stack(state0, n))
    jax.block_until_ready((p, s))
    t0 = machine.timer()
    final = jax.block_until_ready(one_run(p, s, gammas))
    run_s = machine.timer() - t0
  else:
    finals = []
    copies = [(copy(params0), copy(state0)) for _ in range(n)]
    jax.block_until_ready(copies)
    t0 = machine.timer()
    for (p, s), g in zip(copies, gammas):
      finals.append(one_run(p, s, g))
    jax.block_until_ready(finals)
    run_s = machine.timer() - t0
    final = jax.tree.map(lambda *xs: jnp.stack(xs), *finals)
  return {"compile_s": compile_s, "run_s": run_s, "total_s": compile_s + run_s}, final


def accuracy(params, test):
  x, y = (jnp.asarray(a) for a in test)
  logits = jax.vmap(models.cnn_apply_im2col, in_axes=(0, None))(params, x)
  return np.asarray((logits.argmax(-1) == y[None]).mean(-1))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--modes", default="loop,scan")
  parser.add_argument("--quick", action="store_true", help="10 steps, 1 round, scan mode only.")
  parser.add_argument("--out-dir", default=str(common.RESULTS_DIR))
  parser.add_argument("--name", default="vmapped_sweep")
  parser.add_argument("--render", metavar="JSON", help="only rewrite JSON's table beside it")
  args = parser.parse_args(argv)
  if args.render:
    return machine.render_results(args.render, render)
  steps = 10 if args.quick else args.steps
  rounds = 1 if args.quick else args.rounds
  modes = ["scan"] if args.quick else [m.strip() for m in args.modes.split(",")]
  train, test = data.load_digits_first_1500()

  results = {}
  for mode in modes:
    splits = {"vmapped": [], "sequential": []}
    finals = {}

    def contender(kind, mode=mode, splits=splits, finals=finals):
      def go():
        t, final = time_mode(mode, kind == "vmapped", train, steps)
        splits[kind].append(t)
        finals[kind] = final
        return t["run_s"]

      return go

    machine.interleaved({k: contender(k) for k in splits}, rounds, warmup_rounds=0)
    entry = {}
    for kind in splits:
      entry[kind] = {
        key: float(np.median([t[key] for t in splits[kind]]))
        for key in ("compile_s", "run_s", "total_s")
      }
      entry[kind]["samples"] = splits[kind]
    # What a plain loop `for g in gammas: train(anon(lr, gamma=g))` pays: with
    # gamma a Python number every run compiles its own program. (The timed
    # sequential runs pass gamma as an argument and share one compile.)
    entry["sequential"]["total_s_compile_per_gamma"] = (
      entry["sequential"]["run_s"] + len(GAMMAS) * entry["sequential"]["compile_s"]
    )
    entry["ratio_total_s_compile_per_gamma"] = (
      entry["vmapped"]["total_s"] / entry["sequential"]["total_s_compile_per_gamma"]
    )
    for key in ("run_s", "total_s"):
      entry[f"ratio_{key}"] = entry["vmapped"][key] / entry["sequential"][key]
      entry[f"paired_ratio_{key}"] = float(
        np.median([a[key] / b[key] for a, b in zip(splits["vmapped"], splits["sequential"])])
      )
    diffs = jax.tree.leaves(
      jax.tree.map(
        lambda a, b: float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30)),
        finals["vmapped"],
        finals["sequential"],
      )
    )
    entry["max_rel_param_diff_vmapped_vs_sequential"] = max(diffs)
    entry["test_accuracy"] = dict(zip(map(str, GAMMAS), accuracy(finals["vmapped"], test).tolist()))
    results[mode] = entry

  config = {"model": "cnn", "gammas": GAMMAS, "lr": LR, "batch": BATCH, "steps": steps}
  payload = {"config": {**config, "rounds": rounds, "quick": args.quick}, "results": results}
  machine.write_results(args.name, payload, render(payload), args.out_dir)


def _s(seconds: float) -> str:
  return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def render(results):
  """The Markdown tables of a sweep results file: seconds for the whole sweep, vmapped against
  sequential per mode, then the test accuracy per gamma."""
  rows = []
  for mode, entry in results["results"].items():
    v, s = entry["vmapped"], entry["sequential"]
    rows += [
      [mode, "vmapped", _s(v["run_s"]), _s(v["compile_s"]), _s(v["total_s"]), ""],
      [mode, "sequential", _s(s["run_s"]), _s(s["compile_s"]), _s(s["total_s"])]
      + [_s(s["total_s_compile_per_gamma"])],
      [mode, "vmapped / sequential (paired)", f"{entry['paired_ratio_run_s']:.2f}", ""]
      + [f"{entry['paired_ratio_total_s']:.2f}", f"{entry['ratio_total_s_compile_per_gamma']:.2f}"],
    ]
  headers = ["mode", "program", "run s", "compile s", "run + compile s"]
  accuracy = next(iter(results["results"].values()))["test_accuracy"]
  return (
    machine.markdown_table(headers + ["sequential with one compile per gamma"], rows)
    + "\n\n"
    + machine.markdown_table(
      ["gamma", *[f"{float(g):g}" for g in accuracy]],
      [["test accuracy", *[f"{a:.2f}" for a in accuracy.values()]]],
    )
  )


if __name__ == "__main__":
  main()
