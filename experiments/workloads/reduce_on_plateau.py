"""Optax's ``reduce_on_plateau`` example: an MLP whose learning rate halves when the loss stalls.

As the example (Optax docs, "MLP Fashion MNIST with reduce_on_plateau"): a Linen MLP with two
hidden ReLU layers (1000 units in the example, 512 here for a 4x cheaper step on a CPU), batch
size 128, ``optax.adam(0.01)`` chained with ``optax.contrib.reduce_on_plateau(patience=5,
cooldown=0, factor=0.5, rtol=1e-4, accumulation_size=...)``, and ``value=loss`` passed to
``update`` so the plateau detector sees the training loss. The example accumulates 200 steps
before each comparison, about a third of a Fashion-MNIST epoch; here an epoch has 11 steps, so it
accumulates one epoch (11 steps).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from experiments.workloads import common

LEARNING_RATE = 0.01  # The example's.
BATCH_SIZE = 128
PATIENCE, COOLDOWN, FACTOR, RTOL = 5, 0, 0.5, 1e-4
EPOCHS, QUICK_EPOCHS = 50, 8
HIDDEN_SIZES = (512, 512)

model = common.MLP(hidden_sizes=HIDDEN_SIZES)


@functools.cache
def make_solver(optimizer_name: str, learning_rate: float, accumulation_size: int):
  return optax.chain(
    common.make_optimizer(optimizer_name, learning_rate),
    optax.contrib.reduce_on_plateau(
      patience=PATIENCE,
      cooldown=COOLDOWN,
      factor=FACTOR,
      rtol=RTOL,
      accumulation_size=accumulation_size,
    ),
  )


def loss_accuracy(params, batch):
  logits = model.apply({"params": params}, batch["image"])
  return common.cross_entropy_and_accuracy(logits, batch["label"])


@functools.partial(jax.jit, static_argnums=0)
def train_step(solver, params, opt_state, batch):
  (loss, _), grad = jax.value_and_grad(loss_accuracy, has_aux=True)(params, batch)
  updates, opt_state = solver.update(grad, opt_state, params, value=loss)
  params = optax.apply_updates(params, updates)
  return params, opt_state, loss, jnp.isfinite(loss) & common.all_finite(params)


def run(optimizer_name: str, learning_rate=LEARNING_RATE, seed: int = 0, quick: bool = False):
  data = common.digits()
  per_epoch = len(data["train_label"]) // BATCH_SIZE
  solver = make_solver(optimizer_name, learning_rate, per_epoch)
  params = model.init(jax.random.key(seed), data["train_image"][:1])["params"]

  def step(carry, batch):
    params, opt_state, loss, finite = train_step(solver, *carry, batch)
    return (params, opt_state), loss, finite

  epochs = QUICK_EPOCHS if quick else EPOCHS
  (params, opt_state), watch = common.train_epochs(
    step, (params, solver.init(params)), epochs=epochs, batch_size=BATCH_SIZE, seed=seed
  )
  test_loss, test_accuracy = jax.jit(loss_accuracy)(params, common.test_batch())
  scale = float(optax.tree_utils.tree_get(opt_state, "scale"))  # The plateau's lr factor.
  extra = {"test_loss": float(test_loss), "final_lr_scale": scale}
  return common.result(test_accuracy, "accuracy", watch, per_epoch, **extra)
