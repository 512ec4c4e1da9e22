"""Train the digits CNN with Anon on a device mesh: data parallel + FSDP via ``jax.sharding``.

Every parameter carries a ``nnx.with_partitioning`` annotation naming the mesh axis that splits it
(``"fsdp"``: each device holds a slice of every large array); the batch is split over all devices
(``("data", "fsdp")``, i.e. the fsdp axis is also a data-parallel axis, as in ZeRO-3/FSDP).
``nnx.Optimizer`` copies each parameter's annotation onto its optimizer state, so Anon's
per-parameter state (first moment, second-moment accumulator and preconditioner) is sharded exactly
like the parameter it belongs to; the script prints both and checks it.

Devices:
  * CPU only (this machine): before JAX is imported the script sets
    ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (unless XLA_FLAGS already sets a count,
    ``JAX_PLATFORMS`` asks for something other than cpu, or ``--host-devices 0`` is passed), so
    8 simulated CPU devices form a (data=2, fsdp=4) mesh.
  * GPUs/TPUs: the same command uses the real devices (the flag only affects the CPU platform);
    the mesh is (data = n // fsdp, fsdp), with fsdp the largest of 4, 2, 1 dividing n, or ``--mesh``.
  * Several hosts: start the same script on every host with, e.g.::

        python examples/sharded_training.py --distributed          # TPU pods / SLURM: auto-detect
        # or explicitly, before any other JAX call (what --distributed does):
        #   jax.distributed.initialize(coordinator_address="host0:1234",
        #                              num_processes=N, process_id=i)

    ``jax.devices()`` then lists every host's devices and the mesh spans them all. Each host feeds
    the same global batch here (the digits data are tiny); for real data give each process its own
    shard and assemble the global array with ``jax.make_array_from_process_local_data``.

    python examples/sharded_training.py                 # 8 simulated CPU devices, < 1 minute
    python examples/sharded_training.py --quick         # a few seconds (CI)
    python examples/sharded_training.py --mesh 4,2 --epochs 30

The last line on stdout is one JSON object::

    {"results": [{"optimizer": "anon", "gamma": 1.0, "test_accuracy": ..., "train_loss": ...,
                  "seconds": ...}], "devices": 8, "mesh": {"data": 2, "fsdp": 4},
     "state_sharded_like_params": true}
"""

from __future__ import annotations

import os
import sys


def _simulate_host_devices(argv: list[str]) -> None:
  """Asks XLA for N CPU devices; must run before `import jax`."""
  count = 8
  if "--host-devices" in argv:
    count = int(argv[argv.index("--host-devices") + 1])
  platforms = os.environ.get("JAX_PLATFORMS", "").lower()
  flags = os.environ.get("XLA_FLAGS", "")
  if count <= 0 or platforms not in ("", "cpu") or "xla_force_host_platform_device_count" in flags:
    return
  os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


if __name__ == "__main__":
  _simulate_host_devices(sys.argv)

# pylint: disable=wrong-import-position
import argparse
import json
import time
from typing import NamedTuple

from flax import nnx
import jax
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
from tqdm.auto import tqdm

import anon_optax

# Anon's learning rate on this CNN, tuned once in examples/digits_cnn.py (TUNED_LEARNING_RATES).
LEARNING_RATE = 1e-2


# ----------------------------------------------------------------------------------------------
# Data: scikit-learn's digits, the fixed split of examples/digits_cnn.py
# ----------------------------------------------------------------------------------------------


class Dataset(NamedTuple):
  x_train: np.ndarray  # float32, (n, 8, 8, 1), in [0, 1]
  y_train: np.ndarray  # int32, (n,)
  x_test: np.ndarray
  y_test: np.ndarray


def load_digits(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
  """sklearn's 1797 8x8 digits scaled to [0, 1]; a fixed stratified split (seeded)."""
  from sklearn.datasets import load_digits as _load
  from sklearn.model_selection import train_test_split

  digits = _load()
  x = (digits.images / 16.0).astype(np.float32)[..., None]
  y = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=test_fraction, random_state=seed, stratify=y
  )
  return Dataset(x_train, y_train, x_test, y_test)


def batches(x, y, batch_size: int, rng: np.random.Generator):
  """One epoch of shuffled full batches (the remainder is dropped: one compiled shape)."""
  perm = rng.permutation(len(x))
  for i in range(len(x) // batch_size):
    idx = perm[i * batch_size : (i + 1) * batch_size]
    yield x[idx], y[idx]


# ----------------------------------------------------------------------------------------------
# Model: the digits CNN of examples/digits_cnn.py with a sharding annotation on every parameter
# ----------------------------------------------------------------------------------------------


def _sharded(init, names):
  return nnx.with_partitioning(init, names)


class ShardedCNN(nnx.Module):
  """The digits CNN; kernels split along their output (conv) or input (dense) axis over "fsdp"."""

  def __init__(
    self,
    image_shape=(8, 8, 1),
    num_classes: int = 10,
    *,
    width: int = 32,
    hidden: int = 128,
    rngs: nnx.Rngs,
  ):
    height, w, channels = image_shape
    kernel, zeros = nnx.initializers.lecun_normal(), nnx.initializers.zeros_init()
    conv_kw = dict(
      kernel_size=(3, 3),
      rngs=rngs,
      kernel_init=_sharded(kernel, (None, None, None, "fsdp")),
      bias_init=_sharded(zeros, ("fsdp",)),
    )
    self.conv1 = nnx.Conv(channels, width, **conv_kw)
    self.conv2 = nnx.Conv(width, 2 * width, **conv_kw)
    self.linear1 = nnx.Linear(
      (height // 2) * (w // 2) * 2 * width,
      hidden,
      rngs=rngs,
      kernel_init=_sharded(kernel, ("fsdp", None)),
      bias_init=_sharded(zeros, ("fsdp",)),
    )
    self.linear2 = nnx.Linear(
      hidden,
      num_classes,
      rngs=rngs,
      kernel_init=_sharded(kernel, ("fsdp", None)),
      bias_init=_sharded(zeros, (None,)),
    )  # 10 classes: replicated.

  def __call__(self, x):
    x = nnx.gelu(self.conv1(x))
    x = nnx.gelu(self.conv2(x))
    x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = nnx.gelu(self.linear1(x))
    return self.linear2(x)


# ----------------------------------------------------------------------------------------------
# Mesh, sharded creation, steps
# ----------------------------------------------------------------------------------------------


def make_mesh(shape: tuple[int, int] | None = None) -> jax.sharding.Mesh:
  n = jax.device_count()
  if shape is None:
    fsdp = next(f for f in (4, 2, 1) if n % f == 0)
    shape = (n // fsdp, fsdp)
  if shape[0] * shape[1] != n:
    raise ValueError(f"mesh {shape} needs {shape[0] * shape[1]} devices, found {n}")
  return jax.make_mesh(shape, ("data", "fsdp"), axis_types=(AxisType.Auto, AxisType.Auto))


def create_sharded(tx: optax.GradientTransformation, seed: int = 0, **model_kw):
  """Builds model and optimizer inside jit so each array is born on its shards (call in a mesh)."""

  @nnx.jit
  def create():
    model = ShardedCNN(rngs=nnx.Rngs(seed), **model_kw)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    state = nnx.state((model, optimizer))
    state = jax.lax.with_sharding_constraint(state, nnx.get_partition_spec(state))
    nnx.update((model, optimizer), state)
    return model, optimizer

  return create()


def loss_fn(model, x, y):
  logits = model(x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@nnx.jit
def train_step(model, optimizer, metrics, x, y):
  (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
  metrics.update(loss=loss, logits=logits, labels=y)
  optimizer.update(model, grads)


@nnx.jit
def eval_step(model, metrics, x, y):
  loss, logits = loss_fn(model, x, y)
  metrics.update(loss=loss, logits=logits, labels=y)


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------


def sharding_table(tree) -> list[tuple[str, tuple[int, ...], str]]:
  rows = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    spec = leaf.sharding.spec if isinstance(leaf.sharding, NamedSharding) else leaf.sharding
    rows.append((jax.tree_util.keystr(path).replace(".value", ""), tuple(leaf.shape), str(spec)))
  return rows


def state_sharded_like_params(model, optimizer) -> tuple[bool, int]:
  """Every optimizer-state leaf shaped like a parameter (path ends with its path) shares its spec."""
  params = {p: (shape, spec) for p, shape, spec in sharding_table(nnx.state(model, nnx.Param))}
  matched, ok = 0, True
  for path, shape, spec in sharding_table(nnx.state(optimizer, nnx.optimizer.OptState)):
    for p, (p_shape, p_spec) in params.items():
      if path.endswith(p) and shape == p_shape:
        matched += 1
        ok &= spec == p_spec
  return ok and matched > 0, matched


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--host-devices",
    type=int,
    default=8,
    help="simulated CPU devices when no accelerator is used (0: don't simulate)",
  )
  parser.add_argument("--mesh", default=None, help="DATA,FSDP sizes, e.g. 2,4 (default: auto)")
  parser.add_argument(
    "--distributed",
    action="store_true",
    help="call jax.distributed.initialize() first (multi-host)",
  )
  parser.add_argument("--gamma", type=float, default=1.0)
  parser.add_argument("--lr", type=float, default=LEARNING_RATE)
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--quick", action="store_true", help="a few seconds, for CI")
  parser.add_argument(
    "--exact",
    action="store_true",
    help="Anon with the authors' exact rule (exact=True), without the step guard",
  )
  args = parser.parse_args(argv)
  if args.distributed:
    jax.distributed.initialize()
  epochs = 2 if args.quick and args.epochs == parser.get_default("epochs") else args.epochs

  mesh = make_mesh(tuple(int(s) for s in args.mesh.split(",")) if args.mesh else None)
  data_sharding = NamedSharding(mesh, P(("data", "fsdp")))
  print(
    f"jax {jax.__version__}: {jax.device_count()} x {jax.devices()[0].platform} devices, "
    f"{jax.process_count()} process(es); mesh {dict(mesh.shape)}",
    flush=True,
  )
  if args.batch_size % mesh.size:
    parser.error(f"--batch-size {args.batch_size} must be divisible by {mesh.size} devices")

  data = load_digits(args.seed)
  tx = anon_optax.anon(args.lr, gamma=args.gamma, exact=args.exact)
  with jax.set_mesh(mesh):
    model, optimizer = create_sharded(tx, seed=args.seed)
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for _ in tqdm(
      range(epochs), desc=f"anon(gamma={args.gamma:g}) on {mesh.size} devices", file=sys.stderr
    ):
      metrics.reset()
      for x, y in batches(data.x_train, data.y_train, args.batch_size, rng):
        x, y = jax.device_put((x, y), data_sharding)
        train_step(model, optimizer, metrics, x, y)
    train_loss = float(metrics.compute()["loss"])
    n_test = len(data.x_test) // mesh.size * mesh.size  # Evenly divisible for the data sharding.
    test_metrics = nnx.MultiMetric(
      accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss")
    )
    eval_step(
      model,
      test_metrics,
      *jax.device_put((data.x_test[:n_test], data.y_test[:n_test]), data_sharding),
    )
    test_accuracy = float(test_metrics.compute()["accuracy"])
    seconds = time.perf_counter() - start

  print("\nparameter shardings (mesh axes per array dimension):")
  for path, shape, spec in sharding_table(nnx.state(model, nnx.Param)):
    print(f"  {path:<28s} {str(shape):<18s} {spec}")
  print("optimizer state shardings (Anon's per-parameter state follows its parameter):")
  for path, shape, spec in sharding_table(nnx.state(optimizer, nnx.optimizer.OptState)):
    print(f"  {path:<40s} {str(shape):<18s} {spec}")
  ok, matched = state_sharded_like_params(model, optimizer)
  print(f"{matched} optimizer-state arrays shaped like a parameter; all sharded like it: {ok}")
  print(
    f"test_accuracy={test_accuracy:.4f} (first {n_test} test images) train_loss={train_loss:.4f}"
    f" {seconds:.1f}s",
    flush=True,
  )
  print(
    json.dumps(
      {
        "results": [
          {
            "optimizer": "anon",
            "gamma": args.gamma,
            **({"exact": True} if args.exact else {}),
            "learning_rate": args.lr,
            "test_accuracy": test_accuracy,
            "train_loss": train_loss,
            "seconds": round(seconds, 2),
          }
        ],
        "devices": jax.device_count(),
        "mesh": {k: int(v) for k, v in mesh.shape.items()},
        "state_sharded_like_params": bool(ok),
      }
    ),
    flush=True,
  )


if __name__ == "__main__":
  main()
