"""HVAdam on 8 host CPU devices; run by tests/test_hvadam_sharding.py.

XLA_FLAGS must be set before JAX is imported, so this runs as its own process
and prints one JSON object on its last line. For each mesh axis type (Auto and
Explicit), the parameters are FSDP-sharded over a mesh of 8 devices and:

- ``init``, ``abstract``: for each state tree (mu, var, hidden) and leaf,
  whether ``tx.init(params)`` and ``jax.eval_shape(tx.init, params)`` give it
  the parameter's sharding (``adam_abstract``: the same for ``optax.adam``'s
  ``mu``, since under Auto axes `eval_shape` leaves shardings to the
  compiler);
- ``updates``, ``after``: the same for the updates and the state that a jitted
  step (no explicit in/out shardings: what propagates) returns, after
  ``STEPS`` steps;
- ``final``: the parameters after those steps, to compare with one device
  (``single``).
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

STEPS = 12
NUM_DEVICES = 8
FIELDS = ("mu", "var", "hidden")
PARAM_SPECS = {"w1": P(None, "fsdp"), "b1": P("fsdp"), "w2": P("fsdp", None), "b2": P()}


def init_params():
  rng = np.random.default_rng(0)
  return {
    "w1": rng.normal(size=(16, 64)).astype(np.float32) / 4,
    "b1": np.zeros(64, np.float32),
    "w2": rng.normal(size=(64, 8)).astype(np.float32) / 8,
    "b2": np.zeros(3, np.float32),  # Replicated.
  }


def gradients(step):
  """Gradients that do not depend on the parameters (the run is not chaotic)."""
  rng = np.random.default_rng(100 + step)
  return {
    k: (
      1.2 ** (step % 6) * np.cos(np.arange(v.size) + i).reshape(v.shape)
      + 0.3 * rng.normal(size=v.shape)
    ).astype(np.float32)
    for i, (k, v) in enumerate(sorted(init_params().items()))
  }


def make_tx():
  return anon_optax.hvadam(1e-2, gamma=0.5, weight_decay=1e-3)


def step_fn(tx):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, updates

  return jax.jit(step)


def same_sharding(tree, param_shardings):
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


def describe(state, param_shardings):
  hv_state = optax.tree.get(state, "ScaleByHVAdamState")
  return {f: same_sharding(getattr(hv_state, f), param_shardings) for f in FIELDS}


def single_device_run():
  tx = make_tx()
  params = jax.tree.map(jnp.asarray, init_params())
  state = tx.init(params)
  step = step_fn(tx)
  for t in range(STEPS):
    params, state, _ = step(params, state, gradients(t))
  return params


def sharded_run(axis_type):
  mesh = jax.make_mesh((NUM_DEVICES,), ("fsdp",), axis_types=(axis_type,))
  param_shardings = {k: NamedSharding(mesh, s) for k, s in PARAM_SPECS.items()}
  with jax.set_mesh(mesh):
    tx = make_tx()
    params = jax.device_put(init_params(), param_shardings)
    state = tx.init(params)
    abstract = jax.eval_shape(tx.init, params)
    result = {
      "params": same_sharding(params, param_shardings),
      "init": describe(state, param_shardings),
      "abstract": describe(abstract, param_shardings),
      # What Optax's Adam gets from eval_shape, for comparison.
      "adam_abstract": same_sharding(
        optax.tree.get(jax.eval_shape(optax.adam(1e-2).init, params), "mu"), param_shardings
      ),
    }
    step = step_fn(tx)
    for t in range(STEPS):
      grads = jax.device_put(gradients(t), param_shardings)
      params, state, updates = step(params, state, grads)
    result.update(
      updates=same_sharding(updates, param_shardings),
      after=describe(state, param_shardings),
      params_after=same_sharding(params, param_shardings),
      final={k: np.asarray(v).tolist() for k, v in params.items()},
    )
  return result


def main():
  assert jax.device_count() == NUM_DEVICES, jax.devices()
  single = single_device_run()
  result = {
    "device_count": jax.device_count(),
    "single": {k: np.asarray(v).tolist() for k, v in single.items()},
    "moved": max(float(np.abs(np.asarray(single[k]) - v).max()) for k, v in init_params().items()),
  }
  for axis_type in (AxisType.Auto, AxisType.Explicit):
    try:
      result[axis_type.name] = sharded_run(axis_type)
    except Exception as error:  # noqa: BLE001  # Reported, asserted on by the test.
      result[axis_type.name] = {"error": f"{type(error).__name__}: {error}"}
  print(json.dumps(result))


if __name__ == "__main__":
  main()
