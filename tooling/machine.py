"""The machine a result was measured on, and the timing and results helpers.

* :func:`cpu_model`, :func:`jax_num_threads`, :func:`machine_info`: what every results file records
  (machine, library versions, date, load, git commit, command line);
* :func:`interleaved` / :func:`summarise`: contenders timed round-robin over several rounds (the
  order rotates every round), medians and ratios of medians computed from samples of one process;
* :func:`write_results`: a results file with machine info and its Markdown table beside it, whose
  first line is :func:`source_line`; :func:`render_results` rewrites that table from a committed
  file; :func:`markdown_table` formats a table;
* :func:`parse_sizes` / :func:`size_label`: ``"1M,4M"`` command-line sizes.

On a machine shared with other jobs single timings are noisy; ratios from interleaved rounds in one
process are what the tables report.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import datetime
import importlib
import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np


def parse_sizes(text: str) -> list[int]:
  """Parses ``"1M,4M,16M"`` (K/M/G suffixes) into integers."""
  units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
  parts = [part.strip().upper() for part in text.split(",") if part.strip()]
  return [int(float(p[:-1]) * units[p[-1]]) if p[-1] in units else int(p) for p in parts]


def size_label(n: int) -> str:
  for unit, div in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
    if n >= div and n % div == 0:
      return f"{n // div}{unit}"
  return str(n)


def interleaved(
  contenders: Mapping[str, Callable[[], float]],
  rounds: int,
  *,
  warmup_rounds: int = 1,
  log: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
  """Runs ``contenders`` round-robin and returns their samples.

  Each contender is a callable that runs its own timed window and returns
  the seconds it measured (so a contender can exclude its own set-up, and
  block on its own results). The order rotates every round. ``warmup_rounds``
  are run first and discarded.
  """
  names = list(contenders)
  samples: dict[str, list[float]] = {n: [] for n in names}
  for r in range(warmup_rounds + rounds):
    shift = r % len(names)
    order = names[shift:] + names[:shift]
    for name in order:
      seconds = contenders[name]()
      if r >= warmup_rounds:
        samples[name].append(seconds)
    if log is not None and r >= warmup_rounds:
      log(
        f"  round {r - warmup_rounds + 1}/{rounds}: "
        + ", ".join(f"{n}={samples[n][-1] * 1e3:.2f}ms" for n in names)
      )
  return samples


def summarise(
  samples: Mapping[str, Sequence[float]],
  baselines: Sequence[str] = (),
  *,
  per: float = 1.0,
) -> dict[str, Any]:
  """Medians (divided by ``per``) and ratios of medians against baselines.

  Ratios are also given as the median of the per-round ratios, which cancels
  a slow round (another job on the shared machine) that hit all contenders.
  """
  out: dict[str, Any] = {}
  for name, values in samples.items():
    values = [v / per for v in values]
    entry: dict[str, Any] = {
      "median_s": statistics.median(values),
      "min_s": min(values),
      "max_s": max(values),
      "samples_s": values,
      "ratio_vs": {},
      "paired_ratio_vs": {},
    }
    for base in baselines:
      if base not in samples or base == name:
        continue
      base_values = [v / per for v in samples[base]]
      entry["ratio_vs"][base] = entry["median_s"] / statistics.median(base_values)
      paired = [a / b for a, b in zip(values, base_values)]
      entry["paired_ratio_vs"][base] = statistics.median(paired)
    out[name] = entry
  return out


def timer() -> float:
  return time.perf_counter()


def _git_commit() -> str | None:
  command, here = ["git", "rev-parse", "--short", "HEAD"], pathlib.Path(__file__).resolve().parent
  try:
    return subprocess.run(
      command, capture_output=True, text=True, cwd=here, check=True
    ).stdout.strip()
  except Exception:  # pylint: disable=broad-except
    return None


def cpu_model() -> str:
  """The CPU's model name, family, model and widest vector unit, from /proc/cpuinfo (a virtual
  machine may report only "AMD EPYC": the rest tells its generations apart); else `platform`'s."""
  try:
    fields = {}
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      key, _, value = line.partition(":")
      if not key.strip():
        break  # The first processor's block is enough.
      fields[key.strip()] = value.strip()
  except OSError:
    return platform.processor() or "unknown"
  name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
  if "flags" not in fields:  # Not x86 (an Arm /proc/cpuinfo has no model name or flags).
    return name
  flags = fields["flags"].split()
  vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
  family, model = fields.get("cpu family", "?"), fields.get("model", "?")
  return f"{name} (family {family}, model {model}, {vector})"


def jax_num_threads() -> int:
  """Threads XLA:CPU uses for intra-op parallelism (one per visible core)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def _command() -> str | None:
  """The command line that is running, as ``python -m benchmarks...``; None when unknown.

  Recorded only when the script is a module of this repository started with ``python -m``
  (``sys.argv[0]`` is then the module's file); a call from another program (pytest, a
  notebook) has its own ``sys.argv`` and records nothing.
  """
  script = pathlib.Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
  root = pathlib.Path(__file__).resolve().parents[1]
  if script is None or script.suffix != ".py" or not script.is_relative_to(root):
    return None
  parts = script.relative_to(root).with_suffix("").parts
  if parts[0] not in ("benchmarks", "experiments"):
    return None
  module = ".".join(parts[:-1] if parts[-1] == "__main__" else parts)
  return " ".join(["python", "-m", module, *map(shlex.quote, sys.argv[1:])])


def machine_info() -> dict[str, Any]:
  """Machine, library versions, date, load and command line, for every results file."""
  import jax
  import optax

  info: dict[str, Any] = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "platform": platform.platform(),
    "python": sys.version.split()[0],
    "cpu": cpu_model(),
    "cpu_count": os.cpu_count(),
    # Cores this process may run on (fewer under `taskset`).
    "cpus_usable": jax_num_threads(),
    "jax": jax.__version__,
    "jaxlib": getattr(__import__("jaxlib"), "__version__", None),
    "optax": optax.__version__,
    "numpy": np.__version__,
    "jax_backend": jax.default_backend(),
    "jax_devices": [str(d) for d in jax.devices()],
    "git_commit": _git_commit(),
    # 1, 5 and 15 minute load averages when the file is written (the 15-minute one spans
    # most of a long run): how busy the shared machine was.
    "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    "command": _command(),
    "note": "CPU timings on a machine shared with other jobs; compare ratios "
    "from the same file, not absolute times across files.",
  }
  for name in ("anon_optax", "flax", "torch"):  # Optional: None where not installed.
    try:
      info[name] = importlib.import_module(name).__version__
    except ImportError:
      info[name] = None
  if info["torch"]:
    info["torch_threads"] = importlib.import_module("torch").get_num_threads()
  return info


def write_json(name: str, payload: Mapping[str, Any], out_dir: str | os.PathLike) -> pathlib.Path:
  """Writes ``{"benchmark": name, "machine": ..., **payload}`` to ``<out_dir>/<name>.json``."""
  directory = pathlib.Path(out_dir)
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / f"{name}.json"
  data = {"benchmark": name, "machine": machine_info(), **payload}
  path.write_text(json.dumps(data, indent=1, sort_keys=False, default=_json_default) + "\n")
  return path


def write_results(
  name: str, payload: Mapping[str, Any], table: str, out_dir: str | os.PathLike
) -> pathlib.Path:
  """Writes ``<name>.json`` (as :func:`write_json`) and its Markdown table ``<name>.md`` beside it.

  The one way a result reaches the docs: the table file's first line names the CPU, the git
  commit, the date and the command that wrote it (:func:`source_line`), and the docs include the
  file as it is. Prints the table.

  Args:
    name: the results file's name, without suffix.
    payload: the numbers, written to the JSON file after the machine info.
    table: the Markdown the script renders from ``payload`` (tables and their captions).
    out_dir: the folder of both files.

  Returns:
    The path of the JSON file.
  """
  path = write_json(name, payload, out_dir)
  _write_markdown(path, json.loads(path.read_text()), table)
  print(f"{table}\n\nwrote {path} and {path.with_suffix('.md').name}", flush=True)
  return path


def render_results(
  json_path: str | os.PathLike, render: Callable[[dict[str, Any]], str], command: str | None = None
) -> pathlib.Path:
  """Rewrites the Markdown table beside a results file from the file alone, measuring nothing.

  The source line names the CPU, commit, date and command recorded in the file (``command``
  where the file records none). Returns the path of the Markdown file.
  """
  path = pathlib.Path(json_path)
  data = json.loads(path.read_text())
  return _write_markdown(path, data, render(data), command)


def source_line(data: Mapping[str, Any], json_name: str, command: str | None = None) -> str:
  """The first line of a results table: where, when and by what command its numbers were measured.

  Read from the file's ``machine`` info (or, in files written before :func:`write_results`, its
  ``hardware`` entry or top-level keys); what the file does not record is said to be unrecorded.
  """

  def recorded(*keys: str) -> Any:
    for place in (data.get("machine") or {}, data.get("hardware") or {}, data):
      for key in keys:
        if place.get(key) is not None:
          return place[key]
    return None

  cpu, cores = recorded("cpu"), recorded("cpus_usable", "cores", "cpu_count")
  commit, date = recorded("git_commit"), recorded("date")
  # A script's own "command" (one that joins several runs) before the machine info's.
  command = data.get("command") or recorded("command") or command
  return (
    f"Measured on {cpu or 'a CPU the file does not record'}"
    + (f" ({cores} core{'s' * (cores != 1)})" if cores else "")
    + f", commit {commit or 'not recorded'}, {str(date)[:10] if date else 'date not recorded'}, "
    + (f"by `{command}`" if command else "by a call from another program (not `python -m`)")
    + f"; numbers in `{json_name}`."
  )


def _write_markdown(
  path: pathlib.Path, data: Mapping[str, Any], table: str, command: str | None = None
) -> pathlib.Path:
  markdown = path.with_suffix(".md")
  markdown.write_text(f"{source_line(data, path.name, command)}\n\n{table.strip()}\n")
  return markdown


def _json_default(obj):
  if isinstance(obj, (np.floating, np.integer)):
    return obj.item()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  return str(obj)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub-Markdown table; floats get three decimals (three significant digits if tiny, huge)."""

  def fmt(x):
    if isinstance(x, float):
      if x == 0 or 1e-2 <= abs(x) < 1e5:
        return f"{x:.3f}"
      return f"{x:.3g}"
    return str(x)

  cells = [[fmt(c) for c in row] for row in rows]
  widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
  lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"]
  lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
  lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
  return "\n".join(lines)


def print_table(
  headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> str:
  """Prints and returns :func:`markdown_table`, after ``title`` if given."""
  text = (f"\n{title}\n\n" if title else "") + markdown_table(headers, rows)
  print(text, flush=True)
  return text
