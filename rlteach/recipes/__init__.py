"""One readable training loop per algorithm.

Each recipe module defines ``train(seed, quick=False, progress=True) -> RunResult`` and registers
itself with :func:`rlteach.bench.register`, so that the notebooks, the command line and
``python -m rlteach bench`` all call the same code. :func:`load_all` imports (and so registers)
every recipe; the algorithm-family issues add their modules to ``RECIPE_MODULES``.
"""

from importlib import import_module

from rlteach.recipes.base import EvalPoint, Evaluator, RunResult, Stopwatch, seed_everything

RECIPE_MODULES: tuple[str, ...] = ("reinforce", "a2c", "ppo")


def load_all() -> None:
    """Import every recipe module, which registers it with the bench (idempotent)."""
    for name in RECIPE_MODULES:
        import_module(f"rlteach.recipes.{name}")


__all__ = [
    "EvalPoint",
    "Evaluator",
    "RunResult",
    "Stopwatch",
    "seed_everything",
    "RECIPE_MODULES",
    "load_all",
]
