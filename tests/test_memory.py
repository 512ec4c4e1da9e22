"""The compiled step needs no parameter-sized scratch buffer (XLA's memory analysis).

``temp_size_in_bytes`` of the jitted step, with parameters and state donated, is the scratch
XLA allocates besides the arguments and outputs. It covers both branches of Anon's refresh
``cond``, so it bounds normal and refresh steps alike. ``python -m benchmarks.memory`` reports
the same numbers for a 4M-parameter tree.
"""

import jax
import jax.numpy as jnp
import optax
import pytest

import anon_optax

BF16 = jnp.bfloat16

# Shapes like a small network's: 2-D weights and embeddings, 1-D biases and scales.
SHAPES = {
  "embed": (1000, 64),
  "dense_1": (64, 512),
  "bias_1": (512,),
  "dense_2": (512, 256),
  "bias_2": (256,),
  "scale": (256,),
  "head": (256, 1000),
}

STORAGE_OPTIONS = {
  "default": {},
  "exact": {"exact": True},
  "mu_bf16": {"mu_dtype": BF16},
  "mu_precond_bf16": {"mu_dtype": BF16, "precond_dtype": BF16},
  "all_bf16": {"mu_dtype": BF16, "nu_dtype": BF16, "precond_dtype": BF16},
}


def _params(dtype):
  return {name: jax.ShapeDtypeStruct(shape, dtype) for name, shape in SHAPES.items()}


def _param_bytes(params):
  return sum(p.size * jnp.dtype(p.dtype).itemsize for p in jax.tree.leaves(params))


def _step_scratch_bytes(tx, params) -> int:
  state = jax.eval_shape(tx.init, params)

  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("param_dtype", [jnp.float32, BF16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("option", STORAGE_OPTIONS)
def test_anon_step_needs_no_more_scratch_than_adam(param_dtype, option):
  params = _params(param_dtype)
  adam = _step_scratch_bytes(optax.adam(1e-3), params)
  anon = _step_scratch_bytes(anon_optax.anon(1e-3, **STORAGE_OPTIONS[option]), params)
  # The bound: Adam's scratch plus 1% of the parameter bytes.
  assert anon <= adam + 0.01 * _param_bytes(params), (anon, adam, _param_bytes(params))


@pytest.mark.parametrize("param_dtype", [jnp.float32, BF16], ids=["float32", "bfloat16"])
def test_scale_by_idu_step_needs_no_scratch(param_dtype):
  params = _params(param_dtype)
  tx = optax.chain(anon_optax.scale_by_idu(), optax.scale(-1e-3))
  assert _step_scratch_bytes(tx, params) <= 0.01 * _param_bytes(params)


@pytest.mark.parametrize("param_dtype", [jnp.float32, BF16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("option", STORAGE_OPTIONS)
def test_single_leaf_tree_needs_no_scratch(param_dtype, option):
  # With one leaf XLA once recomputed the new accumulator inside the guarded step from the old
  # one (overwritten in place) and kept a whole copy of it; _common.read_back_from_memory is
  # what prevents that, for any number of leaves.
  params = {"flat": jax.ShapeDtypeStruct((1000, 100), param_dtype)}
  tx = anon_optax.anon(1e-3, **STORAGE_OPTIONS[option])
  assert _step_scratch_bytes(tx, params) <= 0.01 * _param_bytes(params)
