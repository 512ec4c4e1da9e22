"""Models and data loaders shared by the benchmarks and the experiments (one module for both).

Two families:

* Flax NNX models and the data of the examples, copied verbatim from them so that the paper
  experiments train exactly what the examples train (same modules, hence the same initial
  parameters for a given seed; ``tests/test_paper_quick.py`` checks it against the example files):
  :class:`CNN` and :func:`load_digits` (``examples/digits_cnn.py``), :class:`MLP`
  (``examples/gamma_sweep.py``), :class:`GPT`, :func:`load_corpus` and :func:`sample_batches`
  (``examples/char_gpt.py``).
* Plain-JAX models for the speed benchmarks (no framework in the timed programs):
  :func:`mlp_init` / :func:`mlp_apply`, :func:`cnn_init` / :func:`cnn_apply`, the im2col variant
  :func:`cnn_apply_im2col`, and :func:`load_digits_first_1500`.

The examples stay self-contained single files; nothing here is imported by them.
"""

from __future__ import annotations

import pathlib
import sysconfig
from typing import NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


class Dataset(NamedTuple):
  x_train: np.ndarray  # float32, (n, height, width, channels), roughly in [0, 1]
  y_train: np.ndarray  # int32, (n,)
  x_test: np.ndarray
  y_test: np.ndarray
  name: str


def load_digits(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
  """sklearn's 1797 8x8 digits, scaled to [0, 1]; a fixed stratified split (seeded).

  The split of ``examples/digits_cnn.py`` (1347 train / 450 test images).
  """
  from sklearn.datasets import load_digits as _load  # pylint: disable=import-outside-toplevel
  from sklearn.model_selection import train_test_split  # pylint: disable=import-outside-toplevel

  digits = _load()
  x = (digits.images / 16.0).astype(np.float32)[..., None]
  y = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=test_fraction, random_state=seed, stratify=y
  )
  return Dataset(x_train, y_train, x_test, y_test, "digits")


def load_digits_first_1500():
  """The speed benchmarks' split: shuffled once (seed 0), 1500 train / 297 test images.

  Returns ``((x_train, y_train), (x_test, y_test))``, images (n, 8, 8, 1) float32 in [0, 1].
  """
  from sklearn.datasets import load_digits as _load  # pylint: disable=import-outside-toplevel

  digits = _load()
  x = (digits.images / 16.0).astype(np.float32)[..., None]
  y = digits.target.astype(np.int32)
  perm = np.random.default_rng(0).permutation(len(x))
  x, y = x[perm], y[perm]
  return (x[:1500], y[:1500]), (x[1500:], y[1500:])


# Pure-Python standard-library modules present in every CPython 3.10+, in sorted order.
STDLIB_MODULES = (
  "abc.py",
  "bisect.py",
  "calendar.py",
  "colorsys.py",
  "contextlib.py",
  "copy.py",
  "dataclasses.py",
  "fnmatch.py",
  "fractions.py",
  "functools.py",
  "heapq.py",
  "keyword.py",
  "numbers.py",
  "operator.py",
  "queue.py",
  "random.py",
  "shlex.py",
  "string.py",
  "textwrap.py",
  "types.py",
)


class Corpus(NamedTuple):
  train: np.ndarray  # int32 token ids
  val: np.ndarray
  chars: str  # the vocabulary: sorted distinct characters
  source: str


def read_stdlib_text() -> tuple[str, str]:
  stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
  parts = [
    (stdlib / name).read_text(encoding="utf-8")
    for name in STDLIB_MODULES
    if (stdlib / name).is_file()
  ]
  if not parts:
    raise FileNotFoundError(f"none of STDLIB_MODULES found under {stdlib}")
  return "\n".join(parts), f"{len(parts)} stdlib modules from {stdlib}"


def load_corpus(
  text_path: str | None = None, val_fraction: float = 0.1, max_chars: int | None = None
) -> Corpus:
  """``examples/char_gpt.py``'s corpus: characters as ids, the first 90% train, the rest val."""
  if text_path:
    text, source = pathlib.Path(text_path).read_text(encoding="utf-8"), text_path
  else:
    text, source = read_stdlib_text()
  if max_chars:
    text = text[:max_chars]
  chars = "".join(sorted(set(text)))
  lookup = {c: i for i, c in enumerate(chars)}
  ids = np.fromiter((lookup[c] for c in text), dtype=np.int32, count=len(text))
  split = int(len(ids) * (1 - val_fraction))
  return Corpus(ids[:split], ids[split:], chars, source)


def sample_batches(
  ids: np.ndarray, steps: int, batch_size: int, context: int, seed: int
) -> np.ndarray:
  """Random windows of context + 1 tokens: (steps, batch_size, context + 1). Seeded."""
  rng = np.random.default_rng(seed)
  starts = rng.integers(0, len(ids) - context - 1, size=(steps, batch_size))
  return ids[starts[..., None] + np.arange(context + 1)]


# ----------------------------------------------------------------------------------------------
# Flax NNX models (the examples')
# ----------------------------------------------------------------------------------------------


class CNN(nnx.Module):
  """Two 3x3 conv layers, one 2x2 average pool, two dense layers; GELU activations."""

  def __init__(
    self,
    image_shape: tuple[int, int, int],
    num_classes: int = 10,
    *,
    width: int = 32,
    hidden: int = 128,
    rngs: nnx.Rngs,
  ):
    height, w, channels = image_shape
    self.conv1 = nnx.Conv(channels, width, kernel_size=(3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(width, 2 * width, kernel_size=(3, 3), rngs=rngs)
    self.linear1 = nnx.Linear((height // 2) * (w // 2) * 2 * width, hidden, rngs=rngs)
    self.linear2 = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x):
    x = nnx.gelu(self.conv1(x))
    x = nnx.gelu(self.conv2(x))
    x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = nnx.gelu(self.linear1(x))
    return self.linear2(x)


class MLP(nnx.Module):
  """Flattened 8x8 image -> two GELU hidden layers -> 10 logits."""

  def __init__(
    self, in_features: int = 64, hidden: int = 128, num_classes: int = 10, *, rngs: nnx.Rngs
  ):
    self.linear1 = nnx.Linear(in_features, hidden, rngs=rngs)
    self.linear2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.linear3 = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    x = nnx.gelu(self.linear1(x))
    x = nnx.gelu(self.linear2(x))
    return self.linear3(x)


class CausalSelfAttention(nnx.Module):
  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs):
    if width % heads:
      raise ValueError(f"width {width} must be divisible by heads {heads}")
    self.heads = heads
    self.qkv = nnx.Linear(width, 3 * width, use_bias=False, rngs=rngs)
    self.proj = nnx.Linear(width, width, use_bias=False, rngs=rngs)

  def __call__(self, x):
    b, t, c = x.shape
    q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
    split = lambda a: a.reshape(b, t, self.heads, c // self.heads)
    y = jax.nn.dot_product_attention(split(q), split(k), split(v), is_causal=True)
    return self.proj(y.reshape(b, t, c))


class Block(nnx.Module):
  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs):
    self.ln1 = nnx.LayerNorm(width, rngs=rngs)
    self.attn = CausalSelfAttention(width, heads, rngs=rngs)
    self.ln2 = nnx.LayerNorm(width, rngs=rngs)
    self.fc = nnx.Linear(width, 4 * width, rngs=rngs)
    self.out = nnx.Linear(4 * width, width, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.ln1(x))
    return x + self.out(nnx.gelu(self.fc(self.ln2(x))))


class GPT(nnx.Module):
  """Decoder-only transformer: token + learned position embeddings, pre-LN blocks, linear head."""

  def __init__(
    self,
    vocab_size: int,
    *,
    context: int = 64,
    width: int = 64,
    layers: int = 2,
    heads: int = 4,
    rngs: nnx.Rngs,
  ):
    self.embed = nnx.Embed(vocab_size, width, rngs=rngs)
    self.pos_embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (context, width)))
    self.blocks = nnx.List([Block(width, heads, rngs=rngs) for _ in range(layers)])
    self.ln_f = nnx.LayerNorm(width, rngs=rngs)
    self.head = nnx.Linear(width, vocab_size, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens) + self.pos_embed[None, : tokens.shape[1]]
    for block in self.blocks:
      x = block(x)
    return self.head(self.ln_f(x))


# ----------------------------------------------------------------------------------------------
# Plain-JAX models (the speed benchmarks')
# ----------------------------------------------------------------------------------------------


def _dense_init(key, fan_in, fan_out):
  w = jax.random.normal(key, (fan_in, fan_out), jnp.float32) * jnp.sqrt(2.0 / fan_in)
  return {"w": w, "b": jnp.zeros((fan_out,), jnp.float32)}


def mlp_init(key, widths):
  keys = jax.random.split(key, len(widths) - 1)
  return [_dense_init(k, a, b) for k, a, b in zip(keys, widths[:-1], widths[1:])]


def mlp_apply(params, x):
  for layer in params[:-1]:
    x = jax.nn.relu(x @ layer["w"] + layer["b"])
  return x @ params[-1]["w"] + params[-1]["b"]


def cnn_init(key, quick: bool = False):
  """A small CNN for 8x8x1 digits: conv 3x3 -> conv 3x3 (stride 2) -> dense."""
  c1, c2 = (4, 8) if quick else (16, 32)
  k1, k2, k3 = jax.random.split(key, 3)
  return {
    "conv1": {"w": jax.random.normal(k1, (3, 3, 1, c1)) * jnp.sqrt(2.0 / 9), "b": jnp.zeros((c1,))},
    "conv2": {
      "w": jax.random.normal(k2, (3, 3, c1, c2)) * jnp.sqrt(2.0 / (9 * c1)),
      "b": jnp.zeros((c2,)),
    },
    "dense": _dense_init(k3, 4 * 4 * c2, 10),
  }


def _conv(x, w, b, stride):
  y = jax.lax.conv_general_dilated(
    x,
    w,
    window_strides=(stride, stride),
    padding="SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )
  return y + b


def conv_im2col(x, w, b, stride):
  """The same convolution as `_conv` ("SAME", NHWC/HWIO), as patches @ matrix.

  The patches are the kernel's shifted, strided slices of the padded input,
  concatenated on the channel axis. Under `jax.vmap` over the weights (a
  hyperparameter sweep) this is a batched matmul; `_conv` with batched
  activations *and* batched kernels becomes a grouped convolution
  (``feature_group_count`` = the batch), which XLA:CPU runs several times
  slower (benchmarks/README.md, vmapped sweep).
  """
  kh, kw, cin, cout = w.shape
  _, height, width, _ = x.shape

  def same(size, k):  # Output size and (low, high) padding of "SAME".
    out = -(-size // stride)
    pad = max((out - 1) * stride + k - size, 0)
    return out, (pad // 2, pad - pad // 2)

  out_h, pad_h = same(height, kh)
  out_w, pad_w = same(width, kw)
  x = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
  patches = jnp.concatenate(
    [
      x[:, i : i + stride * (out_h - 1) + 1 : stride, j : j + stride * (out_w - 1) + 1 : stride]
      for i in range(kh)
      for j in range(kw)
    ],
    axis=-1,
  )
  return patches @ w.reshape(kh * kw * cin, cout) + b


def _cnn(conv):
  def apply(params, x):
    x = jax.nn.relu(conv(x, params["conv1"]["w"], params["conv1"]["b"], 1))
    x = jax.nn.relu(conv(x, params["conv2"]["w"], params["conv2"]["b"], 2))
    x = x.reshape(x.shape[0], -1)
    return x @ params["dense"]["w"] + params["dense"]["b"]

  return apply


cnn_apply = _cnn(_conv)
cnn_apply.__doc__ = (
  """``x``: (batch, 8, 8, 1) -> logits (batch, 10), with `jax.lax` convolutions."""
)
cnn_apply_im2col = _cnn(conv_im2col)
cnn_apply_im2col.__doc__ = """`cnn_apply` with `conv_im2col`: the same function, vmap-friendly."""
