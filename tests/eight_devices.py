"""Runs a test script on 8 host CPU devices, in a process of its own.

JAX fixes the device count when it starts, so the multi-device runs happen in
a subprocess started with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``;
the script prints its results as one JSON object on its last stdout line.
"""

import json
import os
import pathlib
import subprocess
import sys

TESTS = pathlib.Path(__file__).resolve().parent


def run_on_eight_devices(script: str, timeout: int) -> dict:
  """Runs ``tests/<script>`` on 8 host devices; returns its JSON results."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(
    [str(TESTS.parent)] + [p for p in [env.get("PYTHONPATH")] if p]
  )
  completed = subprocess.run(
    [sys.executable, str(TESTS / script)],
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )
  assert completed.returncode == 0, completed.stderr[-4000:]
  result = json.loads(completed.stdout.strip().splitlines()[-1])
  assert result["device_count"] == 8
  return result
