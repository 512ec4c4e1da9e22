"""One-off investigations, kept runnable (see experiments/README.md)."""
