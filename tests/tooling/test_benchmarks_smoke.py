"""Smoke test of benchmarks/: each benchmark runs its tiny --quick configuration and writes a
well-formed JSON file and its Markdown table beside it, whose first line names the machine and the
command. No timing is asserted (CI machines are noisy); only that the benchmarks run end to end and
record what they claim.

They run as documented in benchmarks/README.md: ``python -m benchmarks.<name>``
with the repository root on ``PYTHONPATH``, here from a working directory
outside the repository.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmarks import step_time
from tooling import models

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run(module, out_dir, *extra):
  cmd = [sys.executable, "-m", module, "--quick", "--out-dir", str(out_dir), *extra]
  env = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
  }
  proc = subprocess.run(
    cmd, capture_output=True, text=True, timeout=600, check=False, cwd=out_dir, env=env
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  name = module.rsplit(".", 1)[-1]
  data = json.loads((out_dir / f"{name}.json").read_text())
  assert data["benchmark"] == name
  source = (out_dir / f"{name}.md").read_text().splitlines()[0]
  assert source.startswith("Measured on ") and f"by `python -m {module} --quick" in source
  for key in ("date", "jax", "optax", "cpu_count", "jax_backend"):
    assert key in data["machine"]
  assert data["config"]["quick"] is True
  return data


@pytest.mark.slow
def test_step_time_quick(tmp_path):
  data = _run("benchmarks.step_time", tmp_path, "--contenders", "anon,floor,adam")
  (res,) = data["results"]
  assert set(res["per_step"]) == {"anon", "floor", "adam", "copy"}
  for entry in res["per_step"].values():
    assert entry["median_s"] > 0
    assert len(entry["samples_s"]) == res["rounds"]
  # Achieved bandwidth on the minimum traffic, as a fraction of the copy's.
  assert res["copy_bandwidth_gbps"] > 0
  num_params = res["num_params"]
  for name, per_param in (("anon", 32), ("floor", 32), ("adam", 28), ("copy", 8)):
    entry = res["per_step"][name]
    assert entry["min_bytes_per_param"] == per_param
    assert entry["achieved_gbps"] == pytest.approx(per_param * num_params / entry["median_s"] / 1e9)
    assert entry["fraction_of_copy_bandwidth"] == pytest.approx(
      entry["achieved_gbps"] / res["copy_bandwidth_gbps"]
    )
  assert res["per_step"]["copy"]["fraction_of_copy_bandwidth"] == pytest.approx(1.0)
  assert res["per_step"]["anon"]["ratio_vs"].keys() == {"floor", "adam"}
  assert res["refresh_spike"]["refresh_step_t1024"]["median_s"] > 0
  assert res["timed_steps"][0] > 1000
  # The loops XLA makes of each step: at least one pass per leaf; the copy (one flat array)
  # is one loop.
  for name, entry in res["per_step"].items():
    leaves = 1 if name == "copy" else res["num_leaves"]
    assert entry["loops_per_leaf"] == entry["parameter_sized_loops"] / leaves
    assert entry["loops_per_leaf"] >= 1 and entry["fusions_in_entry"] >= 1
  assert res["per_step"]["copy"]["parameter_sized_loops"] == 1
  # The default step makes no more passes over the parameters than optax.adam's.
  assert res["per_step"]["anon"]["loops_per_leaf"] <= res["per_step"]["adam"]["loops_per_leaf"]


@pytest.mark.slow
def test_gpu_smoke(tmp_path):
  # The one-command accelerator benchmark, on whatever JAX sees (the CPU here).
  env = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
  }
  cmd = [sys.executable, "-m", "benchmarks.gpu", "--smoke", "--quiet", "--out-dir", str(tmp_path)]
  proc = subprocess.run(
    cmd, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path, env=env
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  data = json.loads((tmp_path / "gpu.json").read_text())
  assert data["benchmark"] == "gpu" and data["config"]["smoke"] is True
  assert data["device"]["device_kind"] and data["machine"]["jax"]
  assert "git_commit" in data["machine"]
  assert [r["num_leaves"] for r in data["step_time"]] == [6, 6]
  for res in data["step_time"]:
    assert set(res["per_step"]) == {"anon", "anon_exact", "floor", "floor_exact", "adam", "copy"}
  # The ratios the targets are stated in, as finite numbers, at every size.
  for res in data["step_time"]:
    anon = res["per_step"]["anon"]
    for ratio in (anon["ratio_vs"]["adam"], anon["paired_ratio_vs"]["floor"]):
      assert np.isfinite(ratio) and ratio > 0
    assert 0 < anon["fraction_of_copy_bandwidth"] and anon["loops_per_leaf"] >= 1
  assert set(data["targets"]) == {"anon_over_adam", "anon_fraction_of_copy_bandwidth"}
  for target in data["targets"].values():
    assert np.isfinite(target["measured"]) and isinstance(target["met"], bool)
  assert {r["optimizer"] for r in data["memory"]["results"]} >= {"anon", "optax.adam"}
  table = (tmp_path / "gpu.md").read_text()
  assert table.startswith("Measured on ") and "| anon " in table and "| anon " in proc.stdout


@pytest.mark.slow
def test_memory_quick(tmp_path):
  data = _run("benchmarks.memory", tmp_path)
  ratios = {
    (r["optimizer"], r["param_dtype"]): r["state_bytes_per_param_byte"] for r in data["results"]
  }
  # Exact byte counts: adam keeps 2 float32 moments; anon m, s and v.
  assert ratios[("optax.adam", "float32")] == pytest.approx(2.0, abs=1e-3)
  assert ratios[("anon", "float32")] == pytest.approx(3.0, abs=1e-3)
  assert ratios[("anon (mu_dtype=bfloat16)", "float32")] == pytest.approx(2.5, abs=1e-3)


@pytest.mark.slow
def test_compile_time_quick(tmp_path):
  data = _run("benchmarks.compile_time", tmp_path)
  for name in ("anon", "adam"):
    entry = data["results"]["mlp"][name]
    assert entry["compile"] > 0 and entry["lower"] > 0
    eager = data["eager"][name]
    assert 0 < eager["median_s"] < eager["cold_first_call_s"]  # The first call compiles.
  assert data["eager"]["anon"]["paired_ratio_vs"]["adam"] > 0


@pytest.mark.slow
def test_vmapped_sweep_quick(tmp_path):
  data = _run("benchmarks.vmapped_sweep", tmp_path)
  entry = data["results"]["scan"]
  assert entry["vmapped"]["run_s"] > 0 and entry["sequential"]["run_s"] > 0
  assert len(entry["test_accuracy"]) == 8
  # The vmapped sweep computes the same runs as the sequential one.
  assert entry["max_rel_param_diff_vmapped_vs_sequential"] < 1e-3
  seq = entry["sequential"]
  assert seq["total_s_compile_per_gamma"] == pytest.approx(seq["run_s"] + 8 * seq["compile_s"])


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", [(3, 8, 8, 1), (2, 8, 8, 5), (2, 7, 9, 3)])
def test_im2col_convolution_equals_lax_convolution(shape, stride):
  # The sweep's CNN uses models.conv_im2col; it must be the same function as
  # the jax.lax convolution (SAME padding, odd sizes included).

  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], shape)
  w = jax.random.normal(keys[1], (3, 3, shape[-1], 4))
  b = jax.random.normal(keys[2], (4,))
  want = models._conv(x, w, b, stride)  # pylint: disable=protected-access
  got = models.conv_im2col(x, w, b, stride)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_step_time_takes_the_refresh_schedule_from_anon():
  # The counters the benchmark jumps its states to are anon's own after that many steps.
  counters = step_time.anon_counters(1100)
  assert counters["count"][1000 - 1] == 1000
  assert counters["next_refresh"][1000 - 1] == 1024
  assert counters["num_refreshes"][1000 - 1] == 11  # At steps 1, 2, 4, ..., 512 and 768.
  assert step_time.refresh_steps(counters, 1, 1100) == [2**k for k in range(10)] + [768, 1024]
  assert step_time.refresh_steps(counters, 1001, 1064) == [1024]
  assert step_time.refresh_steps(counters, 1065, 1100) == []


def test_one_pass_floor_is_anons_step_with_a_fixed_preconditioner():
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  grads = {"w": jnp.asarray([0.5, -2.0, 1e-3])}
  floor = step_time.one_pass_floor(grads)
  state = floor.init(grads)
  updates, state = floor.update(grads, state)
  # Step 1: m = (1 - b1) g, bias-corrected to g; update = -lr * v * g with v = rsqrt(g^2 + 1e-8).
  want = -step_time.LR * grads["w"] / np.sqrt(np.asarray(grads["w"]) ** 2 + 1e-8)
  np.testing.assert_allclose(updates["w"], want, rtol=1e-5)
  assert int(state.count) == 1


def test_guarded_floor_bounds_a_stale_preconditioner():
  """The guarded floor caps v where the gradient grew since the fixed v; elsewhere it is exact."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  grads = {"w": jnp.asarray([0.5, -2.0, 1e-3])}
  spike = {"w": jnp.asarray([50.0, -2.0, 1e-3])}  # Step 2 raises sigma of the first element.

  def two_steps(tx):
    state = tx.init(grads)
    _, state = tx.update(grads, state)
    return np.asarray(tx.update(spike, state)[0]["w"])

  exact = two_steps(step_time.one_pass_floor(grads))
  guarded = two_steps(step_time.one_pass_floor(grads, guarded=True))
  assert abs(guarded[0]) < abs(exact[0])
  np.testing.assert_allclose(guarded[1:], exact[1:], rtol=1e-6)


def test_jump_state_sets_every_contenders_counters():
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  import anon_optax  # pylint: disable=import-outside-toplevel

  params = {"w": jnp.ones((3,))}
  counters = step_time.anon_counters(1001)
  for tx in (
    step_time.make_anon(),
    step_time.one_pass_floor(params),
    optax.adam(1e-3),
    optax.sgd(1e-3, momentum=0.9),
    optax.lion(1e-4),
    anon_optax.hvadam(1e-3),
  ):
    state = step_time.jump_state(tx.init(params), 1000, counters)
    count = optax.tree_utils.tree_get(state, "count", None)
    assert count is None or int(count) == 1000
  anon_state = step_time.jump_state(step_time.make_anon().init(params), 1000, counters)
  assert int(optax.tree_utils.tree_get(anon_state, "next_refresh")) == 1024
  assert int(optax.tree_utils.tree_get(anon_state, "num_refreshes")) == 11  # ..., 512, 768.


def test_hlo_loops_counts_parameter_sized_fusions_of_entry():
  hlo = """HloModule jit_step

%fused_computation (p0: f32[4,3]) -> f32[4,3] {
  %p0 = f32[4,3]{1,0} parameter(0)
  ROOT %not_counted = f32[4,3]{1,0} fusion(%p0), kind=kLoop, calls=%other
}

%command_buffer (q0: f32[5]) -> f32[5] {
  %q0 = f32[5]{0} parameter(0)
  ROOT %in_a_call = f32[5]{0} fusion(%q0), kind=kLoop, calls=%f3
}

ENTRY %main (a: f32[4,3], b: f32[5], c: s32[]) -> (f32[4,3], f32[5]) {
  %a = f32[4,3]{1,0} parameter(0)
  %b = f32[5]{0} parameter(1)
  %c = s32[] parameter(2)
  %scalar_fusion = f32[] fusion(%c), kind=kLoop, calls=%fused_computation.1
  %multiply_fusion = f32[4,3]{1,0} fusion(%a, %scalar_fusion), kind=kLoop, calls=%fused_computation
  %two_outputs = (f32[4,3]{1,0}, /*index=1*/f32[5]{0}) fusion(%a, %b), kind=kLoop, calls=%f2
  %cond = (f32[4,3]{1,0}) conditional(%c, %a), branch_computations={%b0, %b1}
  %call = f32[5]{0} call(%b), to_apply=%command_buffer
  ROOT %tuple = (f32[4,3]{1,0}, f32[5]{0}) tuple(%multiply_fusion, %call)
}
"""
  loops = step_time.hlo_loops(hlo, [12, 5])
  # Three parameter-sized fusions over 2 leaves (the multi-output one counts once, the one in
  # the called command buffer counts), 4 fusions in all; the fusion of a computation that
  # ENTRY does not call and the conditional are not counted.
  assert loops == {"parameter_sized_loops": 3, "loops_per_leaf": 1.5, "fusions_in_entry": 4}


def test_compiled_loops_of_adam():

  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  params = {"w": jnp.ones((16, 8)), "b": jnp.ones((8,))}
  tx = optax.adam(1e-3)

  def step(p, s, g):
    updates, s = tx.update(g, s, p)
    return optax.apply_updates(p, updates), s

  loops = step_time.compiled_loops(jax.jit(step), params, tx.init(params), params)
  assert loops["parameter_sized_loops"] >= 2  # At least one pass per leaf.
  assert loops["fusions_in_entry"] >= loops["parameter_sized_loops"]
