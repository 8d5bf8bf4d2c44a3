"""Numbers the prose states about a run come from the cell that computed them (issue 17).

A chapter's Markdown pastes a result with ``{glue:text}`key```; the cell that computes it calls
``rlteach.book.glue("key", value, fmt)``. Checked here, on the stored notebooks:

1. every chapter: each ``{glue...}`key``` reference has a glued key in that notebook's stored
   outputs, and each glued key is referenced (a glued number nobody reads is a typed number
   waiting to happen);
2. the chapters converted so far (``GLUED_CHAPTERS``): the Markdown types no run number. The rule:
   a number written in the prose (outside maths, code, roles and links), of absolute value 10 or
   more or with a decimal point or a percent sign, must not equal (a) a glued value, nor (b) a
   number in the text outputs of a cell that glues, where the chapter prints its results. Equal
   means the same value after commas, signs and a trailing ``%`` are dropped (``1,008``,
   ``+639%`` and ``639`` all read as 639 and 1008); a printed time in seconds (``13 s``) is the
   machine's, not the run's, and is left out, and so is stderr (progress bars). Numbers below 10 without a decimal point
   (three seeds, 2 critics) are left out: too common to tell a count from a result. A number that
   the rule flags but is not about a run goes into ``NOT_RUN_NUMBERS`` with its reason.

A chapter joins ``GLUED_CHAPTERS`` once its run numbers are glued and its qualitative claims are
asserted in the cells that show them; later sessions extend the list until it holds every chapter.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))

GLUED_CHAPTERS = {"10_td3", "11_sac"}
"""Chapters whose run numbers are glued, not typed (extend as chapters are converted)."""

NOT_RUN_NUMBERS: dict[str, dict[str, str]] = {
    "10_td3": {
        "0.1": "the exploration noise of the TD3 configuration; the toy prints 0.1 as a noise level",
    },
    "11_sac": {
        "0.1": "TD3's exploration noise in the Hopper-v5 protocol; the Boltzmann fit prints alpha=0.1",
        "95%": "the confidence level of the intervals, which the Hopper-v5 cell also prints",
    },
}
"""chapter -> {number as typed: why it is not a run's number}, for numbers rule 2 flags."""

_REFERENCE = re.compile(r"\{glue(?::\w*)?\}`([^`]+)`")
_DIRECTIVE = re.compile(r"^```\{glue(?::\w*)?\}\s+(\S+)", re.M)
_SECONDS = re.compile(r"[\d.]+ ?s\b")  # wall-clock seconds: the machine's, not the run's
_NUMBER = re.compile(r"(?<![\w.])[-+−]?\d[\d,]*(?:\.\d+)?%?")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def references(nb: dict) -> set[str]:
    """The glue keys a notebook's Markdown pastes (``docpath::key`` reads another page: left
    out; ``key:format`` gives the key)."""
    found = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for ref in _REFERENCE.findall(text(cell)) + _DIRECTIVE.findall(text(cell)):
            if "::" not in ref:
                found.add(ref.split(":")[0].strip())
    return found


def glued(nb: dict) -> dict[str, str]:
    """key -> the glued text, from the stored outputs (MyST-NB's record: ``scrapbook`` metadata)."""
    found = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta:
                prefix = meta.get("mime_prefix", "")
                plain = out.get("data", {}).get(prefix + "text/plain", "")
                plain = "".join(plain) if isinstance(plain, list) else plain
                try:
                    import ast

                    plain = str(ast.literal_eval(plain))
                except (ValueError, SyntaxError):
                    pass
                found[meta["name"]] = plain
    return found


def prose(markdown: str) -> str:
    """The Markdown with maths, code, roles, directives' options, links and HTML removed."""
    markdown = re.sub(r"```.*?```", " ", markdown, flags=re.S)
    markdown = re.sub(r"\$\$.*?\$\$", " ", markdown, flags=re.S)
    markdown = re.sub(r"\$[^$]*\$", " ", markdown)
    markdown = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", markdown)  # {glue:text}`k`, {cite}`x`, {eq}`y`
    markdown = re.sub(r"`[^`]*`", " ", markdown)
    markdown = re.sub(r"\]\([^)]*\)", "]", markdown)
    markdown = re.sub(r"<[^>]+>", " ", markdown)
    return markdown


def value(token: str) -> float | None:
    token = token.replace(",", "").replace("−", "-").lstrip("+-").rstrip("%")
    try:
        return float(token)
    except ValueError:
        return None


def counts(token: str) -> bool:
    """Rule 2's filter: 10 or more, or a decimal point, or a percentage."""
    v = value(token)
    return v is not None and ("." in token or token.endswith("%") or v >= 10)


def typed_run_numbers(nb: dict) -> list[tuple[str, str]]:
    """(number typed in the prose, what it equals) for every number rule 2 flags."""
    results = {}
    for key, glued_text in glued(nb).items():
        for token in _NUMBER.findall(glued_text):
            if counts(token):
                results.setdefault(value(token), f"glued {key} = {glued_text!r}")
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or not any(
            o.get("metadata", {}).get("scrapbook") for o in cell.get("outputs", [])
        ):
            continue
        for out in cell["outputs"]:
            if out.get("metadata", {}).get("scrapbook") or out.get("name") == "stderr":
                continue  # stderr: progress bars and warnings, not results
            shown = out.get("text") or out.get("data", {}).get("text/plain", "")
            shown = "".join(shown) if isinstance(shown, list) else shown
            for token in _NUMBER.findall(_SECONDS.sub(" ", shown)):
                if counts(token):
                    results.setdefault(value(token), f"printed by a glue cell: {token}")
    flagged = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for token in _NUMBER.findall(prose(text(cell))):
                if counts(token) and value(token) in results:
                    flagged.append((token, results[value(token)]))
    return flagged


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_reference_is_glued_and_every_glued_key_referenced(path):
    nb = load(path)
    refs, keys = references(nb), set(glued(nb))
    missing = sorted(refs - keys)
    assert not missing, (
        f"{path.name}: the Markdown pastes glue keys no stored output holds: {missing}. Glue them "
        "in the cell that computes them (rlteach.book.glue) and re-execute the chapter."
    )
    unused = sorted(keys - refs)
    assert not unused, f"{path.name}: glued keys that no Markdown cell pastes: {unused}"


@pytest.mark.parametrize("stem", sorted(GLUED_CHAPTERS))
def test_converted_chapters_type_no_run_number(stem):
    nb = load(ROOT / "notebooks" / f"{stem}.ipynb")
    assert glued(nb), f"{stem}: listed as converted but glues nothing"
    allowed = NOT_RUN_NUMBERS.get(stem, {})
    flagged = [(t, why) for t, why in typed_run_numbers(nb) if t not in allowed]
    assert not flagged, (
        f"{stem}: the prose types numbers that a run produced (paste them with "
        f"{{glue:text}}`key` from the cell that computes them): {flagged}"
    )


def test_converted_chapters_exist():
    stems = {p.stem for p in NOTEBOOKS}
    assert GLUED_CHAPTERS <= stems, GLUED_CHAPTERS - stems


def _nb(markdown: str, glue_outputs: list[dict], printed: str = "") -> dict:
    outputs = list(glue_outputs)
    if printed:
        outputs.append({"output_type": "stream", "name": "stdout", "text": printed})
    return {
        "cells": [
            {"cell_type": "markdown", "source": markdown},
            {"cell_type": "code", "source": "", "outputs": outputs},
        ]
    }


def _record(name: str, glued_text: str) -> dict:
    from rlteach.book import glue_record

    data, metadata = glue_record(name, glued_text)
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def test_the_rule_catches_a_typed_run_number_and_spares_the_rest():
    nb = _nb(
        "SAC ends at {glue:text}`sac_final` and TD3 at 1,008 ± 2,574; the critic is "
        "+639% off; in $x = 944$ and `944` nothing counts; 3 seeds, 2 critics; gamma 0.99.",
        [_record("sac_final", "944"), _record("gap", "+639%")],
        printed="TD3 return: 1008 ± 2574 (95% interval)\n",
    )
    nb["cells"][0]["source"] += " Seed 1 solved at 3,500 steps in 13 seconds."
    nb["cells"][1]["outputs"].append(
        {"output_type": "stream", "name": "stdout", "text": "solved at 3500 steps, 13 s\n"}
    )
    assert references(nb) == {"sac_final"}
    assert glued(nb) == {"sac_final": "944", "gap": "+639%"}
    flagged = {t for t, _ in typed_run_numbers(nb)}
    assert flagged == {"1,008", "2,574", "+639%", "3,500"}  # not 13: seconds are the machine's


def test_references_read_roles_directives_and_formats():
    nb = _nb(
        "a {glue:text}`a:.1f`, b {glue}`b`, c {glue:md}`c`, elsewhere {glue:text}`09_ddpg::d`\n"
        "```{glue:figure} e\n```",
        [],
    )
    assert references(nb) == {"a", "b", "c", "e"}


def test_glue_writes_what_myst_nb_writes(monkeypatch):
    """With myst_nb installed, rlteach.book.glue emits MyST-NB's own output; without it, the
    same record (and the value, shown)."""
    myst_glue_module = pytest.importorskip("myst_nb.ext.glue")
    import rlteach.book as book

    emitted: list[tuple] = []

    def capture(obj, raw=False, metadata=None):
        emitted.append((obj, raw, metadata))

    monkeypatch.setattr(myst_glue_module, "ipy_display", capture)
    assert book.glue("sac_final", 944.31, ",.0f") == "944"
    theirs: list[tuple] = []
    monkeypatch.setattr(
        myst_glue_module, "ipy_display", lambda o, raw, metadata: theirs.append((o, raw, metadata))
    )
    myst_glue_module.glue("sac_final", "944", display=False)
    assert emitted == theirs
    data, metadata = book.glue_record("sac_final", "944")
    assert theirs == [(data, True, metadata)]

    import IPython.display

    shown: list[tuple] = []
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import myst_nb raises ImportError
    monkeypatch.setattr(
        IPython.display, "display", lambda o, raw=False, metadata=None: shown.append((o, metadata))
    )
    assert book.glue("gap", 6.39, "+.0%") == "+639%"
    assert shown[0] == book.glue_record("gap", "+639%")
    assert shown[1] == ({"text/plain": "gap = +639%"}, None)


def test_glue_formats_and_refuses_a_bad_key():
    from rlteach.book import glue_format, span

    assert glue_format(1008.4, ",.0f") == "1,008"
    assert glue_format(3500, "{:,} steps") == "3,500 steps"
    assert glue_format("x", None) == "x"
    assert span([4000, 3500, 4000]) == "3,500 to 4,000"
    assert span([3000, 3000]) == "3,000"
    assert span([0.216, 0.282], ".2f") == "0.22 to 0.28"
    from rlteach.book import glue

    with pytest.raises(ValueError, match="key"):
        glue("not a key", 1)
