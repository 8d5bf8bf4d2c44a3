"""Learning curves in one shared style, for the chapters and the benchmarks page."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from rlteach.recipes.base import RunResult

STYLE = {
    "figure.figsize": (6.0, 3.6),
    "figure.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "legend.frameon": False,
}


def curve_band(runs: Sequence[RunResult], num_points: int = 100):
    """Put several seeds' curves on one grid of environment steps.

    Each run's evaluation returns are interpolated (piecewise linear) at common step counts up to
    the shortest run's last evaluation, so the band never extrapolates past what a seed measured.

    Returns ``steps [P]``, ``mean [P]``, ``low [P]``, ``high [P]`` where low/high are the minimum
    and maximum over seeds.
    """
    if not runs or any(not r.curve for r in runs):
        raise ValueError("curve_band needs at least one run, each with at least one evaluation.")
    end = min(r.curve[-1].env_steps for r in runs)
    start = max(r.curve[0].env_steps for r in runs)
    steps = np.linspace(start, end, num_points) if end > start else np.array([end], dtype=float)
    values = np.stack(
        [
            np.interp(
                steps,
                [p.env_steps for p in r.curve],
                [p.mean_return for p in r.curve],
            )
            for r in runs
        ]
    )
    return steps, values.mean(0), values.min(0), values.max(0)


def plot_learning_curves(
    groups: dict[str, Sequence[RunResult]],
    threshold: float | None = None,
    *,
    title: str = "",
    ax=None,
):
    """Plot mean return against environment steps, one line per group, min–max band over seeds.

    ``groups`` maps a label (an algorithm, a hyper-parameter value) to that group's runs. A dashed
    line marks the solved ``threshold`` when given. Returns the matplotlib Axes.
    """
    with plt.rc_context(STYLE):
        if ax is None:
            _, ax = plt.subplots()
        for label, runs in groups.items():
            steps, mean, low, high = curve_band(runs)
            (line,) = ax.plot(steps, mean, label=f"{label} ({len(runs)} seeds)")
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        if threshold is not None:
            ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1, label="solved")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return")
        if title:
            ax.set_title(title)
        ax.legend(loc="lower right")
    return ax
