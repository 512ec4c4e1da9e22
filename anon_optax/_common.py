"""Numeric and dtype helpers shared by Anon, the IDU preconditioner and HVAdam.

The dtype rules for statistics and updates, the evaluation of hyperparameters
that may be schedules, ``1 - b`` formed without cancellation, and the two
expressions that keep XLA from recomputing a moment from its overwritten
buffer. Argument checks live in `_validation`.
"""

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def resolve_schedule(value: Any, count: jax.Array) -> Any:
  """Returns ``value(count)`` if ``value`` is a schedule, else ``value``.

  Args:
    value: a number, an array (maybe traced) or a schedule of the step count.
    count: the number of steps taken before this one (0-based, as Optax's
      schedules expect).
  """
  return value(count) if callable(value) else value


def statistics_dtype(dtype: jax.typing.DTypeLike) -> jnp.dtype:
  """At least float32, keeping complexness: the dtype of moment statistics.

  bfloat16 and float16 parameters get float32 statistics, float64 stays
  float64, complex64 stays complex64.
  """
  if jnp.issubdtype(dtype, jnp.complexfloating):
    return jnp.promote_types(dtype, jnp.complex64)
  return jnp.promote_types(dtype, jnp.float32)


def real_statistics_dtype(dtype: jax.typing.DTypeLike) -> jnp.dtype:
  """The real counterpart of :func:`statistics_dtype` (for ``|g|**2``)."""
  return jnp.finfo(statistics_dtype(dtype)).dtype


def restored_dtype(update: Any, stored: Any, configured: Any = None, *, real: bool = False):
  """A statistic's dtype after this step: ``configured``, else as at ``init``.

  ``init`` gives statistics at least float32 (real for ``real``), from the
  parameters' dtype; the update's dtype stands in for it here. A state
  restored from another configuration (``flax.serialization`` does not cast)
  is then back in the configured dtypes after one step, as ``optax.adam``'s.
  """
  if configured is not None:
    return configured
  dtype = jnp.result_type(update, stored)
  return real_statistics_dtype(dtype) if real else statistics_dtype(dtype)


def real_part(value: Any) -> Any:
  """A hyperparameter's real part; real numbers, schedules and `None` unchanged.

  `optax.inject_hyperparams` casts float hyperparameters to the parameters'
  dtype, so complex parameters get complex ``b1``, ``b2``, ... with a zero
  imaginary part (`_validation` checks it where the value is concrete). They
  are used as the real numbers they are, so that the statistics and the real
  leaves' updates keep their real dtypes.
  """
  if isinstance(value, complex):
    return value.real
  if isinstance(value, (np.ndarray, np.generic)) and np.iscomplexobj(value):
    return np.real(value)
  if isinstance(value, jax.Array) and jnp.iscomplexobj(value):
    return jnp.real(value)
  return value


def at_least_float32(value: Any) -> jax.Array:
  """A scalar hyperparameter as an array of at least float32.

  `optax.inject_hyperparams` casts hyperparameters to the parameters' dtype;
  arithmetic on a bfloat16 ``b1`` or ``gamma`` would lose most of its digits,
  so it is done in float32 (a value already rounded stays rounded: see
  ``hyperparam_dtype`` in the docs).
  """
  value = jnp.asarray(value)
  if jnp.issubdtype(value.dtype, jnp.floating) and jnp.finfo(value.dtype).bits < 32:
    return value.astype(jnp.float32)
  return value


def one_known_at_run_time(count: jax.typing.ArrayLike, dtype: Any) -> jax.Array:
  """``1 + 0 * count`` in ``dtype``: exactly 1, but not a constant XLA can fold.

  An XLA:CPU memory device (HVAdam's step uses it). Dividing a new moment by
  it makes recomputing the moment too costly for XLA's fusion, so a later pass
  reads it back from its (donated, overwritten) buffer instead of recomputing
  it from the old one, which XLA would have to copy. What it saves, from
  ``benchmarks/results/memory.md`` (``python -m benchmarks.memory``; AMD EPYC
  family 25, 4M float32 parameters in 40 leaves): HVAdam's jitted step needs
  0.19 parameter bytes of scratch with it and 3.19 without it (peak 5.19
  against 8.19). On CPU `jax.lax.optimization_barrier` does not do this: XLA
  drops barriers before it fuses.
  """
  return 1 + 0 * jnp.asarray(count, dtype)


def never_at_run_time(count: jax.typing.ArrayLike) -> jax.Array:
  """`False`, computed from the step count so that XLA cannot fold it.

  An XLA:CPU memory device (HVAdam's step uses it): ``where(never, a, b)`` is
  ``b``, but makes the pass that computes it read ``a``, which orders that pass
  after the one that writes ``a``. (Bit 31 of a 32-bit integer, shifted down,
  is 0 or 1, never more.) What it saves, from ``benchmarks/results/memory.md``
  (``python -m benchmarks.memory``; AMD EPYC family 25, 4M float32 parameters
  in 40 leaves): HVAdam's jitted step needs 0.19 parameter bytes of scratch
  with it and 0.56 without it (a copy of its old hidden vector).
  """
  return (jnp.asarray(count, jnp.uint32) >> 31) > 1


def read_back_from_memory(moment: jax.Array, like: jax.Array) -> jax.Array:
  """``moment``, bit for bit, in a form that later passes read from memory.

  An XLA:CPU memory device (Anon's guarded step uses it for the new
  accumulator, which the guard reads in the parameters' pass). It divides by
  ones computed per element (``1 + 0 * isnan(like)``, ``like`` any array of
  the moment's shape), which XLA can neither fold nor turn into a
  multiplication, so it reads the new moment back instead of recomputing it
  from the old one, overwritten in place (which would need a copy). What it
  saves, from ``benchmarks/results/memory.md`` (``python -m benchmarks.memory``;
  AMD EPYC family 25, 4M float32 parameters in 40 leaves): the default step
  needs 0.0001 parameter bytes of scratch with it and 1.0001 (a whole copy of
  the accumulator) without it, peak 5.0 against 6.0; its time is that of the
  step without the division (``benchmarks/results/guard_cost.md``, AMD EPYC
  family 26: 1.00x ``floor_exact``, paired, at 4M and 64M).
  ``tests/test_memory.py`` checks the compiled step's scratch.
  """
  ones = 1 + 0 * jnp.isnan(like).astype(moment.dtype)
  return moment / ones


def update_dtype(update: Any, *others: Any) -> jnp.dtype:
  """The dtype of an update, as :func:`optax.adam` gives it.

  Adam's updates are computed from the gradient, the parameters' dtype (its
  second moment), its first moment and its hyperparameters, so they come out
  in the promotion of all of them: float32 parameters with bfloat16 gradients
  or a bfloat16 ``mu_dtype`` give float32 updates, as do float32 hyperparameters
  injected with bfloat16 parameters (Python numbers are weakly typed and change
  nothing); integer gradients give floating updates.

  Args:
    update: the incoming update (gradient) leaf.
    *others: the parameter leaf, the first moment, hyperparameters, ...;
      `None` entries are skipped (an `update` called without parameters).
  """
  # The weak Python float makes integer updates floating and changes no
  # floating dtype.
  values = [x for x in (update, *others) if x is not None]
  return jax.dtypes.canonicalize_dtype(jnp.result_type(*values, 1.0))


def exact_one_minus(value: Any) -> float | None:
  """``1 - value`` in double precision for a Python or NumPy real; else `None`.

  Python numbers are exact decimals to the user: ``1 - 0.999`` rounded once
  is closer to 0.001 than ``1 - float32(0.999)`` (three digits cancel).
  Arrays (maybe traced) are subtracted by the caller, in its dtype.
  """
  if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
    return 1 - float(value)
  return None
