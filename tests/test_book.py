"""The book builds with zero warnings and its chapter pages carry rendered maths and figures.

One build (about a minute on two cores) into a temporary directory is shared by every test in
this file, so the developer's own ``_build/`` is never touched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_notebooks_meta import toc_files  # noqa: E402


def jupyter_book_command() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found is None:
        pytest.skip("jupyter-book is not installed (pip install -e '.[dev]')")
    return [found]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Build the book once with --warningiserror --nitpick; return (html dir, build log)."""
    out = tmp_path_factory.mktemp("book")
    cmd = jupyter_book_command() + [
        "build",
        str(ROOT),
        "--path-output",
        str(out),
        "--warningiserror",
        "--nitpick",
        "--keep-going",
        "--all",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    log = proc.stdout + proc.stderr
    return proc.returncode, out / "_build" / "html", log


def toc_entries() -> list[str]:
    with open(ROOT / "_toc.yml") as f:
        return toc_files(yaml.safe_load(f))


def chapter_pages() -> list[str]:
    return [e for e in toc_entries() if e.startswith("notebooks/")]


def page(html: Path, entry: str) -> str:
    path = html / (str(Path(entry).with_suffix("")) + ".html")
    assert path.is_file(), f"page for {entry} was not built (looked for {path})"
    return path.read_text(encoding="utf-8")


def test_build_succeeds_without_warnings(build):
    code, _, log = build
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert code == 0, "jupyter-book build failed:\n" + "\n".join(warnings or log.splitlines()[-40:])
    assert not warnings, "the build emitted warnings:\n" + "\n".join(warnings)


def test_every_toc_page_is_built(build):
    _, html, _ = build
    for entry in toc_entries():
        page(html, entry)
    assert (html / "index.html").is_file()


def test_chapters_render_numbered_equations(build):
    _, html, _ = build
    for entry in chapter_pages():
        text = page(html, entry)
        assert 'class="math notranslate nohighlight"' in text, f"{entry}: no display maths"
        assert 'class="eqno"' in text, f"{entry}: no numbered equation"
        # An {eq} cross-reference resolves to a link to the equation's anchor.
        assert re.search(r'<a class="reference internal" href="#equation-eq-', text), (
            f"{entry}: no resolved {{eq}} cross-reference"
        )


def test_chapters_show_their_figures(build):
    _, html, _ = build
    for entry in chapter_pages():
        text = page(html, entry)
        sources = re.findall(r'<img[^>]+src="([^"]+)"', text)
        images = [s for s in sources if "_images/" in s]
        assert images, f"{entry}: no figure image on the page"
        for src in images:
            target = (html / Path(entry).parent / src).resolve()
            assert target.is_file() and target.stat().st_size > 1000, f"{entry}: {src} missing"


def test_citations_resolve_to_the_bibliography(build):
    _, html, _ = build
    references = page(html, "book/references").lower()  # the bibliography style sets the case
    assert "generalized advantage estimation" in references
    assert "time limits in reinforcement learning" in references
    for entry in chapter_pages():
        text = page(html, entry)
        assert 'href="../book/references.html#id' in text or "references.html#" in text, (
            f"{entry}: no {{cite}} link into the bibliography"
        )
