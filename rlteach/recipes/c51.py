"""C51 on CartPole-v1: the DQN loop with a distributional network and loss (Bellemare et al. 2017).

Nothing in the training loop changes from DQN (it is the same function,
:func:`rlteach.recipes.dqn.run_off_policy`): the replay buffer, ε-greedy exploration, the
target-network updates and the evaluation are shared. What changes is what the network predicts
and what the loss compares:

* the network outputs, for every action, a probability for each of ``n_atoms`` fixed returns
  z_1 < ... < z_N spread evenly over [v_min, v_max]
  (:class:`rlteach.modules.DistributionalQValueActor`); the greedy action maximises
  Σ_i z_i p_i(s, a);
* :class:`rlteach.objectives.DistributionalDQNLoss` projects r + γ z onto the support and takes
  the cross-entropy to the predicted distribution of the action taken.

The support must cover the returns: CartPole pays +1 per step and γ = 0.99 caps the discounted
return at 1 / (1 − γ) = 100, so [0, 100] does.

Public entry points: ``train(seed, quick, progress, cfg) -> RunResult`` and
``train_agent(seed, quick, progress, cfg, callback) -> (RunResult, Agent)`` (see
:class:`rlteach.recipes.dqn.Agent`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensordict.nn import TensorDictModule

from rlteach.bench import register
from rlteach.checkpoint import Checkpointer
from rlteach.envs import VecGymEnv
from rlteach.modules import DistributionalQValueActor, make_distributional_qvalue_network
from rlteach.objectives import DistributionalDQNLoss, LossModule
from rlteach.recipes.base import RunResult, register_trainable
from rlteach.recipes.dqn import Agent, DQNConfig, run_off_policy


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
    """The distributional actor on its support, and DistributionalDQNLoss."""
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
) -> tuple[RunResult, Agent]:
    """Train C51; return the evaluation curve (seconds exclude evaluation) and the agent."""
    return run_off_policy(
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


register("c51-cartpole", "c51", "CartPole-v1", train)
register_trainable("c51", train, {"CartPole-v1": C51Config()}, resumable=True)
