"""Checks of what a network will read from a batch, written once for every loss and estimator.

``LossModule.__call__`` and ``ValueEstimatorBase``'s readers call :func:`check_network_inputs`
(and the losses :func:`check_action_in_actor_bounds`) before anything runs, so a loss written
tomorrow gets the same checks without a line of its own. They live beside the networks because
they read the networks' layers (rlteach's MLP family, ``MultiAgentMLP``, ``TanhScale``); the
generic checks they build on are in ``rlteach._checks``.
"""

from __future__ import annotations

import weakref

import torch
from tensordict import TensorDictBase

from rlteach._checks import _as_tuple, check_finite, get_key, key_str
from rlteach.modules.batchrenorm import BatchRenormMLP
from rlteach.modules.core import MLP
from rlteach.modules.deterministic import TanhScale
from rlteach.modules.ensemble import EnsembleMLP
from rlteach.modules.multiagent import MultiAgentMLP

__all__ = ["actor_bounds", "check_action_in_actor_bounds", "check_network_inputs", "input_width"]


def _first_reader(network: torch.nn.Module) -> tuple[list, torch.nn.Module]:
    """(keys, body) of the first module of ``network`` that reads entries of the batch.

    A ``TensorDictModule`` is a module with ``in_keys`` and a ``module`` (its body); sequences
    (whose ``module`` is a list) are looked into. Without one: the network's own keys and itself.
    """
    for m in network.modules():
        body = getattr(m, "module", None)
        if isinstance(body, torch.nn.Module) and not isinstance(body, torch.nn.ModuleList):
            if getattr(m, "in_keys", None):
                return list(m.in_keys), body
    return list(getattr(network, "in_keys", [])), network


def input_width(body: torch.nn.Module) -> int | None:
    """The width a network's inputs add up to on their last dim, when its layers say so.

    rlteach's MLP family (``MLP``, ``ConcatMLP``, ``EnsembleMLP``, ``BatchRenormMLP``) concatenates
    its inputs on the last dim and records ``in_features``; a ``MultiAgentMLP`` records the
    per-agent width ``n_agent_inputs``. Any other body (convolutions, your own layers): ``None``,
    and only dtype, finiteness and the presence of a feature dim are checked.
    """
    for m in body.modules():
        if isinstance(m, MultiAgentMLP):
            return m.n_agent_inputs
        if isinstance(m, (MLP, BatchRenormMLP, EnsembleMLP)):
            return m.in_features
        if next(m.parameters(recurse=False), None) is not None:
            return None  # the first layer with weights is something else: do not guess
    return None


# network -> (its keys, (first reader's keys, input width, MultiAgentMLP or None)): what the
# layers say about a network's inputs, worked out once per network (a walk over its modules
# would cost a loss call tens of microseconds each time). The dtype is read at every call.
_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _layout(network: torch.nn.Module, keys: list) -> tuple:
    """(first reader's keys, input width or None, its MultiAgentMLP or None, whether the first
    layer with weights is linear: it then needs floats of the network's dtype)."""
    cached = _LAYOUTS.get(network)
    if cached is not None and cached[0] == keys:
        return cached[1]
    first_keys, body = _first_reader(network)
    width = input_width(body) if set(first_keys) <= set(keys) else None
    agents = next((m for m in body.modules() if isinstance(m, MultiAgentMLP)), None)
    first = next((m for m in body.modules() if next(m.parameters(False), None) is not None), None)
    linear = width is not None or isinstance(first, torch.nn.Linear)
    _LAYOUTS[network] = (list(keys), (first_keys, width, agents, linear))
    return first_keys, width, agents, linear


def _network_dtype(network: torch.nn.Module) -> torch.dtype | None:
    for p in network.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def check_network_inputs(
    owner: str,
    td: TensorDictBase,
    network: torch.nn.Module,
    *,
    required: bool = True,
    next_step: bool | None = False,
) -> None:
    """Refuse a batch a network cannot read correctly, before the network runs.

    For each entry ``network`` reads (``in_keys``): present (``required``; otherwise an absent
    entry is left to whoever reads it), starting with the batch size of the TensorDict holding
    it, with a feature dim after it, finite; and, where the network's first layer is one of
    rlteach's MLPs, exactly one feature dim whose widths add up to the layer's ``in_features``;
    where it is linear, floating point of the network's own dtype (other layers, such as the
    MinAtar torso reading bool frames, convert their inputs themselves). ``next_step=True`` asks the same of the entries under ``"next"``
    (and the same shape as now); ``None`` checks them only where present.

    Raises:
        KeyError: a required entry is absent.
        ValueError: wrong dtype, shape, or a NaN / inf.
    """
    keys = [k for k in getattr(network, "in_keys", []) if k is not None]
    if not keys:
        return
    first_keys, width, agents, linear = _layout(network, keys)
    per_agent = width is not None and agents is not None
    dtype = _network_dtype(network)
    steps = [False] if next_step is False else [False, True]
    for later in steps:
        root = td.get("next", None) if later else td
        if root is None or not isinstance(root, TensorDictBase):
            if later and next_step:
                get_key(td, "next", owner=owner)
            continue
        values = {}
        for key in keys:
            value = root.get(key, None)
            if value is None:
                if (required and not later) or (later and next_step):
                    get_key(td, ("next", *_as_tuple(key)) if later else key, owner=owner)
                continue
            values[key] = value
        where_of = {k: key_str(("next", *_as_tuple(k)) if later else k) for k in values}
        for key, value in values.items():
            if not isinstance(value, torch.Tensor):
                continue
            where = where_of[key]
            # a linear first layer reads floats of its own dtype; other layers may convert their
            # inputs themselves (the MinAtar torso reads bool frames)
            if linear and not value.is_floating_point():
                raise ValueError(
                    f"{owner}: the network input {where} has dtype {value.dtype}; the network "
                    f"computes in {dtype or 'floating point'}. Convert it with "
                    f".to({dtype or torch.float32})."
                )
            if linear and dtype is not None and value.dtype != dtype:
                raise ValueError(
                    f"{owner}: the network input {where} is {value.dtype} but the network's "
                    f"parameters are {dtype}. Convert the data (.to({dtype})) or the network "
                    f"(.to({value.dtype})) so that the two agree."
                )
            parent = root.get(key[:-1]) if isinstance(key, tuple) and len(key) > 1 else root
            if value.shape[: parent.batch_dims] != parent.batch_size:
                raise ValueError(
                    f"{owner}: the network input {where} has shape {list(value.shape)}, which "
                    f"does not start with the batch size {list(parent.batch_size)} (time and "
                    f"batch swapped?). Store it as [*B, T, ...], like every other entry."
                )
            if value.ndim <= parent.batch_dims:
                raise ValueError(
                    f"{owner}: the network input {where} has shape {list(value.shape)}, no "
                    f"feature dim after the batch size {list(parent.batch_size)}. A scalar "
                    f"feature still needs its dim: x.unsqueeze(-1)."
                )
            if per_agent and key in first_keys and value.shape[-2:-1] != (agents.n_agents,):
                raise ValueError(
                    f"{owner}: the network input {where} has shape {list(value.shape)}; its "
                    f"MultiAgentMLP reads [*B, n_agents={agents.n_agents}, F]. Is the agent dim "
                    f"the one before the features, and the team the one it was built for?"
                )
            if width is not None and key in first_keys and not per_agent:
                if value.ndim != parent.batch_dims + 1:
                    raise ValueError(
                        f"{owner}: the network input {where} has shape {list(value.shape)}; the "
                        f"network reads [*B, F] with B the batch size "
                        f"{list(parent.batch_size)}: one feature dim, not {value.ndim - parent.batch_dims}."
                    )
            if later and key in values:
                now = td.get(key, None)
                if isinstance(now, torch.Tensor) and now.shape != value.shape:
                    raise ValueError(
                        f"{owner}: {key_str(key)} has shape {list(now.shape)} but {where} has "
                        f"shape {list(value.shape)}; an observation and the next one must have "
                        f"the same shape."
                    )
        if width is not None and all(isinstance(values.get(k), torch.Tensor) for k in first_keys):
            total = sum(values[k].shape[-1] for k in first_keys)
            if total != width:
                shapes = ", ".join(f"{where_of[k]} {list(values[k].shape)}" for k in first_keys)
                raise ValueError(
                    f"{owner}: the network reads {shapes}, whose last dims add up to {total}, "
                    f"but its first layer takes {width} features. Check the observation (and "
                    f"action) shapes: a missing or extra feature dim, or a network built for "
                    f"another environment."
                )
        check_finite(
            owner, **{where_of[k]: v for k, v in values.items() if isinstance(v, torch.Tensor)}
        )


def actor_bounds(actor: torch.nn.Module) -> tuple | None:
    """(low, high) of the actions a bounded actor can produce, or ``None`` when unknown.

    Read from the actor's layers: a tanh-squashed distribution built with ``low``/``high``
    (``make_normal_actor``) or a ``TanhScale`` output (``make_deterministic_actor``).
    """
    from tensordict.nn import ProbabilisticTensorDictModule

    for m in actor.modules():
        if isinstance(m, TanhScale):
            return m.center - m.half_width, m.center + m.half_width
        if isinstance(m, ProbabilisticTensorDictModule):
            kwargs = getattr(m, "distribution_kwargs", None) or {}
            if "low" in kwargs and "high" in kwargs:
                return kwargs["low"], kwargs["high"]  # numbers or tensors
    return None


def check_action_in_actor_bounds(owner: str, actor: torch.nn.Module, action, where: str) -> None:
    """Refuse stored continuous actions the actor could never produce (outside its bounds).

    Such a batch comes from an environment whose action box differs from the one the actor was
    built for: the critic would learn values of actions the policy cannot take.
    """
    if not isinstance(action, torch.Tensor) or not action.is_floating_point():
        return
    bounds = actor_bounds(actor)
    if bounds is None:
        return
    # made where the action is (never on the default device, which may be "meta")
    low, high = (torch.as_tensor(b, dtype=action.dtype, device=action.device) for b in bounds)
    # a rounding's grace: TanhScale keeps (high + low) / 2 and (high - low) / 2, whose sum and
    # difference may miss the environment's own bound (which the recipes clip to) by an ulp
    slack = 1e-5 * (1.0 + torch.maximum(low.abs(), high.abs()))
    outside = (action < low - slack) | (action > high + slack)
    if bool(outside.any()):
        first = outside.nonzero()[0].tolist()
        raise ValueError(
            f"{owner}: the action {where} holds {action[tuple(first)].item():.4g} at index "
            f"{first}, outside the actor's bounds [{low.min().item():.4g}, "
            f"{high.max().item():.4g}]. Build the actor with the environment's action bounds, "
            f"or clip the actions stored."
        )
