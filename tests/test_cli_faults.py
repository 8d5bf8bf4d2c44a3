"""The command line never shows a traceback for a user's mistake or the machine's fault.

Damaged checkpoints, a checkpoint from another tool, ``--out`` naming a file, a read-only or
full disk, a seed NumPy cannot take, Ctrl-C: each ends in one clear message and an exit code
(2 for a refused request, 1 for the machine's fault, 130 for Ctrl-C). A refused run leaves no
empty folder, a failed checkpoint write leaves no temporary file, and log.csv is never ahead of
the checkpoint.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

import rlteach.checkpoint as checkpoint_module
import rlteach.train as train_module
from rlteach.__main__ import main
from rlteach.checkpoint import Checkpointer

ROOT = Path(__file__).resolve().parents[1]
# PPO on CartPole, the shortest run that checkpoints: one 256-frame batch, one evaluation.
RUN = ["ppo", "--steps", "256", "--eval-every", "256", "--eval-episodes", "1", "--no-progress"]


def run_cli(*args) -> tuple[int, str, str]:
    """``python -m rlteach ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished short run's folder (log.csv, curve.png, checkpoint.pt)."""
    folder = tmp_path_factory.mktemp("cli_faults") / "run"
    code, _, err = run_cli("train", *RUN, "--out", folder)
    assert code == 0, err
    return folder


def damaged_copy(finished_run: Path, tmp_path: Path, damage) -> Path:
    folder = tmp_path / "damaged"
    shutil.copytree(finished_run, folder)
    path = folder / "checkpoint.pt"
    path.write_bytes(damage(path.read_bytes()))
    return folder


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]


DAMAGES = {
    "truncated": lambda data: data[: len(data) // 2],
    "corrupted": _flip_middle,
    "empty": lambda data: b"",
    "text file": lambda data: b"this is not a checkpoint\n",
}


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_resume_and_evaluate_refuse_a_damaged_checkpoint(finished_run, tmp_path, kind):
    folder = damaged_copy(finished_run, tmp_path, DAMAGES[kind])
    code, _, err = run_cli("train", "ppo", "--out", folder, "--resume", "--no-progress")
    assert code == 2, err
    assert "checkpoint" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli("evaluate", folder / "checkpoint.pt", "--episodes", "1")
    assert code == 2 and "Traceback" not in err


def test_a_checkpoint_from_another_tool_is_refused(tmp_path):
    folder = tmp_path / "other"
    folder.mkdir()
    torch.save({"model": torch.zeros(3)}, folder / "checkpoint.pt")
    code, _, err = run_cli("train", "ppo", "--out", folder, "--resume", "--no-progress")
    assert code == 2 and "not an rlteach checkpoint" in err


def test_truncated_checkpoint_in_a_real_process_shows_no_traceback(finished_run, tmp_path):
    folder = damaged_copy(finished_run, tmp_path, DAMAGES["truncated"])
    proc = subprocess.run(
        [sys.executable, "-m", "rlteach", "train", "ppo", "--out", str(folder), "--resume"],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "truncated" in proc.stderr


def test_out_naming_a_file_is_refused(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    for out in (target, target / "run"):
        code, _, err = run_cli("train", *RUN, "--out", out)
        assert code == 2 and "is a file" in err and "Traceback" not in err
    assert target.read_text() == "mine"


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**40)])
def test_a_seed_outside_numpy_range_names_the_option(tmp_path, seed):
    out = tmp_path / "deep" / "run"
    code, _, err = run_cli("train", *RUN, "--seed", seed, "--out", out)
    assert code == 2 and "--seed" in err
    assert not (tmp_path / "deep").exists(), "a refused run left a folder behind"


def test_evaluate_refuses_seeds_outside_numpy_range(finished_run):
    code, _, err = run_cli(
        "evaluate", finished_run / "checkpoint.pt", "--episodes", "3", "--seed", str(2**32 - 2)
    )
    assert code == 2 and "--seed" in err


def test_read_only_output_folder_is_refused(tmp_path, monkeypatch):
    # Simulated (this may run as root, which writes anywhere); the real case is tested below.
    parent = tmp_path / "locked"
    parent.mkdir()
    monkeypatch.setattr(train_module.os, "access", lambda path, mode: Path(path) != parent)
    code, _, err = run_cli("train", *RUN, "--out", parent / "run")
    assert code == 2 and "read-only" in err
    assert list(parent.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_output_folder_is_refused_for_real(tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        code, _, err = run_cli("train", *RUN, "--out", parent / "run")
    finally:
        parent.chmod(0o700)
    assert code == 2 and "read-only" in err


def test_a_full_disk_leaves_no_temp_file_and_no_traceback(tmp_path, monkeypatch):
    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full)
    out = tmp_path / "run"
    code, _, err = run_cli("train", *RUN, "--out", out)
    assert code == 1, err
    assert "No space left" in err and "Traceback" not in err
    assert not list(out.glob("*.tmp")) if out.exists() else True
    assert not (out / "checkpoint.pt").exists()


def test_ctrl_c_after_a_checkpoint_says_how_to_resume(tmp_path, monkeypatch):
    save = Checkpointer.save

    def save_then_interrupt(self, frames, finished=False):
        save(self, frames, finished)
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpointer, "save", save_then_interrupt)
    out = tmp_path / "run"
    code, _, err = run_cli("train", *RUN, "--out", out)
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"--out {out} --resume" in lines[0]
    assert "Traceback" not in err


def test_ctrl_c_before_any_checkpoint_leaves_no_empty_folder(tmp_path, monkeypatch):
    def interrupt(self, policy=None, **objects):
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpointer, "track", interrupt)
    out = tmp_path / "new" / "run"
    code, _, err = run_cli("train", *RUN, "--out", out)
    assert code == 130 and "start it again" in err
    assert not (tmp_path / "new").exists()


def test_log_is_written_after_the_checkpoint(tmp_path, monkeypatch):
    """If the process dies between the two writes, log.csv is behind the checkpoint, not ahead."""
    write_csv = checkpoint_module.write_csv
    seen = []

    def checked_write_csv(path, curve):
        checkpoint = Path(path).with_name("checkpoint.pt")
        if checkpoint.exists():  # at a save (not at the end of the run)
            saved = torch.load(checkpoint, weights_only=False)
            seen.append((len(curve), len(saved["objects"]["evaluator"]["curve"])))
        write_csv(path, curve)

    monkeypatch.setattr(checkpoint_module, "write_csv", checked_write_csv)
    code, _, err = run_cli("train", *RUN, "--out", tmp_path / "run")
    assert code == 0, err
    assert seen and all(rows == saved for rows, saved in seen)
