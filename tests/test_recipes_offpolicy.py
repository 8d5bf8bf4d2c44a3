"""The off-policy loop and the DDPG / TD3 / SAC recipes: short runs, finite logs, reproducible."""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import pytest
import torch

from rlteach.bench import REGISTRY
from rlteach.recipes import ddpg, load_all, sac, td3
from rlteach.recipes._offpolicy import OffPolicyResult

TINY = {
    "total_frames": 240,
    "warmup_steps": 200,
    "batch_size": 32,
    "eval_every": 240,
    "eval_episodes": 2,
    "log_every": 10,
    "num_cells": (16,),
}
RECIPES = {
    "sac": (sac, sac.SACConfig),
    "td3": (td3, td3.TD3Config),
    "ddpg": (ddpg, ddpg.DDPGConfig),
}


def tiny_run(name, seed=0, **extra):
    module, config = RECIPES[name]
    return module.train(seed, progress=False, cfg=replace(config(), **TINY, **extra))


@functools.cache
def shared_run(name, seed=0):
    """One short run per (recipe, seed), shared by the tests that only read it."""
    return tiny_run(name, seed)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_short_run_is_finite_and_logged(name):
    result = shared_run(name)
    assert isinstance(result, OffPolicyResult)
    assert [p.env_steps for p in result.curve] == [240]
    assert math.isfinite(result.final_return) and -2000 < result.final_return <= 0
    assert len(result.cpu_seconds) == 1 and result.cpu_seconds[0] >= 0
    # 40 updates after the warm-up, averaged in blocks of 10
    assert result.logs["env_steps"] == [210, 220, 230, 240]
    for key, values in result.logs.items():
        assert all(math.isfinite(v) for v in values), key
    assert result.episode_steps == [200]  # Pendulum's time limit
    assert result.to_dict()["logs"] == result.logs  # serialisable, without the agent


def test_sac_logs_alpha_and_entropy():
    result = shared_run("sac")
    alpha = result.logs["alpha"]
    assert alpha[0] < 1.0  # the automatic temperature moved from alpha_init = 1
    assert "entropy" in result.logs and "loss_alpha" in result.logs


@pytest.mark.parametrize("name", ["sac", "td3"])
def test_seeded_runs_reproduce(name):
    a, b = shared_run(name), tiny_run(name, seed=0)
    assert a.logs == b.logs
    assert [p.mean_return for p in a.curve] == [p.mean_return for p in b.curve]
    actor_a, actor_b = a.agent.extras["actor"], b.agent.extras["actor"]
    for p, q in zip(actor_a.parameters(), actor_b.parameters(), strict=True):
        assert torch.equal(p, q)
    if name == "sac":  # another seed, another run
        assert tiny_run(name, seed=4).logs != a.logs


def test_td3_delayed_actor_updates_half_as_often():
    """policy_delay=2: the actor (and the targets) step on every second critic update."""
    result = shared_run("td3")
    loss = result.agent.loss
    actor_opt = result.agent.extras["optimizers"][1]
    critic_opt = result.agent.extras["optimizers"][0]
    actor_steps = actor_opt.state[next(iter(loss.actor_network.parameters()))]["step"]
    critic_steps = critic_opt.state[next(iter(loss.qvalue_network.parameters()))]["step"]
    assert (critic_steps.item(), actor_steps.item()) == (40, 20)
    off = tiny_run("td3", delayed_actor=False)
    opt = off.agent.extras["optimizers"][1]
    assert opt.state[next(iter(off.agent.loss.actor_network.parameters()))]["step"].item() == 40


def test_td3_ablation_flags_reach_the_loss():
    result = tiny_run("td3", clipped_double_q=False, target_smoothing=False)
    loss = result.agent.loss
    assert loss.clipped_double_q is False and loss.policy_noise == 0.0


def test_registered_with_the_bench():
    load_all()
    for name in ("sac-pendulum", "td3-pendulum", "ddpg-pendulum"):
        assert REGISTRY[name].env_id == "Pendulum-v1"
        assert REGISTRY[name].threshold == -200.0


def test_bad_config():
    with pytest.raises(ValueError, match="updates_per_step"):
        tiny_run("sac", updates_per_step=0)
    with pytest.raises(ValueError, match="tau"):
        tiny_run("ddpg", tau=0.0)
