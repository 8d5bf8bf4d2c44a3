"""Discrete actions for the value-based losses (DQN, C51): the taken action as an index.

Shared by :mod:`rlteach.objectives.dqn` and :mod:`rlteach.objectives.c51`.
"""

from __future__ import annotations

import torch

__all__ = ["DOUBLE_NEEDS_TARGET", "action_index", "infer_action_space"]

DOUBLE_NEEDS_TARGET = (
    "{owner}: double_dqn=True requires delay_value=True. Double DQN decouples choosing the next "
    "action (online network θ) from evaluating it (target network θ'); without a target "
    "network both would be θ and the 'double' estimate would be the ordinary max, so the "
    "option would silently do nothing. Keep delay_value=True (the default), or set "
    "double_dqn=False."
)


def action_index(owner: str, action: torch.Tensor, action_space: str, n_actions: int, batch):
    """The taken action as an int64 index [*B], after checking it is a valid action.

    ``categorical`` actions are indices of shape [*B] or [*B, 1]; ``one-hot`` actions are
    [*B, n_actions] vectors with a single 1.
    """
    if action_space == "categorical":
        if action.is_floating_point() or action.dtype == torch.bool:
            raise ValueError(
                f"{owner}: categorical actions are indices and must be integers, got dtype "
                f"{action.dtype}. Store them as int64 (.long()); for one-hot actions build the "
                f"loss with action_space='one-hot'."
            )
        index = action.long()
        if tuple(index.shape) == (*batch, 1):
            index = index.squeeze(-1)
        if tuple(index.shape) != tuple(batch):
            raise ValueError(
                f"{owner}: categorical actions must have shape {[*batch]} or {[*batch, 1]} "
                f"(batch {list(batch)}), got {list(action.shape)}. For one-hot actions build "
                f"the loss with action_space='one-hot'."
            )
        if index.numel() and (index.min() < 0 or index.max() >= n_actions):
            raise ValueError(
                f"{owner}: actions must lie in [0, {n_actions - 1}] (the network has "
                f"{n_actions} action values), got values from {int(index.min())} to "
                f"{int(index.max())}."
            )
        return index
    if tuple(action.shape) != (*batch, n_actions):
        raise ValueError(
            f"{owner}: one-hot actions must have shape {[*batch, n_actions]}, got "
            f"{list(action.shape)}. For integer indices build the loss with "
            f"action_space='categorical'."
        )
    is_binary = bool(((action == 0) | (action == 1)).all())
    if not is_binary or not bool((action.sum(-1) == 1).all()):
        raise ValueError(
            f"{owner}: a one-hot action must hold exactly one 1 and zeros elsewhere in its "
            f"last dim; some rows of the action do not."
        )
    return action.argmax(-1)


def infer_action_space(action: torch.Tensor, batch, n_actions: int) -> str:
    """Categorical when the action is [*B] or [*B, 1]; one-hot when it is [*B, n_actions > 1]."""
    extra = tuple(action.shape[len(batch) :])
    if extra in ((), (1,)):
        return "categorical"
    if extra == (n_actions,):
        return "one-hot"
    raise ValueError(
        f"The action has shape {list(action.shape)} for batch {list(batch)}: neither an index "
        f"([*B] or [*B, 1]) nor a one-hot vector ([*B, {n_actions}]). Pass action_space= to "
        f"the loss."
    )
