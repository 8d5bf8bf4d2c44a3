"""TorchRL 0.14 constructor arguments that rlteach's losses and estimators leave out, and why.

rlteach's classes take TorchRL's arguments with the same names and defaults, so that code written
for TorchRL runs with rlteach's classes in their place. The arguments below are the exceptions.
Passing one does not end in Python's bare ``unexpected keyword argument``: the constructor
refuses it first, naming the TorchRL feature, why rlteach leaves it out, and what to use instead
(:func:`refuse_unmirrored`, called by ``LossModule`` and ``ValueEstimatorBase`` before anything is
built). The API reference's table is this dictionary; ``tests/test_api_unmirrored.py`` checks
that the two agree, and that they list exactly what the two libraries' signatures differ by.
"""

from __future__ import annotations

import functools
import inspect
from typing import NamedTuple

__all__ = [
    "UNMIRRORED",
    "UnmirroredArgumentError",
    "guard_constructor",
    "markdown_table",
    "refuse_unmirrored",
]


class Unmirrored(NamedTuple):
    classes: tuple[str, ...]
    arguments: tuple[str, ...]
    why: str
    instead: str


_PPO = ("PPOLoss", "ClipPPOLoss", "KLPENPPOLoss")
_ESTIMATORS = ("TD0Estimator", "TD1Estimator", "TDLambdaEstimator", "GAE", "VTrace")

UNMIRRORED: tuple[Unmirrored, ...] = (
    Unmirrored(
        ("PPOLoss",), ("advantage_key", "value_target_key", "value_key"),
        "deprecated in TorchRL in favour of `set_keys`",
        "`loss.set_keys(advantage=..., value_target=..., value=...)`",
    ),
    Unmirrored(
        ("A2CLoss", "ReinforceLoss"), ("advantage_key", "value_target_key"),
        "deprecated in TorchRL in favour of `set_keys`",
        "`loss.set_keys(advantage=..., value_target=...)`",
    ),
    Unmirrored(
        ("PPOLoss",), ("actor", "critic"), "deprecated TorchRL aliases",
        "`actor_network=`, `critic_network=`",
    ),
    Unmirrored(
        _PPO, ("advantage_norm",),
        "a stateful running normaliser of the advantage (TorchRL's `ValueNorm`), kept across "
        "batches: state the book does not derive",
        "`normalize_advantage=True` (per batch) or `make_value_estimator(\"gae\", "
        "average_gae=True)`",
    ),
    Unmirrored(
        _PPO, ("normalize_advantage_exclude_dims",),
        "only the multi-agent losses standardise per agent",
        "`MAPPOLoss` / `IPPOLoss` (they take it)",
    ),
    Unmirrored(
        _PPO, ("delay_actor", "max_importance_ratio"),
        "PPO-EWMA (Hilton et al., 2021): a proximal policy held in target parameters and a cap "
        "on the behaviour ratio; a later variant, not the PPO of the chapter",
        "TorchRL's loss",
    ),
    Unmirrored(
        ("DDPGLoss", "TD3Loss", "SACLoss"), ("use_prioritized_weights",),
        "rlteach's continuous-control recipes sample uniformly; these losses do not read "
        "`\"priority_weight\"` (they still write `\"td_error\"`)",
        "`DQNLoss` and C51 take it; weigh the loss yourself",
    ),
    Unmirrored(
        ("TD3Loss", "SACLoss"), ("priority_key",),
        "deprecated in TorchRL in favour of `set_keys`", "`loss.set_keys(priority=...)`",
    ),
    Unmirrored(
        ("SACLoss",), ("scalar_output_mode",),
        "with `reduction=\"none\"` rlteach's SAC always leaves `alpha` and `entropy` out "
        "(TorchRL's `\"exclude\"`)",
        "read `loss.temperature.alpha`; `REDQLoss` and `CrossQLoss` take it",
    ),
    Unmirrored(
        ("SACLoss",), ("skip_done_states",),
        "runs the actor only on next states that are not done, and puts a zero action and "
        "log-probability in the others, truncated ones included, whose bootstrap still reads "
        "them; rlteach bootstraps a truncated step from a real a' ~ π(·\\|s')",
        "leave it out (TorchRL's default)",
    ),
    Unmirrored(
        _ESTIMATORS, ("advantage_key", "value_target_key", "value_key"),
        "deprecated in TorchRL in favour of `set_keys`",
        "`estimator.set_keys(advantage=..., value_target=..., value=...)`",
    ),
    Unmirrored(
        _ESTIMATORS, ("group_key",),
        "standardisation within groups of the batch (one id per element, e.g. a task id): a "
        "multi-task device beyond the book",
        "standardise per group before the loss",
    ),
    Unmirrored(
        ("GAE",), ("auto_reset_env",),
        "for environments whose last `\"next\"` state is invalid after an automatic reset; "
        "rlteach's environments store the true final state",
        "none needed",
    ),
)  # fmt: skip


class UnmirroredArgumentError(TypeError):
    """A TorchRL constructor argument that rlteach's class leaves out (a ``TypeError``, as Python
    raises for an unknown keyword, so code that catches that still catches this)."""


def _lookup(class_names: list[str], argument: str) -> Unmirrored | None:
    for name in class_names:
        for row in UNMIRRORED:
            if name in row.classes and argument in row.arguments:
                return row
    return None


def refuse_unmirrored(cls: type, kwargs: dict) -> None:
    """Raise :class:`UnmirroredArgumentError` when ``kwargs`` holds a TorchRL argument that
    ``cls`` (or the rlteach class it derives from) does not mirror."""
    names = [klass.__name__ for klass in cls.__mro__]
    own = inspect.signature(cls.__init__).parameters  # a subclass may take what its parent leaves
    for argument in kwargs:
        row = None if argument in own else _lookup(names, argument)
        if row is not None:
            raise UnmirroredArgumentError(
                f"{cls.__name__} does not take TorchRL's {argument}=: {_plain(row.why)}. "
                f"Instead: {_plain(row.instead)}. (The API reference lists every TorchRL "
                f"argument rlteach leaves out.)"
            )


def _plain(markdown: str) -> str:
    return markdown.replace("`", "").replace("\\|", "|")


def guard_constructor(cls: type) -> None:
    """Make ``cls.__init__`` refuse the unmirrored TorchRL arguments first (called from
    ``__init_subclass__``, so every subclass, present or future, gets it)."""
    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, "refuses_unmirrored", False):
        return

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        refuse_unmirrored(type(self), kwargs)
        init(self, *args, **kwargs)

    __init__.refuses_unmirrored = True
    cls.__init__ = __init__


def markdown_table() -> str:
    """The API reference's table, one row per entry of :data:`UNMIRRORED`."""
    lines = [
        "| Class | TorchRL argument | Why rlteach leaves it out | Instead |",
        "|---|---|---|---|",
    ]
    for row in UNMIRRORED:
        classes = ", ".join(f"`{c}`" for c in row.classes)
        arguments = ", ".join(f"`{a}`" for a in row.arguments)
        lines.append(f"| {classes} | {arguments} | {row.why} | {row.instead} |")
    return "\n".join(lines)
