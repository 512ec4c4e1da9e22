"""Eager (un-jitted) use: no compilation per step, no growth of memory.

A notebook or the docstring example calls ``tx.update`` without `jax.jit`.
Each JAX operation then runs as its own small compiled program, cached by its
shapes, dtypes and static arguments. An operation with a static argument that
changes every step (before the fix, the bias correction's ``b1 ** count``
with the concrete step count as an integer exponent: ``jit(integer_pow)`` with
``y=count``) misses that cache at every step: a trace and a compile per step
(~130 ms) and one more cached executable (~1.4 MiB) each time. On the code
before the fix (commit 12f56bb) ``anon`` traced and compiled once per step, so
steps 21-150 below counted 130 compilations, where these tests allow 0.
"""

import contextlib
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import optax
import pytest

import anon_optax

# Trace and backend-compile events, as JAX's dispatch names them. A cache miss
# shows as a trace; with a persistent compilation cache a compile may be
# skipped, so both are counted.
_COMPILE_EVENTS = (
  "/jax/core/compile/jaxpr_trace_duration",
  "/jax/core/compile/backend_compile_duration",
)
# Warm-up steps 1-20 run both branches (refreshes at 1, 2, 4, 8, 16); steps
# 21-150 include the refreshes at 32, 64 and 128.
WARMUP_STEPS = 20
MEASURED_STEPS = 130


@contextlib.contextmanager
def _count_compilations():
  """Yields a list that grows by one per trace or compile while inside."""
  events = []

  def listener(event, duration_secs, **kwargs):
    del duration_secs, kwargs
    if event in _COMPILE_EVENTS:
      events.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield events
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def _params():
  return {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.zeros(4)}


def _grads(params, step):
  # Different values every step (and a zero-free gradient), same shapes.
  return jax.tree.map(lambda p: 0.5 * p + 0.01 * (step + 1) + 0.1, params)


_TRANSFORMATIONS = {
  "anon": lambda: anon_optax.anon(1e-2, gamma=1.1, weight_decay=1e-3),
  "anon_exact": lambda: anon_optax.anon(1e-2, gamma=1.1, exact=True),
  "scale_by_anon": lambda: anon_optax.scale_by_anon(gamma=0.8),
  "scale_by_idu": lambda: anon_optax.scale_by_idu(gamma=1.5),
  "anon_capped": lambda: anon_optax.anon(1e-2, refresh_base=3, max_refresh_interval=7),
}


def _eager_step(tx, params, state, step, with_stats):
  updates, state = tx.update(_grads(params, step), state, params)
  params = optax.apply_updates(params, updates)
  if with_stats:
    anon_optax.preconditioner_stats(state)
  return params, state


@pytest.mark.parametrize(
  "name, with_stats", [(name, False) for name in sorted(_TRANSFORMATIONS)] + [("anon", True)]
)
def test_eager_steps_stop_compiling(name, with_stats):
  # Programs cached by earlier tests in this process would hide per-step
  # compilations of the step counts they already ran.
  jax.clear_caches()
  tx = _TRANSFORMATIONS[name]()
  params = _params()
  state = tx.init(params)
  for step in range(WARMUP_STEPS):
    params, state = _eager_step(tx, params, state, step, with_stats)
  with _count_compilations() as measured:
    for step in range(WARMUP_STEPS, WARMUP_STEPS + MEASURED_STEPS):
      params, state = _eager_step(tx, params, state, step, with_stats)
  # The measured steps run both branches again; every program they need
  # already exists, so nothing is traced or compiled, however many steps.
  assert measured == [], f"{len(measured)} compilations in steps 21-150"
  assert int(optax.tree.get(state, "count")) == WARMUP_STEPS + MEASURED_STEPS


def test_compilation_counter_sees_a_per_step_compile():
  # The counter itself: an eager integer power of a changing Python exponent
  # (the pattern that was fixed) compiles at each step and is counted.
  x = jnp.float32(0.9)
  with _count_compilations() as events:
    for exponent in range(1000, 1005):
      jax.lax.integer_pow(x, exponent)
  assert len(events) >= 5


# Run in a fresh process: in a process where other tests have compiled and
# then dropped programs, new executables reuse the freed heap and RSS would
# not show their cost.
_MEMORY_RUN = """
import json, os, sys
import jax, jax.numpy as jnp, optax
import anon_optax

def resident_bytes():
  with open("/proc/self/statm") as statm:
    return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

warmup, measured = int(sys.argv[1]), int(sys.argv[2])
params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.zeros(4)}
tx = anon_optax.anon(1e-2, gamma=1.1)
state = tx.init(params)

def step(params, state, index):
  grads = jax.tree.map(lambda p: 0.5 * p + 0.01 * (index + 1) + 0.1, params)
  updates, state = tx.update(grads, state, params)
  anon_optax.preconditioner_stats(state)
  return optax.apply_updates(params, updates), state

for index in range(warmup):
  params, state = step(params, state, index)
live_before, rss_before = len(jax.live_arrays()), resident_bytes()
for index in range(warmup, warmup + measured):
  params, state = step(params, state, index)
print(json.dumps({
    "live_before": live_before, "live_after": len(jax.live_arrays()),
    "rss_growth": resident_bytes() - rss_before,
    "finite": all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params)),
}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_eager_steps_keep_memory_flat():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(
    [str(pathlib.Path(__file__).resolve().parents[1])] + [p for p in [env.get("PYTHONPATH")] if p]
  )
  completed = subprocess.run(
    [sys.executable, "-c", _MEMORY_RUN, str(WARMUP_STEPS), str(MEASURED_STEPS)],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert completed.returncode == 0, completed.stderr[-4000:]
  result = json.loads(completed.stdout.strip().splitlines()[-1])
  # Nothing accumulates: the same arrays are alive (params and state), and
  # the process grew by far less than the ~1.4 MiB per step (180 MiB over
  # these 130 steps) that a new executable per step cost before the fix.
  assert result["live_after"] == result["live_before"]
  growth_mib = result["rss_growth"] / 2**20
  assert growth_mib < 32, f"RSS grew by {growth_mib:.1f} MiB"
  assert result["finite"]
