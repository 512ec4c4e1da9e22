"""The public API's documentation: docstring examples run and print what they show, every
argument is documented with its default, and docs/api.md documents every public name, and only
those."""

import doctest
import importlib
import inspect
import pathlib
import pkgutil
import re

import pytest

import anon_optax

API_PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "api.md"
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


def test_api_page_documents_every_public_name():
  documented = re.findall(
    r"^\.\. auto(?:function|class):: (\w+)$", API_PAGE.read_text(), flags=re.MULTILINE
  )
  assert sorted(documented) == sorted(anon_optax.__all__), (
    "docs/api.md must have one autofunction/autoclass per name in anon_optax.__all__"
  )


def _documented_arguments(docstring):
  """The names in a Google-style ``Args:`` section."""
  lines = inspect.cleandoc(docstring).splitlines()
  if "Args:" not in lines:
    return []
  start = lines.index("Args:") + 1
  names = []
  for line in lines[start:]:
    if line and not line.startswith(" "):
      break  # The next section (Returns:, Examples:, ...).
    match = re.match(r"^  (\*{0,2}\w+)(?: \(.*\))?:", line)
    if match:
      names.append(match.group(1).lstrip("*"))
  return names


_PUBLIC_FUNCTIONS = [
  name for name in anon_optax.__all__ if inspect.isfunction(getattr(anon_optax, name))
]


@pytest.mark.parametrize("name", _PUBLIC_FUNCTIONS)
def test_every_argument_is_documented(name):
  function = getattr(anon_optax, name)
  parameters = list(inspect.signature(function).parameters)
  documented = _documented_arguments(function.__doc__)
  assert documented == parameters, (
    f"{name}: signature {parameters}, Args: {documented} "
    f"(missing {sorted(set(parameters) - set(documented))}, "
    f"extra {sorted(set(documented) - set(parameters))})"
  )


@pytest.mark.parametrize("name", _PUBLIC_FUNCTIONS)
def test_every_documented_argument_states_its_default(name):
  function = getattr(anon_optax, name)
  doc = inspect.cleandoc(function.__doc__)
  for parameter in inspect.signature(function).parameters.values():
    if parameter.default is inspect.Parameter.empty:
      continue
    entry = re.search(rf"^  {parameter.name}:(.*?)(?=^  \w+:|^\S|\Z)", doc, re.M | re.S)
    assert entry and "default" in entry.group(1).lower(), (name, parameter.name)


def test_no_source_file_holds_control_characters():
  root = pathlib.Path(anon_optax.__file__).parent
  for path in sorted(root.glob("*.py")):
    text = path.read_text()
    bad = [(i, repr(c)) for i, c in enumerate(text) if ord(c) < 32 and c not in "\n\t"]
    assert not bad, f"{path.name}: control characters at {bad[:5]}"
