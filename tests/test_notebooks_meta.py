"""Every chapter notebook is in the book, stored executed, error-free, and honours RLTEACH_QUICK.

The notebooks are discovered from ``notebooks/`` at collection time, so a new chapter is checked
as soon as its file exists: nothing here names a particular chapter.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import execute_notebooks  # noqa: E402  (the results stamp is defined once, where it is written)

NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.startswith("."))


def toc_files(node) -> list[str]:
    """All ``file:`` entries of a Jupyter Book ``_toc.yml`` tree (root included), in order."""
    found = []
    if isinstance(node, dict):
        for key in ("root", "file"):
            if key in node:
                found.append(str(node[key]))
        for value in node.values():
            if isinstance(value, (dict, list)):
                found.extend(toc_files(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(toc_files(item))
    return found


def load_toc() -> list[str]:
    with open(ROOT / "_toc.yml") as f:
        return toc_files(yaml.safe_load(f))


def load_notebook(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_toc_parses_and_lists_each_page_once():
    files = load_toc()
    assert files, "_toc.yml lists no pages"
    duplicates = {f for f in files if files.count(f) > 1}
    assert not duplicates, f"pages listed twice in _toc.yml: {sorted(duplicates)}"


def test_every_toc_entry_exists():
    missing = []
    for entry in load_toc():
        stem = ROOT / entry
        candidates = [stem] if stem.suffix else [stem.with_suffix(s) for s in (".md", ".ipynb")]
        if not any(c.is_file() for c in candidates):
            missing.append(entry)
    assert not missing, f"_toc.yml names pages that do not exist: {missing}"


def test_notebooks_and_toc_agree():
    in_toc = {
        (ROOT / e).with_suffix("").relative_to(ROOT).as_posix()
        for e in load_toc()
        if e.startswith("notebooks/")
    }
    on_disk = {p.with_suffix("").relative_to(ROOT).as_posix() for p in NOTEBOOKS}
    assert on_disk - in_toc == set(), f"notebooks missing from _toc.yml: {sorted(on_disk - in_toc)}"
    assert in_toc - on_disk == set(), (
        f"_toc.yml entries with no notebook: {sorted(in_toc - on_disk)}"
    )


def test_there_is_at_least_one_chapter():
    assert NOTEBOOKS, "notebooks/ holds no chapter"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_numbered_chapter(path):
    prefix = path.stem.split("_", 1)[0]
    assert prefix.isdigit() and len(prefix) == 2, (
        f"{path.name}: chapter notebooks are named NN_topic.ipynb (two-digit reading order)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_stored_outputs_and_no_errors(path):
    nb = load_notebook(path)
    cells = code_cells(nb)
    assert cells, f"{path.name} has no code cells"
    unexecuted = [i for i, c in enumerate(cells) if c.get("execution_count") is None]
    assert not unexecuted, (
        f"{path.name}: code cells {unexecuted} were never executed; store the notebook executed "
        "at full budget with `make execute`"
    )
    assert any(c.get("outputs") for c in cells), f"{path.name} stores no outputs"
    errors = [
        (i, out.get("ename"))
        for i, c in enumerate(cells)
        for out in c.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: stored error outputs in code cells {errors}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_reads_quick_mode(path):
    # The install cell (first code cell, the same in every chapter) reads RLTEACH_SOURCE, not this.
    cells = [
        c
        for c in code_cells(load_notebook(path))
        if "rlteach-install-cell" not in "".join(c["source"])
    ]
    source = "\n".join("".join(c["source"]) for c in cells)
    assert "quick_mode" in source and "import" in source, (
        f"{path.name} must read RLTEACH_QUICK through `from rlteach import quick_mode`"
    )
    assert "quick_mode()" in source, f"{path.name} imports quick_mode but never calls it"
    assert "os.environ" not in source or "RLTEACH_QUICK" not in source, (
        f"{path.name} reads RLTEACH_QUICK directly; use rlteach.quick_mode() instead"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_kernel_is_python3(path):
    kernelspec = load_notebook(path).get("metadata", {}).get("kernelspec", {})
    assert kernelspec.get("name") == "python3", (
        f"{path.name}: kernelspec name is {kernelspec.get('name')!r}; use 'python3' so that "
        "nbval and jupyter-book find the kernel on any machine"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_starts_with_a_title(path):
    first = load_notebook(path)["cells"][0]
    text = "".join(first["source"]).lstrip()
    assert first["cell_type"] == "markdown" and text.startswith("# "), (
        f"{path.name}: the first cell must be a Markdown cell starting with a '# ' title, "
        "which becomes the chapter title in the book"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_results_come_from_the_current_code(path):
    """The outputs were produced at full budget by these code cells and these recipe modules."""
    nb = load_notebook(path)
    refresh = (
        f"refresh them with `nice -n 10 python scripts/execute_notebooks.py notebooks/{path.name}` "
        "(or `make execute` for every chapter)"
    )
    stored = nb.get("metadata", {}).get("rlteach", {}).get(execute_notebooks.STAMP_KEY)
    assert stored, (
        f"{path.name} records no results stamp, so nothing says which code produced its "
        f"outputs: {refresh}"
    )
    current = execute_notebooks.results_stamp(nb, ROOT)
    assert stored.get("RLTEACH_QUICK") == "0", (
        f"{path.name}: stored outputs come from quick mode, not the full budget; {refresh}"
    )
    stale = []
    if stored.get("code_cells_sha256") != current["code_cells_sha256"]:
        stale.append("its code cells changed")
    old, new = stored.get("recipe_modules_sha256", {}), current["recipe_modules_sha256"]
    for module in sorted(set(old) | set(new)):
        if module not in new:
            stale.append(f"it no longer imports {module}")
        elif module not in old:
            stale.append(f"it now imports {module}")
        elif old[module] != new[module]:
            stale.append(f"{module} changed")
    old, new = stored.get("stored_runs_sha256", {}), current.get("stored_runs_sha256", {})
    for suite in sorted(set(old) | set(new)):
        if suite not in new:
            stale.append(f"it no longer reads the stored runs of {suite}")
        elif suite not in old:
            stale.append(f"it reads the stored runs of {suite}, which its stamp does not cover")
        elif old[suite] != new[suite]:
            stale.append(f"the stored runs in {suite}/ changed (a run added, removed or replaced)")
    assert not stale, (
        f"{path.name}: the stored outputs no longer come from the current code "
        f"({'; '.join(stale)}): {refresh}. If the change cannot alter the results (a progress "
        "bar, a checkpoint hook), check that, then record it with `python "
        f"scripts/execute_notebooks.py --stamp-only notebooks/{path.name}`."
    )


def test_stamp_follows_recipe_imports_through_the_recipes():
    """A chapter that imports sac depends on the shared loop sac imports (and the protocols its
    MuJoCo configs start from); c51 brings dqn, the same shared loop, and the field-scale
    protocol both read their MinAtar configs from."""
    used = execute_notebooks.recipe_modules_used("from rlteach.recipes import sac\n", ROOT)
    assert used == [
        "rlteach/recipes/_offpolicy.py",
        "rlteach/recipes/_scale.py",
        "rlteach/recipes/base.py",
        "rlteach/recipes/sac.py",
    ]
    used = execute_notebooks.recipe_modules_used(
        "import torch\nfrom rlteach.recipes.c51 import train as c51_train\n", ROOT
    )
    assert used == [
        "rlteach/recipes/_offpolicy.py",
        "rlteach/recipes/_scale.py",
        "rlteach/recipes/base.py",
        "rlteach/recipes/c51.py",
        "rlteach/recipes/dqn.py",
    ]
    assert execute_notebooks.recipe_modules_used("import rlteach\n", ROOT) == []


def test_stamp_covers_the_stored_runs_a_chapter_reads(tmp_path):
    """A chapter that reads ``stored_runs("mujoco")`` gets a fingerprint of those files, which
    changes when a run is added or a file changes; a chapter that reads no store gets the stamp
    it had before the stored runs were covered (no ``stored_runs_sha256`` key)."""
    import nbformat

    def notebook(*sources):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
        return nb

    reader = notebook("from rlteach.stored import stored_runs", 'STORED = stored_runs("mujoco")')
    plain = notebook("import torch", "print(1)")
    assert execute_notebooks.stored_suites_used(execute_notebooks.code_source(reader)) == ["mujoco"]
    assert "stored_runs_sha256" not in execute_notebooks.results_stamp(plain, tmp_path)
    assert set(execute_notebooks.results_stamp(plain, tmp_path)) == {
        "RLTEACH_QUICK", "code_cells_sha256", "recipe_modules_sha256"
    }
    run = tmp_path / "benchmarks" / "mujoco" / "sac-Hopper-v5"
    run.mkdir(parents=True)
    (run / "seed0.json").write_text('{"seed": 0}')
    (run.parent / "notes.md").write_text("not a run")

    def fingerprint():
        return execute_notebooks.results_stamp(reader, tmp_path)["stored_runs_sha256"]

    first = fingerprint()
    assert list(first) == ["benchmarks/mujoco"]
    (run.parent / "notes.md").write_text("edited: still not a run")
    assert fingerprint() == first
    (run / "seed1.json").write_text('{"seed": 1}')
    second = fingerprint()
    assert second != first
    (run / "seed1.json").write_text('{"seed": 1, "curve": []}')
    assert fingerprint() != second


def test_old_stamps_of_chapters_that_read_no_store_stay_valid():
    """Covering the stored runs changed no other chapter's stamp: each chapter whose code reads no
    store has a stamp of exactly the old three keys."""
    for path in NOTEBOOKS:
        nb = load_notebook(path)
        if execute_notebooks.stored_suites_used(execute_notebooks.code_source(nb)):
            continue
        assert "stored_runs_sha256" not in execute_notebooks.results_stamp(nb, ROOT), path.name


def exercises(nb: dict) -> list[tuple[str, list[dict]]]:
    """The chapter's exercises: (title, the cells from its statement to the next one).

    The section starts at a Markdown cell with a ``## Exercises`` heading and ends at the next
    ``## `` heading; each exercise starts with a bold number, ``**3. Title.**``.
    """
    import re

    start = re.compile(r"^\*\*(\d+)\.", re.M)
    found: list[tuple[str, list[dict]]] = []
    inside = False
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            headings = re.findall(r"^## (.+)$", text, re.M)
            if "Exercises" in headings:
                inside = True
                text = text.split("## Exercises", 1)[1]
            elif headings and inside:
                before = text.split("## ", 1)[0]
                if before.strip() and found:
                    found[-1][1].append({**cell, "source": [before]})
                break
            if not inside:
                continue
            pieces = start.split(text)  # [before, n1, body1, n2, body2, ...]
            if pieces[0].strip() and found:
                found[-1][1].append({**cell, "source": [pieces[0]]})
            for number, body in zip(pieces[1::2], pieces[2::2], strict=True):
                found.append((f"exercise {number}", [{**cell, "source": [body]}]))
        elif inside and found:
            found[-1][1].append(cell)
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_exercises_have_hidden_answers_and_a_checker(path):
    """Every exercise's answer is behind a toggle (a dropdown, or a hidden code cell), and each
    chapter has at least one exercise that runs an ``rlteach.exercises`` checker."""
    nb = load_notebook(path)
    found = exercises(nb)
    assert found, f"{path.name}: no '## Exercises' section with numbered exercises (**1. ...**)"
    for title, cells in found:
        hidden = any(
            ("{dropdown}" in "".join(c["source"]) and c["cell_type"] == "markdown")
            or (
                c["cell_type"] == "code"
                and {"hide-cell", "hide-input"} & set(c.get("metadata", {}).get("tags", []))
            )
            for c in cells
        )
        assert hidden, (
            f"{path.name}, {title}: no answer behind a toggle; add a ':::{{dropdown}} Answer' "
            "block or a code cell tagged hide-cell / hide-input"
        )
    checked = [
        title
        for title, cells in found
        if any(c["cell_type"] == "code" and "rlteach.exercises" in "".join(c["source"]) for c in cells)
    ]
    assert checked, (
        f"{path.name}: no exercise runs a checker from rlteach.exercises (see chapters 1-5)"
    )


# What a stored output must not show a reader: a warning (tqdm's "IProgress not found", a
# DeprecationWarning, ...) or a path of the machine that executed the chapter.
_WARNING = re.compile(r"\b[A-Z]\w*Warning\b:")
_MACHINE_PATH = re.compile(
    r"(?<![\w.])(/home/|/root/|/work/|/tmp/|/Users/|/opt/|/usr/|/private/var/|[A-Z]:\\\\)"
    r"|site-packages|dist-packages"
)


def output_texts(output: dict) -> list[str]:
    """The text a reader sees of one stored output: streams, plain text, HTML, tracebacks."""
    texts = []
    if "text" in output:
        texts.append("".join(output["text"]))
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime in ("application/javascript",):
            texts.append("".join(value) if isinstance(value, list) else str(value))
    texts.extend(output.get("traceback", []))
    return texts


def leaks(text: str) -> list[str]:
    found = [m.group(0) for m in _WARNING.finditer(text)]
    found += [m.group(0) for m in _MACHINE_PATH.finditer(text)]
    return found


def test_leak_detector_catches_what_it_must():
    stored = (
        "/work/main/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress "
        "not found. Please update jupyter and ipywidgets."
    )
    assert "TqdmWarning:" in leaks(stored) and "/work/" in leaks(stored)
    assert leaks("C:\\\\Users\\\\ann\\\\rl.py: UserWarning: x") != []
    assert leaks("PPO CartPole-v1: 100%|██████| 4096/4096 [00:03<00:00, 1200.00frame/s]") == []
    assert leaks("see book/notation.md and rlteach/objectives/ppo.py (PPO-3)") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_outputs_show_no_warning_and_no_machine_path(path):
    found = [
        (i, leak)
        for i, cell in enumerate(code_cells(load_notebook(path)))
        for output in cell.get("outputs", [])
        for text in output_texts(output)
        for leak in leaks(text)
    ]
    assert not found, (
        f"{path.name}: stored outputs show a warning or a path of the machine that executed it "
        f"(code cell, text): {found[:5]}. Fix the cause (filter a warning only where the chapter "
        "says why), then re-execute the chapter."
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_first_code_cell_installs_rlteach_where_it_is_missing(path):
    import install_cell

    cell = code_cells(load_notebook(path))[0]
    assert "".join(cell["source"]) == install_cell.install_cell_source(path.stem, ROOT), (
        f"{path.name}: the first code cell is not the current install cell (Colab, Binder); "
        "run `python scripts/install_cell.py`"
    )
    assert not cell.get("outputs"), f"{path.name}: the install cell stored output (it must be silent)"
    assert cell["metadata"].get("tags") == install_cell.TAGS, (
        f"{path.name}: the install cell is not folded in the book; run `python scripts/install_cell.py`"
    )


def test_install_cell_uses_the_book_repository():
    import install_cell

    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    for path in NOTEBOOKS:
        assert f'"git+{url}"' in install_cell.install_cell_source(path.stem, ROOT)
