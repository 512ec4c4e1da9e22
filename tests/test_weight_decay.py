"""The weight-decay modes shared by `anon` and `hvadam`: ranges and the mask."""

import jax.numpy as jnp
import optax
import pytest

import anon_optax


@pytest.mark.parametrize("factory", [anon_optax.anon, anon_optax.hvadam])
@pytest.mark.parametrize("weight_decay", [1.5, 3.0, -0.1])
def test_fixed_decay_outside_zero_one_raises(factory, weight_decay):
  with pytest.raises(ValueError, match=r"`weight_decay` must be a real number in \[0, 1\]"):
    factory(1e-3, weight_decay=weight_decay, weight_decay_mode="fixed")


@pytest.mark.parametrize("weight_decay", [0.0, 0.5, 1.0])
def test_fixed_decay_shrinks_without_flipping_sign(weight_decay):
  tx = anon_optax.anon(1e-3, weight_decay=weight_decay, weight_decay_mode="fixed")
  params = jnp.ones(2)
  state = tx.init(params)
  for step in range(1, 4):
    updates, state = tx.update(jnp.zeros(2), state, params)
    params = optax.apply_updates(params, updates)
    assert jnp.allclose(params, (1 - weight_decay) ** step)


@pytest.mark.parametrize("mode", ["decoupled", "l2"])
def test_decoupled_and_l2_decay_above_one_are_allowed(mode):
  anon_optax.anon(1e-3, weight_decay=2.0, weight_decay_mode=mode)


@pytest.mark.parametrize("factory", [anon_optax.anon, anon_optax.hvadam])
@pytest.mark.parametrize(
  "mask", [{"a": True}, {"w": True, "b": True, "c": False}, lambda p: {"w": True}]
)
def test_mask_of_the_wrong_structure_names_mask(factory, mask):
  tx = factory(1e-3, weight_decay=1e-2, mask=mask)
  with pytest.raises(ValueError, match=r"`mask` must have the tree structure .*'b'.*'w'"):
    tx.init({"w": jnp.ones(2), "b": jnp.ones(1)})


def test_mask_prefix_and_callable_are_accepted():
  params = {"w": jnp.ones(2), "b": {"x": jnp.ones(1), "y": jnp.ones(1)}}
  for mask in ({"w": True, "b": False}, lambda p: {"w": True, "b": {"x": True, "y": False}}):
    tx = anon_optax.anon(1e-3, weight_decay=1e-2, weight_decay_mode="decoupled", mask=mask)
    updates, _ = tx.update(params, tx.init(params), params)
    assert jnp.all(jnp.isfinite(updates["w"]))
