"""What benchmarks/ and experiments/ share: data, models, machine info and timing.

* :mod:`tooling.data`: the digits images (one loader, two splits) and the character corpus.

The tooling depends one way: benchmarks/ and experiments/ import ``anon_optax``'s public API and
this package, never each other and never a private ``anon_optax`` module.
"""
