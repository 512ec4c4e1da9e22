"""Every table quoted in README.md and docs/ matches the results file it is rendered from.

The generated regions and their results files are listed in docs/tables.py; after rerunning an
experiment, `python -m docs.tables --write` updates the text.
"""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
  results = json.loads((ROOT / tables.TABLES[name].results).read_text())
  text = (
    "before\n<!-- generated: digits by `python -m docs.tables --write` -->\n"
    + tables.render(name)
    + "<!-- end generated -->\nafter\n"
  )
  page = tmp_path / "page.md"
  page.write_text(text)
  assert tables.stale_regions(page) == []

  results["results"][0]["test_accuracy"] = 0.5
  (tmp_path / "results.json").write_text(json.dumps(results))
  monkeypatch.setattr(tables, "ROOT", tmp_path)
  monkeypatch.setitem(
    tables.TABLES, name, tables.Table("results.json", "edited", tables.TABLES[name].render)
  )
  assert tables.stale_regions(page) == [name]
  rewritten = tables.regenerate(text)
  assert "| 0.5000 |" in rewritten
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
