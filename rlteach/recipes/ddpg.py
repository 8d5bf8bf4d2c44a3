"""DDPG on Pendulum-v1 (Lillicrap et al., 2016): the shared off-policy loop plus DDPG's update.

What is DDPG-specific, and all that this file adds to :mod:`rlteach.recipes._offpolicy`:

* a deterministic tanh actor mu(s) and one critic Q(s, a), each with a target copy (the paper
  keeps a target actor too, so ``delay_actor=True`` here, unlike TorchRL's default);
* exploration: mu(s) plus Gaussian noise, clipped to the action box (the paper used an
  Ornstein-Uhlenbeck process; uncorrelated Gaussian noise works as well, Fujimoto et al. 2018);
* one update: the critic on (DDPG-2), then the actor on (DDPG-3), then both targets move.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlteach.envs import GymEnv
from rlteach.modules import make_deterministic_actor, make_state_action_value_network
from rlteach.objectives import DDPGLoss
from rlteach.recipes._offpolicy import (
    MUJOCO_PROTOCOL,
    Agent,
    OffPolicyConfig,
    OffPolicyResult,
    run_offpolicy,
)
from rlteach.recipes.base import Checkpointer
from rlteach.recipes.td3 import make_explorer
from rlteach.registry import register_trainable


@dataclass(frozen=True)
class DDPGConfig(OffPolicyConfig):
    """DDPG's hyper-parameters on top of the loop's (Pendulum-sized)."""

    total_frames: int = 20_000
    warmup_steps: int = 1_000
    eval_every: int = 500
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    tau: float = 0.01
    """0.005 solved Pendulum at a median 3,500 steps (5 seeds); 0.01 learns a little faster"""
    num_cells: tuple[int, ...] = (64, 64)
    expl_noise: float = 0.1
    """std of the exploration noise, as a fraction of the action bound"""
    loss_function: str = "l2"


def build(cfg: DDPGConfig, env: GymEnv) -> Agent:
    """Actor, critic, DDPGLoss and the per-update step."""
    actor = make_deterministic_actor(
        env.observation_dim,
        env.action_dim,
        cfg.num_cells,
        low=env.action_low,
        high=env.action_high,
    )
    critic = make_state_action_value_network(env.observation_dim, env.action_dim, cfg.num_cells)
    loss = DDPGLoss(actor, critic, loss_function=cfg.loss_function, delay_actor=True)
    loss.make_value_estimator("td0", gamma=cfg.gamma)
    loss.to(env.device)  # PLUMBING: where the observations arrive, before the optimisers
    critic_opt = torch.optim.Adam(loss.value_network.parameters(), lr=cfg.critic_lr)
    actor_opt = torch.optim.Adam(loss.actor_network.parameters(), lr=cfg.actor_lr)

    def update(batch, i):
        loss_value, _ = loss.loss_value(batch)  # ALGO: (DDPG-1)-(DDPG-2)
        critic_opt.zero_grad()
        loss_value.backward()
        critic_opt.step()
        loss_actor = loss.loss_actor(batch)  # ALGO: (DDPG-3) on the critic just updated
        actor_opt.zero_grad()
        loss_actor.backward()
        actor_opt.step()
        return True, {"loss_value": loss_value.detach(), "loss_actor": loss_actor.detach()}

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
    cfg: DDPGConfig | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> OffPolicyResult:
    """Train DDPG; the result carries the curve, the logs and the agent."""
    return run_offpolicy(
        "ddpg", cfg or DDPGConfig(), build, seed, quick, progress, checkpoint, device=device
    )


def mujoco_config(env_id: str) -> DDPGConfig:
    """DDPG on a MuJoCo task: RL-Zoo 2.9's ``ddpg.yml`` for ``Hopper-v4`` / ``HalfCheetah-v4``
    (``learning_starts: 10000``, Gaussian exploration noise of std 0.1, learning rate 1e-3 for
    actor and critic, batch 256, networks [400, 300]); the budget and evaluation of
    :data:`~rlteach.recipes._offpolicy.MUJOCO_PROTOCOL`."""
    return DDPGConfig(
        env_id=env_id,
        **MUJOCO_PROTOCOL,
        actor_lr=1e-3,
        critic_lr=1e-3,
        num_cells=(400, 300),
        expl_noise=0.1,
    )


CONFIGS = {
    "Pendulum-v1": DDPGConfig(),
    "Hopper-v5": mujoco_config("Hopper-v5"),
    "HalfCheetah-v5": mujoco_config("HalfCheetah-v5"),
}

register_trainable(
    "ddpg", train, CONFIGS, action_spaces=("continuous",), resumable=True,
    bench={"ddpg-pendulum": "Pendulum-v1"},
)  # fmt: skip
