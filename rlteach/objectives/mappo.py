r"""MAPPOLoss and IPPOLoss: clipped PPO for a team of agents (Yu et al. 2022; de Witt et al. 2020).

Both are :class:`rlteach.objectives.ClipPPOLoss` read on grouped keys, with two multi-agent
defaults, exactly as TorchRL 0.14.1's ``torchrl.objectives.multiagent`` classes:

1. the default value estimator is :class:`rlteach.value.MultiAgentGAE`, which broadcasts the
   team reward and done flags to the agents before the GAE recursion (MAGAE-1, MAGAE-2);
2. advantage standardisation keeps the agent dim apart (``normalize_advantage_exclude_dims``
   defaults to ``(-2,)``):

.. math::
    \tilde A^i = \frac{\hat A^i - \mathrm{mean}_i(\hat A)}{\max(\mathrm{std}_i(\hat A), \epsilon)}
    \tag{MAPPO-1}

with mean and unbiased std over every dim but the excluded ones, ε = 1e-6 (float32's
resolution), over the samples handed to the loss (a minibatch, when it is called per minibatch).
Then each agent's clipped surrogate (PPO-3) is averaged over batch *and* agents.

This per-agent default is TorchRL's, not the MAPPO reference code's: ``R_MAPPO.train`` in
``onpolicy/algorithms/r_mappo/r_mappo.py`` (marlbenchmark/on-policy) standardises the advantages
of the whole buffer of an update, all agents together (mean, population std + 1e-5), once before
the minibatches; only with separate networks per agent does each agent get its own buffer and
statistics. ``normalize_advantage_exclude_dims=()`` pools the agents here too, per minibatch.

MAPPO and IPPO differ only in the critic the user passes: a *centralised* one reading every
agent's observation (MAPPO: ``MultiAgentMLP(centralized=True)``) or one per agent reading its own
(IPPO: ``centralized=False``). The classes are the same; two names keep the intent readable.

Typical keys (set them with ``set_keys``): ``action=("agents", "action")``,
``sample_log_prob=("agents", "action_log_prob")``, ``value=("agents", "state_value")`` and
``reward=("agents", "reward")`` for per-agent rewards (or the default ``"reward"`` for a team
reward ``[*B, T, 1]``).

Not mirrored: TorchRL's ``value_norm`` (PopArt / running value normalisation of the critic
target); passing one raises ``NotImplementedError``.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torch import nn

from rlteach.objectives.ppo import _ADVANTAGE_STD_FLOOR, ClipPPOLoss
from rlteach.value import MultiAgentGAE

__all__ = ["MAPPOLoss", "IPPOLoss"]

#: TorchRL's ``default_value_kwargs`` for ``ValueEstimators.MAGAE``.
_MAGAE_DEFAULTS = {"gamma": 0.99, "lmbda": 0.95, "differentiable": True}
_MAGAE_NAMES = ("magae", "multiagent_gae", "multi_agent_gae")


def standardize(x: torch.Tensor, exclude_dims: tuple[int, ...] = ()) -> torch.Tensor:
    """(MAPPO-1): (x - mean) / max(std, 1e-6), statistics over every dim not in ``exclude_dims``."""
    dims = {d % x.ndim for d in exclude_dims}
    if len(dims) != len(exclude_dims):
        raise ValueError(f"normalize_advantage_exclude_dims repeats a dim: {exclude_dims}.")
    reduce = tuple(d for d in range(x.ndim) if d not in dims)
    if not reduce:
        return x
    mean = x.mean(dim=reduce, keepdim=True)
    std = x.std(dim=reduce, keepdim=True)
    return (x - mean) / std.clamp_min(_ADVANTAGE_STD_FLOOR)


class MAPPOLoss(ClipPPOLoss):
    """Multi-agent PPO with a centralised critic (Yu et al. 2022); see the module docstring.

    Args are those of :class:`ClipPPOLoss`, with these defaults changed as in TorchRL:

    Keyword Args:
        value_norm: not implemented in rlteach; must be ``None``.
        entropy_coeff: 0.01.
        normalize_advantage: ``True`` (the MAPPO reference code standardises too).
        normalize_advantage_exclude_dims: ``(-2,)``, the agent dim of ``[*B, n, 1]``.
    """

    default_value_estimator = "magae"
    _strict_input_shapes = False  # rewards, values and log-probabilities may carry an agent dim

    def __init__(
        self,
        actor_network: nn.Module | None = None,
        critic_network: nn.Module | None = None,
        *,
        value_norm=None,
        entropy_coeff: float = 0.01,
        normalize_advantage: bool = True,
        normalize_advantage_exclude_dims: tuple[int, ...] = (-2,),
        **kwargs,
    ) -> None:
        if value_norm is not None:
            raise NotImplementedError(
                f"{type(self).__name__}: value_norm (PopArt value normalisation) is not "
                f"implemented in rlteach; pass value_norm=None."
            )
        exclude = tuple(normalize_advantage_exclude_dims)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in exclude):
            raise ValueError(f"normalize_advantage_exclude_dims must be ints, got {exclude}.")
        super().__init__(
            actor_network,
            critic_network,
            entropy_coeff=entropy_coeff,
            normalize_advantage=normalize_advantage,
            **kwargs,
        )
        self.normalize_advantage_exclude_dims = exclude
        self.value_norm = None

    def make_value_estimator(self, value_type=None, **hyperparams):
        """As :meth:`LossModule.make_value_estimator`; ``None`` or ``"magae"`` builds a
        :class:`~rlteach.value.MultiAgentGAE` on the critic (γ = 0.99, λ = 0.95 by default)."""
        if value_type is None or (
            isinstance(value_type, str) and value_type.lower() in _MAGAE_NAMES
        ):
            kwargs = {**_MAGAE_DEFAULTS, **hyperparams}
            kwargs.setdefault("value_network", self.critic_network)
            value_type, hyperparams = MultiAgentGAE(**kwargs), {}
        return super().make_value_estimator(value_type, **hyperparams)

    def _advantage(self, td: TensorDictBase) -> torch.Tensor:
        """Â from the batch or the estimator, standardised per agent (MAPPO-1)."""
        advantage = td.get(self.tensor_keys.advantage, None)
        if advantage is None:
            if self.critic_network is None:
                raise RuntimeError(
                    f"{type(self).__name__}: the batch has no {self.tensor_keys.advantage!r} "
                    f"and the loss has no critic_network to estimate it."
                )
            self.value_estimator(td)  # per-agent GAE, no gradient to the critic
            advantage = td.get(self.tensor_keys.advantage)
        self._check_critic_inputs(td)  # before anything changes
        if self.normalize_advantage and advantage.numel() > 1:
            advantage = standardize(advantage, self.normalize_advantage_exclude_dims)
        return advantage


class IPPOLoss(MAPPOLoss):
    """Independent PPO (de Witt et al. 2020): the same loss, with a critic per agent that reads
    only that agent's observation (``MultiAgentMLP(centralized=False)``)."""
