"""The first code cell of every chapter: install rlteach where it is missing (Colab, Binder).

    python scripts/install_cell.py            writes (or refreshes) the cell in every chapter
    python scripts/install_cell.py --check    exits 1 if a chapter's cell is missing or stale

A chapter opened from its page's Colab button runs in a kernel that has torch but not rlteach.
The cell installs ``rlteach[notebooks]`` (plus ``[marl]`` for the multi-agent chapters) from the
repository named in ``_config.yml`` (the same URL drives the book's Colab and Binder buttons),
keeping the torch that is already there: pip is given a constraint pinning the installed
version, so it never swaps Colab's CUDA build for another. Where everything is importable the
cell does nothing and prints nothing, which is why it is stored with no output. In the book it
is folded (the ``hide-cell`` tag): a reader of the web page does not need it, one who opens the
chapter in Colab runs it first.
``RLTEACH_SOURCE`` points the cell at another source (a local checkout, in the tests).
tests/test_notebooks_meta.py checks that every chapter has the current cell.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# rlteach-install-cell"

# Extras and the modules whose absence triggers the install, per chapter (by default, all of
# them need the notebooks extra: ipywidgets for the progress bars).
EXTRAS = {"14_mappo_ippo": "notebooks,marl", "15_qmix_vdn": "notebooks,marl"}
MODULES = {"14_mappo_ippo": ("rlteach", "ipywidgets", "pettingzoo", "mpe2"),
           "15_qmix_vdn": ("rlteach", "ipywidgets", "pettingzoo", "mpe2")}
DEFAULT_EXTRAS = "notebooks"
DEFAULT_MODULES = ("rlteach", "ipywidgets")


def repository_url(root: Path = ROOT) -> str:
    """The repository URL of ``_config.yml`` (``repository.url``), without a trailing slash."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"].rstrip("/")


def install_cell_source(chapter: str, root: Path = ROOT) -> str:
    """The install cell for the chapter ``chapter`` (a notebook's file stem)."""
    extras = EXTRAS.get(chapter, DEFAULT_EXTRAS)
    modules = ", ".join(f'"{m}"' for m in MODULES.get(chapter, DEFAULT_MODULES))
    return f'''{MARKER}: in Colab, Binder or a fresh Jupyter kernel, install rlteach and what
# this chapter needs, keeping the torch already installed; where they are installed, do nothing.
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if any(importlib.util.find_spec(m) is None for m in ({modules})):
    source = os.environ.get("RLTEACH_SOURCE", "git+{repository_url(root)}")
    if Path(source).is_dir():  # a local checkout
        source = Path(source).resolve().as_uri()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as keep:
        keep.write(f"torch=={{importlib.metadata.version('torch')}}\\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--constraint",
                    keep.name, f"rlteach[{extras}] @ {{source}}"], check=True)'''


def chapters(root: Path = ROOT) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9]*.ipynb"))


def first_code_cell(notebook):
    return next(c for c in notebook.cells if c.cell_type == "code")


TAGS = ["hide-cell"]


def is_current(path: Path, root: Path = ROOT) -> bool:
    cell = first_code_cell(nbformat.read(path, as_version=4))
    return cell.source == install_cell_source(path.stem, root) and cell.metadata.get("tags") == TAGS


def write(path: Path, root: Path = ROOT) -> bool:
    """Insert or refresh the cell; True if the notebook changed."""
    notebook = nbformat.read(path, as_version=4)
    source = install_cell_source(path.stem, root)
    cell = first_code_cell(notebook)
    if cell.source == source and cell.metadata.get("tags") == TAGS:
        return False
    if not cell.source.startswith(MARKER):
        cell = nbformat.v4.new_code_cell(source)
        notebook.cells.insert(notebook.cells.index(first_code_cell(notebook)), cell)
    cell.source = source
    cell.metadata["tags"] = TAGS
    nbformat.write(notebook, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="report stale cells, change nothing")
    args = parser.parse_args(argv)
    stale = [p.name for p in chapters() if not is_current(p)]
    if args.check:
        for name in stale:
            print(f"{name}: install cell missing or stale (python scripts/install_cell.py)")
        return 1 if stale else 0
    for path in chapters():
        if write(path):
            print(f"{path.name}: install cell written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
