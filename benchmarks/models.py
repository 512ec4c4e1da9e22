"""Small plain-JAX models shared by the benchmarks (no framework needed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
      "conv1": {"w": jax.random.normal(k1, (3, 3, 1, c1)) * jnp.sqrt(2.0 / 9),
                "b": jnp.zeros((c1,))},
      "conv2": {"w": jax.random.normal(k2, (3, 3, c1, c2)) * jnp.sqrt(2.0 / (9 * c1)),
                "b": jnp.zeros((c2,))},
      "dense": _dense_init(k3, 4 * 4 * c2, 10),
  }


def _conv(x, w, b, stride):
  y = jax.lax.conv_general_dilated(
      x, w, window_strides=(stride, stride), padding="SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + b


def conv_im2col(x, w, b, stride):
  """The same convolution as `_conv` ("SAME", NHWC/HWIO), as patches @ matrix.

  The patches are the kernel's shifted, strided slices of the padded input,
  concatenated on the channel axis. Under `jax.vmap` over the weights (a
  hyperparameter sweep) this is a batched matmul; `_conv` with batched
  activations *and* batched kernels becomes a grouped convolution
  (``feature_group_count`` = the batch), which XLA:CPU runs several times
  slower (benchmarks/README.md, gamma sweep).
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
      [x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
       for i in range(kh) for j in range(kw)], axis=-1)
  return patches @ w.reshape(kh * kw * cin, cout) + b


def _cnn(conv):
  def apply(params, x):
    x = jax.nn.relu(conv(x, params["conv1"]["w"], params["conv1"]["b"], 1))
    x = jax.nn.relu(conv(x, params["conv2"]["w"], params["conv2"]["b"], 2))
    x = x.reshape(x.shape[0], -1)
    return x @ params["dense"]["w"] + params["dense"]["b"]
  return apply


cnn_apply = _cnn(_conv)
cnn_apply.__doc__ = """``x``: (batch, 8, 8, 1) -> logits (batch, 10), with `jax.lax` convolutions."""
cnn_apply_im2col = _cnn(conv_im2col)
cnn_apply_im2col.__doc__ = """`cnn_apply` with `conv_im2col`: the same function, vmap-friendly."""
