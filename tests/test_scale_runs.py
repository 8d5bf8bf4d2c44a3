"""scripts/scale_runs.py: every suite's entry is a command the CLI accepts, and an ablation
changes what it says it changes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import scale_runs  # noqa: E402

from rlteach.train import apply_overrides, parse_set_options, resolve_config  # noqa: E402

ENTRIES = [
    pytest.param(suite, entry, id=f"{name}:{entry.name}")
    for name, suite in scale_runs.SUITES.items()
    for entry in suite.entries
]


@pytest.mark.parametrize("suite,entry", ENTRIES)
def test_every_entry_runs_the_tasks_own_config_with_options_that_apply(suite, entry):
    recipe, cfg = resolve_config(entry.algo, entry.task)
    # the task has a config of its own (cited in the recipe), not the default task's with env_id
    assert entry.task in recipe.configs, f"{entry.algo} has no config for {entry.task}"
    assert entry.label or not (entry.sets or entry.steps), "a variant needs a label"
    changed = apply_overrides(cfg, parse_set_options(list(entry.sets)))
    for item in entry.sets:
        field = item.split("=")[0]
        # an ablation that sets a field to the value it already has would be a silent copy
        assert getattr(changed, field) != getattr(cfg, field), f"{item} changes nothing"
    if entry.steps is not None:
        assert 0 < entry.steps < cfg.total_frames


def test_labelled_runs_are_stored_apart_from_the_recipes_own():
    for suite in scale_runs.SUITES.values():
        names = [e.name for e in suite.entries]
        assert len(names) == len(set(names))
        labelled = {bool(e.label) for e in suite.entries}
        # a store holds either the recipes' own configs or ablations, so stored_runs() of the
        # main suites never mixes an ablation into a reproduction
        assert len(labelled) == 1, suite.store
    plain_stores = {s.store for s in scale_runs.SUITES.values() if not s.entries[0].label}
    ablation_stores = {s.store for s in scale_runs.SUITES.values() if s.entries[0].label}
    assert not plain_stores & ablation_stores


def test_the_command_names_every_option_and_the_folder_is_safe():
    entry = scale_runs.Entry("dqn", "MinAtar/Breakout-v1", "no-target", 1000, ("a=1", "b=2"))
    assert entry.name == "dqn-MinAtar_Breakout-v1--no-target"
    assert scale_runs._command(entry, 2) == [
        "python", "-m", "rlteach", "train", "dqn", "--env", "MinAtar/Breakout-v1", "--seed", "2",
        "--steps", "1000", "--set", "a=1", "--set", "b=2",
    ]  # fmt: skip
    runs = scale_runs._runs("mujoco", [], (0, 1))
    assert [seed for _, seed in runs] == [0] * 6 + [1] * 6  # seed-major
    with pytest.raises(SystemExit, match="ALGO:TASK:SEED"):
        scale_runs._runs(None, ["sac:Hopper-v5"], (0,))
