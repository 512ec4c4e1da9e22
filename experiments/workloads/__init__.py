"""Small training workloads in the style of the Flax and Optax documentation examples.

Each module ``experiments.workloads.<name>`` has ``run(optimizer_name, learning_rate, seed,
quick=False) -> dict`` that trains one model with one optimizer (see ``common.OPTIMIZERS``) and
returns ``final_metric``, ``metric_name`` ("accuracy" or "loss"), ``first_nonfinite_step`` (None or
the 1-based step after which the loss or the parameters were first non-finite; training stops
there) and ``train_loss``. ``python -m experiments.workloads.run`` runs them all; see
docs/workloads.md.
"""

WORKLOADS = tuple(
  "nnx_cnn linen_trainstate reduce_on_plateau lookahead multisteps char_gpt".split()
)
