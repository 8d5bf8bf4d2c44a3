"""Every equation tag in the package is explained by a chapter, and every tag a chapter names exists.

rlteach's code carries equation tags in its comments and docstrings, ``(PPO-3)``, ``(GAE-2)``,
``(TN-4)``: the line that implements a step names the step. A chapter that renders that code says,
in a markdown table headed ``| tag in the code | equation in this chapter |``, which of its
numbered equations each tag is (an ``{eq}`` reference), or that the chapter does not number that
step (a row starting "not numbered in this chapter:" and a one-line description). These tests
hold the two sides together (issue 17):

- a tag in the code that no chapter's table maps fails (new code must be explained somewhere);
- a tag in a table, or in a chapter's inline code (```(DQN-2)```, ```QMIX-1```), that the code
  does not have fails (a renamed or deleted tag leaves no stale explanation);
- every ``{eq}`` reference in a table resolves to an equation label of that same chapter;
- every tag in a chapter's stored outputs (the rendered source a reader sees) is in its own table.

Nothing here names a chapter or a tag: chapters are read from ``notebooks/``, tags from
``rlteach/``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rlteach"
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if not p.name.startswith("."))

# A tag: a family of capitals (digits and lower case after the first letter), a dash, a number
# with an optional letter: (PPO-3), (C51-5), (MAGAE-1), (REINFORCE-2), (TD0-1).
TAG = r"[A-Z][A-Za-z0-9]*-[0-9]+[a-z]?"
TAG_IN_PARENS = re.compile(rf"\(({TAG})\)")
# In chapter prose a tag is inline code, with or without its parentheses; maths such as
# $(C-1)/2$ or $(N-1)$ is not a tag.
TAG_IN_INLINE_CODE = re.compile(rf"`\(?({TAG})\)?`")
TABLE_HEADER = "| tag in the code | equation in this chapter |"
TABLE = re.compile(
    r"^" + re.escape(TABLE_HEADER) + r"[ \t]*\n\|[-| :]+\|[ \t]*\n((?:\|.*(?:\n|$))*)", re.M
)
NOT_NUMBERED = "not numbered in this chapter:"
EQ_REF = re.compile(r"\{eq\}`([^`]+)`")
# Equation labels: `$$ ... $$ (eq-label)` (dollarmath), ```{math} :label: eq-label``` and
# `(eq-label)=` targets.
EQ_LABEL = re.compile(r"\$\$\s*\(([\w:-]+)\)|:label:\s*([\w:-]+)|^\(([\w:-]+)\)=\s*$", re.M)


def code_tags(package: Path = PACKAGE) -> dict[str, list[str]]:
    """Every tag in the package's Python files -> the files (relative) that carry it."""
    found: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for tag in set(TAG_IN_PARENS.findall(path.read_text(encoding="utf-8"))):
            found.setdefault(tag, []).append(str(path.relative_to(package.parent)))
    return found


def load(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def markdown(nb: dict) -> str:
    return "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def output_text(nb: dict) -> str:
    """Everything a chapter's stored outputs show (streams, rendered markdown, plain text)."""
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else text)
            for value in out.get("data", {}).values():
                if isinstance(value, (list, str)):
                    parts.append("".join(value) if isinstance(value, list) else value)
    return "\n".join(parts)


def table_rows(md: str) -> list[tuple[list[str], str]]:
    """Rows of every tag table in ``md``: (tags in the first column, the second column)."""
    rows = []
    for table in TABLE.finditer(md):
        for line in table.group(1).splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            assert len(cells) >= 2, f"tag table row with fewer than two columns: {line!r}"
            rows.append((TAG_IN_PARENS.findall(cells[0]), "|".join(cells[1:])))
    return rows


def equation_labels(md: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in EQ_LABEL.finditer(md)}


CHAPTERS = {path.stem: load(path) for path in NOTEBOOKS}


def mapped_tags() -> dict[str, set[str]]:
    """Chapter -> the tags its tables map."""
    return {
        name: {tag for tags, _ in table_rows(markdown(nb)) for tag in tags}
        for name, nb in CHAPTERS.items()
    }


def test_the_package_has_tags_and_the_chapters_have_tables():
    assert len(code_tags()) > 50, "expected the package's equation tags, found few: check TAG"
    assert sum(bool(t) for t in mapped_tags().values()) >= 10, "expected tag tables in chapters"


def test_every_tag_in_the_code_is_mapped_by_a_chapter():
    mapped = set().union(*mapped_tags().values())
    missing = {tag: files for tag, files in code_tags().items() if tag not in mapped}
    assert not missing, (
        "equation tags in rlteach that no chapter's tag table maps (add a row "
        f"'| `(TAG)` | {{eq}}`eq-...` |' to the chapter that teaches the step): {missing}"
    )


@pytest.mark.parametrize("name", sorted(CHAPTERS))
def test_every_tag_a_chapter_names_exists_in_the_code(name):
    md = markdown(CHAPTERS[name])
    named = {tag for tags, _ in table_rows(md) for tag in tags} | set(
        TAG_IN_INLINE_CODE.findall(md)
    )
    stale = sorted(named - set(code_tags()))
    assert not stale, f"{name} names equation tags that rlteach's code does not have: {stale}"


@pytest.mark.parametrize("name", sorted(CHAPTERS))
def test_tag_table_rows_refer_to_this_chapters_equations(name):
    md = markdown(CHAPTERS[name])
    labels = equation_labels(md)
    for tags, equation in table_rows(md):
        assert tags, f"{name}: a tag-table row names no tag in its first column: {equation!r}"
        refs = EQ_REF.findall(equation)
        assert refs or equation.startswith(NOT_NUMBERED), (
            f"{name}: the row for {tags} neither refers to an equation ({{eq}}`...`) nor says "
            f"'{NOT_NUMBERED}': {equation!r}"
        )
        unresolved = [r for r in refs if r not in labels]
        assert not unresolved, (
            f"{name}: the row for {tags} refers to {unresolved}, not an equation label of this "
            f"chapter (its labels: {sorted(labels)})"
        )


@pytest.mark.parametrize("name", sorted(CHAPTERS))
def test_every_tag_in_a_chapters_rendered_code_is_in_its_table(name):
    nb = CHAPTERS[name]
    shown = set(TAG_IN_PARENS.findall(output_text(nb)))
    unmapped = sorted(shown - mapped_tags()[name])
    assert not unmapped, (
        f"{name} renders code carrying the tags {unmapped}, which its tag table "
        f"('{TABLE_HEADER}') does not map"
    )


def test_each_tag_appears_once_per_table():
    for name, nb in CHAPTERS.items():
        tags = [tag for tags, _ in table_rows(markdown(nb)) for tag in tags]
        twice = sorted({t for t in tags if tags.count(t) > 1})
        assert not twice, f"{name} maps these tags in more than one row: {twice}"
