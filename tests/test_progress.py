"""Progress bars: a widget for a reader in a live notebook, text in stored outputs and terminals."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
from tqdm import std

from rlteach import progress

try:  # imported before any test replaces IPython with a stand-in
    from tqdm.notebook import tqdm as notebook_tqdm
except ImportError:  # no ipywidgets/IPython: the widget test is skipped
    notebook_tqdm = None

ROOT = Path(__file__).resolve().parents[1]


class ZMQInteractiveShell:  # the name ipykernel's shell has; progress checks the type's name
    pass


@pytest.fixture
def in_kernel(monkeypatch):
    fake = types.SimpleNamespace(get_ipython=lambda: ZMQInteractiveShell())
    monkeypatch.setitem(sys.modules, "IPython", fake)


def test_text_bar_outside_a_notebook(monkeypatch):
    monkeypatch.delenv(progress.TEXT_PROGRESS_VARIABLE, raising=False)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not progress.widgets_wanted()
    with progress.progress_bar(total=3, disable=True) as bar:
        assert type(bar) is std.tqdm


def test_widget_bar_in_a_live_kernel_with_ipywidgets(monkeypatch, in_kernel):
    if notebook_tqdm is None:
        pytest.skip("ipywidgets is not installed")
    monkeypatch.delenv(progress.TEXT_PROGRESS_VARIABLE, raising=False)
    assert progress.widgets_wanted()
    bar = progress.progress_bar(total=3, disable=True)
    assert isinstance(bar, notebook_tqdm)
    bar.close()


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_text_bar_when_outputs_are_stored(monkeypatch, in_kernel, value):
    monkeypatch.setenv(progress.TEXT_PROGRESS_VARIABLE, value)
    assert not progress.widgets_wanted()
    with progress.progress_bar(total=3, disable=True) as bar:
        assert type(bar) is std.tqdm


def test_text_bar_without_ipywidgets(monkeypatch, in_kernel):
    monkeypatch.delenv(progress.TEXT_PROGRESS_VARIABLE, raising=False)
    real = progress.importlib.util.find_spec
    monkeypatch.setattr(
        progress.importlib.util, "find_spec", lambda n: None if n == "ipywidgets" else real(n)
    )
    assert not progress.widgets_wanted()


def test_every_bar_in_the_package_goes_through_progress_bar():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "rlteach").rglob("*.py")
        if p.name != "progress.py"
        and re.search(r"^\s*from tqdm|^\s*import tqdm", p.read_text(), re.MULTILINE)
    ]
    assert not offenders, f"use rlteach.progress.progress_bar, not tqdm directly: {offenders}"


def test_execution_for_the_book_stores_text_bars():
    text = (ROOT / "scripts" / "execute_notebooks.py").read_text()
    assert 'os.environ["RLTEACH_TEXT_PROGRESS"] = "1"' in text
