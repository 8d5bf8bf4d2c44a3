r"""MinAtar's convolutional network (Young & Tian, 2019) and the value-based and actor-critic
modules built on it, for image observations.

Young & Tian's DQN scales the Nature DQN network (Mnih et al., 2015) down to MinAtar's 10 × 10 × k
boolean frames: one 3 × 3 convolution with 16 channels (a quarter of Nature's 64) and one hidden
layer of 128 units (a quarter of 512). Their reference code is ``examples/dqn.py`` in
github.com/kenjyoung/MinAtar::

    x  = frames as float, channels first           [*B, k, 10, 10]   (CONV-0)
    h1 = ReLU(Conv2d(k, 16, 3, stride 1)(x))       [*B, 16, 8, 8]    (CONV-1)
    h2 = ReLU(Linear(16 · 8 · 8, 128)(flatten h1)) [*B, 128]         (CONV-2)

and a last linear layer on h2 gives the head each algorithm needs:

=========================================  ====================  ====================================
builder                                    reads                 writes
=========================================  ====================  ====================================
:func:`make_minatar_qvalue_network`        ``"observation"``     ``"action_value"`` [*B, n_actions]
:func:`make_minatar_distributional_`       ``"observation"``     ``"action_value"``: logits
``qvalue_network``                                               [*B, n_atoms, n_actions] (C51)
:func:`make_minatar_categorical_actor`     ``"observation"``     ``"logits"``, ``"action"``,
                                                                 ``"action_log_prob"`` (PPO's actor)
:func:`make_minatar_value_network`         ``"observation"``     ``"state_value"`` [*B, 1] (critic)
=========================================  ====================  ====================================

The observation arrives channels last, [*B, H, W, k], in whatever dtype the environment gives
(MinAtar: bool; the replay buffer hands float32 back). (CONV-0) converts it to float32 and moves
the channels first, so the network is the only place that needs to know about the layout, and
the acting policy (which sees the environment's bool frames) and the loss (which sees the
buffer's float32 frames) get the same numbers. MinAtar's cells are 0 or 1, so nothing is
rescaled (8-bit pixels would want a division by 255 here). Any number of leading batch dims is
accepted ([B] when acting, [B, T] for PPO's advantage pass): they are flattened around the
convolution and restored after it.

The actor and the critic of PPO are two separate networks (no shared torso), each with its own
convolution: the simplest pairing, and what TorchRL's ``ClipPPOLoss`` takes by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from torch import nn
from torch.distributions import Categorical

from rlteach.modules.qvalue import AtomsHead

__all__ = [
    "MinAtarTorso",
    "make_minatar_qvalue_network",
    "make_minatar_distributional_qvalue_network",
    "make_minatar_categorical_actor",
    "make_minatar_value_network",
]


def _check_shape(owner: str, observation_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(observation_shape)
    if len(shape) != 3 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise ValueError(
            f"{owner}: observation_shape must be an image shape (H, W, C), channels last, e.g. "
            f"(10, 10, 4) for MinAtar/Breakout-v1; got {observation_shape!r}."
        )
    return shape


def _check_positive(owner: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}.")


class MinAtarTorso(nn.Module):
    """(CONV-0)-(CONV-2): frames [*B, H, W, C] of any dtype → features [*B, hidden].

    ==================  ========================================================================
    observation_shape   (H, W, C) of one frame, channels last; MinAtar: (10, 10, k)
    channels            convolution channels (Young & Tian: 16)
    kernel_size         square kernel, stride 1, no padding (Young & Tian: 3)
    hidden              units of the fully connected layer (Young & Tian: 128)
    ==================  ========================================================================
    """

    def __init__(
        self,
        observation_shape: Sequence[int],
        channels: int = 16,
        kernel_size: int = 3,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        height, width, in_channels = _check_shape("MinAtarTorso", observation_shape)
        _check_positive("MinAtarTorso", channels=channels, kernel_size=kernel_size, hidden=hidden)
        if kernel_size > min(height, width):
            raise ValueError(
                f"MinAtarTorso: kernel_size {kernel_size} is larger than the {height} x {width} "
                f"frame."
            )
        self.observation_shape = (height, width, in_channels)
        self.conv = nn.Conv2d(in_channels, channels, kernel_size, stride=1)
        out_h, out_w = height - kernel_size + 1, width - kernel_size + 1
        self.hidden = nn.Linear(channels * out_h * out_w, hidden)
        self.out_features = hidden

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if tuple(frames.shape[-3:]) != self.observation_shape:
            raise ValueError(
                f"MinAtarTorso expects frames [*B, {', '.join(map(str, self.observation_shape))}] "
                f"(H, W, C, channels last), got shape {list(frames.shape)}. Build it with the "
                f"environment's observation_shape."
            )
        lead = frames.shape[:-3]
        x = frames.to(torch.float32).movedim(-1, -3)  # (CONV-0) float, channels first
        x = x.reshape(-1, *x.shape[-3:])  # one batch dim for Conv2d
        x = torch.relu(self.conv(x))  # (CONV-1)
        x = torch.relu(self.hidden(x.flatten(1)))  # (CONV-2)
        return x.reshape(*lead, self.out_features)


def make_minatar_qvalue_network(
    observation_shape: Sequence[int], n_actions: int, hidden: int = 128
) -> TensorDictModule:
    """Q(s, ·) = Linear(torso(s)): Young & Tian's DQN network; writes ``"action_value"``.

    Hand it to :func:`rlteach.modules.make_qvalue_actor` for the greedy policy.
    """
    _check_positive("make_minatar_qvalue_network", n_actions=n_actions)
    torso = MinAtarTorso(observation_shape, hidden=hidden)
    return TensorDictModule(
        nn.Sequential(torso, nn.Linear(hidden, n_actions)),
        in_keys=["observation"],
        out_keys=["action_value"],
    )


def make_minatar_distributional_qvalue_network(
    observation_shape: Sequence[int], n_actions: int, n_atoms: int = 51, hidden: int = 128
) -> TensorDictModule:
    """C51's logits on the MinAtar torso: writes ``"action_value"`` [*B, n_atoms, n_actions].

    The same layout as :func:`rlteach.modules.make_distributional_qvalue_network` (atoms on dim
    -2), so :class:`rlteach.modules.DistributionalQValueActor` wraps it unchanged.
    """
    _check_positive(
        "make_minatar_distributional_qvalue_network", n_actions=n_actions, n_atoms=n_atoms
    )
    if n_atoms < 2:
        raise ValueError(
            f"make_minatar_distributional_qvalue_network: n_atoms must be at least 2, got "
            f"{n_atoms}."
        )
    torso = MinAtarTorso(observation_shape, hidden=hidden)
    body = nn.Sequential(
        torso, nn.Linear(hidden, n_atoms * n_actions), AtomsHead(n_atoms, n_actions)
    )
    return TensorDictModule(body, in_keys=["observation"], out_keys=["action_value"])


def make_minatar_categorical_actor(
    observation_shape: Sequence[int], n_actions: int, hidden: int = 128
) -> ProbabilisticTensorDictSequential:
    """π(a|s) = Categorical(logits = Linear(torso(s))), the layout of
    :func:`rlteach.modules.make_categorical_actor`: writes ``"logits"``, ``"action"`` (int64
    [*B]) and ``"action_log_prob"`` [*B]; the deterministic action is the argmax."""
    _check_positive("make_minatar_categorical_actor", n_actions=n_actions)
    torso = MinAtarTorso(observation_shape, hidden=hidden)
    net = TensorDictModule(
        nn.Sequential(torso, nn.Linear(hidden, n_actions)),
        in_keys=["observation"],
        out_keys=["logits"],
    )
    head = ProbabilisticTensorDictModule(
        in_keys=["logits"],
        out_keys=["action"],
        distribution_class=Categorical,
        return_log_prob=True,
        default_interaction_type=InteractionType.RANDOM,
    )
    return ProbabilisticTensorDictSequential(net, head)


def make_minatar_value_network(
    observation_shape: Sequence[int], hidden: int = 128
) -> TensorDictModule:
    """V(s) = Linear(torso(s)): PPO's critic on its own torso; writes ``"state_value"`` [*B, 1]."""
    torso = MinAtarTorso(observation_shape, hidden=hidden)
    return TensorDictModule(
        nn.Sequential(torso, nn.Linear(hidden, 1)),
        in_keys=["observation"],
        out_keys=["state_value"],
    )
