"""The preconditioner building blocks of `anon_optax._idu` and `scale_by_idu`.

The refresh schedule (steps a_k = refresh_base**k, the int32 limit, a cap on the interval), the
bias-corrected second moment, the harmonic refresh, `approximate_power` (the guard's power)
and the shared state-update path (one `cond` per step for the whole tree).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax
from anon_optax import _idu

_MAX_INT32 = int(np.iinfo(np.int32).max)


def _refreshes_in(tx, state, num_steps):
  """Steps `tx` on ones for `num_steps` from `state`; lists the steps that refreshed."""
  update = jax.jit(tx.update)
  ones = jnp.ones_like(state.nu)
  seen = []
  for _ in range(num_steps):
    before = int(state.num_refreshes)
    _, state = update(ones, state)
    if int(state.num_refreshes) != before:
      seen.append(int(state.count))
  return seen


def _refresh_steps_seen(refresh_base, num_steps):
  """Runs the scale_by_idu state machine and lists the steps that refreshed."""
  tx = anon_optax.scale_by_idu(refresh_base=refresh_base)
  return _refreshes_in(tx, tx.init(jnp.zeros(3)), num_steps)


@pytest.mark.parametrize(
  "refresh_base, expected",
  [(2, [1, 2, 4, 8, 16, 32, 64]), (3, [1, 3, 9, 27, 81]), (4, [1, 4, 16, 64])],
)
def test_refresh_steps_are_powers_of_the_base(refresh_base, expected):
  assert _refresh_steps_seen(refresh_base, 100) == expected


@pytest.mark.parametrize("refresh_base", [2, 3, 7])
def test_next_refresh_step_multiplies_until_int32_overflow(refresh_base):
  step, steps = 1, []
  while step:
    steps.append(step)
    step = int(_idu.next_refresh_step(jnp.int32(step), refresh_base))
  expected, power = [], 1
  while power <= _MAX_INT32:
    expected.append(power)
    power *= refresh_base
  assert steps == expected  # Ends with 0 instead of a wrapped-around product.


def test_traced_refresh_base_gives_the_same_schedule():
  steps = jax.jit(_idu.next_refresh_step)(jnp.int32(9), jnp.int32(3))
  assert int(steps) == 27


@pytest.mark.parametrize(
  "refresh_base, cap, expected",
  [
    (2, None, [1, 1, 2, 4, 8, 16, 32]),
    (3, None, [1, 2, 6, 18]),
    (2, 5, [1, 1, 2, 4, 5, 5, 5]),
    (3, 1, [1, 1, 1, 1, 1]),
  ],
)
def test_refresh_uses_the_steps_accumulated_since_the_last_one(refresh_base, cap, expected):
  # n = a_k - a_{k-1}, and n = 1 at the first refresh (a_0 = 1).
  tx = anon_optax.scale_by_idu(refresh_base=refresh_base, max_refresh_interval=cap)
  state = tx.init(jnp.zeros(3))
  update = jax.jit(tx.update)
  seen = []
  while len(seen) < len(expected):
    accumulated_before = int(state.num_accumulated)
    refreshes_before = int(state.num_refreshes)
    _, state = update(jnp.ones(3), state)
    if int(state.num_refreshes) != refreshes_before:
      seen.append(accumulated_before + 1)
      assert int(state.num_accumulated) == 0
  assert seen == expected


def _refresh_steps_after_resume(resume_at, cap, num_steps):
  """Steps that refresh when an uncapped run is resumed at `resume_at` with a cap."""
  uncapped = anon_optax.scale_by_idu(max_refresh_interval=None)
  state = uncapped.init(jnp.zeros(2))
  run = jax.jit(
    lambda s: jax.lax.fori_loop(0, resume_at, lambda _, s: uncapped.update(jnp.ones(2), s)[1], s)
  )
  state = run(state)
  return _refreshes_in(anon_optax.scale_by_idu(max_refresh_interval=cap), state, num_steps)


def test_default_caps_the_gap_at_256_steps_and_exact_keeps_the_authors_schedule():
  powers = [2**k for k in range(12)]  # 1, 2, ..., 2048
  capped = powers[:10] + list(range(768, 2049, 256))  # ..., 256, 512, then every 256 steps

  def refreshes(**kwargs):
    tx = anon_optax.scale_by_idu(**kwargs)
    return _refreshes_in(tx, tx.init(jnp.zeros(2)), 2048)

  assert refreshes() == refreshes(max_refresh_interval="auto") == capped
  assert refreshes(exact=True) == refreshes(max_refresh_interval=None) == powers
  assert refreshes(exact=True, max_refresh_interval=256) == capped


def test_cap_set_on_resume_takes_effect_at_once():
  # Uncapped, the latest refresh was at 2048 and the next is at 4096; with a cap of 100 the
  # gap since 2048 is already over 100, so the next step refreshes, then every 100 steps.
  assert _refresh_steps_after_resume(3000, 100, 301) == [3001, 3101, 3201, 3301]


def test_cap_set_on_resume_counts_from_the_latest_refresh():
  # Latest refresh at 2048; a cap of 1000 brings the next one to 3048 (not 4096).
  assert _refresh_steps_after_resume(3000, 1000, 1100)[:2] == [3048, 4048]


# ----------------------------------------------------------------------------
# The preconditioner refresh: bias-corrected sigma, harmonic update, approximate power.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("num_accumulated", [1, 2, 7, 512])
@pytest.mark.parametrize("b2", [0.0, 0.9, 0.999])
def test_bias_corrected_sigma(x64, num_accumulated, b2):
  # n equal gradients g accumulated from zero give s = (1 - b2**n) g**2, so the
  # bias-corrected sigma is exactly g**2 + eps.
  grad, eps = 0.3, 1e-8
  nu = jnp.float64(0.0)
  for _ in range(num_accumulated):
    nu = b2 * nu + (1 - b2) * grad**2
  log_sigma = _idu.log_bias_corrected_sigma(nu, 1 - b2, jnp.int32(num_accumulated), eps)
  np.testing.assert_allclose(np.exp(log_sigma), grad**2 + eps, rtol=1e-13)


def test_bias_correction_float32_matches_accumulator_at_first_step():
  # At n = 1 the correction must cancel the accumulator's (1 - b2) exactly,
  # also in float32 where 1 - float32(0.999) differs from float32(0.001).
  nu = jnp.float32(1 - 0.999) * jnp.float32(4.0)
  log_sigma = _idu.log_bias_corrected_sigma(nu, 1 - 0.999, jnp.int32(1), 0.0)
  # A few float32 ulps; rounding b2 before subtracting would be off by 1.3e-5.
  np.testing.assert_allclose(np.exp(log_sigma), 4.0, rtol=5e-7)


@pytest.mark.parametrize("gamma", [-2.0, -0.25, 0.0, 0.5, 1.0, 1.15, 3.0])
def test_first_refresh_is_sigma_to_the_minus_gamma_over_two(x64, gamma):
  nu = jnp.array([0.0, 1e-3, 2.0, 50.0])
  b2, eps = 0.999, 1e-16
  precond = _idu.refresh_preconditioner(
    nu * (1 - b2),
    jnp.full(4, 123.0),
    num_accumulated=jnp.int32(1),
    is_first=jnp.bool_(True),
    one_minus_b2=1 - b2,
    eps=eps,
    gamma=gamma,
    beta3=0.5,
  )
  # The previous preconditioner (123) must carry no weight at step 1.
  np.testing.assert_allclose(precond, (np.asarray(nu) + eps) ** (-gamma / 2), rtol=1e-12)


@pytest.mark.parametrize("beta3", [0.0, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("gamma", [-1.0, 0.5, 1.0, 2.0])
def test_harmonic_refresh_matches_direct_formula(x64, beta3, gamma):
  rng = np.random.default_rng(0)
  precond = rng.uniform(0.1, 10.0, size=16)
  sigma = rng.uniform(1e-6, 4.0, size=16)
  got = _idu.harmonic_refresh(jnp.asarray(precond), jnp.log(sigma), gamma, beta3)
  want = (beta3 * precond**-2 + (1 - beta3) * sigma**gamma) ** -0.5
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_harmonic_refresh_at_half_is_the_authors_harmonic_mean():
  precond, sigma, gamma = 2.0, 0.25, 1.0
  got = _idu.harmonic_refresh(jnp.float32(precond), jnp.log(sigma), gamma, 0.5)
  want = np.sqrt(2 / (precond**-2 + sigma**gamma))
  np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("gamma", [-4.0, 3.0, 4.0])
def test_harmonic_refresh_does_not_underflow_in_float32(gamma):
  # sigma**gamma and v**-2 are far below float32's range here; the direct
  # formula would give inf, harmonic_refresh the finite float64 answer.
  sigma = np.float64(1e-16) if gamma > 0 else np.float64(1e16)
  precond = sigma ** (-gamma / 2)
  want = (0.5 * precond**-2 + 0.5 * sigma**gamma) ** -0.5
  got = _idu.harmonic_refresh(jnp.float32(precond), jnp.log(jnp.float32(sigma)), gamma, 0.5)
  assert np.isfinite(got)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_harmonic_refresh_limits_are_not_nan():
  inf = np.float32(np.inf)
  # beta3 = 0 drops the previous term even where v underflowed to 0 (0 * inf).
  got = _idu.harmonic_refresh(jnp.float32([0.0, 2.0]), jnp.log(jnp.float32(4.0)), 2.0, 0.0)
  np.testing.assert_allclose(got, [0.25, 0.25], rtol=1e-6)
  # Both terms vanish (beta3 = 0, sigma**gamma = 0): v_new = inf, not inf/inf.
  got = _idu.harmonic_refresh(jnp.float32(1.0), jnp.log(inf), -2.0, 0.0)
  assert float(got) == np.inf
  # sigma = inf with gamma > 0: the new term dominates completely, v_new = 0.
  got = _idu.harmonic_refresh(jnp.float32(3.0), jnp.log(inf), 1.0, 0.5)
  assert float(got) == 0.0
  # A NaN in the second moment is not hidden.
  got = _idu.harmonic_refresh(jnp.float32(3.0), jnp.log(jnp.float32(np.nan)), 1.0, 0.5)
  assert np.isnan(float(got))


@pytest.mark.parametrize("beta3", [0.0, 0.5])
def test_harmonic_refresh_forms_no_infinity_on_finite_inputs(beta3):
  # The first refresh (beta3 = 0) drops the previous term; it must not form v / sqrt(0) = inf
  # and select it away, which trips `jax_debug_infs` under `jax.disable_jit()`.
  precond = jnp.float32([1.0, 0.5, 3.0])
  log_sigma = jnp.log(jnp.float32([4.0, 1e-3, 2.0]))
  with jax.disable_jit(), jax.debug_infs(True), jax.debug_nans(True):
    got = _idu.harmonic_refresh(precond, log_sigma, 1.0, beta3)
  want = (beta3 * np.float64(precond) ** -2 + (1 - beta3) * np.exp(np.float64(log_sigma))) ** -0.5
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_gamma_zero_is_finite_when_sigma_overflows():
  # 0 * log(inf) would be NaN; sigma**0 is 1 whatever sigma is.
  precond = _idu.harmonic_refresh(jnp.float32(1.0), jnp.log(jnp.float32(np.inf)), 0.0, 0.5)
  assert float(precond) == 1.0


@pytest.mark.parametrize("exponent", [-3.0, -2.0, -1.0, -0.5, -0.25, 0.25, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_approximate_power_is_within_its_documented_error(exponent, dtype, request):
  # The docstring's bound: 0.9% * max(1, |exponent|), wherever the exact power is a normal
  # number more than a factor 2 inside the dtype's range (at the edge the result saturates).
  if dtype == "float64":
    request.getfixturevalue("x64")
  info = np.finfo(dtype)
  x = np.logspace(-35, 35, 100_001).astype(dtype)
  approx = np.asarray(_idu.approximate_power(jnp.asarray(x), exponent), np.float64)
  exact = x.astype(np.float64) ** exponent
  inside = (exact > 2 * float(info.tiny)) & (exact < float(info.max) / 2)
  relative_error = np.abs(approx[inside] / exact[inside] - 1)
  assert relative_error.max() <= 0.009 * max(1.0, abs(exponent))
  # Monotone in x, never 0, inf or NaN.
  steps = np.diff(approx) * np.sign(exponent)
  assert np.all(steps >= 0)
  assert np.all(np.isfinite(approx)) and np.all(approx > 0)


# ----------------------------------------------------------------------------
# The shared state-update path and scale_by_idu.
# ----------------------------------------------------------------------------


def _top_level_eqns(jaxpr):
  """The equations of ``jaxpr``, with jitted calls (the step's own jit) inlined."""
  eqns = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in ("pjit", "jit"):
      eqns += _top_level_eqns(eqn.params["jaxpr"].jaxpr)
    else:
      eqns.append(eqn)
  return eqns


def _primitive_names(jaxpr):
  return [eqn.primitive.name for eqn in _top_level_eqns(jaxpr)]


@pytest.mark.parametrize("exact, gamma", [(True, 1.1), (False, 1.0)])
def test_refresh_is_one_cond_for_the_whole_tree(exact, gamma):
  tx = anon_optax.anon(1e-3, gamma=gamma, exact=exact)
  params = {"a": jnp.ones((4, 3)), "b": [jnp.ones(5), jnp.ones(())], "c": jnp.ones(2)}
  state = tx.init(params)
  jaxpr = jax.make_jaxpr(tx.update)(params, state, params).jaxpr
  top_level = _primitive_names(jaxpr)
  assert top_level.count("cond") == 1
  # The refresh math (logs, exps) lives only inside the cond's refresh branch:
  # a normal step computes none of it. (The guard at gamma = 1 is an rsqrt.)
  assert "log" not in top_level and "exp" not in top_level
  (cond_eqn,) = [e for e in _top_level_eqns(jaxpr) if e.primitive.name == "cond"]
  branch_ops = [_primitive_names(b.jaxpr) for b in cond_eqn.params["branches"]]
  assert any("log" in ops for ops in branch_ops)
  assert any("log" not in ops and "exp" not in ops for ops in branch_ops)


def test_scale_by_idu_composes_after_trace():
  # scale_by_idu precondition whatever reaches it: here momentum from trace.
  tx = optax.chain(optax.trace(decay=0.5), anon_optax.scale_by_idu(gamma=0.0))
  reference = optax.trace(decay=0.5)
  params = jnp.ones(4)
  state, ref_state = tx.init(params), reference.init(params)
  for i in range(10):
    grads = jnp.arange(4.0) + i
    updates, state = tx.update(grads, state)
    ref_updates, ref_state = reference.update(grads, ref_state)
    chex.assert_trees_all_close(updates, ref_updates, rtol=1e-6)
