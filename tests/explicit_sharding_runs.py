"""Anon and its stats on Auto and Explicit meshes of 8 host CPU devices.

Run by tests/test_explicit_sharding.py in a subprocess (XLA_FLAGS must be set
before JAX starts); prints one JSON object on its last line. For each mesh
axis type (``jax.sharding.AxisType.Auto`` and ``Explicit``) and each
transformation, with FSDP-sharded parameters (plus a replicated and a
zero-size leaf):

- ``init``, ``abstract_init``, ``after_steps``: for every parameter-shaped
  state leaf, its sharding spec and whether it is equivalent to its
  parameter's (after an eager ``tx.init``, from ``jax.eval_shape(tx.init,
  params)`` and after jitted steps); and the same for the parameters and the
  updates after the steps;
- ``stats``: ``preconditioner_stats`` of the final state, eager and jitted,
  and the same statistics computed in NumPy from the gathered state;
- ``final``: the parameters after the steps, and those of the same run on one
  device.
"""

import json
import os

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
)
os.environ["JAX_PLATFORMS"] = "cpu"

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

import anon_optax

STEPS = 12  # Refreshes at 1, 2, 4 and 8.
NUM_DEVICES = 8
SHAPES = {"w1": (16, 64), "b1": (64,), "w2": (64, 8), "b2": (3,), "empty": (0, 8)}
# FSDP: each array split along its largest dimension where it divides; the
# 3-element bias and the empty leaf are replicated.
SPECS = {"w1": P(None, "fsdp"), "b1": P("fsdp"), "w2": P("fsdp", None), "b2": P(), "empty": P()}
TRANSFORMATIONS = {
  "anon": lambda: anon_optax.anon(1e-2, gamma=1.1, weight_decay=1e-3),
  "trace_idu": lambda: optax.chain(
    optax.trace(0.9), anon_optax.scale_by_idu(gamma=1.5), optax.scale(-1e-2)
  ),
}
STATE_FIELDS = ("mu", "nu", "precond")


def init_params():
  rng = np.random.default_rng(0)
  return {name: jnp.asarray(rng.normal(size=shape), jnp.float32) for name, shape in SHAPES.items()}


def loss_fn(params):
  # Elementwise terms and full reductions only: under an Explicit mesh a
  # matmul contracting a sharded dimension would need an out_sharding, which
  # is beside the point here.
  return sum(jnp.sum(jnp.cos(3 * p) * p * p) for p in jax.tree.leaves(params))


def _padded_spec(sharding, ndim):
  spec = tuple(sharding.spec)
  return spec + (None,) * (ndim - len(spec))


def describe(tree, param_shardings):
  """Per parameter name: the leaf's spec and whether it matches the param.

  ``same_as_param`` compares concrete shardings (same devices and layout);
  ``same_spec_as_param`` compares the partition specs and mesh axes, which is
  what an abstract (``jax.eval_shape``) sharding carries.
  """
  described = {}
  for name, leaf in tree.items():
    sharding, param_sharding = leaf.sharding, param_shardings[name]
    ndim = len(leaf.shape)
    described[name] = {
      "spec": str(getattr(sharding, "spec", sharding)),
      "same_as_param": isinstance(sharding, jax.sharding.Sharding)
      and not isinstance(getattr(sharding, "mesh", None), jax.sharding.AbstractMesh)
      and bool(sharding.is_equivalent_to(param_sharding, ndim)),
      "same_spec_as_param": isinstance(sharding, NamedSharding)
      and _padded_spec(sharding, ndim) == _padded_spec(param_sharding, ndim)
      and dict(sharding.mesh.shape) == dict(param_sharding.mesh.shape),
      "shape": list(leaf.shape),
      "dtype": str(leaf.dtype),
    }
  return described


def describe_state(state, param_shardings):
  """`describe` of every parameter-shaped field of the anon_optax state."""
  described = {}
  for name in ("ScaleByAnonState", "ScaleByIDUState"):
    for inner in optax.tree.get_all_with_path(state, name):
      for field in STATE_FIELDS:
        if hasattr(inner[1], field):
          described[field] = describe(getattr(inner[1], field), param_shardings)
  return described


def numpy_stats(state):
  """The global statistics of preconditioner_stats, from gathered arrays."""
  precond = optax.tree.get(state, "precond")
  every_v = np.concatenate([np.asarray(v).ravel() for v in precond.values()])
  result = {"v_min": every_v.min(), "v_median": np.median(every_v), "v_max": every_v.max()}
  for name, v in precond.items():
    if np.size(v):
      result[f"v_median/{name}"] = np.median(np.asarray(v))
  return {k: float(v) for k, v in result.items()}


def as_floats(stats):
  return {k: float(v) for k, v in stats.items()}


def run(axis_type, name):
  mesh = jax.make_mesh((NUM_DEVICES,), ("fsdp",), axis_types=(axis_type,))
  param_shardings = {k: NamedSharding(mesh, spec) for k, spec in SPECS.items()}
  tx = TRANSFORMATIONS[name]()
  params = jax.device_put(init_params(), param_shardings)
  abstract_params = {
    k: jax.ShapeDtypeStruct(SHAPES[k], jnp.float32, sharding=param_shardings[k]) for k in SHAPES
  }

  state = tx.init(params)
  result = {"init": describe_state(state, param_shardings)}
  abstract_state = jax.eval_shape(tx.init, abstract_params)
  result["abstract_init"] = describe_state(abstract_state, param_shardings)

  @jax.jit
  def step(params, state):
    grads = jax.grad(loss_fn)(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, updates

  with jax.set_mesh(mesh):
    for _ in range(STEPS):
      params, state, updates = step(params, state)
    stats_eager = anon_optax.preconditioner_stats(state)
    stats_jitted = jax.jit(anon_optax.preconditioner_stats)(state)
  result["after_steps"] = describe_state(state, param_shardings)
  result["params"] = describe(params, param_shardings)
  result["updates"] = describe(updates, param_shardings)
  result["stats"] = {
    "eager": as_floats(stats_eager),
    "jitted": as_floats(stats_jitted),
    "numpy": numpy_stats(state),
  }
  result["final"] = {k: np.asarray(v).tolist() for k, v in params.items()}
  return result


def single_device_run(name):
  tx = TRANSFORMATIONS[name]()
  params = jax.device_put(init_params(), jax.devices()[0])
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss_fn)(params), state, params)
    return optax.apply_updates(params, updates), state

  for _ in range(STEPS):
    params, state = step(params, state)
  return {k: np.asarray(v).tolist() for k, v in params.items()}


def main():
  assert jax.device_count() == NUM_DEVICES, jax.devices()
  result = {"device_count": jax.device_count(), "runs": {}, "single": {}}
  for name in TRANSFORMATIONS:
    result["single"][name] = single_device_run(name)
    for axis_type in (AxisType.Auto, AxisType.Explicit):
      result["runs"][f"{axis_type.name}/{name}"] = run(axis_type, name)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
