"""``python -m rlteach train dqn|c51 --resume``: the value-based replay loop resumes bit-identically.

Same pattern as tests/test_cli_train.py: the uninterrupted and the resumed runs run in this
process; the interrupted run is a real subprocess killed with SIGKILL right after its first
checkpoint, which falls after ``learning_starts`` (so the optimiser, the replay buffer and its
generator, the ε schedule and its generator and the target network are all live); ``--resume``
must then reproduce the uninterrupted run's evaluation log and final parameters exactly.

A second, in-process test stops a run right after its first checkpoint with a target-copy
interval that does not divide the updates per batch, so HardUpdate's call counter is mid-period
when saved (with the CLI's CartPole config it is 0 at every batch boundary); SoftUpdate too.
"""

from dataclasses import replace

import pytest
import torch
from test_cli_train import (
    assert_listed_as_resumable,
    assert_resume_refuses_other_settings,
    assert_same_final_parameters,
    kill_and_resume,
    read_log,
    stop_after_first_save,
)

from rlteach.checkpoint import Checkpointer

# 256 frames per batch; 1,000 random frames before the first update; the first checkpoint at
# 1,280 frames (two batches of updates done), then 768 frames to redo after the kill.
STEPS, EVERY, SAVE = 2048, 1024, 1280
ALGOS = ("dqn", "c51")


def run_args(algo: str) -> list[str]:
    return [
        algo,
        *("--steps", str(STEPS), "--eval-every", str(EVERY), "--eval-episodes", "2"),
        *("--checkpoint-every", str(SAVE), "--no-progress"),
    ]


@pytest.fixture(scope="module", params=ALGOS)
def runs(request, tmp_path_factory):
    algo = request.param
    runs = kill_and_resume(tmp_path_factory.mktemp(f"cli_{algo}"), run_args(algo))
    return {"algo": algo, **runs}


def test_the_run_was_really_interrupted(runs):
    killed = runs["killed"]
    assert not killed["finished"]
    assert killed["frames"] == SAVE < STEPS
    assert killed["meta"]["checkpoint_every"] == SAVE
    objects = killed["objects"]
    assert objects["optimizer"]["state"]  # after learning_starts: Adam had taken steps
    assert objects["collector"]["frames"] == SAVE
    assert objects["buffer"]["size"] == SAVE
    assert 0.04 < float(objects["exploration"]["eps"]) < 1.0  # mid-way through the ε schedule
    assert "counter" in objects["target_updater"]


def test_resumed_run_matches_the_uninterrupted_one(runs):
    whole, broken = read_log(runs["whole"]), read_log(runs["broken"])
    assert [s for s, _ in whole] == list(range(EVERY, STEPS + 1, EVERY))
    assert broken == whole  # same steps, same returns, bit for bit
    assert_same_final_parameters(runs["whole"], runs["broken"])
    # the rest of the final state: ε, the collector's episodes, the buffer, the updater
    end_a = torch.load(runs["whole"] / "checkpoint.pt", weights_only=False)["objects"]
    end_b = torch.load(runs["broken"] / "checkpoint.pt", weights_only=False)["objects"]
    assert torch.equal(end_a["exploration"]["eps"], end_b["exploration"]["eps"])
    assert torch.equal(end_a["exploration_generator"], end_b["exploration_generator"])
    for key in ("frames", "episode_returns", "episode_lengths"):
        assert end_a["collector"][key] == end_b["collector"][key], key
    assert end_a["target_updater"] == end_b["target_updater"]
    assert torch.equal(end_a["buffer"]["generator"], end_b["buffer"]["generator"])
    assert (end_a["buffer"]["storage"] == end_b["buffer"]["storage"]).all()
    assert f"{runs['algo']} on CartPole-v1, seed 0: {STEPS:,} frames" in runs["resumed"]


def test_resume_refuses_another_seed_or_config(runs, capsys, monkeypatch):
    assert_resume_refuses_other_settings(
        runs["algo"], runs["whole"], "CartPole-v1", capsys, monkeypatch
    )


def test_value_based_recipes_are_listed_as_resumable(capsys):
    assert_listed_as_resumable(ALGOS, capsys)


@pytest.mark.parametrize("target_update", ["hard", "soft"])
def test_target_updater_state_resumes_mid_period(target_update, tmp_path, monkeypatch):
    """In process: stop right after the first checkpoint, resume, compare with a whole run."""
    from rlteach.recipes import dqn

    cfg = replace(
        dqn.DQNConfig(),
        total_frames=1792,
        eval_every=896,
        eval_episodes=2,
        stop_on_solve=False,
        target_update=target_update,
        target_update_interval=48,  # 32 updates per batch: the counter is mid-period at saves
    )
    whole_ckpt = Checkpointer(tmp_path / "whole", 1280)
    whole, agent = dqn.train_agent(0, progress=False, cfg=cfg, checkpoint=whole_ckpt)

    stop_after_first_save(
        monkeypatch,
        lambda: dqn.train_agent(
            0, progress=False, cfg=cfg, checkpoint=Checkpointer(tmp_path / "b", 1280)
        ),
    )
    killed = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert killed["frames"] == 1280 and not killed["finished"]
    if target_update == "hard":  # 64 updates done (at 1,024 and 1,280 frames): 64 % 48 = 16
        assert killed["objects"]["target_updater"]["counter"] == 16

    resumed_ckpt = Checkpointer(tmp_path / "b", 1280, resume=True)
    resumed, agent_b = dqn.train_agent(0, progress=False, cfg=cfg, checkpoint=resumed_ckpt)
    assert resumed_ckpt.restored_frames == 1280
    curve = [(p.env_steps, p.mean_return) for p in whole.curve]
    assert [(p.env_steps, p.mean_return) for p in resumed.curve] == curve
    a, b = agent.loss.state_dict(), agent_b.loss.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert torch.equal(agent.exploration.eps, agent_b.exploration.eps)
