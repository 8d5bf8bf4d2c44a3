"""Networks and distributions, one file per family.

- :mod:`rlteach.modules.core`: the MLP, the tanh-squashed Gaussian and the actor / critic
  builders shared by every chapter (its docstring tables the keys each builder reads and writes).
- :mod:`rlteach.modules.multiagent`: the per-agent MLP and the VDN / QMIX mixers.
- :mod:`rlteach.modules.deterministic`: the deterministic tanh actor of DDPG and TD3.
- :mod:`rlteach.modules.ensemble`: Q-value ensembles (independent members, stacked weights) for
  TD3, SAC and REDQ.
- :mod:`rlteach.modules.batchrenorm`: batch renormalisation (Ioffe, 2017), CrossQ's critic layer.
- :mod:`rlteach.modules.qvalue`: the distributional (C51) Q actor and epsilon-greedy
  exploration.
- :mod:`rlteach.modules.normalize`: running normalisation of observations and rewards
  (continuous PPO on MuJoCo).
- :mod:`rlteach.modules.conv`: MinAtar's convolutional network (Young & Tian, 2019) for image
  observations, with a Q head (DQN), a distributional head (C51) and an actor-critic pair (PPO).

Each algorithm family adds a file here and re-exports its public names below, so that user code
keeps writing ``from rlteach.modules import ...``.
"""

from rlteach.modules.batchrenorm import BatchRenorm1d, BatchRenormMLP, make_crossq_qvalue_network
from rlteach.modules.conv import (
    MinAtarTorso,
    make_minatar_categorical_actor,
    make_minatar_distributional_qvalue_network,
    make_minatar_qvalue_network,
    make_minatar_value_network,
)
from rlteach.modules.core import (
    MLP,
    ConcatMLP,
    GreedyAction,
    IndependentNormal,
    LocScaleHead,
    TanhNormal,
    make_categorical_actor,
    make_normal_actor,
    make_qvalue_actor,
    make_qvalue_network,
    make_state_action_value_network,
    make_value_network,
)
from rlteach.modules.deterministic import TanhScale, make_deterministic_actor
from rlteach.modules.ensemble import (
    EnsembleLinear,
    EnsembleMLP,
    QValueEnsemble,
    make_qvalue_ensemble,
)
from rlteach.modules.multiagent import (
    Mixer,
    MultiAgentMLP,
    QMixer,
    VDNMixer,
    make_multiagent_categorical_actor,
    make_multiagent_value_network,
)
from rlteach.modules.normalize import (
    ObservationNormalizer,
    RewardScaler,
    RunningMeanStd,
    find_normalizer,
)
from rlteach.modules.qvalue import (
    DistributionalQValueActor,
    EGreedyModule,
    make_distributional_qvalue_network,
)

__all__ = [
    "make_multiagent_categorical_actor",
    "make_multiagent_value_network",
    "DistributionalQValueActor",
    "EGreedyModule",
    "make_distributional_qvalue_network",
    "BatchRenorm1d",
    "BatchRenormMLP",
    "make_crossq_qvalue_network",
    "MLP",
    "TanhNormal",
    "IndependentNormal",
    "LocScaleHead",
    "GreedyAction",
    "ConcatMLP",
    "make_categorical_actor",
    "make_normal_actor",
    "make_value_network",
    "make_qvalue_network",
    "make_qvalue_actor",
    "make_state_action_value_network",
    "MultiAgentMLP",
    "Mixer",
    "VDNMixer",
    "QMixer",
    "EnsembleLinear",
    "EnsembleMLP",
    "QValueEnsemble",
    "make_qvalue_ensemble",
    "TanhScale",
    "make_deterministic_actor",
    "MinAtarTorso",
    "make_minatar_qvalue_network",
    "make_minatar_distributional_qvalue_network",
    "make_minatar_categorical_actor",
    "make_minatar_value_network",
    "RunningMeanStd",
    "ObservationNormalizer",
    "RewardScaler",
    "find_normalizer",
]
