"""The MuJoCo configurations: the protocol they promise, and a smoke run of each on its task.

The full runs (100,000 steps, 3 seeds) are made by ``scripts/scale_runs.py`` and committed under
``benchmarks/mujoco/``; here each configuration trains its quick budget end to end on the real
MuJoCo task (the ``mujoco`` wheel from PyPI, installed with ``[dev]`` or ``[scale]``), so that a
broken config, a wrong observation size or a network that cannot act in the task fails CI.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

pytest.importorskip("mujoco", reason="the [scale] extra (also in [dev]) installs MuJoCo")

from rlteach.recipes import load_all  # noqa: E402
from rlteach.recipes._offpolicy import MUJOCO_PROTOCOL  # noqa: E402
from rlteach.recipes.base import TRAINABLE  # noqa: E402
from rlteach.train import resolve_config  # noqa: E402

MUJOCO_TASKS = ("Hopper-v5", "HalfCheetah-v5")
OFF_POLICY = ("sac", "td3", "ddpg")


def _mujoco_configs():
    load_all()
    return [
        (algo, task, recipe.configs[task])
        for algo, recipe in sorted(TRAINABLE.items())
        for task in MUJOCO_TASKS
        if task in recipe.configs
    ]


def test_every_continuous_recipe_of_the_issue_has_both_mujoco_tasks():
    have = {(algo, task) for algo, task, _ in _mujoco_configs()}
    for algo in (*OFF_POLICY, "redq", "crossq"):
        for task in MUJOCO_TASKS:
            assert (algo, task) in have, f"{algo} has no config for {task}"


@pytest.mark.parametrize("algo", OFF_POLICY)
@pytest.mark.parametrize("task", MUJOCO_TASKS)
def test_off_policy_mujoco_configs_follow_the_protocol(algo, task):
    """100k steps, evaluation every 5k steps over 10 episodes, no early stop, RL-Zoo's warm-up."""
    recipe, cfg = resolve_config(algo, task)
    assert cfg is recipe.configs[task]  # the task's own config, not the default with env replaced
    for name, value in MUJOCO_PROTOCOL.items():
        assert getattr(cfg, name) == value, (algo, task, name)
    assert cfg.warmup_steps < cfg.total_frames
    assert (cfg.total_frames // cfg.eval_every) == 20
    sizes = {"sac": (256, 256), "td3": (400, 300), "ddpg": (400, 300)}
    assert tuple(cfg.num_cells) == sizes[algo]


@pytest.mark.parametrize(
    "algo,task", [(a, t) for a, t, _ in _mujoco_configs() if a != "ppo"], ids=lambda x: str(x)
)
def test_mujoco_config_smoke_run(algo, task):
    """The quick budget on the real task: warm-up, updates, evaluation, finite numbers."""
    recipe = TRAINABLE[algo]
    # 60 updates (the warm-up is cut to half the quick budget), logged every 10: CrossQ's
    # 2048-wide critics cost about 0.4 s per update on one core
    cfg = replace(recipe.configs[task], quick_frames=120, eval_episodes=2, log_every=10)
    result = recipe.train(seed=0, quick=True, progress=False, cfg=cfg)
    assert result.env_id == task
    assert result.curve[-1].env_steps == 120
    assert all(math.isfinite(p.mean_return) for p in result.curve)
    logged = result.logs.get("loss_qvalue") or result.logs.get("loss_value")
    assert logged and all(math.isfinite(v) for v in logged)
    assert result.logs["env_steps"][-1] <= 120


@pytest.mark.parametrize("task", MUJOCO_TASKS)
def test_ppo_mujoco_config_and_smoke_run(task):
    """Continuous PPO on MuJoCo: the paper's horizon and minibatches, a budget of whole batches
    just under 10^6 steps, both normalisations on; a quick run of two small batches trains,
    evaluates and moves the running statistics away from their start."""
    from rlteach.modules.normalize import find_normalizer
    from rlteach.recipes import ppo

    recipe, cfg = resolve_config("ppo", task)
    assert cfg is recipe.configs[task]
    assert (cfg.num_envs, cfg.steps_per_env, cfg.minibatch_size, cfg.num_epochs) == (1, 2048, 64, 10)
    assert cfg.total_frames == 999_424 and cfg.total_frames % 2048 == 0
    assert cfg.normalize_observations and cfg.scale_rewards and not cfg.stop_on_solve
    small = replace(cfg, steps_per_env=64, quick_frames=128, eval_episodes=1, num_epochs=1)
    result = ppo.train(seed=0, quick=True, progress=False, cfg=small)
    assert result.curve[-1].env_steps == 128
    assert all(math.isfinite(p.mean_return) for p in result.curve)
    # the statistics are the networks' buffers: a fresh build starts at mean 0, var 1
    from rlteach.envs import VecGymEnv

    env = VecGymEnv(task, 1, seed=0)
    actor, critic, _ = ppo.build(small, env)
    env.close()
    norm = find_normalizer(actor)
    assert norm is not None and norm is find_normalizer(critic)  # one instance, shared
    assert norm.stats.mean.abs().max() == 0 and (norm.stats.var == 1).all()


def test_ppo_mujoco_resumes_bit_identically_with_its_running_statistics(tmp_path):
    """Killed after its first checkpoint and resumed, a PPO run with observation and reward
    normalisation ends with the same returns and parameters (running statistics and the reward
    scaler's running returns included) as the run that was never interrupted."""
    from test_cli_train import assert_same_final_parameters, kill_and_resume, read_log

    args = [
        "ppo", "--env", "Hopper-v5", "--steps", "512", "--eval-every", "128",
        "--eval-episodes", "1", "--no-progress",
        "--set", "steps_per_env=128", "--set", "num_epochs=2",
    ]  # fmt: skip
    runs = kill_and_resume(tmp_path, args)
    assert not runs["killed"]["finished"]
    assert read_log(runs["broken"]) == read_log(runs["whole"])
    assert_same_final_parameters(runs["whole"], runs["broken"])
    saved = torch.load(runs["whole"] / "checkpoint.pt", weights_only=False)["objects"]
    assert "reward_scaler" in saved and saved["reward_scaler"]["stats.count"] > 512
    assert any(k.endswith("stats.mean") and v.abs().sum() > 0 for k, v in saved["loss"].items())
