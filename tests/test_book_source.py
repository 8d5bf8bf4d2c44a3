"""Code shown is the algorithm (issue 17): a chapter renders a source of 60 lines or more with
``rlteach.book.show_source``, which folds the plumbing by an explicit rule
(:func:`rlteach.book.plumbing_ranges`) into a collapsed ``<details>`` block."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rlteach.book import fold_source, plumbing_ranges

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import rendered_sources  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
LONG = 60

SOURCE = '''\
def train(cfg, seed, quick):
    """Docstring."""
    device = resolve(cfg.device)  # PLUMBING: refuse an unknown device first
    if quick:  # PLUMBING
        cfg = replace(cfg, total=10)
    if cfg.lr <= 0:
        raise ValueError("lr must be positive")
    # PLUMBING: threads and seeds
    seed_everything(seed)
    with torch.device("cpu"):  # PLUMBING: built on the CPU
        actor = make_actor(cfg)  # ALGO: the policy
    loss = Loss(actor)
    bar = progress(cfg)  # PLUMBING: the bar
    # (continued: it shows the evaluation too)
    for batch in collect(actor):
        out = loss(batch)  # ALGO: (X-1)
        if out is None:
            raise RuntimeError("no loss")
    return loss
'''


def test_the_rule_folds_marked_statements_and_checks_only():
    # 3: marked line; 4-5: marked if with its body; 6-7: a check; 8-9: a comment marker and the
    # statement under it; 10 stays (a marked with-block that holds an ALGO line); 13-14: the
    # marked statement and its comment's continuation; 17-18: a nested check
    assert plumbing_ranges(SOURCE) == [(3, 9), (13, 14), (17, 18)]
    shown, folded = fold_source(SOURCE)
    assert folded == 7 + 2 + 2
    lines = shown.splitlines()
    assert lines[2].startswith("    # [7 lines folded] device = resolve(cfg.device)")
    assert "actor = make_actor(cfg)  # ALGO: the policy" in shown
    assert "        # [2 lines folded] if out is None:" in lines
    assert "raise" not in shown and "seed_everything" not in shown


def test_a_source_without_plumbing_renders_as_before(monkeypatch):
    import IPython.display

    from rlteach import book

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)

    def plain(x):
        return x + 1

    import inspect

    book.show_source(plain)
    assert shown[0].data == f"```python\n{inspect.getsource(plain)}```"
    shown.clear()
    from rlteach.recipes import dqn

    book.show_source(dqn.run_value_based)
    markdown = shown[0].data
    assert markdown.count("<details>") == 1 and markdown.count("</details>") == 1
    assert inspect.getsource(dqn.run_value_based) in markdown  # the full source, folded
    assert "lines folded]" in markdown.split("<details>")[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_long_sources_are_rendered_with_their_plumbing_folded(path):
    long = [r for r in rendered_sources.rendered_sources(path) if r.lines >= LONG]
    in_full = [
        f"{r.expression} ({r.lines} lines, cell {r.cell_id})"
        for r in long
        if r.how != "show_source"
    ]
    assert not in_full, (
        f"{path.name} renders sources of {LONG}+ lines in full: {in_full}; render them with "
        "rlteach.book.show_source, which folds their plumbing"
    )
    unfolded = [r.expression for r in long if not plumbing_ranges(r.source)]
    assert not unfolded, (
        f"{path.name}: {unfolded} have nothing to fold; mark their plumbing with # PLUMBING"
    )
