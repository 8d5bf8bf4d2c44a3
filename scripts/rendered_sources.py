"""The sources the chapters render, and how long each is; nothing in a notebook is executed.

A chapter shows code by rendering a source, ``inspect.getsource(obj)`` or
``rlteach.book.show_source(obj)``. This script reads each chapter's code cells with ``ast``,
runs only their ``import`` statements (importing rlteach modules, as the chapter does), evaluates
the rendered expressions (``TD3Loss.value_loss``, ``td3.build``) in that namespace, and lists every
rendered object with its length in lines and the way the chapter renders it.

    python scripts/rendered_sources.py [--min-lines 60] [NOTEBOOK ...]

tests/test_book_source.py uses :func:`rendered_sources` to check that every source of 60 lines or
more is rendered with ``show_source`` (which folds its plumbing) rather than in full.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
RENDERERS = {"getsource": "inspect.getsource", "show_source": "show_source"}


@dataclass
class Rendered:
    notebook: str
    cell_id: str
    expression: str  # as written in the cell, e.g. "TD3Loss.value_loss"
    how: str  # "inspect.getsource" or "show_source"
    lines: int  # length of the source, in lines
    source: str  # inspect.getsource of the rendered object


def _cell_sources(notebook) -> list[tuple[str, str]]:
    return [
        (c.get("id", ""), c.source)
        for c in notebook.cells
        if c.cell_type == "code" and not c.source.lstrip().startswith("# rlteach-install-cell")
    ]


def _imports(trees: list[ast.Module]) -> list[ast.stmt]:
    found = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
    return found


def rendered_sources(path: Path) -> list[Rendered]:
    """Every source a chapter renders, found by reading its code cells (imports only are run)."""
    notebook = nbformat.read(path, as_version=4)
    cells = []
    for cell_id, source in _cell_sources(notebook):
        try:
            cells.append((cell_id, ast.parse(source)))
        except SyntaxError:  # IPython magics: not a renderer's cell
            continue
    if not any(True for _, tree in cells for _ in _renderer_calls(tree)):
        return []  # renders nothing: its imports (TorchRL's, ...) need not run
    namespace: dict = {}
    for node in _imports([tree for _, tree in cells]):
        try:
            exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
        except ImportError:  # an optional dependency (TorchRL, ...): its objects are not rendered
            continue
    folding = _folding_renderer()
    found = []
    for cell_id, tree in cells:
        for call, bindings in _renderer_calls(tree):
            func = call.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id
            how = (
                "show_source"
                if name == "show_source" and folding is not None and namespace.get(name) is folding
                else "inspect.getsource"  # a chapter's own wrapper renders the whole source too
            )
            arg = call.args[0]
            for expr in bindings.get(arg.id, [arg]) if isinstance(arg, ast.Name) else [arg]:
                try:
                    obj = eval(compile(ast.Expression(expr), str(path), "eval"), namespace)
                except NameError:  # a wrapper's parameter (def show_source(fn): getsource(fn))
                    continue
                source = inspect.getsource(obj)
                found.append(
                    Rendered(
                        path.name, cell_id, ast.unparse(expr), how, len(source.splitlines()), source
                    )
                )
    return found


def _folding_renderer():
    try:
        from rlteach.book import show_source
    except ImportError:
        return None
    return show_source


def _renderer_calls(tree: ast.AST, bindings: dict | None = None):
    """(call, loop bindings) for each renderer call; a loop ``for m in (A.f, A.g):`` binds m to
    the expressions it runs over, so ``getsource(m)`` inside it renders each of them."""
    bindings = dict(bindings or {})
    if isinstance(tree, ast.For) and isinstance(tree.target, ast.Name):
        if isinstance(tree.iter, (ast.Tuple, ast.List)):
            bindings[tree.target.id] = list(tree.iter.elts)
    if isinstance(tree, ast.Call) and tree.args:
        func = tree.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in RENDERERS:
            yield tree, bindings
    for child in ast.iter_child_nodes(tree):
        yield from _renderer_calls(child, bindings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--min-lines", type=int, default=0)
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    for path in paths:
        for r in rendered_sources(path):
            if r.lines >= args.min_lines:
                print(f"{r.notebook:40s} {r.cell_id:10s} {r.lines:4d} {r.how:18s} {r.expression}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
