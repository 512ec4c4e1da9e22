"""Anon, scale_by_idu and preconditioner_stats on Auto and Explicit meshes.

Eight host CPU devices, in a subprocess (tests/explicit_sharding_runs.py; the
device count is fixed when JAX starts). Under `jax.sharding.AxisType.Explicit`
the sharding is part of every array's type: an operation that would need a
hidden gather (sorting a sharded array, flattening it) is a
`ShardingTypeError`. On the code before this fix (commit 12f56bb) the jitted
``preconditioner_stats`` raised it for the median of an explicitly sharded
preconditioner, and failed on the zero-size leaf on every mesh ("zero-size
array to reduction operation min"), so the run below did not complete.
"""

import chex
from eight_devices import run_on_eight_devices
import numpy as np
import pytest

_AXIS_TYPES = ("Auto", "Explicit")
_TRANSFORMATIONS = ("anon", "trace_idu")
_FIELDS = {"anon": ("mu", "nu", "precond"), "trace_idu": ("nu", "precond")}


@pytest.fixture(scope="module")
def runs():
  return run_on_eight_devices("explicit_sharding_runs.py", timeout=900)


def _cases():
  return [(a, t) for a in _AXIS_TYPES for t in _TRANSFORMATIONS]


@pytest.mark.slow
@pytest.mark.parametrize("axis_type, name", _cases())
def test_state_is_sharded_like_the_params(runs, axis_type, name):
  run = runs["runs"][f"{axis_type}/{name}"]
  # Not vacuous: the big parameters really are split over the 8 devices.
  assert "fsdp" in run["params"]["w1"]["spec"]
  for when in ("init", "after_steps"):
    assert set(run[when]) == set(_FIELDS[name]), when
    for field, leaves in run[when].items():
      assert set(leaves) == {"w1", "b1", "w2", "b2", "empty"}
      for leaf_name, leaf in leaves.items():
        assert leaf["same_as_param"], (when, field, leaf_name, leaf["spec"])
  for what in ("params", "updates"):
    for leaf_name, leaf in run[what].items():
      assert leaf["same_as_param"], (what, leaf_name, leaf["spec"])


@pytest.mark.slow
@pytest.mark.parametrize("name", _TRANSFORMATIONS)
def test_abstract_init_has_the_params_shardings_on_explicit_meshes(runs, name):
  explicit = runs["runs"][f"Explicit/{name}"]
  for field, leaves in explicit["abstract_init"].items():
    for leaf_name, leaf in leaves.items():
      assert leaf["same_spec_as_param"], (field, leaf_name, leaf["spec"])
      concrete = explicit["init"][field][leaf_name]
      assert (leaf["shape"], leaf["dtype"]) == (concrete["shape"], concrete["dtype"])
  # On an Auto mesh shardings are not part of the types: jax.eval_shape gives
  # shapes and dtypes only (as for optax.adam), and they match the eager ones.
  auto = runs["runs"][f"Auto/{name}"]
  for field, leaves in auto["abstract_init"].items():
    for leaf_name, leaf in leaves.items():
      concrete = auto["init"][field][leaf_name]
      assert (leaf["shape"], leaf["dtype"]) == (concrete["shape"], concrete["dtype"])


@pytest.mark.slow
@pytest.mark.parametrize("axis_type, name", _cases())
def test_preconditioner_stats_on_sharded_state(runs, axis_type, name):
  stats = runs["runs"][f"{axis_type}/{name}"]["stats"]
  # Jitted and eager agree exactly; both agree with NumPy on the gathered
  # state; the empty leaf has no entries and is left out of the global ones.
  assert stats["eager"] == stats["jitted"]
  for key, expected in stats["numpy"].items():
    np.testing.assert_allclose(stats["jitted"][key], expected, rtol=1e-6, err_msg=key)
  assert not any(key.endswith("/empty") for key in stats["jitted"])
  assert stats["jitted"]["num_refreshes"] == 4  # Steps 1, 2, 4, 8 of 12.
  assert stats["jitted"]["v_min"] < stats["jitted"]["v_median"]


@pytest.mark.slow
@pytest.mark.parametrize("axis_type, name", _cases())
def test_sharded_run_matches_single_device_run(runs, axis_type, name):
  final = {
    k: np.asarray(v, np.float32) for k, v in runs["runs"][f"{axis_type}/{name}"]["final"].items()
  }
  single = {k: np.asarray(v, np.float32) for k, v in runs["single"][name].items()}
  chex.assert_trees_all_close(final, single, rtol=1e-5, atol=1e-6)
