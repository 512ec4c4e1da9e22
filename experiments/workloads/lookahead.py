"""Optax's lookahead example: Adam as the fast optimizer inside ``optax.lookahead``.

As the example (Optax docs, "Lookahead optimizer on MNIST"): an MLP with two hidden ReLU layers
(1000 units in the example, 512 here for a 4x cheaper step on a CPU), batch size 128,
``optax.lookahead(optax.adam(0.002), sync_period=5, slow_step_size=0.5)``; the parameters are an
``optax.LookaheadParams.init_synced(params)`` pair, gradients are taken at the fast parameters and
the model is evaluated at the slow ones. The example runs 5 MNIST epochs (2345 steps); a digits
epoch has 11 steps, so this runs 40.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from experiments.workloads import common

LEARNING_RATE = 0.002  # The example's fast learning rate.
SYNC_PERIOD = 5
SLOW_STEP_SIZE = 0.5
BATCH_SIZE = 128
HIDDEN_SIZES = (512, 512)
EPOCHS, QUICK_EPOCHS = 40, 8

model = common.MLP(hidden_sizes=HIDDEN_SIZES)


@functools.cache
def make_optimizer(optimizer_name: str, learning_rate: float) -> optax.GradientTransformation:
  fast_optimizer = common.make_optimizer(optimizer_name, learning_rate)
  return optax.lookahead(fast_optimizer, SYNC_PERIOD, SLOW_STEP_SIZE)


def loss_accuracy(params, batch):
  logits = model.apply({"params": params}, batch["image"])
  return common.cross_entropy_and_accuracy(logits, batch["label"])


@functools.partial(jax.jit, static_argnums=0)
def train_step(optimizer, params: optax.LookaheadParams, opt_state, batch):
  (loss, _), grads = jax.value_and_grad(loss_accuracy, has_aux=True)(params.fast, batch)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  return params, opt_state, loss, jnp.isfinite(loss) & common.all_finite(params)


def run(optimizer_name: str, learning_rate=LEARNING_RATE, seed: int = 0, quick: bool = False):
  data = common.digits()
  optimizer = make_optimizer(optimizer_name, learning_rate)
  initial_params = model.init(jax.random.key(seed), data["train_image"][:1])["params"]
  params = optax.LookaheadParams.init_synced(initial_params)

  def step(carry, batch):
    params, opt_state, loss, finite = train_step(optimizer, *carry, batch)
    return (params, opt_state), loss, finite

  epochs = QUICK_EPOCHS if quick else EPOCHS
  carry = (params, optimizer.init(params))
  (params, _), watch = common.train_epochs(
    step, carry, epochs=epochs, batch_size=BATCH_SIZE, seed=seed
  )
  # Evaluated on the slow parameters, as the example does.
  test_loss, test_accuracy = jax.jit(loss_accuracy)(params.slow, common.test_batch())
  per_epoch = len(data["train_label"]) // BATCH_SIZE
  return common.result(test_accuracy, "accuracy", watch, per_epoch, test_loss=float(test_loss))
