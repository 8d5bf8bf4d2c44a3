"""Import cycles between the modules of rlteach/, read with ``ast`` (nothing is imported).

Two graphs: module-level imports only (what runs when a module is imported), and every import,
function-level ones included (a function-level import hides a cycle, it does not remove it);
each also folded into layers (``rlteach.recipes.*`` is one node), where ``recipes -> bench ->
recipes`` shows although no single module imports itself back. Prints each graph's cycles
(strongly connected components of more than one node) and exits 1 if a module-level one has any. ``python scripts/import_cycles.py [PACKAGE_DIR]``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str, modules: set[str]) -> tuple[set[str], set[str]]:
    """(module-level targets, function-level targets) among ``modules``."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top, inner = set(), set()

    def targets(node) -> set[str]:
        found = set()
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for n in names:
            while n and n not in modules:  # rlteach.recipes.base.Evaluator -> rlteach.recipes.base
                n = n.rpartition(".")[0]
            if n and n != name:
                found.add(n)
        return found

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (inner if in_function else top).update(targets(child))
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # typing only: never runs
            visit(child, nested)

    visit(tree, False)
    return top, inner


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(out)


def fold(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between layers: each module folded into its first-level subpackage
    (``rlteach.recipes.sac`` -> ``rlteach.recipes``); ``rlteach.bench`` stays itself."""

    def layer(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {}
    for a, targets in graph.items():
        out.setdefault(layer(a), set()).update(layer(b) for b in targets if layer(b) != layer(a))
    return out


def edges_within(graph, comp):
    return sorted(f"{a} -> {b}" for a in comp for b in graph[a] if b in comp)


def main(root: Path) -> int:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    top, every = {}, {}
    for name, path in files.items():
        t, i = imports(path, name, modules)
        # a package's __init__ runs when a submodule is imported: not an edge of interest
        top[name] = {m for m in t if not name.startswith(m + ".")}
        every[name] = top[name] | {m for m in i if not name.startswith(m + ".")}
    graphs = {
        "module-level": top,
        "function-level included": every,
        "packages, module-level": fold(top),
        "packages, function-level included": fold(every),
    }
    found = {label: cycles(graph) for label, graph in graphs.items()}
    for label, comps in found.items():
        print(f"{label}: {len(comps)} cycle(s)")
        graph = graphs[label]
        for comp in comps:
            print("  " + ", ".join(comp))
            for edge in edges_within(graph, comp):
                print("    " + edge)
    return 1 if found["module-level"] or found["packages, module-level"] else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "rlteach")))
