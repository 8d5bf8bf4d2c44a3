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
    cli,
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
    assert_same_loop_record(runs["whole"], runs["broken"])
    assert f"{runs['algo']} on Pendulum-v1, seed 0: {steps:,} frames" in runs["resumed"]


def assert_same_loop_record(whole, broken):
    """The loop's own record: training episodes, the observation it stopped at (the collector),
    update count and training logs (the update log)."""
    a = torch.load(whole / "checkpoint.pt", weights_only=False)["objects"]
    b = torch.load(broken / "checkpoint.pt", weights_only=False)["objects"]
    for key in ("frames", "episode_returns", "episode_steps", "episode_return"):
        assert a["collector"][key] == b["collector"][key], key
    assert torch.equal(a["collector"]["obs"], b["collector"]["obs"])
    for key in ("n_updates", "logs", "sums", "carry"):
        assert a["updates"][key] == b["updates"][key], key
    assert str(a["critic_check"]) == str(b["critic_check"])  # NaN where no state counted


def old_layout(objects: dict) -> dict:
    """The objects of a checkpoint as rlteach wrote them before issue 19: the loop's counters,
    training record and CPU seconds in one "loop" entry, the environment under "env"."""
    objects = dict(objects)
    collector, updates = objects.pop("collector"), objects.pop("updates")
    evaluator = dict(objects.pop("evaluator"))
    cpu_seconds, cpu_elapsed = evaluator.pop("cpu_seconds"), evaluator.pop("cpu_elapsed")
    objects["evaluator"] = evaluator
    objects["env"] = collector["env"]
    objects["loop"] = {
        "step": collector["frames"],
        "obs": collector["obs"],
        "episode_return": collector["episode_return"],
        "n_updates": updates["n_updates"],
        "sums": updates["sums"],
        "cpu_elapsed": cpu_elapsed,
        "logs": updates["logs"],
        "cpu_seconds": cpu_seconds,
        "episode_returns": collector["episode_returns"],
        "episode_steps": collector["episode_steps"],
        "value_estimates": objects.pop("critic_check")["value_estimates"],
        "carry": updates["carry"],
    }
    return objects


def test_a_checkpoint_of_the_old_layout_resumes_bit_identically(runs, tmp_path):
    """Long runs saved before the loop's state moved into its collector, update log and
    evaluator (issue 19) resume with today's code: the killed checkpoint, rewritten in the old
    layout, resumes to the uninterrupted run's log, parameters and loop record."""
    old = dict(runs["killed"], objects=old_layout(runs["killed"]["objects"]))
    assert "loop" in old["objects"] and "collector" not in old["objects"]
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save(old, folder / "checkpoint.pt")
    cli("train", runs["algo"], "--out", str(folder), "--resume")
    assert read_log(folder) == read_log(runs["whole"])
    assert_same_final_parameters(runs["whole"], folder)
    assert_same_loop_record(runs["whole"], folder)


def test_resume_refuses_another_seed_or_config(runs, capsys, monkeypatch):
    assert_resume_refuses_other_settings(
        runs["algo"], runs["whole"], "Pendulum-v1", capsys, monkeypatch
    )


def test_offpolicy_recipes_are_listed_as_resumable(capsys):
    assert_listed_as_resumable(BUDGETS, capsys)
