"""SAC on Pendulum-v1 (Haarnoja et al., 2018b): the shared off-policy loop plus SAC's update.

What is SAC-specific, and all that this file adds to :mod:`rlteach.recipes._offpolicy`:

* the networks: a TanhNormal actor and two critics Q(s, a) (an ensemble with stacked weights);
* the loss, :class:`rlteach.objectives.SACLoss` (version 2, automatic temperature);
* one update: critics, actor and temperature each take an Adam step on their own loss, then
  the target critics move (every update);
* exploration is the stochastic policy itself: no added noise.

``train(seed, quick, progress, cfg)`` returns an :class:`OffPolicyResult` whose ``logs`` hold
``alpha``, ``entropy`` and the three losses, for the chapter's plots.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlteach.envs import GymEnv
from rlteach.modules import make_normal_actor, make_state_action_value_network
from rlteach.objectives import SACLoss
from rlteach.objectives._actions import policy_distribution
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
class SACConfig(OffPolicyConfig):
    """SAC's hyper-parameters on top of the loop's (Pendulum defaults, tuned here)."""

    total_frames: int = 15_000
    warmup_steps: int = 1_000
    eval_every: int = 500
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    alpha_lr: float = 1e-3
    alpha_init: float = 1.0
    tau: float = 0.01
    num_cells: tuple[int, ...] = (64, 64)
    num_qvalue_nets: int = 2
    loss_function: str = "l2"
    target_entropy: float | str = "auto"
    """'auto' = -dim(action) = -1 on Pendulum"""


def build(cfg: SACConfig, env: GymEnv) -> Agent:
    """Actor, critics, SACLoss and the per-update step."""
    actor = make_normal_actor(  # ALGO: pi(a|s) = TanhNormal(mu(s), sigma(s)) on the action box
        env.observation_dim,
        env.action_dim,
        cfg.num_cells,
        torch.nn.ReLU,
        low=env.action_low,
        high=env.action_high,
    )
    critics = [
        make_state_action_value_network(env.observation_dim, env.action_dim, cfg.num_cells)
        for _ in range(cfg.num_qvalue_nets)
    ]
    loss = SACLoss(
        actor,
        critics,
        num_qvalue_nets=cfg.num_qvalue_nets,
        loss_function=cfg.loss_function,
        alpha_init=cfg.alpha_init,
        action_spec=env.action_dim,
        target_entropy=cfg.target_entropy,
    )
    loss.make_value_estimator("td0", gamma=cfg.gamma)
    loss.to(env.device)  # PLUMBING: where the observations arrive, before the optimisers
    critic_opt = torch.optim.Adam(loss.qvalue_network.parameters(), lr=cfg.critic_lr)
    actor_opt = torch.optim.Adam(loss.actor_network.parameters(), lr=cfg.actor_lr)
    alpha_opt = torch.optim.Adam([loss.log_alpha], lr=cfg.alpha_lr)

    def update(batch, i):
        out = loss(batch)  # ALGO: (SAC-1)-(SAC-4) on one minibatch
        for opt in (critic_opt, actor_opt, alpha_opt):
            opt.zero_grad()
        # the three losses touch disjoint parameters (the actor loss reads detached critics and a
        # detached alpha), so one backward of their sum gives each its own gradient
        (out["loss_qvalue"] + out["loss_actor"] + out["loss_alpha"]).backward()
        for opt in (critic_opt, actor_opt, alpha_opt):
            opt.step()
        return True, out.select(
            "loss_qvalue", "loss_actor", "loss_alpha", "alpha", "entropy"
        ).detach()

    def explore(obs):  # ALGO: act by sampling the policy itself (no added noise)
        return policy_distribution(actor, {"observation": obs}).sample()

    return Agent(
        loss=loss,
        act=explore,
        eval_policy=actor,
        update=update,
        extras={"actor": actor, "optimizers": (critic_opt, actor_opt, alpha_opt)},
    )


def train(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: SACConfig | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> OffPolicyResult:
    """Train SAC; the result carries the curve, the logs (alpha, entropy, ...) and the agent."""
    return run_offpolicy(
        "sac", cfg or SACConfig(), build, seed, quick, progress, checkpoint, device=device
    )


def mujoco_config(env_id: str) -> SACConfig:
    """SAC on a MuJoCo task: RL-Zoo 2.9's ``sac.yml`` for ``Hopper-v4`` / ``HalfCheetah-v4``
    (``learning_starts: 10000`` over Stable-Baselines3's defaults: learning rate 3e-4 for actor,
    critics and temperature, [256, 256] networks, automatic temperature from 1.0 with target
    entropy -dim(A)), which are also Haarnoja et al. (2018b), Table 1, apart from the warm-up;
    the budget and evaluation of
    :data:`~rlteach.recipes._offpolicy.MUJOCO_PROTOCOL`."""
    return SACConfig(
        env_id=env_id,
        **MUJOCO_PROTOCOL,
        actor_lr=3e-4,
        critic_lr=3e-4,
        alpha_lr=3e-4,
        alpha_init=1.0,
        num_cells=(256, 256),
    )


CONFIGS = {
    "Pendulum-v1": SACConfig(),
    "Hopper-v5": mujoco_config("Hopper-v5"),
    "HalfCheetah-v5": mujoco_config("HalfCheetah-v5"),
}



register_trainable(
    "sac", train, CONFIGS, action_spaces=("continuous",), resumable=True,
    bench={"sac-pendulum": "Pendulum-v1", "sac-hopper": "Hopper-v5"},
)  # fmt: skip
