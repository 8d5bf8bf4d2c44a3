"""Each chapter ends with its own references, and the introduction lists every chapter (issue 17).

A chapter's last section is ``## References`` holding a ``{bibliography}`` directive filtered to
the works that chapter cites (``:filter: docname in docnames``). sphinxcontrib-bibtex 2.x warns
"duplicate citation for key" when one key lands in two *citation* lists, and the book is built
with ``--warningiserror``: so a chapter's list is a plain ``:list: bullet`` (or ``enumerated``)
list, and the one citation list, the target of every ``{cite}`` link, stays on
book/references.md. tests/test_book.py checks the built pages.

Chapters are read from ``notebooks/`` and ``_toc.yml``; nothing here names a chapter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if not p.name.startswith("."))
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
BIBLIOGRAPHY = re.compile(r"^```\{bibliography\}[^\n]*\n((?::[^\n]*\n)*)```", re.M)


def markdown_cells(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def options(block: str) -> dict[str, str]:
    out = {}
    for line in block.splitlines():
        name, _, value = line[1:].partition(":")
        out[name.strip()] = value.strip()
    return out


def cited_keys(text: str) -> set[str]:
    return {k.strip() for group in CITE.findall(text) for k in group.split(",")}


def bib_keys() -> set[str]:
    text = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    return set(re.findall(r"^@\w+\{([^,\s]+),", text, re.M))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_ends_with_its_references(path):
    cells = markdown_cells(path)
    text = "\n\n".join(cells)
    headings = re.findall(r"^(#{1,6}) (.*)$", text, re.M)
    assert headings and headings[-1] == ("##", "References"), (
        f"{path.name}: the last section must be '## References', found {headings[-1:]}"
    )
    tail = text[text.rindex("## References") :]
    blocks = BIBLIOGRAPHY.findall(tail)
    assert len(blocks) == 1, (
        f"{path.name}: '## References' must hold one {{bibliography}} directive"
    )
    opts = options(blocks[0])
    assert opts.get("filter") == "docname in docnames", (
        f"{path.name}: the chapter's bibliography must list the works this chapter cites, "
        f"':filter: docname in docnames'; got {opts}"
    )
    assert opts.get("list") in {"bullet", "enumerated"}, (
        f"{path.name}: a chapter's bibliography must be ':list: bullet' (or enumerated): a "
        "second citation list makes sphinxcontrib-bibtex warn 'duplicate citation'"
    )
    assert not BIBLIOGRAPHY.findall(text[: text.rindex("## References")]), (
        f"{path.name}: a {{bibliography}} directive outside the closing References section"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_cites_works_that_are_in_the_bib_file(path):
    keys = cited_keys("\n".join(markdown_cells(path)))
    assert keys, f"{path.name} cites nothing, so its References section would be empty"
    unknown = sorted(keys - bib_keys())
    assert not unknown, f"{path.name} cites keys missing from book/references.bib: {unknown}"


def test_global_references_page_is_the_one_citation_list():
    text = (ROOT / "book" / "references.md").read_text(encoding="utf-8")
    blocks = BIBLIOGRAPHY.findall(text)
    assert len(blocks) == 1, "book/references.md must hold one {bibliography} directive"
    opts = options(blocks[0])
    assert opts.get("list", "citation") == "citation" and "filter" not in opts, (
        f"book/references.md lists every cited work as citations (the targets of the links); got {opts}"
    )


def test_introduction_lists_every_chapter():
    with open(ROOT / "_toc.yml") as f:
        toc = yaml.safe_load(f)
    chapters = []

    def walk(node):
        if isinstance(node, dict):
            if str(node.get("file", "")).startswith("notebooks/"):
                chapters.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    assert len(chapters) == len(NOTEBOOKS)
    intro = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    linked = re.findall(r"\{doc\}`\.\./(notebooks/[^`]+)`", intro)
    missing = [c for c in chapters if c not in linked]
    assert not missing, f"book/intro.md does not link these chapters: {missing}"
    order = [c for c in dict.fromkeys(linked) if c in chapters]
    assert order == chapters, "book/intro.md lists the chapters out of the table of contents' order"
