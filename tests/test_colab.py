"""A chapter opened in Colab: a kernel with torch and Jupyter but no rlteach.

The test builds such an environment (a fresh virtual environment with torch, ipykernel,
nbclient and matplotlib, as Colab has them, and no rlteach), copies one chapter out of the
checkout, and executes it top to bottom in quick mode with ``RLTEACH_SOURCE`` pointing the
chapter's install cell at this checkout instead of the repository URL. It passes when every cell
runs, rlteach ends up installed from the checkout, and torch is the very build that was there
before (the install cell pins it). Slow (an install from the package index, about two minutes).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from install_helpers import clean_env, fresh_venv, run

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "notebooks" / "01_returns_and_value_estimators.ipynb"


def test_chapter_runs_in_a_kernel_without_rlteach(tmp_path):
    env = clean_env()
    bindir = fresh_venv(tmp_path / "colab", "ipykernel", "nbclient", "nbformat", "matplotlib")
    python = bindir / "python"
    probe = "import importlib.util, torch; print(importlib.util.find_spec('rlteach') is None, torch.__version__)"
    missing, torch_before = run([python, "-c", probe], cwd=tmp_path, env=env).split()
    assert missing == "True", "the simulated Colab kernel must start without rlteach"

    chapter = tmp_path / "chapter" / CHAPTER.name
    chapter.parent.mkdir()
    shutil.copy(CHAPTER, chapter)
    notebook = nbformat.read(chapter, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, chapter)

    # PIP_NO_CACHE_DIR: pip caches the wheel it builds from a file:// URL under that URL, so a
    # machine that ran this test before would install an older checkout's rlteach
    env.update(RLTEACH_SOURCE=str(ROOT), RLTEACH_QUICK="1", MPLBACKEND="Agg", PIP_NO_CACHE_DIR="1")
    executed = tmp_path / "chapter" / "executed.ipynb"
    run([python, "-c",
         "import sys, nbformat; from nbclient import NotebookClient\n"
         "nb = nbformat.read(sys.argv[1], as_version=4)\n"
         "NotebookClient(nb, timeout=600, kernel_name='python3',\n"
         "               resources={'metadata': {'path': sys.argv[3]}}).execute()\n"
         "nbformat.write(nb, sys.argv[2])\n",
         chapter, executed, chapter.parent],
        cwd=chapter.parent, env=env)

    ran = nbformat.read(executed, as_version=4)
    errors = [o for c in ran.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    first = next(c for c in ran.cells if c.cell_type == "code")
    assert not [o for o in first.outputs if o.output_type == "stream" and o.name == "stdout"], (
        "the install cell must install quietly"
    )
    where = "import rlteach, torch; print(rlteach.__file__, torch.__version__)"
    location, torch_after = run([python, "-c", where], cwd=tmp_path, env=env).split()
    assert str(tmp_path / "colab") in location, f"rlteach was not installed into the kernel: {location}"
    assert torch_after == torch_before, f"the install replaced torch {torch_before} by {torch_after}"


@pytest.mark.parametrize("name", ["environment.yml"])
def test_binder_builds_from_the_repositorys_own_environment_file(name):
    # repo2docker reads binder/ or .binder/ first when present; the root files otherwise.
    assert not (ROOT / "binder").exists() and not (ROOT / ".binder").exists()
    text = (ROOT / name).read_text()
    assert "- -e ." in text, "Binder's image must install rlteach itself"
    for other in ("requirements.txt", "Pipfile", "setup.py", "apt.txt", "postBuild"):
        assert not (ROOT / other).exists(), f"{other} would change what Binder builds"
