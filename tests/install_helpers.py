"""Shared by the tests that install rlteach the way a user does (test_wheel.py, test_colab.py):
a fresh virtual environment outside the checkout, with the torch this test run uses."""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import torch


def run(cmd, cwd, env=None, timeout=900) -> str:
    """Run a command; on failure, fail with the tail of its output. Returns its stdout."""
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
        f"{proc.stderr[-4000:]}"
    )
    return proc.stdout


def clean_env() -> dict[str, str]:
    """This process's environment without anything that could point back at the checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def fresh_venv(path: Path, *packages: str) -> Path:
    """A new virtual environment at ``path`` with this run's torch (the same build: pip takes
    the CPU wheel this machine is set up for) and ``packages``; returns its bin folder."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    bindir = path / ("Scripts" if os.name == "nt" else "bin")
    torch_version = torch.__version__.split("+")[0]
    run([bindir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"torch=={torch_version}", *packages], cwd=path.parent, env=clean_env())
    return bindir
