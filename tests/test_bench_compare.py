"""``python -m rlteach bench --compare sb3``: both sides run, on the same seeds and protocol."""

import json

import pytest

from rlteach import bench
from rlteach.compare import sb3


def test_ratios_are_rlteach_over_sb3():
    ours = {"median_steps_to_solve": 3000, "median_seconds_to_solve": 2.0}
    theirs = {
        "seeds": 3,
        "seeds_solved": 2,
        "median_steps_to_solve": 6000,
        "median_seconds_to_solve": 8.0,
        "final_return_mean": 500.0,
        "final_return_std": 0.0,
    }
    row = bench.compare_row(ours, theirs)
    assert row["steps_ratio"] == pytest.approx(0.5)
    assert row["seconds_ratio"] == pytest.approx(0.25)
    assert bench.compare_row({**ours, "median_steps_to_solve": None}, theirs)["steps_ratio"] is None


def test_missing_extra_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(sb3, "stable_baselines3", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[bench\]"'):
        bench.run_bench(["ppo-cartpole"], seeds=1, quick=True, compare="sb3", progress=False)


def test_sb3_tasks_use_the_recipes_evaluation_interval():
    from rlteach.recipes import load_all
    from rlteach.recipes.base import TRAINABLE

    load_all()
    for task in sb3.SB3_TASKS.values():
        assert task.entry in bench.REGISTRY or task.entry.split("-")[0] not in TRAINABLE
        recipe = TRAINABLE.get(task.entry.split("-")[0])
        if recipe is not None and task.env_id in recipe.configs:
            assert task.eval_every == recipe.configs[task.env_id].eval_every, task.entry


def test_compare_without_names_runs_the_entries_that_have_a_counterpart():
    from rlteach.recipes import load_all

    load_all()
    names = [e.name for e in bench.entries_to_run(None, compare="sb3")]
    assert names == [e.name for e in bench.select(None) if e.name in sb3.SB3_TASKS]
    assert set(names) == set(sb3.SB3_TASKS)  # every SB3 task is a registered entry
    assert "ppo-cartpole" in names and "td3-pendulum" in names and "redq-pendulum" not in names
    # named entries run as named, counterpart or not; no compare: everything
    assert [e.name for e in bench.entries_to_run(["redq-pendulum"], "sb3")] == ["redq-pendulum"]
    assert len(bench.entries_to_run(None)) == len(bench.REGISTRY)


@pytest.mark.skipif(
    not sb3.available(),
    reason="stable-baselines3 / sb3-contrib not installed (pip install -e '.[bench]')",
)
def test_quick_compare_reports_both_sides(tmp_path):
    from rlteach.recipes import load_all

    load_all()
    rows = bench.run_bench(
        ["ppo-cartpole"], seeds=1, quick=True, out_dir=tmp_path, progress=False, compare="sb3"
    )
    (row,) = rows
    assert row["compare"]["seeds"] == row["seeds"] == 1
    assert row["compare"]["library"].startswith("Stable-Baselines3 ")
    assert "ppo.yml, CartPole-v1" in row["compare"]["hyperparameters"]
    report = json.loads((tmp_path / "results.json").read_text())
    ours = report["runs"]["ppo-cartpole"][0]["curve"]
    theirs = report["compare_runs"]["ppo-cartpole"][0]["curve"]
    # Same protocol: evaluations at the same environment-step counts (both collect 8 × 32 per
    # batch and evaluate every 2048), until one side solves and stops.
    ours_steps, theirs_steps = [p["env_steps"] for p in ours], [p["env_steps"] for p in theirs]
    n = min(len(ours_steps), len(theirs_steps))
    assert ours_steps[:n] == theirs_steps[:n] and ours_steps[0] == 2048
    assert theirs_steps in ([2048], [2048, 4096])
    assert all(p["seconds"] > 0 for p in theirs)
    text = (tmp_path / "results.md").read_text()
    assert "--compare sb3" in text and "rlteach beside Stable-Baselines3" in text
    assert (tmp_path / "ppo-cartpole.png").stat().st_size > 10_000
