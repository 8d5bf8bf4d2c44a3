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
    the *longest* run's last evaluation. A run that ended earlier (recipes stop at the first
    evaluation that reaches the solved threshold) is held at its last evaluated return from then
    on; the plot's legend says so.

    Returns ``steps [P]``, ``mean [P]``, ``low [P]``, ``high [P]`` where low/high are the minimum
    and maximum over seeds.
    """
    if not runs or any(not r.curve for r in runs):
        raise ValueError("curve_band needs at least one run, each with at least one evaluation.")
    end = max(r.curve[-1].env_steps for r in runs)
    start = min(r.curve[0].env_steps for r in runs)
    steps = np.linspace(start, end, num_points) if end > start else np.array([end], dtype=float)
    values = np.stack(
        [
            np.interp(  # np.interp holds the first and last values outside a run's range
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
    """Plot mean return against environment steps: per group a mean line, a min–max band over
    seeds, and each seed's own curve as a thin line.

    ``groups`` maps a label (an algorithm, a hyper-parameter value) to that group's runs. A dashed
    line marks the solved ``threshold`` when given. Returns the matplotlib Axes.
    """
    with plt.rc_context(STYLE):
        if ax is None:
            _, ax = plt.subplots()
        for label, runs in groups.items():
            steps, mean, low, high = curve_band(runs)
            seeds = f"{len(runs)} seed{'s' if len(runs) > 1 else ''}"
            (line,) = ax.plot(steps, mean, label=f"{label}: mean of {seeds}, min–max band")
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
            for run in runs:  # each seed as it was measured, ending where the run stopped
                ax.plot(
                    [p.env_steps for p in run.curve],
                    [p.mean_return for p in run.curve],
                    color=line.get_color(), alpha=0.35, linewidth=0.8,
                )
            if any(r.curve[-1].env_steps < steps[-1] for r in runs):
                ax.plot([], [], " ", label="(a run that stopped when solved is held at its last return)")
        if threshold is not None:
            ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1, label="solved")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return")
        if title:
            ax.set_title(title)
        ax.legend(loc="best", fontsize=8)
    return ax


def plot_value_estimates(
    groups: dict[str, Sequence[dict]],
    *,
    title: str = "",
    ax=None,
):
    """The critics' estimate against the truth over training, per group (the TD3 paper's
    overestimation plot): for each evaluation, ``q_mean`` (the critics' Q(s_t, a_t) averaged over
    the states the deterministic policy visited) as a solid line and ``discounted_return`` (what
    the policy actually obtained from those states) dashed in the same colour, each the mean over
    seeds with a min–max band for the estimate.

    ``groups`` maps a label to stored runs (dicts with ``value_estimates``, as
    :func:`rlteach.stored.stored_runs` gives them, or ``OffPolicyResult.to_dict()``). Evaluations
    with no usable state (``states == 0``) are left out. Returns the matplotlib Axes.
    """
    with plt.rc_context(STYLE):
        if ax is None:
            _, ax = plt.subplots()
        for label, runs in groups.items():
            per_seed = []
            for run in runs:
                rows = [v for v in run.get("value_estimates", []) if v.get("states", 0) > 0]
                if rows:
                    per_seed.append(rows)
            if not per_seed:
                continue
            n = min(len(rows) for rows in per_seed)  # the evaluations every seed has
            steps = [row["env_steps"] for row in per_seed[0][:n]]
            q = np.array([[row["q_mean"] for row in rows[:n]] for rows in per_seed])
            g = np.array([[row["discounted_return"] for row in rows[:n]] for rows in per_seed])
            (line,) = ax.plot(steps, q.mean(0), label=f"{label}: critics' estimate")
            ax.fill_between(steps, q.min(0), q.max(0), color=line.get_color(), alpha=0.15,
                            linewidth=0)  # fmt: skip
            ax.plot(steps, g.mean(0), color=line.get_color(), linestyle="--",
                    label=f"{label}: discounted return obtained")  # fmt: skip
        ax.set_xlabel("environment steps")
        ax.set_ylabel("value of the visited states")
        if title:
            ax.set_title(title)
        ax.legend(loc="best", fontsize=8)
    return ax
