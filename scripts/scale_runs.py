"""Run the field-scale benchmark runs (MuJoCo, ...) a few at a time, resumably, and keep their logs.

Each run is ``python -m rlteach train ALGO --env TASK --seed S`` at the recipe's own config for
the task (for MuJoCo: 100,000 steps, evaluation every 5,000 steps over 10 episodes), with its
checkpoints in ``--runs`` (outside the repository: they are large and never committed). A run
whose folder holds a checkpoint is continued with ``--resume``, so this script can be started
again after an interruption and picks up where each run stopped; a finished run is skipped.
When a run ends, its ``log.csv`` and ``result.json`` are copied into
``--store``/ALGO-TASK/seedS.{csv,json}: that is what the book and the benchmarks page read.

    python scripts/scale_runs.py --suite mujoco-core --jobs 2      # SAC and TD3 on Hopper-v5
    python scripts/scale_runs.py --suite mujoco --jobs 2           # every MuJoCo entry
    python scripts/scale_runs.py --only sac:Hopper-v5:0 --jobs 1   # one run
    python scripts/scale_runs.py --plots-only                      # redraw the figures

Runs are niced, one torch thread each (the recipes' configs say so): two at a time on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SEEDS = (0, 1, 2)
SUITES: dict[str, list[tuple[str, str]]] = {
    "mujoco-core": [("sac", "Hopper-v5"), ("td3", "Hopper-v5")],
    "mujoco": [
        (algo, task)
        for task in ("Hopper-v5", "HalfCheetah-v5")
        for algo in ("sac", "td3", "ddpg")
    ],
}


def _runs(suite: str | None, only: list[str]) -> list[tuple[str, str, int]]:
    if only:
        runs = []
        for item in only:
            parts = item.split(":")
            if len(parts) != 3 or not parts[2].isdigit():
                raise SystemExit(f"--only takes ALGO:TASK:SEED, e.g. sac:Hopper-v5:0; got {item!r}")
            runs.append((parts[0], parts[1], int(parts[2])))
        return runs
    if suite not in SUITES:
        raise SystemExit(f"unknown --suite {suite!r}; known: {', '.join(SUITES)}")
    # seed-major order: every algorithm gets its first seed before any gets a third
    return [(algo, task, seed) for seed in SEEDS for algo, task in SUITES[suite]]


def _name(algo: str, task: str) -> str:
    """The folder of an (algorithm, task) pair: ``sac-Hopper-v5``, ``dqn-MinAtar_Breakout-v1``."""
    return f"{algo}-{task.replace('/', '_')}"


def _finished(folder: Path) -> bool:
    """result.json is written once, when the run has finished."""
    return (folder / "result.json").is_file()


def _start(algo: str, task: str, seed: int, runs: Path) -> tuple[subprocess.Popen, Path]:
    folder = runs / _name(algo, task) / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = ["nice", "-n", "10", sys.executable, "-m", "rlteach", "train", algo, "--env", task]
    cmd += ["--seed", str(seed), "--out", str(folder), "--no-progress"]
    if (folder / "checkpoint.pt").is_file():
        cmd.append("--resume")
    log = open(folder / "stdout.log", "a")
    log.write(f"$ {' '.join(cmd)}  # {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    log.flush()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT), folder


def _store(
    folder: Path, store: Path, algo: str, task: str, seed: int, wall: float | None, jobs: int
) -> None:
    target = store / _name(algo, task)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / "log.csv", target / f"seed{seed}.csv")
    data = json.loads((folder / "result.json").read_text())
    import torch

    from rlteach.bench import _cpu_model

    data["machine"] = (
        f"{_cpu_model()} ({platform.machine()}, {os.cpu_count()} logical cores), one torch thread "
        f"per run, {jobs} run(s) at a time, Python {platform.python_version()}, torch "
        f"{torch.__version__}"
    )
    data["command"] = f"python -m rlteach train {algo} --env {task} --seed {seed}"
    # the process's own wall-clock (None when the run finished in an earlier invocation)
    data["process_wall_seconds"] = None if wall is None else round(wall, 1)
    (target / f"seed{seed}.json").write_text(json.dumps(data) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="mujoco-core", help=f"one of {', '.join(SUITES)}")
    parser.add_argument("--only", nargs="*", default=[], help="ALGO:TASK:SEED runs instead")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--runs", type=Path, default=Path.home() / "rlteach-runs")
    parser.add_argument("--store", type=Path, default=ROOT / "benchmarks" / "mujoco")
    parser.add_argument(
        "--plots-only", action="store_true", help="only redraw the stored runs' figures"
    )
    args = parser.parse_args(argv)
    if args.plots_only:
        plot_store(args.store)
        return 0
    todo = []
    for algo, task, seed in _runs(args.suite, args.only):
        folder = args.runs / _name(algo, task) / f"seed{seed}"
        if _finished(folder):
            if not (args.store / _name(algo, task) / f"seed{seed}.json").is_file():
                _store(folder, args.store, algo, task, seed, wall=None, jobs=args.jobs)
            print(f"done already: {algo} {task} seed {seed}", flush=True)
        else:
            todo.append((algo, task, seed))
    running: list[tuple[subprocess.Popen, Path, tuple, float]] = []
    failed = 0
    while todo or running:
        while todo and len(running) < args.jobs:
            run = todo.pop(0)
            proc, folder = _start(*run, args.runs)
            running.append((proc, folder, run, time.perf_counter()))
            print(f"started {run} in {folder}", flush=True)
        time.sleep(5)
        for item in list(running):
            proc, folder, run, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            wall = time.perf_counter() - t0
            if proc.returncode == 0:
                _store(folder, args.store, *run, wall=wall, jobs=args.jobs)
                print(f"finished {run} in {wall / 60:.1f} min", flush=True)
            else:
                failed += 1
                print(f"FAILED {run} (exit {proc.returncode}); see {folder / 'stdout.log'}")
    plot_store(args.store)
    return 1 if failed else 0


def plot_store(store: Path) -> None:
    """One learning-curve figure per task of the stored runs (``<store>/<task>.png``)."""
    import reproductions

    from rlteach.stored import stored_runs

    runs = stored_runs(store)
    for task in sorted({t for _, t in runs}):
        reproductions.plot_task(runs, task, store / f"{task}.png")
        print(f"drew {store / f'{task}.png'}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
