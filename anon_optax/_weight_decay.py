"""The three weight-decay modes of the authors' code, as Optax chains.

Shared by `anon` and `hvadam`: each wraps its scaling transformation (the part
that turns gradients into a unit-learning-rate step) with weight decay and the
learning rate.
"""

import jax.numpy as jnp
import optax

from anon_optax import _common
from anon_optax import _validation


def chain_with_weight_decay(
  scale_by: optax.GradientTransformation,
  learning_rate: optax.ScalarOrSchedule,
  weight_decay: optax.ScalarOrSchedule,
  weight_decay_mode: str,
  mask=None,
) -> optax.GradientTransformationExtraArgs:
  r"""Returns `scale_by` chained with weight decay and the learning rate.

  With :math:`\eta_t` the learning rate, :math:`\lambda` the weight decay and
  :math:`u_t` the output of `scale_by`:

  - ``"l2"``: :math:`g_t \leftarrow g_t + \lambda \theta_t` before `scale_by`
    (the authors' default; the decay passes through the moments);
  - ``"decoupled"``: :math:`\theta_{t+1} = \theta_t - \eta_t (u_t + \lambda
    \theta_t)` (AdamW style, scaled by the learning rate);
  - ``"fixed"``: :math:`\theta_{t+1} = (1 - \lambda) \theta_t - \eta_t u_t`
    (not scaled by the learning rate; :math:`\lambda \in [0, 1]`).

  Args:
    scale_by: the scaling transformation.
    learning_rate: a float or an Optax schedule.
    weight_decay: a non-negative float (or a traced value).
    weight_decay_mode: one of ``"l2"``, ``"decoupled"``, ``"fixed"``.
    mask: as in :func:`optax.add_decayed_weights`: which leaves are decayed.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Raises:
    ValueError: for a non-finite learning rate, a weight decay out of its
      range, an unknown mode (Python numbers only; schedules and traced values
      are not inspected); at ``init``, a mask that does not fit the
      parameters; at ``update``, updates or ``params`` whose tree or shapes
      are not those of the parameters given to ``init``.
  """
  _validation.check_real_or_schedule("learning_rate", learning_rate)
  _validation.check_weight_decay(weight_decay, weight_decay_mode)
  # Injected for complex parameters they are complex; used as real numbers, they leave the
  # updates of real leaves in a mixed tree real.
  learning_rate = _common.real_part(learning_rate)
  weight_decay = _common.real_part(weight_decay)
  chained = _chain(scale_by, learning_rate, weight_decay, weight_decay_mode, mask)
  # Where `scale_by`'s state is in the chain's: after the decay in "l2" mode, first otherwise.
  position = 1 if weight_decay_mode == "l2" else 0

  def init_fn(params):
    _validation.check_mask(mask, params)
    return chained.init(params)

  def update_fn(updates, state, params=None, **extra_args):
    # Checked before the weight decay, which maps the updates and the parameters together and
    # would fail inside JAX, or drop an extra parameter leaf. The scaling's first moment has
    # the tree and shapes of the parameters given to `init`.
    reference = state[position].mu
    _validation.check_updates_match(updates, reference)
    _validation.check_params_match(params, reference)
    return chained.update(updates, state, params, **extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _chain(scale_by, learning_rate, weight_decay, weight_decay_mode, mask):
  if weight_decay_mode == "l2":
    return optax.chain(
      optax.add_decayed_weights(weight_decay, mask),
      scale_by,
      optax.scale_by_learning_rate(learning_rate),
    )
  if weight_decay_mode == "decoupled":
    return optax.chain(
      scale_by,
      optax.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate),
    )
  # "fixed": the decay is added after the (negated) learning rate is applied,
  # so its sign is flipped here to shrink the parameters by (1 - weight_decay).
  if callable(weight_decay):
    negated_decay = lambda count: -jnp.asarray(weight_decay(count))
  else:
    negated_decay = -weight_decay
  return optax.chain(
    scale_by,
    optax.scale_by_learning_rate(learning_rate),
    optax.add_decayed_weights(negated_decay, mask),
  )
