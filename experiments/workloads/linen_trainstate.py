"""A Linen MLP trained with ``flax.training.train_state.TrainState`` and a learning-rate schedule.

As Flax's Linen guide on learning-rate scheduling: ``create_learning_rate_fn`` joins a linear
warmup (``optax.linear_schedule`` from 0) and a cosine decay (``optax.cosine_decay_schedule``) with
``optax.join_schedules``; the schedule is the optimizer's learning rate, ``TrainState.create``
holds it, ``train_step(state, batch, learning_rate_fn)`` applies the gradients and reports the
current rate. The guide's SGD is replaced by ``optax.adam`` at its usual 1e-3 peak, the model by a
two-layer ReLU MLP, MNIST by the 8x8 digits.
"""

from __future__ import annotations

import functools

from flax.training import train_state
import jax
import jax.numpy as jnp
import optax

from experiments.workloads import common

LEARNING_RATE = 1e-3  # Peak of the schedule.
BATCH_SIZE = 64
EPOCHS, WARMUP_EPOCHS = 20, 2
QUICK_EPOCHS, QUICK_WARMUP_EPOCHS = 5, 1

model = common.MLP(hidden_sizes=(256, 256))


@functools.cache
def create_learning_rate_fn(
  base_learning_rate: float, num_epochs: int, warmup_epochs: int, steps_per_epoch: int
) -> optax.Schedule:
  """Linear warmup from 0, then cosine decay to 0 (cached: one schedule object per setting)."""
  warmup_fn = optax.linear_schedule(
    init_value=0.0, end_value=base_learning_rate, transition_steps=warmup_epochs * steps_per_epoch
  )
  cosine_epochs = max(num_epochs - warmup_epochs, 1)
  cosine_fn = optax.cosine_decay_schedule(
    init_value=base_learning_rate, decay_steps=cosine_epochs * steps_per_epoch
  )
  return optax.join_schedules(
    schedules=[warmup_fn, cosine_fn], boundaries=[warmup_epochs * steps_per_epoch]
  )


@functools.partial(jax.jit, static_argnums=2)
def train_step(state: train_state.TrainState, batch, learning_rate_fn):
  def loss_fn(params):
    logits = state.apply_fn({"params": params}, batch["image"])
    return common.cross_entropy_and_accuracy(logits, batch["label"])

  (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads)
  metrics = {"loss": loss, "accuracy": accuracy, "learning_rate": learning_rate_fn(state.step)}
  return state, metrics, jnp.isfinite(loss) & common.all_finite(state.params)


@jax.jit
def eval_step(params, batch):
  logits = model.apply({"params": params}, batch["image"])
  return common.cross_entropy_and_accuracy(logits, batch["label"])


def run(optimizer_name: str, learning_rate=LEARNING_RATE, seed: int = 0, quick: bool = False):
  data = common.digits()
  per_epoch = len(data["train_label"]) // BATCH_SIZE
  epochs, warmup = (QUICK_EPOCHS, QUICK_WARMUP_EPOCHS) if quick else (EPOCHS, WARMUP_EPOCHS)
  learning_rate_fn = create_learning_rate_fn(learning_rate, epochs, warmup, per_epoch)
  params = model.init(jax.random.key(seed), data["train_image"][:1])["params"]
  tx = common.make_optimizer(optimizer_name, learning_rate_fn)
  state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

  def step(state, batch):
    state, metrics, finite = train_step(state, batch, learning_rate_fn)
    return state, metrics["loss"], finite

  state, watch = common.train_epochs(step, state, epochs=epochs, batch_size=BATCH_SIZE, seed=seed)
  test_loss, test_accuracy = eval_step(state.params, common.test_batch())
  return common.result(test_accuracy, "accuracy", watch, per_epoch, test_loss=float(test_loss))
