"""The built book in a real browser: headless Chromium over every page of the table of contents.

The book is built once per session (``book_build`` in conftest.py), served on 127.0.0.1 on a
free port, and opened page by page in Debian's ``chromium`` driven by Playwright (no browser
download: ``executable_path`` points at the system binary). For every page:

- the maths is typeset by MathJax (every Sphinx maths element holds a MathJax container) and no
  raw TeX (``$$``, ``\\begin{``, ``\\(``, ``\\[``) is left in the visible text outside code;
- every image has loaded (``naturalWidth > 0``);
- every same-site link points at a file of the build, and its ``#anchor`` exists on that page;
- no JavaScript error (console error or uncaught exception) and no failed request;
- nothing is fetched from outside 127.0.0.1 (such requests are blocked and reported), so the
  pages work in a classroom without network.

Screenshots of a few pages are kept in ``_build/screenshots/`` as test artefacts. Chapters are
read from ``_toc.yml``, so a new chapter is tested as soon as it is in the book.
"""

from __future__ import annotations

import functools
import html as html_lib
import http.server
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE_TIMEOUT_MS = 30_000
RAW_TEX = ["$$", "\\begin{", "\\(", "\\)", "\\[", "\\]"]


def toc_pages() -> list[str]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_notebooks_meta import toc_files

    with open(ROOT / "_toc.yml") as f:
        return toc_files(yaml.safe_load(f))


PAGES = toc_pages()


def chromium_path() -> str | None:
    """Debian's chromium, or the browser named by ``RLTEACH_CHROMIUM`` (the GitHub workflows,
    on runners without Debian's package, point it at Playwright's own Chromium)."""
    named = os.environ.get("RLTEACH_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(candidate) if not candidate.startswith("/") else candidate
        if found and os.access(found, os.X_OK):
            return found
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def site(book_build):
    """The built book served on 127.0.0.1 (a free port) for the module: (base URL, html dir)."""
    code, html, log = book_build
    assert code == 0, "the book did not build:\n" + "\n".join(log.splitlines()[-30:])
    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", html
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser_context():
    """One headless Chromium (fresh profile) for every page of the module."""
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is in the dev extra: pip install -e '.[dev]'"
    )
    executable = chromium_path()
    if executable is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    profile = tempfile.mkdtemp(prefix="rlteach-chromium-")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
            service_workers="block",
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@functools.cache
def anchors_of(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    ids = re.findall(r'\s(?:id|name)="([^"]+)"', text)
    return frozenset(html_lib.unescape(i) for i in ids)


def check_links(hrefs: list[str], page_url: str, base: str, html: Path) -> list[str]:
    """Same-site links that point at no file, or at an anchor the target page lacks."""
    broken = []
    for href in sorted(set(hrefs)):
        if href.startswith(("mailto:", "javascript:", "data:")):
            continue
        absolute = urljoin(page_url, href)
        if not absolute.startswith(base):
            continue  # a hyperlink off site (Binder, Colab, a paper): the reader follows it online
        parts = urlsplit(absolute)
        rel = unquote(parts.path)[len(urlsplit(base).path) :]
        target = html / rel
        if rel == "" or rel.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{href} -> no file {target.relative_to(html)}")
            continue
        if parts.fragment and target.suffix == ".html":
            if unquote(parts.fragment) not in anchors_of(target):
                broken.append(f"{href} -> no anchor #{parts.fragment} in {rel}")
    return broken


VISIBLE_TEXT_OUTSIDE_CODE = """() => {
  const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'MJX-CONTAINER', 'TEXTAREA', 'KBD']);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let el = node.parentElement; el; el = el.parentElement) {
        if (skip.has(el.tagName)) return NodeFilter.FILTER_REJECT;
        if (el.classList && (el.classList.contains('highlight') || el.hidden)) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }
  });
  const parts = [];
  while (walker.nextNode()) parts.push(walker.currentNode.nodeValue);
  return parts.join(' ');
}"""

MATH_STATE = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const math = Array.from(document.querySelectorAll('.math'));
  return {
    mathjax: !!(window.MathJax && MathJax.version),
    version: window.MathJax && MathJax.version,
    elements: math.length,
    untypeset: math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    containers: document.querySelectorAll('mjx-container').length,
  };
}"""

IMAGES = """() => Array.from(document.images).map(img => ({
  src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth
}))"""

SCREENSHOT_PAGES = {"book/intro", "book/api", "book/algorithms", "book/benchmarks"}


def first_chapter() -> str | None:
    chapters = [p for p in PAGES if p.startswith("notebooks/")]
    return chapters[0] if chapters else None


@pytest.mark.parametrize("entry", PAGES, ids=PAGES)
def test_page_in_chromium(entry, site, browser_context):
    base, html = site
    rel = str(Path(entry).with_suffix("")) + ".html"
    url = urljoin(base, rel)
    errors: list[str] = []
    external: list[str] = []
    failed: list[str] = []

    def route(route_obj):
        request_url = route_obj.request.url
        if request_url.startswith(base) or request_url.startswith(("data:", "blob:")):
            route_obj.continue_()
        else:
            external.append(request_url)
            route_obj.abort()

    page = browser_context.new_page()
    page.route("**/*", route)
    page.on(
        "console",
        lambda msg: (
            errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on(
        "requestfailed",
        lambda req: (
            failed.append(f"{req.url} ({req.failure})") if req.url.startswith(base) else None
        ),
    )
    page.on(
        "response",
        lambda resp: (
            failed.append(f"{resp.url} (HTTP {resp.status})") if resp.status >= 400 else None
        ),
    )
    try:
        response = page.goto(url, wait_until="load")
        assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"
        source_has_math = 'class="math' in (html / rel).read_text(encoding="utf-8")
        if source_has_math:
            try:
                page.wait_for_function(
                    "() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                    timeout=PAGE_TIMEOUT_MS,
                )
            except Exception as exc:  # Playwright's TimeoutError
                pytest.fail(
                    f"{entry}: the page has maths but MathJax did not start within "
                    f"{PAGE_TIMEOUT_MS / 1000:.0f} s ({type(exc).__name__}); is "
                    "_static/mathjax/tex-chtml.js in the build and loaded by the page?"
                )
        math = page.evaluate(MATH_STATE)
        images = page.evaluate(IMAGES)
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))")
        text = page.evaluate(VISIBLE_TEXT_OUTSIDE_CODE)

        if entry in SCREENSHOT_PAGES or entry == first_chapter():
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            name = Path(entry).stem
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
            display = page.locator("mjx-container[display='true']")
            if display.count():
                display.first.scroll_into_view_if_needed()
                page.screenshot(path=str(SCREENSHOTS / f"{name}-equation.png"))
    finally:
        page.close()

    if source_has_math:
        assert math["mathjax"], f"{entry}: the page has maths but MathJax did not load"
        assert math["containers"] > 0, f"{entry}: MathJax typeset nothing"
    assert not math["untypeset"], f"{entry}: maths left untypeset: {math['untypeset'][:5]}"
    raw = [t for t in RAW_TEX if t in text]
    assert not raw, f"{entry}: raw TeX {raw} in the visible text: " + ", ".join(
        text[max(0, text.find(t) - 60) : text.find(t) + 60] for t in raw
    )
    broken_images = [i["src"] for i in images if not i["complete"] or i["width"] == 0]
    assert not broken_images, f"{entry}: images that did not load: {broken_images}"
    broken_links = check_links(hrefs, url, base, html)
    assert not broken_links, f"{entry}: broken internal links:\n" + "\n".join(broken_links)
    assert not external, f"{entry}: requests leave the machine (blocked): {external}"
    assert not failed, f"{entry}: failed requests: {failed}"
    assert not errors, f"{entry}: JavaScript errors:\n" + "\n".join(errors)
