"""``python -m rlteach bench``: train registered recipes over seeds and tabulate the results.

A recipe registers a :class:`BenchEntry` (a name such as ``"ppo-cartpole"``, the algorithm, the
Gymnasium task and its ``train`` function). The runner trains every selected entry once per seed
and reports, per entry: seeds that reached the solved threshold, the median environment steps and
training seconds to the first evaluation at or above it (over the seeds that solved), and the
final evaluation return. It writes ``results.json`` (every curve, for re-plotting), ``results.md``
(the table the book's benchmarks page shows) and one learning-curve PNG per entry.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from rlteach.recipes.base import RunResult

# Mean return of 10 deterministic evaluation episodes that counts as solving each task.
SOLVED_THRESHOLDS: dict[str, float] = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "Pendulum-v1": -200.0,
}


@dataclass(frozen=True)
class BenchEntry:
    """A recipe on a task. ``train(seed, quick, progress) -> RunResult``."""

    name: str
    algo: str
    env_id: str
    train: Callable[..., RunResult]
    threshold: float

    def run(self, seed: int, quick: bool = False, progress: bool = False) -> RunResult:
        result = self.train(seed=seed, quick=quick, progress=progress)
        if not isinstance(result, RunResult) or not result.curve:
            raise RuntimeError(
                f"bench entry {self.name!r}: train() must return a RunResult with at least one "
                f"evaluation, got {result!r}."
            )
        return result


REGISTRY: dict[str, BenchEntry] = {}


def register(
    name: str,
    algo: str,
    env_id: str,
    train: Callable[..., RunResult],
    threshold: float | None = None,
) -> BenchEntry:
    """Add a recipe to the benchmark. The threshold defaults to the task's solved threshold."""
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


def select(names: Sequence[str] | None) -> list[BenchEntry]:
    """The registered entries named (all of them for None), in registration order."""
    if not names:
        return list(REGISTRY.values())
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


def machine_description() -> str:
    """What the numbers were measured on: they mean little without it."""
    return (
        f"{platform.machine()} {platform.processor() or ''} with {torch.get_num_threads()} torch "
        f"threads, Python {platform.python_version()}, torch {torch.__version__}"
    ).replace("  ", " ")


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


def run_bench(
    names: Sequence[str] | None = None,
    seeds: int = 5,
    quick: bool = False,
    out_dir: str | Path = "bench-results",
    progress: bool = True,
) -> list[dict]:
    """Train the selected entries over ``seeds`` seeds (0 … seeds−1) and write the reports."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}.")
    entries = select(names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, all_runs = [], {}
    jobs = [(entry, seed) for entry in entries for seed in range(seeds)]
    bar = tqdm(jobs, desc="bench", disable=not progress, file=sys.stderr)
    for entry, seed in bar:
        bar.set_postfix_str(f"{entry.name} seed {seed}")
        all_runs.setdefault(entry.name, []).append(entry.run(seed, quick=quick))
    for entry in entries:
        runs = all_runs[entry.name]
        rows.append(summarize(entry, runs))
        _plot_entry(entry, runs, out / f"{entry.name}.png")
    command = "python -m rlteach bench " + " ".join(
        ([f"--algo {' '.join(names)}"] if names else []) + [f"--seeds {seeds}"]
        + (["--quick"] if quick else [])
    )
    report = {
        "machine": machine_description(),
        "command": command,
        "rows": rows,
        "runs": {name: [r.to_dict() for r in runs] for name, runs in all_runs.items()},
    }
    (out / "results.json").write_text(json.dumps(report, indent=1))
    header = f"Measured on {report['machine']} with `{command}`.\n\n"
    (out / "results.md").write_text(header + markdown_table(rows))
    return rows


def _plot_entry(entry: BenchEntry, runs: Sequence[RunResult], path: Path) -> None:
    import matplotlib.pyplot as plt

    from rlteach.plotting import plot_learning_curves

    ax = plot_learning_curves({entry.algo: runs}, entry.threshold, title=f"{entry.name}")
    ax.figure.tight_layout()
    ax.figure.savefig(path)
    plt.close(ax.figure)
