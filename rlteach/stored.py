"""The stored field-scale runs: what the chapters and the benchmarks page read instead of training.

A run at the field's scale (100,000 MuJoCo steps, a million MinAtar frames) takes from half an
hour to hours, far beyond a chapter's budget. ``scripts/scale_runs.py`` makes those runs and
stores each one as ``benchmarks/<suite>/<algo>-<task>/seed<S>.json``: the whole result (the
evaluation curve, the training logs, the critics' value estimates at each evaluation), with the
machine and the command that made it. This module reads them back::

    from rlteach.stored import stored_runs
    runs = stored_runs("mujoco")                 # {("sac", "Hopper-v5"): [seed 0, seed 1, ...]}
    curves = as_results(runs["sac", "Hopper-v5"])  # RunResult objects, for plot_learning_curves

The files live in the repository (``benchmarks/`` beside ``rlteach/``), not in the wheel: from an
installed package without a checkout, :func:`stored_runs` finds nothing and says where to look.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rlteach.recipes.base import RunResult

__all__ = [
    "BENCHMARKS",
    "as_results",
    "difference95",
    "entry_name",
    "final_returns",
    "interval95",
    "stored_files",
    "stored_runs",
]

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
"""The repository's benchmarks folder (present in a checkout, absent from a wheel)."""

# Student's t, 97.5% quantile, by degrees of freedom (two-sided 95% interval); 1.96 beyond 30
T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
    18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
    26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
}  # fmt: skip


def stored_runs(suite: str | Path) -> dict[tuple[str, str], list[dict]]:
    """(algo, task) -> the stored runs of a suite (a folder name under ``benchmarks/``, or a
    path), in seed order. Empty when the folder does not exist (e.g. an installed wheel). An
    ablation's runs are keyed by :func:`entry_name`, ``("dqn--no-target", task)``."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for path in stored_files(suite):
        data = json.loads(path.read_text())
        runs.setdefault((entry_name(data), data["env_id"]), []).append(data)
    for group in runs.values():
        group.sort(key=lambda d: d["seed"])
    return runs


def stored_files(suite: str | Path) -> list[Path]:
    """The files :func:`stored_runs` reads for a suite, sorted: ``<entry>/seed<S>.json``.
    scripts/execute_notebooks.py fingerprints them in a chapter's results stamp."""
    folder = Path(suite) if isinstance(suite, Path) else BENCHMARKS / suite
    return sorted(folder.glob("*/seed*.json"))


def entry_name(run: dict) -> str:
    """The algorithm, and for an ablation its label: ``"sac"``, ``"dqn--no-target"``."""
    return f"{run['algo']}--{run['variant']}" if run.get("variant") else run["algo"]


def as_results(group: list[dict]) -> list[RunResult]:
    """The stored runs as :class:`~rlteach.recipes.base.RunResult` objects (curve, algo, task,
    seed)."""
    return [RunResult.from_dict(d) for d in group]


def final_returns(group: list[dict]) -> list[float]:
    """Each run's last evaluation return (at the end of its budget)."""
    return [d["curve"][-1]["mean_return"] for d in group]


def interval95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of the 95% Student-t interval of the mean (nan for one value)."""
    n = len(values)
    if n == 0:
        raise ValueError("interval95: no values")
    if n == 1:
        return values[0], math.nan
    mean, var = _mean_var(values)
    return mean, T975.get(n - 1, 1.96) * math.sqrt(var / n)


def difference95(a: list[float], b: list[float]) -> tuple[float, float]:
    """mean(a) - mean(b) and the half-width of its 95% Welch interval (unequal variances, the
    Welch-Satterthwaite degrees of freedom rounded down; nan with fewer than two values a side)."""
    if len(a) < 2 or len(b) < 2:
        return sum(a) / max(len(a), 1) - sum(b) / max(len(b), 1), math.nan
    (ma, va), (mb, vb) = _mean_var(a), _mean_var(b)
    sa, sb = va / len(a), vb / len(b)
    se = math.sqrt(sa + sb)
    if se == 0.0:
        return ma - mb, 0.0
    df = (sa + sb) ** 2 / (sa**2 / (len(a) - 1) + sb**2 / (len(b) - 1))
    return ma - mb, T975.get(max(1, math.floor(df)), 1.96) * se


def _mean_var(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, sum((v - mean) ** 2 for v in values) / (len(values) - 1)
