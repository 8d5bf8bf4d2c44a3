"""``python -m rlteach train sac|td3|ddpg|redq|crossq --resume``: the off-policy loop resumes
bit-identically.

Same pattern as tests/test_cli_train.py: the uninterrupted and the resumed runs run in this
process; the interrupted run is a real subprocess killed with SIGKILL right after its first
checkpoint, which falls after the warm-up (so the optimisers, the replay buffer's generator, the
exploration noise and the loop's counters are all live); ``--resume`` must then reproduce the
uninterrupted run's evaluation log, training logs and final parameters exactly.
"""

import pytest
import torch
from test_cli_train import (
    assert_listed_as_resumable,
    assert_resume_refuses_other_settings,
    assert_same_final_parameters,
    kill_and_resume,
    read_log,
)

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
    runs = kill_and_resume(tmp_path_factory.mktemp(f"cli_{algo}"), run_args(algo))
    return {"algo": algo, **runs}


def test_the_run_was_really_interrupted(runs):
    steps, _, save = BUDGETS[runs["algo"]]
    killed = runs["killed"]
    assert not killed["finished"]
    assert killed["frames"] == save < steps
    assert killed["meta"]["checkpoint_every"] == save
    assert killed["objects"]["updates"]["n_updates"] > 0  # after the warm-up: learning had begun
    assert len(killed["objects"]["buffer"]["storage"]) == save


def test_resumed_run_matches_the_uninterrupted_one(runs):
    steps, every, _ = BUDGETS[runs["algo"]]
    whole, broken = read_log(runs["whole"]), read_log(runs["broken"])
    assert [s for s, _ in whole] == list(range(every, steps + 1, every))
    assert broken == whole  # same steps, same returns, bit for bit
    assert_same_final_parameters(runs["whole"], runs["broken"])
    # the loop's own record: training logs, training episodes, update count
    loop_a = torch.load(runs["whole"] / "checkpoint.pt", weights_only=False)["objects"]["loop"]
    loop_b = torch.load(runs["broken"] / "checkpoint.pt", weights_only=False)["objects"]["loop"]
    for key in ("step", "n_updates", "logs", "episode_returns", "episode_steps", "sums"):
        assert loop_a[key] == loop_b[key], key
    assert torch.equal(loop_a["obs"], loop_b["obs"])
    assert f"{runs['algo']} on Pendulum-v1, seed 0: {steps:,} frames" in runs["resumed"]


def test_resume_refuses_another_seed_or_config(runs, capsys, monkeypatch):
    assert_resume_refuses_other_settings(
        runs["algo"], runs["whole"], "Pendulum-v1", capsys, monkeypatch
    )


def test_offpolicy_recipes_are_listed_as_resumable(capsys):
    assert_listed_as_resumable(BUDGETS, capsys)
