"""The paper's claims at small scale: python -m experiments.paper.run_all writes docs/RESULTS.md."""
