"""``python -m rlteach train sac|td3|ddpg|redq|crossq --resume``: the off-policy loop resumes
bit-identically.

Same pattern as tests/test_cli_train.py: the uninterrupted and the resumed runs run in this
process; the interrupted run is a real subprocess killed with SIGKILL right after its first
checkpoint, which falls after the warm-up (so the optimisers, the replay buffer's generator, the
exploration noise and the loop's counters are all live); ``--resume`` must then reproduce the
uninterrupted run's evaluation log, training logs and final parameters exactly.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_cli_train import ROOT, cli, final_parameters, read_log

from rlteach.__main__ import main

# Quick budgets: warm-up (1,000 random steps for sac/td3/ddpg, 250 for redq/crossq), a first
# checkpoint some updates later, then a little more training to redo after the kill.
BUDGETS = {  # algo: (steps, eval_every, checkpoint_every)
    "sac": (1300, 650, 1100),
    "td3": (1300, 650, 1100),
    "ddpg": (1300, 650, 1100),
    "redq": (360, 180, 300),
    "crossq": (400, 200, 300),
}


def run_args(algo: str) -> list[str]:
    steps, every, save = BUDGETS[algo]
    return [
        algo,
        *("--steps", str(steps), "--eval-every", str(every), "--eval-episodes", "2"),
        *("--checkpoint-every", str(save), "--no-progress"),
    ]


@pytest.fixture(scope="module", params=sorted(BUDGETS))
def runs(request, tmp_path_factory):
    algo = request.param
    base = tmp_path_factory.mktemp(f"cli_{algo}")
    whole, broken = base / "whole", base / "broken"
    cli("train", *run_args(algo), "--out", str(whole))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlteach", "train", *run_args(algo), "--out", str(broken)],
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
    resumed = cli("train", algo, "--out", str(broken), "--resume")
    return {"algo": algo, "whole": whole, "broken": broken, "killed": killed, "resumed": resumed}


def test_the_run_was_really_interrupted(runs):
    steps, _, save = BUDGETS[runs["algo"]]
    killed = runs["killed"]
    assert not killed["finished"]
    assert killed["frames"] == save < steps
    assert killed["meta"]["checkpoint_every"] == save
    assert killed["objects"]["loop"]["n_updates"] > 0  # after the warm-up: learning had begun
    assert len(killed["objects"]["buffer"]["storage"]) == save


def test_resumed_run_matches_the_uninterrupted_one(runs):
    steps, every, _ = BUDGETS[runs["algo"]]
    whole, broken = read_log(runs["whole"]), read_log(runs["broken"])
    assert [s for s, _ in whole] == list(range(every, steps + 1, every))
    assert broken == whole  # same steps, same returns, bit for bit
    a, b = final_parameters(runs["whole"]), final_parameters(runs["broken"])
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # the loop's own record: training logs, training episodes, update count
    loop_a = torch.load(runs["whole"] / "checkpoint.pt", weights_only=False)["objects"]["loop"]
    loop_b = torch.load(runs["broken"] / "checkpoint.pt", weights_only=False)["objects"]["loop"]
    for key in ("step", "n_updates", "logs", "episode_returns", "episode_steps", "sums"):
        assert loop_a[key] == loop_b[key], key
    assert torch.equal(loop_a["obs"], loop_b["obs"])
    assert f"{runs['algo']} on Pendulum-v1, seed 0: {steps:,} frames" in runs["resumed"]


def test_resume_refuses_another_seed_or_config(runs, capsys, monkeypatch):
    algo, folder = runs["algo"], str(runs["whole"])
    assert main(["train", algo, "--out", folder, "--resume", "--seed", "1"]) == 2
    assert "--seed 1 (checkpoint: 0)" in capsys.readouterr().err
    assert main(["train", algo, "--out", folder, "--resume", "--steps", "999"]) == 2
    assert "--steps 999 (checkpoint:" in capsys.readouterr().err

    from dataclasses import replace

    from rlteach.recipes.base import TRAINABLE

    configs = TRAINABLE[algo].configs
    monkeypatch.setitem(configs, "Pendulum-v1", replace(configs["Pendulum-v1"], batch_size=7))
    assert main(["train", algo, "--out", folder, "--resume"]) == 2
    assert "configuration changed" in capsys.readouterr().err


def test_offpolicy_recipes_are_listed_as_resumable(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for algo in BUDGETS:
        assert f"{algo:10s} resumable" in text, algo
