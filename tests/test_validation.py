"""Hyperparameter validation: early, clear errors for bad Python numbers only."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax

_BAD_SCALE_BY_ANON = [
  ("b1", -0.1),
  ("b1", 1.0),
  ("b1", math.nan),
  ("b2", -1e-3),
  ("b2", 1.0),
  ("b2", 1.5),
  ("eps", -1e-16),
  ("eps", math.inf),
  ("gamma", math.nan),
  ("gamma", -math.inf),
  ("beta3", -0.1),
  ("beta3", 1.0),
  ("refresh_base", 1),
  ("refresh_base", 0),
  ("refresh_base", 2.5),
  ("refresh_base", 2**31),
]


@pytest.mark.parametrize("name, value", _BAD_SCALE_BY_ANON)
@pytest.mark.parametrize(
  "factory",
  [anon_optax.scale_by_anon, lambda **kw: anon_optax.anon(1e-3, **kw)],
  ids=["scale_by_anon", "anon"],
)
def test_invalid_hyperparameter_raises_value_error(factory, name, value):
  with pytest.raises(ValueError, match=f"`{name}`"):
    factory(**{name: value})


@pytest.mark.parametrize("name, value", [(n, v) for n, v in _BAD_SCALE_BY_ANON if n != "b1"])
def test_scale_by_idu_validates_its_hyperparameters(name, value):
  with pytest.raises(ValueError, match=f"`{name}`"):
    anon_optax.scale_by_idu(**{name: value})


@pytest.mark.parametrize(
  "name, value",
  [
    ("weight_decay", -1e-4),
    ("weight_decay", math.nan),
    ("learning_rate", math.nan),
    ("learning_rate", math.inf),
  ],
)
def test_invalid_optimizer_argument_raises_value_error(name, value):
  kwargs = {"learning_rate": 1e-3, name: value}
  with pytest.raises(ValueError, match=f"`{name}`"):
    anon_optax.anon(**kwargs)


@pytest.mark.parametrize("mode", ["L2", "adamw", None, ""])
def test_unknown_weight_decay_mode_raises(mode):
  with pytest.raises(ValueError, match="`weight_decay_mode`.*'l2'"):
    anon_optax.anon(1e-3, weight_decay_mode=mode)


def test_error_message_states_the_allowed_range():
  with pytest.raises(ValueError, match=r"`b2` must be a real number in \[0, 1\), got 1.5"):
    anon_optax.anon(1e-3, b2=1.5)
  with pytest.raises(ValueError, match=r"`refresh_base` must be an integer in \[2, "):
    anon_optax.anon(1e-3, refresh_base=1)


@pytest.mark.parametrize(
  "name, value",
  [
    ("b1", 0.0),
    ("b2", 0.0),
    ("eps", 0.0),
    ("beta3", 0.0),
    ("gamma", -4.0),
    ("gamma", 7.5),
    ("refresh_base", 2),
    ("refresh_base", 3.0),
    ("refresh_base", 2**31 - 1),
    ("weight_decay", 0.0),
  ],
)
def test_boundary_values_are_accepted(name, value):
  anon_optax.anon(1e-3, **{name: value})


def test_traced_hyperparameters_are_not_validated_in_python():
  # Inside jit/vmap the values are tracers: construction must not branch on
  # them (no ConcretizationTypeError), and the program must run.
  def run(gamma, b2, beta3, refresh_base):
    tx = anon_optax.anon(1e-2, gamma=gamma, b2=b2, beta3=beta3, refresh_base=refresh_base)
    params = jnp.ones(3)
    state = tx.init(params)
    updates, _ = tx.update(params, state, params)
    return updates

  out = jax.jit(jax.vmap(run))(
    jnp.array([0.0, 1.0]), jnp.array([0.99, 0.999]), jnp.array([0.3, 0.5]), jnp.array([2, 3])
  )
  assert out.shape == (2, 3)
  assert bool(jnp.all(jnp.isfinite(out)))


def test_inject_hyperparams_jits_and_runs():
  tx = optax.inject_hyperparams(anon_optax.anon)(
    learning_rate=optax.linear_schedule(1e-2, 1e-3, 50),
    b1=0.9,
    b2=0.99,
    eps=1e-12,
    gamma=1.1,
    weight_decay=1e-4,
    beta3=0.3,
    refresh_base=3,
    weight_decay_mode="decoupled",
  )
  params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
  state = tx.init(params)
  step = jax.jit(tx.update)
  for _ in range(30):
    grads = jax.tree.map(lambda p: p - 0.5, params)
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
  anon_state = state.inner_state[0]  # Decoupled: scale_by_anon comes first.
  assert isinstance(anon_state, anon_optax.ScaleByAnonState)
  assert int(anon_state.num_refreshes) == 4  # Steps 1, 3, 9, 27.
  assert step._cache_size() == 1
  assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))


# Wrong types and shapes: each is refused at construction by every public
# constructor, with the argument's name (not later, with an unrelated message):
# None, strings and booleans; `gamma=jnp.array([0., 1.])`, which would be
# broadcast per column; a concrete NaN array.
_BAD_TYPES_AND_SHAPES = [
  ("gamma", None),
  ("gamma", "1.1"),
  ("b1", "0.9"),
  ("gamma", jnp.array([0.0, 1.0])),
  ("eps", jnp.array(jnp.nan)),
  ("refresh_base", 2.5),
  ("refresh_base", True),
  ("max_refresh_interval", 0),
  ("exact", "yes"),
  ("exact", 1),
  ("nu_dtype", jnp.int32),
  ("precond_dtype", "not a dtype"),
  ("b2", jnp.array([0.9, 0.99])),
  ("beta3", None),
]
_CONSTRUCTORS = {
  "anon": lambda **kw: anon_optax.anon(1e-3, **kw),
  "scale_by_anon": anon_optax.scale_by_anon,
  "scale_by_idu": anon_optax.scale_by_idu,
}


# scale_by_idu has no b1.
@pytest.mark.parametrize(
  "constructor, name, value",
  [
    (constructor, name, value)
    for constructor in sorted(_CONSTRUCTORS)
    for name, value in _BAD_TYPES_AND_SHAPES
    if not (constructor == "scale_by_idu" and name == "b1")
  ],
)
def test_bad_type_or_shape_raises_naming_the_argument(constructor, name, value):
  with pytest.raises((TypeError, ValueError), match=f"`{name}`"):
    _CONSTRUCTORS[constructor](**{name: value})


@pytest.mark.parametrize("constructor", sorted(_CONSTRUCTORS))
def test_traced_gamma_passes_under_vmap_and_jit(constructor):
  def run(gamma):
    tx = _CONSTRUCTORS[constructor](gamma=gamma)
    params = jnp.array([1.0, -2.0, 3.0])
    state = tx.init(params)
    updates, _ = tx.update(jnp.array([0.5, -1.0, 2.0]), state, params)
    return updates

  out = jax.jit(jax.vmap(run))(jnp.array([0.0, 1.0, 2.0]))
  assert out.shape == (3, 3)
  assert bool(jnp.all(jnp.isfinite(out)))
  # gamma really varies: the three rows differ.
  assert len({tuple(row) for row in out.tolist()}) == 3


# ----------------------------------------------------------------------------
# Gradient trees that do not match the parameters, integer parameters, non-finite numbers.
# ----------------------------------------------------------------------------


def test_mismatched_gradient_tree_raises():
  params = {"w": jnp.ones(3), "b": jnp.ones(2)}
  for tx in (
    anon_optax.scale_by_anon(),
    anon_optax.scale_by_idu(),
    anon_optax.anon(1e-3, weight_decay_mode="decoupled"),
  ):
    state = tx.init(params)
    with pytest.raises(ValueError, match="structure"):
      tx.update({"w": jnp.ones(3)}, state, params)
    with pytest.raises(ValueError, match=r"\['b'\] has shape \(3,\)"):
      tx.update({"w": jnp.ones(3), "b": jnp.ones(3)}, state, params)


def test_integer_params_raise():
  for tx in (anon_optax.anon(1e-3), anon_optax.scale_by_anon(), anon_optax.scale_by_idu()):
    with pytest.raises(TypeError, match=r"\['steps'\] has dtype int32"):
      tx.init({"w": jnp.ones(3), "steps": jnp.arange(3, dtype=jnp.int32)})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
  "name", ["learning_rate", "b1", "b2", "eps", "gamma", "weight_decay", "beta3"]
)
def test_non_finite_hyperparameters_raise(name, value):
  with pytest.raises(ValueError, match=f"`{name}`"):
    anon_optax.anon(**{"learning_rate": 1e-3, name: value})
  if name not in ("learning_rate", "weight_decay"):
    with pytest.raises(ValueError, match=f"`{name}`"):
      anon_optax.scale_by_anon(**{name: value})
  if name not in ("learning_rate", "weight_decay", "b1"):
    with pytest.raises(ValueError, match=f"`{name}`"):
      anon_optax.scale_by_idu(**{name: value})


def test_non_finite_numpy_scalar_hyperparameter_raises():
  with pytest.raises(ValueError, match="`gamma`"):
    anon_optax.anon(1e-3, gamma=np.float32("nan"))


# ----------------------------------------------------------------------------
# Storage dtypes: the preconditioner and the accumulator need float32's exponent range.
# ----------------------------------------------------------------------------

# Narrower range than float32 (float16: largest 65504; float8_e4m3fn: 448), or (e8m0) no
# significand at all. A float16 `precond` clipped at 65504 made the steps of gradients below
# ~1.5e-5 up to 150x too small at gamma = 1 (test_dtypes.py has the run).
_NARROW_DTYPES = [
  jnp.float16,
  jnp.float8_e4m3fn,
  jnp.float8_e5m2,
  jnp.float8_e4m3b11fnuz,
  jnp.float8_e8m0fnu,
  jnp.float4_e2m1fn,
]


@pytest.mark.parametrize("dtype", _NARROW_DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", ["precond_dtype", "nu_dtype"])
@pytest.mark.parametrize("constructor", sorted(_CONSTRUCTORS))
def test_narrow_range_statistics_dtype_is_refused_with_a_pointer_to_bfloat16(
  constructor, name, dtype
):
  with pytest.raises(ValueError, match=f"`{name}` must have float32's exponent range.*bfloat16"):
    _CONSTRUCTORS[constructor](**{name: dtype})


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", ["precond_dtype", "nu_dtype"])
def test_float32_range_statistics_dtypes_are_accepted(name, dtype):
  anon_optax.anon(1e-3, **{name: dtype})
  anon_optax.scale_by_idu(**{name: dtype})


@pytest.mark.parametrize("dtype", [jnp.float8_e4m3fn, jnp.float8_e5m2, jnp.float4_e2m1fn])
@pytest.mark.parametrize("constructor", ["anon", "scale_by_anon"])
def test_sub_16_bit_mu_dtype_is_refused_at_construction(constructor, dtype):
  # JAX does not promote 8-bit floats implicitly, so such a first moment failed at the first
  # update with a TypePromotionError (as optax.adam's does); now it fails here, by name.
  with pytest.raises(ValueError, match="`mu_dtype` must be at least 16 bits"):
    _CONSTRUCTORS[constructor](mu_dtype=dtype)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.complex64])
def test_mu_dtype_of_16_bits_or_more_is_accepted_as_by_adam(dtype):
  anon_optax.anon(1e-3, mu_dtype=dtype)
  optax.adam(1e-3, mu_dtype=dtype)


# ----------------------------------------------------------------------------
# A guard factor with exact=True, which has no guard.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
  "factor",
  [5.0, 5, np.float32(5.0), np.float64(5.0), np.int32(5), jnp.array(5.0), jnp.float32(5.0)],
  ids=["float", "int", "np_float32", "np_float64", "np_int32", "jnp_array", "jnp_float32"],
)
@pytest.mark.parametrize("constructor", sorted(_CONSTRUCTORS))
def test_concrete_guard_factor_with_exact_raises_whatever_its_type(constructor, factor):
  # A NumPy or JAX scalar was accepted and silently ignored, where the Python float raised.
  with pytest.raises(ValueError, match="`guard_factor`.*exact=True"):
    _CONSTRUCTORS[constructor](exact=True, guard_factor=factor)


@pytest.mark.parametrize("factor", [10.0, np.float32(10.0), jnp.array(10.0)])
def test_default_guard_factor_with_exact_is_accepted_whatever_its_type(factor):
  anon_optax.anon(1e-3, exact=True, guard_factor=factor)


def test_traced_guard_factor_with_exact_is_not_checked():
  # Its value is unknown at construction; the exact step has no guard to use it in.
  def run(factor):
    tx = anon_optax.anon(1e-2, exact=True, guard_factor=factor)
    params = jnp.array([1.0, -2.0])
    updates, _ = tx.update(jnp.array([0.5, 1.0]), tx.init(params), params)
    return updates

  step = jax.jit(run)
  np.testing.assert_array_equal(step(jnp.float32(3.0)), step(jnp.float32(10.0)))
  np.testing.assert_allclose(step(jnp.float32(3.0)), [-1e-2, -1e-2], rtol=1e-6)


# ----------------------------------------------------------------------------
# Complex hyperparameters, as optax.inject_hyperparams makes them for complex parameters.
# ----------------------------------------------------------------------------

_COMPLEX_CHECKED = ["b1", "b2", "eps", "gamma", "beta3", "guard_factor"]


@pytest.mark.parametrize("name", _COMPLEX_CHECKED)
@pytest.mark.parametrize(
  "wrap", [complex, np.complex64, lambda x: jnp.asarray(x, jnp.complex64)], ids=["py", "np", "jnp"]
)
def test_complex_hyperparameter_with_zero_imaginary_part_counts_as_real(name, wrap):
  value = {"b1": 0.8, "b2": 0.99, "eps": 1e-12, "gamma": 1.5, "beta3": 0.3, "guard_factor": 5.0}
  anon_optax.anon(wrap(1e-3), **{name: wrap(value[name])})
  if name != "b1":
    anon_optax.scale_by_idu(**{name: wrap(value[name])})
  if name in ("b1", "b2", "eps", "gamma"):
    anon_optax.hvadam(wrap(1e-3), **{name: wrap(value[name])})


@pytest.mark.parametrize("name", [*_COMPLEX_CHECKED, "learning_rate", "weight_decay"])
def test_complex_hyperparameter_with_imaginary_part_raises(name):
  with pytest.raises(ValueError, match=f"`{name}`.*imaginary part"):
    anon_optax.anon(**{"learning_rate": 1e-3, name: jnp.asarray(0.5 + 0.1j, jnp.complex64)})


def test_complex_hyperparameters_are_range_checked_by_their_real_part():
  with pytest.raises(ValueError, match=r"`b1` must be a real number in \[0, 1\)"):
    anon_optax.anon(1e-3, b1=np.complex64(1.5))


# ----------------------------------------------------------------------------
# `params` passed to update must match the parameters the optimizer was initialised with.
# ----------------------------------------------------------------------------

_PARAMS_CHECKED = {
  "scale_by_anon": anon_optax.scale_by_anon,
  "anon_l2": lambda: anon_optax.anon(1e-3, weight_decay=1e-2),
  "anon_decoupled": lambda: anon_optax.anon(1e-3, weight_decay=1e-2, weight_decay_mode="decoupled"),
  "anon_fixed": lambda: anon_optax.anon(1e-3, weight_decay=1e-2, weight_decay_mode="fixed"),
  "anon_masked": lambda: anon_optax.anon(1e-3, weight_decay=1e-2, mask={"w": True, "b": False}),
  "anon_injected": lambda: optax.inject_hyperparams(anon_optax.anon)(learning_rate=1e-3),
}
_BAD_PARAMS = {
  # An extra leaf was silently dropped; a missing one failed inside JAX ("Too few leaves").
  "extra_leaf": {"w": jnp.ones(3), "b": jnp.ones(2), "c": jnp.ones(2)},
  "missing_leaf": {"w": jnp.ones(3)},
  "other_container": [jnp.ones(3), jnp.ones(2)],
}


@pytest.mark.parametrize("params", sorted(_BAD_PARAMS))
@pytest.mark.parametrize("constructor", sorted(_PARAMS_CHECKED))
def test_params_of_another_structure_raise_naming_params_and_both_structures(constructor, params):
  tx = _PARAMS_CHECKED[constructor]()
  good = {"w": jnp.ones(3), "b": jnp.ones(2)}
  state = tx.init(good)
  bad = _BAD_PARAMS[params]
  expected = rf"`params`.*got {re.escape(str(jax.tree.structure(bad)))}.*expected "
  expected += re.escape(str(jax.tree.structure(good)))
  for update in (tx.update, jax.jit(tx.update)):
    with pytest.raises(ValueError, match=expected):
      update(good, state, bad)


@pytest.mark.parametrize("constructor", sorted(_PARAMS_CHECKED))
def test_params_leaf_of_another_shape_raises(constructor):
  tx = _PARAMS_CHECKED[constructor]()
  good = {"w": jnp.ones(3), "b": jnp.ones(2)}
  with pytest.raises(ValueError, match=r"`params` at \['b'\] has shape \(\),.*shape \(2,\)"):
    tx.update(good, tx.init(good), {"w": jnp.ones(3), "b": jnp.ones(())})


@pytest.mark.parametrize("constructor", sorted(_PARAMS_CHECKED))
def test_matching_or_absent_params_pass(constructor):
  tx = _PARAMS_CHECKED[constructor]()
  good = {"w": jnp.ones(3), "b": jnp.ones(2)}
  state = tx.init(good)
  tx.update(good, state, {"w": jnp.zeros(3), "b": jnp.zeros(2)})
  if constructor == "scale_by_anon" or constructor == "anon_decoupled":
    return
  with pytest.raises(ValueError, match="not passing `params`"):  # optax's, for the weight decay.
    tx.update(good, state)


def test_chain_checks_updates_before_the_weight_decay_maps_them_with_params():
  # With l2 decay the decay runs first; mismatched gradients are named as such there too.
  tx = anon_optax.anon(1e-3, weight_decay=1e-2)
  good = {"w": jnp.ones(3), "b": jnp.ones(2)}
  state = tx.init(good)
  with pytest.raises(ValueError, match="updates.*structure"):
    tx.update({"w": jnp.ones(3)}, state, good)
  with pytest.raises(ValueError, match=r"\['b'\] has shape \(3,\)"):
    tx.update({"w": jnp.ones(3), "b": jnp.ones(3)}, state, good)


@pytest.mark.parametrize("value", ["never", "", "AUTO"])
def test_max_refresh_interval_string_other_than_auto_raises(value):
  with pytest.raises(
    ValueError, match=r"`max_refresh_interval` must be 'auto', None or an integer"
  ):
    anon_optax.anon(1e-3, max_refresh_interval=value)
