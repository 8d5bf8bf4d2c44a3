"""Continuous actions: read an action spec, check actions against its bounds, sample from a policy.

Shared by the continuous-control losses (DDPG, TD3, SAC, REDQ, CrossQ). An *action spec* may be

* a TorchRL spec (``Bounded``: ``.shape`` and ``.space.low`` / ``.space.high``; a ``Composite`` is
  indexed with the action key first),
* a Gymnasium ``Box`` (``.shape``, ``.low``, ``.high``),
* or, as an rlteach convenience, the action dimension as an ``int`` or a shape tuple (no bounds).

rlteach never imports TorchRL or Gymnasium for this: it reads the attributes.
"""

from __future__ import annotations

import math

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey


def read_action_spec(
    action_spec, action_key: NestedKey = "action", owner: str = "loss"
) -> tuple[tuple[int, ...] | None, torch.Tensor | None, torch.Tensor | None]:
    """``(shape, low, high)`` of an action spec; ``(None, None, None)`` for ``None``.

    ``low`` / ``high`` are float32 tensors, or ``None`` when the spec has no bounds.

    Raises:
        TypeError: something that is none of the accepted kinds.
    """
    if action_spec is None:
        return None, None, None
    if isinstance(action_spec, bool):
        raise TypeError(f"{owner}: action_spec must be a spec or an action dim, got a bool.")
    if isinstance(action_spec, int):
        return (action_spec,), None, None
    if isinstance(action_spec, (tuple, list, torch.Size)):
        return tuple(int(n) for n in action_spec), None, None
    if hasattr(action_spec, "keys") and hasattr(action_spec, "__getitem__"):  # TorchRL Composite
        action_spec = action_spec[action_key]
    if not hasattr(action_spec, "shape"):
        raise TypeError(
            f"{owner}: action_spec must be a TorchRL or Gymnasium spec (with .shape), an int "
            f"action dim or a shape tuple, got {type(action_spec).__name__}."
        )
    shape = tuple(int(n) for n in action_spec.shape)
    space = getattr(action_spec, "space", action_spec)
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    if low is None or high is None:
        return shape, None, None
    low = torch.as_tensor(low, dtype=torch.float32).clone()
    high = torch.as_tensor(high, dtype=torch.float32).clone()
    return shape, low, high


def auto_target_entropy(shape: tuple[int, ...] | None, owner: str) -> float:
    """The heuristic target entropy of SAC, -dim(A) (Haarnoja et al., 2018b, section 5).

    Raises:
        ValueError: no action shape is known.
    """
    if shape is None:
        raise ValueError(
            f'{owner}: target_entropy="auto" is -dim(action), but the action dimension is '
            f"unknown. Pass action_spec (a TorchRL/Gymnasium spec, or simply the action dim as an "
            f"int), give the actor a .spec, or pass target_entropy=<a number>."
        )
    return -float(math.prod(shape))


def check_action_in_bounds(
    owner: str, action: torch.Tensor, low: torch.Tensor | None, high: torch.Tensor | None
) -> None:
    """Refuse stored actions outside the action box [low, high] (a tolerance of 1e-5).

    Such an action cannot come from the policy (a TanhNormal or a clamped deterministic actor), so
    it signals a mismatch: unscaled actions, a wrong action_spec, or another task's data.
    """
    if low is None or high is None:
        return
    low, high = low.to(action.device), high.to(action.device)
    tol = 1e-5
    outside = (action < low - tol) | (action > high + tol)
    if outside.any():
        index = outside.nonzero()[0].tolist()
        raise ValueError(
            f"{owner}: the batch holds an action outside the action spec's bounds "
            f"[{low.min().item():g}, {high.max().item():g}] (first at index {index}: "
            f"{action[tuple(index)].item():g}). Store the actions the environment received, in its "
            f"units, or pass the action_spec of this environment."
        )


def rsample_and_log_prob(actor, td: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a reparameterised action from the policy at ``td`` and score the same draw.

    Uses the distribution's ``rsample_and_log_prob`` when it has one (rlteach's and TorchRL's
    TanhNormal do), else ``rsample`` then ``log_prob``: one Gaussian draw of shape ``[*B, A]``
    either way, in the order TorchRL draws, so that a seeded comparison is exact.
    """
    dist = actor.get_dist(td)
    if hasattr(dist, "rsample_and_log_prob"):
        return dist.rsample_and_log_prob()
    action = dist.rsample()
    return action, dist.log_prob(action)
