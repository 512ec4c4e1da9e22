"""A small character-level GPT on the Python standard library's own source: Anon against AdamW.

Every optimizer trains the same initial model on the same batches with the same schedule shape
(5% linear warmup, cosine decay to 10% of the peak) and decoupled weight decay 0.1, at its own
peak learning rate, tuned once (``TUNED_LEARNING_RATES``); Lion and Muon (``optax.contrib.muon``)
can join them. The corpus, on every machine with Python: the ``STDLIB_MODULES`` of this Python's
standard library, joined; the first 90% of the characters train, the last 10% validate (the text
differs a little between Python versions). ``--text PATH`` trains on any UTF-8 file instead.

    python examples/char_gpt.py                          # a few minutes on a 2-core CPU
    python examples/char_gpt.py --optimizers anon,adamw,lion,muon --gammas 1,1.1,1.15
    python examples/char_gpt.py --steps 5000 --width 384 --layers 6 --context 256   # on a GPU
    python examples/char_gpt.py --optimizers anon --mu-dtype bfloat16 --nu-dtype bfloat16
    python examples/char_gpt.py --quick                  # a few seconds (CI)

``--mu-dtype``, ``--nu-dtype`` and ``--precond-dtype`` store Anon's m, s and v in bfloat16
(compact state). ``--plot PATH`` saves the validation curves; ``--out DIR`` writes
``DIR/char_gpt.json`` and its Markdown table ``DIR/char_gpt.md``. The last line on stdout is one
JSON object: ``{"results": [{"optimizer": "anon", "gamma": 1.0, "val_loss": ..., "train_loss":
..., "seconds": ..., "param_bytes": ..., "state_bytes": ..., "state_dtypes": {"mu": "float32",
...}}, ...]}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import sysconfig
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import anon_optax


class CausalSelfAttention(nnx.Module):
  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs):
    self.heads = heads
    self.qkv = nnx.Linear(width, 3 * width, use_bias=False, rngs=rngs)
    self.proj = nnx.Linear(width, width, use_bias=False, rngs=rngs)

  def __call__(self, x):
    b, t, c = x.shape
    q, k, v = (a.reshape(b, t, self.heads, c // self.heads) for a in jnp.split(self.qkv(x), 3, -1))
    return self.proj(jax.nn.dot_product_attention(q, k, v, is_causal=True).reshape(b, t, c))


class Block(nnx.Module):
  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs):
    self.ln1 = nnx.LayerNorm(width, rngs=rngs)
    self.attn = CausalSelfAttention(width, heads, rngs=rngs)
    self.ln2 = nnx.LayerNorm(width, rngs=rngs)
    self.fc = nnx.Linear(width, 4 * width, rngs=rngs)
    self.out = nnx.Linear(4 * width, width, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.ln1(x))
    return x + self.out(nnx.gelu(self.fc(self.ln2(x))))


class GPT(nnx.Module):
  """Decoder-only transformer: token + learned position embeddings, pre-LN blocks, linear head."""

  def __init__(self, vocab: int, *, context: int, width: int, layers: int, heads: int, rngs):
    self.embed = nnx.Embed(vocab, width, rngs=rngs)
    self.pos_embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (context, width)))
    self.blocks = nnx.List([Block(width, heads, rngs=rngs) for _ in range(layers)])
    self.ln_f = nnx.LayerNorm(width, rngs=rngs)
    self.head = nnx.Linear(width, vocab, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens) + self.pos_embed[None, : tokens.shape[1]]
    for block in self.blocks:
      x = block(x)
    return self.head(self.ln_f(x))


# Pure-Python standard-library modules present in every CPython 3.10+, in sorted order.
STDLIB_MODULES = (
  *("abc.py", "bisect.py", "calendar.py", "colorsys.py", "contextlib.py", "copy.py"),
  *("dataclasses.py", "fnmatch.py", "fractions.py", "functools.py", "heapq.py", "keyword.py"),
  *("numbers.py", "operator.py", "queue.py", "random.py", "shlex.py", "string.py"),
  *("textwrap.py", "types.py"),
)


def load_corpus(text_path: str | None = None, max_chars: int | None = None):
  """(train ids, validation ids, vocabulary): int32 character ids, split 90/10 by position."""
  stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
  paths = [pathlib.Path(text_path)] if text_path else [stdlib / n for n in STDLIB_MODULES]
  text = "\n".join(p.read_text(encoding="utf-8") for p in paths if p.is_file())[:max_chars]
  if not text:
    raise FileNotFoundError(f"nothing to read in {text_path or stdlib}; pass --text PATH")
  chars = sorted(set(text))
  lookup = {c: i for i, c in enumerate(chars)}
  ids = np.fromiter((lookup[c] for c in text), dtype=np.int32, count=len(text))
  split = int(len(ids) * 0.9)
  return ids[:split], ids[split:], chars


def sample_batches(ids: np.ndarray, steps: int, batch_size: int, context: int, seed: int):
  """Random windows of context + 1 tokens: (steps, batch_size, context + 1). Seeded."""
  starts = np.random.default_rng(seed).integers(0, len(ids) - context - 1, (steps, batch_size))
  return ids[starts[..., None] + np.arange(context + 1)]


# Peak learning rates, tuned once with the default model, steps and batch (seed 0) on doubling
# grids extended until the best was interior (lowest validation loss; CPython 3.11 stdlib text).
# Anon was tuned at gamma 1.0. Rerun a grid with `--optimizers NAME --lr LR`, one LR at a time:
#   anon  1e-3 2.456, 2e-3 2.363, 4e-3 2.285, 8e-3 2.182, 1.6e-2 2.186
#   adamw 1e-3 2.448, 2e-3 2.356, 4e-3 2.281, 8e-3 2.183, 1.6e-2 2.145, 3.2e-2 2.193
#   lion  1e-4 3.177, 2e-4 2.847, 4e-4 2.632, 8e-4 2.448, 1.6e-3 2.398, 3.2e-3 2.404
#   muon  5e-3 2.257, 1e-2 2.152, 2e-2 2.033, 4e-2 1.965, 8e-2 2.061
TUNED_LEARNING_RATES = {"anon": 8e-3, "adamw": 1.6e-2, "lion": 1.6e-3, "muon": 4e-2}
MUON_ADAM_LEARNING_RATE = 4e-3  # Muon's AdamW part (embeddings, head, vectors), fixed.
WEIGHT_DECAY = 0.1
STORAGE_DTYPES = ("mu_dtype", "nu_dtype", "precond_dtype")  # Anon's compact-state arguments.


def make_optimizer(name: str, lr: float, steps: int, gamma: float = 1.0, exact=False, **storage):
  """``name`` at peak ``lr``: 5% linear warmup, then cosine decay to 10% of the peak."""
  schedule = lambda peak: optax.warmup_cosine_decay_schedule(
    0.0, peak, warmup_steps=max(1, steps // 20), decay_steps=steps, end_value=0.1 * peak
  )
  if name == "anon":
    decay = {"weight_decay": WEIGHT_DECAY, "weight_decay_mode": "decoupled"}
    return anon_optax.anon(schedule(lr), gamma=gamma, exact=exact, **decay, **storage)
  if name in ("adamw", "lion"):
    return getattr(optax, name)(schedule(lr), weight_decay=WEIGHT_DECAY)

  def hidden_matrices(params):  # Muon for the 2-D hidden matrices, AdamW for the rest.
    names = lambda path: jax.tree_util.keystr(path)
    muon = lambda path, x: x.ndim == 2 and "embed" not in names(path) and "head" not in names(path)
    dims = optax.contrib.MuonDimensionNumbers(reduction_axis=0, output_axis=1)
    return jax.tree_util.tree_map_with_path(lambda p, x: dims if muon(p, x) else None, params)

  return optax.contrib.muon(
    schedule(lr),
    weight_decay=WEIGHT_DECAY,
    adam_weight_decay=WEIGHT_DECAY,
    adam_learning_rate=schedule(MUON_ADAM_LEARNING_RATE),
    muon_weight_dimension_numbers=hidden_matrices,
  )


def loss_fn(model: GPT, batch):
  logits = model(batch[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()


@nnx.jit
def train_step(model: GPT, optimizer: nnx.Optimizer, batch):
  loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def eval_step(model: GPT, batch):
  return loss_fn(model, batch)


def train(corpus, tx, args, desc: str = "") -> dict:
  """Trains a fresh GPT (same init and batches for a given seed); returns metrics and curves."""
  train_ids, val_ids, chars = corpus
  size = {k: getattr(args, k) for k in ("context", "width", "layers", "heads")}
  model = GPT(len(chars), **size, rngs=nnx.Rngs(args.seed))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  batches = sample_batches(train_ids, args.steps, args.batch_size, args.context, args.seed)
  val_batches = sample_batches(val_ids, 8, args.batch_size, args.context, args.seed + 1)
  every = min(100, args.steps)
  curve, losses, start = {"step": [], "val_loss": []}, [], time.perf_counter()
  for step in (bar := tqdm(range(1, args.steps + 1), desc=desc, file=sys.stderr)):
    losses.append(train_step(model, optimizer, batches[step - 1]))
    if step % every == 0 or step == args.steps:
      val_loss = float(np.mean([eval_step(model, b) for b in val_batches]))
      curve["step"].append(step)
      curve["val_loss"].append(val_loss)
      bar.set_postfix(val=f"{val_loss:.3f}")
  found = {}  # The dtypes of the "mu", "nu" and "precond" arrays of the state (Anon: m, s, v).
  for path, leaf in jax.tree_util.tree_leaves_with_path(optimizer.opt_state):
    for field in {getattr(k, "name", None) for k in path} & {"mu", "nu", "precond"}:
      found.setdefault(field, set()).add(str(leaf.dtype))
  nbytes = lambda tree: sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(tree))
  return {
    "val_loss": curve["val_loss"][-1],
    "train_loss": float(np.mean(jax.device_get(losses[-every:]))),
    "seconds": round(time.perf_counter() - start, 2),
    "param_bytes": nbytes(nnx.state(model, nnx.Param)),
    "state_bytes": nbytes(optimizer.opt_state),
    "state_dtypes": {field: ",".join(sorted(d)) for field, d in found.items()},
    "curve": curve,
  }


def label(row: dict) -> str:
  return row["optimizer"] + (f" gamma {row['gamma']:g}" if "gamma" in row else "")


def write_results(out_dir: str, name: str, payload: dict, table: str) -> None:
  """DIR/NAME.json (the payload and the machine) and DIR/NAME.md: the table under one line naming
  the CPU, the git commit, the date and the command, as every results file of the repository."""
  try:
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in cpuinfo)}
    cpu = "{model name} (family {cpu family}, model {model})".format_map(fields)
  except (OSError, KeyError):
    cpu = platform.processor() or platform.machine()
  git = ["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"]
  try:
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip() or None
  except OSError:  # No git.
    commit = None
  date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  command = shlex.join(["python", *sys.argv])
  machine = dict(cpu=cpu, cores=os.cpu_count(), git_commit=commit, date=date, command=command)
  machine.update(jax=jax.__version__, devices=f"{jax.device_count()} {jax.default_backend()}")
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  data = {"benchmark": name, "machine": machine, **payload}
  (out / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
  source = (
    f"Measured on {cpu} ({os.cpu_count()} cores), commit {commit or 'not recorded'}, "
    f"{date[:10]}, by `{command}`"
  )
  (out / f"{name}.md").write_text(f"{source}; numbers in `{name}.json`.\n\n{table.strip()}\n")


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--text", default=None, metavar="PATH", help="a UTF-8 file to train on")
  parser.add_argument("--optimizers", default="anon,adamw", help="of anon,adamw,lion,muon")
  parser.add_argument("--gammas", default="1.0", help="Anon's gammas, e.g. 1,1.1,1.15")
  parser.add_argument("--lr", type=float, default=None, help="every peak learning rate")
  parser.add_argument("--exact", action="store_true", help="Anon's exact rule (no step guard)")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--context", type=int, default=64)
  parser.add_argument("--width", type=int, default=64)
  parser.add_argument("--layers", type=int, default=2)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--seed", type=int, default=0)
  for arg, what in zip(STORAGE_DTYPES, ("m", "s (stochastically rounded)", "v")):
    flag = "--" + arg.replace("_", "-")
    parser.add_argument(flag, choices=("float32", "bfloat16"), help=f"Anon's dtype of {what}")
  parser.add_argument("--plot", default=None, metavar="PATH", help="save PNG validation curves")
  parser.add_argument("--out", default=None, metavar="DIR", help="write char_gpt.json and .md")
  parser.add_argument("--quick", action="store_true", help="a few seconds, for CI")
  args = parser.parse_args(argv)
  if args.quick:
    vars(args).update(steps=30, batch_size=8, context=32, width=32, layers=1, heads=2)
  names = [o for o in args.optimizers.split(",") if o]
  if set(names) - set(TUNED_LEARNING_RATES):
    parser.error(f"--optimizers: choose from {', '.join(TUNED_LEARNING_RATES)}")
  storage = {k: getattr(args, k) for k in STORAGE_DTYPES if getattr(args, k)}
  gammas = [float(g) for g in args.gammas.split(",") if g]
  corpus = load_corpus(args.text, max_chars=200_000 if args.quick else None)

  results = []
  for name, gamma in [(o, g) for o in names for g in (gammas if o == "anon" else [None])]:
    lr = args.lr or TUNED_LEARNING_RATES[name]
    extra = {"gamma": gamma, **({"exact": True} if args.exact else {}), **storage}
    extra = extra if name == "anon" else {}
    tx = make_optimizer(name, lr, args.steps, **extra)
    row = {"optimizer": name, **extra, "learning_rate": lr}
    results.append(r := {**row, **train(corpus, tx, args, desc=label(row))})
    print(f"{label(r):>16s}: val loss {r['val_loss']:.4f}, train loss {r['train_loss']:.4f}")
  if args.plot:
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for r in results:
      ax.plot(r["curve"]["step"], r["curve"]["val_loss"], marker=".", label=label(r))
    ax.set(xlabel="step", ylabel="validation loss (nats/char)", title="char GPT")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
  for r in results:
    del r["curve"]
  if args.out:
    table = [
      "| optimizer | peak lr | validation loss | train loss | seconds |",
      "|---|---|---|---|---|",
    ]
    table += [
      f"| {label(r)} | {r['learning_rate']:g} | {r['val_loss']:.4f} | {r['train_loss']:.4f} "
      f"| {r['seconds']:.1f} |"
      for r in results
    ]
    write_results(args.out, "char_gpt", {"results": results}, "\n".join(table))
  print(json.dumps({"results": results}), flush=True)


if __name__ == "__main__":
  main()
