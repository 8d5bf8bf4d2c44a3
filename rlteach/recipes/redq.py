"""REDQ on Pendulum-v1 (Chen et al. 2021, Algorithm 1): the shared off-policy loop plus REDQ's update.

What is REDQ-specific, and all that this file adds to :mod:`rlteach.recipes._offpolicy`:

* the networks: a TanhNormal actor and an ensemble of N = 10 critics Q(s, a), N separately
  initialised networks whose weights the loss stacks (one batched matrix product per layer);
* the loss, :class:`rlteach.objectives.REDQLoss` (random subset of M = 2 critics in the target);
* the update-to-data ratio UTD = ``updates_per_step``: the loop calls ``update`` UTD times per
  environment step. Each call takes one critic step on a fresh minibatch, with a fresh random
  subset, followed by a Polyak update of the target critics; the **last** of the UTD calls also
  takes one policy step and one temperature step (Algorithm 1 updates the policy once per
  environment step, on the average of all N critics);
* exploration is the stochastic policy itself.

``train(seed, quick, progress, cfg)`` returns an :class:`OffPolicyResult`: the evaluation
curve, ``logs`` (``loss_qvalue``, ``loss_actor``, ``alpha``, ``entropy``) and ``agent`` (the
trained ``agent.loss``, whose ``actor_network`` is the policy).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from rlteach.envs import GymEnv
from rlteach.modules import make_normal_actor, make_state_action_value_network
from rlteach.objectives import REDQLoss
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
class REDQConfig(OffPolicyConfig):
    """REDQ's hyper-parameters on top of the loop's: the paper's (Chen et al. 2021, table 1)
    except the network width, the UTD ratio and the budget, chosen for Pendulum on 2 CPU cores."""

    total_frames: int = 6_000
    quick_frames: int = 300
    quick_updates_per_step: int = 2
    """UTD under RLTEACH_QUICK=1, so that a smoke test takes seconds"""
    warmup_steps: int = 250
    """uniformly random actions before the first update (the paper: 5,000 on MuJoCo)"""
    updates_per_step: int = 10
    """UTD, the update-to-data ratio: critic steps per environment step (the paper: 20)"""
    batch_size: int = 128
    eval_every: int = 500
    num_qvalue_nets: int = 10
    """N, the ensemble size"""
    sub_sample_len: int = 2
    """M, the critics in the target's random subset"""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    tau: float = 0.005
    """Polyak rate of the target critics (rho = 0.995 in the paper)"""
    loss_function: str = "l2"
    """the paper regresses with the squared error (TorchRL's default is smooth_l1)"""
    actor_cells: tuple[int, ...] = (64, 64)
    critic_cells: tuple[int, ...] = (64, 64)


def build(cfg: REDQConfig, env: GymEnv) -> Agent:
    """Actor, N critics, REDQLoss, and the update the loop calls UTD times per environment step."""
    actor = make_normal_actor(  # ALGO: pi(a|s) = TanhNormal(mu(s), sigma(s)) on the action box
        env.observation_dim,
        env.action_dim,
        cfg.actor_cells,
        torch.nn.ReLU,
        low=env.action_low,
        high=env.action_high,
    )
    critics = [  # ALGO: N separately initialised critics
        make_state_action_value_network(env.observation_dim, env.action_dim, cfg.critic_cells)
        for _ in range(cfg.num_qvalue_nets)
    ]
    loss = REDQLoss(
        actor,
        critics,
        num_qvalue_nets=cfg.num_qvalue_nets,
        sub_sample_len=cfg.sub_sample_len,
        loss_function=cfg.loss_function,
        action_spec=env.action_dim,
    )
    loss.make_value_estimator("td0", gamma=cfg.gamma)
    loss.to(env.device)  # PLUMBING: where the observations arrive, before the optimisers
    critic_opt = torch.optim.Adam(loss.qvalue_network.parameters(), lr=cfg.critic_lr, fused=True)
    actor_opt = torch.optim.Adam(loss.actor_network.parameters(), lr=cfg.actor_lr, fused=True)
    alpha_opt = torch.optim.Adam([loss.log_alpha], lr=cfg.alpha_lr, fused=True)
    utd = cfg.updates_per_step
    actor_scalars = {}  # PLUMBING: the latest actor-side values, logged with every update
    # (the loop's checkpoints save them: extras['carry'])

    def update(batch, i):
        # ALGO: one critic step, fresh minibatch and fresh random subset (REDQ-1)-(REDQ-3)
        loss_qvalue, _ = loss.qvalue_loss(batch)
        critic_opt.zero_grad()
        loss_qvalue.backward()
        critic_opt.step()
        if i % utd == utd - 1:
            # ALGO: after the UTD-th critic step, one policy step (REDQ-4) and one temperature
            # step (REDQ-5) on the last minibatch
            loss_actor, loss_alpha, meta = loss.actor_loss(batch)
            actor_opt.zero_grad()
            alpha_opt.zero_grad()
            (loss_actor + loss_alpha).backward()  # disjoint parameters: one backward suffices
            actor_opt.step()
            alpha_opt.step()
            actor_scalars.update(loss_actor=loss_actor.detach(), entropy=meta["entropy"])
        elif not actor_scalars:  # PLUMBING: values to log before the first policy step
            with torch.no_grad():
                loss_actor, _, meta = loss.actor_loss(batch)
            actor_scalars.update(loss_actor=loss_actor, entropy=meta["entropy"])
        scalars = {"loss_qvalue": loss_qvalue.detach(), "alpha": loss.alpha, **actor_scalars}
        return True, scalars  # the target critics move after every critic step

    def explore(obs):  # ALGO: act by sampling the policy itself (no added noise)
        return policy_distribution(actor, {"observation": obs}).sample()

    return Agent(
        loss=loss,
        act=explore,
        eval_policy=actor,
        update=update,
        extras={
            "actor": actor,
            "optimizers": (critic_opt, actor_opt, alpha_opt),
            "carry": actor_scalars,
        },
    )


def train(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: REDQConfig | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> OffPolicyResult:
    """Train REDQ; the result carries the curve, the logs (alpha, entropy, ...) and the agent."""
    cfg = cfg or REDQConfig()
    if quick:  # PLUMBING: a smaller UTD too, the loop shrinks the rest of the budget
        cfg = replace(cfg, updates_per_step=min(cfg.updates_per_step, cfg.quick_updates_per_step))
    return run_offpolicy("redq", cfg, build, seed, quick, progress, checkpoint, device=device)


def mujoco_config(env_id: str) -> REDQConfig:
    """REDQ on a MuJoCo task as the paper runs it (Chen et al. 2021, appendix, hyper-parameter
    table): N = 10 critics, M = 2 in the target's minimum, UTD = 20 updates per environment step,
    [256, 256] networks, Adam at 3e-4, batch 256, 5,000 random steps first, rho = 0.995 (tau
    0.005), squared-error critic loss; the budget and evaluation of
    :data:`~rlteach.recipes._offpolicy.MUJOCO_PROTOCOL`. At UTD = 20 one environment step costs
    20 ten-critic updates, 25 CPU-ms each here (AMD EPYC, one thread): 14 CPU-hours for 100,000
    steps, so the book's runs reduce N, UTD and the budget with ``--set`` (chapter 12 says by how
    much)."""
    return REDQConfig(
        env_id=env_id,
        **{**MUJOCO_PROTOCOL, "warmup_steps": 5_000},
        updates_per_step=20,
        num_qvalue_nets=10,
        sub_sample_len=2,
        actor_lr=3e-4,
        critic_lr=3e-4,
        alpha_lr=3e-4,
        actor_cells=(256, 256),
        critic_cells=(256, 256),
    )


CONFIGS = {
    "Pendulum-v1": REDQConfig(),
    "Hopper-v5": mujoco_config("Hopper-v5"),
    "HalfCheetah-v5": mujoco_config("HalfCheetah-v5"),
}

register_trainable(
    "redq", train, CONFIGS, action_spaces=("continuous",), resumable=True,
    bench={"redq-pendulum": "Pendulum-v1"},
)  # fmt: skip
