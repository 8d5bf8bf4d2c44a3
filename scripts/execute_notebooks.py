"""Execute chapters at their full training budget and store the outputs the book shows.

    python scripts/execute_notebooks.py [NOTEBOOK ...]     (default: notebooks/[0-9]*.ipynb)

Each notebook runs top to bottom in a fresh kernel with ``RLTEACH_QUICK=0``, from the notebooks
folder, as a reader would run it. Afterwards the stream outputs of each cell are merged and every
carriage-return redraw (a tqdm progress bar) is collapsed to the line it finally shows, so the
stored notebook and the book page show one finished bar, not a hundred partial ones.

Each executed notebook records in its metadata (``metadata.rlteach.results_stamp``) what produced
its stored outputs: the full budget (``RLTEACH_QUICK=0``), a hash of its code cells and a hash of
each rlteach recipe module it imports (``rlteach/recipes/<name>.py``, the recipe modules those
import in turn, such as the shared ``_offpolicy.py`` loop, and ``base.py`` with them).
Module hashes are taken over the syntax tree without docstrings, so comments, docstrings and
formatting do not count; any code change does. A chapter that reads stored runs
(``stored_runs("mujoco")``, :mod:`rlteach.stored`) also records a hash of the files it reads,
per suite (``stored_runs_sha256``): a run added, removed or replaced makes its outputs stale. A
chapter that reads no store records no such entry, so its stamp is what it was before. tests/test_notebooks_meta.py compares the stamp
with the current code and fails, naming what changed, when the outputs are stale.

    python scripts/execute_notebooks.py --stamp-only notebooks/NN_x.ipynb

records the stamp WITHOUT executing: only for a notebook whose stored outputs you have checked
still come from the current code (e.g. the recipe change was a progress bar or a checkpoint hook
that cannot alter the numbers). When in doubt, execute.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


STAMP_KEY = "results_stamp"
RECIPES = Path("rlteach") / "recipes"
_IMPORT_FROM = re.compile(
    r"^\s*from\s+rlteach\.recipes(\.\w+)?\s+import\s+(\([^)]*\)|[^\n]+)", re.M
)
_IMPORT = re.compile(r"^\s*import\s+rlteach\.recipes\.(\w+)", re.M)


def code_source(notebook) -> str:
    """The code cells' source, as the kernel runs it (blank cells dropped)."""
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    sources = [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells
    ]
    return "\n# ---- cell ----\n".join(s.strip() for s in sources if s.strip())


def _recipe_names(source: str) -> set[str]:
    """Names of the modules in rlteach/recipes/ that a piece of code imports."""
    names = set()
    for match in _IMPORT_FROM.finditer(source):
        if match.group(1):
            names.add(match.group(1)[1:])
        else:
            for item in match.group(2).strip("() \n").split(","):
                name = item.strip().split(" as ")[0].strip()
                if name:
                    names.add(name)
    names.update(_IMPORT.findall(source))
    return names


def recipe_modules_used(source: str, root: Path = ROOT) -> list[str]:
    """Repository paths of the recipe modules a notebook's code imports, followed through the
    recipes' own imports (sac.py brings _offpolicy.py; c51.py brings dqn.py), plus base.py."""
    paths: set[Path] = set()
    todo = list(_recipe_names(source))
    while todo:
        path = RECIPES / f"{todo.pop()}.py"
        if path in paths or not (root / path).is_file():
            continue
        paths.add(path)
        todo.extend(_recipe_names((root / path).read_text(encoding="utf-8")))
    if paths:
        paths.add(RECIPES / "base.py")
    return sorted(p.as_posix() for p in paths if (root / p).is_file())


_STORED_RUNS = re.compile(r"""\bstored_runs\(\s*(?:suite\s*=\s*)?["']([\w./-]+)["']""")


def stored_suites_used(source: str) -> list[str]:
    """The suites (folders under ``benchmarks/``) a notebook's code reads with ``stored_runs``."""
    return sorted(set(_STORED_RUNS.findall(source)))


def stored_fingerprint(suite: str, root: Path = ROOT) -> str:
    """sha256 over the stored run files of a suite: their paths and their bytes (the files
    :func:`rlteach.stored.stored_files` lists, looked up under ``root``)."""
    from rlteach.stored import stored_files

    digest = hashlib.sha256()
    folder = root / "benchmarks" / suite
    for path in stored_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def module_fingerprint(path: Path) -> str:
    """sha256 of a module's syntax tree without docstrings (comments and layout do not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def results_stamp(notebook, root: Path = ROOT) -> dict:
    """What the stored outputs come from: budget, code cells, recipe modules, stored runs."""
    source = code_source(notebook)
    stamp = {
        "RLTEACH_QUICK": "0",
        "code_cells_sha256": hashlib.sha256(source.encode()).hexdigest(),
        "recipe_modules_sha256": {
            p: module_fingerprint(root / p) for p in recipe_modules_used(source, root)
        },
    }
    suites = stored_suites_used(source)
    if suites:  # absent otherwise: the stamps of chapters that read no store are unchanged
        stamp["stored_runs_sha256"] = {
            f"benchmarks/{suite}": stored_fingerprint(suite, root) for suite in suites
        }
    return stamp


def stamp(notebook, root: Path = ROOT) -> None:
    notebook.metadata.setdefault("rlteach", {})[STAMP_KEY] = results_stamp(notebook, root)


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
    os.environ["RLTEACH_TEXT_PROGRESS"] = "1"  # the book is static: text bars, not widgets
    # TorchRL's (and rlteach's) warning that a loss's target networks have no updater attached:
    # right in a training loop, noise under the cells that compute a loss by hand (chapter 6
    # says so where a reader first meets it)
    os.environ["RL_WARNINGS"] = "0"
    start = time.perf_counter()
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            merge_streams(cell)
    stamp(notebook)
    nbformat.write(notebook, path)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    parser.add_argument(
        "--stamp-only",
        action="store_true",
        help="record the results stamp without executing (only for notebooks whose stored "
        "outputs you have checked still come from the current code)",
    )
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if args.stamp_only:
        for path in paths:
            notebook = nbformat.read(path, as_version=4)
            stamp(notebook)
            nbformat.write(notebook, path)
            print(f"{path.name}: stamped without executing", file=sys.stderr)
        return 0
    for path in paths:
        seconds = execute(path, args.timeout)
        print(f"{path.name}: executed at full budget in {seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
