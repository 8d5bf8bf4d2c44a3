"""What the chapters use to show results and code: :func:`glue` and :func:`show_source`.

Both work wherever a chapter runs: in the book's build (MyST-NB), in plain Jupyter, in Colab.
This module is a leaf of rlteach's import graph (it imports no other rlteach module), so any
chapter can import it first.

**glue.** A number the prose states about a run is not typed: the cell that computes it glues it,
and the Markdown pastes it with ``{glue:text}`key```. ``glue(name, value, fmt)`` formats the value
(``"{:,.0f}"`` gives ``1,008``), stores the text under ``name`` exactly as MyST-NB's
``myst_nb.glue(name, text, display=False)`` does (a display output whose MIME types carry the
``application/papermill.record/`` prefix and whose metadata names the key), and returns the text
for the cell's own printout. The book shows the text where the Markdown references it; the output
itself is hidden. Where myst_nb is not installed (Colab, a bare Jupyter), the same record is
written, so a notebook saved there still builds, and the value is also shown as a line
``name = text`` under the cell, since the Markdown's references are not resolved there.

**show_source.** ``show_source(obj)`` renders an object's source as the chapters always did (one
Python code block), except that the plumbing is folded: the algorithm's lines are shown with a
one-line note where plumbing was left out, and the full source follows in a collapsed
``<details>`` block. What is plumbing is decided by one rule, :func:`plumbing_ranges`, which reads
the markers rlteach's code already carries (``# PLUMBING`` beside a statement, ``# ALGO`` beside
the algorithm's) and the argument checks (an ``if`` whose body only raises). A source with nothing
to fold renders exactly as ``inspect.getsource`` in a code block did.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from typing import Any

__all__ = [
    "GLUE_PREFIX",
    "fold_source",
    "glue",
    "glue_format",
    "glue_record",
    "plumbing_ranges",
    "show_source",
    "span",
]

GLUE_PREFIX = "application/papermill.record/"
"""The MIME prefix MyST-NB (and papermill's scrapbook before it) gives a hidden glued output."""


def glue_format(value: Any, fmt: str | None) -> str:
    """``value`` formatted by a format spec (``",.0f"``) or a format string (``"{:,} steps"``)."""
    if fmt is None:
        return str(value)
    return fmt.format(value) if "{" in fmt else format(value, fmt)


def glue_record(name: str, text: str) -> tuple[dict, dict]:
    """(data, metadata) of the display output that ``myst_nb.glue(name, text, display=False)``
    writes: the text's plain-text representation under the papermill prefix, and the key."""
    return {GLUE_PREFIX + "text/plain": repr(text)}, {
        "scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}
    }


def glue(name: str, value: Any, fmt: str | None = None) -> str:
    """Glue ``value``, formatted by ``fmt``, under ``name``; return the formatted text.

    ``fmt`` is a format spec (``",.0f"``, ``"+.0%"``) or a format string (``"{:,} steps"``); with
    none, ``str(value)``. The Markdown pastes it with ``{glue:text}`name```.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"glue: a key is a Python-identifier-like name, got {name!r}")
    text = glue_format(value, fmt)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        myst_glue = None
    if myst_glue is not None:
        myst_glue(name, text, display=False)
        return text
    from IPython.display import display

    data, metadata = glue_record(name, text)
    display(data, raw=True, metadata=metadata)
    display({"text/plain": f"{name} = {text}"}, raw=True)  # the Markdown cannot paste it here
    return text


def span(values, fmt: str = ",") -> str:
    """The range of ``values`` as prose: ``"3,500 to 4,000"``, or ``"3,000"`` when all are equal."""
    values = sorted(values)
    low, high = glue_format(values[0], fmt), glue_format(values[-1], fmt)
    return low if low == high else f"{low} to {high}"


def _marked(line: str, marker: str) -> bool:
    return re.search(rf"#\s*{marker}\b", line) is not None


def _is_check(node: ast.stmt) -> bool:
    """An argument check: ``if <condition>: raise ...`` with no else."""
    return (
        isinstance(node, ast.If)
        and not node.orelse
        and all(isinstance(s, ast.Raise) for s in node.body)
    )


def plumbing_ranges(source: str) -> list[tuple[int, int]]:
    """The 1-based, inclusive line ranges of ``source`` that :func:`show_source` folds.

    The rule, applied to every statement of the function's (or class's) body, nested ones
    included:

    1. a statement whose first line carries a ``# PLUMBING`` comment, or that follows a
       comment-only line ``# PLUMBING...`` (the comment folded with it), is plumbing, all its lines;
       except a compound statement (``with``, ``for``, ``if``) whose lines carry an ``# ALGO``
       marker: its header stays, and the rule goes on inside it;
    2. an argument check, ``if <condition>: raise ...`` with no ``else``, is plumbing;
    3. comment-only lines right after a folded statement, at its indentation, go with it (a
       ``# PLUMBING:`` comment continued on the next line), unless they carry ``# ALGO``.

    Adjacent ranges (blank lines between them included) are merged.
    """
    lines = source.splitlines()
    tree = ast.parse(textwrap.dedent(source))
    ranges: list[list[int]] = []

    def comment_only(i: int) -> bool:  # 1-based
        return 1 <= i <= len(lines) and lines[i - 1].strip().startswith("#")

    def fold(start: int, end: int) -> None:
        indent = len(lines[start - 1]) - len(lines[start - 1].lstrip())
        if comment_only(start - 1) and _marked(lines[start - 2], "PLUMBING"):
            start -= 1
        while (
            comment_only(end + 1)
            and len(lines[end]) - len(lines[end].lstrip()) == indent
            and not _marked(lines[end], "ALGO")
            and not _marked(lines[end], "PLUMBING")
        ):
            end += 1
        ranges.append([start, end])

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            first = lines[node.lineno - 1]
            above = lines[node.lineno - 2] if node.lineno >= 2 else ""
            marked = _marked(first, "PLUMBING") or (
                above.strip().startswith("#") and _marked(above, "PLUMBING")
            )
            block = lines[node.lineno - 1 : node.end_lineno]
            compound = any(
                isinstance(getattr(node, f, None), list)
                and getattr(node, f)
                and isinstance(getattr(node, f)[0], ast.stmt)
                for f in ("body", "orelse", "finalbody", "handlers")
            )
            if _is_check(node) or (
                marked and not (compound and any(_marked(x, "ALGO") for x in block))
            ):
                fold(node.lineno, node.end_lineno)
                continue
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    visit(inner)
            for handler in getattr(node, "handlers", []) or []:
                visit(handler.body)

    top = tree.body[0]
    if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        visit(top.body)
    else:
        visit(tree.body)
    ranges.sort()
    merged: list[list[int]] = []
    for start, end in ranges:
        if merged and all(not x.strip() for x in lines[merged[-1][1] : start - 1]):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def fold_source(source: str) -> tuple[str, int]:
    """(the source with each plumbing range replaced by a one-line note, lines folded)."""
    lines = source.splitlines()
    ranges = plumbing_ranges(source)
    shown, i, folded = [], 1, 0
    for start, end in ranges:
        shown.extend(lines[i - 1 : start - 1])
        first = lines[start - 1]
        indent = first[: len(first) - len(first.lstrip())]
        n = end - start + 1
        folded += n
        head = first.strip()
        if not head.startswith("#"):  # the statement's code, its own comment dropped
            head = head.split("  #")[0]
        head = head.lstrip("# ")
        head = head if len(head) <= 70 else head[:67] + "..."
        lines_folded = f"{n} line{'s' if n > 1 else ''} folded"
        shown.append(f"{indent}# [{lines_folded}] {head}")
        i = end + 1
    shown.extend(lines[i - 1 :])
    return "\n".join(shown) + "\n", folded


def show_source(obj: Any) -> None:
    """Render ``obj``'s source as a Python code block, its plumbing folded (see the module)."""
    from IPython.display import Markdown, display

    source = inspect.getsource(obj)
    shown, folded = fold_source(source)
    if not folded:
        display(Markdown(f"```python\n{source}```"))
        return
    total = len(source.splitlines())
    display(
        Markdown(
            f"```python\n{shown}```\n\n<details>\n<summary>The full source: {total} lines, "
            f"the {folded} lines of plumbing included</summary>\n\n```python\n{source}```\n\n"
            "</details>\n"
        )
    )
