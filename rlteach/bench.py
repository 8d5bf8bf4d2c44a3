"""``python -m rlteach bench``: train registered recipes over seeds and tabulate the results.

A recipe's ``register_trainable`` call (:mod:`rlteach.registry`) adds its :class:`BenchEntry`
objects (a name such as ``"ppo-cartpole"``, the algorithm, the Gymnasium task and a ``train``
function) to the one registry this module runs. The runner trains every selected entry once per seed
and reports, per entry: seeds that reached the solved threshold, the median environment steps and
training seconds to the first evaluation at or above it (over the seeds that solved), and the
final evaluation return. It writes ``results.json`` (every curve, for re-plotting), ``results.md``
(the table the book's benchmarks page shows) and one learning-curve PNG per entry.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from rlteach.progress import progress_bar
from rlteach.recipes.base import RunResult
from rlteach.registry import REGISTRY, BenchEntry
from rlteach.tasks import MUJOCO_MILESTONES, SOLVED_THRESHOLDS

# The thresholds live in rlteach.tasks and the entries in rlteach.registry (the recipes register
# there, once); both are re-exported here, where the benchmark's readers look for them.
__all__ = ["SOLVED_THRESHOLDS", "MUJOCO_MILESTONES", "BenchEntry", "REGISTRY", "register"]


def register(
    name: str,
    algo: str,
    env_id: str,
    train: Callable[..., RunResult],
    threshold: float | None = None,
) -> BenchEntry:
    """Add an entry by hand (a recipe's own entries come with its ``register_trainable``).
    The threshold defaults to the task's solved threshold."""
    if name in REGISTRY:
        raise ValueError(f"bench entry {name!r} is already registered; choose another name.")
    if threshold is None:
        if env_id not in SOLVED_THRESHOLDS:
            known = ", ".join(SOLVED_THRESHOLDS)
            raise ValueError(
                f"No solved threshold is known for {env_id!r} (known: {known}); pass threshold=."
            )
        threshold = SOLVED_THRESHOLDS[env_id]
    entry = BenchEntry(name=name, algo=algo, env_id=env_id, train=train, threshold=threshold)
    REGISTRY[name] = entry
    return entry


# The book's order of algorithms: `list`, `bench` and its tables follow it (registration order
# depends on which recipe module imports which).
BOOK_ORDER = (
    "reinforce", "a2c", "ppo", "dqn", "c51", "ddpg", "td3", "sac", "redq", "crossq",
    "mappo", "ippo", "qmix", "vdn",
)  # fmt: skip


def in_book_order(entries: Sequence[BenchEntry]) -> list[BenchEntry]:
    """Entries sorted by their algorithm's chapter (unknown algorithms last, stable otherwise)."""

    def chapter(entry: BenchEntry) -> int:
        return BOOK_ORDER.index(entry.algo) if entry.algo in BOOK_ORDER else len(BOOK_ORDER)

    return sorted(entries, key=chapter)


def select(names: Sequence[str] | None) -> list[BenchEntry]:
    """The registered entries named, in the order given; all of them, in book order, for None."""
    if not names:
        return in_book_order(list(REGISTRY.values()))
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        known = ", ".join(REGISTRY) or "(none registered yet)"
        raise KeyError(f"Unknown bench entry {', '.join(unknown)}; registered entries: {known}.")
    return [REGISTRY[n] for n in names]


def summarize(entry: BenchEntry, runs: Sequence[RunResult]) -> dict:
    """One table row: seeds solved, median steps and seconds to solve, final return."""
    reached = [r.first_reaching(entry.threshold) for r in runs]
    solved = [p for p in reached if p is not None]
    finals = [r.final_return for r in runs]
    return {
        "name": entry.name,
        "algo": entry.algo,
        "env_id": entry.env_id,
        "threshold": entry.threshold,
        "seeds": len(runs),
        "seeds_solved": len(solved),
        "median_steps_to_solve": statistics.median(p.env_steps for p in solved) if solved else None,
        "median_seconds_to_solve": statistics.median(p.seconds for p in solved) if solved else None,
        "final_return_mean": statistics.fmean(finals),
        "final_return_std": statistics.pstdev(finals),
    }


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """What the numbers were measured on: they mean little without it."""
    return (
        f"{cpu_model()} ({platform.machine()}, {os.cpu_count()} logical cores), "
        f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def markdown_table(rows: Sequence[dict]) -> str:
    """The results as a Markdown table (steps and seconds to solve are medians over solved seeds)."""

    def fmt(value, spec):
        return "—" if value is None else format(value, spec)

    lines = [
        "| recipe | task | solved seeds | median steps to solve | median seconds to solve "
        "| final return |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['env_id']} (≥ {r['threshold']:g}) "
            f"| {r['seeds_solved']}/{r['seeds']} | {fmt(r['median_steps_to_solve'], ',.0f')} "
            f"| {fmt(r['median_seconds_to_solve'], '.1f')} "
            f"| {r['final_return_mean']:.1f} ± {r['final_return_std']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def entries_to_run(
    names: Sequence[str] | None, compare: str | None = None, skip: Sequence[str] = ()
) -> list[BenchEntry]:
    """The entries named; without names every entry, or with ``compare="sb3"`` every entry
    that has a Stable-Baselines3 counterpart; minus those in ``skip`` (registered names)."""
    unknown = [n for n in skip if n not in REGISTRY]
    if unknown:
        known = ", ".join(REGISTRY) or "(none registered yet)"
        raise KeyError(f"--skip: unknown bench entry {', '.join(unknown)}; registered: {known}.")
    entries = select(names)
    if compare == "sb3" and not names:
        from rlteach.compare import sb3

        entries = [entry for entry in entries if entry.name in sb3.SB3_TASKS]
    return [entry for entry in entries if entry.name not in skip]


def run_bench(
    names: Sequence[str] | None = None,
    seeds: int = 5,
    quick: bool = False,
    out_dir: str | Path = "bench-results",
    progress: bool = True,
    compare: str | None = None,
    skip: Sequence[str] = (),
) -> list[dict]:
    """Train the selected entries over ``seeds`` seeds (0 … seeds−1) and write the reports.

    ``skip`` leaves entries out of the selection (``--skip``: e.g. the long multi-agent ones,
    measured in a run of their own).

    ``compare="sb3"`` also trains each entry's Stable-Baselines3 counterpart (see
    :mod:`rlteach.compare.sb3`) over the same seeds with the same evaluation protocol, and adds
    its numbers and the ratios to each row (``row["compare"]``), the reports and the PNGs.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}.")
    if compare not in (None, "sb3"):
        raise ValueError(f"compare must be None or 'sb3', got {compare!r}.")
    if compare == "sb3":
        from rlteach.compare import sb3

        sb3.require()  # before any training
    entries = entries_to_run(names, compare, skip)
    if not entries:
        raise KeyError("Nothing to run: --skip leaves out every selected entry.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, all_runs = [], {}
    jobs = [(entry, seed) for entry in entries for seed in range(seeds)]
    other_runs: dict[str, list[RunResult]] = {}
    if compare == "sb3":  # the same seeds, one after the other, never two trainings at once
        jobs += [("sb3", entry, seed) for entry, seed in jobs if entry.name in sb3.SB3_TASKS]
    bar = progress_bar(jobs, desc="bench", disable=not progress, file=sys.stderr)
    for job in bar:
        if job[0] == "sb3":
            _, entry, seed = job
            bar.set_postfix_str(f"SB3 {entry.name} seed {seed}")
            run = sb3.train_sb3(sb3.SB3_TASKS[entry.name], seed, quick, threshold=entry.threshold)
            other_runs.setdefault(entry.name, []).append(run)
            continue
        entry, seed = job
        bar.set_postfix_str(f"{entry.name} seed {seed}")
        all_runs.setdefault(entry.name, []).append(entry.run(seed, quick=quick))
    for entry in entries:
        runs = all_runs[entry.name]
        row = summarize(entry, runs)
        if entry.name in other_runs:
            row["compare"] = compare_row(row, summarize(entry, other_runs[entry.name]))
            row["compare"]["library"] = sb3.version()
            settings = sb3.zoo_settings(sb3.SB3_TASKS[entry.name])
            row["compare"]["hyperparameters"] = settings.source
            row["compare"]["rl_zoo3"] = settings.zoo_version
        rows.append(row)
        _plot_entry(entry, runs, out / f"{entry.name}.png", other_runs.get(entry.name))
    command = "python -m rlteach bench " + " ".join(
        ([f"--algo {' '.join(names)}"] if names else [])
        + ([f"--skip {' '.join(skip)}"] if skip else [])
        + [f"--seeds {seeds}"]
        + (["--quick"] if quick else [])
        + ([f"--compare {compare}"] if compare else [])
    )
    report = {
        "machine": machine_description(),
        "command": command,
        "rows": rows,
        "runs": {name: [r.to_dict() for r in runs] for name, runs in all_runs.items()},
    }
    if compare:
        report["compare_runs"] = {
            name: [r.to_dict() for r in runs] for name, runs in other_runs.items()
        }
    (out / "results.json").write_text(json.dumps(report, indent=1))
    header = f"Measured on {report['machine']} with `{command}`.\n\n"
    text = header + markdown_table(rows)
    if compare:
        text += "\n" + compare_table(rows)
    (out / "results.md").write_text(text)
    return rows


def compare_row(ours: dict, theirs: dict) -> dict:
    """The other library's summary over the same seeds, and the ratios rlteach / other.

    A ratio compares the medians over each side's solved seeds (None when either side solved
    no seed); below 1 rlteach needed fewer steps (or seconds).
    """

    def ratio(key):
        a, b = ours[key], theirs[key]
        return None if a is None or b is None or b == 0 else a / b

    keep = (
        "seeds",
        "seeds_solved",
        "median_steps_to_solve",
        "median_seconds_to_solve",
        "final_return_mean",
        "final_return_std",
    )
    return {
        **{k: theirs[k] for k in keep},
        "steps_ratio": ratio("median_steps_to_solve"),
        "seconds_ratio": ratio("median_seconds_to_solve"),
    }


def compare_table(rows: Sequence[dict]) -> str:
    """rlteach beside the other library: steps and seconds to solve (medians over solved seeds,
    the same seeds on both sides) and the ratios rlteach / other."""

    def fmt(value, spec):
        return "—" if value is None else format(value, spec)

    rows = [r for r in rows if "compare" in r]
    if not rows:
        return "No selected entry has a counterpart in the other library.\n"
    versions = sorted({r["compare"]["rl_zoo3"] for r in rows if r["compare"].get("rl_zoo3")})
    zoo = f" (hyper-parameters read from rl-zoo3 {', '.join(versions)})" if versions else ""
    lines = [
        f"rlteach beside {rows[0]['compare']['library']}{zoo} on the same seeds, with the same "
        "evaluation protocol (ratio = rlteach / SB3; below 1, rlteach needed less):\n",
        "| task | solved (rlteach / SB3) | steps to solve: rlteach | SB3 | ratio "
        "| seconds to solve: rlteach | SB3 | ratio | SB3 hyper-parameters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["compare"]
        lines.append(
            f"| {r['name']} ({r['env_id']} ≥ {r['threshold']:g}) "
            f"| {r['seeds_solved']}/{r['seeds']} / {c['seeds_solved']}/{c['seeds']} "
            f"| {fmt(r['median_steps_to_solve'], ',.0f')} | {fmt(c['median_steps_to_solve'], ',.0f')} "
            f"| {fmt(c['steps_ratio'], '.2f')} "
            f"| {fmt(r['median_seconds_to_solve'], '.1f')} | {fmt(c['median_seconds_to_solve'], '.1f')} "
            f"| {fmt(c['seconds_ratio'], '.2f')} | {c['hyperparameters']} |"
        )
    return "\n".join(lines) + "\n"


def _plot_entry(
    entry: BenchEntry,
    runs: Sequence[RunResult],
    path: Path,
    other_runs: Sequence[RunResult] | None = None,
) -> None:
    import matplotlib.pyplot as plt

    from rlteach.plotting import plot_learning_curves

    groups = {entry.algo: runs}
    if other_runs:
        groups = {f"rlteach {entry.algo}": runs, f"SB3 {other_runs[0].algo[4:]}": other_runs}
    ax = plot_learning_curves(groups, entry.threshold, title=f"{entry.name}")
    ax.figure.tight_layout()
    ax.figure.savefig(path)
    plt.close(ax.figure)
