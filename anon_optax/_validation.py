"""Every argument check of the package, with one wording per rule.

Hyperparameters given as Python numbers, NumPy scalars or concrete JAX scalars
are checked at construction: their type (a real number; strings, `None`,
booleans and non-scalar arrays raise a `TypeError` or `ValueError` naming the
argument; a complex number counts as its real part if its imaginary part is
zero, as `optax.inject_hyperparams` makes them for complex parameters) and
their range. Traced values (under `jax.jit`, `jax.vmap`, or
`optax.inject_hyperparams` inside `jit`) are checked for their shape only:
branching on their value in Python would fail or freeze one value into the
compiled program. Schedules are evaluated by their users.
"""

import math
import numbers
from typing import Any

import jax
from jax import core as jax_core
import jax.numpy as jnp
import numpy as np
import optax

MAX_INT32 = int(np.iinfo(np.int32).max)
WEIGHT_DECAY_MODES = ("l2", "decoupled", "fixed")
# The guard factor C of anon, scale_by_anon and scale_by_idu when none is given: a step never
# uses a preconditioner more than 10 times the one a refresh at that step would give
# (docs/algorithm.md, "Choosing C", has the measurements that chose it).
DEFAULT_GUARD_FACTOR = 10.0
# The most steps between two refreshes of the default rule (exact=False) when none is given: the
# refreshes come at 1, 2, 4, ..., 256, 512 and then every 256 steps, so that late in a long run
# the preconditioner follows the gradients' current scale (docs/algorithm.md, "Long runs", has the
# measurements that chose it). exact=True keeps the authors' schedule.
DEFAULT_MAX_REFRESH_INTERVAL = 256


def _describe(low: float, high: float, high_inclusive: bool) -> str:
  if low == -math.inf and high == math.inf:
    return "a finite real number"
  closing = "]" if high_inclusive else ")"
  upper = "inf" if high == math.inf else f"{high:g}"
  return f"a real number in [{low:g}, {upper}{closing}"


def _concrete_value(name: str, value: Any, allowed: str) -> float | None:
  """``value`` as a float; `None` if it is traced.

  A complex scalar with a zero imaginary part counts as its real part:
  `optax.inject_hyperparams` casts every float hyperparameter to the
  parameters' dtype, complex for complex parameters (as ``optax.adam`` takes
  them). A traced complex one is taken as its real part unchecked.

  Raises:
    TypeError: if ``value`` is not a number or a numeric scalar array.
    ValueError: if it is an array with more than one element, or complex with
      a nonzero imaginary part.
  """
  if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, str):
    raise TypeError(f"`{name}` must be {allowed}, got {value!r} of type {type(value).__name__}.")
  if isinstance(value, numbers.Real):
    return float(value)
  if isinstance(value, complex):
    return _real_part(name, value, allowed)
  if isinstance(value, (np.ndarray, np.generic, jax.Array)):
    if not jnp.issubdtype(value.dtype, jnp.number):
      raise TypeError(f"`{name}` must be {allowed}, got an array of dtype {value.dtype}.")
    if np.ndim(value) != 0:
      raise ValueError(
        f"`{name}` must be a scalar ({allowed}), got an array of shape {np.shape(value)}."
      )
    if isinstance(value, jax_core.Tracer):
      return None
    if jnp.issubdtype(value.dtype, jnp.complexfloating):
      return _real_part(name, complex(value), allowed)
    return float(value)
  raise TypeError(f"`{name}` must be {allowed}, got {value!r} of type {type(value).__name__}.")


def _real_part(name: str, value: complex, allowed: str) -> float:
  if value.imag != 0:
    raise ValueError(
      f"`{name}` must be {allowed}, got {value!r}; a complex value (as "
      "optax.inject_hyperparams makes for complex parameters) must have a zero imaginary part."
    )
  return value.real


def check_real(
  name: str,
  value: Any,
  low: float = -math.inf,
  high: float = math.inf,
  *,
  high_inclusive: bool = False,
  why: str = "",
) -> None:
  """Raises unless a concrete ``value`` is a finite real scalar in [low, high).

  Args:
    name: the argument's name, quoted in the error.
    value: the hyperparameter (traced values pass, if scalar).
    low: the smallest allowed value.
    high: the upper bound, excluded unless ``high_inclusive``.
    high_inclusive: whether ``high`` itself is allowed.
    why: appended to the range error, to say what goes wrong outside it.
  """
  allowed = _describe(low, high, high_inclusive)
  number = _concrete_value(name, value, allowed)
  if number is None:
    return
  inside = low <= number and (number <= high if high_inclusive else number < high)
  if not (math.isfinite(number) and inside):  # NaN compares False everywhere.
    raise ValueError(f"`{name}` must be {allowed}, got {value!r}.{why}")


def check_real_or_schedule(name: str, value: Any, low: float = -math.inf, **kwargs) -> None:
  """A schedule (any callable), or a real scalar as :func:`check_real`."""
  if not callable(value):
    check_real(name, value, low, **kwargs)


def check_integer_in(name: str, value: Any, low: int, high: int) -> None:
  """Raises unless a concrete ``value`` is an integer in [low, high]."""
  allowed = f"an integer in [{low}, {high}]"
  number = _concrete_value(name, value, allowed)
  if number is not None and not (number.is_integer() and low <= number <= high):
    raise ValueError(f"`{name}` must be {allowed}, got {value!r}.")


def check_bool(name: str, value: Any) -> None:
  """Raises `TypeError` unless ``value`` is a Python bool (a structural flag)."""
  if not isinstance(value, bool):
    raise TypeError(f"`{name}` must be True or False, got {value!r}.")


def check_weight_decay(weight_decay: Any, weight_decay_mode: Any) -> None:
  """The mode is one of :data:`WEIGHT_DECAY_MODES`; the strength in its range.

  ``"fixed"`` multiplies the parameters by ``1 - weight_decay`` at every step,
  so beyond 1 it flips their sign and grows them.
  """
  if weight_decay_mode not in WEIGHT_DECAY_MODES:
    raise ValueError(
      "`weight_decay_mode` must be one of "
      f"{', '.join(repr(m) for m in WEIGHT_DECAY_MODES)}; got {weight_decay_mode!r}."
    )
  if weight_decay_mode == "fixed":
    check_real_or_schedule(
      "weight_decay", weight_decay, 0.0, high=1.0, high_inclusive=True, why=" (mode 'fixed')"
    )
  else:
    check_real_or_schedule("weight_decay", weight_decay, 0.0)


# What goes wrong when a statistic is stored in a dtype narrower than float32's range.
_NARROW_RANGE_REASONS = {
  "nu_dtype": (
    "squared gradients outside its range underflow to 0 or overflow, and the steps come out "
    "too large or too small"
  ),
  "precond_dtype": (
    "the preconditioner v ~ sigma**(-gamma/2) spans far more and is clipped to it, so steps "
    "come out too small or too large by up to orders of magnitude (at gamma = 1, those of every "
    "gradient below ~1 / its largest value)"
  ),
}


def _has_float32_range(dtype: Any) -> bool:
  """Whether ``dtype`` spans float32's exponents with at least bfloat16's 8 significant bits."""
  info, single = jnp.finfo(dtype), jnp.finfo(jnp.float32)
  return (
    info.maxexp >= single.maxexp
    and info.minexp <= single.minexp
    and info.nmant >= jnp.finfo(jnp.bfloat16).nmant
  )


def check_storage_dtype(name: str, dtype: Any, *, complex_ok: bool = False) -> Any:
  """Canonicalises an optional storage dtype; `None` stays `None`.

  ``nu_dtype`` and ``precond_dtype`` need float32's exponent range (bfloat16,
  float32, float64): float16 and the float8 types are refused, because the
  second moment and the preconditioner span far more than their range (see
  :data:`_NARROW_RANGE_REASONS`). ``mu_dtype`` may be float16, as in
  :func:`optax.adam`, where the step loses the same gradients (below ~1e-5,
  subnormal in float16); floats under 16 bits, which JAX does not promote
  implicitly (so Adam's and Anon's first update would fail), are refused.
  """
  if dtype is None:
    return None
  kind = "floating or complex" if complex_ok else "real floating"
  try:
    canonical = jnp.dtype(dtype)
  except TypeError as error:
    raise TypeError(f"`{name}` must be a {kind} dtype or None, got {dtype!r}.") from error
  if not jnp.issubdtype(canonical, jnp.inexact if complex_ok else jnp.floating):
    raise TypeError(
      f"`{name}` must be a {kind} dtype (e.g. jnp.bfloat16, jnp.float32) or None, got {dtype!r}."
    )
  if name in _NARROW_RANGE_REASONS and not _has_float32_range(canonical):
    info = jnp.finfo(canonical)
    raise ValueError(
      f"`{name}` must have float32's exponent range and at least bfloat16's precision "
      f"(jnp.bfloat16, jnp.float32 or jnp.float64), got {canonical.name} (normal values "
      f"{float(info.smallest_normal):.3g} to {float(info.max):.3g}, {info.nmant + 1} significant "
      f"bits): {_NARROW_RANGE_REASONS[name]}. Use jnp.bfloat16 to halve its memory."
    )
  if jnp.finfo(canonical).bits < 16:
    raise ValueError(
      f"`{name}` must be at least 16 bits (e.g. jnp.bfloat16), got {canonical.name}: JAX does "
      "not promote narrower floats implicitly, so the first update would fail."
    )
  return jax.dtypes.canonicalize_dtype(canonical)


def resolve_max_refresh_interval(max_refresh_interval: Any, exact: Any) -> Any:
  """``"auto"``: :data:`DEFAULT_MAX_REFRESH_INTERVAL`, or `None` (no cap) with ``exact=True``.

  Any other value is returned as it is (:func:`check_preconditioner` checks it).
  """
  if isinstance(max_refresh_interval, str):
    if max_refresh_interval != "auto":
      raise ValueError(
        "`max_refresh_interval` must be 'auto', None or an integer in "
        f"[1, {MAX_INT32}], got {max_refresh_interval!r}."
      )
    return None if exact is True else DEFAULT_MAX_REFRESH_INTERVAL
  return max_refresh_interval


def check_preconditioner(
  b2, eps, gamma, beta3, refresh_base, max_refresh_interval, guard_factor, exact
):
  """The hyperparameters of Anon's gamma-preconditioner, its refresh and its guard."""
  check_real("b2", b2, 0.0, 1.0)
  check_real("eps", eps, 0.0)
  check_real_or_schedule("gamma", gamma)
  check_real("beta3", beta3, 0.0, 1.0)
  check_integer_in("refresh_base", refresh_base, 2, MAX_INT32)
  if max_refresh_interval is not None:
    check_integer_in("max_refresh_interval", max_refresh_interval, 1, MAX_INT32)
  check_real("guard_factor", guard_factor, 1.0)
  check_bool("exact", exact)
  # A NumPy or concrete JAX scalar is checked like a Python number; a traced one cannot be
  # (its value is unknown here), and the exact step, which has no guard, ignores it.
  factor = _concrete_value("guard_factor", guard_factor, "a real number")
  if exact and factor is not None and factor != DEFAULT_GUARD_FACTOR:
    raise ValueError(
      f"`guard_factor` ({guard_factor!r}) applies to the guarded step only; "
      "`exact=True` is the authors' rule, which has no guard."
    )


def check_params(params: optax.Params) -> None:
  """Raises `TypeError` for parameter leaves that are not floating or complex."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.inexact):
      raise TypeError(
        "anon_optax optimizers need floating-point or complex parameters; "
        f"the leaf at {jax.tree_util.keystr(path)} has dtype {dtype}."
      )


def _check_tree_and_shapes(tree, reference, structure_message: str, shape_message: str) -> None:
  """Raises `ValueError` unless ``tree`` has the structure and leaf shapes of ``reference``.

  The messages are formatted with ``got`` and ``expected`` (the structures), and ``path``,
  ``got`` and ``expected`` (the leaf and both shapes).
  """
  tree_structure, reference_structure = jax.tree.structure(tree), jax.tree.structure(reference)
  if tree_structure != reference_structure:
    raise ValueError(structure_message.format(got=tree_structure, expected=reference_structure))
  for (path, leaf), expected in zip(
    jax.tree_util.tree_leaves_with_path(tree), jax.tree.leaves(reference)
  ):
    if jnp.shape(leaf) != jnp.shape(expected):
      raise ValueError(
        shape_message.format(
          path=jax.tree_util.keystr(path), got=jnp.shape(leaf), expected=jnp.shape(expected)
        )
      )


def check_updates_match(updates: optax.Updates, reference: optax.Updates) -> None:
  """Raises `ValueError` unless ``updates`` has the tree and shapes of ``reference``."""
  _check_tree_and_shapes(
    updates,
    reference,
    "The updates (gradients) do not have the structure of the parameters "
    "the optimizer was initialised with: got {got}, expected {expected}.",
    "The update at {path} has shape {got}, but the parameter it updates has shape {expected}.",
  )


def check_params_match(params: optax.Params | None, reference: optax.Updates) -> None:
  """Raises `ValueError` unless ``params`` (if given) has the tree and shapes of ``reference``.

  ``reference`` is a state entry built from the parameters at ``init``. Without
  this check an extra leaf in ``params`` is silently dropped (the leaves are
  zipped), and a missing one fails inside JAX ("Too few leaves").
  """
  if params is None:
    return
  _check_tree_and_shapes(
    params,
    reference,
    "The parameters passed to update (`params`) do not have the structure of those the "
    "optimizer was initialised with: got {got}, expected {expected}.",
    "`params` at {path} has shape {got}, but the optimizer was initialised with a parameter "
    "of shape {expected} there.",
  )


def check_mask(mask: Any, params: optax.Params) -> None:
  """Raises `ValueError` naming `mask` unless it is a prefix of ``params``' structure."""
  if mask is None:
    return
  tree = mask(params) if callable(mask) else mask
  try:
    jax.tree.map(lambda *_: None, tree, params)
  except (ValueError, TypeError) as error:
    raise ValueError(
      "`mask` must have the tree structure of the parameters (or a prefix of it): got "
      f"{jax.tree.structure(tree)} for parameters {jax.tree.structure(params)}."
    ) from error
