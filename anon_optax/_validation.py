"""Eager checks of hyperparameters given as plain Python (or NumPy) numbers.

Every check here skips `jax.Array` values and callables: under
`optax.inject_hyperparams` or `jax.vmap` a hyperparameter is a (possibly traced)
array, and branching on it in Python would either fail or silently freeze one
value into the compiled program. Schedules are checked by their users at trace
time, not here.
"""

import math
import numbers
from typing import Any

import numpy as np

WEIGHT_DECAY_MODES = ("l2", "decoupled", "fixed")


def _concrete_number(value: Any) -> float | None:
  """Returns `value` as a float if it is a plain number we may inspect."""
  if isinstance(value, bool):
    return None
  if isinstance(value, numbers.Real):
    return float(value)
  if isinstance(value, np.ndarray) and value.ndim == 0 and np.issubdtype(
      value.dtype, np.number):
    return float(value)
  return None


def check_finite(name: str, value: Any) -> None:
  """Raises `ValueError` if a concrete `value` is NaN or infinite."""
  number = _concrete_number(value)
  if number is not None and not math.isfinite(number):
    raise ValueError(f"`{name}` must be a finite number, got {value!r}.")


def check_interval(
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    high_inclusive: bool = False,
) -> None:
  """Raises `ValueError` unless a concrete `value` lies in [low, high) or [low, high]."""
  number = _concrete_number(value)
  if number is None:
    return
  inside = low <= number and (number <= high if high_inclusive else number < high)
  if not inside:  # Also true for NaN, whose comparisons are all False.
    closing = "]" if high_inclusive else ")"
    upper = "inf" if high == math.inf else f"{high:g}"
    raise ValueError(
        f"`{name}` must lie in [{low:g}, {upper}{closing}, got {value!r}."
    )


def check_integer_at_least(name: str, value: Any, low: int) -> None:
  """Raises `ValueError` unless a concrete `value` is an integer >= `low`."""
  if isinstance(value, bool):
    raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
  number = _concrete_number(value)
  if number is None:
    return
  if not (number.is_integer() and number >= low):
    raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")


def check_weight_decay_mode(weight_decay_mode: Any) -> None:
  if weight_decay_mode not in WEIGHT_DECAY_MODES:
    raise ValueError(
        "`weight_decay_mode` must be one of "
        f"{', '.join(repr(m) for m in WEIGHT_DECAY_MODES)}; "
        f"got {weight_decay_mode!r}."
    )
