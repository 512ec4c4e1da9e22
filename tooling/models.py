"""Models of the experiments (Flax NNX) and of the speed benchmarks (plain JAX).

* Flax NNX: :class:`CNN` (the digits CNN), :class:`MLP` (the gamma sweep's MLP) and :class:`GPT`
  (the character-level GPT), as the examples first defined them; the experiments train these.
* Plain JAX, so that the timed programs hold no framework: :func:`mlp_init` / :func:`mlp_apply`,
  :func:`cnn_init` / :func:`cnn_apply` and the im2col variant :func:`cnn_apply_im2col`.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp


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
