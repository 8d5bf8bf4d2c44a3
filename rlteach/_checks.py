"""Argument and input checks shared by the whole package.

Every error says what is wrong and how to fix it, and every check runs before any tensor or
parameter is modified, so a failed call leaves the caller's state untouched.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey


def key_str(key: NestedKey) -> str:
    """Render a (possibly nested) TensorDict key the way a user would type it."""
    return repr(key) if isinstance(key, str) else repr(tuple(key))


def check_range(
    name: str,
    value,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high`` (or strict where ``*_open``).

    ``value`` may be a Python number or a tensor; a tensor is checked element-wise.
    """
    values = value.detach().flatten().tolist() if isinstance(value, torch.Tensor) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise ValueError(f"{name} must be a real number, got {value!r}.")
        too_low = low is not None and (v <= low if low_open else v < low)
        too_high = high is not None and (v >= high if high_open else v > high)
        if too_low or too_high:
            lo = "" if low is None else f"{low} {'<' if low_open else '<='} "
            hi = "" if high is None else f" {'<' if high_open else '<='} {high}"
            raise ValueError(f"{name} must satisfy {lo}{name}{hi}, got {v}.")


def check_gamma(gamma) -> None:
    """The discount factor lives in [0, 1]."""
    check_range("gamma", gamma, 0.0, 1.0)


def check_lmbda(lmbda) -> None:
    """The trace-decay parameter lambda lives in [0, 1]."""
    check_range("lmbda", lmbda, 0.0, 1.0)


def check_choice(name: str, value, choices: Iterable) -> None:
    """Raise ``ValueError`` naming the accepted values when ``value`` is not one of them."""
    choices = tuple(choices)
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"Unknown {name} {value!r}: choose one of {options}.")


def get_key(td: TensorDictBase, key: NestedKey, *, owner: str, key_name: str | None = None):
    """Read ``td[key]`` or raise ``KeyError`` saying which key and how to rename it.

    ``key_name`` is the name ``set_keys`` knows the key by (``value``, ``reward``, ...); when given,
    the message shows the exact ``set_keys`` call that points ``owner`` at another entry.
    """
    value = td.get(key, None)
    if value is None:
        hint = ""
        if key_name is not None:
            hint = (
                f" If your data stores it under another name, rename it with "
                f"{owner}.set_keys({key_name}=<your key>)."
            )
        present = ", ".join(key_str(k) for k in td.keys(include_nested=True, leaves_only=True))
        raise KeyError(
            f"{owner} needs the key {key_str(key)} in its input TensorDict, which has none."
            f"{hint} Keys present: {present or '(none)'}."
        )
    return value


def check_same_shape(owner: str, **tensors: torch.Tensor) -> None:
    """All tensors must share one shape; the message lists every shape it saw."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if t is not None}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{name}{list(shape)}" for name, shape in shapes.items())
        raise ValueError(
            f"{owner}: inputs must all have the same shape [*B, T, F] (time at time_dim, a "
            f"trailing feature dim such as 1), got {listing}. Add the trailing dim with "
            f"x.unsqueeze(-1) where it is missing."
        )


def check_finite(owner: str, **tensors: torch.Tensor) -> None:
    """Refuse NaN or infinite inputs, naming the first offending tensor."""
    for name, t in tensors.items():
        if t is not None and t.is_floating_point() and not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).nonzero()[0].tolist()
            raise ValueError(
                f"{owner}: {name} contains NaN or inf (first at index {bad}). Check the data "
                f"that produced it; rlteach refuses to propagate non-finite values silently."
            )


DEVICE_TYPES = ("cpu", "cuda", "mps")
"""The kinds of device a recipe can train on."""


def resolve_device(device) -> torch.device:
    """The ``torch.device`` a run asks for, refused with a clear message before anything is built.

    ``device`` is ``"cpu"`` (the default everywhere), ``"cuda"`` or ``"cuda:N"`` (an NVIDIA GPU,
    when PyTorch sees one), ``"mps"`` (Apple silicon), or a ``torch.device``. ``"cuda"`` becomes
    ``cuda:<current device>`` and ``"mps"`` ``mps:0``, so that the result compares equal to the
    device of the tensors made there. Every recipe calls this first; so do
    ``python -m rlteach train --device`` and ``evaluate``.
    """
    if isinstance(device, str):
        try:
            parsed = torch.device(device.strip())
        except RuntimeError:
            parsed = None
        if parsed is None or parsed.type not in DEVICE_TYPES:
            raise ValueError(
                f"Unknown device {device!r}: choose 'cpu' (the default), 'cuda' (or 'cuda:N' for "
                f"the N-th NVIDIA GPU) or 'mps' (Apple silicon)."
            )
        device = parsed
    elif not isinstance(device, torch.device):
        raise ValueError(
            f"device must be a string such as 'cpu' or 'cuda', or a torch.device, got {device!r}."
        )
    if device.type not in DEVICE_TYPES:
        raise ValueError(
            f"Unknown device {str(device)!r}: rlteach trains on 'cpu', 'cuda' or 'mps'."
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = (
                f"this PyTorch ({torch.__version__}) was built without CUDA"
                if torch.version.cuda is None
                else "PyTorch finds no usable NVIDIA GPU or driver on this machine"
            )
            raise ValueError(
                f"device {str(device)!r} asked for, but torch.cuda.is_available() is False: "
                f"{build}. Train with --device cpu (the default), or run on a machine with an "
                f"NVIDIA GPU and a CUDA build of PyTorch (https://pytorch.org/get-started)."
            )
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= count:
            raise ValueError(
                f"device {str(device)!r} asked for, but this machine has {count} CUDA "
                f"device(s), numbered 0 to {count - 1}."
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"device {str(device)!r} asked for, but torch.backends.mps.is_available() is "
                f"False (MPS needs Apple silicon and a recent macOS). Train with --device cpu."
            )
        return torch.device("mps", 0 if device.index is None else device.index)
    return device


def module_device(module, default: str | torch.device = "cpu") -> torch.device:
    """The device of a module's first parameter (or buffer); ``default`` if it holds none.

    A policy's device says where the observations it reads must be (see rlteach.envs.evaluate).
    """
    for tensors in ("parameters", "buffers"):
        if hasattr(module, tensors):
            first = next(iter(getattr(module, tensors)()), None)
            if first is not None:
                return first.device
    return torch.device(default)


# ------------------------------------------------------------------------ network inputs
# What a network reads from a batch is checked once, here, for every loss and estimator (called
# by LossModule.__call__ and ValueEstimatorBase's readers), so a loss written tomorrow gets the
# same checks without a line of its own.


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
    from rlteach.modules import MLP, BatchRenormMLP, EnsembleMLP, MultiAgentMLP

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
    from rlteach.modules import MultiAgentMLP

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


def _as_tuple(key) -> tuple:
    return (key,) if isinstance(key, str) else tuple(key)


def check_action(owner: str, dist: torch.distributions.Distribution, action, where: str) -> None:
    """Refuse an action the policy's distribution cannot score, before ``log_prob`` is taken.

    The action must have the distribution's shape (``batch_shape + event_shape``: ``[*B]`` for a
    categorical policy, ``[*B, A]`` for a Gaussian one), an integer dtype for a discrete policy
    and a floating one for a continuous one, and lie in the support (``0 <= a < n`` for n
    actions; inside the bounds of a squashed Gaussian). ``log_prob`` would otherwise broadcast a
    wrong shape, truncate a float action, index out of range or return ``-inf``.
    """
    if not isinstance(action, torch.Tensor):
        return
    expected = [*dist.batch_shape, *dist.event_shape]
    if list(action.shape) != expected:
        raise ValueError(
            f"{owner}: the action {where} has shape {list(action.shape)} but the policy's "
            f"distribution scores actions of shape {expected} (batch {list(dist.batch_shape)}, "
            f"event {list(dist.event_shape)}). Store the action the policy sampled, unchanged."
        )
    try:
        support = dist.support
    except (NotImplementedError, TypeError, AttributeError):  # no support given (or a broken one:
        return  # TorchRL 0.14's TanhNormal.support raises TypeError)
    if support.is_discrete and (action.is_floating_point() or action.dtype == torch.bool):
        raise ValueError(
            f"{owner}: the action {where} is {action.dtype} but the policy is discrete: store "
            f"action indices as integers (.long())."
        )
    if not support.is_discrete and not action.is_floating_point():
        raise ValueError(
            f"{owner}: the action {where} is {action.dtype} but the policy is continuous; "
            f"convert it with .float()."
        )
    inside = support.check(action)
    if not bool(inside.all()):
        first = (~inside).nonzero()[0].tolist()
        raise ValueError(
            f"{owner}: the action {where} lies outside the policy's support {support} (first "
            f"at index {first}); its log-probability is undefined. Check the number of actions "
            f"or the action bounds the policy was built with."
        )


def actor_bounds(actor: torch.nn.Module) -> tuple | None:
    """(low, high) of the actions a bounded actor can produce, or ``None`` when unknown.

    Read from the actor's layers: a tanh-squashed distribution built with ``low``/``high``
    (``make_normal_actor``) or a ``TanhScale`` output (``make_deterministic_actor``).
    """
    from tensordict.nn import ProbabilisticTensorDictModule

    from rlteach.modules.deterministic import TanhScale

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
