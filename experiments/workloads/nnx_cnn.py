"""The Flax NNX MNIST tutorial's CNN, on scikit-learn's 8x8 digits.

As the tutorial: two ``nnx.Conv`` layers with ``nnx.BatchNorm``, ``nnx.Dropout``, ReLU and 2x2
average pooling, then two ``nnx.Linear`` layers; ``nnx.Optimizer(model, tx, wrt=nnx.Param)``,
``nnx.MultiMetric`` for accuracy and loss, ``train_step``/``eval_step`` under ``nnx.jit``, batch
size 32, ``optax.adamw(0.005, 0.9)`` (so AdamW with weight decay 1e-4). The tutorial trains 1200
steps on MNIST; the digits have 1437 training images, so an epoch here is 44 steps.
"""

from __future__ import annotations

import functools

from flax import nnx
import jax.numpy as jnp
import optax

from experiments.workloads import common

LEARNING_RATE = 0.005  # The tutorial's.
MOMENTUM = 0.9  # Passed as AdamW's b1, as the tutorial does.
WEIGHT_DECAY = 1e-4  # optax.adamw's default, which the tutorial keeps.
BATCH_SIZE = 32
EPOCHS, QUICK_EPOCHS = 12, 3


# Module-level, not an attribute built in __init__ as in the tutorial: a fresh functools.partial per
# model would make every model's graph differ and nnx.jit recompile for every seed.
avg_pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))


class CNN(nnx.Module):
  """The tutorial's CNN; the first linear layer takes 2x2x64 features after two 2x2 poolings."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
    self.batch_norm1 = nnx.BatchNorm(32, rngs=rngs)
    self.dropout1 = nnx.Dropout(rate=0.025, rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
    self.batch_norm2 = nnx.BatchNorm(64, rngs=rngs)
    self.linear1 = nnx.Linear(2 * 2 * 64, 256, rngs=rngs)
    self.dropout2 = nnx.Dropout(rate=0.025, rngs=rngs)
    self.linear2 = nnx.Linear(256, 10, rngs=rngs)

  def __call__(self, x):
    x = avg_pool(nnx.relu(self.batch_norm1(self.dropout1(self.conv1(x)))))
    x = avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))))
    x = x.reshape(x.shape[0], -1)
    x = nnx.relu(self.dropout2(self.linear1(x)))
    return self.linear2(x)


def loss_fn(model: CNN, batch):
  logits = model(batch["image"])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
  return loss, logits


@nnx.jit
def train_step(model: CNN, optimizer: nnx.Optimizer, metrics: nnx.MultiMetric, batch):
  grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
  (loss, logits), grads = grad_fn(model, batch)
  metrics.update(loss=loss, logits=logits, labels=batch["label"])
  optimizer.update(model, grads)
  return loss, jnp.isfinite(loss) & common.all_finite(nnx.state(model, nnx.Param))


@nnx.jit
def eval_step(model: CNN, metrics: nnx.MultiMetric, batch):
  loss, logits = loss_fn(model, batch)
  metrics.update(loss=loss, logits=logits, labels=batch["label"])


def run(optimizer_name: str, learning_rate=LEARNING_RATE, seed: int = 0, quick: bool = False):
  model = CNN(rngs=nnx.Rngs(seed))
  tx = common.make_optimizer(
    optimizer_name, learning_rate, adamw_weight_decay=WEIGHT_DECAY, b1=MOMENTUM
  )
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
  # cached_partial skips re-walking the module graph on every call, as the tutorial suggests
  # for speed; the traced function is the same.
  step = nnx.cached_partial(train_step, model, optimizer, metrics)
  model.train()
  epochs = QUICK_EPOCHS if quick else EPOCHS
  _, watch = common.train_epochs(
    lambda _, batch: (None, *step(batch)), None, epochs=epochs, batch_size=BATCH_SIZE, seed=seed
  )
  model.eval()
  metrics.reset()
  eval_step(model, metrics, common.test_batch())
  test = metrics.compute()
  per_epoch = len(common.digits()["train_label"]) // BATCH_SIZE
  return common.result(
    test["accuracy"], "accuracy", watch, per_epoch, test_loss=float(test["loss"])
  )
