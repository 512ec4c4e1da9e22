"""Experiments with anon_optax: the paper reproduction and notes (see experiments/README.md)."""
