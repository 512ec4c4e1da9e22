"""What benchmarks/ and experiments/ share: data, models, machine info, timing and results files.

* :mod:`tooling.data`: the digits images (one loader, two splits) and the character corpus;
* :mod:`tooling.models`: the Flax NNX models of the experiments and the plain-JAX models of the
  speed benchmarks;
* :mod:`tooling.machine`: CPU model, machine info, interleaved timing, and ``write_results``, the
  one way a script writes its results file and its Markdown table.

Benchmarks and experiments are part of this repository: they may import the package's own modules
(``anon_optax._idu`` etc.) where they measure its internals. Examples and notebooks use only the
public API.
"""
