"""The algorithm reads top to bottom (issue 19): no loss's ``forward`` or ``*_loss`` method
holds a ``raise`` (checks live in LossModule's readers and checkers, called first), and the
package has no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOSS_FILES = sorted((ROOT / "rlteach" / "objectives").glob("*.py"))


def _raising_methods(source: str) -> list[str]:
    found = []
    for cls in (n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            algorithm = fn.name == "forward" or fn.name.endswith("_loss")
            # LossModule.forward is the abstract method that says every subclass implements it
            abstract = cls.name == "LossModule" and fn.name == "forward"
            if algorithm and not abstract and any(isinstance(n, ast.Raise) for n in ast.walk(fn)):
                found.append(f"{cls.name}.{fn.name}")
    return found


@pytest.mark.parametrize("path", LOSS_FILES, ids=[p.name for p in LOSS_FILES])
def test_no_raise_in_a_losss_algorithm(path):
    assert _raising_methods(path.read_text()) == []


def test_the_check_finds_a_raise():
    source = "class L:\n    def forward(self, td):\n        if td is None:\n            raise ValueError\n"
    assert _raising_methods(source) == ["L.forward"]


def test_no_import_cycle():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "import_cycles.py")],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout  # fmt: skip
    assert "function-level included: 0 cycle(s)" in out, out
    assert "packages, function-level included: 0 cycle(s)" in out, out
