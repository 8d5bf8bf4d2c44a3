"""Losses of deep RL, one module per family, each mirroring TorchRL 0.14's class of the same name.

``common.LossModule`` is the base they share; ``utils`` holds the distance and reduction
helpers. Later chapters add their losses to this list.
"""

from rlteach.objectives.a2c import A2CLoss
from rlteach.objectives.c51 import DistributionalDQNLoss, project_distribution
from rlteach.objectives.common import (
    LossModule,
    UnknownKeyNameError,
    UnsupportedEstimatorError,
    default_value_kwargs,
    resolve_value_type,
)
from rlteach.objectives.crossq import CrossQLoss
from rlteach.objectives.ddpg import DDPGLoss
from rlteach.objectives.dqn import DQNLoss
from rlteach.objectives.mappo import IPPOLoss, MAPPOLoss
from rlteach.objectives.ppo import ClipPPOLoss, KLPENPPOLoss, PPOLoss
from rlteach.objectives.qmixer import QMixerLoss
from rlteach.objectives.redq import REDQLoss
from rlteach.objectives.reinforce import ReinforceLoss
from rlteach.objectives.sac import SACLoss, Temperature
from rlteach.objectives.td3 import TD3Loss
from rlteach.objectives.utils import LOSS_FUNCTIONS, REDUCTIONS, distance_loss

__all__ = [
    "DQNLoss",
    "DistributionalDQNLoss",
    "project_distribution",
    "A2CLoss",
    "ClipPPOLoss",
    "CrossQLoss",
    "DDPGLoss",
    "KLPENPPOLoss",
    "LOSS_FUNCTIONS",
    "REDUCTIONS",
    "LossModule",
    "PPOLoss",
    "QMixerLoss",
    "MAPPOLoss",
    "IPPOLoss",
    "REDQLoss",
    "ReinforceLoss",
    "SACLoss",
    "TD3Loss",
    "Temperature",
    "UnknownKeyNameError",
    "UnsupportedEstimatorError",
    "default_value_kwargs",
    "distance_loss",
    "resolve_value_type",
]
