"""One readable training loop per algorithm.

Each recipe module defines ``train(seed, quick=False, progress=True) -> RunResult`` and registers
itself with :func:`rlteach.bench.register`, so that the notebooks, the command line and
``python -m rlteach bench`` all call the same code. Importing this package imports every recipe.
The algorithm-family issues add their modules to ``RECIPE_MODULES``.
"""

from importlib import import_module

from rlteach.recipes.base import EvalPoint, RunResult, Stopwatch, seed_everything

RECIPE_MODULES: tuple[str, ...] = ("reinforce", "a2c", "ppo")

for _name in RECIPE_MODULES:
    import_module(f"rlteach.recipes.{_name}")

__all__ = ["EvalPoint", "RunResult", "Stopwatch", "seed_everything", "RECIPE_MODULES"]
