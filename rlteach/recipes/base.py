"""What every training recipe returns, and the small tools recipes share.

A recipe is a plain function ``train(seed, quick=False, progress=True) -> RunResult``. It logs an
:class:`EvalPoint` each time it evaluates the deterministic policy; the wall clock it reports
excludes evaluation (the benchmark measures learning, not testing), which :class:`Stopwatch`
makes explicit.

Devices: every recipe's ``train`` also takes ``device="cpu"`` (keyword), checked first by
:func:`resolve_device` (an unknown name, or ``"cuda"`` on a machine without one, is refused
before anything is built). The networks are built under ``with torch.device("cpu"):``, so that
their initial weights come from the CPU's random stream whatever torch's default device and a
seed gives the same networks on every device; ``loss.to(device)`` then moves them, before the
optimisers are made. The environments hand out their observations on that device, the replay
buffers store there, and the actions go back to Gymnasium with ``.cpu().numpy()``. The device
is a run option, not part of the config: the same config trains anywhere.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from rlteach._checks import resolve_device  # noqa: F401  (for recipes)
from rlteach.checkpoint import Checkpointer, as_checkpointer  # noqa: F401  (for recipes)


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation during training.

    =========== ============================================================
    env_steps   environment steps (frames over all vector copies) so far
    seconds     training wall-clock seconds so far, evaluation excluded
    mean_return mean return of the deterministic policy over the episodes
    =========== ============================================================
    """

    env_steps: int
    seconds: float
    mean_return: float


@dataclass
class RunResult:
    """The log of one training run: its identity and its evaluation curve."""

    algo: str
    env_id: str
    seed: int
    curve: list[EvalPoint] = field(default_factory=list)

    def first_reaching(self, threshold: float) -> EvalPoint | None:
        """The first evaluation whose mean return is at or above ``threshold`` (None if never)."""
        for point in self.curve:
            if point.mean_return >= threshold:
                return point
        return None

    @property
    def final_return(self) -> float:
        if not self.curve:
            raise ValueError(f"run {self.algo}/{self.env_id}/seed {self.seed} logged no evaluation")
        return self.curve[-1].mean_return

    def to_dict(self) -> dict:
        return {**asdict(self), "curve": [asdict(p) for p in self.curve]}

    @classmethod
    def from_dict(cls, data: dict) -> RunResult:
        curve = [EvalPoint(**p) for p in data["curve"]]
        return cls(algo=data["algo"], env_id=data["env_id"], seed=data["seed"], curve=curve)


class Stopwatch:
    """A wall clock that can be paused, so evaluation time stays out of the training time.

    >>> clock = Stopwatch()
    >>> with clock.paused():
    ...     pass  # evaluate here
    >>> clock.seconds >= 0
    True
    """

    def __init__(self) -> None:
        self._elapsed = 0.0
        self._started = time.perf_counter()
        self._running = True

    @property
    def seconds(self) -> float:
        running = time.perf_counter() - self._started if self._running else 0.0
        return self._elapsed + running

    def pause(self) -> None:
        if self._running:
            self._elapsed += time.perf_counter() - self._started
            self._running = False

    def resume(self) -> None:
        if not self._running:
            self._started = time.perf_counter()
            self._running = True

    @contextmanager
    def paused(self):
        """Stop the clock for the duration of a ``with`` block."""
        self.pause()
        try:
            yield self
        finally:
            self.resume()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class Evaluator:
    """Evaluate every ``every`` frames with the clock paused; log the curve; say when solved.

    The plumbing every recipe shares, kept out of the training loops::

        evaluator = Evaluator(result, actor, env_id, every=2048, threshold=475.0)
        for batch in collector:
            ...  # learn
            if evaluator.after_batch(collector.frames, last=...):
                break  # solved (and stop_on_solve)

    By default the deterministic ``policy`` plays ``episodes`` Gymnasium episodes of ``env_id``
    seeded ``seed, seed + 1, ...``. A recipe whose task is not a Gymnasium one passes
    ``evaluate``, a zero-argument callable returning the mean return, instead (the multi-agent
    recipes: their greedy team's return).
    """

    def __init__(
        self,
        result: RunResult,
        policy,
        env_id: str,
        every: int,
        threshold: float,
        episodes: int = 10,
        stop_on_solve: bool = True,
        bar=None,
        seed: int = 10_000,
        evaluate: Callable[[], float] | None = None,
    ) -> None:
        self.result, self.policy, self.env_id = result, policy, env_id
        self.every, self.threshold, self.episodes = every, threshold, episodes
        self.stop_on_solve, self.bar, self.seed = stop_on_solve, bar, seed
        self.evaluate = evaluate
        self.clock = Stopwatch()
        self._next = every

    def after_batch(self, frames: int, last: bool = False) -> bool:
        """Evaluate if due (or if ``last``); True when the run should stop because it solved."""
        from rlteach.envs import evaluate  # here, so that base.py stays free of gymnasium

        if self.bar is not None:
            self.bar.update(frames - self.bar.n)
        if frames < self._next and not last:
            return False
        while self._next <= frames:
            self._next += self.every
        with self.clock.paused():
            if self.evaluate is not None:
                mean_return = self.evaluate()
            else:
                mean_return = evaluate(self.policy, self.env_id, self.episodes, seed=self.seed)
        self.result.curve.append(EvalPoint(frames, self.clock.seconds, mean_return))
        if self.bar is not None:
            self.bar.set_postfix(eval_return=f"{mean_return:.1f}")
        return self.stop_on_solve and mean_return >= self.threshold


# ------------------------------------------------------------------ command-line training
# ``python -m rlteach train ALGO`` trains any recipe registered here. A recipe opts in with one
# call at the bottom of its module; it becomes resumable (``--resume``) once its ``train``
# accepts ``checkpoint=`` and tracks its state (see rlteach/checkpoint.py for the few lines).


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
    resumable      ``train`` accepts ``checkpoint=`` (a :class:`Checkpointer`) and saves and
                   restores its full state with it
    ============== ===========================================================================

    Every config must be a dataclass with the fields ``env_id``, ``total_frames``,
    ``eval_every``, ``eval_episodes`` and ``stop_on_solve`` (the command line sets them). The
    device is not one of them: it is an option of the run (``--device``), kept out of the
    config, which a checkpoint stores and compares on ``--resume``.
    """

    algo: str
    train: Callable[..., RunResult]
    configs: dict
    action_spaces: tuple[str, ...] = ("discrete",)
    resumable: bool = False

    @property
    def default_env(self) -> str:
        return next(iter(self.configs))


TRAINABLE: dict[str, TrainableRecipe] = {}


def register_trainable(
    algo: str,
    train: Callable[..., RunResult],
    configs: dict,
    *,
    action_spaces: tuple[str, ...] = ("discrete",),
    resumable: bool = False,
) -> TrainableRecipe:
    """Make ``python -m rlteach train ALGO`` run this recipe (see :class:`TrainableRecipe`)."""
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
    recipe = TrainableRecipe(algo, train, dict(configs), tuple(action_spaces), resumable)
    TRAINABLE[algo] = recipe
    return recipe
