"""The REDQ and CrossQ recipes: tiny seeded runs reproduce, G critic steps per policy step,
no target network for CrossQ, batch statistics moved by the critic step only."""

import math

import pytest
import torch
from tensordict import TensorDict

from rlteach.envs import GymEnv
from rlteach.recipes import crossq, redq

TINY = {
    "total_frames": 80,
    "warmup_steps": 40,
    "batch_size": 16,
    "eval_every": 80,
    "eval_episodes": 2,
    "log_every": 10,
}


def _tiny(module):
    if module is redq:
        return redq.REDQConfig(**TINY, updates_per_step=2, num_qvalue_nets=3)
    return crossq.CrossQConfig(**TINY, critic_cells=(32, 32))


@pytest.mark.parametrize("module", [redq, crossq], ids=["redq", "crossq"])
def test_tiny_run_is_finite_and_reproducible(module):
    cfg = _tiny(module)
    first = module.train(seed=4, progress=False, cfg=cfg)
    again = module.train(seed=4, progress=False, cfg=cfg)
    assert [(p.env_steps, p.mean_return) for p in first.curve] == [
        (p.env_steps, p.mean_return) for p in again.curve
    ]
    assert first.curve[-1].env_steps == 80 and math.isfinite(first.final_return)
    for key in ("loss_qvalue", "loss_actor", "alpha", "entropy"):
        assert first.logs[key] == again.logs[key]
        assert all(math.isfinite(v) for v in first.logs[key]), key
    assert first.agent is not None and first.agent.loss.actor_network is first.agent.extras["actor"]


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(n, 3, generator=g),
            "action": torch.rand(n, 1, generator=g) * 4 - 2,
            ("next", "observation"): torch.randn(n, 3, generator=g),
            ("next", "reward"): -torch.rand(n, 1, generator=g),
            ("next", "done"): torch.zeros(n, 1, dtype=torch.bool),
            ("next", "terminated"): torch.zeros(n, 1, dtype=torch.bool),
        },
        [n],
    )


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_redq_takes_g_critic_steps_per_policy_step():
    """Algorithm 1: G critic updates (each with a target update), then one policy update."""
    G = 3
    cfg = redq.REDQConfig(updates_per_step=G, num_qvalue_nets=4)
    agent = redq.build(cfg, GymEnv("Pendulum-v1"))
    actor, critics = agent.loss.actor_network, agent.loss.qvalue_network
    torch.manual_seed(0)
    for i in range(2 * G):
        actor_before, critic_before = _snapshot(actor), _snapshot(critics)
        alpha_before = agent.loss.log_alpha.detach().clone()
        targets_due, scalars = agent.update(_batch(seed=i), i)
        assert targets_due  # Polyak step after every critic step
        assert _changed(critic_before, critics)
        policy_step = i % G == G - 1
        assert _changed(actor_before, actor) == policy_step, i
        assert (not torch.equal(alpha_before, agent.loss.log_alpha)) == policy_step, i
        assert set(scalars) == {"loss_qvalue", "loss_actor", "alpha", "entropy"}


def test_crossq_has_no_target_and_updates_statistics_in_the_critic_step():
    cfg = crossq.CrossQConfig(critic_cells=(32, 32), policy_delay=2)
    agent = crossq.build(cfg, GymEnv("Pendulum-v1"))
    loss = agent.loss
    assert loss.target_network_pairs() == []
    stats = [m.running_mean for m in loss.qvalue_network.modules() if hasattr(m, "running_mean")]
    assert stats, "the critics must carry batch renormalisation"
    torch.manual_seed(0)
    actor = loss.actor_network
    for i in range(4):
        before = [s.clone() for s in stats]
        actor_before = _snapshot(actor)
        targets_due, _ = agent.update(_batch(seed=i), i)
        assert not targets_due  # nothing to track
        assert all(not torch.equal(a, b) for a, b in zip(before, stats, strict=True))
        assert _changed(actor_before, actor) == (i % 2 == 0), i
        assert loss.qvalue_network.training  # back in training mode after the actor's pass
    # Adam with beta1 = 0.5 everywhere, as in the paper
    for opt in agent.extras["optimizers"]:
        assert opt.param_groups[0]["betas"] == (0.5, 0.999)


def test_quick_mode_shrinks_redq_utd():
    cfg = redq.REDQConfig(
        total_frames=100,
        quick_frames=40,
        warmup_steps=20,
        eval_every=40,
        eval_episodes=1,
        log_every=10,
        num_qvalue_nets=3,
        batch_size=16,
    )
    result = redq.train(seed=0, quick=True, progress=False, cfg=cfg)
    # 20 learning steps at the quick G = 2 are 40 critic updates: 4 log windows of 10
    # (at the full G = 10 there would be 20)
    assert result.curve[-1].env_steps == 40
    assert len(result.logs["loss_qvalue"]) == 4
