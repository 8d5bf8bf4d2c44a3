"""PPO with clipping on a Gymnasium task: one readable training loop (Schulman et al. 2017).

The loop, top to bottom: collect ``num_envs × steps_per_env`` transitions with the current
policy; compute GAE advantages and value targets **once** for the whole batch (with the critic
as it was when the data were collected); then run ``num_epochs`` passes of shuffled minibatches
through :class:`rlteach.objectives.ClipPPOLoss`, clipping the gradient norm; every
``eval_every`` frames, evaluate the deterministic policy on 10 episodes, with the clock paused.

Comment tags separate the algorithm from the plumbing (after CleanRL):
``# ALGO`` lines are PPO itself; ``# PLUMBING`` lines are logging, timing and bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from rlteach.bench import SOLVED_THRESHOLDS, register
from rlteach.envs import Collector, VecGymEnv
from rlteach.modules import make_categorical_actor, make_normal_actor, make_value_network
from rlteach.objectives import ClipPPOLoss
from rlteach.progress import progress_bar
from rlteach.recipes.base import (
    Checkpointer,
    Evaluator,
    RunResult,
    as_checkpointer,
    register_trainable,
    resolve_device,
    seed_everything,
)
from rlteach.value import ValueEstimators


@dataclass(frozen=True)
class PPOConfig:
    """Hyper-parameters; the CartPole defaults follow RL-Zoo's tuned PPO (Raffin 2020)."""

    env_id: str = "CartPole-v1"
    num_envs: int = 8
    """parallel environment copies (gymnasium.vector)"""
    steps_per_env: int = 32
    """rollout length T: a batch is num_envs × T transitions"""
    total_frames: int = 100_000
    """training budget in environment steps (frames over all copies)"""
    quick_frames: int = 4_096
    """the budget under RLTEACH_QUICK=1"""
    lr: float = 1e-3
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over total_frames"""
    gamma: float = 0.98
    gae_lambda: float = 0.8
    num_epochs: int = 20
    minibatch_size: int = 256
    clip_epsilon: float = 0.2
    entropy_coeff: float = 0.0
    critic_coeff: float = 0.5
    loss_critic_type: str = "l2"
    normalize_advantage: bool = True
    max_grad_norm: float = 0.5
    num_cells: tuple[int, ...] = (64, 64)
    eval_every: int = 2_048
    """frames between evaluations"""
    eval_episodes: int = 10
    stop_on_solve: bool = True
    """end the run at the first evaluation at or above the solved threshold"""
    torch_threads: int = 1
    """small networks run fastest on one thread; the other core steps the environments"""


ACROBOT = PPOConfig(
    env_id="Acrobot-v1",
    num_envs=8,
    steps_per_env=64,
    gamma=0.99,
    gae_lambda=0.95,
    num_epochs=10,
    minibatch_size=128,
    entropy_coeff=0.01,
    lr=1e-3,
)
"""Acrobot: a small sweep here (3 configurations × 3 seeds, 40k frames) picked this one."""


def build(cfg: PPOConfig, env: VecGymEnv):
    """The actor, the critic and the loss, for a discrete or a continuous action space."""
    if env.is_discrete:
        actor = make_categorical_actor(env.observation_dim, env.n_actions, cfg.num_cells)
    else:
        actor = make_normal_actor(
            env.observation_dim, env.action_dim, cfg.num_cells,
            low=env.action_low, high=env.action_high,
        )
    critic = make_value_network(env.observation_dim, cfg.num_cells)
    loss = ClipPPOLoss(
        actor_network=actor,
        critic_network=critic,
        clip_epsilon=cfg.clip_epsilon,
        entropy_bonus=cfg.entropy_coeff > 0,
        entropy_coeff=cfg.entropy_coeff,
        critic_coeff=cfg.critic_coeff,
        loss_critic_type=cfg.loss_critic_type,
        normalize_advantage=cfg.normalize_advantage,
    )
    loss.make_value_estimator(
        ValueEstimators.GAE, gamma=cfg.gamma, lmbda=cfg.gae_lambda, vectorized=True
    )
    return actor, critic, loss


def train(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: PPOConfig | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> RunResult:
    """Train PPO; return the evaluation curve (seconds exclude evaluation).

    With a :class:`~rlteach.checkpoint.Checkpointer`, the run saves its full state at batch
    boundaries and, if the checkpointer resumes, continues from the saved one bit-identically.
    ``device`` is where the networks and the batches live (see rlteach/recipes/base.py).
    """
    device = resolve_device(device)  # PLUMBING: refuse an unknown or absent device first
    cfg = cfg or PPOConfig()
    if quick:
        cfg = replace(
            cfg, total_frames=cfg.quick_frames, eval_every=min(cfg.eval_every, cfg.quick_frames)
        )
    torch.set_num_threads(cfg.torch_threads)  # PLUMBING
    generator = seed_everything(seed)
    env = VecGymEnv(cfg.env_id, cfg.num_envs, seed=seed, device=device)
    with torch.device("cpu"):  # PLUMBING: initialised on the CPU, the same on every device
        actor, critic, loss = build(cfg, env)
    loss.to(device)  # PLUMBING: the networks go where they train, before the optimiser
    optimizer = torch.optim.Adam(loss.parameters(), lr=cfg.lr)
    frames_per_batch = cfg.num_envs * cfg.steps_per_env
    collector = Collector(env, actor, frames_per_batch, total_frames=cfg.total_frames)
    threshold = SOLVED_THRESHOLDS.get(cfg.env_id, float("inf"))

    result = RunResult(algo="ppo", env_id=cfg.env_id, seed=seed)  # PLUMBING
    bar = progress_bar(total=cfg.total_frames, desc=f"PPO {cfg.env_id}", disable=not progress, unit="frame")
    evaluator = Evaluator(
        result, actor, cfg.env_id, cfg.eval_every, threshold, cfg.eval_episodes,
        cfg.stop_on_solve, bar,
    )
    checkpoint = as_checkpointer(checkpoint)  # PLUMBING: save / resume everything below
    checkpoint.track(
        policy=actor, loss=loss, optimizer=optimizer, collector=collector,
        evaluator=evaluator, generator=generator,
    )
    for batch in collector:
        # ALGO: advantages and value targets once per batch, before any update (GAE-2, GAE-3)
        with torch.no_grad():
            loss.value_estimator(batch)
        data = batch.reshape(-1)
        if cfg.anneal_lr:  # ALGO: linear learning-rate decay
            done_fraction = (collector.frames - frames_per_batch) / cfg.total_frames
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * (1 - done_fraction)
        for _ in range(cfg.num_epochs):
            order = torch.randperm(data.shape[0], generator=generator, device="cpu")
            for index in order.split(cfg.minibatch_size):
                out = loss(data[index])  # ALGO: (PPO-3) clipped surrogate + critic + entropy
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


def train_acrobot(seed: int = 0, quick: bool = False, progress: bool = True) -> RunResult:
    return train(seed, quick, progress, cfg=ACROBOT)


register("ppo-cartpole", "ppo", "CartPole-v1", train)
register("ppo-acrobot", "ppo", "Acrobot-v1", train_acrobot)
register_trainable(
    "ppo", train, {"CartPole-v1": PPOConfig(), "Acrobot-v1": ACROBOT},
    action_spaces=("discrete", "continuous"), resumable=True,
)
