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
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from rlteach._checks import resolve_device  # noqa: F401  (for recipes)
from rlteach.checkpoint import Checkpointer, as_checkpointer  # noqa: F401  (for recipes)
from rlteach.registry import (  # noqa: F401  (the registry's home until issue 19; kept importable)
    TRAINABLE,
    TrainableRecipe,
    register_trainable,
)


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

    def __init__(self, timer: Callable[[], float] = time.perf_counter) -> None:
        self.timer = timer
        """``time.perf_counter`` (wall clock) or ``time.process_time`` (this process's CPU)"""
        self._elapsed = 0.0
        self._started = timer()
        self._running = True

    @property
    def seconds(self) -> float:
        running = self.timer() - self._started if self._running else 0.0
        return self._elapsed + running

    def pause(self) -> None:
        if self._running:
            self._elapsed += self.timer() - self._started
            self._running = False

    def resume(self) -> None:
        if not self._running:
            self._started = self.timer()
            self._running = True

    def state_dict(self) -> dict:
        return {"seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        """Continue from the saved seconds (the clock runs on from now)."""
        self._elapsed = state["seconds"]
        self._started = self.timer()

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

    Given a list ``cpu_seconds``, it also appends the process CPU seconds spent training at each
    evaluation (evaluation excluded: unlike the wall clock, barely inflated when other programs
    compete for the cores), from a second clock paused with the first.
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
        cpu_seconds: list[float] | None = None,
    ) -> None:
        self.result, self.policy, self.env_id = result, policy, env_id
        self.every, self.threshold, self.episodes = every, threshold, episodes
        self.stop_on_solve, self.bar, self.seed = stop_on_solve, bar, seed
        self.evaluate = evaluate
        self.clock = Stopwatch()
        self.cpu_seconds = cpu_seconds
        self.cpu_clock = Stopwatch(time.process_time)
        self._next = every

    @property
    def curve(self) -> list[EvalPoint]:
        """The evaluations so far (what a checkpointer writes to ``log.csv``)."""
        return self.result.curve

    def state_dict(self) -> dict:
        """The evaluation history, the next evaluation's frame count and the training seconds
        so far (the clock continues from them, evaluation excluded), for a checkpoint."""
        state = {
            "next": self._next,
            "seconds": self.clock.seconds,
            "curve": [asdict(p) for p in self.result.curve],
        }
        if self.cpu_seconds is not None:
            state.update(cpu_seconds=list(self.cpu_seconds), cpu_elapsed=self.cpu_clock.seconds)
        return state

    def load_state_dict(self, state: dict) -> None:
        self._next = state["next"]
        self.clock.load_state_dict({"seconds": state["seconds"]})
        self.result.curve[:] = [EvalPoint(**p) for p in state["curve"]]
        if self.cpu_seconds is not None:
            self.cpu_seconds[:] = state["cpu_seconds"]
            self.cpu_clock.load_state_dict({"seconds": state["cpu_elapsed"]})
        if self.bar is not None and self.result.curve:
            self.bar.update(self.result.curve[-1].env_steps - self.bar.n)

    def after_batch(self, frames: int, last: bool = False) -> bool:
        """Evaluate if due (or if ``last``); True when the run should stop because it solved."""
        from rlteach.envs import evaluate  # here, so that base.py stays free of gymnasium

        if self.bar is not None:
            self.bar.update(frames - self.bar.n)
        if frames < self._next and not last:
            return False
        while self._next <= frames:
            self._next += self.every
        if self.cpu_seconds is not None:
            self.cpu_seconds.append(self.cpu_clock.seconds)
        with self.clock.paused(), self.cpu_clock.paused():
            if self.evaluate is not None:
                mean_return = self.evaluate()
            else:
                mean_return = evaluate(self.policy, self.env_id, self.episodes, seed=self.seed)
        self.result.curve.append(EvalPoint(frames, self.clock.seconds, mean_return))
        if self.bar is not None:
            self.bar.set_postfix(eval_return=f"{mean_return:.1f}")
        return self.stop_on_solve and mean_return >= self.threshold


# ------------------------------------------------------------------ on-policy recipes' common part


@dataclass(frozen=True)
class OnPolicyConfig:
    """What the config of every on-policy recipe holds (REINFORCE, A2C, PPO, MAPPO): the task,
    the rollout's shape, the budget, the evaluation and the optimiser's basics. Each recipe's
    config extends it with its own fields and sets its own defaults."""

    env_id: str = "CartPole-v1"
    num_envs: int = 8
    """parallel environment copies (gymnasium.vector)"""
    steps_per_env: int = 32
    """rollout length T: a batch is num_envs × T transitions"""
    total_frames: int = 100_000
    """training budget in environment steps (frames over all copies)"""
    quick_frames: int = 4_096
    """the budget under RLTEACH_QUICK=1 (or quick=True)"""
    lr: float = 1e-3
    gamma: float = 0.99
    max_grad_norm: float = 0.5
    """clip the gradient's global norm to this"""
    num_cells: tuple[int, ...] = (64, 64)
    eval_every: int = 2_048
    """frames between evaluations"""
    eval_episodes: int = 10
    stop_on_solve: bool = True
    """end the run at the first evaluation at or above the solved threshold"""
    torch_threads: int = 1
    """small networks run fastest on one thread; the other core steps the environments"""

    def quick(self) -> OnPolicyConfig:
        """The config of a quick run: ``quick_frames`` of budget, evaluated at its end at least."""
        return replace(
            self, total_frames=self.quick_frames, eval_every=min(self.eval_every, self.quick_frames)
        )


def start_run(
    cfg: OnPolicyConfig, seed: int, quick: bool, device: str | torch.device
) -> tuple[OnPolicyConfig, torch.device, torch.Generator]:
    """The first lines of every on-policy run, in this order: refuse an unknown or absent device,
    shrink the budget for a quick run (:meth:`OnPolicyConfig.quick`), use the config's torch
    threads, seed everything. Returns the config to run, the device and the seeded generator."""
    device = resolve_device(device)
    if quick:
        cfg = cfg.quick()
    torch.set_num_threads(cfg.torch_threads)
    return cfg, device, seed_everything(seed)


def progress_and_evaluator(
    result: RunResult, policy, cfg: OnPolicyConfig, desc: str, progress: bool, **evaluator_kwargs
) -> tuple:
    """A progress bar over ``cfg.total_frames`` and the :class:`Evaluator` that updates it,
    evaluating ``policy`` every ``cfg.eval_every`` frames against the task's solved threshold
    (``evaluator_kwargs`` override, e.g. a multi-agent recipe's own threshold)."""
    from rlteach.progress import progress_bar  # tqdm only once a run starts
    from rlteach.tasks import solved_threshold

    bar = progress_bar(total=cfg.total_frames, desc=desc, disable=not progress, unit="frame")
    settings = dict(
        every=cfg.eval_every, threshold=solved_threshold(cfg.env_id), episodes=cfg.eval_episodes,
        stop_on_solve=cfg.stop_on_solve, bar=bar,
    )  # fmt: skip
    evaluator = Evaluator(result, policy, cfg.env_id, **{**settings, **evaluator_kwargs})
    return bar, evaluator
