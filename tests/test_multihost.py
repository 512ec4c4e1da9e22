"""Multi-process training on JAX's distributed runtime (gloo on CPU), via the example program.

Every run is `examples/multihost_training.py` in subprocesses started by `multihost_launcher`:
N processes on localhost with D CPU devices each (written NxD below), or, for N = 1, one process
run with `--single-process` on D devices. The launcher also injects the faults (a process that
SIGKILLs itself after a given step). The model is shrunk (width 8, hidden 32, batch 32, 20 steps) to keep the
file within a few minutes on 2 cores; 20 steps cover Anon's refreshes at steps 1, 2, 4, 8, 16.

XLA's CPU backend optimization level is set to 0 in every run: it cuts compile time (most of
these runs' cost; the threefry RNG of the initializers compiles in ~12 s otherwise) and every
comparison is between runs with the same flags.
"""

import fcntl
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import chex
import multihost_launcher
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PROGRAM = REPO / "examples" / "multihost_training.py"

STEPS = 20
SAVE_EVERY = 5
HVADAM_HORIZON = 10  # HVAdam's round-off grows ~2x per step after ~15 steps: compare at 10.
HEARTBEAT = 10  # Seconds; the runtime declares a silent process lost after this.
OPTIMIZERS = ("anon:l2", "anon:decoupled", "anon:fixed", "hvadam")
RESUMED = "anon-decoupled"  # The configuration the checkpoint and fault tests continue.
COMMON = [
  "--weight-decay",
  "1e-3",
  "--steps",
  str(STEPS),
  "--width",
  "8",
  "--hidden",
  "32",
  "--batch-size",
  "32",
  "--no-progress",
  "--log-every",
  "100",
  "--heartbeat-timeout",
  str(HEARTBEAT),
  "--save-every",
  str(SAVE_EVERY),
  "--keep",
  "10",
]
# Topologies: 1x1 vs 8 devices in any arrangement reduce the batch in a different order, so
# they agree to round-off only. Measured (max abs difference, at XLA's default optimization
# level): <= 2.2e-5 for Anon after 20 steps, <= 6.3e-5 for HVAdam after 10; for scale, steps 10
# to 20 move the parameters by up to 0.17 (HVAdam) to 0.38 (Anon), and the three weight-decay
# modes end 0.14 to 0.56 apart.
ANON_TOL = 2e-4
HVADAM_TOL = 5e-4
LAUNCH_TIMEOUT = 420


def subprocess_env():
  path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
  return dict(
    os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_backend_optimization_level=0", PYTHONPATH=path
  )


def run_program(topology, out_dir, *args, kill_at=None, expect_ok=True):
  """Runs the example on `topology` = (processes, devices each); returns the launcher's `Launch`.

  `kill_at` = (process, step): that process SIGKILLs itself after that step.
  """
  processes, devices = topology
  single = ["--single-process"] if processes == 1 else []
  argv = [*single, "--devices-per-process", str(devices), *COMMON, "--save-params", str(out_dir)]
  try:
    launch = multihost_launcher.launch(
      str(PROGRAM),
      [*argv, *args],
      processes,
      kill_at=kill_at,
      grace=HEARTBEAT + 60,
      timeout=LAUNCH_TIMEOUT,
      env=subprocess_env(),
      cwd=str(REPO),
    )
  except TimeoutError as e:
    pytest.fail(f"{topology}: {e}")
  assert launch.ok == expect_ok, (
    f"{topology}: {multihost_launcher.describe(launch)}:\n{launch.stderr[-4000:]}"
  )
  return launch


def program_output(launch):
  """The JSON object the program prints last on process 0's stdout."""
  return json.loads(launch.stdout.strip().splitlines()[-1])


def load_params(out_dir, label, step):
  with np.load(pathlib.Path(out_dir) / f"{label}_step{step}.npz") as f:
    return {k: f[k] for k in f.files}


def finalized_steps(directory):
  """Checkpoint steps Orbax committed: a directory named by the bare step number."""
  return sorted(int(p.name) for p in pathlib.Path(directory).iterdir() if p.name.isdigit())


def assert_bitwise(actual, expected):
  assert actual.keys() == expected.keys()
  for name in expected:
    np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def max_moved(a, b):
  return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


REFERENCE_TOPOLOGIES = ((2, 4), (1, 8), (1, 1))


def reference_runs(root):
  """Uninterrupted 20-step runs of every optimizer on 2x4, 1x8 and 1x1 (2x4 saves checkpoints)."""
  runs = {}
  for topology in REFERENCE_TOPOLOGIES:
    out = root / f"{topology[0]}x{topology[1]}"
    extra = ["--checkpoint-dir", str(root / "checkpoints_2x4")] if topology == (2, 4) else []
    launch = run_program(
      topology,
      out,
      "--optimizers",
      ",".join(OPTIMIZERS),
      "--snapshot-steps",
      str(HVADAM_HORIZON),
      *extra,
    )
    runs["x".join(map(str, topology))] = program_output(launch)
  return runs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The reference runs, made once per test session even under pytest-xdist.

  xdist workers share the parent of their base temporary directories; the first to take the lock
  makes the runs there, the others wait and read its results.
  """
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = tmp_path_factory.getbasetemp().parent / "multihost_reference"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes.
      if not (root / "results.json").exists():
        (root / "results.json").write_text(json.dumps(reference_runs(root)))
  else:
    root = tmp_path_factory.mktemp("multihost_reference")
    (root / "results.json").write_text(json.dumps(reference_runs(root)))
  results = json.loads((root / "results.json").read_text())
  runs = {
    t: dict(results["x".join(map(str, t))], out=root / f"{t[0]}x{t[1]}")
    for t in REFERENCE_TOPOLOGIES
  }
  runs["checkpoints"] = root / "checkpoints_2x4"
  return runs


@pytest.mark.slow
def test_two_processes_match_one_process_and_one_device(reference):
  labels = [r["optimizer"] + "-" + r["weight_decay_mode"] for r in reference[(2, 4)]["results"]]
  assert labels == ["anon-l2", "anon-decoupled", "anon-fixed", "hvadam-l2"]
  assert reference[(2, 4)]["processes"] == 2 and reference[(2, 4)]["devices"] == 8
  for label in labels:
    step, tol = (HVADAM_HORIZON, HVADAM_TOL) if label.startswith("hvadam") else (STEPS, ANON_TOL)
    two_by_four = load_params(reference[(2, 4)]["out"], label, step)
    for topology in ((1, 8), (1, 1)):
      other = load_params(reference[topology]["out"], label, step)
      chex.assert_trees_all_close(two_by_four, other, atol=tol, rtol=tol)
  # Not vacuous: the three weight-decay modes end far apart, far beyond the tolerance.
  ends = [
    load_params(reference[(2, 4)]["out"], f"anon-{m}", STEPS) for m in ("l2", "decoupled", "fixed")
  ]
  assert min(max_moved(ends[i], ends[j]) for i, j in ((0, 1), (0, 2), (1, 2))) > 10 * ANON_TOL


@pytest.mark.slow
def test_optimizer_state_is_sharded_like_the_params_in_every_process(reference):
  for row in reference[(2, 4)]["results"]:
    assert row["state_sharded_like_params"] == [True, True], row["optimizer"]
    # mu, nu and precond for each of the 8 parameters (HVAdam's state has the same three).
    assert row["state_leaves_like_params"] == 24, row
    specs = row["param_specs"]
    assert specs["['linear1']['kernel']"].startswith("P('fsdp'"), specs
    assert "'fsdp'" in specs["['conv2']['kernel']"], specs
    assert specs["['linear2']['bias']"] == "P()", specs  # 10 classes: not divisible by 8.


def resume_from_reference(reference, tmp_path, topology, step):
  """Continues RESUMED on `topology` from a directory holding only the 2x4 checkpoint of `step`."""
  directory = tmp_path / f"ckpt_{topology[0]}x{topology[1]}"
  shutil.copytree(reference["checkpoints"] / RESUMED / str(step), directory / RESUMED / str(step))
  out = tmp_path / f"out_{topology[0]}x{topology[1]}"
  launch = run_program(
    topology, out, "--optimizers", "anon:decoupled", "--checkpoint-dir", str(directory)
  )
  return program_output(launch)["results"][0], load_params(out, RESUMED, STEPS)


@pytest.mark.slow
def test_checkpoint_of_two_processes_restores_on_other_topologies(reference, tmp_path):
  assert finalized_steps(reference["checkpoints"] / RESUMED) == [5, 10, 15, 20]
  uninterrupted = {
    t: load_params(reference[t]["out"], RESUMED, STEPS) for t in ((2, 4), (1, 8), (1, 1))
  }
  # On 2x4 itself a resumed run is bit for bit the uninterrupted one: see the fault test.
  for topology in ((1, 8), (1, 1), (4, 2)):
    row, params = resume_from_reference(reference, tmp_path, topology, 10)
    assert row["resumed_from_step"] == 10, topology
    assert row["state_sharded_like_params"] == [True] * topology[0], topology
    # The restored state is the 2x4 state; 10 more steps on this topology differ from 2x4's
    # own by round-off only, as do uninterrupted runs on this topology.
    chex.assert_trees_all_close(params, uninterrupted[(2, 4)], atol=ANON_TOL, rtol=ANON_TOL)
    if topology in uninterrupted:
      chex.assert_trees_all_close(params, uninterrupted[topology], atol=ANON_TOL, rtol=ANON_TOL)
  # Not vacuous: steps 10 -> 20 moved the parameters far beyond the tolerance.
  at_ten = load_params(reference[(2, 4)]["out"], RESUMED, HVADAM_HORIZON)
  assert max_moved(at_ten, uninterrupted[(2, 4)]) > 10 * ANON_TOL


def run_and_lose_a_process(directory, out, kill_at):
  """A 2x4 run of RESUMED whose process kill_at[0] SIGKILLs itself after step kill_at[1].

  Checks that the other process was ended by the runtime within a bound; returns process 0's
  stdout (empty of results if process 0 was the one killed).
  """
  crashed = run_program(
    (2, 4),
    out,
    "--optimizers",
    "anon:decoupled",
    "--checkpoint-dir",
    str(directory),
    kill_at=kill_at,
    expect_ok=False,
  )
  victim, survivor = kill_at[0], 1 - kill_at[0]
  summary = (crashed.returncodes, crashed.exit_seconds_after_first_failure)
  assert crashed.returncodes[victim] == -signal.SIGKILL, summary
  # The survivor stopped by itself (the runtime aborts it), not killed by the launcher.
  assert crashed.returncodes[survivor] not in (0, None), summary
  assert crashed.killed_by_launcher == [], summary
  assert crashed.exit_seconds_after_first_failure[survivor] < HEARTBEAT + 50, summary
  assert "JAX distributed service detected fatal errors" in crashed.stderr, crashed.stderr[-3000:]
  return crashed.stdout


@pytest.mark.slow
def test_lost_processes_leave_complete_checkpoints_and_resume_exactly(reference, tmp_path):
  directory, steps_dir = tmp_path / "ckpt", tmp_path / "ckpt" / RESUMED
  # 1. The coordinator (process 0) dies right after starting the asynchronous save of step 10.
  run_and_lose_a_process(directory, tmp_path / "first", (0, 10))
  # Step 10 never became a checkpoint: only its temporary directory is left.
  assert finalized_steps(steps_dir) == [5]
  assert sorted(p.name for p in steps_dir.iterdir() if not p.name.isdigit()) == [
    "10.orbax-checkpoint-tmp"
  ]
  # 2. Restarted, it resumes from step 5; then process 1 dies between checkpoints, 3 steps after
  # the save of step 10 started.
  stdout = run_and_lose_a_process(directory, tmp_path / "second", (1, 13))
  assert "resumed from the checkpoint of step 5" in stdout, stdout[-2000:]
  on_disk = finalized_steps(steps_dir)
  assert on_disk in ([5], [5, 10]), on_disk  # 10 unless its write was still running.
  # 3. Restarted again, it resumes from the latest complete checkpoint and ends bit for bit
  # where the uninterrupted run ended.
  restarted = run_program(
    (2, 4), tmp_path / "third", "--optimizers", "anon:decoupled", "--checkpoint-dir", str(directory)
  )
  row = program_output(restarted)["results"][0]
  assert row["resumed_from_step"] == on_disk[-1], (row, on_disk)
  assert row["latest_checkpoint"] == STEPS
  assert [p.name for p in steps_dir.iterdir() if not p.name.isdigit()] == []  # Cleaned up.
  assert_bitwise(
    load_params(tmp_path / "third", RESUMED, STEPS),
    load_params(reference[(2, 4)]["out"], RESUMED, STEPS),
  )


@pytest.mark.slow
def test_watchdog_ends_a_process_that_makes_no_progress(tmp_path):
  # Compiling the first step takes seconds, far longer than this timeout: to the watchdog that is
  # a process making no progress, as a peer stuck in a collective would be.
  cmd = [
    sys.executable,
    str(PROGRAM),
    "--single-process",
    "--devices-per-process",
    "1",
    *COMMON,
    "--step-timeout",
    "0.5",
  ]
  env = subprocess_env()
  completed = subprocess.run(
    cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT, check=False
  )
  assert completed.returncode == 3, completed.stderr[-3000:]
  assert "no training progress for" in completed.stderr, completed.stderr[-3000:]
  assert '"results"' not in completed.stdout
