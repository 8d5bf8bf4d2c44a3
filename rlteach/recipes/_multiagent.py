"""Plumbing the multi-agent recipes share (``mappo.py``, ``qmix.py``): their evaluator.

The single-agent recipes evaluate with :class:`rlteach.recipes.base.Evaluator`, which plays a
Gymnasium task; a multi-agent team plays a PettingZoo task or the two-step game and is scored
by its *team* return, so its evaluation is a callable the recipe builds.
"""

from __future__ import annotations

from collections.abc import Callable

from rlteach.recipes.base import EvalPoint, RunResult, Stopwatch

__all__ = ["TeamEvaluator"]


class TeamEvaluator:
    """The multi-agent recipes' evaluator: ``evaluate()`` (a zero-argument callable returning the
    greedy team return) runs every ``every`` frames and once the budget ``total`` is reached, with
    the clock paused.

    Its schedule is the one the MAPPO and QMIX loops had written inline: after an evaluation the
    next is due ``every`` frames later (one step, not caught up to ``frames``). Its counters
    (``_next``, ``clock``, ``result.curve``, ``bar``) are :class:`Evaluator`'s, so a
    :class:`~rlteach.checkpoint.Checkpointer` saves and restores it (and rewrites log.csv) the
    same way.
    """

    def __init__(
        self,
        result: RunResult,
        evaluate: Callable[[], float],
        every: int,
        total: int,
        threshold: float,
        stop_on_solve: bool = False,
        bar=None,
    ) -> None:
        self.result, self.evaluate, self.every, self.total = result, evaluate, every, total
        self.threshold, self.stop_on_solve, self.bar = threshold, stop_on_solve, bar
        self.clock = Stopwatch()
        self._next = every

    def after_batch(self, frames: int, last: bool = False) -> bool:
        """Evaluate if due; True when the run should stop because it solved."""
        if self.bar is not None:
            self.bar.update(frames - self.bar.n)
        if not (frames >= self._next or frames >= self.total or last):
            return False
        self._next += self.every
        with self.clock.paused():
            team_return = self.evaluate()
        self.result.curve.append(EvalPoint(frames, self.clock.seconds, team_return))
        if self.bar is not None:
            self.bar.set_postfix(team_return=f"{team_return:.1f}")
        return self.stop_on_solve and team_return >= self.threshold
