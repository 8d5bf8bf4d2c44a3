"""The book builds with zero warnings and its chapter pages carry rendered maths and figures.

One build (about a minute on two cores) into a temporary directory is shared by every test in
this file and tests/test_browser.py (the ``book_build`` fixture of conftest.py), so the
developer's own ``_build/`` is never touched.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_notebooks_meta import toc_files  # noqa: E402


@pytest.fixture(scope="module")
def build(book_build):
    """The session's book build (conftest.py): (return code, html dir, build log)."""
    return book_build


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


def test_glued_results_are_pasted_into_the_pages(build):
    """Every {glue:text} reference of a chapter is replaced by its value on the built page (the
    keys themselves are checked against the stored outputs in tests/test_glue.py), and no glued
    record shows as raw output; a folded source (rlteach.book.show_source) keeps its <details>."""
    _, html, _ = build
    for entry in chapter_pages():
        with open(ROOT / (entry + ".ipynb"), encoding="utf-8") as f:
            cells = json.load(f)["cells"]
        prose = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        refs = re.findall(r"\{glue(?::\w*)?\}`([^`]+)`", prose)
        text = page(html, entry)
        assert "{glue" not in text and "papermill.record" not in text, f"{entry}: unresolved glue"
        pasted = text.count('class="pasted-text"')
        assert pasted >= len(refs), f"{entry}: {len(refs)} glue references, {pasted} pasted"
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        if "show_source(" in code and "<details>" in json.dumps(cells):
            assert "<details>" in text and "<summary>" in text, f"{entry}: folded source lost"


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


def test_each_chapter_ends_with_the_works_it_cites(build):
    """The closing References section lists exactly the works the chapter's prose cites."""
    _, html, _ = build
    for entry in chapter_pages():
        with open(ROOT / (entry + ".ipynb"), encoding="utf-8") as f:
            cells = json.load(f)["cells"]
        prose = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        groups = re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", prose)
        keys = {k.strip() for group in groups for k in group.split(",")}
        text = page(html, entry)
        sections = re.findall(r'<section id="references[-\d]*">(.*?)</section>', text, re.S)
        assert sections, f"{entry}: no References section on the built page"
        items = re.findall(r"<li[ >]", sections[-1])
        assert len(items) == len(keys), (
            f"{entry}: its References section lists {len(items)} works, the chapter cites "
            f"{len(keys)}: {sorted(keys)}"
        )


def test_pages_load_nothing_from_the_network(build):
    """Offline classroom: every script, stylesheet, font, image and frame comes with the build."""
    _, html, _ = build
    remote = re.compile(
        r"<(?:script|link|img|iframe|source|video|audio|embed)\b[^>]*?\b(?:src|href)=[\"'](?:https?:)?//",
        re.I,
    )
    offenders = []
    for path in sorted(html.rglob("*.html")):
        for match in remote.finditer(path.read_text(encoding="utf-8", errors="replace")):
            tag = match.group(0)
            # <link rel="canonical"/"alternate"> and the like are hyperlinks, not resources.
            if tag.lower().startswith("<link") and not re.search(
                r"rel=[\"'](?:stylesheet|preload|modulepreload|icon|shortcut icon|manifest)",
                tag,
                re.I,
            ):
                continue
            offenders.append(f"{path.relative_to(html)}: {tag[:120]}")
    for path in sorted(html.rglob("*.css")):
        for url in re.findall(
            r"url\(\s*[\"']?((?:https?:)?//[^)\"']+)", path.read_text(errors="replace")
        ):
            offenders.append(f"{path.relative_to(html)}: url({url})")
    assert not offenders, "pages load resources from the network:\n" + "\n".join(offenders[:20])


def test_mathjax_is_served_from_the_build(build):
    _, html, _ = build
    mathjax = html / "_static" / "mathjax"
    assert (mathjax / "tex-chtml.js").stat().st_size > 100_000
    fonts = list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) > 10, "MathJax's CHTML fonts are not in the build"
    for entry in chapter_pages():
        assert 'src="../_static/mathjax/tex-chtml.js"' in page(html, entry), entry


def test_chapters_offer_download_and_launch_buttons(build):
    _, html, _ = build
    with open(ROOT / "_config.yml") as f:
        repo = yaml.safe_load(f)["repository"]["url"].removeprefix("https://github.com/")
    for entry in chapter_pages():
        text = page(html, entry)
        name = Path(entry).name
        assert f'href="../_sources/{entry}.ipynb"' in text, f"{entry}: no .ipynb download"
        assert (html / "_sources" / f"{entry}.ipynb").is_file(), f"{entry}: download target missing"
        assert f"mybinder.org/v2/gh/{repo}/" in text and f"{name}.ipynb" in text, f"{entry}: Binder"
        assert f"colab.research.google.com/github/{repo}/" in text, f"{entry}: no Colab button"


def test_api_reference_documents_the_packages(build):
    _, html, _ = build
    text = page(html, "book/api")
    for module in [
        "rlteach.value", "rlteach.objectives", "rlteach.modules", "rlteach.updaters",
        "rlteach.envs", "rlteach.buffers", "rlteach.recipes",
    ]:  # fmt: skip
        assert f'id="module-{module}"' in text, f"API reference lacks {module}"
    for name in [
        "rlteach.value.GAE",
        "rlteach.objectives.ClipPPOLoss",
        "rlteach.updaters.SoftUpdate",
        "rlteach.objectives.DQNLoss",
        "rlteach.objectives.DistributionalDQNLoss",
        "rlteach.objectives.SACLoss",
        "rlteach.objectives.CrossQLoss",
        "rlteach.objectives.QMixerLoss",
        "rlteach.value.MultiAgentGAE",
        "rlteach.modules.QMixer",
        "rlteach.modules.BatchRenorm1d",
    ]:
        assert f'id="{name}"' in text, f"API reference lacks {name}"


def test_api_docstrings_are_valid_restructuredtext(build):
    """A docstring docutils cannot parse falls back to preformatted text in the API page (the
    build says which, with the first problem); none should."""
    _, _, log = build
    fallbacks = [line for line in log.splitlines() if "shown as preformatted text" in line]
    assert not fallbacks, "docstrings to fix:\n" + "\n".join(fallbacks)


def test_index_of_algorithms_links_chapters_classes_and_papers(build):
    _, html, _ = build
    text = page(html, "book/algorithms")
    assert 'href="../notebooks/04_ppo_clip.html"' in text
    assert 'href="api.html#rlteach.objectives.ClipPPOLoss"' in text
    assert "references.html#id" in text
