"""experiments/paper: the quick mode writes every part, its tables and its figures."""

import json

import pytest

from experiments.paper import run_all


@pytest.mark.slow
def test_quick_mode_writes_every_table(tmp_path):
  """run_all --quick writes every part's rows, the four tables and the four figures."""
  out, figures = tmp_path / "paper_quick.json", tmp_path / "figures"
  run_all.main(["--quick", "--json", str(out), "--figures-dir", str(figures)])

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

  md = (tmp_path / "paper_quick.md").read_text()
  assert md.startswith("Measured on ")
  for part in ("lm", "vision", "idu", "gamma"):  # What docs/RESULTS.md includes, part by part.
    assert f"<!-- {part} -->\n" in md and f"<!-- /{part} -->" in md
    assert (figures / f"paper_{part}.png").stat().st_size > 1000
  assert "2.927" in md and "92.42" in md  # The paper's numbers sit beside ours.
