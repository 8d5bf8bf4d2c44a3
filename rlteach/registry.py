"""The one registry of recipes: what ``python -m rlteach train`` and ``bench`` can run.

A recipe registers once, with one call at the bottom of its module::

    register_trainable("dqn", train, CONFIGS, resumable=True,
                       bench={"dqn-cartpole": "CartPole-v1", "dqn-acrobot": "Acrobot-v1"})

which makes ``python -m rlteach train dqn`` train it on any task of ``CONFIGS`` (see
:class:`TrainableRecipe`) and adds its benchmark entries (:class:`BenchEntry`) to
:data:`REGISTRY`, the table :mod:`rlteach.bench` runs. This module imports only
:mod:`rlteach.tasks` (the thresholds): the recipes, the benchmark and the command line all read
it, and it reads none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from rlteach.tasks import bench_threshold


@dataclass(frozen=True)
class BenchEntry:
    """A recipe on a task. ``train(seed, quick, progress) -> RunResult``."""

    name: str
    algo: str
    env_id: str
    train: Callable[..., Any]
    threshold: float

    def run(self, seed: int, quick: bool = False, progress: bool = False):
        result = self.train(seed=seed, quick=quick, progress=progress)
        if not getattr(result, "curve", None):  # a RunResult with at least one evaluation
            raise RuntimeError(
                f"bench entry {self.name!r}: train() must return a RunResult with at least one "
                f"evaluation, got {result!r}."
            )
        return result


REGISTRY: dict[str, BenchEntry] = {}
"""The benchmark's entries by name (``python -m rlteach list`` prints them)."""


@dataclass(frozen=True)
class TrainableRecipe:
    """A recipe the command line can train on a chosen task with a chosen budget.

    ============== ===========================================================================
    algo           the name on the command line, e.g. ``"ppo"``
    train          ``train(seed, quick, progress, cfg, [checkpoint], *, device="cpu")``
                   returning a RunResult; ``device`` (a string or ``torch.device``) is where
                   the networks, the batches and the replay buffer live
    configs        task id → the recipe's config for that task; the first is the default task.
                   Another task runs the default config with ``env_id`` replaced.
    action_spaces  which Gymnasium action spaces the recipe's networks handle:
                   ``"discrete"`` and/or ``"continuous"``; empty for a recipe that trains on
                   its registered tasks only (the multi-agent ones: their networks and
                   environments are built for those tasks' agents)
    resumable      ``train`` accepts ``checkpoint=`` (a :class:`~rlteach.checkpoint.Checkpointer`) and saves and
                   restores its full state with it
    ============== ===========================================================================

    Every config must be a dataclass with the fields ``env_id``, ``total_frames``,
    ``eval_every``, ``eval_episodes`` and ``stop_on_solve`` (the command line sets them). The
    device is not one of them: it is an option of the run (``--device``), kept out of the
    config, which a checkpoint stores and compares on ``--resume``.
    """

    algo: str
    train: Callable[..., Any]
    configs: dict
    action_spaces: tuple[str, ...] = ("discrete",)
    resumable: bool = False

    @property
    def default_env(self) -> str:
        return next(iter(self.configs))


TRAINABLE: dict[str, TrainableRecipe] = {}


def register_trainable(
    algo: str,
    train: Callable[..., Any],
    configs: dict,
    *,
    action_spaces: tuple[str, ...] = ("discrete",),
    resumable: bool = False,
    bench: Mapping[str, str] | None = None,
    threshold: float | None = None,
) -> TrainableRecipe:
    """Make ``python -m rlteach train ALGO`` run this recipe (see :class:`TrainableRecipe`),
    and add its benchmark entries: ``bench`` maps an entry's name to a task of ``configs``.

    An entry on the default task (the first of ``configs``) calls ``train(seed, quick,
    progress)``, with the recipe's own default config; one on another task passes
    ``cfg=configs[task]``. It is timed to the task's solved threshold (or MuJoCo milestone,
    :mod:`rlteach.tasks`), or to ``threshold`` where the task has none (the multi-agent
    tasks: each recipe its own).
    """
    if algo in TRAINABLE:
        raise ValueError(f"a trainable recipe {algo!r} is already registered.")
    if not configs:
        raise ValueError(f"register_trainable({algo!r}): give at least one task config.")
    bad = set(action_spaces) - {"discrete", "continuous"}
    if bad:
        raise ValueError(
            f"action_spaces must be 'discrete' and/or 'continuous', got {sorted(bad)}."
        )
    needed = ("env_id", "total_frames", "eval_every", "eval_episodes", "stop_on_solve")
    for env_id, cfg in configs.items():
        missing = [f for f in needed if not hasattr(cfg, f)]
        if missing or cfg.env_id != env_id:
            raise ValueError(
                f"register_trainable({algo!r}): the config for {env_id!r} must be a dataclass "
                f"with env_id={env_id!r} and the fields {', '.join(needed)} (missing: {missing})."
            )
    entries = []
    for name, env_id in (bench or {}).items():
        if env_id not in configs or name in REGISTRY:
            raise ValueError(
                f"register_trainable({algo!r}): bench entry {name!r} must be a new name on a "
                f"task of configs ({', '.join(configs)}), got {env_id!r}."
            )
        timed_to = threshold if threshold is not None else bench_threshold(env_id)
        if timed_to is None:
            raise ValueError(f"register_trainable({algo!r}): no threshold for {env_id!r}.")
        run = train if env_id == next(iter(configs)) else partial(train, cfg=configs[env_id])
        entries.append(BenchEntry(name, algo, env_id, run, timed_to))
    recipe = TrainableRecipe(algo, train, dict(configs), tuple(action_spaces), resumable)
    TRAINABLE[algo] = recipe
    REGISTRY.update((entry.name, entry) for entry in entries)
    return recipe
