"""Multi-process (multi-host) training of the digits CNN with Anon on JAX's distributed runtime.

One program for every scale: each process owns some devices, all processes' devices form one
global ``("fsdp",)`` mesh, every parameter and its optimizer state (Anon's ``mu``, ``nu`` and
``precond``) is split over that mesh, and every batch is split over it too (FSDP / ZeRO-3: the
fsdp axis is also the data-parallel axis). Each process loads and feeds only its own rows of each
global batch (``jax.make_array_from_process_local_data``); only process 0 logs. Orbax checkpoints
(``CheckpointManager``: asynchronous, the last ``--keep`` kept) are written collectively every
``--save-every`` steps, and a start resumes from the latest complete one, whatever topology wrote
it (Orbax reshards on restore).

Launching:
  * SLURM, Open MPI, a TPU pod: start one copy per host (``srun``, ``mpirun``, every TPU VM);
    ``jax.distributed.initialize()`` detects the cluster::

        srun python examples/multihost_training.py --checkpoint-dir /shared/ckpt

  * Explicitly, on every host ``i`` of ``N`` (the coordinator is process 0's host)::

        python examples/multihost_training.py --coordinator host0:1234 --num-processes N \\
            --process-id i --checkpoint-dir /shared/ckpt

  * On this machine, N processes of ``--devices-per-process`` CPU devices each, talking through
    gloo collectives: the explicit command above with ``--coordinator localhost:1234``, once per
    process, or the tests' launcher, which starts them all and appends those three flags::

        python tests/multihost_launcher.py --processes 2 \\
            examples/multihost_training.py --devices-per-process 4 --quick

Without any of these (and no cluster detected) it runs as one process on
``--devices-per-process`` simulated CPU devices (or on the real GPUs/TPUs).

A lost process: the distributed runtime's heartbeat (``--heartbeat-timeout``) makes every other
process exit with an error naming the lost task; a watchdog (``--step-timeout``) ends a process
whose training makes no progress at all. A checkpoint is written to a temporary directory and
renamed when every process has finished writing, so a crash never leaves a half-written checkpoint
as the latest; rerunning the same command resumes from the last complete one.

The last line on stdout (process 0) is one JSON object::

    {"results": [{"optimizer": "anon", "weight_decay_mode": "l2", "test_accuracy": ...,
                  "train_loss": ..., "seconds": ..., "resumed_from_step": null, ...}],
     "processes": 2, "devices": 8, "mesh": {"fsdp": 8}}
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import dataclasses
import importlib.util
import json
import os
import pathlib
import sys
import threading
import time
from typing import Any

from flax import nnx
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

import anon_optax

WEIGHT_DECAY_MODES = ("l2", "decoupled", "fixed")
OPTIMIZERS = ("anon", "hvadam")
FSDP = "fsdp"


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  name: str  # "anon" or "hvadam"
  weight_decay_mode: str  # "l2", "decoupled" or "fixed"

  @property
  def label(self) -> str:
    return f"{self.name}-{self.weight_decay_mode}"


def parse_optimizers(text: str, default_mode: str) -> list[OptimizerSpec]:
  """'anon,anon:decoupled,hvadam' -> specs; a name without ':MODE' uses --weight-decay-mode."""
  specs = []
  for item in filter(None, (s.strip() for s in text.split(","))):
    name, _, mode = item.partition(":")
    mode = mode or default_mode
    if name not in OPTIMIZERS:
      raise ValueError(f"--optimizers: unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    if mode not in WEIGHT_DECAY_MODES:
      raise ValueError(
        f"--optimizers: unknown weight decay mode {mode!r} in {item!r}; "
        f"expected one of {WEIGHT_DECAY_MODES}"
      )
    specs.append(OptimizerSpec(name, mode))
  if not specs:
    raise ValueError("--optimizers: give at least one optimizer, e.g. 'anon' or 'anon,hvadam'")
  if len({s.label for s in specs}) != len(specs):
    raise ValueError(f"--optimizers: {text!r} names the same configuration twice")
  return specs


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  launch = parser.add_argument_group("processes and devices")
  launch.add_argument(
    "--devices-per-process",
    type=int,
    default=8,
    metavar="D",
    help="simulated CPU devices per process when on CPU (0: don't simulate)",
  )
  launch.add_argument(
    "--coordinator",
    default=None,
    metavar="HOST:PORT",
    help="process 0's address; with --num-processes and --process-id",
  )
  launch.add_argument("--num-processes", type=int, default=None)
  launch.add_argument("--process-id", type=int, default=None)
  launch.add_argument(
    "--single-process", action="store_true", help="do not look for a cluster; run as one process"
  )
  launch.add_argument(
    "--heartbeat-timeout",
    type=int,
    default=60,
    metavar="S",
    help="seconds without heartbeats before the runtime declares a process lost",
  )
  launch.add_argument(
    "--init-timeout",
    type=int,
    default=300,
    metavar="S",
    help="seconds to wait for every process to join",
  )
  launch.add_argument("--shutdown-timeout", type=int, default=60, metavar="S")
  launch.add_argument(
    "--step-timeout",
    type=float,
    default=900,
    metavar="S",
    help="watchdog: exit if no step completes for S seconds (0: off)",
  )
  train_args = parser.add_argument_group("training")
  train_args.add_argument(
    "--optimizers",
    default="anon",
    metavar="NAME[:MODE],...",
    help="anon and/or hvadam, each optionally with a weight decay mode "
    "(l2, decoupled, fixed), e.g. 'anon:decoupled,hvadam'",
  )
  train_args.add_argument("--lr", type=float, default=1e-2)
  train_args.add_argument("--gamma", type=float, default=1.0, help="Anon's gamma")
  train_args.add_argument("--weight-decay", type=float, default=0.0)
  train_args.add_argument("--weight-decay-mode", default="l2", choices=WEIGHT_DECAY_MODES)
  train_args.add_argument("--steps", type=int, default=600)
  train_args.add_argument("--batch-size", type=int, default=64, help="global batch size")
  train_args.add_argument("--width", type=int, default=32, help="channels of the first conv")
  train_args.add_argument("--hidden", type=int, default=128, help="units of the dense layer")
  train_args.add_argument("--seed", type=int, default=0)
  train_args.add_argument("--log-every", type=int, default=50)
  train_args.add_argument(
    "--quick", action="store_true", help="a short run: 40 steps, a checkpoint every 10"
  )
  train_args.add_argument("--no-progress", dest="progress", action="store_false")
  ckpt = parser.add_argument_group("checkpoints and outputs")
  ckpt.add_argument(
    "--checkpoint-dir",
    default=None,
    help="Orbax checkpoints go to DIR/<optimizer>-<mode>; resumed from on start",
  )
  ckpt.add_argument("--save-every", type=int, default=100, metavar="K")
  ckpt.add_argument("--keep", type=int, default=3, metavar="N", help="checkpoints kept")
  ckpt.add_argument(
    "--resume-step",
    type=int,
    default=None,
    help="resume from this checkpoint instead of the latest",
  )
  ckpt.add_argument(
    "--save-params",
    default=None,
    metavar="DIR",
    help="process 0 writes the final parameters to DIR/<optimizer>-<mode>_step<N>.npz",
  )
  ckpt.add_argument(
    "--snapshot-steps",
    default="",
    metavar="S1,S2",
    help="also write the parameters after these steps (with --save-params)",
  )
  return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
  """Parses and checks the command line; --quick shortens whatever was left at its default."""
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.quick:
    defaults = {"steps": 40, "save_every": 10, "log_every": 10}
    for name, value in defaults.items():
      if getattr(args, name) == parser.get_default(name):
        setattr(args, name, value)
  try:
    args.optimizers = parse_optimizers(args.optimizers, args.weight_decay_mode)
    args.snapshot_steps = {int(s) for s in args.snapshot_steps.split(",") if s.strip()}
  except ValueError as e:
    parser.error(str(e))
  for name in ("steps", "batch_size", "save_every", "keep", "log_every", "width", "hidden"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
  explicit = (args.coordinator, args.num_processes, args.process_id)
  if any(v is not None for v in explicit) and any(v is None for v in explicit):
    parser.error("--coordinator, --num-processes and --process-id go together")
  return args


def log(*args) -> None:
  """Prints on process 0 only: every process runs the same loop, one copy of the log is enough."""
  if jax.process_index() == 0:
    print(*args, flush=True)


# ----------------------------------------------------------------------------------------------
# Model: the digits CNN, each parameter split over the "fsdp" axis where its size allows
# ----------------------------------------------------------------------------------------------


def _fsdp_spec(shape: tuple[int, ...], axis: int, mesh_size: int) -> tuple[str | None, ...]:
  """Shards dimension `axis` over "fsdp" if the mesh divides it; otherwise replicates the array."""
  names = [None] * len(shape)
  if shape[axis] % mesh_size == 0:
    names[axis] = FSDP
  return tuple(names)


class CNN(nnx.Module):
  """Two 3x3 conv layers, a 2x2 average pool, two dense layers (GELU), FSDP-annotated.

  Conv kernels and biases are split along their output channels, dense kernels along their input
  features; an array whose dimension the mesh does not divide is replicated (the 10-class bias).
  """

  def __init__(
    self,
    *,
    width: int,
    hidden: int,
    mesh_size: int,
    rngs: nnx.Rngs,
    image_shape: tuple[int, int, int] = (8, 8, 1),
    num_classes: int = 10,
  ):
    height, w, channels = image_shape
    kernel, zeros = nnx.initializers.lecun_normal(), nnx.initializers.zeros_init()

    def sharded(init, shape, axis):
      return nnx.with_partitioning(init, _fsdp_spec(shape, axis, mesh_size))

    def conv(c_in, c_out):
      return nnx.Conv(
        c_in,
        c_out,
        kernel_size=(3, 3),
        rngs=rngs,
        kernel_init=sharded(kernel, (3, 3, c_in, c_out), 3),
        bias_init=sharded(zeros, (c_out,), 0),
      )

    def dense(d_in, d_out):
      return nnx.Linear(
        d_in,
        d_out,
        rngs=rngs,
        kernel_init=sharded(kernel, (d_in, d_out), 0),
        bias_init=sharded(zeros, (d_out,), 0),
      )

    self.conv1 = conv(channels, width)
    self.conv2 = conv(width, 2 * width)
    self.linear1 = dense((height // 2) * (w // 2) * 2 * width, hidden)
    self.linear2 = dense(hidden, num_classes)

  def __call__(self, x):
    x = nnx.gelu(self.conv1(x))
    x = nnx.gelu(self.conv2(x))
    x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = nnx.gelu(self.linear1(x))
    return self.linear2(x)


# ----------------------------------------------------------------------------------------------
# Data: every process computes the same global batch order and loads only its own rows
# ----------------------------------------------------------------------------------------------


def load_digits(seed: int = 0, test_fraction: float = 0.25) -> dict[str, np.ndarray]:
  """scikit-learn's 1797 8x8 digits scaled to [0, 1]; a seeded, stratified train/test split.

  Read from the CSV file scikit-learn ships, without importing scikit-learn: that import costs
  about 2 s of CPU, paid by every process of every launch.
  """
  spec = importlib.util.find_spec("sklearn")
  path = (
    None
    if spec is None
    else (pathlib.Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz")
  )
  if path is None or not path.exists():
    raise SystemExit("error: the digits data come with scikit-learn: pip install scikit-learn")
  table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # 64 pixels (0-16), then the label.
  x = (table[:, :64] / 16.0).reshape(-1, 8, 8, 1)
  y = table[:, 64].astype(np.int32)
  rng = np.random.default_rng(seed)
  is_test = np.zeros(len(y), bool)
  for label in np.unique(y):
    members = rng.permutation(np.flatnonzero(y == label))
    is_test[members[: round(len(members) * test_fraction)]] = True
  train, test = rng.permutation(np.flatnonzero(~is_test)), np.flatnonzero(is_test)
  return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


def global_batch_indices(step: int, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
  """Rows of global batch `step` (0-based): a function of (seed, step) only, so a resumed run
  and every process see exactly the batches of an uninterrupted run."""
  per_epoch = num_examples // batch_size
  epoch, i = divmod(step, per_epoch)
  perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
  return perm[i * batch_size : (i + 1) * batch_size]


def process_rows(sharding: NamedSharding, global_rows: int) -> slice:
  """The contiguous block of a batch's leading axis held by this process's devices."""
  index_map = sharding.addressable_devices_indices_map((global_rows,))
  starts = sorted({idx[0].indices(global_rows)[:2] for idx in index_map.values()})
  lo, hi = starts[0][0], starts[-1][1]
  covered = sum(b - a for a, b in starts)
  if covered != hi - lo:
    raise RuntimeError(f"this process's rows {starts} are not contiguous; reorder the mesh")
  return slice(lo, hi)


def put_batch(sharding: NamedSharding, x: np.ndarray, y: np.ndarray, rows: np.ndarray):
  """Loads this process's share of `rows` (indices into x, y) and assembles the global arrays."""
  mine = rows[process_rows(sharding, len(rows))]
  local_x, local_y = x[mine], y[mine]  # A real loader would read only these rows from storage.
  return (
    jax.make_array_from_process_local_data(sharding, local_x, (len(rows), *x.shape[1:])),
    jax.make_array_from_process_local_data(sharding, local_y, (len(rows),)),
  )


# ----------------------------------------------------------------------------------------------
# Optimizers, creation, steps
# ----------------------------------------------------------------------------------------------


def make_optimizer(
  spec: OptimizerSpec, learning_rate: float, gamma: float, weight_decay: float
) -> optax.GradientTransformation:
  kw = {"weight_decay": weight_decay, "weight_decay_mode": spec.weight_decay_mode}
  if spec.name == "anon":
    return anon_optax.anon(learning_rate, gamma=gamma, **kw)
  return anon_optax.hvadam(learning_rate, **kw)


def create_sharded(
  tx: optax.GradientTransformation, *, seed: int, width: int, hidden: int, mesh_size: int
):
  """Builds model and optimizer inside jit so every array is born on its shards (in a mesh).

  ``nnx.Optimizer`` gives each state leaf its parameter's partitioning, so Anon's mu, nu and
  precond are split exactly like the parameter they belong to.
  """

  @nnx.jit
  def create():
    model = CNN(width=width, hidden=hidden, mesh_size=mesh_size, rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    state = nnx.state((model, optimizer))
    state = jax.lax.with_sharding_constraint(state, nnx.get_partition_spec(state))
    nnx.update((model, optimizer), state)
    return model, optimizer

  return create()


def loss_fn(model: CNN, x, y):
  logits = model(x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@nnx.jit
def train_step(model: CNN, optimizer: nnx.Optimizer, x, y):
  (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def eval_step(model: CNN, x, y):
  loss, logits = loss_fn(model, x, y)
  return loss, jnp.mean(jnp.argmax(logits, -1) == y)


def checkpoint_tree(model: CNN, optimizer: nnx.Optimizer) -> dict[str, Any]:
  """Parameters and optimizer state as nested dicts of global arrays (what Orbax saves)."""
  return {
    "model": nnx.to_pure_dict(nnx.state(model)),
    "optimizer": nnx.to_pure_dict(nnx.state(optimizer)),
  }


def restore_into(model: CNN, optimizer: nnx.Optimizer, restored: dict[str, Any]) -> None:
  for module, tree in ((model, restored["model"]), (optimizer, restored["optimizer"])):
    state = nnx.state(module)
    nnx.replace_by_pure_dict(state, tree)
    nnx.update(module, state)


def sharding_rows(tree) -> dict[str, tuple[tuple[int, ...], str]]:
  rows = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    spec = leaf.sharding.spec if isinstance(leaf.sharding, NamedSharding) else P()
    rows[jax.tree_util.keystr(path)] = (tuple(leaf.shape), str(spec))
  return rows


def state_sharded_like_params(model: CNN, optimizer: nnx.Optimizer) -> tuple[bool, int]:
  """Whether every state leaf shaped like a parameter (path ending in its path) shares its spec,
  and how many such leaves there are (3 per parameter for Anon: mu, nu, precond)."""
  params = sharding_rows(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  matched, ok = 0, True
  for path, (shape, spec) in sharding_rows(nnx.to_pure_dict(nnx.state(optimizer))).items():
    for p_path, (p_shape, p_spec) in params.items():
      if path.endswith(p_path) and shape == p_shape:
        matched += 1
        ok &= spec == p_spec
  return ok and matched > 0, matched


def gather_params(model: CNN) -> dict[str, np.ndarray]:
  """Every parameter as one global numpy array on every process (a collective: all must call)."""
  flat = {
    jax.tree_util.keystr(path): leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(
      nnx.to_pure_dict(nnx.state(model, nnx.Param))
    )
  }
  if jax.process_count() == 1:
    return {k: np.asarray(v) for k, v in flat.items()}
  return dict(zip(flat, multihost_utils.process_allgather(list(flat.values()), tiled=True)))


# ----------------------------------------------------------------------------------------------
# Faults: a watchdog against silent hangs
# ----------------------------------------------------------------------------------------------


class Watchdog:
  """Ends the process if no training step completes for `timeout` seconds.

  The distributed runtime already ends every process when one stops sending heartbeats; this
  catches what heartbeats cannot: a peer that is alive but stuck (e.g. a wedged filesystem).
  """

  def __init__(self, timeout: float):
    self.timeout = timeout
    self.last_progress = time.monotonic()
    self.what = "starting"
    self._stop = threading.Event()
    if timeout > 0:
      threading.Thread(target=self._watch, daemon=True, name="watchdog").start()

  def progress(self, what: str) -> None:
    self.last_progress, self.what = time.monotonic(), what

  def stop(self) -> None:
    self._stop.set()

  def _watch(self) -> None:
    while not self._stop.wait(min(5.0, self.timeout / 4)):
      idle = time.monotonic() - self.last_progress
      if idle > self.timeout:
        sys.stderr.write(
          f"error: process {jax.process_index()}: no training progress for {idle:.0f} s "
          f"(--step-timeout {self.timeout:g}; last: {self.what}); a peer process is probably "
          "stuck or lost. Exiting; rerun to resume from the latest complete checkpoint.\n"
        )
        sys.stderr.flush()
        os._exit(3)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def train(
  spec: OptimizerSpec,
  args,
  mesh: jax.sharding.Mesh,
  data: dict[str, np.ndarray],
  watchdog: Watchdog,
  on_step: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
  """Trains one optimizer to --steps, resuming from and writing to its checkpoint directory.

  ``on_step(label, step)``, if given, is called after each completed step, once the step's
  checkpoint save has started.
  """
  tx = make_optimizer(spec, args.lr, args.gamma, args.weight_decay)
  batch_sharding = NamedSharding(mesh, P(FSDP))
  model, optimizer = create_sharded(
    tx, seed=args.seed, width=args.width, hidden=args.hidden, mesh_size=mesh.size
  )

  manager = None
  resumed_from = None
  if args.checkpoint_dir:
    every = args.save_every
    options = ocp.CheckpointManagerOptions(
      # Exactly every K steps (Orbax's interval policy would also save the first step).
      should_save_fn=lambda step, last_saved: step % every == 0,
      max_to_keep=args.keep,
      enable_async_checkpointing=True,
      # A crash mid-save leaves "<step>.orbax-checkpoint-tmp", never a step directory; the
      # next start deletes such leftovers.
      cleanup_tmp_directories=True,
    )
    root = args.checkpoint_dir  # A local path, or a URL Orbax understands (gs://...).
    if "://" not in root:
      root = os.path.abspath(root)
    manager = ocp.CheckpointManager(f"{root.rstrip('/')}/{spec.label}", options=options)
    step = manager.latest_step() if args.resume_step is None else args.resume_step
    if step is not None and step not in manager.all_steps():
      raise SystemExit(
        f"error: --resume-step {step}: no complete checkpoint of that step in "
        f"{manager.directory} (found {sorted(manager.all_steps())})"
      )
    newer = [s for s in manager.all_steps() if step is not None and s > step]
    if newer:
      raise SystemExit(
        f"error: --resume-step {step}: {manager.directory} also holds the later "
        f"checkpoints {sorted(newer)}, which this run would overwrite; move them "
        "away or use another --checkpoint-dir"
      )
    if step is not None:
      # The abstract target carries this topology's shardings: Orbax reads and reshards.
      target = jax.tree.map(ocp.utils.to_shape_dtype_struct, checkpoint_tree(model, optimizer))
      restored = manager.restore(step, args=ocp.args.StandardRestore(target))
      restore_into(model, optimizer, restored)
      resumed_from = int(step)
      log(f"{spec.label}: resumed from the checkpoint of step {step} ({manager.directory})")

  x_train, y_train = data["x_train"], data["y_train"]
  start_step = resumed_from or 0
  snapshots = {}
  loss = None
  start = time.perf_counter()
  bar = tqdm(
    range(start_step, args.steps),
    desc=f"{spec.label} on {mesh.size} devices",
    file=sys.stderr,
    disable=jax.process_index() != 0 or not args.progress,
  )
  for step in bar:
    rows = global_batch_indices(step, len(x_train), args.batch_size, args.seed)
    x, y = put_batch(batch_sharding, x_train, y_train, rows)
    loss = train_step(model, optimizer, x, y)
    done = step + 1  # Steps completed; checkpoint k holds the state after k steps.
    if manager is not None:
      # Every process calls save: each writes its own shards, then process 0 commits (renames
      # the temporary directory) once all have finished; this returns once the write started.
      manager.save(
        done,
        args=ocp.args.StandardSave(checkpoint_tree(model, optimizer)),
        force=done == args.steps,
      )
    if done in args.snapshot_steps:
      snapshots[done] = gather_params(model)
    if done % args.log_every == 0 or done == args.steps:
      bar.set_postfix(loss=f"{float(loss):.4f}")
      log(f"{spec.label} step {done} loss {float(loss):.6f}")
    watchdog.progress(f"{spec.label} step {done}")
    if on_step is not None:
      on_step(spec.label, done)
  bar.close()
  train_loss = None if loss is None else float(loss)
  seconds = time.perf_counter() - start
  if manager is not None:
    manager.wait_until_finished()
    manager.close()

  n_test = len(data["x_test"]) // mesh.size * mesh.size  # Divisible by the devices.
  x_test, y_test = put_batch(batch_sharding, data["x_test"], data["y_test"], np.arange(n_test))
  test_loss, test_accuracy = (float(v) for v in eval_step(model, x_test, y_test))
  final_params = gather_params(model)
  ok, matched = state_sharded_like_params(model, optimizer)
  # Every process checks its own arrays after training; process 0 reports them all.
  per_process_ok = (
    multihost_utils.process_allgather(np.int32(ok)) if jax.process_count() > 1 else np.array([ok])
  )
  if args.save_params and jax.process_index() == 0:
    out = pathlib.Path(args.save_params)
    out.mkdir(parents=True, exist_ok=True)
    for when, params in [*snapshots.items(), ("final", final_params)]:
      np.savez(out / f"{spec.label}_step{args.steps if when == 'final' else when}.npz", **params)
  return {
    "optimizer": spec.name,
    "weight_decay_mode": spec.weight_decay_mode,
    "weight_decay": args.weight_decay,
    "learning_rate": args.lr,
    "gamma": args.gamma if spec.name == "anon" else None,
    "steps": args.steps,
    "resumed_from_step": resumed_from,
    "latest_checkpoint": None if manager is None else manager.latest_step(),
    "train_loss": train_loss,
    "test_loss": test_loss,
    "test_accuracy": test_accuracy,
    "test_examples": n_test,
    "seconds": round(seconds, 2),
    "state_sharded_like_params": [bool(v) for v in np.ravel(per_process_ok)],
    "state_leaves_like_params": matched,
    "param_specs": {
      k: s for k, (_, s) in sharding_rows(nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()
    },
  }


def initialize_distributed(args) -> None:
  """Joins the distributed runtime: explicit flags, else an auto-detected cluster, else alone."""
  if args.devices_per_process > 0 and "xla_force_host_platform_device_count" not in os.environ.get(
    "XLA_FLAGS", ""
  ):
    jax.config.update("jax_num_cpu_devices", args.devices_per_process)  # CPU backend only.
  # CPU collectives across processes (harmless on GPU/TPU hosts).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  timeouts = {
    "heartbeat_timeout_seconds": args.heartbeat_timeout,
    "initialization_timeout": args.init_timeout,
    "shutdown_timeout_seconds": args.shutdown_timeout,
  }
  if args.coordinator is not None:
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id, **timeouts)
  elif not args.single_process:
    try:  # SLURM, Open MPI, TPU pods, ... are detected from their environment.
      jax.distributed.initialize(**timeouts)
    except ValueError as e:  # No cluster found: one process on this host's devices.
      print(f"no cluster detected ({e}); running as a single process", file=sys.stderr)


def main(argv: list[str] | None = None, *, on_step: Callable[[str, int], None] | None = None):
  """Runs the program with the command line ``argv``; ``on_step`` as in ``train``."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  initialize_distributed(args)
  watchdog = Watchdog(args.step_timeout)
  # Auto axes: the compiler propagates shardings from the annotated parameters and batch.
  mesh = jax.make_mesh((jax.device_count(),), (FSDP,), axis_types=(AxisType.Auto,))
  if args.batch_size % mesh.size:
    raise SystemExit(
      f"error: --batch-size {args.batch_size} must be divisible by the "
      f"{mesh.size} devices of the mesh"
    )
  log(
    f"jax {jax.__version__}: {jax.process_count()} process(es) x {jax.local_device_count()} "
    f"{jax.devices()[0].platform} device(s) = mesh {dict(mesh.shape)}"
  )
  data = load_digits(args.seed)
  results = []
  with jax.set_mesh(mesh):
    for spec in args.optimizers:
      row = train(spec, args, mesh, data, watchdog, on_step)
      results.append(row)
      log(
        f"{spec.label}: test_accuracy={row['test_accuracy']:.4f} "
        f"train_loss={row['train_loss']} {row['seconds']:.1f}s; optimizer state sharded like "
        f"the parameters in every process: {all(row['state_sharded_like_params'])}"
      )
  watchdog.stop()
  log(
    json.dumps(
      {
        "results": results,
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "mesh": {FSDP: mesh.size},
      }
    )
  )
  if jax.process_count() > 1:
    jax.distributed.shutdown()


if __name__ == "__main__":
  main()
