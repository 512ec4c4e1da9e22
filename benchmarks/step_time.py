"""Optimizer step time (update + apply, jitted, buffers donated), CPU or GPU.

One command::

    python -m benchmarks.step_time                 # 1M, 4M, 16M, 64M
    python -m benchmarks.step_time --sizes 4M      # the target configuration
    python -m benchmarks.step_time --render benchmarks/results/step_time.json   # its table only

For every size, every contender holds its own parameters and optimizer state, all fed the same fixed
gradient tree. A few real steps bring the state to steady state; then the step counters are set to
those ``anon_optax.anon`` itself holds after ``--start-step`` steps (read off a real run,
:func:`anon_counters`), so the refresh schedule is the package's. Each sample is a window of
consecutive steps; past step 1000 the default refreshes every 256 steps, so a few windows hold one
refresh, as the default's steps do (the JSON lists the refresh steps they went through). The refresh step's own cost is timed
alone against a normal step (t = 1024 against t = 1001, interleaved).

Contenders (interleaved round-robin, order rotated every round): ``anon``
(``anon_optax.anon(1e-3, gamma=1.0)``), ``anon_exact`` (``exact=True``), ``anon_bf16_mu_precond``
and ``anon_bf16_all`` (compact state), ``floor`` and ``floor_exact`` (:func:`one_pass_floor`: the
least an Anon step can do, with and without the guard), ``adam``, ``adamw``, ``sgd_momentum``,
``lion`` (Optax), ``hvadam``, ``torch`` and ``torch_1thread`` (the authors' update as a PyTorch
per-tensor in-place loop, :class:`TorchAnonReference`) and, always, ``copy``: a streaming in-place
copy of one flat array as large as the parameters, whose rate is the copy bandwidth.

Each contender's achieved bandwidth is its least traffic per step (``MIN_BYTES_PER_PARAM``) over its
median step time, also as a fraction of the copy's. Each jitted step's HLO is read for the loops XLA
makes of it (:func:`hlo_loops`): an extra pass per leaf shows there even when timings are too noisy
to tell.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
import importlib.util
import inspect
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import anon_optax
from anon_optax import _common
from anon_optax import _hvadam
from anon_optax import _idu
from benchmarks import common
from tooling import machine

LR = 1e-3
B1, B2, EPS, GAMMA, BETA3 = 0.9, 0.999, 1e-16, 1.0, 0.5
GUARD = inspect.signature(anon_optax.anon).parameters["guard_factor"].default

ALL_CONTENDERS = tuple(
  "anon anon_exact anon_bf16_mu_precond anon_bf16_all floor floor_exact adam adamw sgd_momentum"
  " lion hvadam hvadam_no_fold torch torch_1thread".split()
)
QUICK_CONTENDERS = ("anon", "anon_exact", "floor", "floor_exact", "adam", "torch")

REFRESH_SPIKE_STEP = 1024  # A refresh step of the default schedule (base 2), timed alone.
DEFAULT_LEAVES = {1 << 20: 40, 4 << 20: 40, 16 << 20: 100, 64 << 20: 200}

# The least memory traffic of one step, in bytes per float32 parameter: arrays read plus arrays
# written, 4 bytes each (g, m, s, v, theta read; m, s, theta written: 32). None: not a simple
# count (hvadam's step reduces over the whole tree several times).
MIN_BYTES_PER_PARAM = dict(
  anon=32, anon_exact=32, floor=32, floor_exact=32, torch=32, torch_1thread=32,
  anon_bf16_mu_precond=26,  # m (read, written) and v (read) in bfloat16
  anon_bf16_all=22,  # m, s and v in bfloat16
  adam=28, adamw=28, sgd_momentum=20, lion=20, copy=8,  # r g m s p, w m s p; r g m p, w m p; r w
)  # fmt: skip


COUNTERS = ("count", "next_refresh", "num_refreshes", "num_accumulated")


def make_anon(exact: bool = False, **storage_dtypes) -> optax.GradientTransformation:
  """The ``anon`` contender (and the source of the refresh schedule); ``storage_dtypes``:
  ``mu_dtype``, ``nu_dtype``, ``precond_dtype``."""
  return anon_optax.anon(
    LR, b1=B1, b2=B2, eps=EPS, gamma=GAMMA, beta3=BETA3, exact=exact, **storage_dtypes
  )


def anon_counters(last_step: int) -> dict[str, np.ndarray]:
  """Anon's step counters after each step 1..``last_step`` (entry ``t - 1``: after step ``t``),
  from a real run of :func:`make_anon` on a one-element parameter."""
  tx = make_anon()
  params = jnp.ones((1,), jnp.float32)

  def step(state, _):
    _, state = tx.update(jnp.ones_like(params), state, params)
    return state, tuple(optax.tree_utils.tree_get(state, name) for name in COUNTERS)

  _, values = jax.lax.scan(step, tx.init(params), length=last_step)
  return {name: np.asarray(v) for name, v in zip(COUNTERS, values)}


def refresh_steps(counters: dict[str, np.ndarray], first: int, last: int) -> list[int]:
  """The steps in [first, last] at which Anon refreshed its preconditioner."""
  refreshes = np.concatenate([[0], counters["num_refreshes"]])  # refreshes[t]: after step t.
  return [t for t in range(max(first, 1), last + 1) if refreshes[t] > refreshes[t - 1]]


def jump_state(state: Any, step: int, counters: dict[str, np.ndarray]) -> Any:
  """``state`` with whichever of Anon's counters it has set as Anon's after ``step`` steps
  (Optax's optimizers have ``count``); array fields pass through untouched."""
  values = {}
  for name in COUNTERS:
    current = optax.tree_utils.tree_get(state, name, None)
    if current is not None:
      values[name] = jnp.asarray(counters[name][step - 1], current.dtype)
  return optax.tree_utils.tree_set(state, **values) if values else state


class FloorState(NamedTuple):
  count: jax.Array  # int32 scalar
  mu: optax.Updates
  nu: optax.Updates
  precond: optax.Updates  # fixed


def one_pass_floor(fixed_grads, guarded: bool = False) -> optax.GradientTransformation:
  """Anon's step without the refresh: ``m``, ``s`` and ``theta`` with a fixed ``v``.

  The same reads and writes as Anon's normal step (``v = rsqrt(g**2 + 1e-8)`` of ``fixed_grads``,
  never refreshed), stepped, donated and timed like the other contenders: what no implementation
  of the update can go below. ``guarded``: the floor of the default step, which also bounds ``v``
  by the package's guard (``anon_optax._idu.guarded_preconditioner``) from the new ``s``.
  """

  def init_fn(params):
    mu, nu = (jax.tree.map(jnp.zeros_like, params) for _ in range(2))  # Two buffers: donated.
    precond = jax.tree.map(lambda g: jax.lax.rsqrt(g * g + 1e-8), fixed_grads)
    return FloorState(jnp.zeros([], jnp.int32), mu, nu, precond)

  def update_fn(updates, state, params=None):
    del params
    count = state.count + 1
    mu = jax.tree.map(lambda m, g: B1 * m + (1 - B1) * g, state.mu, updates)
    nu = jax.tree.map(lambda s, g: B2 * s + (1 - B2) * g * g, state.nu, updates)
    scale = -LR / (1 - B1 ** count.astype(jnp.float32))
    precond = state.precond
    if guarded:  # As the package does: the new s read back from memory, then the bound.
      nu = jax.tree.map(_common.read_back_from_memory, nu, updates)
      correction = 1 / (1 - B2 ** count.astype(jnp.float32))
      precond = jax.tree.map(
        lambda v, s: _idu.guarded_preconditioner(
          v, s, inverse_correction=correction, eps=EPS, gamma=GAMMA, factor=GUARD
        ),
        precond,
        nu,
      )
    updates = jax.tree.map(lambda v, m: scale * v * m, precond, mu)
    return updates, FloorState(count, mu, nu, state.precond)

  return optax.GradientTransformation(init_fn, update_fn)


_INSTRUCTION = re.compile(
  r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(?P<type>.+?)\s+(?P<opcode>[a-z][\w\-]*)\("
)
_ARRAY_TYPE = re.compile(r"\b[a-z]+\d*\[(?P<dims>[\d,]*)\]")


def _computations(hlo_text: str) -> tuple[dict[str, list[str]], str]:
  """The instruction lines of every computation of an HLO module's text, and ENTRY's name."""
  computations: dict[str, list[str]] = {}
  entry, current = "", None
  for line in hlo_text.splitlines():
    if current is None:
      if line and not line[0].isspace() and line.rstrip().endswith("{"):
        words = line.split()
        is_entry = words[0] == "ENTRY"
        current = words[1 if is_entry else 0].lstrip("%")
        entry = current if is_entry else entry
        computations[current] = []
    elif line.startswith("}"):
      current = None
    else:
      computations[current].append(line)
  return computations, entry


def _step_instructions(hlo_text: str) -> list[str]:
  """ENTRY's instruction lines, with those of the computations it ``call``s inlined (XLA:GPU's
  command buffers); branches of a ``conditional`` and ``while`` bodies are not followed."""
  computations, entry = _computations(hlo_text)
  out, pending, seen = [], [entry], set()
  while pending:
    name = pending.pop()
    if name in seen or name not in computations:
      continue
    seen.add(name)
    for line in computations[name]:
      out.append(line)
      match = _INSTRUCTION.match(line)
      if match and match["opcode"] == "call":
        pending += re.findall(r"to_apply=%?([\w.\-]+)", line)
  return out


def hlo_loops(hlo_text: str, leaf_sizes: Sequence[int]) -> dict[str, Any]:
  """Counts the loops of a compiled step from its HLO text (``compiled.as_text()``).

  ``parameter_sized_loops``: the fusions of ENTRY (:func:`_step_instructions`) with an output as
  large as one of ``leaf_sizes`` (a fusion that writes several leaves counts once): the
  elementwise passes over the parameters, not those of the refresh branch. ``loops_per_leaf``:
  that over the number of leaves; ``fusions_in_entry``: all of them, scalar ones included.
  """
  sizes = {int(n) for n in leaf_sizes}
  fusions = parameter_sized = 0
  for line in _step_instructions(hlo_text):
    match = _INSTRUCTION.match(line)
    if not match or match["opcode"] != "fusion":
      continue
    fusions += 1
    counts = [
      int(np.prod([int(d) for d in m["dims"].split(",")]))
      for m in _ARRAY_TYPE.finditer(match["type"])
      if m["dims"]
    ]
    parameter_sized += any(n in sizes for n in counts)
  return {
    "parameter_sized_loops": parameter_sized,
    "loops_per_leaf": parameter_sized / len(leaf_sizes),
    "fusions_in_entry": fusions,
  }


def compiled_loops(jitted, *args) -> dict[str, Any]:
  """:func:`hlo_loops` of ``jitted`` compiled for ``args``; the leaves are ``args[0]``'s."""
  text = jitted.lower(*args).compile().as_text()
  return hlo_loops(text, [int(np.prod(np.shape(x))) for x in jax.tree.leaves(args[0])])


class OptaxContender:
  """An optax GradientTransformation stepped by a donated jitted function."""

  def __init__(self, tx, params_np, grads, start_step: int, counters, warm_steps: int = 3):
    self.counters = counters
    self.params = jax.tree.map(jnp.array, params_np)
    self.grads = grads
    self.state = tx.init(self.params)

    def step(params, state, grads):
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    self._step = jax.jit(step, donate_argnums=(0, 1))
    # Compiles the step (the calls below reuse it from JAX's cache) and reads its loops.
    self.loops = compiled_loops(self._step, self.params, self.state, grads)
    for _ in range(warm_steps):  # Populate the moments with real values.
      self.params, self.state = self._step(self.params, self.state, grads)
    self.set_step(start_step)
    jax.block_until_ready((self.params, self.state))

  def set_step(self, step: int):
    """The next step run will be ``step + 1``."""
    self.state = jump_state(self.state, step, self.counters)
    self.step = step + 1

  def run(self, num_steps: int) -> float:
    params, state, grads, fn = self.params, self.state, self.grads, self._step
    jax.block_until_ready((params, state))
    t0 = machine.timer()
    for _ in range(num_steps):
      params, state = fn(params, state, grads)
    jax.block_until_ready((params, state))
    t1 = machine.timer()
    self.params, self.state = params, state
    self.step += num_steps
    return t1 - t0


class CopyContender:
  """A streaming copy of ``num_params`` float32 in place: ``x * one``, ``one`` a traced 1.0 and
  ``x`` donated (a literal ``x + 0`` becomes a copy into a fresh buffer: page faults)."""

  def __init__(self, num_params: int):
    self.x = jnp.ones((num_params,), jnp.float32)
    self.one = jnp.ones((), jnp.float32)
    self._fn = jax.jit(lambda x, one: x * one, donate_argnums=0)
    self.loops = compiled_loops(self._fn, self.x, self.one)
    self.step = 0
    self.run(2)

  def run(self, num_steps: int) -> float:
    fn, x, one = self._fn, self.x, self.one
    jax.block_until_ready(x)
    t0 = machine.timer()
    for _ in range(num_steps):
      x = fn(x, one)
    jax.block_until_ready(x)
    t1 = machine.timer()
    self.x = x
    self.step += num_steps
    return t1 - t0


def add_bandwidth(summary: dict[str, Any], num_params: int) -> float:
  """Adds achieved GB/s and the fraction of the copy's to ``summary``; returns the copy's GB/s."""
  copy_gbps = MIN_BYTES_PER_PARAM["copy"] * num_params / summary["copy"]["median_s"] / 1e9
  for name, entry in summary.items():
    per_param = MIN_BYTES_PER_PARAM.get(name)
    entry["min_bytes_per_param"] = per_param
    if per_param is None:
      entry["achieved_gbps"] = entry["fraction_of_copy_bandwidth"] = None
      continue
    entry["achieved_gbps"] = per_param * num_params / entry["median_s"] / 1e9
    entry["fraction_of_copy_bandwidth"] = entry["achieved_gbps"] / copy_gbps
  return copy_gbps


class TorchAnonReference:
  """The authors' Anon update as a ``torch.optim.Optimizer.step`` would be written: under
  ``torch.no_grad``, per tensor, in place, refreshing ``v`` where the package's ``anon`` does."""

  def __init__(
    self, params_np, grads_np, start_step: int, counters, warm_steps: int = 3, num_threads: int = 1
  ):
    self.num_refreshes_after = np.concatenate([[0], counters["num_refreshes"]])
    import torch  # pylint: disable=import-outside-toplevel

    self.torch = torch
    self.loops = None  # Not an XLA program.
    self.num_threads = num_threads
    torch.set_num_threads(num_threads)
    self.params = [torch.tensor(np.array(p)) for p in params_np.values()]
    self.grads = [torch.tensor(np.array(g)) for g in grads_np.values()]
    self.exp_avg = [torch.zeros_like(p) for p in self.params]
    self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
    self.v = [torch.ones_like(p) for p in self.params]
    self.t = 0
    self.last_refresh = 1  # a_{k-1}; a_0 = 1.
    self.num_refreshes = 0
    for _ in range(warm_steps):
      self._one_step()
    self.set_step(start_step)

  def _is_refresh(self, t: int) -> bool:
    return self.num_refreshes_after[t] > self.num_refreshes_after[t - 1]

  def set_step(self, step: int):
    self.t = step
    self.num_refreshes = int(self.num_refreshes_after[step])
    self.last_refresh = max(t for t in range(1, step + 1) if self._is_refresh(t))
    self.step = step + 1

  def _one_step(self):
    torch = self.torch
    with torch.no_grad():
      self.t += 1
      t = self.t
      refresh = self._is_refresh(t)
      if refresh:
        first = self.num_refreshes == 0
        n = 1 if first else t - self.last_refresh  # Steps accumulated in s.
        bias_correction2 = 1 - B2**n
      bias_correction1 = 1 - B1**t
      step_size = LR / bias_correction1
      for p, g, m, s, v in zip(self.params, self.grads, self.exp_avg, self.exp_avg_sq, self.v):
        m.mul_(B1).add_(g, alpha=1 - B1)
        s.mul_(B2).addcmul_(g, g, value=1 - B2)
        if refresh:
          sigma = s.div(bias_correction2).add_(EPS)
          if first:
            v.copy_(sigma.pow_(-GAMMA / 2))
          else:
            v.pow_(-2).mul_(BETA3).add_(sigma.pow_(GAMMA), alpha=1 - BETA3)
            v.pow_(-0.5)
          s.zero_()
        p.addcmul_(v, m, value=-step_size)
      if refresh:
        self.last_refresh = t
        self.num_refreshes += 1

  def run(self, num_steps: int) -> float:
    self.torch.set_num_threads(self.num_threads)
    t0 = machine.timer()
    for _ in range(num_steps):
      self._one_step()
    t1 = machine.timer()
    self.step += num_steps
    return t1 - t0


def build_contenders(params_np, grads, grads_np, start_step, counters, names, log):
  optax_contenders: dict[str, Callable[[], optax.GradientTransformation]] = {
    "anon": make_anon,
    "anon_exact": lambda: make_anon(exact=True),
    "anon_bf16_mu_precond": lambda: make_anon(mu_dtype=jnp.bfloat16, precond_dtype=jnp.bfloat16),
    "anon_bf16_all": lambda: make_anon(
      mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16, precond_dtype=jnp.bfloat16
    ),
    "floor": lambda: one_pass_floor(grads, guarded=True),
    "floor_exact": lambda: one_pass_floor(grads),
    "adam": lambda: optax.adam(LR),
    "adamw": lambda: optax.adamw(LR),
    "sgd_momentum": lambda: optax.sgd(LR, momentum=0.9),
    "lion": lambda: optax.lion(LR * 0.1),
    "hvadam": lambda: anon_optax.hvadam(LR),
  }
  factories: dict[str, Callable[[], Any]] = {
    name: (lambda make=make: OptaxContender(make(), params_np, grads, start_step, counters))
    for name, make in optax_contenders.items()
  }

  def hvadam_no_fold():
    # HVAdam with every leaf's inner products reduced without `_hvadam._FOLD`'s slices: what that
    # XLA:CPU device saves. The caches are cleared so that the step is traced without it.
    folds_from = _hvadam._FOLD_MIN_SIZE
    _hvadam._FOLD_MIN_SIZE = 1 << 62
    jax.clear_caches()
    try:
      return OptaxContender(anon_optax.hvadam(LR), params_np, grads, start_step, counters)
    finally:
      _hvadam._FOLD_MIN_SIZE = folds_from
      jax.clear_caches()

  factories["hvadam_no_fold"] = hvadam_no_fold
  threads = machine.jax_num_threads()
  for name, num_threads in (("torch", threads), ("torch_1thread", 1 if threads > 1 else None)):
    if num_threads and importlib.util.find_spec("torch"):
      factories[name] = lambda n=num_threads: TorchAnonReference(
        params_np, grads_np, start_step, counters, num_threads=n
      )
  if not importlib.util.find_spec("torch"):
    log("torch not installed: no PyTorch reference (pip install -e '.[bench]')")
  contenders = {}
  for name in names:
    if name not in factories:
      continue
    t0 = machine.timer()
    contenders[name] = factories[name]()
    log(f"  built {name} ({machine.timer() - t0:.1f}s incl. compile)")
  return contenders


def refresh_spike(contender: OptaxContender, rounds: int, reps: int, log) -> dict[str, Any]:
  """Times a single refresh step (t = 1024) against a single normal step."""

  def single(step_before):
    def go():
      total = 0.0
      for _ in range(reps):
        contender.set_step(step_before)
        total += contender.run(1)
      return total / reps

    return go

  samples = machine.interleaved(
    {"normal_step_t1001": single(1000), "refresh_step_t1024": single(REFRESH_SPIKE_STEP - 1)},
    rounds,
    warmup_rounds=1,
    log=log,
  )
  return machine.summarise(samples, baselines=("normal_step_t1001",))


def default_schedule(num_params: int) -> dict[str, int]:
  """Rounds, window and refresh rounds of a size when the command line does not say."""
  small, medium = num_params <= (4 << 20), num_params <= (16 << 20)
  rounds, window = (9, 64) if small else (5, 32) if medium else (3, 8)
  return {"rounds": rounds, "window": window, "refresh_rounds": 9 if small else 5}


def run_size(
  num_params: int,
  num_leaves: int,
  names: Sequence[str],
  *,
  rounds: int,
  window: int,
  refresh_rounds: int,
  start_step: int = 1000,
  log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
  """Times ``names`` and the copy at one size, ``rounds`` interleaved windows of ``window`` steps
  after one discarded window, with bandwidth and loops, and ``anon``'s refresh step alone."""
  shapes = common.leaf_sizes(num_params, num_leaves)
  params_np = common.make_tree(shapes, seed=0)
  grads_np = common.make_tree(shapes, seed=1, scale=1e-2)
  grads = jax.tree.map(jnp.asarray, grads_np)
  exact = int(sum(np.prod(s) for s in shapes))
  log(
    f"\n== {machine.size_label(num_params)} params ({exact} exact) in {len(shapes)} leaves; "
    f"{rounds} rounds x {window} steps =="
  )
  timed_first = start_step + 1 + window
  timed_last = start_step + window * (rounds + 1)
  # Anon's counters as far as any contender steps (the refresh-spike test ends at t = 1024).
  counters = anon_counters(max(timed_last, REFRESH_SPIKE_STEP) + window)
  contenders = build_contenders(params_np, grads, grads_np, start_step, counters, names, log)
  contenders["copy"] = CopyContender(exact)
  first_step = {n: c.step for n, c in contenders.items()}
  # The first window of each contender is the discarded warm-up round.
  samples = machine.interleaved(
    {n: (lambda c=c: c.run(window)) for n, c in contenders.items()},
    rounds,
    warmup_rounds=1,
    log=log,
  )
  summary = machine.summarise(
    samples, baselines=("floor", "floor_exact", "adam", "torch", "torch_1thread"), per=window
  )
  copy_gbps = add_bandwidth(summary, exact)
  for name, entry in summary.items():
    loops = contenders[name].loops or dict.fromkeys(
      ("parameter_sized_loops", "loops_per_leaf", "fusions_in_entry")
    )
    entry.update(loops)
  spike = None
  if "anon" in contenders:
    log("  refresh step alone vs a normal step (anon):")
    spike = refresh_spike(contenders["anon"], refresh_rounds, reps=3, log=log)
  return {
    "num_params": exact,
    "num_params_label": machine.size_label(num_params),
    "num_leaves": len(shapes),
    "leaf_sizes": sorted(int(np.prod(s)) for s in shapes),
    "rounds": rounds,
    "window_steps": window,
    "timed_steps": [timed_first, timed_last],
    "refresh_steps_in_timed_windows": refresh_steps(counters, timed_first, timed_last),
    "first_step": first_step,
    "per_step": summary,
    "copy_bandwidth_gbps": copy_gbps,
    "refresh_spike": spike,
  }


def config(start_step: int, quick: bool) -> dict[str, Any]:
  """The ``config`` entry of a step-time results file."""
  hyperparameters = dict(lr=LR, b1=B1, b2=B2, eps=EPS, gamma=GAMMA, beta3=BETA3)
  return {
    **hyperparameters,
    "start_step": start_step,
    "quick": quick,
    "jax_threads": machine.jax_num_threads(),
  }


LABELS = {  # Row labels, in this order; other contenders follow by name, then the copy.
  "anon": "anon",
  "anon_exact": "anon (exact=True)",
  "anon_bf16_mu_precond": "anon (mu, precond bfloat16)",
  "anon_bf16_all": "anon (mu, nu, precond bfloat16)",
  "floor": "floor",
  "floor_exact": "floor_exact",
  "adam": "optax.adam",
  "adamw": "optax.adamw",
  "sgd_momentum": "optax.sgd (momentum 0.9)",
  "lion": "optax.lion",
  "hvadam": "anon_optax.hvadam",
  "hvadam_no_fold": "anon_optax.hvadam, inner products without _FOLD",
  "torch": "PyTorch per-tensor, {threads} threads",
  "torch_1thread": "PyTorch per-tensor, 1 thread",
  "copy": "copy (streaming, in place)",
}


def _ms(seconds: float) -> str:
  ms = 1e3 * seconds
  return f"{ms:.3f}" if ms < 10 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def _x(ratio: float | None) -> str:
  return "-" if ratio is None else f"{ratio:.2f}"


def render(results: dict[str, Any]) -> str:
  """The Markdown tables of a step-time results file: every size and contender, then the
  refresh step alone."""
  threads = results["config"].get("jax_threads", "?")
  sizes = results["results"]
  present = {name for size in sizes for name in size["per_step"]}
  floors = [f for f in ("floor_exact", "floor") if f in present]
  bases = [b for b in ("adam", "torch", "torch_1thread") if b in present]
  names = {
    "adam": "x adam",
    "torch": f"x torch ({threads} thr)",
    "torch_1thread": "x torch (1 thr)",
  }
  headers = ["size / leaves", "contender", "ms/step", *[f"x {f} (paired)" for f in floors]]
  headers += [names[b] for b in bases] + ["GB/s", "x copy", "loops / leaf"]
  rows, refresh = [], []
  for size in sizes:
    per, label = size["per_step"], f"{size['num_params_label']} / {size['num_leaves']}"

    def ratio(name, base, paired=False, per=per):
      if name == base:
        return 1.0
      return per[name]["paired_ratio_vs" if paired else "ratio_vs"].get(base)

    order = [n for n in LABELS if n in per and n != "copy"] + [n for n in per if n not in LABELS]
    for name in [*order, "copy"]:
      entry, gbps = per[name], per[name].get("achieved_gbps")
      loops = entry.get("loops_per_leaf")
      rows.append(
        [label, LABELS.get(name, f"`{name}`").format(threads=threads), _ms(entry["median_s"])]
        + [_x(ratio(name, f, paired=True)) for f in floors]
        + [_x(ratio(name, b)) for b in bases]
        + ["-" if gbps is None else f"{gbps:.1f}", _x(entry.get("fraction_of_copy_bandwidth"))]
        + ["-" if loops is None else f"{loops:g}"]
      )
    if size.get("refresh_spike"):
      normal = size["refresh_spike"]["normal_step_t1001"]
      spike = size["refresh_spike"]["refresh_step_t1024"]
      refresh.append(
        [label, str(len(spike["samples_s"])), _ms(normal["median_s"]), _ms(spike["median_s"])]
        + [_x(spike[k].get("normal_step_t1001")) for k in ("ratio_vs", "paired_ratio_vs")]
      )
  text = (
    'Milliseconds per step (median over the rounds); "paired": the median of the per-round '
    "ratios; GB/s: the least traffic per step over the median time.\n\n"
    + machine.markdown_table(headers, rows)
  )
  if refresh:
    headers = ["size / leaves", "rounds", "normal step ms", "refresh step ms", "ratio (median)"]
    text += "\n\n`anon`'s refresh step (t = 1024) alone against a normal step (t = 1001):\n\n"
    text += machine.markdown_table([*headers, "ratio (paired)"], refresh)
  return text


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="1M,4M,16M,64M", help="parameter counts (K/M suffix)")
  parser.add_argument(
    "--leaves", default="", help="leaf counts, one per size (default 40 to 4M, 100, 200)"
  )
  parser.add_argument("--rounds", type=int, default=0, help="default: 9 to 4M, 5 at 16M, 3")
  parser.add_argument("--window", type=int, default=0, help="steps per sample: 64 to 4M, 32, 8")
  parser.add_argument("--start-step", type=int, default=1000)
  parser.add_argument("--contenders", default="", help="subset of " + ",".join(ALL_CONTENDERS))
  parser.add_argument("--refresh-rounds", type=int, default=0, help="default: 9 to 4M, then 5")
  parser.add_argument("--quick", action="store_true", help="64K params in 12 leaves, 2 x 4 steps")
  parser.add_argument("--out-dir", default=str(common.RESULTS_DIR))
  parser.add_argument("--name", default="step_time")
  parser.add_argument("--render", metavar="JSON", help="only rewrite JSON's table beside it")
  parser.add_argument("--quiet", action="store_true")
  args = parser.parse_args(argv)
  if args.render:
    return machine.render_results(args.render, render)

  log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
  if args.quick:
    sizes, leaves = [1 << 16], [12]
  else:
    sizes = machine.parse_sizes(args.sizes)
    leaves = [int(x) for x in args.leaves.split(",")] if args.leaves else None
    leaves = leaves or [DEFAULT_LEAVES.get(n, 40) for n in sizes]
  names = [n.strip() for n in args.contenders.split(",") if n.strip()]
  names = names or (QUICK_CONTENDERS if args.quick else ALL_CONTENDERS)
  if unknown := sorted(set(names) - set(ALL_CONTENDERS)):
    parser.error(f"--contenders: unknown {unknown}; choose from {','.join(ALL_CONTENDERS)}")

  results = []
  for num_params, num_leaves in zip(sizes, leaves):
    default = default_schedule(num_params)
    results.append(
      run_size(
        num_params,
        num_leaves,
        names,
        rounds=2 if args.quick else (args.rounds or default["rounds"]),
        window=4 if args.quick else (args.window or default["window"]),
        refresh_rounds=2 if args.quick else (args.refresh_rounds or default["refresh_rounds"]),
        start_step=args.start_step,
        log=log,
      )
    )
  payload = {"config": config(args.start_step, args.quick), "results": results}
  machine.write_results(args.name, payload, render(payload), args.out_dir)
  return payload


if __name__ == "__main__":
  main()
