"""Deterministic policies a = mu(s) for DDPG and TD3 (Lillicrap et al., 2016; Fujimoto et al., 2018).

``make_deterministic_actor`` builds mu(s) = mid + half * tanh(MLP(s)): the tanh keeps every action
inside the box [low, high] (mid = (high + low)/2, half = (high - low)/2), as both papers do. It
reads ``"observation"`` and writes ``"action"`` [*B, action_dim], TorchRL's layout for an
``Actor``, so the same object works with rlteach's and TorchRL's DDPG / TD3 losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule
from torch import nn

from rlteach.modules.core import MLP

__all__ = ["TanhScale", "make_deterministic_actor"]


class TanhScale(nn.Module):
    """x -> center + half_width * tanh(x): squash an unbounded output into [low, high] element-wise."""

    def __init__(self, low: float | torch.Tensor = -1.0, high: float | torch.Tensor = 1.0) -> None:
        super().__init__()
        low = torch.as_tensor(low, dtype=torch.float32)
        high = torch.as_tensor(high, dtype=torch.float32)
        if not bool((high > low).all()):
            raise ValueError(f"TanhScale needs high > low, got low={low} and high={high}.")
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("half_width", (high - low) / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.center + self.half_width * torch.tanh(x)


def make_deterministic_actor(
    obs_dim: int,
    action_dim: int,
    num_cells: Sequence[int] = (256, 256),
    activation: type[nn.Module] = nn.ReLU,
    *,
    low: float | torch.Tensor = -1.0,
    high: float | torch.Tensor = 1.0,
) -> TensorDictModule:
    """mu(s) = mid + half * tanh(MLP(s)): reads ``"observation"``, writes ``"action"``."""
    body = nn.Sequential(MLP(obs_dim, action_dim, num_cells, activation), TanhScale(low, high))
    return TensorDictModule(body, in_keys=["observation"], out_keys=["action"])
