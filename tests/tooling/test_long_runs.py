"""experiments/long_runs.py: the two-sided guard it patches in, its schedule and a smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np

import anon_optax
from anon_optax import _idu
from experiments import long_runs


def test_two_sided_guard_clips_v_to_within_c_of_the_bound_and_restores_the_package():
  original = _idu.guarded_preconditioner
  v = jnp.array([1e-4, 0.04, 0.3, 4.0, 6.0, 1e4])
  # sigma = 4 (powers of two are exact in approximate_power): b = 4**-0.5 = 0.5.
  kwargs = dict(inverse_correction=jnp.float32(1), eps=0.0, gamma=1.0, factor=jnp.float32(10))
  with long_runs.two_sided_guard():  # Jitted: one compilation, not one per operation.
    two_sided = jax.jit(lambda v: _idu.guarded_preconditioner(v, jnp.full(6, 4.0), **kwargs))(v)
  np.testing.assert_allclose(two_sided, jnp.clip(v, 0.05, 5.0), rtol=1e-6)
  assert _idu.guarded_preconditioner is original


def test_the_patched_optimizer_is_traced_with_the_patch_and_only_then():
  """Gradients that shrink 1000-fold after the refresh at step 2: the lower bound binds."""

  def updates():
    tx = anon_optax.anon(1.0)
    params = jnp.zeros(3)
    state, out = tx.init(params), []
    for g in (1.0, 1.0, 1e-3):
      u, state = tx.update(jnp.full(3, g), state, params)
      out.append(u)
    return np.asarray(out)

  default = updates()
  with long_runs.two_sided_guard():
    patched = updates()
  np.testing.assert_array_equal(patched[:2], default[:2])  # Refresh steps: no guard.
  assert np.all(np.abs(patched[2]) > 10 * np.abs(default[2]))
  np.testing.assert_array_equal(updates(), default)  # The cache does not keep the patch.


def test_refresh_steps():
  assert long_runs.refresh_steps(50_000)[-3:] == [8192, 16384, 32768]
  capped = long_runs.refresh_steps(50_000, 1024)
  assert capped[9:12] == [512, 1024, 2048] and capped[-1] == 49152 and len(capped) == 58


def test_smoke_run_writes_the_json_and_its_tables(tmp_path):
  argv = ["--smoke", "--workloads", "fit1d", "--optimizers", "two-sided", "--out", str(tmp_path)]
  payload = long_runs.main(argv)
  data = json.loads((tmp_path / "long_runs.json").read_text())
  assert data["optimizers"] == ["adam", "two-sided"] and data["steps"] == 40
  assert len(data["runs"]["fit1d"]["two-sided"]["final_loss"]) == 2
  assert data["summary"]["adam"]["gmean_ratio"] == 1.0
  assert np.isfinite(payload["summary"]["two-sided"]["gmean_ratio"])
  table = (tmp_path / "long_runs.md").read_text()
  assert table.startswith("Measured on ")
  rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
  assert rows == ["optimizer", "adam", "two-sided"] * 2
  long_runs.main(["--render", str(tmp_path / "long_runs.json")])
  assert (tmp_path / "long_runs.md").read_text().split("\n", 1)[1] == table.split("\n", 1)[1]
