"""``python -m rlteach train mappo|ippo|qmix|vdn --resume``: the multi-agent loops resume
bit-identically, and ``evaluate`` scores their checkpoints by the team return.

Same pattern as tests/test_cli_train.py: the interrupted run is a real subprocess killed with
SIGKILL right after its first checkpoint (the PettingZoo copies or the two-step game, the
collector, the optimiser, the replay buffer, the target updater and the global RNGs are all
live); ``--resume`` must reproduce the uninterrupted run's evaluation log, its collector's team
returns and its final parameters exactly.

The CLI's MAPPO batches are two whole 25-step episodes per copy, so its checkpoints fall on
episode boundaries; a second, in-process test saves MAPPO mid-episode (30-step batches) and
resumes it there.
"""

import pickle
from dataclasses import replace

import pytest
import torch
from test_cli_train import (
    assert_listed_as_resumable,
    assert_resume_refuses_other_settings,
    assert_same_final_parameters,
    cli,
    kill_and_resume,
    read_log,
    stop_after_first_save,
)

from rlteach.__main__ import main
from rlteach.checkpoint import Checkpointer

pytest.importorskip("mpe2")

ALGOS = ("mappo", "ippo", "qmix", "vdn")
TASKS = {"mappo": "simple_spread_v3", "ippo": "simple_spread_v3"}
# algo: (steps, eval_every, checkpoint_every). MAPPO's batch is 8 copies × 50 steps = 400
# frames; the two-step game's is 50 copies × 2 steps = 100 frames.
BUDGETS = {
    "mappo": (1200, 400, 400),
    "ippo": (1200, 400, 400),
    "qmix": (3000, 1000, 1000),
    "vdn": (3000, 1000, 1000),
}


def run_args(algo: str) -> list[str]:
    steps, every, save = BUDGETS[algo]
    return [
        algo,
        *("--steps", str(steps), "--eval-every", str(every), "--eval-episodes", "2"),
        *("--checkpoint-every", str(save), "--no-progress"),
    ]


@pytest.fixture(scope="module", params=ALGOS)
def runs(request, tmp_path_factory):
    algo = request.param
    return {"algo": algo, **kill_and_resume(tmp_path_factory.mktemp(f"cli_{algo}"), run_args(algo))}


def test_the_run_was_really_interrupted(runs):
    steps, _, save = BUDGETS[runs["algo"]]
    killed = runs["killed"]
    assert not killed["finished"]
    assert killed["frames"] == save < steps
    objects = killed["objects"]
    assert objects["optimizer"]["state"]  # Adam had taken steps
    assert objects["collector"]["frames"] == save
    assert objects["collector"]["episode_returns"]  # episodes had ended
    if runs["algo"] in ("qmix", "vdn"):
        assert objects["buffer"]["size"] == save
        assert "counter" in objects["target_updater"]
    else:
        assert len(objects["collector"]["env"]["envs"]) == 8  # the PettingZoo copies' state


def test_resumed_run_matches_the_uninterrupted_one(runs):
    algo = runs["algo"]
    steps, every, _ = BUDGETS[algo]
    whole, broken = read_log(runs["whole"]), read_log(runs["broken"])
    assert [s for s, _ in whole] == list(range(every, steps + 1, every))
    assert broken == whole  # same steps, same returns, bit for bit
    assert_same_final_parameters(runs["whole"], runs["broken"])
    end_a = torch.load(runs["whole"] / "checkpoint.pt", weights_only=False)["objects"]
    end_b = torch.load(runs["broken"] / "checkpoint.pt", weights_only=False)["objects"]
    assert end_a["collector"]["episode_returns"] == end_b["collector"]["episode_returns"]
    assert torch.equal(end_a["collector"]["running"], end_b["collector"]["running"])
    task = TASKS.get(algo, "TwoStepGame")
    assert f"{algo} on {task}, seed 0: {steps:,} frames" in runs["resumed"]


def test_evaluate_reports_the_team_return_of_the_last_evaluation(runs):
    """evaluate plays the checkpoint's greedy team on the seeds of the run's own evaluations
    (10000, 10001), so it must report the last logged return."""
    text = cli("evaluate", str(runs["whole"]), "--episodes", "2")
    last_return = read_log(runs["whole"])[-1][1]
    assert f"mean team return {last_return:.2f}" in text
    assert "over 2 episodes" in text


def test_resume_refuses_another_seed_or_config(runs, capsys, monkeypatch):
    task = TASKS.get(runs["algo"], "TwoStepGame")
    assert_resume_refuses_other_settings(
        runs["algo"], runs["whole"], task, capsys, monkeypatch, change=[("lr", 1e-4)]
    )


def test_multiagent_recipes_are_listed_as_resumable(capsys):
    assert_listed_as_resumable(ALGOS, capsys)


@pytest.mark.parametrize("algo, task", [("mappo", "simple_spread_v3"), ("qmix", "TwoStepGame")])
def test_multiagent_recipes_refuse_another_task(algo, task, capsys):
    assert main(["train", algo, "--env", "CartPole-v1"]) == 2
    err = capsys.readouterr().err
    assert f"{algo} trains on {task} only, got --env CartPole-v1" in err


def test_mappo_resumes_mid_episode(tmp_path, monkeypatch):
    """In process: 30-step batches end mid-episode (25-step episodes), so the checkpoint holds
    PettingZoo worlds in motion; stop right after it, resume, compare with a whole run."""
    from rlteach.recipes import mappo

    cfg = replace(
        mappo.MAPPOConfig(), steps_per_env=30, total_frames=720, eval_every=240, eval_episodes=2
    )
    whole = mappo.train(0, progress=False, cfg=cfg, checkpoint=Checkpointer(tmp_path / "a", 240))

    stop_after_first_save(
        monkeypatch,
        lambda: mappo.train(
            0, progress=False, cfg=cfg, checkpoint=Checkpointer(tmp_path / "b", 240)
        ),
    )
    killed = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert killed["frames"] == 240 and not killed["finished"]
    layers = pickle.loads(killed["objects"]["collector"]["env"]["envs"][0])
    assert layers[-1][1]["steps"] == 5  # 30 = 25 + 5: five steps into the second episode

    resumed_ckpt = Checkpointer(tmp_path / "b", 240, resume=True)
    resumed = mappo.train(0, progress=False, cfg=cfg, checkpoint=resumed_ckpt)
    assert resumed_ckpt.restored_frames == 240
    assert [(p.env_steps, p.mean_return) for p in resumed.curve] == [
        (p.env_steps, p.mean_return) for p in whole.curve
    ]
    assert_same_final_parameters(tmp_path / "a", tmp_path / "b")
