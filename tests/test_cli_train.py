"""``python -m rlteach train / evaluate``: a run killed mid-way and resumed ends bit-identical.

The uninterrupted and the resumed runs run in this process; the interrupted run is a real
subprocess killed with SIGKILL (no clean-up code runs) right after
its first checkpoint appears; ``--resume`` must then reproduce the uninterrupted run's
evaluation log and final parameters exactly.
"""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rlteach.__main__ import main
from rlteach.checkpoint import Checkpointer

ROOT = Path(__file__).resolve().parents[1]
# PPO on CartPole: 256 frames per batch (20 epochs each); evaluations and checkpoints every 512.
RUN = ["ppo", "--steps", "2048", "--eval-every", "512", "--eval-episodes", "3", "--no-progress"]


def cli(*args) -> str:
    """Run the command line in this process (no interpreter start-up); return its stdout."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    assert code == 0, f"rlteach {' '.join(args)} failed:\n{out.getvalue()}\n{err.getvalue()}"
    return out.getvalue()


def read_log(folder: Path) -> list[tuple[int, float]]:
    """(env_steps, mean_return) per row; the seconds column is wall-clock time and differs."""
    with open(folder / "log.csv") as f:
        rows = list(csv.DictReader(f))
    return [(int(r["env_steps"]), float(r["mean_return"])) for r in rows]


def final_parameters(folder: Path) -> dict[str, torch.Tensor]:
    data = torch.load(folder / "checkpoint.pt", weights_only=False)
    assert data["finished"]
    return data["objects"]["loss"]


def kill_and_resume(base: Path, train_args: list[str]) -> dict:
    """``train_args`` run whole in this process (``base/whole``), then as a subprocess killed
    with SIGKILL right after its first checkpoint and resumed in this process (``base/broken``).

    Returns the two folders, the checkpoint the kill left and the resumed run's stdout.
    """
    whole, broken = base / "whole", base / "broken"
    cli("train", *train_args, "--out", str(whole))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlteach", "train", *train_args, "--out", str(broken)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (broken / "checkpoint.pt").exists():
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = torch.load(broken / "checkpoint.pt", weights_only=False)
    resumed = cli("train", train_args[0], "--out", str(broken), "--resume")
    return {"whole": whole, "broken": broken, "killed": killed, "resumed": resumed}


class _Stop(Exception):
    pass


def stop_after_first_save(monkeypatch, train) -> None:
    """Call ``train()`` with :meth:`Checkpointer.save` patched to raise right after writing, as
    if the process died the instant the first checkpoint was on disk (an in-process kill)."""
    save = Checkpointer.save

    def save_then_stop(self, frames, finished=False):
        save(self, frames, finished)
        raise _Stop

    with monkeypatch.context() as patch:
        patch.setattr(Checkpointer, "save", save_then_stop)
        with pytest.raises(_Stop):
            train()


def assert_same_final_parameters(whole: Path, broken: Path) -> None:
    a, b = final_parameters(whole), final_parameters(broken)
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.equal(a[name], b[name]), name


def assert_listed_as_resumable(algos, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for algo in algos:
        assert f"{algo:10s} resumable" in text, algo


def assert_resume_refuses_other_settings(
    algo, folder, env_id, capsys, monkeypatch, change=(("batch_size", 7),)
) -> None:
    """--resume with another --seed, --steps or a changed recipe config (``change``: field,
    value pairs) is refused."""
    from rlteach.recipes.base import TRAINABLE

    folder = str(folder)
    assert main(["train", algo, "--out", folder, "--resume", "--seed", "1"]) == 2
    assert "--seed 1 (checkpoint: 0)" in capsys.readouterr().err
    assert main(["train", algo, "--out", folder, "--resume", "--steps", "999"]) == 2
    assert "--steps 999 (checkpoint:" in capsys.readouterr().err
    configs = TRAINABLE[algo].configs
    monkeypatch.setitem(configs, env_id, replace(configs[env_id], **dict(change)))
    assert main(["train", algo, "--out", folder, "--resume"]) == 2
    assert "configuration changed" in capsys.readouterr().err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return kill_and_resume(tmp_path_factory.mktemp("cli"), RUN)


def test_the_run_was_really_interrupted(runs):
    killed = runs["killed"]
    assert not killed["finished"]
    assert 512 <= killed["frames"] < 2048
    assert killed["meta"]["steps"] == 2048 and killed["meta"]["seed"] == 0


def test_resumed_run_matches_the_uninterrupted_one(runs):
    whole, broken = read_log(runs["whole"]), read_log(runs["broken"])
    assert [s for s, _ in whole] == [512, 1024, 1536, 2048]
    assert broken == whole  # same steps, same returns, bit for bit
    assert_same_final_parameters(runs["whole"], runs["broken"])


def test_outputs_written(runs):
    for folder in (runs["whole"], runs["broken"]):
        assert (folder / "curve.png").stat().st_size > 10_000
        assert not (folder / "checkpoint.pt.tmp").exists()
        # the result names the config it ran (what the benchmark stores and the book read)
        config = json.loads((folder / "result.json").read_text())["config"]
        assert config["env_id"] == "CartPole-v1" and config["total_frames"] == 2048
    assert "ppo on CartPole-v1, seed 0: 2,048 frames" in runs["resumed"]


def test_resume_of_a_finished_run_does_nothing(runs):
    assert "already finished" in cli("train", "ppo", "--out", str(runs["whole"]), "--resume")


def test_evaluate_reports_the_last_logged_return(runs):
    text = cli("evaluate", str(runs["whole"] / "checkpoint.pt"), "--episodes", "3")
    last_return = read_log(runs["whole"])[-1][1]
    assert f"mean return {last_return:.2f}" in text
    assert "over 3 episodes" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "ppq"], "Unknown algorithm 'ppq'. Did you mean ppo?"),
        (["train", "a2c", "--env", "Pendulum-v1"], "its action space is continuous"),
        (["train", "ppo", "--env", "CartPole-v9"], "Unknown Gymnasium environment 'CartPole-v9'"),
        (["train", "ppo", "--out", "/nonexistent/run", "--resume"], "no checkpoint at"),
        (["train", "ppo", "--steps", "0"], "--steps must be a positive integer"),
        (["evaluate", "/nonexistent/checkpoint.pt"], "No checkpoint at"),
    ],
)
def test_bad_input_gives_a_clear_error(args, message, capsys):
    assert main(args) == 2  # in-process: errors come before any training starts
    assert message in capsys.readouterr().err


def test_resume_refuses_other_settings(runs, capsys):
    assert main(["train", "ppo", "--out", str(runs["whole"]), "--resume", "--seed", "1"]) == 2
    assert "--seed 1 (checkpoint: 0)" in capsys.readouterr().err


def test_a_fresh_run_does_not_overwrite_a_checkpoint(runs, capsys):
    assert main(["train", *RUN, "--out", str(runs["whole"])]) == 2
    assert "exists already" in capsys.readouterr().err


def test_bench_only_recipes_refuse_resume(monkeypatch, capsys):
    from rlteach.recipes.base import TRAINABLE

    monkeypatch.delitem(TRAINABLE, "a2c")  # as a recipe that never called register_trainable
    assert main(["train", "a2c", "--resume", "--out", "/nonexistent"]) == 2
    assert (
        "a2c cannot --resume: its recipe does not save checkpoints yet" in capsys.readouterr().err
    )
    assert main(["train", "a2c", "--steps", "100"]) == 2
    assert "a2c is not resumable and takes no --steps" in capsys.readouterr().err


def test_help_lists_every_command_with_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("list", "train", "evaluate", "bench"):
        assert f"\n    {command} " in text
    assert "python -m rlteach train ppo --out runs/acro --resume" in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "ppo        resumable" in capsys.readouterr().out


def test_a_config_field_added_since_the_checkpoint_resumes_only_at_its_default():
    """A checkpoint made before a config field existed resumes when the field holds its default
    (the behaviour the run had), and is refused when it does not, or when a saved field is
    gone or differs."""
    from dataclasses import asdict, dataclass

    from rlteach.train import same_config

    @dataclass(frozen=True)
    class Old:
        lr: float = 1e-3
        cells: tuple[int, ...] = (64, 64)

    @dataclass(frozen=True)
    class New(Old):
        bootstrap: bool = True

    saved = asdict(Old())
    assert same_config(saved, New())
    assert not same_config(saved, New(bootstrap=False))
    assert not same_config(saved, New(lr=3e-4))
    assert not same_config({**saved, "gone": 1}, New())
    assert not same_config(None, New())
    assert same_config(asdict(New()), New())
