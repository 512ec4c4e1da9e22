"""Eager checks of hyperparameters, at construction.

A hyperparameter given as a Python number, a NumPy scalar or a concrete JAX
scalar is checked here: its type (a real number; strings, `None`, complex
numbers and non-scalar arrays are refused with a `TypeError` or `ValueError`
that names the argument), and its range. Traced values (under `jax.jit` with
`optax.inject_hyperparams`, or `jax.vmap`) are only checked for their shape:
branching on their value in Python would either fail or silently freeze one
value into the compiled program. Schedules are evaluated by their users, not
here.
"""

import math
import numbers
from typing import Any

import jax
from jax import core as jax_core
import numpy as np

WEIGHT_DECAY_MODES = ("l2", "decoupled", "fixed")


def _scalar_value(name: str, value: Any) -> float | None:
  """Returns a concrete real scalar ``value`` as a float, `None` if traced.

  Raises:
    TypeError: if ``value`` is not a real number or real scalar array.
    ValueError: if it is an array with more than one element.
  """
  if isinstance(value, bool) or value is None or isinstance(value, str):
    raise TypeError(f"`{name}` must be a real number or a real scalar array, got {value!r}.")
  if isinstance(value, numbers.Real):
    return float(value)
  if isinstance(value, (np.ndarray, np.generic, jax.Array)):
    if np.ndim(value) != 0:
      raise ValueError(
        f"`{name}` must be a scalar (shape ()), got an array of shape {np.shape(value)}."
      )
    dtype = value.dtype
    if not (
      np.issubdtype(dtype, np.floating)
      or np.issubdtype(dtype, np.integer)
      or dtype == jax.numpy.bfloat16
    ):
      raise TypeError(f"`{name}` must be a real number or a real scalar array, got dtype {dtype}.")
    if isinstance(value, jax_core.Tracer):
      return None
    return float(value)
  raise TypeError(
    f"`{name}` must be a real number or a real scalar array, got {type(value).__name__} {value!r}."
  )


def check_finite(name: str, value: Any) -> None:
  """Raises unless `value` is a real scalar, finite where it is concrete."""
  number = _scalar_value(name, value)
  if number is not None and not math.isfinite(number):
    raise ValueError(f"`{name}` must be a finite number, got {value!r}.")


def check_real_scalar_or_schedule(name: str, value: Any) -> None:
  """A schedule (any callable), or a finite real scalar as `check_finite`."""
  if not callable(value):
    check_finite(name, value)


def check_interval(
  name: str,
  value: Any,
  low: float,
  high: float = math.inf,
  *,
  high_inclusive: bool = False,
) -> None:
  """Raises unless a concrete `value` lies in [low, high) or [low, high]."""
  number = _scalar_value(name, value)
  if number is None:
    return
  inside = low <= number and (number <= high if high_inclusive else number < high)
  if not inside:  # Also true for NaN, whose comparisons are all False.
    closing = "]" if high_inclusive else ")"
    upper = "inf" if high == math.inf else f"{high:g}"
    raise ValueError(f"`{name}` must lie in [{low:g}, {upper}{closing}, got {value!r}.")


def check_integer_in(name: str, value: Any, low: int, high: int) -> None:
  """Raises unless a concrete `value` is an integer in [low, high]."""
  number = _scalar_value(name, value)
  if number is None:
    return
  if not (number.is_integer() and low <= number <= high):
    raise ValueError(f"`{name}` must be an integer in [{low}, {high}], got {value!r}.")


def check_bool(name: str, value: Any) -> None:
  """Raises `TypeError` unless `value` is a Python bool (a structural flag)."""
  if not isinstance(value, bool):
    raise TypeError(f"`{name}` must be True or False, got {value!r}.")


def check_weight_decay_mode(weight_decay_mode: Any) -> None:
  if weight_decay_mode not in WEIGHT_DECAY_MODES:
    raise ValueError(
      "`weight_decay_mode` must be one of "
      f"{', '.join(repr(m) for m in WEIGHT_DECAY_MODES)}; "
      f"got {weight_decay_mode!r}."
    )
