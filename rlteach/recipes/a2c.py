"""Advantage actor-critic (A2C) on a Gymnasium task: one readable training loop (Mnih et al. 2016).

Synchronous A2C: ``num_envs`` copies each take ``steps_per_env`` steps with the current policy;
the batch's GAE advantages (Schulman et al. 2016) weight one gradient step of
:class:`rlteach.objectives.A2CLoss` (policy gradient + critic regression + entropy bonus); repeat.
Unlike PPO, each batch is used once, so the data are always on-policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlteach.envs import Collector, VecGymEnv
from rlteach.modules import make_categorical_actor, make_value_network
from rlteach.objectives import A2CLoss
from rlteach.recipes.base import (
    Checkpointer,
    OnPolicyConfig,
    RunResult,
    as_checkpointer,
    progress_and_evaluator,
    start_run,
)
from rlteach.registry import register_trainable
from rlteach.value import ValueEstimators


@dataclass(frozen=True)
class A2CConfig(OnPolicyConfig):
    """Hyper-parameters for discrete-action tasks (CartPole defaults), on top of the fields
    every on-policy recipe has (:class:`~rlteach.recipes.base.OnPolicyConfig`)."""

    steps_per_env: int = 16
    """rollout length: one gradient step per num_envs × steps_per_env transitions"""
    total_frames: int = 200_000
    gae_lambda: float = 0.95
    entropy_coeff: float = 0.01
    critic_coeff: float = 0.5
    loss_critic_type: str = "l2"


def train(
    seed: int = 0, quick: bool = False, progress: bool = True, cfg: A2CConfig | None = None,
    checkpoint: Checkpointer | None = None, *, device: str | torch.device = "cpu",
) -> RunResult:
    """Train A2C; return the evaluation curve (seconds exclude evaluation).

    With a :class:`~rlteach.checkpoint.Checkpointer`, the run saves its full state at batch
    boundaries and, if the checkpointer resumes, continues from the saved one bit-identically.
    ``device`` is where the networks and the batches live (see rlteach/recipes/base.py).
    """
    # PLUMBING: device checked, quick budget, threads, seeds
    cfg, device, _ = start_run(cfg or A2CConfig(), seed, quick, device)
    env = VecGymEnv(cfg.env_id, cfg.num_envs, seed=seed, device=device)
    with torch.device("cpu"):  # PLUMBING: initialised on the CPU, the same on every device
        actor = make_categorical_actor(env.observation_dim, env.n_actions, cfg.num_cells)
        critic = make_value_network(env.observation_dim, cfg.num_cells)
        loss = A2CLoss(
            actor_network=actor,
            critic_network=critic,
            entropy_coeff=cfg.entropy_coeff,
            critic_coeff=cfg.critic_coeff,
            loss_critic_type=cfg.loss_critic_type,
        )
        loss.make_value_estimator(
            ValueEstimators.GAE, gamma=cfg.gamma, lmbda=cfg.gae_lambda, vectorized=True
        )
    loss.to(device)  # PLUMBING: the networks go where they train, before the optimiser
    optimizer = torch.optim.Adam(loss.parameters(), lr=cfg.lr)
    collector = Collector(
        env, actor, cfg.num_envs * cfg.steps_per_env, total_frames=cfg.total_frames
    )

    result = RunResult(algo="a2c", env_id=cfg.env_id, seed=seed)  # PLUMBING
    bar, evaluator = progress_and_evaluator(result, actor, cfg, f"A2C {cfg.env_id}", progress)
    checkpoint = as_checkpointer(checkpoint)  # PLUMBING: save / resume everything below
    checkpoint.track(
        policy=actor, loss=loss, optimizer=optimizer, collector=collector, evaluator=evaluator
    )
    for batch in collector:
        with torch.no_grad():  # ALGO: advantages with the critic that saw the data (GAE-2)
            loss.value_estimator(batch)
        out = loss(batch.reshape(-1))  # ALGO: (A2C-1) policy gradient, critic, entropy
        total = sum(value for key, value in out.items() if key.startswith("loss_"))
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(loss.parameters(), cfg.max_grad_norm)
        optimizer.step()
        last = collector.frames >= cfg.total_frames  # PLUMBING
        solved = evaluator.after_batch(collector.frames, last=last)
        checkpoint.after_batch(collector.frames, finished=solved or last)
        if solved:
            break
    bar.close()
    env.close()
    return result


register_trainable(
    "a2c", train, {"CartPole-v1": A2CConfig()}, resumable=True,
    bench={"a2c-cartpole": "CartPole-v1"},
)  # fmt: skip
