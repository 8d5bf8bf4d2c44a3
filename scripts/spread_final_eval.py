"""Evaluate the final policies of the stored simple-spread runs on held-out episodes.

    python scripts/spread_final_eval.py --runs /path/to/runs [--episodes 100] [--seed 20000]

The runs are those of ``python scripts/scale_runs.py --suite spread --seeds 0 1 2 3 4`` (MAPPO
and IPPO, five seeds, the recipe's 100,000 team steps: the runs whose curves
``benchmarks/spread-mappo`` and ``benchmarks/spread-ippo`` store); their checkpoints stay outside
the repository. During training each run is evaluated every 10,000 steps on the same 10 episodes
(copies seeded 10,000 to 10,009). This script
plays each run's *final* greedy policy on ``--episodes`` other episodes (copies seeded
``--seed``, ``--seed`` + 1, ...), and the random team and the heuristic on the same episodes,
and writes every episode's team return to ``benchmarks/spread/final-eval.json``: chapter 14
reads that file to check, seed by seed, that each method beats the random team.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from rlteach.checkpoint import load_checkpoint
from rlteach.envs_multiagent import evaluate_team_returns, make_multiagent_env
from rlteach.recipes import mappo

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "benchmarks" / "spread"


def _returns(policy, episodes: int, seed: int, deterministic: bool = True) -> list[float]:
    """One episode per copy, copy e seeded ``seed + e``; ``policy=None`` is the random team, whose
    actions the environment draws from its own generator, seeded by ``seed``."""
    env = make_multiagent_env("simple_spread_v3", episodes, seed=seed)
    try:
        return [round(float(x), 4) for x in evaluate_team_returns(policy, env, deterministic, seed)]
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="scale_runs.py's --runs folder")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20_000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = {
        "episodes": args.episodes,
        "seed": args.seed,
        "command": f"python scripts/spread_final_eval.py --episodes {args.episodes} "
        f"--seed {args.seed}",
        "machine": f"{platform.machine()}, {os.cpu_count()} logical cores, torch {torch.__version__}",
        "random": _returns(None, args.episodes, args.seed, deterministic=False),
        "heuristic": _returns(mappo.nearest_landmark_policy, args.episodes, args.seed),
        "runs": {},
    }
    for algo in ("mappo", "ippo"):
        folder = args.runs / f"{algo}-simple_spread_v3"
        for run in sorted(folder.glob("seed*")):
            data = load_checkpoint(run)
            if not data["finished"]:
                print(f"{run}: not finished, skipped")
                continue
            seed = int(run.name.removeprefix("seed"))
            returns = _returns(data["policy"], args.episodes, args.seed)
            last = (run / "log.csv").read_text().strip().splitlines()[-1].split(",")
            out["runs"].setdefault(algo, {})[str(seed)] = {
                "env_steps": int(data["frames"]),
                "last_evaluation": float(last[2]),  # the run's own 10-episode evaluation
                "returns": returns,
            }
            print(f"{algo} seed {seed}: {sum(returns) / len(returns):.2f} over {len(returns)} episodes")
    r, h = out["random"], out["heuristic"]
    print(f"random {sum(r) / len(r):.2f}, heuristic {sum(h) / len(h):.2f}")
    STORE.mkdir(parents=True, exist_ok=True)
    (STORE / "final-eval.json").write_text(json.dumps(out) + "\n")
    print(f"written {STORE / 'final-eval.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
