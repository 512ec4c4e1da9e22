"""Fixtures shared by the test modules: float64, and runs on 8 host CPU devices.

JAX fixes the device count when it starts, so the multi-device runs happen in
a subprocess started with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``;
the script prints its results as one JSON object on its last stdout line.

XLA's CPU runtime runs the 8 devices' collectives as threads that meet at a
rendezvous. On a loaded 2-core machine one of those threads sometimes never
arrives, and XLA aborts the process after 40 s ("Termination timeout for `all
reduce ...`"): 2 of 5 runs beside a CPU-bound job aborted, and one of the two
in 2 of 4 pairs run side by side; alone, none did. It is XLA's runtime, not
this package. So these processes run one at a time across pytest-xdist
workers (a file lock), and a run that ends in exactly that abort is run
again, at most twice; any other failure fails the test at once.
"""

import contextlib
import fcntl
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import pytest

TESTS = pathlib.Path(__file__).resolve().parent

# Trace and backend-compile events, as JAX's dispatch names them. A cache miss
# shows as a trace; with a persistent compilation cache a compile may be
# skipped, so both are counted.
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

# The (parameter, gradient) dtype pairs whose update dtype must be `optax.adam`'s:
# every pair but complex gradients of real parameters, which raise.
_FLOAT_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
UPDATE_DTYPE_PAIRS = [
  (p, g)
  for p in _FLOAT_DTYPES + (jnp.complex64,)
  for g in _FLOAT_DTYPES + (jnp.complex64, jnp.int32)
  if jnp.issubdtype(p, jnp.complexfloating) or not jnp.issubdtype(g, jnp.complexfloating)
]


@contextlib.contextmanager
def count_compilations():
  """Yields a list that grows by one event name per trace or backend compile inside."""
  events = []

  def listener(event, duration_secs, **kwargs):
    del duration_secs, kwargs
    if event in (TRACE_EVENT, COMPILE_EVENT):
      events.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield events
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


_LOCK = pathlib.Path(tempfile.gettempdir()) / "anon_optax_tests_eight_devices.lock"
_RENDEZVOUS_ABORT = "Termination timeout for"
_ATTEMPTS = 3


def enable_x64():
  """A context manager enabling float64 in JAX (``jax.experimental`` before JAX 0.7)."""
  if callable(getattr(jax, "enable_x64", None)):
    return jax.enable_x64(True)
  from jax.experimental import enable_x64 as experimental_enable_x64  # noqa: PLC0415

  return experimental_enable_x64()


@pytest.fixture
def x64():
  """Runs the test with float64 enabled (`jax_enable_x64`), restored afterwards."""
  with enable_x64():
    yield


@contextlib.contextmanager
def _one_at_a_time():
  with open(_LOCK, "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def run_eight_device_process(command, *, env, timeout, cwd=None) -> subprocess.CompletedProcess:
  """Runs ``command`` (a process on 8 host devices) as described above."""
  with _one_at_a_time():
    for _ in range(_ATTEMPTS):
      completed = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
      )
      aborted = completed.returncode == -signal.SIGABRT and _RENDEZVOUS_ABORT in completed.stderr
      if not aborted:
        break
  return completed


def run_on_eight_devices(script: str, *args: str, timeout: int) -> dict:
  """Runs ``tests/<script> <args>`` on 8 host devices; returns its JSON results."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(
    [str(TESTS.parent)] + [p for p in [env.get("PYTHONPATH")] if p]
  )
  completed = run_eight_device_process(
    [sys.executable, str(TESTS / script), *args], env=env, timeout=timeout
  )
  assert completed.returncode == 0, completed.stderr[-4000:]
  result = json.loads(completed.stdout.strip().splitlines()[-1])
  assert result["device_count"] == 8
  return result


@pytest.fixture(scope="session")
def eight_devices():
  """`run_on_eight_devices`: ``eight_devices(script, *args, timeout=...)`` -> its JSON results."""
  return run_on_eight_devices


def assert_restored_state_returns_to_configured_dtypes(tx, saved_state, params):
  """A state restored with other dtypes is back in ``tx``'s configured dtypes after one step."""
  import chex  # pylint: disable=import-outside-toplevel
  import flax.serialization  # pylint: disable=import-outside-toplevel  (not in the oldest env)

  grads = jax.tree.map(lambda p: 0.1 * p + 0.05, params)
  # flax.serialization restores the saved arrays as they are (no cast to the target's).
  restored = flax.serialization.from_bytes(
    tx.init(params), flax.serialization.to_bytes(saved_state)
  )
  chex.assert_trees_all_equal_dtypes(restored, saved_state)
  update = jax.jit(tx.update)
  fresh = update(grads, tx.init(params), params)[1]
  _, restored = update(grads, restored, params)
  chex.assert_trees_all_equal_dtypes(restored, fresh)
