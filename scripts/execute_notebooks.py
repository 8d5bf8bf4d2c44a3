"""Execute chapters at their full training budget and store the outputs the book shows.

    python scripts/execute_notebooks.py [NOTEBOOK ...]     (default: notebooks/[0-9]*.ipynb)

Each notebook runs top to bottom in a fresh kernel with ``RLTEACH_QUICK=0``, from the notebooks
folder, as a reader would run it. Afterwards the stream outputs of each cell are merged and every
carriage-return redraw (a tqdm progress bar) is collapsed to the line it finally shows, so the
stored notebook and the book page show one finished bar, not a hundred partial ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def collapse_carriage_returns(text: str) -> str:
    """Keep, for each line, what a terminal would finally show after its ``\\r`` redraws."""
    lines = []
    for line in text.split("\n"):
        parts = [p for p in line.split("\r") if p]
        lines.append(parts[-1] if parts else "")
    return "\n".join(lines)


def merge_streams(cell) -> None:
    """Join consecutive outputs of the same stream (stdout/stderr) and collapse redraws."""
    merged = []
    for output in cell.get("outputs", []):
        if (
            output.output_type == "stream"
            and merged
            and merged[-1].output_type == "stream"
            and merged[-1].name == output.name
        ):
            merged[-1].text += output.text
        else:
            merged.append(output)
    for output in merged:
        if output.output_type == "stream":
            output.text = collapse_carriage_returns(output.text)
    cell["outputs"] = merged


def execute(path: Path, timeout: int) -> float:
    notebook = nbformat.read(path, as_version=4)
    os.environ["RLTEACH_QUICK"] = "0"
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            merge_streams(cell)
    nbformat.write(notebook, path)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    for path in paths:
        seconds = execute(path, args.timeout)
        print(f"{path.name}: executed at full budget in {seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
