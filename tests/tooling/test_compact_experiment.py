"""experiments/compact/run.py: the summary's within-the-seed-spread verdict (no training)."""

import math

from experiments.compact import run


def _runs(metric, values_by_config, state_bytes=(300, 200, 150)):
  return {
    name: [
      {
        "seed": seed,
        metric: value,
        "train_loss": 0.1,
        "seconds": 1.0,
        "wall_seconds": 2.0,
        "param_bytes": 100,
        "state_bytes": size,
        "state_dtypes": {"mu": "float32", "nu": "float32", "precond": "float32"},
      }
      for seed, value in enumerate(values)
    ]
    for (name, values), size in zip(values_by_config.items(), state_bytes)
  }


def test_within_and_outside_the_seed_spread():
  model = run.MODELS["digits"]
  runs = _runs(
    "test_accuracy",
    {"default": [0.97, 0.98, 0.99], "compact": [0.975, 0.985, 0.995], "compact-all": [0.9] * 3},
  )
  default, compact, compact_all = run.summarize(model, runs)
  assert "diff_vs_default" not in default
  assert math.isclose(default["std"], math.sqrt(2 / 3) * 0.01)
  assert math.isclose(compact["diff_vs_default"], 0.005)
  assert math.isclose(compact["spread_of_difference"], math.hypot(default["std"], compact["std"]))
  assert compact["within_seed_spread"] and run.verdict(compact) == "within the seed spread"
  assert all(math.isclose(d, 0.005) for d in compact["paired_diff_per_seed"])
  assert not compact_all["within_seed_spread"]
  assert run.verdict(compact_all) == "worse by more than the seed spread"
  assert [r["state_vs_adam"] for r in (default, compact, compact_all)] == [1.5, 1.0, 0.75]
  # Equal train losses: no difference, no spread, within.
  assert compact_all["train_loss_diff_vs_default"] == 0.0
  assert run.verdict(compact_all, "train_loss_") == "within the seed spread"


def test_a_spread_widened_by_one_bad_seed_is_named():
  runs = _runs("test_accuracy", {"default": [0.98, 0.99, 0.985], "compact": [0.98, 0.9, 0.985]})
  _, compact = run.summarize(run.MODELS["digits"], runs)
  assert compact["within_seed_spread"] and not compact["within_default_spread"]
  assert compact["worst_seed"] == 1 and compact["seeds_beyond_default_range"] == [1]
  assert run.verdict(compact) == "within the seed spread only through its own wider spread"
  assert compact["verdict"] == run.verdict(compact)


def test_a_lower_loss_is_better():
  runs = _runs("val_loss", {"default": [2.0, 2.0, 2.0], "compact": [1.5, 1.5, 1.5]})
  _, compact = run.summarize(run.MODELS["char_gpt"], runs)
  assert run.verdict(compact) == "better by more than the seed spread"
