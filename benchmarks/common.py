"""Parameter trees for the benchmarks, and where their results files go.

:func:`leaf_sizes` / :func:`make_tree` build pytrees of ``N`` float32 parameters in ``L`` leaves
with a transformer-like spread of leaf sizes (a few large matrices, many mid-size ones, and small
bias / norm vectors). Timing, machine info and results files are :mod:`tooling.machine`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
import pathlib

import numpy as np

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def leaf_sizes(num_params: int, num_leaves: int, seed: int = 0) -> list[tuple[int, ...]]:
  """Returns ``num_leaves`` shapes whose sizes add up to about ``num_params``.

  A third of the leaves are vectors (biases, norm scales) of a model width
  ``d``; the rest are 2-D matrices ``(rows, d)`` whose sizes are log-normally
  spread (the largest a few times the median, like embeddings and MLP weights
  next to attention projections). The total is within one row of
  ``num_params``.
  """
  if num_leaves < 3:
    raise ValueError(f"num_leaves must be >= 3, got {num_leaves}.")
  rng = np.random.default_rng(seed)
  num_vectors = num_leaves // 3
  num_matrices = num_leaves - num_vectors
  # Model width: a matrix of median size is about (4d, d) -> 4 d^2 elements.
  width = int(max(8, np.sqrt(num_params / num_matrices / 4)))
  width = max(8, (width // 8) * 8)
  vector_total = num_vectors * width
  weights = rng.lognormal(mean=0.0, sigma=0.8, size=num_matrices)
  weights = weights / weights.sum() * (num_params - vector_total)
  shapes: list[tuple[int, ...]] = []
  for w in weights:
    rows = max(1, int(round(w / width)))
    shapes.append((rows, width))
  shapes.extend((width,) for _ in range(num_vectors))
  # Interleave vectors among matrices the way a layer stack would.
  order = rng.permutation(len(shapes))
  shapes = [shapes[i] for i in order]
  # Correct the total on the largest matrix so the count is as asked.
  total = sum(int(np.prod(s)) for s in shapes)
  big = max(range(len(shapes)), key=lambda i: np.prod(shapes[i]))
  rows, cols = shapes[big]
  rows += int(round((num_params - total) / cols))
  shapes[big] = (max(1, rows), cols)
  return shapes


def make_tree(shapes: Sequence[tuple[int, ...]], seed: int = 0, scale: float = 1.0):
  """Returns a dict pytree of float32 numpy arrays with the given shapes."""
  rng = np.random.default_rng(seed)
  return {
    f"layer_{i:03d}": (scale * rng.standard_normal(s)).astype(np.float32)
    for i, s in enumerate(shapes)
  }
