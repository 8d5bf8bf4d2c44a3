"""Every registered recipe trains in quick mode, logs evaluations, and is reproducible by seed."""

import pytest

from rlteach.bench import REGISTRY
from rlteach.recipes import load_all

load_all()
ENTRIES = sorted(REGISTRY)


def test_recipes_are_registered():
    assert set(ENTRIES) >= {"reinforce-cartpole", "a2c-cartpole", "ppo-cartpole", "ppo-acrobot"}, ENTRIES


@pytest.mark.parametrize("name", ENTRIES)
def test_quick_run_is_seeded_and_logged(name):
    entry = REGISTRY[name]
    first = entry.run(seed=3, quick=True)
    again = entry.run(seed=3, quick=True)
    assert first.algo == entry.algo and first.env_id == entry.env_id and first.seed == 3
    assert first.curve, "a quick run must evaluate at least once"
    steps = [p.env_steps for p in first.curve]
    assert steps == sorted(steps) and steps[-1] > 0
    # Same seed, same learning: identical evaluation returns at identical step counts
    # (wall-clock seconds differ from run to run and are not compared).
    assert [(p.env_steps, p.mean_return) for p in again.curve] == [
        (p.env_steps, p.mean_return) for p in first.curve
    ]
