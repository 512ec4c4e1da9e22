"""Data loaders: scikit-learn's bundled 8x8 digits (no download) and a character corpus."""

from __future__ import annotations

import functools
import pathlib
import sysconfig
from typing import NamedTuple

import numpy as np


class Dataset(NamedTuple):
  x_train: np.ndarray  # float32, (n, height, width, channels), in [0, 1]
  y_train: np.ndarray  # int32, (n,)
  x_test: np.ndarray
  y_test: np.ndarray
  name: str


@functools.cache
def _digit_images() -> tuple[np.ndarray, np.ndarray]:
  """The 1797 digits as (1797, 8, 8, 1) float32 images in [0, 1] and int32 labels."""
  from sklearn.datasets import load_digits as _load  # pylint: disable=import-outside-toplevel

  digits = _load()
  x = (digits.images / 16.0).astype(np.float32)[..., None]
  return x, digits.target.astype(np.int32)


def load_digits(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
  """The digits in a stratified train/test split drawn with ``seed``.

  With the defaults: 1347 train / 450 test images, the split of ``examples/digits_cnn.py``.
  """
  from sklearn.model_selection import train_test_split  # pylint: disable=import-outside-toplevel

  x, y = _digit_images()
  x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=test_fraction, random_state=seed, stratify=y
  )
  return Dataset(x_train, y_train, x_test, y_test, "digits")


def load_digits_first_1500() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
  """The speed benchmarks' split: shuffled once (seed 0), 1500 train / 297 test images.

  Returns ``((x_train, y_train), (x_test, y_test))``.
  """
  x, y = _digit_images()
  perm = np.random.default_rng(0).permutation(len(x))
  x, y = x[perm], y[perm]
  return (x[:1500], y[:1500]), (x[1500:], y[1500:])


# Pure-Python standard-library modules present in every CPython 3.10+, in sorted order.
STDLIB_MODULES = tuple(
  f"{name}.py"
  for name in "abc bisect calendar colorsys contextlib copy dataclasses fnmatch fractions functools"
  " heapq keyword numbers operator queue random shlex string textwrap types".split()
)


class Corpus(NamedTuple):
  train: np.ndarray  # int32 token ids
  val: np.ndarray
  chars: str  # the vocabulary: sorted distinct characters
  source: str


def read_stdlib_text() -> tuple[str, str]:
  """The text of ``STDLIB_MODULES`` joined by newlines, and where it came from."""
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
  """Characters as ids; the first 90% train, the rest val (``examples/char_gpt.py``'s corpus)."""
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
