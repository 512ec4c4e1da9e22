"""Anon on 8 host CPU devices; run by tests/test_sharding.py in a subprocess.

XLA_FLAGS must be set before JAX is imported, so this runs as its own process
and prints one JSON object on its last line:

- ``fsdp``: parameters sharded over a Mesh of 8 devices (FSDP: the largest
  dimension of each matrix split across devices, the batch too), 40 jitted
  steps with explicit in/out shardings; the shardings of the parameters and of
  every Anon state leaf (mu, nu, precond), before and after training; the final
  parameters of that run and of the same 40 steps on one device. The state
  comes from an eager ``tx.init`` of the sharded parameters, as in Optax.
- ``pmap``: data parallelism with `jax.pmap` and `lax.pmean` of the gradients,
  40 steps; the final parameters of that run, whether the replicas agree, and
  the single-device run on the full batch.
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
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

import anon_optax

STEPS = 40
NUM_DEVICES = 8


def init_params():
  rng = np.random.default_rng(0)
  return {
    "w1": jnp.asarray(rng.normal(size=(16, 64)) / 4, jnp.float32),
    "b1": jnp.zeros(64, jnp.float32),
    "w2": jnp.asarray(rng.normal(size=(64, 8)) / 8, jnp.float32),
    "b2": jnp.zeros(3, jnp.float32),  # Too small to shard: replicated.
  }


# FSDP: each array split along its largest dimension where it divides.
PARAM_SPECS = {"w1": P(None, "fsdp"), "b1": P("fsdp"), "w2": P("fsdp", None), "b2": P()}


def batch():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(64, 16)).astype(np.float32)
  y = np.tanh(x @ rng.normal(size=(16, 8))).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(y)


def loss_fn(params, x, y):
  hidden = jnp.tanh(x @ params["w1"] + params["b1"])
  out = hidden @ params["w2"] + jnp.sum(params["b2"])
  return jnp.mean((out - y) ** 2)


def make_tx():
  return anon_optax.anon(1e-2, gamma=1.1, weight_decay=1e-3)


def train_step(tx, params, state, x, y):
  grads = jax.grad(loss_fn)(params, x, y)
  updates, state = tx.update(grads, state, params)
  return optax.apply_updates(params, updates), state


def single_device_run():
  tx = make_tx()
  device = jax.devices()[0]
  params = jax.device_put(init_params(), device)
  state = tx.init(params)
  x, y = jax.device_put(batch(), device)
  step = jax.jit(lambda p, s: train_step(tx, p, s, x, y))
  for _ in range(STEPS):
    params, state = step(params, state)
  return params


def spec_of(array):
  sharding = array.sharding
  return {
    "spec": str(getattr(sharding, "spec", None)),
    "replicated": bool(sharding.is_fully_replicated),
  }


def describe_state(state, param_shardings, params):
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


def fsdp_run():
  mesh = Mesh(np.array(jax.devices()[:NUM_DEVICES]), ("fsdp",))
  param_shardings = {k: NamedSharding(mesh, spec) for k, spec in PARAM_SPECS.items()}
  data_sharding = NamedSharding(mesh, P("fsdp"))
  tx = make_tx()
  params = jax.device_put(init_params(), param_shardings)
  state = tx.init(params)  # mu, nu and precond follow their parameters.
  initial_state = describe_state(state, param_shardings, params)
  # The scalar counters do not depend on the parameters (as in optax.adam):
  # they are replicated over the mesh here.
  state_shardings = jax.tree.map(
    lambda a: a.sharding if isinstance(a.sharding, NamedSharding) else NamedSharding(mesh, P()),
    state,
  )
  state = jax.device_put(state, state_shardings)
  x, y = jax.device_put(batch(), data_sharding)
  step = jax.jit(
    lambda p, s, x, y: train_step(tx, p, s, x, y),
    in_shardings=(param_shardings, state_shardings, data_sharding, data_sharding),
    out_shardings=(param_shardings, state_shardings),
  )
  for _ in range(STEPS):
    params, state = step(params, state, x, y)
  return {
    "params": {k: spec_of(v) for k, v in params.items()},
    "state_after_init": initial_state,
    "state_after_training": describe_state(state, param_shardings, params),
    "num_refreshes": int(optax.tree.get(state, "num_refreshes")),
    "final": {k: np.asarray(v).tolist() for k, v in params.items()},
  }


def pmap_run():
  tx = make_tx()
  devices = jax.devices()[:NUM_DEVICES]
  params = init_params()
  state = tx.init(params)
  # One copy per device along a leading axis (jax.device_put_replicated is
  # gone in JAX 0.10; pmap splits the leading axis over the devices).
  replicate = lambda tree: jax.tree.map(
    lambda a: jnp.broadcast_to(a, (NUM_DEVICES,) + a.shape), tree
  )
  params, state = replicate(params), replicate(state)
  x, y = batch()
  shard = lambda a: a.reshape((NUM_DEVICES, -1) + a.shape[1:])
  x, y = shard(x), shard(y)

  def step(params, state, x, y):
    grads = jax.grad(loss_fn)(params, x, y)
    grads = jax.lax.pmean(grads, axis_name="batch")
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.pmap(step, axis_name="batch", devices=devices)
  for _ in range(STEPS):
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


def main():
  assert jax.device_count() == NUM_DEVICES, jax.devices()
  single = single_device_run()
  result = {
    "device_count": jax.device_count(),
    "single": {k: np.asarray(v).tolist() for k, v in single.items()},
    "single_moved": max(float(np.abs(single[k] - v).max()) for k, v in init_params().items()),
    "fsdp": fsdp_run(),
    "pmap": pmap_run(),
  }
  print(json.dumps(result))


if __name__ == "__main__":
  main()
