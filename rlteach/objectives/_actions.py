"""Continuous actions: read an action spec, check actions against its bounds, sample from a policy.

Shared by the continuous-control losses (DDPG, TD3, SAC, REDQ, CrossQ). An *action spec* may be

* a TorchRL spec (``Bounded``: ``.shape`` and ``.space.low`` / ``.space.high``; a ``Composite`` is
  indexed with the action key first),
* a Gymnasium ``Box`` (``.shape``, ``.low``, ``.high``),
* or, as an rlteach convenience, the action dimension as an ``int`` or a shape tuple (no bounds).

rlteach never imports TorchRL or Gymnasium for this: it reads the attributes.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from tensordict import TensorDictBase
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from tensordict.utils import NestedKey
from torch import nn


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
    if _is_composite(action_spec):  # TorchRL Composite
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


def _is_composite(action_spec) -> bool:
    """A TorchRL ``Composite`` (a spec of several entries, indexed by key)."""
    return hasattr(action_spec, "keys") and hasattr(action_spec, "__getitem__")


def read_action_spec_when_keyed(
    action_spec, action_key: NestedKey, owner: str = "loss"
) -> tuple[tuple[int, ...] | None, torch.Tensor | None, torch.Tensor | None] | None:
    """:func:`read_action_spec`, or ``None`` while a ``Composite`` spec has no ``action_key`` entry.

    TorchRL's losses read the action spec lazily, under the action key in force when they need
    it, so the usual TorchRL order -- build the loss, *then* ``loss.set_keys(action="my_action")``
    -- works with an actor whose spec only has ``"my_action"``. The continuous-control losses call
    this at construction and again whenever the action key is renamed (see
    :func:`use_action_spec`); ``None`` means "not yet: wait for the rename".
    """
    if _is_composite(action_spec) and action_key not in action_spec.keys(True, True):
        return None
    return read_action_spec(action_spec, action_key, owner=owner)


def use_action_spec(loss, owner: str) -> None:
    """Read the loss's action spec (``loss.action_spec_read.spec``) under
    ``loss.tensor_keys.action`` into the loss.

    Sets ``loss.action_low`` / ``loss.action_high`` and, when the loss was built with
    ``target_entropy="auto"``, the temperature's target entropy (-dim(A)). While the spec has no
    entry under the key, ``loss.action_spec_read.pending`` is True and :func:`check_action_spec_read`
    refuses to compute a loss. Used by SAC, REDQ and CrossQ (their ``_after_set_keys``).
    """
    spec = loss.action_spec_read
    read = read_action_spec_when_keyed(spec.spec, loss.tensor_keys.action, owner)
    spec.pending = read is None
    if read is None:
        return
    shape, low, high = read
    if spec.auto:
        loss.temperature.target_entropy.fill_(auto_target_entropy(shape, owner))
    loss.action_low, loss.action_high = low, high


@dataclasses.dataclass
class ActionSpecRead:
    """What SAC, REDQ and CrossQ read from an action spec when they are built."""

    spec: object  # the spec itself, kept to be read again when set_keys renames the action
    low: torch.Tensor | None  # the action bounds, or None
    high: torch.Tensor | None
    target_entropy: float  # a number; a placeholder 0.0 while ``pending`` and "auto"
    auto: bool  # built with target_entropy="auto": -dim(A) once the spec is read
    pending: bool  # a Composite spec with no entry under "action" yet


def read_spec_and_target_entropy(
    action_spec, actor_network, target_entropy, owner: str
) -> ActionSpecRead:
    """The action spec (``action_spec``, else the actor's ``.spec``) → bounds and target entropy.

    ``target_entropy="auto"`` becomes -dim(A) (:func:`auto_target_entropy`). A ``Composite``
    spec without an ``"action"`` entry is read when ``set_keys`` names the action key
    (:func:`use_action_spec`); until then ``forward`` refuses to run.

    Raises:
        ValueError: ``target_entropy`` a string other than ``"auto"``; "auto" with no action shape.
    """
    spec = action_spec if action_spec is not None else getattr(actor_network, "spec", None)
    spec_read = read_action_spec_when_keyed(spec, "action", owner)
    low = high = None
    auto_entropy = target_entropy == "auto"
    if spec_read is not None:
        shape, low, high = spec_read
        if auto_entropy:
            target_entropy = auto_target_entropy(shape, owner)
    elif auto_entropy:
        target_entropy = 0.0  # a placeholder until the spec is read: forward refuses to run
    if isinstance(target_entropy, str):
        raise ValueError(
            f'{owner}: target_entropy must be "auto" or a number, got {target_entropy!r}.'
        )
    return ActionSpecRead(spec, low, high, target_entropy, auto_entropy, spec_read is None)


def attach_action_spec(loss, read: ActionSpecRead, *, as_buffers: bool = False) -> None:
    """Store what :func:`read_spec_and_target_entropy` read on the loss (bounds as buffers
    when ``as_buffers``, so that they are saved in its ``state_dict``, as SAC does)."""
    if as_buffers:
        loss.register_buffer("action_low", read.low)  # None (no bounds) is not saved
        loss.register_buffer("action_high", read.high)
    else:
        loss.action_low, loss.action_high = read.low, read.high
    loss.action_spec_read = read  # read again by use_action_spec when set_keys renames


def check_action_spec_read(loss, owner: str) -> None:
    """Refuse to compute a loss whose action spec has no entry under the current action key.

    Raises:
        KeyError: naming the key, the spec's entries and the ``set_keys`` call that fixes it.
    """
    if loss.action_spec_read.pending:
        key = loss.tensor_keys.action
        entries = [str(k) for k in loss.action_spec_read.spec.keys(True, True)]
        raise KeyError(
            f"{owner}: the action spec (a Composite with entries {entries}) has no entry for the "
            f"action key {key!r}, so its bounds and target entropy are unknown. Rename the "
            f"action key: loss.set_keys(action=<one of {entries}>), or pass action_spec=."
        )


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


def _is_simple_policy(actor) -> bool:
    """A network then a distribution head, the layout ``make_normal_actor`` builds."""
    modules = getattr(actor, "module", None)
    return (
        isinstance(actor, ProbabilisticTensorDictSequential)
        and isinstance(modules, nn.ModuleList)
        and len(modules) == 2
        and type(modules[0]) is TensorDictModule
        and type(modules[1]) is ProbabilisticTensorDictModule
        and list(modules[0].out_keys) == list(modules[1].in_keys)
    )


def policy_distribution(actor, td) -> torch.distributions.Distribution:
    """The policy's action distribution at ``td`` (a TensorDict, or a dict of tensors).

    Equal to ``actor.get_dist(td)``. For the common layout -- a ``TensorDictModule`` computing
    the distribution's parameters, then a ``ProbabilisticTensorDictModule`` -- the network is
    called on plain tensors and the distribution built directly, which skips tensordict's
    per-call bookkeeping (a few hundred microseconds per call on a CPU, the largest cost of a
    small-network update). Anything else goes through ``get_dist``.
    """
    if not _is_simple_policy(actor):
        return actor.get_dist(td)
    net, head = actor.module
    params = net.module(*(td.get(key) for key in net.in_keys))
    if isinstance(params, torch.Tensor):
        params = (params,)
    names = [key[-1] if isinstance(key, tuple) else key for key in head.dist_keys]
    return head.distribution_class(
        **dict(zip(names, params, strict=True)), **head.distribution_kwargs
    )


def deterministic_action(actor, td, action_key: NestedKey = "action") -> torch.Tensor:
    """mu(s) of a deterministic actor at ``td``; a plain ``TensorDictModule`` is called on tensors."""
    if type(actor) is TensorDictModule and len(actor.out_keys) == 1:
        return actor.module(*(td.get(key) for key in actor.in_keys))
    return actor(td.select(*actor.in_keys)).get(action_key)


def rsample_and_log_prob(actor, td: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a reparameterised action from the policy at ``td`` and score the same draw.

    Uses the distribution's ``rsample_and_log_prob`` when it has one (rlteach's and TorchRL's
    TanhNormal do), else ``rsample`` then ``log_prob``: one Gaussian draw of shape ``[*B, A]``
    either way, in the order TorchRL draws, so that a seeded comparison is exact.
    """
    dist = policy_distribution(actor, td)
    if hasattr(dist, "rsample_and_log_prob"):
        return dist.rsample_and_log_prob()
    action = dist.rsample()
    return action, dist.log_prob(action)
