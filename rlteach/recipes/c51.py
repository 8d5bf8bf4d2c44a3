"""C51 on CartPole-v1: the DQN loop with a distributional network and loss (Bellemare et al. 2017).

Nothing in the training loop changes from DQN (it is the same function,
:func:`rlteach.recipes.dqn.run_value_based`): the replay buffer, ε-greedy exploration, the
target-network updates and the evaluation are shared. What changes is what the network predicts
and what the loss compares:

* the network outputs, for every action, a probability for each of ``n_atoms`` fixed returns
  z_1 < ... < z_N spread evenly over [v_min, v_max]
  (:class:`rlteach.modules.DistributionalQValueActor`); the greedy action maximises
  Σ_i z_i p_i(s, a);
* :class:`rlteach.objectives.DistributionalDQNLoss` projects r + γ z onto the support and takes
  the cross-entropy to the predicted distribution of the action taken.

The support must cover the returns: CartPole pays +1 per step and γ = 0.99 caps the discounted
return at 1 / (1 − γ) = 100, so [0, 100] does. On MinAtar (rewards of +1 per brick, alien or
treasure) Revisiting Rainbow's [-100, 100] does too (see :func:`minatar_config`).

Public entry points: ``train(seed, quick, progress, cfg) -> RunResult`` and
``train_agent(seed, quick, progress, cfg, callback) -> (RunResult, TrainedDQN)`` (see
:class:`rlteach.recipes.dqn.TrainedDQN`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensordict.nn import TensorDictModule

from rlteach.checkpoint import Checkpointer
from rlteach.envs import VecGymEnv
from rlteach.modules import (
    DistributionalQValueActor,
    make_distributional_qvalue_network,
    make_minatar_distributional_qvalue_network,
)
from rlteach.objectives import DistributionalDQNLoss, LossModule
from rlteach.recipes._scale import MINATAR_GAMES, MINATAR_PROTOCOL
from rlteach.recipes.base import RunResult
from rlteach.recipes.dqn import DQNConfig, TrainedDQN, run_value_based
from rlteach.registry import register_trainable


@dataclass(frozen=True)
class C51Config(DQNConfig):
    """DQNConfig plus the support; the defaults are tuned for CartPole-v1."""

    n_atoms: int = 51
    """number of support points (C51: 51)"""
    v_min: float = 0.0
    v_max: float = 100.0
    """the support spans [v_min, v_max]; returns outside it are clamped to its ends"""
    double_dqn: bool = False
    """choose the next action with the online network (TorchRL's choice) instead of the target"""


def build(cfg: C51Config, env: VecGymEnv) -> tuple[TensorDictModule, LossModule]:
    """The distributional actor on its support, and DistributionalDQNLoss (an MLP of
    ``num_cells`` for flat observations, MinAtar's convolutional network for images)."""
    if env.is_pixels:
        network = make_minatar_distributional_qvalue_network(
            env.observation_shape, env.n_actions, cfg.n_atoms
        )
    else:
        network = make_distributional_qvalue_network(
            env.observation_dim, env.n_actions, cfg.n_atoms, cfg.num_cells
        )
    support = torch.linspace(cfg.v_min, cfg.v_max, cfg.n_atoms)
    actor = DistributionalQValueActor(network, support)
    loss = DistributionalDQNLoss(
        actor,
        gamma=cfg.gamma,
        double_dqn=cfg.double_dqn,
        delay_value=cfg.target_update != "none",
    )
    return actor, loss


def train_agent(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: C51Config | None = None,
    callback: Callable | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> tuple[RunResult, TrainedDQN]:
    """Train C51; return the evaluation curve (seconds exclude evaluation) and the agent."""
    return run_value_based(
        "c51", cfg or C51Config(), build, seed, quick, progress, callback, checkpoint,
        device=device,
    )


def train(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: C51Config | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> RunResult:
    """Train C51; return the evaluation curve (seconds exclude evaluation). With a
    ``checkpoint`` the run is saved and can be resumed (``python -m rlteach train c51 --resume``).
    """
    return train_agent(seed, quick, progress, cfg, checkpoint=checkpoint, device=device)[0]


def minatar_config(env_id: str) -> C51Config:
    """C51 on a MinAtar game, after Obando-Ceron & Castro (2021), "Revisiting Rainbow: Promoting
    more Insightful and Inclusive Deep Reinforcement Learning Research": the settings of their
    MinAtar runs, ``revisiting_rainbow/Configs/rainbow_{breakout,invaders,asterix}.gin`` of
    github.com/JohanSamir/revisiting_rainbow (the same in the three games) over Dopamine's
    ``JaxDQNAgent`` defaults: 51 atoms on [-100, 100] (``vmax = 100``), Adam with learning rate
    1e-4 and ε 3.125e-4, replay of 100,000, minibatches of 32, γ = 0.99, 1,000 frames before
    learning, one update every 4 frames, the target network copied every 1,000 frames (= every
    250 updates here), ε = 1 during those first 1,000 frames, then annealed linearly to 0.01 over
    250,000 frames (Dopamine's ``linearly_decaying_epsilon``), no gradient clipping. Their
    Rainbow file also switches on what C51 alone does not have (3-step returns, prioritised
    replay, noisy nets, dueling heads, double Q); here they are off: 1-step, uniform replay,
    ε-greedy, one head, ``double_dqn=False``. The network is Young & Tian's MinAtar network of
    the DQN config (Revisiting Rainbow's MinAtar network has its 16-channel convolution padded
    and no 128-unit layer). Departures: 1,000,000 frames instead of 10,000,000, ``-v1`` games,
    and the evaluation of :mod:`rlteach.recipes._scale`."""
    return C51Config(
        env_id=env_id,
        **MINATAR_PROTOCOL,
        num_envs=1,
        steps_per_batch=4,
        updates_per_batch=1,
        buffer_size=100_000,
        batch_size=32,
        learning_starts=1_000,
        lr=1e-4,
        optimizer="adam",
        optim_eps=3.125e-4,
        gamma=0.99,
        max_grad_norm=None,
        target_update="hard",
        target_update_interval=250,
        eps_init=1.0,
        eps_end=0.01,
        exploration_frames=250_000,
        exploration_delay=1_000,
        n_atoms=51,
        v_min=-100.0,
        v_max=100.0,
        double_dqn=False,
    )


CONFIGS = {"CartPole-v1": C51Config(), **{game: minatar_config(game) for game in MINATAR_GAMES}}

register_trainable("c51", train, CONFIGS, resumable=True, bench={"c51-cartpole": "CartPole-v1"})
