"""benchmarks/paper: the quick mode writes every table, and its LM optimizers match the example's."""

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

pytest.importorskip("flax")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from benchmarks.paper import lm  # noqa: E402
from benchmarks.paper import run_all  # noqa: E402
import char_gpt  # noqa: E402  (on sys.path via benchmarks.paper._paths)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["anon", "adamw", "lion", "muon"])
def test_traced_lr_optimizer_matches_char_gpt(name):
  """lm.make_optimizer (traced peak lr) == char_gpt.make_optimizer at a concrete lr."""
  from flax import nnx
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
    grads = jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape) for k, x in
                                         zip(jax.random.split(sub, len(leaves)), leaves)])
    u_ours, s_ours = update_ours(grads, s_ours, p_ours)
    u_theirs, s_theirs = update_theirs(grads, s_theirs, p_theirs)
    for a, b in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_theirs)):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-8)
    p_ours = optax.apply_updates(p_ours, u_ours)
    p_theirs = optax.apply_updates(p_theirs, u_theirs)


@pytest.mark.slow
def test_quick_mode_writes_every_table(tmp_path):
  docs, out = tmp_path / "docs", tmp_path / "paper_quick.json"
  run_all.main(["--quick", "--docs-dir", str(docs), "--json", str(out)])

  results = json.loads(out.read_text())
  assert results["mode"] == "quick"
  assert {"lm", "vision", "idu", "gamma"} <= set(results)
  labels = [r["label"] for r in results["lm"]["rows"]]
  assert labels == ["anon (gamma=1)", "anon (gamma=1.1)", "anon (gamma=1.15)", "adamw", "lion",
                    "muon"]
  assert all(len(r["learning_rates"]) == 3 for r in results["lm"]["rows"])
  assert [r["optimizer"] for r in results["vision"]["rows"]] == ["anon", "adam", "sgd"]
  for idu in results["idu"]["ablations"]:
    assert len(idu["cells"]) == len(idu["beta3s"]) * len(idu["refresh_bases"])
  assert [r["gamma"] for r in results["gamma"]["rows"]] == results["gamma"]["gammas"]
  for part in ("lm", "vision", "idu", "gamma", "total"):
    assert results["seconds"][part] > 0

  md = (docs / "RESULTS.md").read_text()
  for heading in ("## 1. Language model", "## 2. Vision", "## 3. IDU ablation",
                  "## 4. Adaptivity curve"):
    assert heading in md
  assert "python -m benchmarks.paper.run_all --quick" in md
  assert "2.927" in md and "92.42" in md  # The paper's numbers sit beside ours.
  assert md.count("|---|") >= 4  # One markdown table per part.
  for fig in ("paper_lm.png", "paper_vision.png", "paper_idu.png", "paper_gamma.png"):
    assert (docs / "figures" / fig).stat().st_size > 1000
