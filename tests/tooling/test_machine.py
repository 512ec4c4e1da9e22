"""tooling.machine's results files: a JSON file and its Markdown table, whose first line says where,
when and by what command the numbers were measured."""

import json
import pathlib

from tooling import machine


def _render(results):
  return machine.markdown_table(["x", "y"], [[r["x"], r["y"]] for r in results["rows"]])


def test_write_results_writes_the_table_beside_the_json(tmp_path):
  payload = {"rows": [{"x": "a", "y": 1.5}]}
  path = machine.write_results("demo", payload, _render(payload), tmp_path)
  data = json.loads(path.read_text())
  assert data["benchmark"] == "demo" and data["rows"] == payload["rows"]
  source, blank, *table = (tmp_path / "demo.md").read_text().splitlines()
  info = data["machine"]
  assert source.startswith(f"Measured on {info['cpu']} ({info['cpus_usable']} core")
  assert f"commit {info['git_commit']}, {info['date'][:10]}" in source
  assert source.endswith("numbers in `demo.json`.") and not blank
  assert table == ["| x | y     |", "|---|-------|", "| a | 1.500 |"]


def test_render_results_names_what_the_file_records_not_today(tmp_path):
  """A file written before write_results: its own keys, and what it does not record said so."""
  path = tmp_path / "old.json"
  old = {"command": "python -m experiments.old --seeds 3", "date": "2026-11-25 13:13 UTC"}
  path.write_text(json.dumps({**old, "hardware": {"cores": 2}, "rows": [{"x": "b", "y": 2}]}))
  markdown = machine.render_results(path, _render)
  source = markdown.read_text().splitlines()[0]
  assert source == (
    "Measured on a CPU the file does not record (2 cores), commit not recorded, 2026-11-25, "
    "by `python -m experiments.old --seeds 3`; numbers in `old.json`."
  )
  # A command given for a file that records none.
  path.write_text(json.dumps({"rows": []}))
  source = machine.render_results(path, _render, "python -m x").read_text().splitlines()[0]
  assert "date not recorded, by `python -m x`" in source


def test_every_committed_results_file_has_its_table():
  """Every results file under benchmarks/results/ has its Markdown table beside it, and every
  table beside a results file starts with its source line."""
  root = pathlib.Path(__file__).resolve().parents[2]
  benchmarks = sorted((root / "benchmarks" / "results").glob("*.json"))
  assert benchmarks and all(path.with_suffix(".md").is_file() for path in benchmarks)
  for table in [*root.glob("benchmarks/results/*.md"), *root.glob("experiments/*/results/*.md")]:
    if table.with_suffix(".json").is_file():
      assert table.read_text().startswith("Measured on "), table
