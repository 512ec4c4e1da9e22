"""Optimizer step time (update + apply, jitted, buffers donated), CPU or GPU.

One command::

    python -m benchmarks.step_time                 # 1M, 4M, 16M, 64M
    python -m benchmarks.step_time --sizes 4M      # the target configuration

For every size, every contender holds its own copy of the parameters and its
own optimizer state, all fed the same fixed gradient tree. The state is
brought to steady state by a few real steps and then jumped forward: the step
counters (``count``, ``next_refresh``, ``num_refreshes``) are set so that the
next step is step ``--start-step`` + 1 (default 1001). The counters are the
ones ``anon_optax.anon`` itself holds after that many steps (read off a real
run on a one-element parameter, :func:`anon_counters`), so the refresh
schedule is the package's, not a copy. Each sample is a window of ``--window``
consecutive steps, so refresh steps (powers of 2) fall in the windows exactly
where they fall in training: past step 1000 that is one
refresh per 1024..2048 steps, i.e. almost never inside a window; the JSON lists
the refresh steps each contender actually went through. The refresh step's
own cost is measured separately (``refresh`` table): the state is set so that
the next step is a refresh (t = 1024) and that single step is timed against a
single normal step (t = 1001), interleaved.

Contenders (interleaved round-robin, order rotated every round):

* ``anon``: ``anon_optax.anon(1e-3, gamma=1.0)`` with ``optax.apply_updates``.
* ``adam``, ``adamw``, ``sgd_momentum`` (0.9), ``lion``: the optax aliases.
* ``anon_exact``: the same with ``exact=True`` (the authors' rule, no guard).
* ``anon_bf16_mu_precond``, ``anon_bf16_all``: ``anon`` with compact state,
  ``mu_dtype=precond_dtype=bfloat16`` (state 1.0x Adam's) and also
  ``nu_dtype=bfloat16`` (0.75x; stochastic rounding of ``s``).
* ``floor``: :func:`one_pass_floor`, the least an Anon step can do: only the
  ``m``, ``s`` and ``theta`` updates with a fixed ``v`` bounded by the default
  guard (reads g, m, s, v, theta; writes m, s, theta), donated; no refresh
  ever. ``floor_exact``: the same without the guard, the floor of
  ``anon_exact``.
* ``floor_read_back``, ``floor_rsqrt``, ``floor_no_power``: the guard taken
  apart (issue 23), each against ``floor_exact``: the exact floor with only
  the guard's read-back division of the new ``s``; the guarded floor with the
  bound ``C * rsqrt(sigma)`` (the exact power at gamma = 1) in place of the
  package's approximate power; and with ``C * sigma``, the same reads and no
  power at all.
* ``hvadam``: ``anon_optax.hvadam``.
* ``torch``: the authors' update (``docs/algorithm.md``) as a PyTorch
  per-tensor in-place loop (``torch.no_grad``, ``mul_``/``add_``/``addcmul_``),
  refreshing at the steps the package's schedule gives,
  ``torch.set_num_threads`` = the cores XLA uses.
* ``torch_1thread``: the same loop on one thread. On a machine shared with
  other jobs, two OpenMP threads that spin-wait on each other can be much
  slower than one; this row keeps the PyTorch comparison honest there.
* ``copy`` (always run): a device-to-device streaming copy of one flat
  float32 array as large as the parameters, in place in a donated buffer
  (:class:`CopyContender`). It reads and writes 8 bytes per parameter; its rate
  is the copy bandwidth the other rows are measured against.

Bandwidth: each contender's *minimum* traffic per step in bytes per float32
parameter (``MIN_BYTES_PER_PARAM``: anon and the floor read g, m, s, v, theta
and write m, s, theta = 32; adam 28; sgd with momentum and lion 20), divided
by its median step time, is its achieved bandwidth; the table gives it as a
fraction of the copy's (``x copy bw``).

Loops: each jitted contender's step is compiled once more through
``jitted.lower(...).compile()`` (the same executable, from JAX's cache) and its
HLO text read (:func:`hlo_loops`): the fusions of the ENTRY computation (the
normal step, with the computations it ``call``s, such as XLA:GPU's command
buffers; the refresh branch of Anon's ``cond`` is not counted) whose output is
parameter-sized, i.e. an elementwise pass over a leaf, divided
by the number of leaves (``loops_per_leaf``), and all fusions of ENTRY
(``fusions_in_entry``). A change in the step's structure (an extra pass per
leaf) shows here even where the timings are too noisy to tell.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import anon_optax
from benchmarks import common
from tooling import internals
from tooling import machine

LR = 1e-3
B1, B2, EPS, GAMMA, BETA3 = 0.9, 0.999, 1e-16, 1.0, 0.5
GUARD = internals.DEFAULT_GUARD_FACTOR

ALL_CONTENDERS = (
  "anon",
  "anon_exact",
  "anon_bf16_mu_precond",
  "anon_bf16_all",
  "floor",
  "floor_exact",
  "floor_read_back",
  "floor_rsqrt",
  "floor_no_power",
  "adam",
  "adamw",
  "sgd_momentum",
  "lion",
  "hvadam",
  "torch",
  "torch_1thread",
)
QUICK_CONTENDERS = ("anon", "anon_exact", "floor", "floor_exact", "adam", "torch")

REFRESH_SPIKE_STEP = 1024  # A refresh step of the default schedule (base 2), timed alone.
DEFAULT_LEAVES = {1 << 20: 40, 4 << 20: 40, 16 << 20: 100, 64 << 20: 200}

# The least memory traffic of one step, in bytes per float32 parameter: arrays
# read plus arrays written, 4 bytes each. None: not a simple count (hvadam's
# step reduces over the whole tree several times).
MIN_BYTES_PER_PARAM = {
  "anon": 32,
  "floor": 32,
  "anon_exact": 32,
  "floor_exact": 32,
  "floor_read_back": 32,
  "floor_rsqrt": 32,
  "floor_no_power": 32,
  "anon_bf16_mu_precond": 26,  # m (read, written) and v (read) in bfloat16
  "anon_bf16_all": 22,  # m, s and v in bfloat16
  "torch": 32,
  "torch_1thread": 32,  # r g m s v p; w m s p
  "adam": 28,
  "adamw": 28,  # r g m s p; w m s p
  "sgd_momentum": 20,
  "lion": 20,  # r g m p; w m p
  "copy": 8,  # r x; w y
}


# ----------------------------------------------------------------------------
# Jumping an optax state forward, on the package's own refresh schedule.
# ----------------------------------------------------------------------------

COUNTERS = ("count", "next_refresh", "num_refreshes", "num_accumulated")


def make_anon(exact: bool = False, **storage_dtypes) -> optax.GradientTransformation:
  """The ``anon`` contender (and the source of the refresh schedule).

  ``storage_dtypes``: ``mu_dtype``, ``nu_dtype``, ``precond_dtype`` (compact state).
  """
  return anon_optax.anon(
    LR, b1=B1, b2=B2, eps=EPS, gamma=GAMMA, beta3=BETA3, exact=exact, **storage_dtypes
  )


def anon_counters(last_step: int) -> dict[str, np.ndarray]:
  """Anon's step counters after each step 1..``last_step``, from a real run.

  Runs :func:`make_anon` on a one-element parameter and records the counters
  of its state after every step: entry ``t - 1`` of each array is the value
  after step ``t``.
  """
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
  """Returns ``state`` with its step counters set as Anon's after ``step`` steps.

  Sets whichever of ``count``, ``next_refresh`` and ``num_refreshes`` the
  (nested) optax state has (Anon has all three, optax's optimizers ``count``);
  every array field is passed through untouched (no copy).
  """
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


def one_pass_floor(
  fixed_grads, guarded: bool = False, *, bound=None, read_back: bool = False
) -> optax.GradientTransformation:
  """Anon's step without the refresh: ``m``, ``s`` and ``theta`` with a fixed ``v``.

  What no implementation of the update can go below: the same reads and writes
  as Anon's normal step (``v = rsqrt(g**2 + 1e-8)`` of ``fixed_grads``, never
  refreshed), as an optax transformation so that it is stepped, donated and
  timed exactly like the other contenders. ``guarded``: the floor of the
  default step, which also bounds ``v`` by ``C * sigma_t**(-gamma/2)`` from the
  new ``s`` (``tooling.internals.guarded_preconditioner``, the package's formula).

  The variants that take the guard apart (the ``floor_*`` contenders):
  ``bound``, a function of ``sigma_t``, replaces the guard's bound;
  ``read_back`` divides the new ``s`` by per-element ones, as the guard does,
  without a guard.
  """

  def init_fn(params):
    zeros = lambda p: jnp.zeros_like(p)
    return FloorState(
      jnp.zeros([], jnp.int32),
      jax.tree.map(zeros, params),
      jax.tree.map(zeros, params),
      jax.tree.map(lambda g: jax.lax.rsqrt(g * g + 1e-8), fixed_grads),
    )

  def update_fn(updates, state, params=None):
    del params
    count = state.count + 1
    mu = jax.tree.map(lambda m, g: B1 * m + (1 - B1) * g, state.mu, updates)
    nu = jax.tree.map(lambda s, g: B2 * s + (1 - B2) * g * g, state.nu, updates)
    scale = -LR / (1 - B1 ** count.astype(jnp.float32))
    precond = state.precond
    if guarded or bound is not None or read_back:
      # As in the package: the new s in a form XLA reads back from memory
      # instead of recomputing it from the overwritten old one.
      nu = jax.tree.map(internals.read_back_from_memory, nu, updates)
    correction = 1 / (1 - B2 ** count.astype(jnp.float32))
    if guarded:
      precond = jax.tree.map(
        lambda v, s: internals.guarded_preconditioner(
          v, s, inverse_correction=correction, eps=EPS, gamma=GAMMA
        ),
        precond,
        nu,
      )
    elif bound is not None:
      precond = jax.tree.map(lambda v, s: jnp.minimum(v, bound(s * correction + EPS)), precond, nu)
    updates = jax.tree.map(lambda v, m: scale * v * m, precond, mu)
    return updates, FloorState(count, mu, nu, state.precond)

  return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------
# The compiled step's structure: how many loops XLA makes of it.
# ----------------------------------------------------------------------------

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
  """ENTRY's instruction lines, with those of the computations it ``call``s inlined.

  XLA:GPU outlines runs of kernels into ``call``ed computations (command buffers, run
  as CUDA graphs); they are still the step's own loops. Branches of a ``conditional``
  and ``while`` bodies are not followed.
  """
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

  ``parameter_sized_loops``: the ``fusion`` instructions of the ENTRY computation
  (and of computations it ``call``s, see :func:`_step_instructions`) whose output
  (or one element of a multi-output fusion's tuple) has as many elements as one of
  the leaves, ``leaf_sizes``: the elementwise passes over the parameters. A fusion
  that writes several leaves at once (a multi-output or horizontal fusion) counts
  once. ``loops_per_leaf``: that over the number of leaves. ``fusions_in_entry``:
  every such fusion (scalar ones included). Loops inside a ``conditional``'s
  branches or a ``while`` body are not counted: in Anon's step that is the refresh
  branch.
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


# ----------------------------------------------------------------------------
# Contenders. Each is an object with .run(num_steps) -> seconds, .step (the
# next step number), and .loops (:func:`hlo_loops` of its jitted step, or None).
# ----------------------------------------------------------------------------


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
  """A streaming copy of a flat float32 array of ``num_params``, in place.

  ``x * one`` with ``one`` a traced 1.0 and ``x`` donated: every element is
  read and written once (8 bytes per parameter), by a jitted elementwise
  kernel into the buffer it came from, like the optimizers' donated state
  (STREAM's "scale" kernel). A literal ``x + 0`` would be simplified to a
  ``copy`` into a fresh buffer each call, which on a CPU measures page faults
  and a single-threaded memcpy rather than the memory system.
  """

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
  """Adds achieved GB/s and the fraction of the copy's to ``summary``.

  Returns the copy bandwidth in GB/s.
  """
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
  """The authors' Anon update, a PyTorch per-tensor in-place loop.

  Written the way a ``torch.optim.Optimizer.step`` would be: under
  ``torch.no_grad``, one tensor at a time, ``mul_``/``add_``/``addcmul_`` in
  place, and the IDU refresh of ``v`` at the steps where the package's own
  ``anon`` refreshes (``counters``, from :func:`anon_counters`: 1, 2, 4, 8, ...).
  """

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


# ----------------------------------------------------------------------------
# Benchmark.
# ----------------------------------------------------------------------------


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
    "floor_read_back": lambda: one_pass_floor(grads, read_back=True),
    "floor_rsqrt": lambda: one_pass_floor(grads, bound=lambda x: GUARD * jax.lax.rsqrt(x)),
    "floor_no_power": lambda: one_pass_floor(grads, bound=lambda x: GUARD * x),
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
  try:
    import torch  # pylint: disable=import-outside-toplevel

    del torch
    threads = machine.jax_num_threads()
    factories["torch"] = lambda: TorchAnonReference(
      params_np, grads_np, start_step, counters, num_threads=threads
    )
    if threads > 1:
      factories["torch_1thread"] = lambda: TorchAnonReference(
        params_np, grads_np, start_step, counters, num_threads=1
      )
  except ImportError:
    log("torch not installed: skipping the PyTorch reference (pip install -e '.[bench]')")
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
  return {
    "rounds": 9 if small else 5 if medium else 3,
    "window": 64 if small else 32 if medium else 8,
    "refresh_rounds": 9 if small else 5,
  }


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
  """Times ``names`` (and the copy) at one size; returns that size's results entry.

  Builds the parameter and gradient trees, every contender (each brought to step
  ``start_step``), times ``rounds`` interleaved windows of ``window`` steps after one
  discarded window, adds the bandwidth columns and each contender's loops
  (:func:`hlo_loops`), and, when ``anon`` is among them, the refresh-spike test.
  """
  shapes = common.leaf_sizes(num_params, num_leaves)
  params_np = common.make_tree(shapes, seed=0)
  grads_np = common.make_tree(shapes, seed=1, scale=1e-2)
  grads = jax.tree.map(jnp.asarray, grads_np)
  exact = common.tree_size(params_np)
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
  return {
    "lr": LR,
    "b1": B1,
    "b2": B2,
    "eps": EPS,
    "gamma": GAMMA,
    "beta3": BETA3,
    "start_step": start_step,
    "quick": quick,
    "jax_threads": machine.jax_num_threads(),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--sizes", default="1M,4M,16M,64M", help="comma-separated parameter counts (K/M suffix)."
  )
  parser.add_argument(
    "--leaves",
    default="",
    help="comma-separated leaf counts, one per size "
    "(default 40 for 1M and 4M, 100 for 16M, 200 for 64M).",
  )
  parser.add_argument(
    "--rounds",
    type=int,
    default=0,
    help="timed rounds per size (default: 9 up to 4M, 5 at 16M, 3 above).",
  )
  parser.add_argument(
    "--window",
    type=int,
    default=0,
    help="consecutive steps per sample (default: 64 up to 4M, 32 at 16M, 8 above).",
  )
  parser.add_argument("--start-step", type=int, default=1000)
  parser.add_argument(
    "--contenders", default="", help="comma-separated subset of: " + ",".join(ALL_CONTENDERS)
  )
  parser.add_argument(
    "--refresh-rounds",
    type=int,
    default=0,
    help="rounds of the refresh-spike test (default: 9 up to 4M, 5 above).",
  )
  parser.add_argument(
    "--quick",
    action="store_true",
    help="tiny smoke configuration (64K params in 12 leaves, 2 rounds of 4 steps).",
  )
  parser.add_argument("--out-dir", default=str(common.RESULTS_DIR))
  parser.add_argument("--name", default="step_time")
  parser.add_argument("--quiet", action="store_true")
  args = parser.parse_args(argv)

  log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
  if args.quick:
    sizes, leaves = [1 << 16], [12]
  else:
    sizes = machine.parse_sizes(args.sizes)
    leaves = (
      [int(x) for x in args.leaves.split(",")]
      if args.leaves
      else [DEFAULT_LEAVES.get(n, 40) for n in sizes]
    )
  names = [n.strip() for n in args.contenders.split(",") if n.strip()] or (
    QUICK_CONTENDERS if args.quick else ALL_CONTENDERS
  )
  unknown = sorted(set(names) - set(ALL_CONTENDERS))
  if unknown:
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
    print_size_table(results[-1])

  payload = {"config": config(args.start_step, args.quick), "results": results}
  path = machine.write_json(args.name, payload, args.out_dir)
  log(f"\nwrote {path}")
  return payload


def print_size_table(res: dict[str, Any]) -> str:
  """Prints (and returns) the markdown table of one size's results (:func:`run_size`)."""

  def ratio(entry, name, base):
    if name == base:
      return 1.0
    return entry["ratio_vs"].get(base, float("nan"))

  def number(value):
    return float("nan") if value is None else value

  rows = []
  for name, e in res["per_step"].items():
    rows.append(
      [
        name,
        e["median_s"] * 1e3,
        ratio(e, name, "floor"),
        ratio(e, name, "floor_exact"),
        ratio(e, name, "adam"),
        ratio(e, name, "torch"),
        ratio(e, name, "torch_1thread"),
        e["paired_ratio_vs"].get("floor", 1.0 if name == "floor" else float("nan")),
        number(e["achieved_gbps"]),
        float("nan") if e["achieved_gbps"] is None else e["fraction_of_copy_bandwidth"],
        number(e.get("loops_per_leaf")),
        "-" if e.get("fusions_in_entry") is None else e["fusions_in_entry"],
      ]
    )
  text = machine.print_table(
    [
      "contender",
      "ms/step (median)",
      "x floor",
      "x floor_exact",
      "x adam",
      "x torch",
      "x torch_1thread",
      "x floor (paired)",
      "GB/s (min bytes)",
      "x copy bw",
      "loops/leaf",
      "fusions",
    ],
    rows,
    title=f"{res['num_params_label']} params / {res['num_leaves']} leaves "
    f"(steps {res['timed_steps'][0]}..{res['timed_steps'][1]}, "
    f"refreshes in window: {res['refresh_steps_in_timed_windows']})",
  )
  if res["refresh_spike"]:
    s = res["refresh_spike"]
    text += "\n" + machine.print_table(
      ["step", "ms (median)", "x normal step"],
      [[n, e["median_s"] * 1e3, e["ratio_vs"].get("normal_step_t1001", 1.0)] for n, e in s.items()],
      title="anon refresh step alone",
    )
  return text


if __name__ == "__main__":
  main()
