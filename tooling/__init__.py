"""What benchmarks/ and experiments/ share: data, models, machine info, timing, internals' copies.

* :mod:`tooling.data`: the digits images (one loader, two splits) and the character corpus;
* :mod:`tooling.models`: the Flax NNX models of the experiments and the plain-JAX models of the
  speed benchmarks;
* :mod:`tooling.machine`: CPU model, machine info for results files, interleaved timing;
* :mod:`tooling.internals`: local copies of the few package internals the tooling measures
  against (``tests/tooling/test_internals.py`` checks that they equal the package's).

The tooling depends one way: benchmarks/ and experiments/ import ``anon_optax``'s public API and
this package, never each other and never a private ``anon_optax`` module.
"""
