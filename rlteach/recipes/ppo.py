"""PPO with clipping on a Gymnasium task: one readable training loop (Schulman et al. 2017).

The loop, top to bottom: collect ``num_envs × steps_per_env`` transitions with the current
policy; compute GAE advantages and value targets **once** for the whole batch (with the critic
as it was when the data were collected); then run ``num_epochs`` passes of shuffled minibatches
through :class:`rlteach.objectives.ClipPPOLoss`, clipping the gradient norm; every
``eval_every`` frames, evaluate the deterministic policy on 10 episodes, with the clock paused.

Image observations (MinAtar's 10 × 10 × k booleans) change only the networks: :func:`build`
gives the actor and the critic each MinAtar's convolutional torso (Young & Tian, 2019;
:mod:`rlteach.modules.conv`), which reads the bool frames of the batch directly. The per-task
configs are at the end of this file: CartPole and Acrobot (tuned here), MinAtar (gymnax-blines'),
LunarLander-v3 (RL-Zoo's) and MuJoCo's Hopper-v5 and HalfCheetah-v5 (the PPO paper's, with
running observation and reward normalisation: :mod:`rlteach.modules.normalize`).

Comment tags separate the algorithm from the plumbing (after CleanRL):
``# ALGO`` lines are PPO itself; ``# PLUMBING`` lines are logging, timing and bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from rlteach.envs import Collector, VecGymEnv
from rlteach.modules import (
    make_categorical_actor,
    make_minatar_categorical_actor,
    make_minatar_value_network,
    make_normal_actor,
    make_value_network,
)
from rlteach.modules.normalize import ObservationNormalizer, RewardScaler, find_normalizer
from rlteach.objectives import ClipPPOLoss
from rlteach.recipes._scale import (
    LUNARLANDER_PROTOCOL,
    MINATAR_GAMES,
    MINATAR_PROTOCOL,
    whole_batches,
)
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
class PPOConfig(OnPolicyConfig):
    """Hyper-parameters; the CartPole defaults follow RL-Zoo's tuned PPO (Raffin 2020). The
    fields every on-policy recipe has are :class:`~rlteach.recipes.base.OnPolicyConfig`'s."""

    gamma: float = 0.98
    adam_eps: float = 1e-8
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over total_frames"""
    gae_lambda: float = 0.8
    num_epochs: int = 20
    minibatch_size: int = 256
    clip_epsilon: float = 0.2
    entropy_coeff: float = 0.0
    critic_coeff: float = 0.5
    loss_critic_type: str = "l2"
    clip_value: bool | float | None = None
    """clip V(s) around its value at collection time in the critic loss (True: by clip_epsilon)"""
    normalize_advantage: bool = True
    normalize_observations: bool = False
    """standardise observations with running statistics, clipped to ±clip_observations
    (:class:`~rlteach.modules.ObservationNormalizer`, in front of actor and critic)"""
    clip_observations: float = 10.0
    scale_rewards: bool = False
    """divide rewards by the running std of the discounted return, clipped to ±clip_rewards
    (:class:`~rlteach.modules.RewardScaler`)"""
    clip_rewards: float = 10.0
    state_independent_scale: bool = False
    """continuous actions: one learned log-std vector (PPO's choice) instead of a state-dependent
    scale"""

    def quick(self) -> PPOConfig:
        """The quick run's config, with a batch no larger than its budget (a no-op unless
        num_envs × T exceeds it)."""
        steps = max(1, min(self.steps_per_env, self.quick_frames // self.num_envs))
        return replace(super().quick(), steps_per_env=steps)


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
    """The actor, the critic and the loss, for a discrete or a continuous action space (MLPs of
    ``num_cells`` on flat observations; MinAtar's convolutional networks on images). With
    ``normalize_observations``, one :class:`ObservationNormalizer` sits in front of both MLPs
    (:func:`~rlteach.modules.find_normalizer` finds it)."""
    if cfg.normalize_observations and (env.is_pixels or env.is_discrete):
        raise ValueError(
            f"{env.env_id}: normalize_observations is built for flat observations and "
            f"continuous actions (MuJoCo); set it to false for this task."
        )
    normalizer = (
        ObservationNormalizer(env.observation_dim, clip=cfg.clip_observations)
        if cfg.normalize_observations
        else None
    )
    if env.is_pixels:
        if not env.is_discrete:
            raise ValueError(
                f"{env.env_id}: the convolutional actor is categorical; image observations with "
                f"a continuous action space are not supported."
            )
        actor = make_minatar_categorical_actor(env.observation_shape, env.n_actions)
    elif env.is_discrete:
        actor = make_categorical_actor(env.observation_dim, env.n_actions, cfg.num_cells)
    else:
        actor = make_normal_actor(
            env.observation_dim, env.action_dim, cfg.num_cells,
            low=env.action_low, high=env.action_high,
            state_independent_scale=cfg.state_independent_scale, normalizer=normalizer,
        )
    if env.is_pixels:
        critic = make_minatar_value_network(env.observation_shape)
    else:
        critic = make_value_network(env.observation_dim, cfg.num_cells, normalizer=normalizer)
    loss = ClipPPOLoss(
        actor_network=actor,
        critic_network=critic,
        clip_epsilon=cfg.clip_epsilon,
        entropy_bonus=cfg.entropy_coeff > 0,
        entropy_coeff=cfg.entropy_coeff,
        critic_coeff=cfg.critic_coeff,
        loss_critic_type=cfg.loss_critic_type,
        normalize_advantage=cfg.normalize_advantage,
        clip_value=cfg.clip_value,
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
    # PLUMBING: device checked, quick budget, threads, seeds
    cfg, device, generator = start_run(cfg or PPOConfig(), seed, quick, device)
    env = VecGymEnv(cfg.env_id, cfg.num_envs, seed=seed, device=device)
    with torch.device("cpu"):  # PLUMBING: initialised on the CPU, the same on every device
        actor, critic, loss = build(cfg, env)
    loss.to(device)  # PLUMBING: the networks go where they train, before the optimiser
    normalizer = find_normalizer(actor)  # None unless cfg.normalize_observations
    scaler = (
        RewardScaler(cfg.num_envs, cfg.gamma, cfg.clip_rewards).to(device)
        if cfg.scale_rewards
        else None
    )
    optimizer = torch.optim.Adam(loss.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    frames_per_batch = cfg.num_envs * cfg.steps_per_env
    collector = Collector(env, actor, frames_per_batch, total_frames=cfg.total_frames)

    result = RunResult(algo="ppo", env_id=cfg.env_id, seed=seed)  # PLUMBING
    bar, evaluator = progress_and_evaluator(result, actor, cfg, f"PPO {cfg.env_id}", progress)
    checkpoint = as_checkpointer(checkpoint)  # PLUMBING: save / resume everything below
    checkpoint.track(
        policy=actor, loss=loss, optimizer=optimizer, collector=collector,
        evaluator=evaluator, generator=generator,
        **({} if scaler is None else {"reward_scaler": scaler}),
    )
    for batch in collector:
        if scaler is not None:  # ALGO: rewards over the running std of the discounted return
            batch["next", "reward"] = scaler(batch["next", "reward"], batch["next", "done"])
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
        if normalizer is not None:  # ALGO: the batch's observations join the statistics, after
            normalizer.update(batch["observation"])  # its updates (the policy that collected it
            # and the one updated on it read observations the same way)
        last = collector.frames >= cfg.total_frames  # PLUMBING
        solved = evaluator.after_batch(collector.frames, last=last)
        checkpoint.after_batch(collector.frames, finished=solved or last)
        if solved:
            break
    bar.close()
    env.close()
    return result


def minatar_config(env_id: str) -> PPOConfig:
    """PPO on a MinAtar game: the ``agents/<Game>-MinAtar/ppo.yaml`` files of gymnax-blines
    (github.com/RobertTLange/gymnax-blines, the baselines of Lange (2022), "gymnax: A JAX-based
    Reinforcement Learning Environment Library"; the same for Breakout, SpaceInvaders and
    Asterix) with its ``utils/ppo.py``: 64 environments × 128 steps, 4 epochs of 8 minibatches
    (1,024 transitions), Adam at a constant 5e-4 (lr_begin = lr_end) with ε 1e-5, γ = 0.999,
    λ = 0.95, clip 0.2, entropy coefficient 0.01, gradient norm clipped at 0.5, the value loss
    0.5 · max((V − G)², (V_clipped − G)²) weighted by 0.5 (so ``critic_coeff=0.25`` on rlteach's
    plain squared error, with ``clip_value=True``: V clipped to V_old ± 0.2). Departures: the
    networks are MinAtar's convolutional actor and critic (:mod:`rlteach.modules.conv`) where
    gymnax-blines uses an MLP of 2 × 256 units on the flattened frame; 999,424 frames (122
    batches of 8,192) instead of 10,000,000; evaluation every 49,152 frames (6 batches) with the
    protocol of :mod:`rlteach.recipes._scale`; MinAtar's Python games (``-v1``), not gymnax's JAX
    ports."""
    frames_per_batch = 64 * 128
    return PPOConfig(
        env_id=env_id,
        **{
            **MINATAR_PROTOCOL,
            "total_frames": whole_batches(MINATAR_PROTOCOL["total_frames"], frames_per_batch),
            "eval_every": 6 * frames_per_batch,
            "quick_frames": 512,  # one batch of 64 × 8 frames
        },
        num_envs=64,
        steps_per_env=128,
        lr=5e-4,
        adam_eps=1e-5,
        anneal_lr=False,
        gamma=0.999,
        gae_lambda=0.95,
        num_epochs=4,
        minibatch_size=1_024,
        clip_epsilon=0.2,
        entropy_coeff=0.01,
        critic_coeff=0.25,
        loss_critic_type="l2",
        clip_value=True,
        normalize_advantage=True,
        max_grad_norm=0.5,
    )


LUNARLANDER = PPOConfig(
    env_id="LunarLander-v3",
    **{
        **LUNARLANDER_PROTOCOL,
        "total_frames": whole_batches(LUNARLANDER_PROTOCOL["total_frames"], 16 * 1024),
        "eval_every": 2 * 16 * 1024,
        "quick_frames": 512,  # one batch of 16 × 32 frames
    },
    num_envs=16,
    steps_per_env=1024,
    lr=3e-4,
    adam_eps=1e-5,
    anneal_lr=False,
    gamma=0.999,
    gae_lambda=0.98,
    num_epochs=4,
    minibatch_size=64,
    clip_epsilon=0.2,
    entropy_coeff=0.01,
    critic_coeff=0.5,
    loss_critic_type="l2",
    normalize_advantage=True,
    max_grad_norm=0.5,
    num_cells=(64, 64),
)
"""LunarLander-v3: RL-Zoo 2.9's ``hyperparams/ppo.yml`` entry for ``LunarLander-v3`` (16
environments × n_steps 1024, batch_size 64, n_epochs 4, γ 0.999, λ 0.98, ent_coef 0.01) over
Stable-Baselines3's PPO defaults (Adam at a constant 3e-4 with ε 1e-5, clip 0.2, vf_coef 0.5 on
the squared error, gradient norm clipped at 0.5, advantages normalised per minibatch, separate
actor and critic MLPs of [64, 64] tanh units). Departures: PyTorch's default initialisation
instead of SB3's orthogonal one; 491,520 frames (30 batches of 16,384) instead of 1,000,000;
evaluation every 32,768 frames (2 batches) with the protocol of :mod:`rlteach.recipes._scale`."""


def mujoco_config(env_id: str) -> PPOConfig:
    """Continuous PPO on a MuJoCo task (``Hopper-v5``, ``HalfCheetah-v5``): the PPO paper's
    MuJoCo settings (Schulman et al. 2017, Table 3: horizon 2,048, Adam at 3e-4, 10 epochs of
    minibatches of 64, γ = 0.99, λ = 0.95; clip 0.2 in its Fig. 3; one environment) with the
    code-level choices of openai/baselines' ``ppo2`` that Huang et al. (2022), *The 37
    Implementation Details of PPO*, list for MuJoCo and CleanRL's ``ppo_continuous_action.py``
    keeps: the learning rate decayed linearly to 0, Adam's ε 1e-5, separate actor and critic MLPs
    of [64, 64] tanh units, a state-independent log-std, observations standardised with running
    statistics and clipped to ±10, rewards divided by the running std of the discounted return
    and clipped to ±10 (:mod:`rlteach.modules.normalize`), the value loss clipped around its
    collection-time value (0.5 · max of the two squared errors, weighted 0.5: ``critic_coeff``
    0.25 on rlteach's plain squared error), no entropy bonus, gradient norm clipped at 0.5, and
    advantages normalised per minibatch.

    Departures, each for a reason: the Gaussian is squashed by tanh into the action box
    (:class:`~rlteach.modules.TanhNormal`) where baselines clips the sampled action at the
    environment, since rlteach's environments step the action they are given; PyTorch's default
    initialisation instead of orthogonal; the observation statistics take in each batch once,
    after the batch's updates (baselines updates them at every step), so that the policy that
    collected a batch and the one updated on it see observations through the same statistics;
    999,424 steps (488 batches of 2,048, the largest whole number below 1,000,000) and the
    deterministic policy evaluated over 10 episodes every 20,480 steps (10 batches) where the
    off-policy recipes evaluate every 5,000: 49 evaluations instead of 200 keep evaluation
    below a quarter of the run's time."""
    return PPOConfig(
        env_id=env_id,
        num_envs=1,
        steps_per_env=2_048,
        total_frames=whole_batches(1_000_000, 2_048),
        eval_every=10 * 2_048,
        eval_episodes=10,
        stop_on_solve=False,
        quick_frames=256,
        lr=3e-4,
        adam_eps=1e-5,
        anneal_lr=True,
        gamma=0.99,
        gae_lambda=0.95,
        num_epochs=10,
        minibatch_size=64,
        clip_epsilon=0.2,
        entropy_coeff=0.0,
        critic_coeff=0.25,
        loss_critic_type="l2",
        clip_value=True,
        normalize_advantage=True,
        max_grad_norm=0.5,
        num_cells=(64, 64),
        state_independent_scale=True,
        normalize_observations=True,
        scale_rewards=True,
    )


CONFIGS = {
    "CartPole-v1": PPOConfig(),
    "Acrobot-v1": ACROBOT,
    **{game: minatar_config(game) for game in MINATAR_GAMES},
    "LunarLander-v3": LUNARLANDER,
    "Hopper-v5": mujoco_config("Hopper-v5"),
    "HalfCheetah-v5": mujoco_config("HalfCheetah-v5"),
}

register_trainable(
    "ppo", train, CONFIGS, action_spaces=("discrete", "continuous"), resumable=True,
    bench={
        "ppo-cartpole": "CartPole-v1", "ppo-acrobot": "Acrobot-v1",
        "ppo-lunarlander": "LunarLander-v3",
    },
)  # fmt: skip
