"""HVAdam on 8 host CPU devices under Auto and Explicit mesh axes.

The runs happen in a separate process (tests/hvadam_sharding_runs.py, with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``), which prints its
results as JSON; the assertions are here. Before issue 12's fixes the state
was replicated (``jnp.zeros(shape)`` in init) and Explicit axes raised
``ShardingTypeError`` (``jnp.vdot`` flattens sharded arrays).
"""

import chex
from eight_devices import run_on_eight_devices
import numpy as np
import pytest

_AXIS_TYPES = ("Auto", "Explicit")
_FIELDS = ("mu", "var", "hidden")


@pytest.fixture(scope="module")
def runs():
  return run_on_eight_devices("hvadam_sharding_runs.py", timeout=600)


def _assert_all_sharded_like_params(leaves, where):
  for name, leaf in leaves.items():
    assert leaf["same"], f"{where}[{name}]: {leaf['spec']}"


@pytest.mark.slow
@pytest.mark.parametrize("axis_type", _AXIS_TYPES)
def test_runs_without_error(runs, axis_type):
  assert "error" not in runs[axis_type], runs[axis_type].get("error")


@pytest.mark.slow
@pytest.mark.parametrize("axis_type", _AXIS_TYPES)
def test_state_is_sharded_like_the_params(runs, axis_type):
  run = runs[axis_type]
  _assert_all_sharded_like_params(run["params"], "params")
  # Not vacuous: three of the four parameters are split over the devices.
  assert sum("fsdp" in leaf["spec"] for leaf in run["params"].values()) == 3
  for when in ("init", "after"):
    for field in _FIELDS:
      _assert_all_sharded_like_params(run[when][field], f"{axis_type} {when} {field}")


@pytest.mark.slow
@pytest.mark.parametrize("axis_type", _AXIS_TYPES)
def test_jitted_step_keeps_the_params_shardings(runs, axis_type):
  run = runs[axis_type]
  _assert_all_sharded_like_params(run["updates"], f"{axis_type} updates")
  _assert_all_sharded_like_params(run["params_after"], f"{axis_type} params")


@pytest.mark.slow
def test_abstract_init_has_the_shardings_of_init(runs):
  # Explicit axes: the shardings are part of the types, eval_shape sees them.
  for field in _FIELDS:
    _assert_all_sharded_like_params(runs["Explicit"]["abstract"][field], f"abstract {field}")
  # Auto axes: eval_shape leaves shardings to the compiler, as for Adam.
  auto = runs["Auto"]
  for field in _FIELDS:
    for name, leaf in auto["abstract"][field].items():
      assert leaf == auto["adam_abstract"][name], (field, name)


@pytest.mark.slow
@pytest.mark.parametrize("axis_type", _AXIS_TYPES)
def test_sharded_run_matches_single_device(runs, axis_type):
  single = {k: np.asarray(v) for k, v in runs["single"].items()}
  final = {k: np.asarray(v) for k, v in runs[axis_type]["final"].items()}
  chex.assert_trees_all_close(final, single, rtol=1e-4, atol=1e-5)
  assert runs["moved"] > 0.05  # Not vacuous.
