"""Small pieces every loss shares: the regression distance, the reduction, input reading.

Each function checks its arguments before it computes anything, so a bad call leaves the
caller's tensors and parameters untouched.

=========  ==========================================================================
Name       What it does
=========  ==========================================================================
distance   ``distance_loss(v1, v2, "l1" | "l2" | "smooth_l1")``, element-wise
reduce     ``_reduce(loss, "none" | "mean" | "sum", mask=, weights=)``
inputs     ``read_inputs(td, {name: key}, owner=)``: every key present and finite, or an error
=========  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from tensordict import TensorDictBase, is_tensor_collection
from tensordict.utils import NestedKey

from rlteach._checks import check_choice, check_finite, get_key, key_str

#: The distances a value or Q regression can use (``loss_function`` / ``loss_critic_type``).
LOSS_FUNCTIONS = ("l1", "l2", "smooth_l1")
#: How a per-sample loss is turned into the number that is back-propagated.
REDUCTIONS = ("none", "mean", "sum")


def distance_loss(v1, v2, loss_function: str = "l2", strict_shape: bool = True):
    r"""Element-wise distance between a prediction and a regression target.

    With the difference :math:`d = v_1 - v_2`:

    .. math::

        \text{l2}(d) = d^2 \qquad \text{(DIST-1)}

        \text{l1}(d) = |d| \qquad \text{(DIST-2)}

        \text{smooth\_l1}(d) = \begin{cases} \tfrac12 d^2 & |d| < 1 \\
                                              |d| - \tfrac12 & \text{otherwise}
                                \end{cases} \qquad \text{(DIST-3)}

    ``"l2"`` is the plain squared error, **without** the factor 1/2 some textbooks put in front
    of it: this is TorchRL's choice too (its ``"l2"`` is ``F.mse_loss(reduction="none")``), so a
    value loss here is twice the "half squared error" of Sutton & Barto. ``"smooth_l1"`` is the
    Huber loss with threshold 1 used by the DQN paper (Mnih et al., 2015) to clip the error's
    gradient to [-1, 1].

    ======  =================  ==================================================
    Symbol  Shape              Meaning
    ======  =================  ==================================================
    v1      ``[*S]``           prediction (e.g. V(s) or Q(s, a)); may need grad
    v2      ``[*S]``           target, the same shape unless ``strict_shape=False``
    out     ``[*S]``           the distance per element, not reduced
    ======  =================  ==================================================

    Args:
        v1, v2: tensors (or TensorDicts, compared leaf by leaf).
        loss_function: one of ``"l1"``, ``"l2"``, ``"smooth_l1"``.
        strict_shape: when ``False`` the two may differ in shape and are broadcast.

    Raises:
        ValueError: unknown ``loss_function``, or shapes differ while ``strict_shape`` holds.
            (TorchRL raises ``NotImplementedError`` and ``RuntimeError`` for these.)
    """
    check_choice("loss_function", loss_function, LOSS_FUNCTIONS)
    if strict_shape and v1.shape != v2.shape:
        raise ValueError(
            f"distance_loss: v1 has shape {list(v1.shape)} but v2 has shape {list(v2.shape)}. "
            f"Make them match (often a missing or extra trailing dim: x.unsqueeze(-1) or "
            f"x.squeeze(-1)), or pass strict_shape=False to broadcast on purpose."
        )
    if is_tensor_collection(v1):
        return v1.apply(lambda a, b: distance_loss(a, b, loss_function, strict_shape), v2)

    d = v1 - v2
    if loss_function == "l2":
        return d.pow(2)  # (DIST-1)
    if loss_function == "l1":
        return d.abs()  # (DIST-2)
    # (DIST-3) quadratic near zero, linear (gradient +-1) beyond |d| = 1
    return torch.where(d.abs() < 1.0, 0.5 * d.pow(2), d.abs() - 0.5)


def _reduce(
    tensor: torch.Tensor,
    reduction: str,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Reduce a per-sample loss :math:`\ell_i` to what the optimiser sees.

    .. math::

        \text{mean} = \frac{\sum_i m_i w_i \ell_i}{\sum_i m_i w_i} \qquad
        \text{sum} = \sum_i m_i w_i \ell_i \qquad \text{(RED-1)}

    where the mask :math:`m_i \in \{0, 1\}` drops padded or invalid positions and the weights
    :math:`w_i` are importance weights such as those of prioritized replay (Schaul et al., 2016).
    Both default to 1, giving the ordinary mean and sum. ``"none"`` returns the losses
    multiplied by the weights; with a mask it keeps only the valid entries (a 1-D tensor), as
    TorchRL does.

    ========  =========  =================================================
    Symbol    Shape      Meaning
    ========  =========  =================================================
    tensor    ``[*S]``   per-sample loss
    mask      ``[*S]``   bool, True where the sample counts (optional)
    weights   ``[*S]``   non-negative sample weights (optional)
    ========  =========  =================================================

    Raises:
        ValueError: unknown ``reduction`` (e.g. ``"avg"``) or a mask / weights shape that does
            not match the loss.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    for name, extra in (("mask", mask), ("weights", weights)):
        if extra is not None and extra.shape != tensor.shape:
            raise ValueError(
                f"_reduce: {name} has shape {list(extra.shape)} but the loss has shape "
                f"{list(tensor.shape)}; they must match element for element."
            )

    if weights is not None:
        tensor = tensor * weights
    if reduction == "none":
        return tensor if mask is None else tensor[mask]

    m = torch.ones_like(tensor) if mask is None else mask.to(tensor.dtype)
    total = (tensor * m).sum()  # (RED-1) numerator, also the "sum" reduction
    if reduction == "sum":
        return total
    if mask is None and weights is None:
        return tensor.mean()
    w = m if weights is None else weights * m
    return total / w.sum()  # (RED-1) weighted mean over the valid samples


def read_inputs(
    td: TensorDictBase,
    keys: Mapping[str, NestedKey],
    *,
    owner: str,
    check_nan: bool = True,
    strict_shapes: bool = True,
) -> dict[str, torch.Tensor]:
    """Fetch every input a loss needs, refusing missing keys and NaN / inf before any work.

    ``keys`` maps the name ``set_keys`` knows an entry by (``"reward"``, ``"value"``, ...) to the
    key where it lives in ``td`` (``"state_value"``, ...). A name written ``"next_<name>"`` is the
    same entry read under ``"next"`` (``"next_reward"`` -> ``("next", "reward")``); its error
    message points at ``set_keys(<name>=...)``. All keys are
    looked up first, so a missing one is reported before anything is computed; the message
    names the key, shows the ``set_keys`` call that renames it and lists the keys present.

    Args:
        td: the input batch.
        keys: ``{set_keys name: key in td}``.
        owner: the class name used in messages (``"DQNLoss"``).
        check_nan: also refuse non-finite floating-point inputs (default ``True``).
        strict_shapes: rewards, flags, values and advantages must be exactly ``[*B, 1]`` and
            log-probabilities ``[*B]``; ``False`` (multi-agent losses, whose entries may carry an
            agent dim) only asks for the trailing 1. Dtypes are checked either way.

    Returns:
        ``{set_keys name: tensor}`` in the order of ``keys``.

    Raises:
        KeyError: a key is absent.
        ValueError: an entry holds NaN or inf.
    """
    if td.batch_size.numel() == 0:
        raise ValueError(
            f"{owner}: the batch is empty (batch size {list(td.batch_size)}); a loss needs at "
            f"least one sample. Check the collector or the replay buffer's sample size."
        )
    values = {}
    for name, key in keys.items():
        values[name] = get_key(td, key, owner=owner, key_name=_base_name(name))
    for name, value in values.items():
        _check_layout(owner, td, keys[name], _base_name(name), value, strict=strict_shapes)
    if check_nan:
        check_finite(
            owner,
            **{
                f"{name} (key {key_str(keys[name])})": v
                for name, v in values.items()
                if isinstance(v, torch.Tensor)
            },
        )
    return values


# The layout of the entries every loss reads by the same name: (dtype kind, trailing shape after
# the batch dims of the TensorDict holding the entry). Rewards, flags and values carry a
# trailing singleton dim; log-probabilities have none (DESIGN.md, "Data conventions").
_LAYOUT = {
    "reward": ("float", (1,)),
    "advantage": ("float", (1,)),
    "value_target": ("float", (1,)),
    "value": ("float", (1,)),
    "done": ("bool", (1,)),
    "terminated": ("bool", (1,)),
    "truncated": ("bool", (1,)),
    "sample_log_prob": ("float", ()),
}


def _check_layout(
    owner: str, td: TensorDictBase, key: NestedKey, name: str, value, *, strict: bool = True
) -> None:
    """Refuse an entry of the wrong dtype or shape, e.g. a reward without its trailing dim.

    The shape is compared with the batch size of the TensorDict that holds the entry (so a
    per-agent reward under ``"agents"`` is checked against that group's batch size).
    """
    if name not in _LAYOUT or not isinstance(value, torch.Tensor):
        return
    kind, trailing = _LAYOUT[name]
    where = f"{key_str(key)} (set_keys name {name!r})"
    if kind == "float" and not value.is_floating_point():
        raise ValueError(
            f"{owner}: {where} must be a floating-point tensor, got dtype {value.dtype}. "
            f"Convert it with .float()."
        )
    if kind == "bool" and value.dtype != torch.bool:
        raise ValueError(
            f"{owner}: {where} must be a torch.bool flag, got dtype {value.dtype}. Convert it "
            f"with .bool()."
        )
    parent = td.get(key[:-1]) if isinstance(key, tuple) and len(key) > 1 else td
    expected = (*parent.batch_size, *trailing)
    if not strict:  # extra (agent) dims allowed; the trailing 1 is still required
        if trailing and (value.ndim <= parent.batch_dims or value.shape[-1] != 1):
            raise ValueError(
                f"{owner}: {where} has shape {list(value.shape)}; it needs a trailing dim of "
                f"size 1 after the batch size {list(parent.batch_size)}. Add it with "
                f"x.unsqueeze(-1)."
            )
        return
    if tuple(value.shape) != expected:
        fix = "x.unsqueeze(-1)" if trailing and value.shape == parent.batch_size else "reshape it"
        raise ValueError(
            f"{owner}: {where} has shape {list(value.shape)}, expected {list(expected)} (the "
            f"batch size {list(parent.batch_size)}"
            f"{' plus a trailing 1' if trailing else ', no trailing dim'}). Fix it with {fix}."
        )


def _base_name(name: str) -> str:
    """``"next_reward"`` -> ``"reward"``: the ``set_keys`` name behind a read under "next"."""
    return name[len("next_") :] if name.startswith("next_") else name
