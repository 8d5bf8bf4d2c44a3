"""One readable training loop per algorithm.

Each recipe module defines ``train(seed, quick=False, progress=True) -> RunResult`` and registers
itself with :func:`rlteach.registry.register_trainable`, so that the notebooks, the command line and
``python -m rlteach bench`` all call the same code. :func:`load_all` imports (and so registers)
every recipe module in this package: a new recipe is a new file here, nothing else to edit.
Modules whose name starts with an underscore, and ``base``, are helpers, not recipes.
"""

import pkgutil
from importlib import import_module
from pathlib import Path

from rlteach.recipes.base import EvalPoint, Evaluator, RunResult, Stopwatch, seed_everything


def recipe_modules() -> tuple[str, ...]:
    """The names of the recipe modules in this package, sorted."""
    here = [str(Path(__file__).parent)]
    names = (m.name for m in pkgutil.iter_modules(here) if not m.ispkg)
    return tuple(sorted(n for n in names if not n.startswith("_") and n != "base"))


def load_all() -> None:
    """Import every recipe module, which registers it with the bench (idempotent)."""
    for name in recipe_modules():
        import_module(f"rlteach.recipes.{name}")


__all__ = [
    "EvalPoint",
    "Evaluator",
    "RunResult",
    "Stopwatch",
    "seed_everything",
    "recipe_modules",
    "load_all",
]
