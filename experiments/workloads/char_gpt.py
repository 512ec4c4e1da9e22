"""A tiny causal transformer language model over bytes, with vocabulary rows the text never uses.

In the style of Optax's NanoLM example (a character transformer in Flax NNX: token and position
``nnx.Embed``, pre-LayerNorm blocks of ``nnx.MultiHeadAttention`` and a ReLU MLP with dropout, a
linear head, ``nnx.Optimizer(model, optax.adamw(2e-3), wrt=nnx.Param)``, random windows of the
text as batches), shrunk to run in seconds: 2 layers, width 64, context 32. The vocabulary is all
256 byte values while the text (the source of a few pure-Python standard-library modules, present
wherever Python is) uses about 90 of them, so most embedding rows never receive a gradient and
most output rows only ever receive small ones. The metric is the loss on held-out text.
"""

from __future__ import annotations

import functools
import pathlib
import sysconfig

from flax import nnx
import jax.numpy as jnp
import numpy as np
import optax

from experiments.workloads import common

LEARNING_RATE = 2e-3  # NanoLM's AdamW learning rate.
WEIGHT_DECAY = 1e-4  # optax.adamw's default, which NanoLM keeps.
VOCAB_SIZE = 256  # Bytes.
CONTEXT, WIDTH, LAYERS, HEADS = 32, 64, 2, 4
DROPOUT_RATE = 0.1  # NanoLM uses 0.2 with a 6-layer model; this one is much smaller.
BATCH_SIZE = 16
STEPS, QUICK_STEPS = 300, 80
EVAL_BATCHES = 8
# Pure-Python standard-library modules present in every CPython 3.10+, all plain ASCII: together
# they use about 90 of the 256 byte values.
CORPUS_MODULES = (
  *("_weakrefset.py", "abc.py", "bisect.py", "colorsys.py", "copy.py", "fnmatch.py"),
  *("genericpath.py", "glob.py", "linecache.py"),
)


class NanoLM(nnx.Module):
  """Decoder-only transformer with learned position embeddings."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.embed = nnx.Embed(VOCAB_SIZE, WIDTH, rngs=rngs)
    self.pos_embed = nnx.Embed(CONTEXT, WIDTH, rngs=rngs)
    self.layers = nnx.List(
      [
        nnx.Dict(
          ln_1=nnx.LayerNorm(WIDTH, rngs=rngs),
          attn=nnx.MultiHeadAttention(
            num_heads=HEADS, in_features=WIDTH, dropout_rate=DROPOUT_RATE, decode=False, rngs=rngs
          ),
          ln_2=nnx.LayerNorm(WIDTH, rngs=rngs),
          mlp_fc=nnx.Linear(WIDTH, 4 * WIDTH, rngs=rngs),
          mlp_dropout=nnx.Dropout(DROPOUT_RATE, rngs=rngs),
          mlp_proj=nnx.Linear(4 * WIDTH, WIDTH, rngs=rngs),
        )
        for _ in range(LAYERS)
      ]
    )
    self.ln_f = nnx.LayerNorm(WIDTH, rngs=rngs)
    self.head = nnx.Linear(WIDTH, VOCAB_SIZE, rngs=rngs)

  def __call__(self, tokens, deterministic: bool = False):
    length = tokens.shape[1]
    x = self.embed(tokens) + self.pos_embed(jnp.arange(length))
    mask = nnx.make_causal_mask(tokens)
    for layer in self.layers:
      h = layer["ln_1"](x)
      x = x + layer["attn"](h, mask=mask, deterministic=deterministic)
      h = nnx.relu(layer["mlp_fc"](layer["ln_2"](x)))
      x = x + layer["mlp_proj"](layer["mlp_dropout"](h, deterministic=deterministic))
    return self.head(self.ln_f(x))


@functools.lru_cache(maxsize=1)
def corpus(val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
  """Train and validation byte arrays (int32) of the modules in ``CORPUS_MODULES``."""
  stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
  parts = [(stdlib / name).read_bytes() for name in CORPUS_MODULES if (stdlib / name).is_file()]
  if not parts:
    raise FileNotFoundError(f"none of {CORPUS_MODULES} found under {stdlib}")
  ids = np.frombuffer(b"\n".join(parts), dtype=np.uint8).astype(np.int32)
  split = int(len(ids) * (1 - val_fraction))
  return ids[:split], ids[split:]


def windows(ids: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
  """``count`` random windows of CONTEXT + 1 tokens: inputs and next-token targets."""
  starts = rng.integers(0, len(ids) - CONTEXT - 1, size=count)
  return ids[starts[:, None] + np.arange(CONTEXT + 1)]


def loss_fn(model: NanoLM, batch, deterministic: bool = False):
  logits = model(batch[:, :-1], deterministic=deterministic)
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()


@nnx.jit
def train_step(model: NanoLM, optimizer: nnx.Optimizer, batch):
  loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
  optimizer.update(model, grads)
  return loss, jnp.isfinite(loss) & common.all_finite(nnx.state(model, nnx.Param))


@nnx.jit
def eval_step(model: NanoLM, batch):
  return loss_fn(model, batch, deterministic=True)


def run(optimizer_name: str, learning_rate=LEARNING_RATE, seed: int = 0, quick: bool = False):
  train_ids, val_ids = corpus()
  model = NanoLM(rngs=nnx.Rngs(seed))
  tx = common.make_optimizer(optimizer_name, learning_rate, adamw_weight_decay=WEIGHT_DECAY)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  step = nnx.cached_partial(train_step, model, optimizer)
  rng, watch = np.random.default_rng(seed), common.NonFiniteWatch()
  for i in range(QUICK_STEPS if quick else STEPS):
    watch.record(*step(windows(train_ids, rng, BATCH_SIZE)))
    if (i + 1) % 50 == 0 and not watch.check():  # Check every 50 steps.
      break
  val_rng = np.random.default_rng(12345)  # The same held-out windows for every run.
  val = [
    float(eval_step(model, windows(val_ids, val_rng, BATCH_SIZE))) for _ in range(EVAL_BATCHES)
  ]
  vocab = {"vocab_used": int(np.unique(train_ids).size), "vocab_size": VOCAB_SIZE}
  return common.result(np.mean(val), "loss", watch, min(50, len(watch.losses)), **vocab)
