r"""Value-based acting: the distributional Q-network and actor (C51), and epsilon-greedy exploration.

The greedy actor of an ordinary Q-network is :func:`rlteach.modules.core.make_qvalue_actor`;
this file adds what the value-based chapters need beside it.

=====================================  =====================  ====================================
module                                 reads                  writes
=====================================  =====================  ====================================
:func:`make_distributional_qvalue_     ``"observation"``      ``"action_value"``: logits
network`                                                      [*B, n_atoms, n_actions]
:class:`DistributionalQValueActor`     ``"observation"``      ``"action_value"``: log p_i(s, a)
                                                              [*B, n_atoms, n_actions] (log-softmax
                                                              over the atoms), ``"action"``
:class:`EGreedyModule`                 ``"action"``           ``"action"`` (random with prob. ε)
=====================================  =====================  ====================================

The layouts are TorchRL 0.14's (``DistributionalQValueActor``, ``EGreedyModule``): the atoms sit
on dim -2 and the actions on dim -1, the actor stores its support as a buffer named ``support``
and says its action layout in ``action_space``, so the same actor can be handed to rlteach's or
TorchRL's ``DistributionalDQNLoss``.

Distributional greedy action (Bellemare et al., 2017, Algorithm 1, first two lines)::

    Q(s, a) = sum_i z_i p_i(s, a)          (C51-Q)
    a*      = argmax_a Q(s, a)             (C51-greedy)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import (
    InteractionType,
    TensorDictModule,
    TensorDictModuleBase,
    TensorDictSequential,
)
from tensordict.nn.probabilistic import interaction_type
from tensordict.utils import NestedKey
from torch import nn

from rlteach._checks import check_range
from rlteach.modules.core import MLP

__all__ = [
    "ACTION_SPACES",
    "check_action_space",
    "AtomsHead",
    "make_distributional_qvalue_network",
    "DistributionalQValueActor",
    "EGreedyModule",
]

#: The two layouts of a discrete action (TorchRL's names): an int64 index or a one-hot vector.
ACTION_SPACES = ("categorical", "one-hot")


def check_action_space(owner: str, action_space: str) -> str:
    """Normalise ``"one_hot"`` to ``"one-hot"``; refuse anything but the two layouts."""
    if isinstance(action_space, str):
        action_space = action_space.replace("_", "-")
    if action_space not in ACTION_SPACES:
        raise ValueError(
            f"{owner}: action_space must be 'categorical' (actions are int64 indices, shape "
            f"[*B] or [*B, 1]) or 'one-hot' (shape [*B, n_actions]), got {action_space!r}."
        )
    return action_space


class AtomsHead(nn.Module):
    """Reshape a flat output [*B, n_atoms * n_actions] into [*B, n_atoms, n_actions]."""

    def __init__(self, n_atoms: int, n_actions: int) -> None:
        super().__init__()
        self.n_atoms, self.n_actions = n_atoms, n_actions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.n_atoms, self.n_actions))


def make_distributional_qvalue_network(
    obs_dim: int,
    n_actions: int,
    n_atoms: int = 51,
    num_cells: Sequence[int] = (64, 64),
    activation: type[nn.Module] = nn.ReLU,
) -> TensorDictModule:
    """Logits of the return distribution: reads ``"observation"``, writes ``"action_value"``.

    One MLP outputs ``n_atoms * n_actions`` numbers, reshaped to [*B, n_atoms, n_actions]: for
    each action a the column ``[:, a]`` holds the unnormalised log-probabilities of the atoms.
    :class:`DistributionalQValueActor` turns them into log-probabilities (a softmax per action,
    over the atoms) and picks the greedy action. 51 atoms is the paper's C51 (Bellemare et al.,
    2017, section 5).
    """
    for name, value in (("obs_dim", obs_dim), ("n_actions", n_actions), ("n_atoms", n_atoms)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"make_distributional_qvalue_network: {name} must be a positive integer, got "
                f"{value!r}."
            )
    if n_atoms < 2:
        raise ValueError(
            f"make_distributional_qvalue_network: n_atoms must be at least 2 (a support needs "
            f"two ends V_MIN < V_MAX), got {n_atoms}."
        )
    body = nn.Sequential(
        MLP(obs_dim, n_atoms * n_actions, num_cells, activation), AtomsHead(n_atoms, n_actions)
    )
    return TensorDictModule(body, in_keys=["observation"], out_keys=["action_value"])


def _network_atoms(network: nn.Module) -> int | None:
    """The number of atoms a network says it outputs (an :class:`AtomsHead` inside), if any."""
    for sub in network.modules():
        if isinstance(sub, AtomsHead):
            return sub.n_atoms
    return None


def check_support_matches(owner: str, support: torch.Tensor, log_probs: torch.Tensor) -> None:
    """The atoms dim (-2) of the network's output must have one entry per support point."""
    if log_probs.ndim < 2 or log_probs.shape[-2] != support.numel():
        raise ValueError(
            f"{owner}: the network outputs {list(log_probs.shape)} (atoms on dim -2) but the "
            f"support has {support.numel()} points. Build the network with "
            f"n_atoms={support.numel()}, or a support of the network's length, e.g. "
            f"torch.linspace(v_min, v_max, n_atoms)."
        )


class _LogSoftmaxOverAtoms(nn.Module):
    """log p_i(s, a) = logits_i(s, a) - log sum_j exp(logits_j(s, a)): normalise each action."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.log_softmax(dim=-2)


class _DistributionalGreedy(nn.Module):
    """(C51-Q) then (C51-greedy): the action with the largest expected return under p."""

    def __init__(self, support: torch.Tensor, action_space: str) -> None:
        super().__init__()
        self.register_buffer("support", support)
        self.action_space = action_space

    def forward(self, log_probs: torch.Tensor) -> torch.Tensor:
        check_support_matches("DistributionalQValueActor", self.support, log_probs)
        q = (log_probs.exp() * self.support.unsqueeze(-1)).sum(-2)  # (C51-Q) [*B, n_actions]
        index = q.argmax(dim=-1)  # (C51-greedy)
        if self.action_space == "one-hot":
            return nn.functional.one_hot(index, q.shape[-1])
        return index


class DistributionalQValueActor(TensorDictSequential):
    r"""The greedy policy of a distributional Q-network (C51), in TorchRL's layout.

    Runs ``network`` (which writes logits at ``"action_value"``, [*B, n_atoms, n_actions]),
    replaces them by log-probabilities over the atoms (``make_log_softmax=True``), then writes
    the greedy action (C51-Q, C51-greedy) at ``"action"``.

    ==============  ======================  =============================================
    symbol          shape                   meaning
    ==============  ======================  =============================================
    ``support``     [n_atoms]               the fixed return values z_1 < ... < z_N
    action_value    [*B, n_atoms, n_act]    log p_i(s, a), each column sums to 1 in prob.
    action          [*B] or [*B, n_act]     int64 index, or one-hot (``action_space``)
    ==============  ======================  =============================================

    Args:
        network: a ``TensorDictModule`` writing ``"action_value"`` logits, e.g. from
            :func:`make_distributional_qvalue_network`.
        support: the atoms z_i, increasing and evenly spaced (``torch.linspace(v_min, v_max,
            n_atoms)``).
        action_space: ``"categorical"`` (default) or ``"one-hot"``.
        make_log_softmax: apply the log-softmax over the atoms (set ``False`` if the network
            already outputs log-probabilities).

    Raises:
        ValueError: a support that is not 1-D, increasing and evenly spaced, or whose length is
            not the network's number of atoms.
    """

    def __init__(
        self,
        network: TensorDictModule,
        support: torch.Tensor,
        action_space: str = "categorical",
        make_log_softmax: bool = True,
    ) -> None:
        action_space = check_action_space("DistributionalQValueActor", action_space)
        support = torch.as_tensor(support, dtype=torch.get_default_dtype())
        check_support("DistributionalQValueActor", support)
        atoms = _network_atoms(network)
        if atoms is not None and atoms != support.numel():
            raise ValueError(
                f"DistributionalQValueActor: the network outputs {atoms} atoms but the support "
                f"has {support.numel()} points. Build the network with n_atoms="
                f"{support.numel()}, or pass torch.linspace(v_min, v_max, {atoms})."
            )
        if "action_value" not in network.out_keys:
            raise KeyError(
                f"DistributionalQValueActor: the network must write 'action_value', it writes "
                f"{network.out_keys}."
            )
        modules = [network]
        if make_log_softmax:
            modules.append(
                TensorDictModule(
                    _LogSoftmaxOverAtoms(), in_keys=["action_value"], out_keys=["action_value"]
                )
            )
        greedy = _DistributionalGreedy(support, action_space)
        modules.append(TensorDictModule(greedy, in_keys=["action_value"], out_keys=["action"]))
        super().__init__(*modules)
        # The same tensor as the greedy head's buffer, at the top level where losses (and
        # TorchRL's DistributionalDQNLoss) look for it.
        self.register_buffer("support", greedy.support)
        self.action_space = action_space


def check_support(owner: str, support: torch.Tensor) -> None:
    """A C51 support is 1-D, has at least two points, increases and is evenly spaced."""
    if support.ndim != 1 or support.numel() < 2:
        raise ValueError(
            f"{owner}: the support must be a 1-D tensor of at least 2 atoms, got shape "
            f"{list(support.shape)}. Use torch.linspace(v_min, v_max, n_atoms)."
        )
    gaps = support.diff()
    if not bool((gaps > 0).all()) or not torch.allclose(
        gaps, gaps.mean().expand_as(gaps), rtol=1e-4, atol=1e-6
    ):
        raise ValueError(
            f"{owner}: the support must increase in equal steps (the projection divides by "
            f"one Δz), got {support.tolist()}. Use torch.linspace(v_min, v_max, n_atoms)."
        )


class EGreedyModule(TensorDictModuleBase):
    r"""ε-greedy exploration with a linearly annealed ε, in TorchRL 0.14's ``EGreedyModule`` form.

    Put it after a greedy actor: with probability ε it replaces the action by one drawn
    uniformly from the ``n_actions`` actions (Mnih et al., 2015, "Methods: Training details")::

        ε_k = max(ε_end, ε_init - k (ε_init - ε_end) / annealing_num_steps)     (EG-1)
        a   = uniform random action  with probability ε_k,  else the greedy a   (EG-2)

    where k counts the frames passed to ``step(frames)``. As in TorchRL the module explores only
    under the RANDOM interaction type (or none set, the default) and leaves the action alone
    under ``set_interaction_type(InteractionType.DETERMINISTIC)``, which is what the evaluator
    uses. The draw order is TorchRL's: first one uniform per batch element for the coin, then
    the random actions.

    Args:
        n_actions: number of discrete actions (TorchRL takes an action spec instead).
        eps_init: ε at the start (default 1.0).
        eps_end: ε after annealing (default 0.1).
        annealing_num_steps: frames over which ε falls linearly (default 1000).
        action_key: where the action is read and written (default ``"action"``).
        action_space: ``"categorical"`` (int64 index [*B]) or ``"one-hot"`` ([*B, n_actions]).
        seed: seed of a private (CPU) ``torch.Generator``; ``None`` draws from torch's global
            one on the action's device (like TorchRL, reproducible through
            ``torch.manual_seed``). With a seed the draws are made on the CPU and moved to the
            action's device, so they are the same on every device.

    Raises:
        ValueError: ε outside [0, 1], ``eps_end > eps_init`` or ``annealing_num_steps < 1``.
    """

    def __init__(
        self,
        n_actions: int,
        eps_init: float = 1.0,
        eps_end: float = 0.1,
        annealing_num_steps: int = 1000,
        *,
        action_key: NestedKey = "action",
        action_space: str = "categorical",
        seed: int | None = None,
    ) -> None:
        if isinstance(n_actions, bool) or not isinstance(n_actions, int) or n_actions < 1:
            raise ValueError(
                f"EGreedyModule: n_actions must be a positive integer, got {n_actions!r}."
            )
        check_range("eps_init", eps_init, 0.0, 1.0)
        check_range("eps_end", eps_end, 0.0, 1.0)
        if eps_end > eps_init:
            raise ValueError(
                f"EGreedyModule: eps_end={eps_end} is above eps_init={eps_init}; ε is annealed "
                f"downwards. Swap them."
            )
        if (
            isinstance(annealing_num_steps, bool)
            or not isinstance(annealing_num_steps, int)
            or annealing_num_steps < 1
        ):
            raise ValueError(
                f"EGreedyModule: annealing_num_steps must be an integer >= 1, got "
                f"{annealing_num_steps!r}."
            )
        super().__init__()
        self.n_actions = n_actions
        self.action_key = action_key
        self.action_space = check_action_space("EGreedyModule", action_space)
        self.in_keys = [action_key]
        self.out_keys = [action_key]
        self.register_buffer("eps_init", torch.as_tensor(float(eps_init)))
        self.register_buffer("eps_end", torch.as_tensor(float(eps_end)))
        self.register_buffer("eps", torch.as_tensor(float(eps_init)))
        self.annealing_num_steps = annealing_num_steps
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def step(self, frames: int = 1) -> None:
        """Advance the schedule (EG-1) by ``frames`` frames; after annealing it stays at ε_end."""
        decrement = (self.eps_init - self.eps_end) / self.annealing_num_steps
        for _ in range(frames):  # one frame at a time, as TorchRL (same float rounding)
            self.eps.copy_(torch.maximum(self.eps_end, self.eps - decrement))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        mode = interaction_type()
        if mode not in (InteractionType.RANDOM, None):
            return tensordict  # evaluation: keep the greedy action
        action = tensordict.get(self.action_key)
        batch = tensordict.batch_size
        # (EG-2) one coin per batch element, then a uniform action for every element
        where = action.device if self.generator is None else self.generator.device
        explore = torch.rand(batch, generator=self.generator, device=where) < self.eps.to(where)
        random_index = torch.randint(
            0, self.n_actions, batch, generator=self.generator, device=where
        )
        explore, random_index = explore.to(action.device), random_index.to(action.device)
        if self.action_space == "one-hot":
            random_action = nn.functional.one_hot(random_index, self.n_actions).to(action.dtype)
            explore = explore.unsqueeze(-1)
        else:
            random_action = random_index.to(action.dtype).view(action.shape)
            explore = explore.view(*batch, *([1] * (action.ndim - len(batch))))
        tensordict.set(self.action_key, torch.where(explore, random_action, action))
        return tensordict

    def extra_repr(self) -> str:
        return (
            f"n_actions={self.n_actions}, eps={float(self.eps):.4f}, eps_end="
            f"{float(self.eps_end)}, annealing_num_steps={self.annealing_num_steps}"
        )
