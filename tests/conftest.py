"""Fixtures shared by the test modules."""

import jax
import pytest


@pytest.fixture
def x64():
  """Runs the test with float64 enabled (`jax_enable_x64`), restored afterwards."""
  with jax.enable_x64(True):
    yield
