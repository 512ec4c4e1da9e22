"""Sharded training of the digits CNN with Anon: one process on N devices, or many processes.

Every parameter and its optimizer state (Anon's ``mu``, ``nu`` and ``precond``) is split over the
``"fsdp"`` axis of a global ``("data", "fsdp")`` device mesh, and every batch over both axes (FSDP /
ZeRO-3: the fsdp axis is also a data-parallel one). ``nnx.Optimizer`` gives each state array its
parameter's sharding; the script checks that in every process. Each process loads and feeds only
its own rows of each global batch (``jax.make_array_from_process_local_data``); only process 0
logs. Orbax checkpoints (asynchronous, the last ``--keep`` kept) are written collectively every
``--save-every`` steps, and a start resumes from the latest complete one, whatever topology wrote
it (Orbax reshards on restore).

One process on this machine's CPU, as ``--devices-per-process`` simulated devices (the flag only
affects the CPU backend; on GPUs/TPUs the real devices are used)::

    python examples/multihost_training.py --single-process                 # mesh data=1 x fsdp=8
    python examples/multihost_training.py --single-process --mesh 2,4 --quick

Several processes: start one copy per host (``srun``, ``mpirun``, every TPU VM);
``jax.distributed.initialize()`` detects the cluster, or give the coordinator (process 0's host)::

    srun python examples/multihost_training.py --checkpoint-dir /shared/ckpt
    python examples/multihost_training.py --coordinator host0:1234 --num-processes N \\
        --process-id i --checkpoint-dir /shared/ckpt
    python tests/multihost_launcher.py --processes 2 \\
        examples/multihost_training.py --devices-per-process 4 --quick     # 2 local processes

A lost process: the runtime's heartbeat (``--heartbeat-timeout``) makes every other process exit
with an error naming it; a watchdog (``--step-timeout``) ends a process whose training makes no
progress. A checkpoint is written to a temporary directory and renamed once every process has
written its shards, so the latest checkpoint is always complete; rerun the command to resume.

The last line on stdout (process 0) is one JSON object::

    {"results": [{"optimizer": "anon", "weight_decay_mode": "l2", "test_accuracy": ...,
                  "train_loss": ..., "seconds": ..., "resumed_from_step": null, ...}],
     "processes": 2, "devices": 8, "mesh": {"data": 1, "fsdp": 8}}
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import importlib.util
import json
import os
import pathlib
import sys
import threading
import time

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


def parse_optimizers(text: str, default_mode: str) -> list[tuple[str, str]]:
  """'anon,anon:decoupled,hvadam' -> [(name, weight decay mode)]; no ':MODE': the default."""
  specs = [item.strip().partition(":")[::2] for item in text.split(",") if item.strip()]
  specs = [(name, mode or default_mode) for name, mode in specs]
  for name, mode in specs:
    if name not in OPTIMIZERS or mode not in WEIGHT_DECAY_MODES:
      raise ValueError(
        f"--optimizers: {name}:{mode}? names {OPTIMIZERS}, modes {WEIGHT_DECAY_MODES}"
      )
  if not specs or len(set(specs)) != len(specs):
    raise ValueError(f"--optimizers: {text!r}: give each configuration once, e.g. 'anon,hvadam'")
  return specs


def parse_args(argv: list[str]) -> argparse.Namespace:
  """Parses and checks the command line; --quick shortens whatever was left at its default."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--devices-per-process", type=int, default=8, help="simulated CPU devices")
  p.add_argument("--mesh", default=None, help="DATA,FSDP sizes (default: 1,all devices)")
  p.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="process 0's address")
  p.add_argument("--num-processes", type=int, default=None)
  p.add_argument("--process-id", type=int, default=None)
  p.add_argument("--single-process", action="store_true", help="don't look for a cluster")
  p.add_argument("--heartbeat-timeout", type=int, default=60, help="seconds to a lost process")
  p.add_argument("--init-timeout", type=int, default=300, help="seconds for all to join")
  p.add_argument("--shutdown-timeout", type=int, default=60)
  p.add_argument("--step-timeout", type=float, default=900, help="watchdog seconds (0: off)")
  p.add_argument("--optimizers", default="anon", help="e.g. 'anon:decoupled,hvadam' (NAME[:MODE])")
  p.add_argument("--lr", type=float, default=1e-2)
  p.add_argument("--gamma", type=float, default=1.0, help="Anon's gamma")
  p.add_argument("--exact", action="store_true", help="Anon's exact rule (no step guard)")
  p.add_argument("--weight-decay", type=float, default=0.0)
  p.add_argument("--weight-decay-mode", default="l2", choices=WEIGHT_DECAY_MODES)
  p.add_argument("--steps", type=int, default=600)
  p.add_argument("--batch-size", type=int, default=64, help="global batch size")
  p.add_argument("--width", type=int, default=32, help="channels of the first conv")
  p.add_argument("--hidden", type=int, default=128, help="units of the dense layer")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--log-every", type=int, default=50)
  p.add_argument("--quick", action="store_true", help="40 steps, a checkpoint every 10")
  p.add_argument("--no-progress", dest="progress", action="store_false")
  p.add_argument("--checkpoint-dir", default=None, help="Orbax checkpoints, DIR/<opt>-<mode>")
  p.add_argument("--save-every", type=int, default=100, metavar="K")
  p.add_argument("--keep", type=int, default=3, metavar="N", help="checkpoints kept")
  p.add_argument("--resume-step", type=int, default=None, help="instead of the latest")
  p.add_argument("--save-params", default=None, metavar="DIR", help="final params, as .npz")
  p.add_argument("--snapshot-steps", default="", metavar="S1,S2", help="more .npz params")
  args = p.parse_args(argv)
  if args.quick:
    for name, value in {"steps": 40, "save_every": 10, "log_every": 10}.items():
      if getattr(args, name) == p.get_default(name):
        setattr(args, name, value)
  try:
    args.optimizers = parse_optimizers(args.optimizers, args.weight_decay_mode)
    args.snapshot_steps = {int(s) for s in args.snapshot_steps.split(",") if s.strip()}
    args.mesh = args.mesh and tuple(int(s) for s in args.mesh.split(","))
  except ValueError as e:
    p.error(str(e))
  for name in ("steps", "batch_size", "save_every", "keep", "log_every", "width", "hidden"):
    if getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
  explicit = (args.coordinator, args.num_processes, args.process_id)
  if None in explicit and any(v is not None for v in explicit):
    p.error("--coordinator, --num-processes and --process-id go together")
  return args


def log(*args) -> None:
  """Prints on process 0 only: every process runs the same loop, one copy of the log is enough."""
  if jax.process_index() == 0:
    print(*args, flush=True)


class CNN(nnx.Module):
  """Two 3x3 convs, a 2x2 average pool, two dense layers (GELU); FSDP-annotated parameters.

  Conv kernels and biases are split along their output channels, dense kernels along their input
  features; an array the fsdp axis does not divide is replicated (the 10-class bias).
  """

  def __init__(self, *, width: int, hidden: int, fsdp: int, rngs: nnx.Rngs):
    def sharded(init, shape, axis):
      names = [None] * len(shape)
      if shape[axis] % fsdp == 0:
        names[axis] = "fsdp"
      return nnx.with_partitioning(init, tuple(names))

    kernel, zeros = nnx.initializers.lecun_normal(), nnx.initializers.zeros_init()

    def conv(c_in, c_out):
      kernel_init = sharded(kernel, (3, 3, c_in, c_out), 3)
      bias_init = sharded(zeros, (c_out,), 0)
      return nnx.Conv(c_in, c_out, (3, 3), kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)

    def dense(d_in, d_out):
      kernel_init, bias_init = sharded(kernel, (d_in, d_out), 0), sharded(zeros, (d_out,), 0)
      return nnx.Linear(d_in, d_out, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)

    self.conv1, self.conv2 = conv(1, width), conv(width, 2 * width)
    self.linear1, self.linear2 = dense(4 * 4 * 2 * width, hidden), dense(hidden, 10)

  def __call__(self, x):
    x = nnx.gelu(self.conv2(nnx.gelu(self.conv1(x))))
    x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = nnx.gelu(self.linear1(x.reshape(x.shape[0], -1)))
    return self.linear2(x)


def load_digits(seed: int = 0, test_fraction: float = 0.25) -> dict[str, np.ndarray]:
  """scikit-learn's 1797 8x8 digits in [0, 1]; a seeded, stratified train/test split.

  Read from the CSV file scikit-learn ships, without importing scikit-learn: that import costs
  about 2 s of CPU, paid by every process of every launch.
  """
  spec = importlib.util.find_spec("sklearn")
  path = spec and pathlib.Path(spec.submodule_search_locations[0]) / "datasets/data/digits.csv.gz"
  if not path or not path.exists():
    raise SystemExit("error: the digits data come with scikit-learn: pip install scikit-learn")
  table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # 64 pixels (0-16), then the label.
  x, y = (table[:, :64] / 16.0).reshape(-1, 8, 8, 1), table[:, 64].astype(np.int32)
  rng = np.random.default_rng(seed)
  is_test = np.zeros(len(y), bool)
  for label in np.unique(y):
    members = rng.permutation(np.flatnonzero(y == label))
    is_test[members[: round(len(members) * test_fraction)]] = True
  train, test = rng.permutation(np.flatnonzero(~is_test)), np.flatnonzero(is_test)
  return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


def global_batch_indices(step: int, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
  """Rows of global batch `step`: a function of (seed, step) only, so a resumed run and every
  process see exactly the batches of an uninterrupted run."""
  epoch, i = divmod(step, num_examples // batch_size)
  perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
  return perm[i * batch_size : (i + 1) * batch_size]


def put_batch(sharding: NamedSharding, x: np.ndarray, y: np.ndarray, rows: np.ndarray):
  """Loads this process's share of `rows` (indices into x, y) and assembles the global arrays."""
  blocks = {
    i[0].indices(len(rows))[:2]
    for i in sharding.addressable_devices_indices_map((len(rows),)).values()
  }
  lo, hi = min(b[0] for b in blocks), max(b[1] for b in blocks)
  if sum(b - a for a, b in blocks) != hi - lo:
    raise RuntimeError(f"this process's rows {sorted(blocks)} are not contiguous")
  mine = rows[lo:hi]  # A real loader would read only these rows from storage.
  return tuple(
    jax.make_array_from_process_local_data(sharding, a[mine], (len(rows), *a.shape[1:]))
    for a in (x, y)
  )


def make_optimizer(name: str, mode: str, args) -> optax.GradientTransformation:
  kw = {"weight_decay": args.weight_decay, "weight_decay_mode": mode}
  if name == "anon":
    return anon_optax.anon(args.lr, gamma=args.gamma, exact=args.exact, **kw)
  return anon_optax.hvadam(args.lr, **kw)


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


def checkpoint_tree(model: CNN, optimizer: nnx.Optimizer) -> dict:
  """Parameters and optimizer state as nested dicts of global arrays (what Orbax saves)."""
  return {
    k: nnx.to_pure_dict(nnx.state(m)) for k, m in (("model", model), ("optimizer", optimizer))
  }


def sharding_rows(tree) -> dict[str, tuple[tuple[int, ...], str]]:
  """Path -> (shape, partition spec) of every array of a pure-dict tree."""
  return {
    jax.tree_util.keystr(path): (leaf.shape, str(getattr(leaf.sharding, "spec", P())))
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def state_sharded_like_params(model: CNN, optimizer: nnx.Optimizer) -> tuple[bool, int]:
  """Whether every state array shaped like a parameter (path ending in its path) shares its spec,
  and how many such arrays there are (3 per parameter for Anon: mu, nu, precond)."""
  params = sharding_rows(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  state = sharding_rows(nnx.to_pure_dict(nnx.state(optimizer)))
  pairs = [(s, params[p]) for path, s in state.items() for p in params if path.endswith(p)]
  pairs = [(s, p) for s, p in pairs if s[0] == p[0]]
  return bool(pairs) and all(s == p for s, p in pairs), len(pairs)


def gather_params(model: CNN) -> dict[str, np.ndarray]:
  """Every parameter as one global numpy array on every process (a collective: all must call)."""
  leaves = jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  names, arrays = [jax.tree_util.keystr(p) for p, _ in leaves], [a for _, a in leaves]
  if jax.process_count() > 1:
    arrays = multihost_utils.process_allgather(arrays, tiled=True)
  return {k: np.asarray(v) for k, v in zip(names, arrays)}


class Watchdog:
  """Ends the process (exit status 3) if no training step completes for `timeout` seconds.

  The runtime already ends every process when one stops sending heartbeats; this catches a peer
  that is alive but stuck (e.g. on a wedged filesystem).
  """

  def __init__(self, timeout: float):
    self.timeout, self.last, self.what = timeout, time.monotonic(), "starting"
    self.stopped = threading.Event()
    if timeout > 0:
      threading.Thread(target=self._watch, daemon=True).start()

  def progress(self, what: str) -> None:
    self.last, self.what = time.monotonic(), what

  def _watch(self) -> None:
    while not self.stopped.wait(min(5.0, self.timeout / 4)):
      if (idle := time.monotonic() - self.last) > self.timeout:
        sys.stderr.write(
          f"error: process {jax.process_index()}: no training progress for {idle:.0f} s "
          f"(--step-timeout {self.timeout:g}; last: {self.what}); a peer is probably stuck or "
          "lost. Exiting; rerun to resume from the latest complete checkpoint.\n"
        )
        sys.stderr.flush()
        os._exit(3)


def open_checkpoints(args, label: str, model: CNN, optimizer: nnx.Optimizer):
  """The label's CheckpointManager, after restoring the model from its latest (or chosen) step."""
  options = ocp.CheckpointManagerOptions(
    # Exactly every K steps (Orbax's interval policy would also save the first step).
    should_save_fn=lambda step, last_saved: step % args.save_every == 0,
    max_to_keep=args.keep,
    enable_async_checkpointing=True,
    # A crash mid-save leaves "<step>.orbax-checkpoint-tmp", never a step directory; the next
    # start deletes such leftovers.
    cleanup_tmp_directories=True,
  )
  root = (
    args.checkpoint_dir if "://" in args.checkpoint_dir else os.path.abspath(args.checkpoint_dir)
  )
  manager = ocp.CheckpointManager(f"{root.rstrip('/')}/{label}", options=options)
  saved = sorted(manager.all_steps())
  step = manager.latest_step() if args.resume_step is None else args.resume_step
  if step is not None and (step not in saved or saved[-1] != step):
    raise SystemExit(
      f"error: --resume-step {step}: {manager.directory} holds the checkpoints {saved}; "
      "resume from one of them with no later one (move those away)"
    )
  if step is not None:
    # The abstract target carries this topology's shardings: Orbax reads and reshards.
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, checkpoint_tree(model, optimizer))
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
    for module, tree in ((model, restored["model"]), (optimizer, restored["optimizer"])):
      state = nnx.state(module)
      nnx.replace_by_pure_dict(state, tree)
      nnx.update(module, state)
    log(f"{label}: resumed from the checkpoint of step {step} ({manager.directory})")
  return manager, step


def train(name, mode, args, mesh, data, watchdog, on_step=None) -> dict:
  """Trains one optimizer to --steps, resuming from and writing to its checkpoint directory.

  ``on_step(label, step)``, if given, is called after each step, once its checkpoint save started.
  """
  label = f"{name}-{mode}"
  batch_sharding = NamedSharding(mesh, P(("data", "fsdp")))

  @nnx.jit
  def create():  # Inside jit, so that every array is born on its shards.
    model = CNN(
      width=args.width, hidden=args.hidden, fsdp=mesh.shape["fsdp"], rngs=nnx.Rngs(args.seed)
    )
    optimizer = nnx.Optimizer(model, make_optimizer(name, mode, args), wrt=nnx.Param)
    state = nnx.state((model, optimizer))
    nnx.update(
      (model, optimizer), jax.lax.with_sharding_constraint(state, nnx.get_partition_spec(state))
    )
    return model, optimizer

  model, optimizer = create()
  manager, resumed_from = None, None
  if args.checkpoint_dir:
    manager, resumed_from = open_checkpoints(args, label, model, optimizer)
  x_train, y_train = data["x_train"], data["y_train"]
  snapshots, loss, start = {}, None, time.perf_counter()
  bar = tqdm(
    range(resumed_from or 0, args.steps),
    desc=f"{label} on {mesh.size} devices",
    file=sys.stderr,
    disable=jax.process_index() != 0 or not args.progress,
  )
  for step in bar:
    rows = global_batch_indices(step, len(x_train), args.batch_size, args.seed)
    loss = train_step(model, optimizer, *put_batch(batch_sharding, x_train, y_train, rows))
    done = step + 1  # Steps completed; checkpoint k holds the state after k steps.
    if manager is not None:
      # Every process writes its own shards, then process 0 commits (renames the temporary
      # directory) once all have finished; this returns once the write started.
      tree = checkpoint_tree(model, optimizer)
      manager.save(done, args=ocp.args.StandardSave(tree), force=done == args.steps)
    if done in args.snapshot_steps:
      snapshots[done] = gather_params(model)
    if done % args.log_every == 0 or done == args.steps:
      bar.set_postfix(loss=f"{float(loss):.4f}")
      log(f"{label} step {done} loss {float(loss):.6f}")
    watchdog.progress(f"{label} step {done}")
    if on_step is not None:
      on_step(label, done)
  bar.close()
  seconds = time.perf_counter() - start
  if manager is not None:
    manager.wait_until_finished()
    manager.close()

  n_test = len(data["x_test"]) // mesh.size * mesh.size  # Divisible by the devices.
  test = put_batch(batch_sharding, data["x_test"], data["y_test"], np.arange(n_test))
  test_loss, test_accuracy = (float(v) for v in eval_step(model, *test))
  final_params = gather_params(model)
  ok, matched = state_sharded_like_params(model, optimizer)
  # Every process checks its own arrays; process 0 reports them all.
  every_ok = multihost_utils.process_allgather(np.int32(ok)) if jax.process_count() > 1 else [ok]
  if args.save_params and jax.process_index() == 0:
    out = pathlib.Path(args.save_params)
    out.mkdir(parents=True, exist_ok=True)
    for when, params in [*snapshots.items(), (args.steps, final_params)]:
      np.savez(out / f"{label}_step{when}.npz", **params)
  param_specs = sharding_rows(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  return {
    "optimizer": name,
    "weight_decay_mode": mode,
    "weight_decay": args.weight_decay,
    "learning_rate": args.lr,
    "gamma": args.gamma if name == "anon" else None,
    **({"exact": True} if args.exact and name == "anon" else {}),
    "steps": args.steps,
    "resumed_from_step": resumed_from,
    "latest_checkpoint": None if manager is None else manager.latest_step(),
    "train_loss": None if loss is None else float(loss),
    "test_loss": test_loss,
    "test_accuracy": test_accuracy,
    "test_examples": n_test,
    "seconds": round(seconds, 2),
    "state_sharded_like_params": [bool(v) for v in np.ravel(every_ok)],
    "state_leaves_like_params": matched,
    "param_specs": {k: spec for k, (_, spec) in param_specs.items()},
  }


def initialize_distributed(args) -> None:
  """Joins the distributed runtime: explicit flags, else an auto-detected cluster, else alone."""
  flags = os.environ.get("XLA_FLAGS", "")
  if args.devices_per_process > 0 and "xla_force_host_platform_device_count" not in flags:
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
  shape = args.mesh or (1, jax.device_count())
  if shape[0] * shape[1] != jax.device_count() or args.batch_size % jax.device_count():
    raise SystemExit(
      f"error: the mesh {shape} and --batch-size {args.batch_size} must fit the "
      f"{jax.device_count()} devices (mesh sizes multiplying to it, a batch divisible by it)"
    )
  # Auto axes: the compiler propagates shardings from the annotated parameters and batch.
  mesh = jax.make_mesh(shape, ("data", "fsdp"), axis_types=(AxisType.Auto,) * 2)
  log(
    f"jax {jax.__version__}: {jax.process_count()} process(es) x {jax.local_device_count()} "
    f"{jax.devices()[0].platform} device(s) = mesh {dict(mesh.shape)}"
  )
  data = load_digits(args.seed)
  results = []
  with jax.set_mesh(mesh):
    for name, mode in args.optimizers:
      results.append(row := train(name, mode, args, mesh, data, watchdog, on_step))
      log(
        f"{name}-{mode}: test_accuracy={row['test_accuracy']:.4f} train_loss={row['train_loss']} "
        f"{row['seconds']:.1f}s; optimizer state sharded like the parameters in every process: "
        f"{all(row['state_sharded_like_params'])}"
      )
  watchdog.stopped.set()
  out = {"results": results, "processes": jax.process_count(), "devices": jax.device_count()}
  log(json.dumps({**out, "mesh": {k: int(v) for k, v in mesh.shape.items()}}))
  if jax.process_count() > 1:
    jax.distributed.shutdown()


if __name__ == "__main__":
  main()
