"""rlteach as a user gets it from an index: the sdist and wheel that ``python -m build`` makes.

The wheel is installed into a clean virtual environment outside the checkout (torch first, at
the version this test runs with, so that pip takes the same CPU build; then the wheel and its
dependencies), and every check runs from a folder outside the checkout with no ``PYTHONPATH``:
nothing can be read from the repository at run time. Slow (a build and an install, about a
minute or two on two cores, most of it pip); the package index must be reachable.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from install_helpers import clean_env, fresh_venv, run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="`build` is in the dev extra: pip install -e '.[dev]'")
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, ROOT], cwd=ROOT)
    return out


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory) -> Path:
    """A fresh virtual environment with torch and the built wheel: its bin/ folder."""
    home = tmp_path_factory.mktemp("user")
    bindir = fresh_venv(home / "venv")
    (wheel,) = dist.glob("rlteach-*.whl")
    run([bindir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         wheel], cwd=home, env=clean_env())
    return bindir


def test_build_makes_an_sdist_and_a_wheel_with_the_whole_package(dist):
    (wheel,) = dist.glob("rlteach-*-py3-none-any.whl")
    (sdist,) = dist.glob("rlteach-*.tar.gz")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "rlteach").rglob("*.py")}
    assert sources - in_wheel == set(), f"modules missing from the wheel: {sources - in_wheel}"
    assert not any(n.startswith(("tests/", "notebooks/", "book/")) for n in in_wheel)
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert any(n.endswith("/pyproject.toml") for n in names)
    assert any(n.endswith("/rlteach/objectives/ppo.py") for n in names)
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1024:.0f} KiB")


def test_installed_wheel_lists_trains_and_imports_everything(installed, tmp_path):
    env = clean_env()
    python = installed / "python"
    where = run([python, "-c", "import rlteach; print(rlteach.__file__)"], cwd=tmp_path, env=env)
    assert str(installed.parent) in where and str(ROOT) not in where, where

    listing = run([installed / "rlteach", "list"], cwd=tmp_path, env=env)
    assert "ppo-cartpole" in listing and "475" in listing

    out = tmp_path / "run"
    run(
        [installed / "rlteach", "train", "ppo", "--steps", "2048", "--eval-every", "1024",
         "--eval-episodes", "2", "--out", out, "--no-progress"],
        cwd=tmp_path,
        env=env,
    )
    assert (out / "checkpoint.pt").is_file()
    assert any(out.glob("*.csv")) and any(out.glob("*.png"))

    # Every public module imports in the installed package (optional extras aside: a module that
    # needs one must import without it and say so only when used).
    code = (
        "import importlib, pkgutil, rlteach\n"
        "names = [m.name for m in pkgutil.walk_packages(rlteach.__path__, 'rlteach.')\n"
        "         if not any(part.startswith('_') for part in m.name.split('.'))]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    count = int(run([python, "-c", code], cwd=tmp_path, env=env).strip().splitlines()[-1])
    assert count >= 30, f"only {count} public modules found in the installed package"
