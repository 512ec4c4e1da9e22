"""Traces the first steps of one digits-CNN run of Anon for refresh_base 2 vs 4.

Why do the a_n = 3^(n-1) and 4^(n-1) rows of the IDU ablation collapse at the larger learning
rate? This prints, per step, the batch loss, the largest preconditioner entry (``v_max`` from
``anon_optax.preconditioner_stats``) and the update and gradient norms:

    python -m experiments.notes.diagnose_idu [--lr 0.01] [--beta3 0.5] [--seed 0]
"""

from __future__ import annotations

import argparse

import jax
import optax

import anon_optax
from experiments.paper import vision


def trace(runner: vision.DigitsRunner, *, lr: float, beta3: float, refresh_base: int, seed: int):
  params, order = runner.init(seed)
  tx = anon_optax.anon(lr, gamma=1.0, beta3=beta3, refresh_base=refresh_base)

  @jax.jit
  def step(params, state, idx):
    (loss, _), grads = jax.value_and_grad(runner._loss, has_aux=True)(
      params, runner.x_train[idx], runner.y_train[idx]
    )
    updates, state = tx.update(grads, state, params)
    return (
      optax.apply_updates(params, updates),
      state,
      loss,
      anon_optax.preconditioner_stats(state)["v_max"],
      optax.global_norm(updates),
      optax.global_norm(grads),
    )

  state, rows = tx.init(params), []
  for t in range(len(order)):
    params, state, *stats = step(params, state, order[t])
    rows.append((t + 1, *map(float, stats)))
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--lr", type=float, default=0.01)
  parser.add_argument("--beta3", type=float, default=0.5)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  runner = vision.DigitsRunner(width=8, hidden=32, epochs=10)
  for base in (2, 4):
    rows = trace(runner, lr=args.lr, beta3=args.beta3, refresh_base=base, seed=args.seed)
    print(
      f"refresh_base={base} lr={args.lr:g} beta3={args.beta3:g} seed={args.seed}: "
      f"final batch loss {rows[-1][1]:.4f}"
    )
    for t in (1, 2, 3, 4, 5, 8, 16, 17, 64, 65, len(rows)):
      step, loss, v_max, update, grad = rows[t - 1]
      print(
        f"  step {step:3d}  loss {loss:9.4g}  v_max {v_max:9.3g}  |update| {update:9.3g}  |grad| {grad:9.3g}"
      )


if __name__ == "__main__":
  main()
