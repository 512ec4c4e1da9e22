"""Anon on 8 host CPU devices: FSDP sharding under jit, and pmap.

The device count is fixed when JAX starts, so the runs happen in a separate
process (tests/multidevice_runs.py, with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``), which prints its
results as JSON; the assertions are here.
"""

import chex
from eight_devices import run_on_eight_devices
import numpy as np
import pytest

_SHARDED = ("w1", "b1", "w2")  # "b2" (3 elements) is replicated on purpose.


@pytest.fixture(scope="module")
def runs():
  return run_on_eight_devices("multidevice_runs.py", timeout=600)


def _as_arrays(tree):
  return {k: np.asarray(v, np.float32) for k, v in tree.items()}


@pytest.mark.slow
def test_fsdp_state_is_sharded_like_the_params(runs):
  fsdp = runs["fsdp"]
  for name in _SHARDED:
    assert not fsdp["params"][name]["replicated"], name
  for when in ("state_after_init", "state_after_training"):
    for field in ("mu", "nu", "precond"):
      for name, leaf in fsdp[when][field].items():
        where = f"{when} {field}[{name}]: {leaf['spec']}"
        assert leaf["same_as_param"], where
        assert leaf["same_shape_as_param"], where
        assert leaf["replicated"] == (name not in _SHARDED), where


@pytest.mark.slow
def test_fsdp_matches_single_device_run(runs):
  single = _as_arrays(runs["single"])
  sharded = _as_arrays(runs["fsdp"]["final"])
  assert runs["fsdp"]["num_refreshes"] == 6  # 1, 2, 4, 8, 16, 32 of 40 steps.
  chex.assert_trees_all_close(sharded, single, rtol=5e-5, atol=5e-5)
  # Not vacuous: 40 steps moved the parameters far beyond that tolerance.
  assert runs["single_moved"] > 0.1


@pytest.mark.slow
def test_pmap_with_pmean_matches_single_device_run(runs):
  pmap = runs["pmap"]
  assert pmap["replicas_agree"]
  assert pmap["num_refreshes"] == 6
  chex.assert_trees_all_close(
    _as_arrays(pmap["final"]), _as_arrays(runs["single"]), rtol=5e-5, atol=5e-5
  )
