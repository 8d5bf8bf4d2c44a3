"""Run the field-scale benchmark runs (MuJoCo, MinAtar, LunarLander) a few at a time, resumably.

Each run is ``python -m rlteach train ALGO --env TASK --seed S`` at the recipe's own config for
the task (for MuJoCo: 100,000 steps, evaluation every 5,000 steps over 10 episodes; for MinAtar:
a million frames), plus, for an ablation, ``--steps`` and ``--set FIELD=VALUE`` options. Its
checkpoints go to ``--runs`` (outside the repository: they are large and never committed). A run
whose folder holds a checkpoint is continued with ``--resume``, so this script can be started
again after an interruption and picks up where each run stopped; a finished run is skipped.
When a run ends, its ``log.csv`` and ``result.json`` are copied into
``benchmarks/<suite's store>/<entry>/seedS.{csv,json}``: that is what the book and the benchmarks
page read (:mod:`rlteach.stored`).

    python scripts/scale_runs.py --list                              # the suites and their commands
    python scripts/scale_runs.py --suite mujoco --jobs 2             # every MuJoCo entry
    python scripts/scale_runs.py --suite mujoco-truncation --seeds 0 # one seed of an ablation
    python scripts/scale_runs.py --only sac:Hopper-v5:0 --jobs 1     # one run
    python scripts/scale_runs.py --plots-only                        # redraw the figures

An ablation's entries carry a label (``sac-Hopper-v5--truncation-as-termination``) and are
stored in a folder of their own, so that ``stored_runs("mujoco")`` keeps only the recipes' own
configs. Runs are niced, one torch thread each (the recipes' configs say so): two at a time on
two cores.
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SEEDS = (0, 1, 2)
MUJOCO_TASKS = ("Hopper-v5", "HalfCheetah-v5")
MINATAR_GAMES = ("MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1", "MinAtar/Asterix-v1")


def _name(algo: str, task: str, label: str = "") -> str:
    """The folder of an entry: ``sac-Hopper-v5``, ``dqn-MinAtar_Breakout-v1``, and for an
    ablation ``sac-Hopper-v5--truncation-as-termination``."""
    base = f"{algo}-{task.replace('/', '_')}"
    return f"{base}--{label}" if label else base


@dataclass(frozen=True)
class Entry:
    """One (algorithm, task) cell of a suite: the recipe's config for the task, or a labelled
    variant of it (``steps`` replaces the budget; ``sets`` are ``FIELD=VALUE`` for ``--set``)."""

    algo: str
    task: str
    label: str = ""
    steps: int | None = None
    sets: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return _name(self.algo, self.task, self.label)

    def options(self) -> list[str]:
        """The ``train`` options beyond the algorithm, task and seed."""
        opts = [] if self.steps is None else ["--steps", str(self.steps)]
        for item in self.sets:
            opts += ["--set", item]
        return opts


@dataclass(frozen=True)
class Suite:
    store: str
    """the folder under ``benchmarks/`` its runs are stored in"""
    entries: tuple[Entry, ...]
    about: str


def _plain(algos: tuple[str, ...], tasks: tuple[str, ...]) -> tuple[Entry, ...]:
    return tuple(Entry(algo, task) for task in tasks for algo in algos)


SUITES: dict[str, Suite] = {
    "mujoco-core": Suite("mujoco", _plain(("sac", "td3"), ("Hopper-v5",)), "SAC and TD3 on Hopper"),
    "mujoco": Suite("mujoco", _plain(("sac", "td3", "ddpg"), MUJOCO_TASKS), "chapters 10 and 11"),
    "mujoco-ppo": Suite(
        "mujoco-ppo",
        _plain(("ppo",), MUJOCO_TASKS),
        "continuous PPO at 10^6 steps (488 batches of 2,048) with running observation and reward "
        "normalisation, the PPO paper's MuJoCo settings",
    ),
    "mujoco-truncation": Suite(
        "mujoco-truncation",
        (
            Entry(
                "sac", "Hopper-v5", "truncation-as-termination", sets=("bootstrap_truncated=false",)
            ),
        ),
        "Pardo et al. (2018): the time limit treated as a terminal state; the correct runs are "
        "SAC's in the mujoco store",
    ),
    "mujoco-utd": Suite(
        "mujoco-utd",
        (
            Entry("redq", "Hopper-v5", "G5-50k", 50_000, ("updates_per_step=5",)),
            Entry("sac", "Hopper-v5", "G5-50k", 50_000, ("updates_per_step=5",)),
        ),
        "chapter 12: REDQ (N=10, M=2) against SAC at the same update-to-data ratio, UTD=5 and 50,000 "
        "steps instead of the paper's UTD=20 and 100,000 (REDQ's paper setting costs about 14 CPU-hours "
        "a run here)",
    ),
    "mujoco-crossq": Suite(
        "mujoco-crossq",
        (
            Entry("crossq", "Hopper-v5", "critics-256", sets=("critic_cells=256,256",)),
            Entry(
                "crossq",
                "Hopper-v5",
                "critics-256-separate-batches",
                sets=("critic_cells=256,256", "joint_batch=false"),
            ),
        ),
        "chapter 13: CrossQ with [256, 256] critics (the paper's 2048-wide critics cost 0.44 "
        "CPU-s an update here, 12 CPU-hours a run) against SAC's [256, 256] at equal steps, and "
        "the ablation of its joint forward pass (current and next pairs normalised as separate "
        "batches)",
    ),
    "minatar": Suite("minatar", _plain(("dqn", "c51", "ppo"), MINATAR_GAMES), "chapters 6-8"),
    "minatar-ablations": Suite(
        "minatar-ablations",
        (
            Entry("dqn", MINATAR_GAMES[0], "double", sets=("double_dqn=true",)),
            Entry("dqn", MINATAR_GAMES[0], "no-target", sets=("target_update=none",)),
            Entry("dqn", MINATAR_GAMES[0], "no-replay", sets=("buffer_size=32",)),
            Entry("c51", MINATAR_GAMES[0], "support-10", sets=("v_min=-10.0", "v_max=10.0")),
        ),
        "chapter 7's Double DQN and the ablations of chapters 6 and 8 on Breakout: no target "
        "network, no replay (a buffer of one minibatch, the 32 latest transitions), C51 on a "
        "support of [-10, 10] instead of [-100, 100]",
    ),
    "lunarlander": Suite("lunarlander", _plain(("dqn", "ppo"), ("LunarLander-v3",)), "issue 16"),
    "spread": Suite(
        "spread",
        _plain(("mappo", "ippo"), ("simple_spread_v3",)),
        "chapter 14: MAPPO and IPPO on MPE simple spread at the recipe's 100,000 team steps, the "
        "runs of the bench's spread-mappo and spread-ippo results again, kept for their final "
        "policies (scripts/spread_final_eval.py plays them on held-out episodes)",
    ),
}


def _runs(suite: str | None, only: list[str], seeds: tuple[int, ...]) -> list[tuple[Entry, int]]:
    if only:
        runs = []
        for item in only:
            parts = item.split(":")
            if len(parts) != 3 or not parts[2].isdigit():
                raise SystemExit(f"--only takes ALGO:TASK:SEED, e.g. sac:Hopper-v5:0; got {item!r}")
            runs.append((Entry(parts[0], parts[1]), int(parts[2])))
        return runs
    if suite not in SUITES:
        raise SystemExit(f"unknown --suite {suite!r}; known: {', '.join(SUITES)}")
    # seed-major order: every entry gets its first seed before any gets a third
    return [(entry, seed) for seed in seeds for entry in SUITES[suite].entries]


def _finished(folder: Path) -> bool:
    """result.json is written once, when the run has finished."""
    return (folder / "result.json").is_file()


def _command(entry: Entry, seed: int) -> list[str]:
    """The ``train`` command of one run, as the stored result records it (without ``--out``)."""
    return [
        "python", "-m", "rlteach", "train", entry.algo, "--env", entry.task, "--seed", str(seed),
        *entry.options(),
    ]  # fmt: skip


def _start(entry: Entry, seed: int, runs: Path) -> tuple[subprocess.Popen, Path]:
    folder = runs / entry.name / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = ["nice", "-n", "10", sys.executable, *_command(entry, seed)[1:]]
    cmd += ["--out", str(folder), "--no-progress"]
    if (folder / "checkpoint.pt").is_file():
        cmd.append("--resume")
    log = open(folder / "stdout.log", "a")
    log.write(f"$ {' '.join(cmd)}  # {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    log.flush()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT), folder


def _store(
    folder: Path, store: Path, entry: Entry, seed: int, wall: float | None, jobs: int
) -> None:
    target = store / entry.name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / "log.csv", target / f"seed{seed}.csv")
    data = json.loads((folder / "result.json").read_text())
    import torch

    if "config" not in data and (folder / "checkpoint.pt").is_file():
        # results written before train put the config in result.json: take the checkpoint's
        saved = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)
        data["config"] = saved["meta"]["config"]

    from rlteach.bench import cpu_model

    data["machine"] = (
        f"{cpu_model()} ({platform.machine()}, {os.cpu_count()} logical cores), one torch thread "
        f"per run, {jobs} run(s) at a time, Python {platform.python_version()}, torch "
        f"{torch.__version__}"
    )
    data["command"] = " ".join(_command(entry, seed))
    data["variant"] = entry.label
    # the process's own wall-clock (None when the run finished in an earlier invocation)
    data["process_wall_seconds"] = None if wall is None else round(wall, 1)
    (target / f"seed{seed}.json").write_text(json.dumps(data) + "\n")


def _list() -> None:
    for name, suite in SUITES.items():
        print(f"{name} (benchmarks/{suite.store}/): {suite.about}")
        for entry in suite.entries:
            print(f"    {' '.join(_command(entry, 0)[3:])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="mujoco-core", help=f"one of {', '.join(SUITES)}")
    parser.add_argument("--only", nargs="*", default=[], help="ALGO:TASK:SEED runs instead")
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS), help="default 0 1 2")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--runs", type=Path, default=Path.home() / "rlteach-runs")
    parser.add_argument(
        "--store", type=Path, default=None, help="default: benchmarks/<the suite's store>"
    )
    parser.add_argument("--list", action="store_true", help="list the suites and their commands")
    parser.add_argument(
        "--plots-only", action="store_true", help="only redraw the stored runs' figures"
    )
    args = parser.parse_args(argv)
    if args.list:
        _list()
        return 0
    if args.store is None:
        suite = SUITES.get(args.suite)
        args.store = ROOT / "benchmarks" / ("mujoco" if args.only or suite is None else suite.store)
    if args.plots_only:
        plot_store(args.store)
        return 0
    todo = []
    for entry, seed in _runs(args.suite, args.only, tuple(args.seeds)):
        folder = args.runs / entry.name / f"seed{seed}"
        if _finished(folder):
            if not (args.store / entry.name / f"seed{seed}.json").is_file():
                _store(folder, args.store, entry, seed, wall=None, jobs=args.jobs)
            print(f"done already: {entry.name} seed {seed}", flush=True)
        else:
            todo.append((entry, seed))
    running: list[tuple[subprocess.Popen, Path, tuple, float]] = []
    failed = 0
    while todo or running:
        while todo and len(running) < args.jobs:
            run = todo.pop(0)
            proc, folder = _start(*run, args.runs)
            running.append((proc, folder, run, time.perf_counter()))
            print(f"started {run[0].name} seed {run[1]} in {folder}", flush=True)
        time.sleep(5)
        for item in list(running):
            proc, folder, run, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            wall = time.perf_counter() - t0
            if proc.returncode == 0:
                _store(folder, args.store, *run, wall=wall, jobs=args.jobs)
                print(f"finished {run[0].name} seed {run[1]} in {wall / 60:.1f} min", flush=True)
            else:
                failed += 1
                print(f"FAILED {run[0].name} seed {run[1]} (exit {proc.returncode}); see "
                      f"{folder / 'stdout.log'}")  # fmt: skip
    plot_store(args.store)
    return 1 if failed else 0


def plot_store(store: Path) -> None:
    """One learning-curve figure per task of the stored runs (``<store>/<task>.png``)."""
    import reproductions

    from rlteach.stored import stored_runs

    runs = stored_runs(store)
    for task in sorted({t for _, t in runs}):
        out = store / f"{task.replace('/', '_')}.png"
        reproductions.plot_task(runs, task, out)
        print(f"drew {out}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
