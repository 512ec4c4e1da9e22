"""Executes every notebook in notebooks/ top to bottom, from three working directories (slow).

Each notebook must run from the repository root, from ``notebooks/`` and from an empty directory
outside the repository, with only the package importable (``PYTHONPATH`` holds a directory with
nothing but ``anon_optax`` in it). ``ANON_OPTAX_NOTEBOOK_QUICK=1`` selects each notebook's small
setting (its parameters cell) so that the six runs stay short.
"""

import json
import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
WORKING_DIRECTORIES = ("repo_root", "notebooks_dir", "outside_repo")


@pytest.fixture
def kernel_with_only_the_package(tmp_path, monkeypatch):
  """A `python3` kernelspec running this interpreter, seeing the package and nothing else."""
  spec = tmp_path / "kernels" / "python3"
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(
    json.dumps(
      {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test)",
        "language": "python",
      }
    )
  )
  site = tmp_path / "site"
  site.mkdir()
  (site / "anon_optax").symlink_to(REPO / "anon_optax", target_is_directory=True)
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
  monkeypatch.setenv("PYTHONPATH", str(site))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.setenv("ANON_OPTAX_NOTEBOOK_QUICK", "1")


def test_notebooks_found():
  assert {p.name for p in NOTEBOOKS} >= {"anon_tour.ipynb", "adaptivity_sweep.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_and_starts_with_a_pip_cell(path):
  nb = nbformat.read(path, as_version=4)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(not c.get("outputs") for c in code), f"{path.name} is committed with outputs"
  first = code[0].source.splitlines()
  assert first and all(line.startswith("#") for line in first), code[0].source
  assert any("%pip install" in line for line in first), code[0].source
  assert any("parameters" in c.metadata.get("tags", ()) for c in code), (
    f"{path.name} has no cell tagged 'parameters'"
  )
  source = "\n".join(c.source for c in code)
  assert "sys.path" not in source


@pytest.mark.slow
@pytest.mark.parametrize("where", WORKING_DIRECTORIES)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, where, kernel_with_only_the_package, tmp_path):
  cwd = {"repo_root": REPO, "notebooks_dir": path.parent, "outside_repo": tmp_path / "empty"}[where]
  cwd.mkdir(exist_ok=True)
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(
    nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(cwd)}}
  )
  client.execute()  # Raises CellExecutionError on the first failing cell.
