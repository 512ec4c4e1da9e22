"""Sphinx configuration for the anon_optax documentation.

Build from the repository root with ``sphinx-build -W -b html docs docs/_build/html`` after
``pip install -e ".[docs]"``. The notebooks in ``notebooks/`` are executed at build time into
``docs/_notebooks/`` (git-ignored; see ``_execute_notebooks``) and rendered from there.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import tempfile

import anon_optax

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
# The notebooks rendered on the site, by path from the repository root. Each is executed in its
# own folder and written to docs/_notebooks/.
NOTEBOOKS = ("notebooks/anon_tour.ipynb", "notebooks/adaptivity_sweep.ipynb")
EXECUTED_NOTEBOOKS = DOCS / "_notebooks"
# Set ANON_OPTAX_DOCS_EXECUTE=0 for a quick local build that renders the notebooks without
# outputs; CI builds with outputs.
EXECUTE = os.environ.get("ANON_OPTAX_DOCS_EXECUTE", "1") != "0"
NOTEBOOK_TIMEOUT_S = 600

project = "anon_optax"
author = "anon_optax developers"
copyright = "2026, anon_optax developers"
release = anon_optax.__version__
version = release

extensions = [
  "myst_nb",
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  # MathJax served with the site, so the math renders without a network connection.
  "sphinx-mathjax-offline",
  "sphinx.ext.viewcode",
]

source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
# results/*.md are results tables (tooling.machine.write_results), included where they are quoted.
exclude_patterns = ["_build", "results/*.md", "**.ipynb_checkpoints"]

# Markdown: $...$ and $$...$$ math (docs/algorithm.md), anchors for the headings that pages link.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
# The notebooks are executed above, before Sphinx reads them; myst-nb only renders.
nb_execution_mode = "off"

# API reference from the docstrings (Google style: Args/Returns/Examples/References).
autodoc_member_order = "bysource"
# Signatures show names and defaults, as Optax's pages do; the types and ranges are in each
# docstring's Args section.
autodoc_typehints = "none"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "sphinx_book_theme"
html_title = f"anon_optax {release}"
html_theme_options = {"show_toc_level": 2}


def _python3_kernel_here() -> str:
  """A folder with a `python3` kernelspec that runs this interpreter, ahead of any other."""
  kernels = pathlib.Path(tempfile.mkdtemp(prefix="anon_optax_docs_kernel_"))
  spec = kernels / "kernels" / "python3"
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(
    json.dumps(
      {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (docs)",
        "language": "python",
      }
    )
  )
  return str(kernels)


def _execute_notebooks(app) -> None:
  """Writes each notebook in NOTEBOOKS to docs/_notebooks/, executed unless EXECUTE is off."""
  del app
  shutil.rmtree(EXECUTED_NOTEBOOKS, ignore_errors=True)
  EXECUTED_NOTEBOOKS.mkdir()
  if not EXECUTE:
    for name in NOTEBOOKS:
      shutil.copy(ROOT / name, EXECUTED_NOTEBOOKS)
    return
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top

  os.environ["JUPYTER_PATH"] = _python3_kernel_here()
  # The inline backend turns each figure into an image output that the page shows (a
  # non-interactive backend such as Agg, if set outside, would drop the figures).
  os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
  for name in NOTEBOOKS:
    path = ROOT / name
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
      notebook,
      kernel_name="python3",
      timeout=NOTEBOOK_TIMEOUT_S,
      resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # A failing cell fails the build.
    nbformat.write(notebook, EXECUTED_NOTEBOOKS / path.name)


def setup(app):
  app.connect("builder-inited", _execute_notebooks)
