"""The API reference page (docs/api.md) documents every public name, and only those."""

import pathlib
import re

import anon_optax

API_PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_page_documents_every_public_name():
  documented = re.findall(
    r"^\.\. auto(?:function|class):: (\w+)$", API_PAGE.read_text(), flags=re.MULTILINE
  )
  assert sorted(documented) == sorted(anon_optax.__all__), (
    "docs/api.md must have one autofunction/autoclass per name in anon_optax.__all__"
  )
