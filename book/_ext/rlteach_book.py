"""Sphinx extension for the rlteach book: the API reference's ``rlteach-api`` directive.

``.. rlteach-api:: rlteach.value`` (inside an ``{eval-rst}`` block) documents a package from its
docstrings: the package's public names (its ``__all__``) with autodoc, then one line per
submodule (its docstring's first line) with a ``py:module`` target, so that ``:mod:`` references
to submodules resolve. Submodules are found by walking the package's folder (without importing
them), so a new file appears on the page by itself; names starting with ``_`` are private.

``.. rlteach-api::`` with the ``:rest:`` flag documents every public top-level module of
``rlteach`` that no earlier ``rlteach-api`` directive on the page covered (a new module such as
``rlteach.exercises`` lands there until someone gives it a section of its own).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import io
import pkgutil
import re
from pathlib import Path

import docutils.core
import yaml
from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode, nested_parse_with_titles

logger = logging.getLogger(__name__)

# Spans the star / bar rewriting must not touch: inline literals, roles, well-formed emphasis.
_PROTECTED = re.compile(
    r"``.+?``"
    r"|:[\w:+-]+:`[^`]*`"
    r"|`[^`]+`_?"
    r"|(?<![\w*])\*\*?(?=\S)[^*]*?(?<=\S)\*\*?(?![\w*])"
)
_LONE_STAR = re.compile(r"\*(?=[\w.(\[])")
_BARS = re.compile(r"(?<![\w|])\|(?=\S)([^|`]*?)(?<=\S)\|(?![\w|])")


def _tidy_text(text: str) -> str:
    out, last = [], 0
    for match in _PROTECTED.finditer(text):
        out.append(_fix(text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_fix(text[last:]))
    return "".join(out)


def _fix(text: str) -> str:
    text = _LONE_STAR.sub("\u2217", text)
    return _BARS.sub("\u2223\\1\u2223", text)


def tidy_docstring(lines: list[str]) -> list[str]:
    """Swap unclosed-emphasis stars and substitution bars for look-alikes (same width)."""
    tidy, in_math = [], False
    math_indent = 0
    for line in lines:
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if in_math and stripped and indent <= math_indent:
            in_math = False
        if stripped.startswith(".. math::") or line.rstrip().endswith("::"):
            tidy.append(line if stripped.startswith("..") else _tidy_text(line))
            in_math, math_indent = True, indent
            continue
        grid_row = stripped.startswith(("|", "+"))
        tidy.append(line if in_math or grid_row else _tidy_text(line))
    return tidy


_SPHINX_ONLY = (
    "Unknown interpreted text role",
    "Unknown directive type",
    "No role entry",
    "No directive entry",
)


def docutils_problems(lines: list[str]) -> list[str]:
    """Warnings and errors plain docutils reports for a docstring (Sphinx roles not counted)."""
    # Roles become literals and directives comments: inside a Sphinx build, docutils' registry
    # holds Sphinx's versions, which need a build environment this dry run does not have.
    # Same width (padded), so that a role inside a table keeps the columns aligned.
    text = re.sub(
        r":[\w:+-]+:`([^`]*)`",
        lambda m: f"``{m.group(1)}``".ljust(len(m.group(0))),
        "\n".join(lines),
    )
    text = re.sub(r"^(\s*)\.\. ([\w:-]+::)", r"\1.. (directive) \2", text, flags=re.M)
    stream = io.StringIO()
    docutils.core.publish_doctree(
        text,
        settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": stream},
    )
    return [
        line
        for line in stream.getvalue().splitlines()
        if ("WARNING" in line or "ERROR" in line or "SEVERE" in line)
        and not any(s in line for s in _SPHINX_ONLY)
    ]


def tidy_before_napoleon(app, what, name, obj, options, lines) -> None:
    if name.startswith("rlteach"):
        lines[:] = tidy_docstring(lines)


def check_after_napoleon(app, what, name, obj, options, lines) -> None:
    if not name.startswith("rlteach"):
        return
    problems = docutils_problems(lines)
    if problems:
        logger.info(
            "rlteach-api: the docstring of %s is not valid reStructuredText (%s); shown as "
            "preformatted text",
            name,
            # Said without docutils' level words, which the book's tests read as build warnings.
            re.sub(r"^<string>:(\d+): \(\w+/\d\) ", r"docstring line \1: ", problems[0]),
        )
        lines[:] = ["::", ""] + ["    " + line for line in lines] + [""]


def undo_property_type(app, what, name, obj, options, lines) -> None:
    """Napoleon reads a property docstring's "words: text" first line as a type; undo that.

    rlteach's property docstrings start "what it is: more", which napoleon turns into
    ``:type: what it is`` (a cross-reference to a class that does not exist).
    """
    if what != "property" or not name.startswith("rlteach"):
        return
    for i, line in enumerate(lines):
        if line.startswith(":type: "):
            kind = line[len(":type: ") :]
            del lines[i]
            first = next((j for j, text in enumerate(lines) if text.strip()), None)
            if first is None:
                lines.insert(0, kind)
            else:
                lines[first] = f"{kind}: {lines[first]}"
            return


def _existing_member(node) -> bool:
    """A relative ``:meth:`reset``` inside a class that has it (inherited, so not documented)."""
    target = node.get("reftarget", "")
    module_name, class_name = node.get("py:module"), node.get("py:class")
    if "." in target or not module_name or not class_name:
        return False
    try:
        owner = importlib.import_module(module_name)
        for part in class_name.split("."):
            owner = getattr(owner, part)
    except (ImportError, AttributeError, ValueError):
        return False
    return hasattr(owner, target)


def resolve_reexport(app, env, node, contnode):
    """Resolve ``rlteach.sub.module.name`` to the documented ``rlteach.package.name``.

    A relative reference to an inherited member of the class being documented (which autodoc
    does not list) is shown as text instead of warning: the member exists, it has no entry.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py":
        return None
    if node.get("reftype") in ("meth", "attr") and _existing_member(node):
        return contnode
    if not target.startswith("rlteach."):
        return None
    module_name, _, attr = target.rpartition(".")
    try:
        wanted = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    domain = env.get_domain("py")
    for fullname, entry in domain.objects.items():
        if not fullname.endswith("." + attr) or fullname == target:
            continue
        owner, _, _ = fullname.rpartition(".")
        try:
            candidate = getattr(importlib.import_module(owner), attr)
        except (ImportError, AttributeError, ValueError):
            continue
        if candidate is wanted:
            return make_refnode(
                app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, fullname
            )
    return None


def _module_path(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ValueError(f"rlteach-api: cannot find module {name!r}; is rlteach installed?")
    return Path(spec.origin)


def public_submodules(package: str) -> list[str]:
    """Dotted names of the public modules below ``package``, depth first, sorted."""
    origin = _module_path(package)
    if origin.name != "__init__.py":
        return []
    found = []
    for info in sorted(pkgutil.iter_modules([str(origin.parent)]), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        name = f"{package}.{info.name}"
        found.append(name)
        if info.ispkg:
            found.extend(public_submodules(name))
    return found


def top_level_modules() -> list[str]:
    """The public top-level modules and packages of rlteach."""
    origin = _module_path("rlteach")
    return [
        f"rlteach.{m.name}"
        for m in sorted(pkgutil.iter_modules([str(origin.parent)]), key=lambda m: m.name)
        if not m.name.startswith("_")
    ]


def summary_line(name: str) -> str:
    """The first line of a module's docstring, read from its source (the module is not imported)."""
    tree = ast.parse(_module_path(name).read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    return first or "(no module docstring yet)"


class RlteachApi(SphinxDirective):
    optional_arguments = 1
    option_spec = {"rest": directives.flag}

    def run(self) -> list[nodes.Node]:
        done = self.env.temp_data.setdefault("rlteach_api_done", set())
        if "rest" in self.options:
            packages = [m for m in top_level_modules() if m not in done]
        elif self.arguments:
            packages = [self.arguments[0]]
        else:
            raise self.error("rlteach-api needs a module name or the :rest: flag")
        # a module with a section of its own on this page is declared there, not in a list
        page = Path(self.env.doc2path(self.env.docname)).read_text(encoding="utf-8")
        own_section = set(re.findall(r"rlteach-api::[ \t]+(\S+)", page))
        lines: list[str] = []
        for package in packages:
            done.add(package)
            if "rest" in self.options:
                lines += [f".. rubric:: {package}", ""]
            lines += [f".. automodule:: {package}", "   :members:", "   :show-inheritance:", ""]
            subs = public_submodules(package)
            if subs:
                lines += [f".. rubric:: Modules of {package}", ""]
            for sub in subs:
                lines += [f".. py:module:: {sub}"]
                lines += ["   :no-index:"] if sub in own_section else []
                lines += ["", f"* ``{sub}``: {summary_line(sub)}", ""]
        content = StringList(lines, source=f"<rlteach-api {' '.join(packages)}>")
        node = nodes.container()
        nested_parse_with_titles(self.state, content, node)
        return node.children


ALGORITHM_SECTIONS = {
    "losses": "Algorithms (losses)",
    "estimators": "Return and advantage estimators",
    "updaters": "Target-network updaters",
}


def load_algorithms(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def class_role(dotted: str) -> str:
    """A cross-reference when the API reference documents ``dotted``, else plain text."""
    module_name, _, name = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return f"``{name}`` (planned)"
    obj = getattr(module, name, None)
    if obj is None:
        return f"``{name}`` (planned)"
    exported = getattr(module, "__all__", None)
    documented = name in exported if exported is not None else obj.__module__ == module_name
    return f":py:class:`~{dotted}`" if documented else f"``{dotted}``"


def registered_recipes() -> set[str]:
    from rlteach.bench import REGISTRY
    from rlteach.recipes import load_all

    load_all()
    return set(REGISTRY)


class RlteachAlgorithms(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        path = Path(self.env.srcdir) / "book" / "algorithms.yml"
        self.env.note_dependency(str(path))
        data = load_algorithms(path)
        recipes = registered_recipes()
        lines: list[str] = []
        for key, title in ALGORITHM_SECTIONS.items():
            has_recipes = key == "losses"
            lines += [f".. rubric:: {title}", "", ".. list-table::", "   :header-rows: 1", ""]
            header = ["Algorithm (paper)", "Chapter", "rlteach class"]
            header += ["Recipe (bench entry)"] if has_recipes else []
            lines[-1:-1] = [f"   :widths: {'34 26 22 18' if has_recipes else '40 32 28'}"]
            lines += ["   * - " + header[0]] + [f"     - {h}" for h in header[1:]]
            for row in data.get(key, []):
                chapter = row["chapter"]
                if chapter in self.env.found_docs:
                    chapter_cell = f":doc:`/{chapter}`"
                else:
                    chapter_cell = f"``{Path(chapter).name}`` (in preparation)"
                algorithm = row["algorithm"]
                if row.get("cite"):
                    algorithm += f" :cite:p:`{','.join(row['cite'])}`"
                cells = [algorithm, chapter_cell]
                cells.append(", ".join(class_role(c) for c in row["classes"]))
                if has_recipes:
                    names = [
                        f"``{n}``" if n in recipes else f"``{n}`` (planned)"
                        for n in row.get("recipes", [])
                    ]
                    cells.append(", ".join(names) or "—")
                lines += ["   * - " + cells[0]] + [f"     - {c}" for c in cells[1:]]
            lines.append("")
        content = StringList(lines, source=str(path))
        node = nodes.container()
        nested_parse_with_titles(self.state, content, node)
        return node.children


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated script tags (sphinx-thebe 0.3.1 adds its inline configuration twice, and
    the second ``const THEBE_JS_URL`` is a JavaScript error on every page)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        key = (str(getattr(script, "filename", script) or ""), attributes.get("body"))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", dedupe_scripts, priority=900)
    app.add_directive("rlteach-api", RlteachApi)
    app.add_directive("rlteach-algorithms", RlteachAlgorithms)
    # Before napoleon (priority 500) rewrites the docstring, and after it for properties.
    app.connect("autodoc-process-docstring", tidy_before_napoleon, priority=400)
    app.connect("autodoc-process-docstring", undo_property_type, priority=600)
    app.connect("autodoc-process-docstring", check_after_napoleon, priority=700)
    app.connect("missing-reference", resolve_reexport)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
