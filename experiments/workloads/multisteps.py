"""Gradient accumulation with ``optax.MultiSteps``: four micro-batches per optimizer step.

As Optax's gradient-accumulation example: an MLP with hidden ReLU layers of 32 and 32 units,
``optax.MultiSteps(optimizer, every_k_schedule=k)`` around the optimizer, one jitted ``update``
per micro-batch that returns zero updates until the k-th, when the wrapped optimizer sees the mean
gradient. Here k = 4 micro-batches of 32 (an effective batch of 128) and the wrapped optimizer is
``optax.adam(1e-3)`` instead of the example's SGD. Steps count micro-batches, so the first
non-finite step is a micro-step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from experiments.workloads import common

LEARNING_RATE = 1e-3
EVERY_K = 4
MICRO_BATCH_SIZE = 32
HIDDEN_SIZES = (32, 32)
EPOCHS, QUICK_EPOCHS = 40, 8

model = common.MLP(hidden_sizes=HIDDEN_SIZES)


@functools.cache
def make_optimizer(optimizer_name: str, learning_rate: float) -> optax.MultiSteps:
  return optax.MultiSteps(
    common.make_optimizer(optimizer_name, learning_rate), every_k_schedule=EVERY_K
  )


def loss_accuracy(params, batch):
  logits = model.apply({"params": params}, batch["image"])
  return common.cross_entropy_and_accuracy(logits, batch["label"])


@functools.partial(jax.jit, static_argnums=0)
def update(optimizer, params, opt_state, batch):
  (loss, _), grads = jax.value_and_grad(loss_accuracy, has_aux=True)(params, batch)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  return params, opt_state, loss, jnp.isfinite(loss) & common.all_finite(params)


def run(optimizer_name: str, learning_rate=LEARNING_RATE, seed: int = 0, quick: bool = False):
  data = common.digits()
  optimizer = make_optimizer(optimizer_name, learning_rate)
  params = model.init(jax.random.key(seed), data["train_image"][:1])["params"]

  def step(carry, batch):
    params, opt_state, loss, finite = update(optimizer, *carry, batch)
    return (params, opt_state), loss, finite

  epochs = QUICK_EPOCHS if quick else EPOCHS
  (params, _), watch = common.train_epochs(
    step, (params, optimizer.init(params)), epochs=epochs, batch_size=MICRO_BATCH_SIZE, seed=seed
  )
  test_loss, test_accuracy = jax.jit(loss_accuracy)(params, common.test_batch())
  per_epoch = len(data["train_label"]) // MICRO_BATCH_SIZE
  return common.result(test_accuracy, "accuracy", watch, per_epoch, test_loss=float(test_loss))
