"""rlteach: deep reinforcement learning written line by line against its equations.

The package mirrors TorchRL's objectives (same arguments, keys and numbers) while keeping every
loss, value estimator and target-network updater short enough to read beside its derivation.
TorchRL itself is never imported here; the tests use it as the numerical oracle.
"""

import os

__version__ = "0.1.0"


def quick_mode() -> bool:
    """True when ``RLTEACH_QUICK`` asks for the small training budgets used in CI and class."""
    return os.environ.get("RLTEACH_QUICK", "0").strip().lower() not in ("", "0", "false", "no")
