"""Calling a loss or an estimator with keyword tensors instead of a TensorDict.

TorchRL decorates its losses' and estimators' ``forward`` with ``tensordict.nn.dispatch``, so that
code can skip building a TensorDict::

    loss_actor, loss_qvalue, ... = loss(observation=obs, action=a, next_reward=r, ...)

Each entry of ``module.in_keys`` is one keyword, a nested key joined by ``"_"``
(``("next", "reward")`` -> ``next_reward``); positional tensors fill the ``in_keys`` in order
(rlteach's losses may list their ``in_keys`` in another order than TorchRL's: pass keywords).
The tensors become a TensorDict whose batch size is the leading dims they all share, ``forward``
runs on it, and the call returns ``out[key]`` for each of TorchRL's ``out_keys`` in that order
(a tuple; one tensor if there is one key; a PPO loss's TorchRL list is its
``_dispatch_out_keys``).

rlteach does the same with two hooks that :func:`enable_keyword_calls` registers on the module:
one before ``forward`` builds the TensorDict, one after it picks the outputs. A call with a
TensorDict passes through both untouched.
"""

from __future__ import annotations

import torch
from tensordict import is_tensor_collection, make_tensordict
from tensordict.utils import _unravel_key_to_tuple
from torch import nn

SEPARATOR = "_"


def keyword_name(key) -> str:
    """The keyword of a TensorDict key: ``("next", "reward")`` -> ``"next_reward"``."""
    return SEPARATOR.join(_unravel_key_to_tuple(key))


def enable_keyword_calls(module: nn.Module) -> None:
    """Let ``module(observation=..., next_reward=...)`` work as TorchRL's ``dispatch`` does."""
    module.register_forward_pre_hook(_tensors_to_tensordict, with_kwargs=True)
    module.register_forward_hook(_tensordict_to_outputs, with_kwargs=True)


def _tensors_to_tensordict(module: nn.Module, args: tuple, kwargs: dict):
    """Before ``forward``: keyword (or positional) tensors -> one TensorDict argument.

    Raises:
        TypeError: a tensor under a keyword that is no input of the module (the message lists
            those that are), or one input given both by position and by keyword.
    """
    keyword_call = not (
        (args and is_tensor_collection(args[0]))
        or "tensordict" in kwargs
        or (not args and not any(isinstance(v, torch.Tensor) for v in kwargs.values()))
    )
    module.__dict__["_keyword_call"] = keyword_call
    if not keyword_call:
        return None  # a TensorDict call (or nothing to dispatch: forward says what is missing)
    owner = type(module).__name__
    args, kwargs = list(args), dict(kwargs)
    values, names = {}, []
    for key in module.in_keys:
        name = keyword_name(key)
        names.append(name)
        if args:
            if name in kwargs:
                raise TypeError(f"{owner}: {name!r} given both by position and by keyword.")
            values[key] = args.pop(0)
        elif name in kwargs:
            values[key] = kwargs.pop(name)
    unknown = [repr(name) for name, value in kwargs.items() if isinstance(value, torch.Tensor)]
    if unknown or args:
        extra = unknown or [f"{len(args)} positional tensor(s)"]
        raise TypeError(
            f"{owner}: {', '.join(extra)} is not an input of this loss or estimator. "
            f"Its inputs, as keywords (a nested key joined by '_'): {', '.join(names)}."
        )
    tensordict = make_tensordict(values, batch_size=None, auto_batch_size=True)
    return (tensordict,), kwargs


def _tensordict_to_outputs(module: nn.Module, args: tuple, kwargs: dict, out):
    """After ``forward``: for a keyword call, the outputs in TorchRL's ``out_keys`` order."""
    if not module.__dict__.pop("_keyword_call", False):
        return None
    # TorchRL's order: its out_keys, which for some losses (PPO's) list fewer entries, in another
    # order, than rlteach's out_keys (everything forward writes); those keep them apart
    keys = getattr(module, "_dispatch_out_keys", None) or module.out_keys
    outputs = tuple(out[key] for key in keys)
    return outputs[0] if len(outputs) == 1 else outputs
