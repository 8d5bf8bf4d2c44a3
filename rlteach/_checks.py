"""Argument and input checks shared by the whole package.

Every error says what is wrong and how to fix it, and every check runs before any tensor or
parameter is modified, so a failed call leaves the caller's state untouched.
"""

from __future__ import annotations

import math
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
