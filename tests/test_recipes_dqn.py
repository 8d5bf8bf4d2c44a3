"""The DQN and C51 recipes in quick mode: they run, log finite numbers, and reproduce by seed."""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import pytest
import torch

from rlteach.bench import REGISTRY
from rlteach.recipes import load_all
from rlteach.recipes.base import RunResult
from rlteach.recipes.c51 import C51Config
from rlteach.recipes.c51 import train_agent as train_c51_agent
from rlteach.recipes.dqn import DQNConfig, skip_missing_pandas_lookup
from rlteach.recipes.dqn import train as train_dqn
from rlteach.recipes.dqn import train_agent as train_dqn_agent

# a few batches are enough to exercise every line of the loop
TINY = {"quick_frames": 1_024, "num_envs": 8, "steps_per_batch": 16, "updates_per_batch": 8}


def assert_finite_run(result: RunResult, algo: str, env_id: str):
    assert isinstance(result, RunResult)
    assert (result.algo, result.env_id) == (algo, env_id)
    assert result.curve, "no evaluation was logged"
    for point in result.curve:
        assert point.env_steps > 0
        assert math.isfinite(point.seconds) and point.seconds >= 0
        assert math.isfinite(point.mean_return)


def test_recipes_are_registered_with_the_bench():
    load_all()
    for name, env_id in (
        ("dqn-cartpole", "CartPole-v1"),
        ("dqn-acrobot", "Acrobot-v1"),
        ("c51-cartpole", "CartPole-v1"),
    ):
        assert REGISTRY[name].env_id == env_id


def test_dqn_quick_run_is_finite_and_reproducible():
    cfg = replace(DQNConfig(), **TINY)
    first, agent = train_dqn_agent(seed=3, quick=True, progress=False, cfg=cfg)
    assert_finite_run(first, "dqn", "CartPole-v1")
    assert first.curve[-1].env_steps == 1_024
    # the agent: a greedy actor that acts, ε annealed below its start, the buffer filled
    td = agent.actor(agent.buffer.sample(5).select("observation"))
    assert td["action"].shape == (5,) and td["action_value"].shape == (5, 2)
    assert float(agent.exploration.eps) < 1.0
    assert len(agent.buffer) == 1_024
    second = train_dqn(seed=3, quick=True, progress=False, cfg=cfg)
    assert [(p.env_steps, p.mean_return) for p in first.curve] == [
        (p.env_steps, p.mean_return) for p in second.curve
    ]


def test_dqn_double_and_soft_target_variants_run():
    cfg = replace(DQNConfig(), double_dqn=True, target_update="soft", tau=0.05, **TINY)
    result, agent = train_dqn_agent(seed=0, quick=True, progress=False, cfg=cfg)
    assert_finite_run(result, "dqn", "CartPole-v1")
    assert agent.loss.double_dqn
    with pytest.raises(ValueError, match="target_update"):
        train_dqn(seed=0, quick=True, progress=False, cfg=replace(cfg, target_update="polyak"))
    # no target network at all: the loss bootstraps from the online network
    plain = replace(DQNConfig(), target_update="none", **TINY)
    result, agent = train_dqn_agent(seed=0, quick=True, progress=False, cfg=plain)
    assert_finite_run(result, "dqn", "CartPole-v1")
    assert not agent.loss.delay_value and not agent.loss.target_network_pairs()


def test_c51_quick_run_is_finite_and_reproducible():
    cfg = replace(C51Config(), **TINY)
    seen = []
    first, agent = train_c51_agent(
        seed=1, quick=True, progress=False, cfg=cfg, callback=lambda f, b, out: seen.append(f)
    )
    assert_finite_run(first, "c51", "CartPole-v1")
    assert seen and all(f >= 256 for f in seen)  # updates start after learning_starts
    torch.testing.assert_close(agent.loss.support, torch.linspace(0.0, 100.0, 51))
    second, _ = train_c51_agent(seed=1, quick=True, progress=False, cfg=cfg)
    assert [p.mean_return for p in first.curve] == [p.mean_return for p in second.curve]


def test_pandas_lookup_shortcut_is_undone():
    had = "pandas" in sys.modules
    with skip_missing_pandas_lookup():
        pass
    assert ("pandas" in sys.modules) == had
