"""Runs every example in examples/ with --quick in a subprocess (slow; CI runs it).

Each must exit 0 and end its stdout with one JSON object with the documented keys.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def run_example(name, *args, env=None, timeout=600):
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), **(env or {})}
  env.setdefault("MPLBACKEND", "Agg")
  proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)
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


@pytest.mark.slow
def test_digits_cnn_quick(tmp_path):
  plot = tmp_path / "curves.png"
  out, _ = run_example("digits_cnn.py", "--plot", str(plot))
  check_rows(out, "test_accuracy")
  rows = {r["optimizer"]: r for r in out["results"]}
  assert {"anon", "adam", "sgd"} <= set(rows)
  assert rows["anon"]["gamma"] == 1.0
  assert all("seconds" in r for r in out["results"])
  # Chance is 0.1; three quick epochs reached 0.971, 0.978, 0.982, 0.976 (seeds 0-3).
  assert rows["anon"]["test_accuracy"] >= 0.8, rows["anon"]
  assert plot.stat().st_size > 0


@pytest.mark.slow
def test_digits_cnn_cifar10_missing_is_a_clear_error():
  try:
    import tensorflow_datasets  # noqa: F401
    pytest.skip("tensorflow_datasets installed: the error path is not reachable")
  except ImportError:
    pass
  proc = subprocess.run([sys.executable, str(EXAMPLES / "digits_cnn.py"), "--dataset", "cifar10"],
                        cwd=REPO, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "PYTHONPATH": str(REPO)})
  assert proc.returncode != 0
  assert "tensorflow_datasets" in proc.stderr and "never downloads" in proc.stderr


@pytest.mark.slow
def test_char_gpt_quick():
  out, _ = run_example("char_gpt.py")
  check_rows(out, "val_loss")
  names = [(r["optimizer"], r.get("gamma")) for r in out["results"]]
  # Quick mode runs Anon at gamma 1.0 only (each contender costs a compilation).
  assert names == [("anon", 1.0), ("adamw", None), ("lion", None), ("muon", None)]
  for r in out["results"]:
    assert r["val_loss"] == r["val_loss"] and r["val_loss"] < 10.0, r  # finite, below ln(vocab)+


@pytest.mark.slow
def test_sharded_training_quick_on_8_simulated_devices():
  # Force exactly 8 CPU devices, whatever the host has.
  env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  out, proc = run_example("sharded_training.py", env=env)
  check_rows(out, "test_accuracy")
  assert out["devices"] == 8
  assert out["mesh"] == {"data": 2, "fsdp": 4}
  assert out["state_sharded_like_params"] is True
  assert "precond" in proc.stdout and "'fsdp'" in proc.stdout
  assert out["results"][0]["test_accuracy"] >= 0.6


@pytest.mark.slow
def test_gamma_sweep_quick():
  out, _ = run_example("gamma_sweep.py")
  check_rows(out, "test_accuracy")
  rows = {r["gamma"]: r for r in out["results"]}
  assert set(rows) == {0.0, 1.0}
  assert rows[1.0]["test_accuracy"] >= 0.6, rows
