"""REINFORCE with a learned baseline on a Gymnasium task: one readable loop (Williams 1992).

Each batch holds ``num_envs × steps_per_env`` transitions; the Monte-Carlo return to the end of
each episode (TD(1), bootstrapped only where an episode is cut by a time limit or the batch end)
minus the critic's baseline weights the score function ``-log π(a|s)`` in
:class:`rlteach.objectives.ReinforceLoss`. One gradient step per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlteach.envs import Collector, VecGymEnv
from rlteach.modules import make_categorical_actor, make_value_network
from rlteach.objectives import ReinforceLoss
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
class ReinforceConfig(OnPolicyConfig):
    """Hyper-parameters for discrete-action tasks (CartPole defaults), on top of the fields
    every on-policy recipe has (:class:`~rlteach.recipes.base.OnPolicyConfig`)."""

    steps_per_env: int = 256
    """long rollouts: Monte-Carlo returns need whole episodes, not bootstrapped fragments"""
    total_frames: int = 300_000
    max_grad_norm: float = 1.0
    eval_every: int = 8_192
    loss_critic_type: str = "l2"


def train(
    seed: int = 0, quick: bool = False, progress: bool = True, cfg: ReinforceConfig | None = None,
    checkpoint: Checkpointer | None = None, *, device: str | torch.device = "cpu",
) -> RunResult:
    """Train REINFORCE with a baseline; return the evaluation curve (evaluation time excluded).

    With a :class:`~rlteach.checkpoint.Checkpointer`, the run saves its full state at batch
    boundaries and, if the checkpointer resumes, continues from the saved one bit-identically.
    ``device`` is where the networks and the batches live (see rlteach/recipes/base.py).
    """
    # PLUMBING: device checked, quick budget, threads, seeds
    cfg, device, _ = start_run(cfg or ReinforceConfig(), seed, quick, device)
    env = VecGymEnv(cfg.env_id, cfg.num_envs, seed=seed, device=device)
    with torch.device("cpu"):  # PLUMBING: initialised on the CPU, the same on every device
        actor = make_categorical_actor(env.observation_dim, env.n_actions, cfg.num_cells)
        critic = make_value_network(env.observation_dim, cfg.num_cells)
        loss = ReinforceLoss(
            actor_network=actor, critic_network=critic, loss_critic_type=cfg.loss_critic_type
        )
        loss.make_value_estimator(ValueEstimators.TD1, gamma=cfg.gamma)  # Monte-Carlo returns
    loss.to(device)  # PLUMBING: the networks go where they train, before the optimiser
    optimizer = torch.optim.Adam(loss.parameters(), lr=cfg.lr)
    collector = Collector(
        env, actor, cfg.num_envs * cfg.steps_per_env, total_frames=cfg.total_frames
    )

    result = RunResult(algo="reinforce", env_id=cfg.env_id, seed=seed)  # PLUMBING
    bar, evaluator = progress_and_evaluator(result, actor, cfg, f"REINFORCE {cfg.env_id}", progress)
    checkpoint = as_checkpointer(checkpoint)  # PLUMBING: save / resume everything below
    checkpoint.track(
        policy=actor, loss=loss, optimizer=optimizer, collector=collector, evaluator=evaluator
    )
    for batch in collector:
        with torch.no_grad():  # ALGO: G_t − V(s_t), the return minus the baseline (TD1-1)
            loss.value_estimator(batch)
        out = loss(batch.reshape(-1))  # ALGO: (REINFORCE-1) score function, baseline regression
        total = out["loss_actor"] + out["loss_value"]
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
    "reinforce", train, {"CartPole-v1": ReinforceConfig()}, resumable=True,
    bench={"reinforce-cartpole": "CartPole-v1"},
)  # fmt: skip
