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
    "algo,task", [(a, t) for a, t, _ in _mujoco_configs()], ids=lambda x: str(x)
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
