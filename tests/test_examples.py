"""The examples in examples/: each imports no module of the repository but ``anon_optax``.

``digits_cnn.py`` is tested through its functions (imported from the file) and once as a script.
The other examples run with ``--quick`` in a subprocess (slow; CI runs them) and must exit 0 and end
their stdout with one JSON object with the documented keys. Scripts run from an empty directory
outside the repository with only the package importable (``PYTHONPATH`` holds a directory with
nothing but ``anon_optax`` in it).
"""

import ast
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

from conftest import run_eight_device_process
from flax import nnx
import jax.numpy as jnp
import numpy as np
import optax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


@pytest.fixture(scope="module")
def package_only(tmp_path_factory):
  """(an empty working directory outside the repository, a PYTHONPATH with only the package)."""
  root = tmp_path_factory.mktemp("package_only")
  (root / "site").mkdir()
  (root / "site" / "anon_optax").symlink_to(REPO / "anon_optax", target_is_directory=True)
  (root / "empty").mkdir()
  return root / "empty", root / "site"


def run_example(name, package_only, *args, env=None, cwd=None, timeout=600):
  outside, site = package_only
  env = {**os.environ, "PYTHONPATH": str(site), **(env or {})}
  env.setdefault("MPLBACKEND", "Agg")
  command = [sys.executable, str(EXAMPLES / name), "--quick", *args]
  if "xla_force_host_platform_device_count" in env.get("XLA_FLAGS", ""):
    proc = run_eight_device_process(command, env=env, cwd=cwd or outside, timeout=timeout)
  else:
    proc = subprocess.run(
      command, cwd=cwd or outside, env=env, capture_output=True, text=True, timeout=timeout
    )
  assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
  lines = proc.stdout.strip().splitlines()
  assert lines, f"{name} printed nothing on stdout"
  return json.loads(lines[-1]), proc


def check_rows(out, metric, *, gamma_for_anon=True):
  assert isinstance(out["results"], list) and out["results"]
  for row in out["results"]:
    assert {"optimizer", metric, "train_loss"} <= set(row), row
    if row["optimizer"] == "anon" and gamma_for_anon:
      assert "gamma" in row


def _repository_modules():
  """Top-level names a script could import from the checkout instead of from installed packages."""
  names = {p.stem for p in REPO.glob("*.py")} | {p.name for p in REPO.iterdir() if p.is_dir()}
  names |= {p.stem for p in SCRIPTS}
  return names - {"anon_optax"}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_example_imports_only_installed_packages(path):
  tree = ast.parse(path.read_text())
  imported = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      imported |= {alias.name.split(".")[0] for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      imported.add(node.module.split(".")[0])
  assert not imported & _repository_modules(), imported & _repository_modules()
  assert "sys.path" not in path.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["repo_root", "examples_dir"])
def test_gamma_sweep_runs_from_the_repository_too(where, package_only):
  # Every other test here runs its example from an empty directory outside the repository.
  cwd = {"repo_root": REPO, "examples_dir": EXAMPLES}[where]
  out, _ = run_example("gamma_sweep.py", package_only, cwd=cwd)
  assert {r["gamma"] for r in out["results"]} == {0.0, 1.0}


@pytest.mark.slow
def test_char_gpt_quick(package_only):
  out, _ = run_example("char_gpt.py", package_only, "--optimizers", "anon,adamw,lion,muon")
  check_rows(out, "val_loss")
  names = [(r["optimizer"], r.get("gamma")) for r in out["results"]]
  assert names == [("anon", 1.0), ("adamw", None), ("lion", None), ("muon", None)]
  for r in out["results"]:
    assert r["val_loss"] == r["val_loss"] and r["val_loss"] < 10.0, r  # finite, below ln(vocab)+


@pytest.mark.slow
def test_multihost_training_as_one_process_on_a_2x4_mesh_of_8_simulated_devices(package_only):
  # Force exactly 8 CPU devices, whatever the host has.
  env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  args = ("--single-process", "--mesh", "2,4", "--no-progress")
  out, _ = run_example("multihost_training.py", package_only, *args, env=env)
  check_rows(out, "test_accuracy")
  assert (out["processes"], out["devices"], out["mesh"]) == (1, 8, {"data": 2, "fsdp": 4})
  (row,) = out["results"]
  # mu, nu and precond of each of the 8 parameters are sharded like their parameter.
  assert row["state_sharded_like_params"] == [True] and row["state_leaves_like_params"] == 24
  assert row["param_specs"]["['linear1']['kernel']"].startswith("P('fsdp'"), row["param_specs"]
  assert row["test_accuracy"] >= 0.6, row


@pytest.mark.slow
def test_gamma_sweep_quick_writes_its_results_and_table(package_only, tmp_path):
  out, _ = run_example("gamma_sweep.py", package_only, "--out", str(tmp_path))
  check_rows(out, "test_accuracy")
  rows = {r["gamma"]: r for r in out["results"]}
  assert set(rows) == {0.0, 1.0}
  assert rows[1.0]["test_accuracy"] >= 0.6, rows
  saved = json.loads((tmp_path / "gamma_sweep.json").read_text())
  assert saved["results"] == out["results"]
  source, _, table = (tmp_path / "gamma_sweep.md").read_text().partition("\n\n")
  assert source.startswith(f"Measured on {saved['machine']['cpu']} ") and ", commit " in source
  assert "gamma_sweep.py --quick --out" in source and table.startswith("| gamma | best lr |")


def _load_example(name):
  """Imports examples/<name>.py as a module (without putting examples/ on sys.path)."""
  spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


COMPACT = ("--mu-dtype", "bfloat16", "--precond-dtype", "bfloat16")
COMPACT_ALL = (*COMPACT, "--nu-dtype", "bfloat16")


def _run_in_process(name, *args, capsys):
  """The example's main() with --quick in this process (no interpreter start): its JSON rows."""
  _load_example(name).main(["--quick", *args])
  return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]


def _check_anon_state(row, flags, dtypes):
  mu, nu, precond = dtypes
  assert row["optimizer"] == "anon"
  assert row["state_dtypes"] == {"mu": mu, "nu": nu, "precond": precond}
  for flag, dtype in zip(flags[::2], flags[1::2]):
    assert row[flag[2:].replace("-", "_")] == dtype
  # Three parameter-sized arrays at 2 or 4 bytes per element, and a few int32 counters.
  elements = row["param_bytes"] // 4
  per_element = sum(2 if d == "bfloat16" else 4 for d in dtypes)
  assert 0 < row["state_bytes"] - per_element * elements <= 4 * 8


def test_char_gpt_storage_dtype_flags_reach_the_optimizer_state(capsys):
  (anon,) = _run_in_process("char_gpt", "--optimizers", "anon", *COMPACT_ALL, capsys=capsys)
  _check_anon_state(anon, COMPACT_ALL, ("bfloat16",) * 3)
  assert anon["val_loss"] < 10.0  # finite, below ln(vocab) and then some


@pytest.fixture(scope="module")
def digits_cnn():
  return _load_example("digits_cnn")


def test_digits_cnn_data_are_a_stratified_split_in_unit_range(digits_cnn):
  data = digits_cnn.load_digits()
  assert data.x_train.shape == (1347, 8, 8, 1) and data.x_test.shape == (450, 8, 8, 1)
  assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
  assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
  # Stratified: each of the 10 classes is 25% +- one image of the test set's share.
  counts = np.bincount(data.y_test, minlength=10) / np.bincount(
    np.concatenate([data.y_train, data.y_test]), minlength=10
  )
  np.testing.assert_allclose(counts, 0.25, atol=0.01)


def test_digits_cnn_maps_images_to_ten_logits(digits_cnn):
  model = digits_cnn.CNN(rngs=nnx.Rngs(0))
  assert model(jnp.zeros((3, 8, 8, 1))).shape == (3, 10)
  shapes = {k: v.shape for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  assert shapes[("conv1", "kernel")] == (3, 3, 1, 32)
  assert shapes[("conv2", "kernel")] == (3, 3, 32, 64)
  assert shapes[("linear1", "kernel")] == (256, 256)
  assert shapes[("linear2", "kernel")] == (256, 10)


def test_digits_cnn_one_epoch_of_each_optimizer_learns(digits_cnn):
  """Anon and Adam at their tuned rates, one epoch (21 steps): finite losses, far above chance."""
  data = digits_cnn.load_digits()
  optimizers = digits_cnn.make_optimizers()
  assert set(optimizers) == set(digits_cnn.LEARNING_RATES) == {"anon", "adam"}
  for name, tx in optimizers.items():
    r = digits_cnn.train_and_evaluate(tx, data, epochs=1)
    assert np.isfinite(r["train_loss"]) and np.isfinite(r["test_loss"]), (name, r)
    # Chance is 0.1; one epoch reached 0.64 (anon) and 0.75 (adam) at seed 0.
    assert r["test_accuracy"] >= 0.4, (name, r)


def test_digits_cnn_same_seed_same_run(digits_cnn):
  """The initial model and the batch order depend on the seed only: two runs agree exactly."""
  data = digits_cnn.load_digits()
  runs = [
    digits_cnn.train_and_evaluate(optax.adam(1e-3), data, epochs=1, batch_size=256, seed=3)
    for _ in range(2)
  ]
  assert runs[0]["train_loss"] == runs[1]["train_loss"]
  assert runs[0]["test_accuracy"] == runs[1]["test_accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["outside", "repo_root"])
def test_digits_cnn_runs_as_a_script(where, package_only):
  outside, site = package_only
  proc = subprocess.run(
    [sys.executable, str(EXAMPLES / "digits_cnn.py"), "--epochs", "2"],
    cwd={"outside": outside, "repo_root": REPO}[where],
    env={**os.environ, "PYTHONPATH": str(site)},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in ("anon", "adam"):
    assert f"{name} (lr " in proc.stdout and "test accuracy" in proc.stdout, proc.stdout
