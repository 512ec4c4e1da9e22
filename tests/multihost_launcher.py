"""Starts N processes of a JAX program on this machine, optionally killing one mid-run.

A stand-in for ``srun``/``mpirun`` on one machine: every process runs the same program with
``--coordinator localhost:PORT --num-processes N --process-id I`` appended and ``JAX_PLATFORMS=cpu``
(the program chooses its own number of CPU devices). ``tests/test_multihost.py`` runs
``examples/multihost_training.py`` through :func:`launch`; by hand::

    python tests/multihost_launcher.py --processes 2 \\
        examples/multihost_training.py --devices-per-process 4 --quick

Fault injection (``--kill-at PROCESS:STEP``): every process then runs the program through this
file, which imports it and passes its ``main`` an ``on_step`` callback; process PROCESS SIGKILLs
itself after STEP, like a lost host (no cleanup; after a save step, while the asynchronous write is
in flight). If a process fails, the others get ``grace`` seconds to notice through the distributed
runtime and exit by themselves; any still running then is killed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time


@dataclasses.dataclass
class Launch:
  """What happened to the processes of one launch."""

  returncodes: list[int]  # Negative: killed by that signal.
  stdout: str  # Process 0's.
  stderr: str  # Every process's, each line prefixed with "[process I] ".
  killed_by_launcher: list[int]  # Still running `grace` seconds after the first failure.
  exit_seconds_after_first_failure: list[float] | None  # None if none failed.

  @property
  def ok(self) -> bool:
    return all(code == 0 for code in self.returncodes)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def launch(
  program: str,
  args: list[str],
  num_processes: int,
  *,
  kill_at: tuple[int, int] | None = None,
  grace: float = 120.0,
  timeout: float | None = None,
  env: dict[str, str] | None = None,
  cwd: str | None = None,
  echo: bool = False,
) -> Launch:
  """Runs ``python program *args`` as ``num_processes`` processes and waits for all of them.

  With one process no coordinator flags are appended. ``echo`` also relays process 0's stdout and
  every stderr line as they come. Raises ``TimeoutError`` (after killing every process) if they
  are not all done after ``timeout`` seconds.
  """
  env = dict(os.environ if env is None else env, JAX_PLATFORMS="cpu")
  port = free_port()
  procs = []
  for i in range(num_processes):
    inject = [__file__, "--worker-kill-at", f"{kill_at[0]}:{kill_at[1]}"] if kill_at else []
    distributed = ["--coordinator", f"localhost:{port}", "--num-processes", str(num_processes)]
    flags = [*distributed, "--process-id", str(i)] if num_processes > 1 else []
    procs.append(
      subprocess.Popen(
        [sys.executable, "-u", *inject, program, *args, *flags],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE if i == 0 else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  stdout: list[str] = []
  stderr: list[str] = []

  def pump(stream, lines, prefix, sink):
    for line in stream:
      lines.append(prefix + line)
      if echo:
        sink.write(prefix + line)
        sink.flush()

  prefix = "[process {}] ".format
  pumps = [
    threading.Thread(target=pump, args=(p.stderr, stderr, prefix(i), sys.stderr), daemon=True)
    for i, p in enumerate(procs)
  ]
  pumps.append(threading.Thread(target=pump, args=(procs[0].stdout, stdout, "", sys.stdout)))
  for t in pumps:
    t.start()

  start = time.monotonic()
  exit_times: dict[int, float] = {}
  killed_by_launcher: list[int] = []
  first_failure = None
  try:
    while len(exit_times) < num_processes:
      now = time.monotonic()
      if timeout is not None and now - start > timeout:
        raise TimeoutError(f"{num_processes} processes still running after {timeout:g} s")
      for i, p in enumerate(procs):
        if i not in exit_times and p.poll() is not None:
          exit_times[i] = now
          if p.returncode != 0 and first_failure is None:
            first_failure = now
      if first_failure is not None and now - first_failure > grace:
        for i, p in enumerate(procs):
          if i not in exit_times:
            p.kill()
            p.wait()
            killed_by_launcher.append(i)
            exit_times[i] = time.monotonic()
      time.sleep(0.05)
  except BaseException:  # A timeout, or Ctrl-C: leave no process behind.
    for p in procs:
      p.kill()
      p.wait()
    raise
  finally:
    for t in pumps:
      t.join(timeout=5)
  return Launch(
    returncodes=[p.returncode for p in procs],
    stdout="".join(stdout),
    stderr="".join(stderr),
    killed_by_launcher=killed_by_launcher,
    exit_seconds_after_first_failure=None
    if first_failure is None
    else [round(exit_times[i] - first_failure, 2) for i in range(num_processes)],
  )


def describe(result: Launch) -> str:
  def one(code):
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"

  return "; ".join(f"process {i}: {one(c)}" for i, c in enumerate(result.returncodes))


def run_with_kill(process: int, step: int, program: str, argv: list[str]) -> None:
  """Runs ``program``'s ``main(argv)``; process ``process`` SIGKILLs itself after ``step``."""
  spec = importlib.util.spec_from_file_location("program", program)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)

  def on_step(label: str, done: int) -> None:
    import jax  # pylint: disable=import-outside-toplevel  # The program imported it already.

    if (jax.process_index(), done) == (process, step):
      sys.stderr.write(f"process {process}: --kill-at: SIGKILL after {label} step {done}\n")
      sys.stderr.flush()
      os.kill(os.getpid(), signal.SIGKILL)

  module.main(argv, on_step=on_step)


def parse_kill_at(text: str) -> tuple[int, int]:
  process, step = (int(v) for v in text.split(":"))
  if process < 0 or step < 1:
    raise argparse.ArgumentTypeError(f"{text!r}: PROCESS must be >= 0 and STEP >= 1")
  return process, step


def main() -> None:
  if sys.argv[1:2] == ["--worker-kill-at"]:  # A process started by launch(kill_at=...).
    process, step = parse_kill_at(sys.argv[2])
    run_with_kill(process, step, sys.argv[3], sys.argv[4:])
    return
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--processes", type=int, default=2, metavar="N")
  parser.add_argument("--kill-at", type=parse_kill_at, default=None, metavar="PROCESS:STEP")
  parser.add_argument(
    "--grace", type=float, default=120.0, help="seconds the others get after a failure"
  )
  parser.add_argument("program")
  parser.add_argument("args", nargs=argparse.REMAINDER, help="the program's own flags")
  args = parser.parse_args()
  result = launch(
    args.program, args.args, args.processes, kill_at=args.kill_at, grace=args.grace, echo=True
  )
  if not result.ok:
    sys.stderr.write(
      f"error: {describe(result)}; killed by the launcher: {result.killed_by_launcher}\n"
    )
    sys.exit(1)


if __name__ == "__main__":
  main()
