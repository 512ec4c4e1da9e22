"""experiments/paper: the committed page and the quick mode."""

import json
import pathlib

import pytest

from experiments.paper import report
from experiments.paper import run_all


def test_results_page_renders_from_the_saved_json(tmp_path):
  """docs/RESULTS.md is report.write of the committed experiments/paper/results/paper.json."""
  saved = pathlib.Path(run_all.HERE) / "results" / "paper.json"
  results = json.loads(saved.read_text())
  md = report.write(results, tmp_path / "RESULTS.md", tmp_path / "figures", saved)
  page = md.read_text()
  assert "`python -m experiments.paper.run_all`" in page
  assert "](figures/paper_lm.png)" in page
  # The committed page is this rendering with the figures in experiments/paper/figures.
  committed = (pathlib.Path(run_all.ROOT) / "docs" / "RESULTS.md").read_text()
  assert committed == page.replace("](figures/", "](../experiments/paper/figures/")


@pytest.mark.slow
def test_quick_mode_writes_every_table(tmp_path):
  """run_all --quick writes every part's rows, the four tables and the four figures."""
  docs, out = tmp_path / "docs", tmp_path / "paper_quick.json"
  run_all.main(
    [
      "--quick",
      "--results-md",
      str(docs / "RESULTS.md"),
      "--figures-dir",
      str(docs / "figures"),
      "--json",
      str(out),
    ]
  )

  results = json.loads(out.read_text())
  assert results["mode"] == "quick"
  assert {"lm", "vision", "idu", "gamma"} <= set(results)
  labels = [r["label"] for r in results["lm"]["rows"]]
  assert labels == [
    "anon (gamma=1)",
    "anon (gamma=1.1)",
    "anon (gamma=1.15)",
    "adamw",
    "lion",
    "muon",
  ]
  assert all(len(r["learning_rates"]) == 3 for r in results["lm"]["rows"])
  assert [r["optimizer"] for r in results["vision"]["rows"]] == ["anon", "adam", "sgd"]
  for idu in results["idu"]["ablations"]:
    assert len(idu["cells"]) == len(idu["beta3s"]) * len(idu["refresh_bases"])
  assert [r["gamma"] for r in results["gamma"]["rows"]] == results["gamma"]["gammas"]
  for part in ("lm", "vision", "idu", "gamma", "total"):
    assert results["seconds"][part] > 0

  md = (docs / "RESULTS.md").read_text()
  for heading in (
    "## 1. Language model",
    "## 2. Vision",
    "## 3. IDU ablation",
    "## 4. Adaptivity curve",
  ):
    assert heading in md
  assert "python -m experiments.paper.run_all --quick" in md
  assert "2.927" in md and "92.42" in md  # The paper's numbers sit beside ours.
  assert md.count("\n|--") >= 4  # One markdown table per part (padded: |------|...).
  for fig in ("paper_lm.png", "paper_vision.png", "paper_idu.png", "paper_gamma.png"):
    assert (docs / "figures" / fig).stat().st_size > 1000
