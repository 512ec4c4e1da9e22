"""HVAdam called without `jax.jit`: no compile per step, flat memory.

Before issue 12's fix every eager `update` compiled a new program:
`b ** count` with a concrete step count takes `jnp.power`'s concrete-integer
path (`lax.integer_pow` specialised on the exponent), so each step number was
a new program, and the compilation cache grew with it.
"""

import contextlib
import resource

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import anon_optax

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def _count_compiles():
  """Counts XLA compilations (jax.monitoring's backend-compile events)."""
  count = [0]

  def listener(event, duration_secs, **kwargs):
    del duration_secs, kwargs
    if event == _COMPILE_EVENT:
      count[0] += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield count
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def _eager_loop(tx, params, num_steps, seed=0):
  """`num_steps` un-jitted updates with gradients that switch branches."""
  rng = np.random.default_rng(seed)
  direction = jax.tree.map(lambda p: rng.normal(size=np.shape(p)), params)
  state = tx.init(params)
  for t in range(num_steps):
    # Growing along one direction (switch-offs, restarts), then noise
    # (extra steps), in cycles of 20 steps.
    phase = t % 20
    grads = jax.tree.map(
      lambda d, phase=phase: jnp.asarray(
        1.3**phase * d if phase < 10 else 1.3**10 * rng.normal(size=d.shape), jnp.float32
      ),
      direction,
    )
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def _hvadam_state(state):
  if isinstance(state, anon_optax.ScaleByHVAdamState):
    return state
  return next(
    s
    for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, anon_optax.ScaleByHVAdamState))
    if isinstance(s, anon_optax.ScaleByHVAdamState)
  )


def _params():
  return {"w": jnp.zeros((4, 3)), "b": [jnp.zeros(3), jnp.zeros(())]}


@pytest.mark.parametrize(
  "make_tx",
  [
    lambda: anon_optax.hvadam(0.05, gamma=0.5, weight_decay=1e-3),
    lambda: anon_optax.scale_by_hvadam(gamma=0.5),
    lambda: anon_optax.hvadam(
      optax.linear_schedule(0.1, 0.01, 100), gamma=optax.linear_schedule(1.0, 0.0, 100)
    ),
  ],
  ids=["hvadam", "scale_by_hvadam", "schedules"],
)
def test_eager_steps_do_not_compile(make_tx):
  tx = make_tx()
  params = _params()
  _eager_loop(tx, params, num_steps=3)  # Warm-up: the first compilations.
  with _count_compiles() as compiles:
    final, state = _eager_loop(tx, params, num_steps=200)
  chex.assert_tree_all_finite(final)
  hv_state = _hvadam_state(state)
  assert int(hv_state.count) == 200
  # The agreement branch ran (extra steps or switch-offs), not only restarts.
  assert int(hv_state.step2) > 0 or int(hv_state.flag) == -1
  assert compiles[0] <= 3, compiles[0]


def test_a_new_optimizer_reuses_the_compiled_step():
  params = _params()
  _eager_loop(anon_optax.hvadam(0.05, gamma=0.5), params, num_steps=2)
  with _count_compiles() as compiles:
    _eager_loop(anon_optax.hvadam(0.01, b1=0.8, gamma=2.0), params, num_steps=5)
  assert compiles[0] <= 3, compiles[0]


def _resident_bytes():
  with open("/proc/self/statm") as statm:
    return int(statm.read().split()[1]) * resource.getpagesize()


def test_eager_memory_stays_flat():
  tx = anon_optax.hvadam(0.05, gamma=0.5)
  params = _params()
  _eager_loop(tx, params, num_steps=50)  # Caches and allocator settle.
  arrays_before = len(jax.live_arrays())
  rss_before = _resident_bytes()
  _eager_loop(tx, params, num_steps=300)
  growth = _resident_bytes() - rss_before
  # Before the fix: about 1 MiB per step (one compiled program each).
  assert growth < 32 * 2**20, growth / 2**20
  assert len(jax.live_arrays()) <= arrays_before + 5
