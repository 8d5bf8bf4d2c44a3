"""The field-scale results as the benchmarks page shows them: reproductions, cost, curves.

``scripts/scale_runs.py`` stores each finished run as ``benchmarks/<suite>/<algo>-<task>/seedS.json``
(the run's whole result, with the machine and the command). This module reads those files and
``benchmarks/references.json`` (published numbers, each with its source) and makes:

* the reproductions table: for each algorithm and task, the published number at the same budget
  beside rlteach's final evaluation return, mean ± 95% interval over seeds (Student's t), and a
  verdict;
* the cost table: CPU milliseconds per environment step while learning (process CPU time,
  evaluation excluded, so barely inflated by other programs on the machine), the wall-clock of
  the runs;
* one learning-curve figure per task (mean over seeds with the min–max band).

Nothing here trains; ``scripts/benchmarks_page.py`` calls :func:`section` for the page.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from rlteach.stored import difference95, final_returns, interval95, stored_runs

MIN_SEEDS = 3
"""Fewer seeds than this get no verdict (with two, the t-interval is 12.7 standard errors wide)."""

VERDICT_RULE = (
    f"**too few seeds** below {MIN_SEEDS} seeds; otherwise **reproduced** when the published "
    "mean lies inside rlteach's 95% interval or below it (rlteach at least as good); **below** when the whole interval lies under the published "
    "mean; **no reference** when no published number at this budget was found"
)


def verdict(mean: float, half: float, reference: float | None, seeds: int = MIN_SEEDS) -> str:
    """See :data:`VERDICT_RULE`."""
    if seeds < MIN_SEEDS:
        return f"too few seeds ({seeds})"
    if reference is None:
        return "no reference"
    if math.isnan(half):
        return "reproduced" if mean >= reference else "below"
    return "reproduced" if mean + half >= reference else "below"


def cpu_ms_per_step(run: dict, after: int) -> float:
    """CPU milliseconds per environment step between the first evaluation after ``after``
    steps (the warm-up) and the last one, evaluation excluded."""
    points = list(zip(run["curve"], run.get("cpu_seconds", []), strict=False))
    points = [(p["env_steps"], c) for p, c in points if p["env_steps"] >= after]
    if len(points) < 2:
        return math.nan
    (s0, c0), (s1, c1) = points[0], points[-1]
    return 1000.0 * (c1 - c0) / (s1 - s0)


def _fmt(x: float, digits: int = 0) -> str:
    return "–" if math.isnan(x) else f"{x:,.{digits}f}"


def reproductions_table(runs: dict, references: list[dict]) -> str:
    """The Markdown table: one row per (algo, task) run group, in the references' order first."""
    refs = {(r["algo"], r["task"]): r for r in references}
    order = [k for k in refs if k in runs] + sorted(k for k in runs if k not in refs)
    lines = [
        "| algorithm | task | budget | the paper's claim | published (same budget) | source | "
        "rlteach, mean ± 95% (seeds) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in order:
        group, ref = runs[key], refs.get(key)
        mean, half = interval95(final_returns(group))
        budget = group[0]["curve"][-1]["env_steps"]
        if ref is not None and ref.get("value") is not None:
            spread = "" if ref.get("spread") is None else f" ± {_fmt(ref['spread'])}"
            seeds = "" if ref.get("seeds") is None else f" ({ref['seeds']} seeds)"
            digits = 1 if abs(ref["value"]) < 100 else 0  # MinAtar's returns are small
            published = f"{_fmt(ref['value'], digits)}{spread}{seeds}"
            source, value = ref["source"], ref["value"]
        else:
            published, value = "not found", None
            source = ref["source"] if ref else "–"
        ours = f"{_fmt(mean)} ± {_fmt(half)} ({len(group)})"
        claim = ref["claim"] if ref else "–"
        lines.append(
            f"| {key[0]} | {key[1]} | {budget:,} | {claim} | {published} | {source} | {ours} | "
            f"{verdict(mean, half, value, len(group))} |"
        )
    return "\n".join(lines)


def cost_table(runs: dict) -> str:
    """CPU ms per step while learning, and the runs' wall-clock (training, evaluation apart)."""
    lines = [
        "| algorithm | task | CPU ms per step (learning) | training wall-clock per run, min "
        "(mean, range) |",
        "|---|---|---|---|",
    ]
    for (algo, task), group in sorted(runs.items()):
        config = group[0].get("config", {})
        warmup = config.get("warmup_steps", config.get("learning_starts", 0))
        ms = [cpu_ms_per_step(r, warmup) for r in group]
        ms = [m for m in ms if not math.isnan(m)]
        wall = [r["curve"][-1]["seconds"] / 60 for r in group]
        lines.append(
            f"| {algo} | {task} | {_fmt(sum(ms) / len(ms), 1) if ms else '–'} | "
            f"{_fmt(sum(wall) / len(wall), 1)} ({_fmt(min(wall), 1)}–{_fmt(max(wall), 1)}) |"
        )
    return "\n".join(lines)


def plot_task(runs: dict, task: str, path: Path) -> None:
    """The learning curves of every algorithm run on ``task``, one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlteach.plotting import plot_learning_curves
    from rlteach.recipes.base import RunResult

    groups = {
        algo: [RunResult.from_dict(d) for d in group]
        for (algo, t), group in sorted(runs.items())
        if t == task
    }
    ax = plot_learning_curves(groups, None, title=f"{task}: evaluation return")
    ax.figure.tight_layout()
    ax.figure.savefig(path)
    plt.close(ax.figure)


def _protocol(runs: dict) -> str:
    """How the runs of a suite were evaluated, from their configs ("over 10 episodes every
    5,000 steps"; several rhythms are listed with their algorithms)."""
    rhythms: dict[str, list[str]] = {}
    for (algo, _), group in sorted(runs.items()):
        config = group[0].get("config", {})
        every, episodes = config.get("eval_every"), config.get("eval_episodes")
        if every is None or episodes is None:
            continue
        rhythm = f"over {episodes} episodes every {every:,} steps"
        if algo not in rhythms.setdefault(rhythm, []):
            rhythms[rhythm].append(algo)
    if len(rhythms) <= 1:
        return next(iter(rhythms), "at regular intervals")
    return "; ".join(f"{rhythm} ({', '.join(algos)})" for rhythm, algos in rhythms.items())


CLAIM_RULE = (
    f"the difference of the final returns' means, with its 95% Welch interval; **supported** when "
    f"the whole interval lies above 0, **contradicted** when it lies below, **not resolved** when "
    f"it contains 0, **too few seeds** below {MIN_SEEDS} seeds a side"
)


def claim_verdict(difference: float, half: float, seeds: tuple[int, int]) -> str:
    """See :data:`CLAIM_RULE`."""
    if min(seeds) < MIN_SEEDS:
        return f"too few seeds ({seeds[0]} and {seeds[1]})"
    if difference - half > 0:
        return "supported"
    if difference + half < 0:
        return "contradicted"
    return "not resolved"


def claims_table(results_dir: Path, claims: list[dict]) -> str:
    """One row per comparative claim ("C51 >= DQN") whose two sides both have stored runs;
    each side names a store, an entry (algorithm, or ``algo--label``) and a task."""
    lines = [
        "| claim | source | A | B | A − B, mean ± 95% (seeds) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    rows = 0
    for claim in claims:
        sides = []
        for side in (claim["a"], claim["b"]):
            group = stored_runs(results_dir / side["store"]).get((side["entry"], side["task"]))
            sides.append(group)
        if not all(sides):
            continue
        a, b = (final_returns(g) for g in sides)
        difference, half = difference95(a, b)
        names = [f"{s['entry']} ({s['store']})" for s in (claim["a"], claim["b"])]
        lines.append(
            f"| {claim['claim']} | {claim['source']} | {names[0]} | {names[1]} | "
            f"{_fmt(difference)} ± {_fmt(half)} ({len(a)}, {len(b)}) | "
            f"{claim_verdict(difference, half, (len(a), len(b)))} |"
        )
        rows += 1
    return "\n".join(lines) if rows else ""


def section(folder: Path, references_path: Path, page: Path, heading: str) -> list[str]:
    """The page's Markdown for one suite folder (nothing when it holds no run)."""
    runs = stored_runs(folder)
    if not runs:
        return []
    references = json.loads(references_path.read_text())["references"]
    machines = sorted({d.get("machine", "?") for g in runs.values() for d in g})
    parts = [f"## {heading}\n"]
    parts.append(
        "Each run: `python scripts/scale_runs.py` (below, the command of each run), the "
        "recipe's own configuration for the task (cited in its docstring), the deterministic "
        f"policy evaluated {_protocol(runs)}. The rlteach column is the final "
        "evaluation's return, the mean over seeds ± the half-width of its 95% Student-t "
        f"interval. Verdict: {VERDICT_RULE}.\n"
    )
    parts.append(f"- Machine: {', '.join(machines)}")
    commands = sorted({d["command"].rsplit(" --seed", 1)[0] for g in runs.values() for d in g})
    parts.append("- Commands: " + "; ".join(f"`{c} --seed S`" for c in commands) + "\n")
    parts.append(reproductions_table(runs, references) + "\n")
    notes = [r for r in references if r.get("note") and (r["algo"], r["task"]) in runs]
    for ref in notes:
        parts.append(f"- {ref['algo']} on {ref['task']}: {ref['note']}")
    if notes:
        parts.append("")
    parts.append("### Cost on this machine\n")
    parts.append(cost_table(runs) + "\n")
    rel = Path(os.path.relpath(folder, page.parent))
    for task in sorted({t for _, t in runs}):
        png = folder / f"{task}.png"
        if png.exists():
            parts.append(f"### {task}\n")
            parts.append(f"![{task} learning curves]({rel.as_posix()}/{png.name})\n")
    return parts
