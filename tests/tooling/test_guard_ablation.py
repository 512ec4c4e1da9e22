"""experiments/guard/ablation.py's bookkeeping, with a stand-in for the CNN training run."""

import json

import pytest

from experiments.guard import ablation
from experiments.paper import vision


class FakeDigits:
  """Returns an accuracy made of the run's arguments instead of training the CNN."""

  def __init__(self, **kwargs):
    del kwargs

  def run(self, name, seed, *, lr, factor, beta3, refresh_base):
    assert name == "anon"
    accuracy = lr + beta3 / 10 + refresh_base / 100 + seed / 1000 + (factor == float("inf")) / 1e4
    return dict(test_accuracy=accuracy, train_loss=0.1, loss_curve=[1.0, 0.5])


@pytest.fixture(autouse=True)
def fake_training(monkeypatch):
  monkeypatch.setattr(vision, "DigitsRunner", FakeDigits)
  monkeypatch.setattr(ablation.datasets, "load_digits", lambda: None)


def _accuracies(results):
  return {
    (rule, a["learning_rate"], c["refresh_base"], c["beta3"]): c["test_accuracy_per_seed"]
    for rule, r in results["rules"].items()
    for a in r["ablations"]
    for c in a["cells"]
  }


def test_append_gives_what_one_run_over_both_rates_gives(tmp_path):
  """Two runs joined with --append write what one run over both learning rates writes."""
  both, parts = tmp_path / "both.json", tmp_path / "parts.json"
  common = ["--seeds", "2", "--beta3s", "0.1,0.9"]
  whole = ablation.main([*common, "--lrs", "0.01,0.0033", "--json", str(both)])
  ablation.main([*common, "--lrs", "0.01", "--json", str(parts)])
  merged = ablation.main([*common, "--lrs", "0.0033", "--json", str(parts), "--append"])
  written = json.loads(parts.read_text())
  assert {k: v for k, v in written.items() if k not in ("benchmark", "machine")} == merged
  assert parts.with_suffix(".md").read_text().startswith("Measured on ")
  assert _accuracies(merged) == _accuracies(whole)
  assert [a["learning_rate"] for a in merged["rules"]["exact"]["ablations"]] == [0.01, 0.0033]
  assert merged["command"] == (
    "python -m experiments.guard.ablation --seeds 2 --lrs 0.01 --beta3s 0.1,0.9; "
    "python -m experiments.guard.ablation --seeds 2 --lrs 0.0033 --beta3s 0.1,0.9 --append"
  )


def test_append_refuses_a_file_with_other_seeds(tmp_path):
  """--append onto a file run with other seeds is a command-line error."""
  path = tmp_path / "a.json"
  ablation.main(["--seeds", "1", "--lrs", "0.01", "--beta3s", "0.1", "--json", str(path)])
  with pytest.raises(SystemExit):
    ablation.main(
      ["--seeds", "2", "--lrs", "0.0033", "--beta3s", "0.1", "--json", str(path), "--append"]
    )
