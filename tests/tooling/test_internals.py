"""tooling/internals.py's copies compute what the package's private functions compute.

The tooling may not import ``anon_optax``'s private modules; a test may. Each copy is compared,
bit for bit, with the function it was copied from, on inputs that cover the edge cases the
package handles (zeros, huge and tiny values, gamma 0, beta3 0, an infinite guard factor).
"""

import inspect
import types

import jax.numpy as jnp
import numpy as np
import pytest

import anon_optax
from anon_optax import _common
from anon_optax import _idu
from tooling import internals

VALUES = np.array([0.0, 1e-30, 1e-8, 0.3, 1.0, 2.5, 1e8, 3e38], np.float32)


def _same(a, b):
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_read_back_from_memory():
  like = jnp.asarray(np.array([1.0, np.nan, np.inf, 0.0] * 2, np.float32))
  _same(
    internals.read_back_from_memory(jnp.asarray(VALUES), like),
    _common.read_back_from_memory(jnp.asarray(VALUES), like),
  )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, -2.0])
@pytest.mark.parametrize("beta3", [0.0, 0.5, 0.9])
def test_harmonic_refresh(gamma, beta3):
  precond = jnp.asarray(np.roll(VALUES, 3) + 1)
  log_sigma = jnp.log(jnp.asarray(VALUES) + 1e-16)
  _same(
    internals.harmonic_refresh(precond, log_sigma, gamma, beta3),
    _idu.harmonic_refresh(precond, log_sigma, gamma, beta3),
  )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("exponent", [-0.5, -1.0, 0.25, 3.0])
def test_approximate_power(dtype, exponent):
  x = jnp.asarray(VALUES.astype(dtype))
  _same(internals.approximate_power(x, exponent), _idu.approximate_power(x, exponent))


@pytest.mark.parametrize("factor", [1.0, 10.0, np.inf])
def test_guarded_preconditioner(factor):
  precond, nu = jnp.asarray(VALUES + 1), jnp.asarray(np.roll(VALUES, 2))
  kwargs = dict(inverse_correction=jnp.float32(3.0), eps=1e-16, gamma=1.0, factor=factor)
  _same(
    internals.guarded_preconditioner(precond, nu, **kwargs),
    _idu.guarded_preconditioner(precond, nu, **kwargs),
  )


def test_default_guard_factor():
  """The factor the guard sweep and ablation call the default is anon's default guard_factor."""
  default = inspect.signature(anon_optax.anon).parameters["guard_factor"].default
  assert internals.DEFAULT_GUARD_FACTOR == default


@pytest.mark.parametrize("num_accumulated", [0, 1, 7])
def test_step_preconditioner(num_accumulated):
  """On a refresh step (n = 0) the fresh preconditioner; between refreshes, the guarded one."""
  state = types.SimpleNamespace(
    precond={"a": jnp.asarray(VALUES + 1)},
    nu={"a": jnp.asarray(np.roll(VALUES, 2))},
    num_accumulated=jnp.int32(num_accumulated),
  )
  ours = internals.step_preconditioner(
    state.precond, state.nu, state.num_accumulated, b2=0.999, eps=1e-16, gamma=1.0, factor=10.0
  )
  config = _idu.make_config(
    b2=0.999,
    eps=1e-16,
    gamma=1.0,
    beta3=0.5,
    refresh_base=2,
    max_refresh_interval=None,
    guard_factor=10.0,
    exact=False,
    nu_dtype=None,
    precond_dtype=None,
  )
  theirs = _idu.step_preconditioner(state, config, gamma=1.0)
  _same(ours["a"], theirs["a"])
