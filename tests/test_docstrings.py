"""The docstring examples of the public API run and print what they show."""

import doctest
import importlib
import pkgutil

import pytest

import anon_optax

_MODULES = sorted(
  info.name for info in pkgutil.iter_modules(anon_optax.__path__, prefix="anon_optax.")
)


@pytest.mark.parametrize("module_name", _MODULES)
def test_docstring_examples(module_name):
  module = importlib.import_module(module_name)
  result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.failed == 0, f"{result.failed} doctest(s) failed in {module_name}"


def test_public_names_are_exported():
  for name in anon_optax.__all__:
    assert hasattr(anon_optax, name), name
  for name in ("anon", "scale_by_anon", "ScaleByAnonState", "scale_by_idu"):
    assert name in anon_optax.__all__
