"""Speed and memory benchmarks of anon_optax (run with python -m; see benchmarks/README.md)."""
