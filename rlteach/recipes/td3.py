"""TD3 on Pendulum-v1 (Fujimoto et al., 2018): the shared off-policy loop plus TD3's update.

What is TD3-specific, and all that this file adds to :mod:`rlteach.recipes._offpolicy`:

* a deterministic tanh actor mu(s) and twin critics (an ensemble with stacked weights);
* exploration: mu(s) plus Gaussian noise N(0, (expl_noise * max_action)^2), clipped to the box;
* one update: the critics take a step on (TD3-3) every time; every ``policy_delay``-th time the
  actor takes a step on (TD3-4) and only then do the target networks move. That is the
  *delayed policy update*, the third of TD3's fixes, and why it lives here and not in the loss.

Each fix can be switched off for the chapter's ablation: ``clipped_double_q=False`` (bootstrap
from one critic), ``delayed_actor=False`` (actor and targets every update), and
``target_smoothing=False`` (no noise on the target action).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlteach.envs import GymEnv
from rlteach.modules import make_deterministic_actor, make_state_action_value_network
from rlteach.objectives import TD3Loss
from rlteach.recipes._offpolicy import (
    MUJOCO_PROTOCOL,
    Agent,
    OffPolicyConfig,
    OffPolicyResult,
    run_offpolicy,
)
from rlteach.recipes.base import Checkpointer
from rlteach.registry import register_trainable


@dataclass(frozen=True)
class TD3Config(OffPolicyConfig):
    """TD3's hyper-parameters on top of the loop's (the paper's, with Pendulum-sized nets)."""

    total_frames: int = 20_000
    warmup_steps: int = 1_000
    eval_every: int = 500
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    tau: float = 0.01
    """the paper's 0.005 solved Pendulum at a median 6,000 steps (5 seeds); 0.01 learns faster"""
    num_cells: tuple[int, ...] = (64, 64)
    expl_noise: float = 0.1
    """std of the exploration noise, as a fraction of the action bound"""
    policy_noise: float = 0.2
    """sigma of the target smoothing noise (TD3-1)"""
    noise_clip: float = 0.5
    policy_delay: int = 2
    """critic updates per actor (and target) update"""
    loss_function: str = "l2"
    clipped_double_q: bool = True
    """fix 1: bootstrap from the smaller of two target critics"""
    delayed_actor: bool = True
    """fix 2: update the actor and the targets every policy_delay critic updates"""
    target_smoothing: bool = True
    """fix 3: clipped noise on the target action"""


def make_explorer(actor, cfg, env: GymEnv):
    """mu(s) + N(0, (expl_noise * half-range)^2), clipped to the action box (shared with DDPG)."""
    low, high = env.action_low, env.action_high
    scale = cfg.expl_noise * (high - low) / 2
    net = actor.module

    def explore(obs):  # ALGO: deterministic action plus Gaussian exploration noise
        action = net(obs)
        return (action + scale * torch.randn_like(action)).clamp(low, high)

    return explore


def build(cfg: TD3Config, env: GymEnv) -> Agent:
    """Actor, twin critics, TD3Loss and the per-update step with the delayed actor update."""
    actor = make_deterministic_actor(
        env.observation_dim,
        env.action_dim,
        cfg.num_cells,
        low=env.action_low,
        high=env.action_high,
    )
    critics = [
        make_state_action_value_network(env.observation_dim, env.action_dim, cfg.num_cells)
        for _ in range(2)
    ]
    loss = TD3Loss(
        actor,
        critics,
        bounds=(env.action_low, env.action_high),
        policy_noise=cfg.policy_noise if cfg.target_smoothing else 0.0,
        noise_clip=cfg.noise_clip,
        loss_function=cfg.loss_function,
        clipped_double_q=cfg.clipped_double_q,
    )
    loss.make_value_estimator("td0", gamma=cfg.gamma)
    loss.to(env.device)  # PLUMBING: where the observations arrive, before the optimisers
    critic_opt = torch.optim.Adam(loss.qvalue_network.parameters(), lr=cfg.critic_lr)
    actor_opt = torch.optim.Adam(loss.actor_network.parameters(), lr=cfg.actor_lr)
    delay = cfg.policy_delay if cfg.delayed_actor else 1

    def update(batch, i):
        loss_qvalue, _ = loss.value_loss(batch)  # ALGO: (TD3-1)-(TD3-3), every update
        critic_opt.zero_grad()
        loss_qvalue.backward()
        critic_opt.step()
        scalars = {"loss_qvalue": loss_qvalue.detach()}
        if (i + 1) % delay:
            return False, scalars  # ALGO: the actor and the targets wait
        loss_actor, _ = loss.actor_loss(batch)  # ALGO: (TD3-4) with the critic just updated
        actor_opt.zero_grad()
        loss_actor.backward()
        actor_opt.step()
        return True, {**scalars, "loss_actor": loss_actor.detach()}

    return Agent(
        loss=loss,
        act=make_explorer(actor, cfg, env),
        eval_policy=actor,
        update=update,
        extras={"actor": actor, "optimizers": (critic_opt, actor_opt)},
    )


def train(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: TD3Config | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> OffPolicyResult:
    """Train TD3; the result carries the curve, the logs and the agent."""
    return run_offpolicy(
        "td3", cfg or TD3Config(), build, seed, quick, progress, checkpoint, device=device
    )


def mujoco_config(env_id: str) -> TD3Config:
    """TD3 on a MuJoCo task: RL-Zoo 2.9's ``td3.yml`` for ``Hopper-v4`` / ``HalfCheetah-v4``
    (``learning_starts: 10000``, Gaussian exploration noise of std 0.1, learning rate 1e-3 for
    actor and critic, batch 256, networks [400, 300]; Stable-Baselines3's TD3 defaults for the
    rest: target noise 0.2 clipped at 0.5, policy delay 2, as in Fujimoto et al., 2018); the
    budget and evaluation of :data:`~rlteach.recipes._offpolicy.MUJOCO_PROTOCOL`."""
    return TD3Config(
        env_id=env_id,
        **MUJOCO_PROTOCOL,
        actor_lr=1e-3,
        critic_lr=1e-3,
        num_cells=(400, 300),
        expl_noise=0.1,
        policy_noise=0.2,
        noise_clip=0.5,
        policy_delay=2,
    )


CONFIGS = {
    "Pendulum-v1": TD3Config(),
    "Hopper-v5": mujoco_config("Hopper-v5"),
    "HalfCheetah-v5": mujoco_config("HalfCheetah-v5"),
}



register_trainable(
    "td3", train, CONFIGS, action_spaces=("continuous",), resumable=True,
    bench={"td3-pendulum": "Pendulum-v1", "td3-hopper": "Hopper-v5"},
)  # fmt: skip
