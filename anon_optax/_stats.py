"""Logging statistics of the Anon / IDU preconditioner.

:func:`preconditioner_stats` finds every :class:`anon_optax.ScaleByAnonState`
and :class:`anon_optax.ScaleByIDUState` inside an Optax state, however deeply
it is wrapped (:func:`optax.chain`, :func:`optax.inject_hyperparams`,
:func:`optax.multi_transform`, :class:`optax.MultiSteps`, ...), and summarises
its preconditioner :math:`v` as a flat dict of scalars for a metrics logger.
"""

from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import optax

_STATE_NAMES = ("ScaleByAnonState", "ScaleByIDUState")


def _key_name(entry: Any) -> str:
  """A readable name for one step of a pytree path."""
  for attribute in ("key", "name", "idx"):
    if hasattr(entry, attribute):
      return str(getattr(entry, attribute))
  return str(entry)


def _path_name(path) -> str:
  return "/".join(_key_name(entry) for entry in path)


def _unsharded(v: jax.Array) -> jax.Array:
  """``v`` resharded to replicated if its type is sharded over explicit axes.

  Under a mesh with `jax.sharding.AxisType.Explicit` axes the sharding is
  part of the array's type, and sorting (the median) or flattening an array
  sharded along that dimension is a `ShardingTypeError`; a replicated copy
  can be sorted. Arrays without explicit sharding (Auto meshes, a single
  device) are returned as they are: there the compiler places the sort.
  """
  sharding = jax.typeof(v).sharding
  if any(axis is not None for axis in sharding.spec):
    return jax.sharding.reshard(v, NamedSharding(sharding.mesh, P()))
  return v


def preconditioner_stats(opt_state: optax.OptState) -> dict[str, jax.Array]:
  """Summarises the Anon / IDU preconditioner in ``opt_state`` for logging.

  Finds every :class:`anon_optax.ScaleByAnonState` and
  :class:`anon_optax.ScaleByIDUState` in ``opt_state`` and reports, for each:

  - ``v_min``, ``v_median``, ``v_max``: the minimum, median and maximum of the
    preconditioner :math:`v` over all its parameters;
  - ``v_min/<param path>``, ``v_median/<param path>``, ``v_max/<param path>``:
    the same for each parameter array, keyed by its path in the parameters
    (e.g. ``v_max/Dense_0/kernel``);
  - ``num_refreshes``, ``count`` and ``next_refresh``: the number of
    preconditioner refreshes so far, the number of optimizer steps taken, and
    the step of the next refresh (0 if there is none left in int32).

  If ``opt_state`` holds more than one such state (for example one per group of
  :func:`optax.multi_transform`), every key is prefixed with the path of its
  state in ``opt_state`` and a ``/``.

  Zero-size parameter arrays have no per-parameter entries and do not count in
  the global ones; if every array is empty, the global ``v_min``,
  ``v_median`` and ``v_max`` are NaN.

  The function is jittable, and works with parameters sharded over Auto and
  Explicit (`jax.sharding.AxisType`) meshes. Minima and maxima are one pass
  over :math:`v`; the medians sort it, on a replicated copy where :math:`v` is
  sharded explicitly (and the global median on all of :math:`v` gathered in
  one array). :math:`v` only changes at refresh steps (1, 2, 4, 8, ...), so
  there is no need to log it every step.

  Args:
    opt_state: the state of an Optax transformation containing
      :func:`anon_optax.scale_by_anon` or :func:`anon_optax.scale_by_idu`.

  Returns:
    A flat ``dict`` from names to scalar arrays.

  Raises:
    ValueError: if ``opt_state`` contains no Anon or IDU state.

  Examples:
    >>> import jax.numpy as jnp
    >>> import anon_optax
    >>> params = {'w': jnp.array([1.0, -2.0]), 'b': jnp.array([0.5])}
    >>> tx = anon_optax.anon(learning_rate=0.1, gamma=1.0)
    >>> state = tx.init(params)
    >>> grads = {'w': jnp.array([0.5, -4.0]), 'b': jnp.array([2.0])}
    >>> _, state = tx.update(grads, state, params)
    >>> stats = anon_optax.preconditioner_stats(state)
    >>> print(int(stats['num_refreshes']), int(stats['next_refresh']))
    1 2
    >>> print(f"{stats['v_max/w']:.3f} {stats['v_min']:.3f}")
    2.000 0.250
  """
  found = []
  for name in _STATE_NAMES:
    found.extend(optax.tree.get_all_with_path(opt_state, name))
  if not found:
    raise ValueError(
      "`opt_state` contains no ScaleByAnonState or ScaleByIDUState; "
      "preconditioner_stats needs the state of an anon_optax optimizer."
    )
  stats = {}
  for state_path, state in found:
    prefix = _path_name(state_path) + "/" if len(found) > 1 else ""
    leaves = [
      (_path_name(path), v) for path, v in jax.tree_util.tree_leaves_with_path(state.precond)
    ]
    # Zero-size leaves have no minimum, median or maximum: they get no
    # per-leaf entries and do not count in the global ones.
    nonempty = [(name, v) for name, v in leaves if jnp.size(v) > 0]
    for leaf_name, v in nonempty:
      if leaf_name:  # A single unnamed array only has the global entries.
        stats[f"{prefix}v_min/{leaf_name}"] = jnp.min(v)
        stats[f"{prefix}v_median/{leaf_name}"] = jnp.median(_unsharded(v))
        stats[f"{prefix}v_max/{leaf_name}"] = jnp.max(v)
    dtype = jnp.result_type(*(v for _, v in leaves)) if leaves else jnp.float32
    if nonempty:
      every_v = jnp.concatenate([jnp.ravel(_unsharded(v)).astype(dtype) for _, v in nonempty])
      # Per-leaf reductions combined: no gathered copy for the extremes.
      stats[f"{prefix}v_min"] = jnp.min(jnp.stack([jnp.min(v).astype(dtype) for _, v in nonempty]))
      stats[f"{prefix}v_median"] = jnp.median(every_v)
      stats[f"{prefix}v_max"] = jnp.max(jnp.stack([jnp.max(v).astype(dtype) for _, v in nonempty]))
    else:
      for statistic in ("v_min", "v_median", "v_max"):
        stats[f"{prefix}{statistic}"] = jnp.full((), jnp.nan, dtype)
    stats[f"{prefix}num_refreshes"] = jnp.asarray(state.num_refreshes)
    stats[f"{prefix}count"] = jnp.asarray(state.count)
    stats[f"{prefix}next_refresh"] = jnp.asarray(state.next_refresh)
  return stats
