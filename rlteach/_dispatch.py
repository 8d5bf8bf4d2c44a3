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
``_dispatch_out_keys``). rlteach does the same, in the plain function below.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import is_tensor_collection, make_tensordict
from tensordict.utils import _unravel_key_to_tuple

SEPARATOR = "_"


def keyword_name(key) -> str:
    """The keyword of a TensorDict key: ``("next", "reward")`` -> ``"next_reward"``."""
    return SEPARATOR.join(_unravel_key_to_tuple(key))


def call_with_tensors(module, call: Callable, args: tuple, kwargs: dict):
    """``call(tensordict, ...)`` as usual, or with keyword tensors as TorchRL's ``dispatch`` does.

    Args:
        module: the loss or estimator (its ``in_keys`` and ``out_keys`` name the tensors).
        call: the module's own ``nn.Module.__call__`` (hooks included).
        args, kwargs: what the caller passed.

    Raises:
        TypeError: a tensor under a keyword that is no input of the module (the message lists
            those that are), or one input given both by position and by keyword.
    """
    if (args and is_tensor_collection(args[0])) or "tensordict" in kwargs:
        return call(*args, **kwargs)
    if not args and not any(isinstance(v, torch.Tensor) for v in kwargs.values()):
        return call(*args, **kwargs)  # nothing to dispatch: let forward say what is missing
    owner = type(module).__name__
    args, kwargs = list(args), dict(kwargs)
    values = {}
    names = []
    for key in module.in_keys:
        name = keyword_name(key)
        names.append(name)
        if args:
            if name in kwargs:
                raise TypeError(f"{owner}: {name!r} given both by position and by keyword.")
            values[key] = args.pop(0)
        elif name in kwargs:
            values[key] = kwargs.pop(name)
    unknown = [name for name, value in kwargs.items() if isinstance(value, torch.Tensor)]
    if unknown or args:
        extra = [repr(name) for name in unknown] or [f"{len(args)} positional tensor(s)"]
        raise TypeError(
            f"{owner}: {', '.join(extra)} is not an input of this loss or estimator. "
            f"Its inputs, as keywords (a nested key joined by '_'): {', '.join(names)}."
        )
    tensordict = make_tensordict(values, batch_size=None, auto_batch_size=True)
    out = call(tensordict, **kwargs)
    # TorchRL's order: its out_keys, which for some losses (PPO's) list fewer entries, in another
    # order, than rlteach's out_keys (everything forward writes); those keep them here
    keys = getattr(module, "_dispatch_out_keys", None) or module.out_keys
    outputs = tuple(out[key] for key in keys)
    return outputs[0] if len(outputs) == 1 else outputs
