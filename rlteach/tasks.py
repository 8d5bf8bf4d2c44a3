"""The tasks the book trains on and the returns that count as solving them (a leaf module).

Read by the recipes (when to stop), the benchmark (what to time), the SB3 comparison and the
command line; it imports nothing of rlteach, so any of them can import it.
"""

from __future__ import annotations

# Mean return of 10 deterministic evaluation episodes that counts as solving each task.
SOLVED_THRESHOLDS: dict[str, float] = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "Pendulum-v1": -200.0,
    "LunarLander-v3": 200.0,
}

MUJOCO_MILESTONES: dict[str, float] = {
    "Hopper-v5": 1_000.0,
    "HalfCheetah-v5": 3_000.0,
}
"""Returns that the MuJoCo bench entries are timed to, in steps and seconds. They are not
"solved" levels (Gymnasium's reward thresholds, 3,800 and 4,800, are levels of 10^6-step runs)
but what published runs reach within the protocol's 100,000 steps: about 1,164 for SAC on Hopper
(Spinning Up's benchmark) and 5,514 for TD3 on HalfCheetah (the TD3 authors' curves), see
benchmarks/references.json. On Hopper, 1,000 also means an episode of 1,000 steps kept upright."""


def solved_threshold(env_id: str) -> float:
    """The task's solved threshold; ``inf`` where it has none (a run then never stops early)."""
    return SOLVED_THRESHOLDS.get(env_id, float("inf"))


def bench_threshold(env_id: str) -> float | None:
    """What a bench entry on this task is timed to: its solved threshold, else its MuJoCo
    milestone, else None (the entry must give its own)."""
    return SOLVED_THRESHOLDS.get(env_id, MUJOCO_MILESTONES.get(env_id))
