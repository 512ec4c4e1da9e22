"""Every table quoted in README.md and docs/ matches the results file it is rendered from.

The generated regions and their results files are listed in docs/tables.py; after rerunning an
experiment, `python -m docs.tables --write` updates the text. Checked here: every generated region
is what its renderer makes of the committed results file(s) today; every registered table is
quoted somewhere and its results files are committed; an edited number makes a region stale and
`--write` repairs it; the renderers write tables of numbers and one fixed source line, no prose.
"""

import importlib.util
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load_tables_module():
  # docs/ is not a package that gets installed; load the module from its file.
  spec = importlib.util.spec_from_file_location(
    "anon_optax_docs_tables", ROOT / "docs" / "tables.py"
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


tables = _load_tables_module()
FILES_WITH_REGIONS = [p for p in tables.markdown_files() if tables.REGION.search(p.read_text())]


def test_the_readme_quotes_generated_tables():
  assert ROOT / "README.md" in FILES_WITH_REGIONS


@pytest.mark.parametrize("path", FILES_WITH_REGIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_tables_match_their_results(path):
  stale = tables.stale_regions(path)
  assert not stale, (
    f"{path.relative_to(ROOT)}: regions {stale} differ from their results "
    "files; run `python -m docs.tables --write`"
  )


@pytest.mark.parametrize("name", sorted(tables.TABLES))
def test_every_table_is_quoted_and_its_results_file_is_committed(name):
  for path, _ in tables.TABLES[name].sources():
    assert (ROOT / path).is_file(), path
  quoted = [
    p
    for p in FILES_WITH_REGIONS
    if any(m["name"] == name for m in tables.REGION.finditer(p.read_text()))
  ]
  assert quoted, f"table {name!r} is registered in docs/tables.py but quoted nowhere"


def test_a_changed_number_is_detected(tmp_path, monkeypatch):
  """Editing one result in the JSON makes the quoted region stale, and --write repairs it."""
  name = "digits"
  results = json.loads((ROOT / tables.TABLES[name].results[0]).read_text())
  text = (
    "before\n<!-- generated: digits by `python -m docs.tables --write` -->\n"
    + tables.render(name)
    + "<!-- end generated -->\nafter\n"
  )
  page = tmp_path / "page.md"
  page.write_text(text)
  assert tables.stale_regions(page) == []

  results["results"][0]["test_accuracy_mean"] = 0.5  # experiments/digits_comparison.py --json
  (tmp_path / "results.json").write_text(json.dumps(results))
  monkeypatch.setattr(tables, "ROOT", tmp_path)
  monkeypatch.setitem(tables.COMMANDS, "results.json", "edited")
  monkeypatch.setitem(
    tables.TABLES, name, tables.Table(("results.json",), tables.TABLES[name].render)
  )
  assert tables.stale_regions(page) == [name]
  rewritten = tables.regenerate(text)
  assert "| 0.5000 " in rewritten
  assert rewritten.startswith("before\n") and rewritten.endswith("after\n")


def test_workload_table_matches_its_results_file():
  """docs/workloads.md quotes the table `python -m experiments.workloads.run` rendered into its
  results file (the runner writes both; `--render` redraws the page from the JSON)."""
  results = json.loads((ROOT / "experiments/workloads/results/workloads.json").read_text())
  page = (ROOT / "docs" / "workloads.md").read_text()
  start, end = "<!-- workloads-table:start -->", "<!-- workloads-table:end -->"
  quoted = page[page.index(start) + len(start) : page.index(end)]
  assert quoted.strip() == results["table"].strip(), (
    "docs/workloads.md differs from its results JSON; redraw it with "
    "`python -m experiments.workloads.run --render`"
  )


def _step_entry(median_ms, ratios, paired, gbps=10.0):
  return {
    "median_s": median_ms / 1e3,
    "ratio_vs": ratios,
    "paired_ratio_vs": paired,
    "achieved_gbps": gbps,
    "fraction_of_copy_bandwidth": gbps / 50,
  }


def _step_time_results(per_step, label="4M", backend="cpu"):
  spike = {
    "normal_step_t1001": {"median_s": 0.01, "samples_s": [0.01] * 3, "ratio_vs": {}},
    "refresh_step_t1024": {
      "median_s": 0.02,
      "samples_s": [0.02] * 3,
      "ratio_vs": {"normal_step_t1001": 2.0},
      "paired_ratio_vs": {"normal_step_t1001": 2.1},
    },
  }
  return {
    "machine": {"git_commit": "abc1234", "jax_backend": backend, "load_average": [1.5, 2, 3]},
    "config": {"jax_threads": 2},
    "results": [
      {
        "num_params_label": label,
        "num_leaves": 40,
        "rounds": 3,
        "window_steps": 64,
        "timed_steps": [1065, 1256],
        "refresh_steps_in_timed_windows": [],
        "per_step": per_step,
        "refresh_spike": spike,
      }
    ],
  }


def test_step_time_tables_follow_the_contenders_of_the_results_file():
  """The regenerated step_time.json may hold other contenders (no torch, compact dtypes):
  every row is rendered, and each compares with its own floor."""
  per_step = {
    "anon": _step_entry(3.3, {"adam": 1.1}, {"floor": 1.05, "floor_exact": 1.2, "adam": 1.1}),
    "anon_exact": _step_entry(3.0, {"adam": 1.0}, {"floor": 0.9, "floor_exact": 1.02}),
    "floor": _step_entry(3.1, {"adam": 1.03}, {"floor_exact": 1.1}),
    "floor_exact": _step_entry(2.8, {"adam": 0.93}, {"floor": 0.9}),
    "adam": _step_entry(3.0, {}, {"floor": 0.97}),
    "lion": _step_entry(2.5, {"adam": 0.83}, {"floor": 0.8}),
    "anon_compact": _step_entry(2.9, {"adam": 0.97}, {"floor": 0.94}),
    "hvadam": {**_step_entry(30.0, {"adam": 10.0}, {"floor": 9.7}), "achieved_gbps": None},
    "copy": _step_entry(0.6, {"adam": 0.2}, {"floor": 0.19}, gbps=50.0),
  }
  text = tables.render_step_time(_step_time_results(per_step))
  rows = {cells[1]: cells for cells in _cells(text)}
  assert rows["anon"][:5] == ["4M / 40", "anon", "3.300", "1.05", "1.10"]
  assert rows["anon (exact=True)"][3] == "1.02 (vs floor_exact)"
  assert rows["floor_exact"][2:4] == ["2.800", "1.00"]
  assert rows["`anon_compact`"][3] == "0.94"
  assert "torch" not in text
  assert list(rows)[-1] == "copy (streaming, in place)"

  files = {
    tables.STEP_TIME: _step_time_results(per_step),
    tables.STEP_TIME_LARGE: _step_time_results({"anon": per_step["anon"]}, label="64M"),
    tables.VMAPPED_SWEEP: {
      "config": {"gammas": [0, 1]},
      "results": {"loop": {"paired_ratio_run_s": 0.45}, "scan": {"paired_ratio_run_s": 0.55}},
    },
    tables.COMPILE_TIME: {"eager": {"anon": {"paired_ratio_vs": {"adam": 0.31}}}},
  }
  targets = {cells[0]: cells[1:] for cells in _cells(tables.render_targets(files))}
  assert targets["`anon` / `optax.adam`"] == ["1.10", "<= 1.00"]
  assert targets["`anon` / `optax.adam`, 64M"] == ["-", "<= 1.00"]  # No adam in that file.
  assert targets["`anon` / `floor_exact`, paired"] == ["1.20", "<= 1.25"]
  assert targets["`anon_exact` / `floor_exact`, paired"] == ["1.02", "<= 1.10"]
  assert targets["`anon` / `floor` (its guarded floor), paired"] == ["1.05", "-"]
  assert targets["`anon` / PyTorch per-tensor (2 threads)"] == ["-", "-"]
  assert targets["refresh step / normal step"] == ["2.00", "<= 3"]
  assert targets["2-gamma vmapped sweep / 2 sequential runs (scan, paired)"] == ["0.55", "<= 0.5"]
  assert targets["GPU, 64M: `anon` / `optax.adam`"] == ["-", "<= 1.15"]
  eager = "un-jitted `anon` update / `optax.adam`'s, 4 small leaves, paired"
  assert targets[eager] == ["0.31", "<= 3"]


def _cells(markdown):
  """The body rows of a markdown table, as lists of stripped cells."""
  lines = [line for line in markdown.splitlines() if line.startswith("|")][2:]
  return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_regions_hold_tables_of_numbers_and_one_source_line():
  """No renderer writes prose: a region is Markdown tables, blank lines and the source line that
  names each results file and the command that writes it (from the registry, not the file)."""
  for name, entry in tables.TABLES.items():
    lines = tables.render(name).rstrip("\n").split("\n")
    source = lines.pop()
    assert all(line == "" or line.startswith("|") for line in lines), name
    for path, command in entry.sources():
      # `` (CPU, commit)`` follows the path where the results file records its machine (a CPU
      # name may hold parentheses: "Intel(R) Xeon(R)").
      machine = r"( \((?:[^()]|\([^()]*\))*\))?"
      cited = re.escape(f"`{path}`") + machine + re.escape(f", written by `{command}`")
      assert re.search(cited, source), name


def test_workload_order_matches_the_workload_suite():
  # docs/tables.py spells the suite's order out so that it loads without the experiments
  # package; this keeps the two from drifting apart.
  from experiments import workloads

  assert tables.WORKLOAD_ORDER == workloads.WORKLOADS
