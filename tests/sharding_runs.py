"""Runs on 8 host CPU devices, for tests/test_sharding.py: ``python sharding_runs.py MODE``.

XLA_FLAGS must be set before JAX is imported, so this runs as its own process
(started by the ``eight_devices`` fixture of tests/conftest.py) and prints one
JSON object on its last line: the results of MODE and ``device_count``.

- ``anon``: parameters sharded over a Mesh of 8 devices (FSDP: the largest
  dimension of each matrix split across devices, the batch too), 40 jitted
  steps with explicit in/out shardings; the shardings of the parameters and of
  every Anon state leaf (mu, nu, precond), before and after training; the final
  parameters of that run and of the same 40 steps on one device. The state
  comes from an eager ``tx.init`` of the sharded parameters, as in Optax. Then
  data parallelism with `jax.pmap` and `lax.pmean` of the gradients, 40 steps:
  the final parameters and whether the replicas agree.
- ``explicit``: for each mesh axis type (``jax.sharding.AxisType.Auto`` and
  ``Explicit``) and each transformation (``anon``, ``trace_idu``), with
  FSDP-sharded parameters plus a replicated and a zero-size leaf:
  ``init``, ``abstract_init``, ``after_steps``: for every parameter-shaped
  state leaf, its sharding spec and whether it is equivalent to its
  parameter's (after an eager ``tx.init``, from ``jax.eval_shape(tx.init,
  params)`` and after jitted steps), and the same for the parameters and the
  updates after the steps; ``stats``: ``preconditioner_stats`` of the final
  state, eager and jitted, and the same statistics computed in NumPy from the
  gathered state; ``final``: the parameters after the steps, and those of the
  same run on one device.
- ``hvadam``: for each mesh axis type, FSDP-sharded parameters and
  ``init``, ``abstract``: for each state tree (mu, var, hidden) and leaf,
  whether ``tx.init(params)`` and ``jax.eval_shape(tx.init, params)`` give it
  the parameter's sharding (``adam_abstract``: the same for ``optax.adam``'s
  ``mu``, since under Auto axes `eval_shape` leaves shardings to the
  compiler); ``updates``, ``after``: the same for the updates and the state
  that a jitted step (no explicit in/out shardings: what propagates) returns;
  ``final``: the parameters after those steps, to compare with one device
  (``single``).
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
)
os.environ["JAX_PLATFORMS"] = "cpu"

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

import anon_optax

NUM_DEVICES = 8

# ----------------------------------------------------------------------------
# anon: Anon: FSDP sharding under jit (explicit in/out shardings), and pmap.
# ----------------------------------------------------------------------------

ANON_STEPS = 40


def anon_init_params():
  rng = np.random.default_rng(0)
  return {
    "w1": jnp.asarray(rng.normal(size=(16, 64)) / 4, jnp.float32),
    "b1": jnp.zeros(64, jnp.float32),
    "w2": jnp.asarray(rng.normal(size=(64, 8)) / 8, jnp.float32),
    "b2": jnp.zeros(3, jnp.float32),  # Too small to shard: replicated.
  }


# FSDP: each array split along its largest dimension where it divides.
ANON_PARAM_SPECS = {"w1": P(None, "fsdp"), "b1": P("fsdp"), "w2": P("fsdp", None), "b2": P()}


def anon_batch():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(64, 16)).astype(np.float32)
  y = np.tanh(x @ rng.normal(size=(16, 8))).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(y)


def anon_loss_fn(params, x, y):
  hidden = jnp.tanh(x @ params["w1"] + params["b1"])
  out = hidden @ params["w2"] + jnp.sum(params["b2"])
  return jnp.mean((out - y) ** 2)


def anon_make_tx():
  return anon_optax.anon(1e-2, gamma=1.1, weight_decay=1e-3)


def anon_train_step(tx, params, state, x, y):
  grads = jax.grad(anon_loss_fn)(params, x, y)
  updates, state = tx.update(grads, state, params)
  return optax.apply_updates(params, updates), state


def anon_single_device_run():
  tx = anon_make_tx()
  device = jax.devices()[0]
  params = jax.device_put(anon_init_params(), device)
  state = tx.init(params)
  x, y = jax.device_put(anon_batch(), device)
  step = jax.jit(lambda p, s: anon_train_step(tx, p, s, x, y))
  for _ in range(ANON_STEPS):
    params, state = step(params, state)
  return params


def anon_spec_of(array):
  sharding = array.sharding
  return {
    "spec": str(getattr(sharding, "spec", None)),
    "replicated": bool(sharding.is_fully_replicated),
  }


def anon_describe_state(state, param_shardings, params):
  """For each of mu, nu, precond: per leaf, whether it is sharded as its param."""
  described = {}
  anon_state = optax.tree.get(state, "ScaleByAnonState")
  for field in ("mu", "nu", "precond"):
    tree = getattr(anon_state, field)
    described[field] = {
      name: {
        "spec": str(getattr(leaf.sharding, "spec", None)),
        "replicated": bool(leaf.sharding.is_fully_replicated),
        "same_as_param": bool(leaf.sharding.is_equivalent_to(param_shardings[name], leaf.ndim)),
        "same_shape_as_param": leaf.shape == params[name].shape,
      }
      for name, leaf in tree.items()
    }
  return described


def anon_fsdp_run():
  mesh = Mesh(np.array(jax.devices()[:NUM_DEVICES]), ("fsdp",))
  param_shardings = {k: NamedSharding(mesh, spec) for k, spec in ANON_PARAM_SPECS.items()}
  data_sharding = NamedSharding(mesh, P("fsdp"))
  tx = anon_make_tx()
  params = jax.device_put(anon_init_params(), param_shardings)
  state = tx.init(params)  # mu, nu and precond follow their parameters.
  initial_state = anon_describe_state(state, param_shardings, params)
  # The scalar counters do not depend on the parameters (as in optax.adam):
  # they are replicated over the mesh here.
  state_shardings = jax.tree.map(
    lambda a: a.sharding if isinstance(a.sharding, NamedSharding) else NamedSharding(mesh, P()),
    state,
  )
  state = jax.device_put(state, state_shardings)
  x, y = jax.device_put(anon_batch(), data_sharding)
  step = jax.jit(
    lambda p, s, x, y: anon_train_step(tx, p, s, x, y),
    in_shardings=(param_shardings, state_shardings, data_sharding, data_sharding),
    out_shardings=(param_shardings, state_shardings),
  )
  for _ in range(ANON_STEPS):
    params, state = step(params, state, x, y)
  return {
    "params": {k: anon_spec_of(v) for k, v in params.items()},
    "state_after_init": initial_state,
    "state_after_training": anon_describe_state(state, param_shardings, params),
    "num_refreshes": int(optax.tree.get(state, "num_refreshes")),
    "final": {k: np.asarray(v).tolist() for k, v in params.items()},
  }


def anon_pmap_run():
  tx = anon_make_tx()
  devices = jax.devices()[:NUM_DEVICES]
  params = anon_init_params()
  state = tx.init(params)
  # One copy per device along a leading axis (jax.device_put_replicated is
  # gone in JAX 0.10; pmap splits the leading axis over the devices).
  replicate = lambda tree: jax.tree.map(
    lambda a: jnp.broadcast_to(a, (NUM_DEVICES,) + a.shape), tree
  )
  params, state = replicate(params), replicate(state)
  x, y = anon_batch()
  shard = lambda a: a.reshape((NUM_DEVICES, -1) + a.shape[1:])
  x, y = shard(x), shard(y)

  def step(params, state, x, y):
    grads = jax.grad(anon_loss_fn)(params, x, y)
    grads = jax.lax.pmean(grads, axis_name="batch")
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.pmap(step, axis_name="batch", devices=devices)
  for _ in range(ANON_STEPS):
    params, state = step(params, state, x, y)
  replicas_agree = all(
    bool(np.all(np.asarray(leaf) == np.asarray(leaf)[:1]))
    for leaf in jax.tree.leaves((params, state))
  )
  return {
    "replicas_agree": replicas_agree,
    "num_refreshes": int(optax.tree.get(state, "num_refreshes")[0]),
    "final": {k: np.asarray(v[0]).tolist() for k, v in params.items()},
  }


def anon_runs():
  single = anon_single_device_run()
  result = {
    "single": {k: np.asarray(v).tolist() for k, v in single.items()},
    "single_moved": max(float(np.abs(single[k] - v).max()) for k, v in anon_init_params().items()),
    "fsdp": anon_fsdp_run(),
    "pmap": anon_pmap_run(),
  }
  return result


# ----------------------------------------------------------------------------
# explicit: Anon and trace + scale_by_idu on Auto and Explicit meshes, with their stats.
# ----------------------------------------------------------------------------

EXPLICIT_STEPS = 12  # Refreshes at 1, 2, 4 and 8.
EXPLICIT_SHAPES = {"w1": (16, 64), "b1": (64,), "w2": (64, 8), "b2": (3,), "empty": (0, 8)}
# FSDP: each array split along its largest dimension where it divides; the
# 3-element bias and the empty leaf are replicated.
EXPLICIT_SPECS = {
  "w1": P(None, "fsdp"),
  "b1": P("fsdp"),
  "w2": P("fsdp", None),
  "b2": P(),
  "empty": P(),
}
EXPLICIT_TRANSFORMATIONS = {
  "anon": lambda: anon_optax.anon(1e-2, gamma=1.1, weight_decay=1e-3),
  "trace_idu": lambda: optax.chain(
    optax.trace(0.9), anon_optax.scale_by_idu(gamma=1.5), optax.scale(-1e-2)
  ),
}
EXPLICIT_STATE_FIELDS = ("mu", "nu", "precond")


def explicit_init_params():
  rng = np.random.default_rng(0)
  return {
    name: jnp.asarray(rng.normal(size=shape), jnp.float32)
    for name, shape in EXPLICIT_SHAPES.items()
  }


def explicit_loss_fn(params):
  # Elementwise terms and full reductions only: under an Explicit mesh a
  # matmul contracting a sharded dimension would need an out_sharding, which
  # is beside the point here.
  return sum(jnp.sum(jnp.cos(3 * p) * p * p) for p in jax.tree.leaves(params))


def _explicit_padded_spec(sharding, ndim):
  spec = tuple(sharding.spec)
  return spec + (None,) * (ndim - len(spec))


def explicit_describe(tree, param_shardings):
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
      and _explicit_padded_spec(sharding, ndim) == _explicit_padded_spec(param_sharding, ndim)
      and dict(sharding.mesh.shape) == dict(param_sharding.mesh.shape),
      "shape": list(leaf.shape),
      "dtype": str(leaf.dtype),
    }
  return described


def explicit_describe_state(state, param_shardings):
  """`explicit_describe` of every parameter-shaped field of the anon_optax state."""
  described = {}
  for name in ("ScaleByAnonState", "ScaleByIDUState"):
    for inner in optax.tree.get_all_with_path(state, name):
      for field in EXPLICIT_STATE_FIELDS:
        if hasattr(inner[1], field):
          described[field] = explicit_describe(getattr(inner[1], field), param_shardings)
  return described


def explicit_numpy_stats(state):
  """The global statistics of preconditioner_stats, from gathered arrays."""
  precond = optax.tree.get(state, "precond")
  every_v = np.concatenate([np.asarray(v).ravel() for v in precond.values()])
  result = {"v_min": every_v.min(), "v_median": np.median(every_v), "v_max": every_v.max()}
  for name, v in precond.items():
    if np.size(v):
      result[f"v_median/{name}"] = np.median(np.asarray(v))
  return {k: float(v) for k, v in result.items()}


def explicit_as_floats(stats):
  return {k: float(v) for k, v in stats.items()}


def explicit_run(axis_type, name):
  mesh = jax.make_mesh((NUM_DEVICES,), ("fsdp",), axis_types=(axis_type,))
  param_shardings = {k: NamedSharding(mesh, spec) for k, spec in EXPLICIT_SPECS.items()}
  tx = EXPLICIT_TRANSFORMATIONS[name]()
  params = jax.device_put(explicit_init_params(), param_shardings)
  abstract_params = {
    k: jax.ShapeDtypeStruct(EXPLICIT_SHAPES[k], jnp.float32, sharding=param_shardings[k])
    for k in EXPLICIT_SHAPES
  }

  state = tx.init(params)
  result = {"init": explicit_describe_state(state, param_shardings)}
  abstract_state = jax.eval_shape(tx.init, abstract_params)
  result["abstract_init"] = explicit_describe_state(abstract_state, param_shardings)

  @jax.jit
  def step(params, state):
    grads = jax.grad(explicit_loss_fn)(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, updates

  with jax.set_mesh(mesh):
    for _ in range(EXPLICIT_STEPS):
      params, state, updates = step(params, state)
    stats_eager = anon_optax.preconditioner_stats(state)
    stats_jitted = jax.jit(anon_optax.preconditioner_stats)(state)
  result["after_steps"] = explicit_describe_state(state, param_shardings)
  result["params"] = explicit_describe(params, param_shardings)
  result["updates"] = explicit_describe(updates, param_shardings)
  result["stats"] = {
    "eager": explicit_as_floats(stats_eager),
    "jitted": explicit_as_floats(stats_jitted),
    "numpy": explicit_numpy_stats(state),
  }
  result["final"] = {k: np.asarray(v).tolist() for k, v in params.items()}
  return result


def explicit_single_device_run(name):
  tx = EXPLICIT_TRANSFORMATIONS[name]()
  params = jax.device_put(explicit_init_params(), jax.devices()[0])
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(explicit_loss_fn)(params), state, params)
    return optax.apply_updates(params, updates), state

  for _ in range(EXPLICIT_STEPS):
    params, state = step(params, state)
  return {k: np.asarray(v).tolist() for k, v in params.items()}


def explicit_runs():
  result = {"runs": {}, "single": {}}
  for name in EXPLICIT_TRANSFORMATIONS:
    result["single"][name] = explicit_single_device_run(name)
    for axis_type in (AxisType.Auto, AxisType.Explicit):
      result["runs"][f"{axis_type.name}/{name}"] = explicit_run(axis_type, name)
  return result


# ----------------------------------------------------------------------------
# hvadam: HVAdam on Auto and Explicit meshes.
# ----------------------------------------------------------------------------

HVADAM_STEPS = 12
HVADAM_FIELDS = ("mu", "var", "hidden")
HVADAM_PARAM_SPECS = {"w1": P(None, "fsdp"), "b1": P("fsdp"), "w2": P("fsdp", None), "b2": P()}


def hvadam_init_params():
  rng = np.random.default_rng(0)
  return {
    "w1": rng.normal(size=(16, 64)).astype(np.float32) / 4,
    "b1": np.zeros(64, np.float32),
    "w2": rng.normal(size=(64, 8)).astype(np.float32) / 8,
    "b2": np.zeros(3, np.float32),  # Replicated.
  }


def hvadam_gradients(step):
  """Gradients that do not depend on the parameters (the run is not chaotic)."""
  rng = np.random.default_rng(100 + step)
  return {
    k: (
      1.2 ** (step % 6) * np.cos(np.arange(v.size) + i).reshape(v.shape)
      + 0.3 * rng.normal(size=v.shape)
    ).astype(np.float32)
    for i, (k, v) in enumerate(sorted(hvadam_init_params().items()))
  }


def hvadam_make_tx():
  return anon_optax.hvadam(1e-2, gamma=0.5, weight_decay=1e-3)


def hvadam_step_fn(tx):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, updates

  return jax.jit(step)


def hvadam_same_sharding(tree, param_shardings):
  """Per leaf name: whether the leaf is sharded like its parameter.

  Abstract values (`jax.eval_shape`) carry their spec on an abstract mesh, so
  the spec is compared on the parameter's mesh.
  """
  out = {}
  for name, leaf in tree.items():
    sharding = getattr(leaf, "sharding", None)
    param_sharding = param_shardings[name]
    same = False
    if isinstance(sharding, NamedSharding):
      same = NamedSharding(param_sharding.mesh, sharding.spec).is_equivalent_to(
        param_sharding, len(leaf.shape)
      )
    out[name] = {"spec": str(getattr(sharding, "spec", sharding)), "same": bool(same)}
  return out


def hvadam_describe(state, param_shardings):
  hv_state = optax.tree.get(state, "ScaleByHVAdamState")
  return {f: hvadam_same_sharding(getattr(hv_state, f), param_shardings) for f in HVADAM_FIELDS}


def hvadam_single_device_run():
  tx = hvadam_make_tx()
  params = jax.tree.map(jnp.asarray, hvadam_init_params())
  state = tx.init(params)
  step = hvadam_step_fn(tx)
  for t in range(HVADAM_STEPS):
    params, state, _ = step(params, state, hvadam_gradients(t))
  return params


def hvadam_sharded_run(axis_type):
  mesh = jax.make_mesh((NUM_DEVICES,), ("fsdp",), axis_types=(axis_type,))
  param_shardings = {k: NamedSharding(mesh, s) for k, s in HVADAM_PARAM_SPECS.items()}
  with jax.set_mesh(mesh):
    tx = hvadam_make_tx()
    params = jax.device_put(hvadam_init_params(), param_shardings)
    state = tx.init(params)
    abstract = jax.eval_shape(tx.init, params)
    result = {
      "params": hvadam_same_sharding(params, param_shardings),
      "init": hvadam_describe(state, param_shardings),
      "abstract": hvadam_describe(abstract, param_shardings),
      # What Optax's Adam gets from eval_shape, for comparison.
      "adam_abstract": hvadam_same_sharding(
        optax.tree.get(jax.eval_shape(optax.adam(1e-2).init, params), "mu"), param_shardings
      ),
    }
    step = hvadam_step_fn(tx)
    for t in range(HVADAM_STEPS):
      grads = jax.device_put(hvadam_gradients(t), param_shardings)
      params, state, updates = step(params, state, grads)
    result.update(
      updates=hvadam_same_sharding(updates, param_shardings),
      after=hvadam_describe(state, param_shardings),
      params_after=hvadam_same_sharding(params, param_shardings),
      final={k: np.asarray(v).tolist() for k, v in params.items()},
    )
  return result


def hvadam_runs():
  single = hvadam_single_device_run()
  result = {
    "single": {k: np.asarray(v).tolist() for k, v in single.items()},
    "moved": max(
      float(np.abs(np.asarray(single[k]) - v).max()) for k, v in hvadam_init_params().items()
    ),
  }
  for axis_type in (AxisType.Auto, AxisType.Explicit):
    try:
      result[axis_type.name] = hvadam_sharded_run(axis_type)
    except Exception as error:  # noqa: BLE001  # Reported, asserted on by the test.
      result[axis_type.name] = {"error": f"{type(error).__name__}: {error}"}
  return result


MODES = {"anon": anon_runs, "explicit": explicit_runs, "hvadam": hvadam_runs}


def main():
  (mode,) = sys.argv[1:]
  assert jax.device_count() == NUM_DEVICES, jax.devices()
  result = MODES[mode]()
  result["device_count"] = jax.device_count()
  print(json.dumps(result))


if __name__ == "__main__":
  main()
