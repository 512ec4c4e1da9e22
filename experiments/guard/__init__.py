"""Measurements of Anon's default step guard (its factor C) against the authors' exact rule."""
