"""Root pytest configuration: notebooks run in quick mode under the test command.

It also holds ``book_build``, one build of the whole book per test session (into a temporary
folder, so the developer's ``_build/html`` is never touched), shared by tests/test_book.py and
tests/test_browser.py.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# nbval starts each notebook kernel with this process's environment, so setting the variable
# here shrinks every chapter's training budget even when pytest is called without the Makefile.
os.environ.setdefault("RLTEACH_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Text progress bars, as in the stored outputs (rlteach.progress draws widgets only for readers).
os.environ.setdefault("RLTEACH_TEXT_PROGRESS", "1")
# As in the stored outputs: TorchRL's warning that a loss with target networks has no updater
# attached (rlteach mirrors it) stays off where the chapters compute a loss by hand.
os.environ.setdefault("RL_WARNINGS", "0")

# hypothesis loads its "ci" profile where CI is set (as in .ci/run). Under it, hypothesis 6.170
# nests the settings of a parametrized @given test one level deeper for every case, and the
# bad-input catalogue's thousand cases overflow the stack (RecursionError in settings.database).
# The tests keep the default profile, the same on a laptop and in CI; each test that needs other
# settings says so with @settings.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.load_profile("default")

ROOT = Path(__file__).resolve().parent


def jupyter_book_command() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found is None:
        pytest.skip("jupyter-book is not installed (pip install -e '.[dev]')")
    return [found]


@pytest.fixture(scope="session")
def book_build(tmp_path_factory):
    """Build the book once with --warningiserror --nitpick: (return code, html dir, build log)."""
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
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    return proc.returncode, out / "_build" / "html", proc.stdout + proc.stderr
