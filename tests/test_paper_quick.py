"""experiments/paper: the quick mode writes every table, and it trains what the examples train.

The experiments keep their own copies of the examples' models, data, sweep program and tuned
constants (examples are self-contained files, not a library); these tests load the example files
by path and check that the copies agree with them.
"""

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

pytest.importorskip("flax")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from flax import nnx  # noqa: E402

from experiments import models  # noqa: E402
from experiments.paper import lm  # noqa: E402
from experiments.paper import report  # noqa: E402
from experiments.paper import run_all  # noqa: E402
from experiments.paper import vision  # noqa: E402

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
  """Imports examples/<name>.py as a module (without putting examples/ on sys.path)."""
  spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


char_gpt = load_example("char_gpt")
digits_cnn = load_example("digits_cnn")
gamma_sweep = load_example("gamma_sweep")


def test_constants_are_the_examples():
  assert vision.TUNED_LEARNING_RATES == {
    k: digits_cnn.TUNED_LEARNING_RATES[k] for k in ("anon", "adam", "sgd")
  }
  assert vision.SWEEP_GAMMAS == gamma_sweep.DEFAULT_GAMMAS
  assert vision.SWEEP_LRS == gamma_sweep.DEFAULT_LRS
  assert lm.TUNED_LEARNING_RATES == char_gpt.TUNED_LEARNING_RATES
  assert lm.MUON_ADAM_LEARNING_RATE == char_gpt.MUON_ADAM_LEARNING_RATE
  assert lm.WEIGHT_DECAY == char_gpt.WEIGHT_DECAY
  assert models.STDLIB_MODULES == char_gpt.STDLIB_MODULES


def _params(model):
  return jax.tree.leaves(nnx.state(model, nnx.Param))


@pytest.mark.parametrize(
  "make",
  [
    lambda m: m.CNN((8, 8, 1), width=4, hidden=8, rngs=nnx.Rngs(3)),
    lambda m: m.MLP(64, 8, rngs=nnx.Rngs(3)),
    lambda m: m.GPT(20, context=8, width=16, layers=2, heads=2, rngs=nnx.Rngs(3)),
  ],
  ids=["cnn", "mlp", "gpt"],
)
def test_models_are_the_examples(make):
  """Same modules, so the same initial parameters and outputs for a seed."""
  example = {"CNN": digits_cnn, "MLP": gamma_sweep, "GPT": char_gpt}
  ours = make(models)
  theirs = make(example[type(ours).__name__])
  for a, b in zip(_params(ours), _params(theirs), strict=True):
    np.testing.assert_array_equal(a, b)
  x = (
    jnp.arange(2 * 8, dtype=jnp.int32).reshape(2, 8) % 20
    if type(ours).__name__ == "GPT"
    else jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
  )
  np.testing.assert_array_equal(ours(x), theirs(x))


def test_data_are_the_examples():
  ours, theirs = models.load_digits(), digits_cnn.load_digits()
  for a, b in zip(ours[:4], theirs[:4]):
    np.testing.assert_array_equal(a, b)
  corpus, example_corpus = (
    models.load_corpus(max_chars=50_000),
    char_gpt.load_corpus(max_chars=50_000),
  )
  np.testing.assert_array_equal(corpus.train, example_corpus.train)
  assert corpus.chars == example_corpus.chars
  np.testing.assert_array_equal(
    models.sample_batches(corpus.train, 3, 2, 8, seed=1),
    char_gpt.sample_batches(corpus.train, 3, 2, 8, seed=1),
  )


@pytest.mark.slow
def test_adaptivity_sweep_is_the_examples():
  kw = dict(epochs=1, batch_size=64, hidden=8)
  ours = vision.sweep([0.0, 1.0], (1e-2,), (0,), **kw)
  theirs = gamma_sweep.sweep([0.0, 1.0], (1e-2,), (0,), **kw)
  for key in ("test_accuracy", "train_loss", "loss_curve"):
    np.testing.assert_array_equal(ours[key], theirs[key])


def test_every_verdict_statistic_has_a_phrase_for_every_value():
  for statistic in report.VERDICTS:
    for value in (-np.inf, -1.0, 0.0, 0.6, 1.0, 2.0, np.inf):
      if statistic == "idu_collapsed_cells" and value < 1:
        continue  # Only consulted when some cell collapsed.
      assert report.verdict(
        statistic, value, better="b", worse="w", within="", rows="r", count=1, cells="c"
      )
  assert report.verdict("rank_correlation", 1.0) == "the same order as the paper"
  assert report.verdict("rank_correlation", 0.99) == "an order close to the paper's"
  assert report.verdict("rank_correlation", 0.0) == "an order unlike the paper's"
  assert report.verdict("advantage_in_spread", 1.0, better="b", worse="w", within="") == (
    "within the seed spread"
  )
  assert report.verdict("claim_predicts_negative", -0.1) == "agrees"
  assert report.verdict("claim_predicts_negative", 0.0) == "disagrees"


def test_results_page_renders_from_the_saved_json(tmp_path):
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
@pytest.mark.parametrize("name", ["anon", "adamw", "lion", "muon"])
def test_traced_lr_optimizer_matches_char_gpt(name):
  """lm.make_optimizer (traced peak lr) == char_gpt.make_optimizer at a concrete lr."""
  model = char_gpt.GPT(20, context=8, width=16, layers=1, heads=2, rngs=nnx.Rngs(0))
  _, params = nnx.split(model, nnx.Param)
  steps, lr = 20, char_gpt.TUNED_LEARNING_RATES[name]
  ours = lm.make_optimizer(name, jnp.float32(lr), steps, gamma=1.1)
  theirs = char_gpt.make_optimizer(name, lr, steps, gamma=1.1)
  s_ours, s_theirs = ours.init(params), theirs.init(params)
  update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
  p_ours = p_theirs = params
  key = jax.random.key(1)
  for _ in range(4):  # Past warmup (1 step) into the cosine part.
    key, sub = jax.random.split(key)
    leaves, treedef = jax.tree.flatten(params)
    grads = jax.tree.unflatten(
      treedef,
      [jax.random.normal(k, x.shape) for k, x in zip(jax.random.split(sub, len(leaves)), leaves)],
    )
    u_ours, s_ours = update_ours(grads, s_ours, p_ours)
    u_theirs, s_theirs = update_theirs(grads, s_theirs, p_theirs)
    for a, b in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_theirs)):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-8)
    p_ours = optax.apply_updates(p_ours, u_ours)
    p_theirs = optax.apply_updates(p_theirs, u_theirs)


@pytest.mark.slow
def test_quick_mode_writes_every_table(tmp_path):
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
  assert md.count("|---|") >= 4  # One markdown table per part.
  for fig in ("paper_lm.png", "paper_vision.png", "paper_idu.png", "paper_gamma.png"):
    assert (docs / "figures" / fig).stat().st_size > 1000
