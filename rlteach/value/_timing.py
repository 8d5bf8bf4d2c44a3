"""Wall-clock comparison of GAE implementations: rlteach's loop, rlteach's scan twin, TorchRL's.

Used by ``python -m rlteach bench --estimators``. TorchRL is imported inside the function only and
skipped when it is not installed.
"""

from __future__ import annotations

import time

import torch

from rlteach.value.functional import (
    generalized_advantage_estimate,
    vec_generalized_advantage_estimate,
)


def _best_of(fn, repeats: int) -> float:
    """Smallest wall-clock time of ``repeats`` calls (after one warm-up call), in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def time_estimators(
    T: int = 1000, B: int = 8, repeats: int = 5, gamma: float = 0.99, lmbda: float = 0.95
) -> list[dict]:
    """Time GAE on one random ``[B, T, 1]`` batch with dones; one row per implementation.

    Returns rows ``{"name", "seconds", "ratio_vs_torchrl"}``, where ``seconds`` is the best of
    ``repeats`` runs and ``ratio_vs_torchrl`` is seconds / TorchRL's vectorised GAE seconds
    (``None`` when TorchRL is not installed).
    """
    g = torch.Generator().manual_seed(0)
    shape = (B, T, 1)
    reward, value, next_value = (torch.randn(shape, generator=g) for _ in range(3))
    done = torch.rand(shape, generator=g) < 0.02
    terminated = done & (torch.rand(shape, generator=g) < 0.5)
    args = (gamma, lmbda, value, next_value, reward, done, terminated)

    candidates = [
        ("rlteach loop GAE", lambda: generalized_advantage_estimate(*args)),
        ("rlteach scan GAE (vectorised)", lambda: vec_generalized_advantage_estimate(*args)),
    ]
    try:
        from torchrl.objectives.value import functional as torchrl_functional
    except ImportError:
        torchrl_functional = None
    if torchrl_functional is not None:
        candidates += [
            (
                "torchrl loop GAE",
                lambda: torchrl_functional.generalized_advantage_estimate(*args),
            ),
            (
                "torchrl vectorised GAE",
                lambda: torchrl_functional.vec_generalized_advantage_estimate(*args),
            ),
        ]

    with torch.no_grad():
        rows = [{"name": name, "seconds": _best_of(fn, repeats)} for name, fn in candidates]
    reference = next((r["seconds"] for r in rows if r["name"] == "torchrl vectorised GAE"), None)
    for row in rows:
        row["ratio_vs_torchrl"] = None if reference is None else row["seconds"] / reference
    return rows
