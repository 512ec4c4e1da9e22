"""The language-model table: the char-level GPT of ``examples/char_gpt.py``, vmapped.

Every optimizer gets the same model, step budget, warmup-cosine schedule shape and batches for a
seed; all ``(learning rate, gamma) x seeds`` runs of one optimizer are lanes of ONE vmapped, jitted
program (``tooling.models.GPT`` merged inside the loss, the steps in ``jax.lax.scan``), whose peak
learning rate is traced (:func:`make_optimizer`; the schedule is linear in its peak).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import time
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import anon_optax
from tooling import data as datasets
from tooling import models

# examples/char_gpt.py's constants: the peak learning rates it tuned once for its default model
# (TUNED_LEARNING_RATES), Muon's fixed AdamW rate and the decoupled weight decay.
TUNED_LEARNING_RATES = {"anon": 8e-3, "adamw": 1.6e-2, "lion": 1.6e-3, "muon": 4e-2}
MUON_ADAM_LEARNING_RATE = 4e-3
WEIGHT_DECAY = 0.1
# Three peak learning rates per optimizer, a factor-2 grid centred on the tuned rate: the same
# grid size for everyone.
LR_GRIDS = {name: (lr / 2, lr, 2 * lr) for name, lr in TUNED_LEARNING_RATES.items()}
CONTENDERS = (
  ("anon", 1.0),
  ("anon", 1.1),
  ("anon", 1.15),
  ("adamw", None),
  ("lion", None),
  ("muon", None),
)


def unit_schedule(steps: int) -> optax.Schedule:
  """char_gpt's schedule shape at peak 1: 5% linear warmup, cosine decay to 10%."""
  return optax.warmup_cosine_decay_schedule(
    0.0, 1.0, warmup_steps=max(1, steps // 20), decay_steps=steps, end_value=0.1
  )


def muon_dims(params):
  """Muon for the 2-D hidden matrices; embeddings, head and vectors go to its AdamW."""

  def rule(path, x):
    names = jax.tree_util.keystr(path)
    if x.ndim == 2 and "embed" not in names and "head" not in names:
      return optax.contrib.MuonDimensionNumbers(reduction_axis=0, output_axis=1)
    return None

  return jax.tree_util.tree_map_with_path(rule, params)


def make_optimizer(name: str, learning_rate, steps: int, gamma=1.0) -> optax.GradientTransformation:
  """``char_gpt.make_optimizer`` with a peak learning rate that may be traced (vmapped)."""
  unit = unit_schedule(steps)
  schedule = lambda count: learning_rate * unit(count)
  wd = WEIGHT_DECAY
  if name == "anon":
    return anon_optax.anon(schedule, gamma=gamma, weight_decay=wd, weight_decay_mode="decoupled")
  if name == "adamw":
    return optax.adamw(schedule, weight_decay=wd)
  if name == "lion":
    return optax.lion(schedule, weight_decay=wd)
  if name == "muon":
    adam_lr = MUON_ADAM_LEARNING_RATE  # Fixed, as in the example (not searched).
    return optax.contrib.muon(
      schedule,
      weight_decay=wd,
      adam_weight_decay=wd,
      adam_learning_rate=lambda count: adam_lr * unit(count),
      muon_weight_dimension_numbers=muon_dims,
    )
  raise ValueError(f"unknown optimizer {name!r}")


def train_lanes(
  corpus: datasets.Corpus, name: str, learning_rates, gammas, seeds, cfg: dict[str, Any]
) -> dict[str, np.ndarray]:
  """Trains ``len(seeds) x len(learning_rates)`` GPTs in one vmapped program.

  ``learning_rates`` and ``gammas`` are paired lanes (gamma is ignored by all but Anon); ``cfg``:
  ``steps``, ``batch_size``, ``context``, ``width``, ``layers``, ``heads``, ``evals``.
  Returns arrays with leading axes (seed, lane): "val_loss" (final), "val_curve" (..., evals),
  "train_curve" (..., evals: mean batch loss over each eval interval) and "eval_steps" (evals,).
  """
  steps, batch_size, context, evals = (cfg[k] for k in ("steps", "batch_size", "context", "evals"))
  if steps % evals:
    raise ValueError(f"steps {steps} must be a multiple of evals {evals}")
  graphdef, inits, train_b, val_b = None, [], [], []
  for seed in seeds:
    sizes = {k: cfg[k] for k in ("context", "width", "layers", "heads")}
    model = models.GPT(len(corpus.chars), **sizes, rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(model, nnx.Param)
    inits.append(params)
    train_b.append(
      datasets.sample_batches(corpus.train, steps, batch_size, context, seed).reshape(
        evals, steps // evals, batch_size, context + 1
      )
    )
    val_b.append(datasets.sample_batches(corpus.val, 8, batch_size, context, seed + 1))
  params0 = jax.tree.map(lambda *p: jnp.stack(p), *inits)
  train_b, val_b = jnp.asarray(np.stack(train_b)), jnp.asarray(np.stack(val_b))

  def loss_fn(params, batch):
    logits = nnx.merge(graphdef, params)(batch[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()

  def one_run(params, batches, val_batches, lr, gamma):
    tx = make_optimizer(name, lr, steps, gamma=gamma)

    def step(carry, batch):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, batch)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    def interval(carry, chunk):
      carry, losses = jax.lax.scan(step, carry, chunk)
      val = jax.lax.map(lambda b: loss_fn(carry[0], b), val_batches).mean()
      return carry, (losses.mean(), val)

    _, (train_curve, val_curve) = jax.lax.scan(interval, (params, tx.init(params)), batches)
    return {"val_loss": val_curve[-1], "val_curve": val_curve, "train_curve": train_curve}

  over_lane = jax.vmap(one_run, in_axes=(None, None, None, 0, 0))
  over_seed = jax.vmap(over_lane, in_axes=(0, 0, 0, None, None))
  out = jax.jit(over_seed)(
    params0,
    train_b,
    val_b,
    jnp.asarray(learning_rates, jnp.float32),
    jnp.asarray(gammas, jnp.float32),
  )
  out = {k: np.asarray(v) for k, v in out.items()}
  out["eval_steps"] = np.arange(1, evals + 1) * (steps // evals)
  return out


def label(name: str, gamma: float | None) -> str:
  return name if gamma is None else f"{name} (gamma={gamma:g})"


def run(
  config: dict[str, Any],
  seeds: Sequence[int],
  log: Callable[[str], None] = print,
  contenders=CONTENDERS,
) -> dict[str, Any]:
  """The whole LM table: every contender over its LR grid and the seeds. JSON-ready.

  One vmapped program per optimizer: Anon's gammas are lanes of the same program as its LRs.
  """
  corpus = datasets.load_corpus(max_chars=config.get("max_chars"))
  groups: dict[str, list] = {}
  for name, gamma in contenders:
    groups.setdefault(name, []).append(gamma)
  rows = []
  for name, gammas in groups.items():
    lrs = LR_GRIDS[name]
    lanes = [(lr, g) for g in gammas for lr in lrs]
    start = time.perf_counter()
    lrs_and_gammas = ([lr for lr, _ in lanes], [1.0 if g is None else g for _, g in lanes])
    out = train_lanes(corpus, name, *lrs_and_gammas, seeds, config)
    seconds = time.perf_counter() - start
    log(f"  LM {name}: {len(seeds) * len(lanes)} runs in one vmapped program, {seconds:.0f}s")
    for k, gamma in enumerate(gammas):
      sl = slice(k * len(lrs), (k + 1) * len(lrs))
      val = out["val_loss"][:, sl]  # (seeds, lrs)
      mean = np.where(np.isfinite(val).all(0), val.mean(0), np.inf)
      best = int(np.argmin(mean))
      rows.append(
        {
          "optimizer": name,
          "gamma": gamma,
          "label": label(name, gamma),
          "learning_rates": list(lrs),
          "best_learning_rate": lrs[best],
          "val_loss_mean": float(val[:, best].mean()),
          "val_loss_std": float(val[:, best].std()),
          "val_loss_per_seed": val[:, best].tolist(),
          "grid_val_loss_mean": val.mean(0).tolist(),
          "grid_val_loss_std": val.std(0).tolist(),
          "val_curve_mean": out["val_curve"][:, sl][:, best].mean(0).tolist(),
          "train_curve_mean": out["train_curve"][:, sl][:, best].mean(0).tolist(),
          "eval_steps": out["eval_steps"].tolist(),
          "seconds_for_optimizer": round(seconds, 1),
        }
      )
      log(
        f"    {label(name, gamma):>18s}: best lr {lrs[best]:g}  val loss "
        f"{rows[-1]['val_loss_mean']:.4f} +- {rows[-1]['val_loss_std']:.4f}  "
        f"(grid means {', '.join(f'{m:.4f}' for m in val.mean(0))})"
      )
  return {
    "config": dict(
      config,
      seeds=list(seeds),
      corpus=corpus.source,
      vocab=len(corpus.chars),
      train_chars=int(len(corpus.train)),
      val_chars=int(len(corpus.val)),
    ),
    "rows": rows,
  }
