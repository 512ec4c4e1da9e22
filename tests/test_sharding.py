"""Anon and HVAdam on 8 host CPU devices, against the same runs on one device.

The device count is fixed when JAX starts, so the runs happen in a separate
process (tests/sharding_runs.py, one run per mode, started by the
``eight_devices`` fixture), which prints its results as JSON; the assertions
are here:

- Anon with FSDP-sharded parameters under jit, and with `jax.pmap`;
- Anon and trace + scale_by_idu on meshes with Auto and Explicit axes
  (`jax.sharding.AxisType`): under Explicit axes the sharding is part of every
  array's type, and an operation that would need a hidden gather (sorting a
  sharded array, flattening it) is a `ShardingTypeError`; the jitted
  ``preconditioner_stats`` takes a median of the sharded preconditioner and
  handles a zero-size leaf;
- HVAdam on meshes with Auto and Explicit axes: its state is sharded like the
  parameters, and its inner products do not flatten sharded arrays.
"""

import chex
import numpy as np
import pytest

AXIS_TYPES = ("Auto", "Explicit")


@pytest.fixture(scope="module")
def anon_runs(eight_devices):
  return eight_devices("sharding_runs.py", "anon", timeout=600)


@pytest.fixture(scope="module")
def explicit_runs(eight_devices):
  return eight_devices("sharding_runs.py", "explicit", timeout=900)


@pytest.fixture(scope="module")
def hvadam_runs(eight_devices):
  return eight_devices("sharding_runs.py", "hvadam", timeout=600)


# ----------------------------------------------------------------------------
# Anon: FSDP under jit, and pmap.
# ----------------------------------------------------------------------------

_ANON_SHARDED = ("w1", "b1", "w2")  # "b2" (3 elements) is replicated on purpose.


def _as_arrays(tree):
  return {k: np.asarray(v, np.float32) for k, v in tree.items()}


@pytest.mark.slow
def test_anon_fsdp_state_is_sharded_like_the_params(anon_runs):
  fsdp = anon_runs["fsdp"]
  for name in _ANON_SHARDED:
    assert not fsdp["params"][name]["replicated"], name
  for when in ("state_after_init", "state_after_training"):
    for field in ("mu", "nu", "precond"):
      for name, leaf in fsdp[when][field].items():
        where = f"{when} {field}[{name}]: {leaf['spec']}"
        assert leaf["same_as_param"], where
        assert leaf["same_shape_as_param"], where
        assert leaf["replicated"] == (name not in _ANON_SHARDED), where


@pytest.mark.slow
def test_anon_fsdp_matches_single_device_run(anon_runs):
  single = _as_arrays(anon_runs["single"])
  sharded = _as_arrays(anon_runs["fsdp"]["final"])
  assert anon_runs["fsdp"]["num_refreshes"] == 6  # 1, 2, 4, 8, 16, 32 of 40 steps.
  chex.assert_trees_all_close(sharded, single, rtol=5e-5, atol=5e-5)
  # Not vacuous: 40 steps moved the parameters far beyond that tolerance.
  assert anon_runs["single_moved"] > 0.1


@pytest.mark.slow
def test_anon_pmap_with_pmean_matches_single_device_run(anon_runs):
  pmap = anon_runs["pmap"]
  assert pmap["replicas_agree"]
  assert pmap["num_refreshes"] == 6
  chex.assert_trees_all_close(
    _as_arrays(pmap["final"]), _as_arrays(anon_runs["single"]), rtol=5e-5, atol=5e-5
  )


# ----------------------------------------------------------------------------
# Anon and trace + scale_by_idu on Auto and Explicit meshes.
# ----------------------------------------------------------------------------

_EXPLICIT_TRANSFORMATIONS = ("anon", "trace_idu")
_EXPLICIT_FIELDS = {"anon": ("mu", "nu", "precond"), "trace_idu": ("nu", "precond")}


def _explicit_cases():
  return [(a, t) for a in AXIS_TYPES for t in _EXPLICIT_TRANSFORMATIONS]


@pytest.mark.slow
@pytest.mark.parametrize("axis_type, name", _explicit_cases())
def test_explicit_state_is_sharded_like_the_params(explicit_runs, axis_type, name):
  run = explicit_runs["runs"][f"{axis_type}/{name}"]
  # Not vacuous: the big parameters really are split over the 8 devices.
  assert "fsdp" in run["params"]["w1"]["spec"]
  for when in ("init", "after_steps"):
    assert set(run[when]) == set(_EXPLICIT_FIELDS[name]), when
    for field, leaves in run[when].items():
      assert set(leaves) == {"w1", "b1", "w2", "b2", "empty"}
      for leaf_name, leaf in leaves.items():
        assert leaf["same_as_param"], (when, field, leaf_name, leaf["spec"])
  for what in ("params", "updates"):
    for leaf_name, leaf in run[what].items():
      assert leaf["same_as_param"], (what, leaf_name, leaf["spec"])


@pytest.mark.slow
@pytest.mark.parametrize("name", _EXPLICIT_TRANSFORMATIONS)
def test_explicit_abstract_init_has_the_params_shardings_on_explicit_meshes(explicit_runs, name):
  explicit = explicit_runs["runs"][f"Explicit/{name}"]
  for field, leaves in explicit["abstract_init"].items():
    for leaf_name, leaf in leaves.items():
      assert leaf["same_spec_as_param"], (field, leaf_name, leaf["spec"])
      concrete = explicit["init"][field][leaf_name]
      assert (leaf["shape"], leaf["dtype"]) == (concrete["shape"], concrete["dtype"])
  # On an Auto mesh shardings are not part of the types: jax.eval_shape gives
  # shapes and dtypes only (as for optax.adam), and they match the eager ones.
  auto = explicit_runs["runs"][f"Auto/{name}"]
  for field, leaves in auto["abstract_init"].items():
    for leaf_name, leaf in leaves.items():
      concrete = auto["init"][field][leaf_name]
      assert (leaf["shape"], leaf["dtype"]) == (concrete["shape"], concrete["dtype"])


@pytest.mark.slow
@pytest.mark.parametrize("axis_type, name", _explicit_cases())
def test_explicit_preconditioner_stats_on_sharded_state(explicit_runs, axis_type, name):
  stats = explicit_runs["runs"][f"{axis_type}/{name}"]["stats"]
  # Jitted and eager agree exactly; both agree with NumPy on the gathered
  # state; the empty leaf has no entries and is left out of the global ones.
  assert stats["eager"] == stats["jitted"]
  for key, expected in stats["numpy"].items():
    np.testing.assert_allclose(stats["jitted"][key], expected, rtol=1e-6, err_msg=key)
  assert not any(key.endswith("/empty") for key in stats["jitted"])
  assert stats["jitted"]["num_refreshes"] == 4  # Steps 1, 2, 4, 8 of 12.
  assert stats["jitted"]["v_min"] < stats["jitted"]["v_median"]


@pytest.mark.slow
@pytest.mark.parametrize("axis_type, name", _explicit_cases())
def test_explicit_sharded_run_matches_single_device_run(explicit_runs, axis_type, name):
  final = {
    k: np.asarray(v, np.float32)
    for k, v in explicit_runs["runs"][f"{axis_type}/{name}"]["final"].items()
  }
  single = {k: np.asarray(v, np.float32) for k, v in explicit_runs["single"][name].items()}
  chex.assert_trees_all_close(final, single, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# HVAdam on Auto and Explicit meshes.
# ----------------------------------------------------------------------------

_HVADAM_FIELDS = ("mu", "var", "hidden")


def _assert_all_sharded_like_params(leaves, where):
  for name, leaf in leaves.items():
    assert leaf["same"], f"{where}[{name}]: {leaf['spec']}"


@pytest.mark.slow
@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_hvadam_runs_without_error(hvadam_runs, axis_type):
  assert "error" not in hvadam_runs[axis_type], hvadam_runs[axis_type].get("error")


@pytest.mark.slow
@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_hvadam_state_is_sharded_like_the_params(hvadam_runs, axis_type):
  run = hvadam_runs[axis_type]
  _assert_all_sharded_like_params(run["params"], "params")
  # Not vacuous: three of the four parameters are split over the devices.
  assert sum("fsdp" in leaf["spec"] for leaf in run["params"].values()) == 3
  for when in ("init", "after"):
    for field in _HVADAM_FIELDS:
      _assert_all_sharded_like_params(run[when][field], f"{axis_type} {when} {field}")


@pytest.mark.slow
@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_hvadam_jitted_step_keeps_the_params_shardings(hvadam_runs, axis_type):
  run = hvadam_runs[axis_type]
  _assert_all_sharded_like_params(run["updates"], f"{axis_type} updates")
  _assert_all_sharded_like_params(run["params_after"], f"{axis_type} params")


@pytest.mark.slow
def test_hvadam_abstract_init_has_the_shardings_of_init(hvadam_runs):
  # Explicit axes: the shardings are part of the types, eval_shape sees them.
  for field in _HVADAM_FIELDS:
    _assert_all_sharded_like_params(hvadam_runs["Explicit"]["abstract"][field], f"abstract {field}")
  # Auto axes: eval_shape leaves shardings to the compiler, as for Adam.
  auto = hvadam_runs["Auto"]
  for field in _HVADAM_FIELDS:
    for name, leaf in auto["abstract"][field].items():
      assert leaf == auto["adam_abstract"][name], (field, name)


@pytest.mark.slow
@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_hvadam_sharded_run_matches_single_device(hvadam_runs, axis_type):
  single = {k: np.asarray(v) for k, v in hvadam_runs["single"].items()}
  final = {k: np.asarray(v) for k, v in hvadam_runs[axis_type]["final"].items()}
  chex.assert_trees_all_close(final, single, rtol=1e-4, atol=1e-5)
  assert hvadam_runs["moved"] > 0.05  # Not vacuous.
