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


# --- RL-Zoo's settings, read from the installed rl-zoo3 (never transcribed) -------------------

zoo_installed = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("rl_zoo3") is None,
    reason="rl-zoo3 not installed (pip install -e '.[bench]')",
)


def _zoo_yml(algo: str) -> dict:
    """The zoo's file, located and read here independently of rlteach.compare.sb3."""
    import importlib.util
    from pathlib import Path

    import yaml

    spec = importlib.util.find_spec("rl_zoo3")
    folder = Path(list(spec.submodule_search_locations)[0]) / "hyperparams"
    return yaml.safe_load((folder / f"{algo}.yml").read_text())


def _same(actual, expected) -> bool:
    if callable(actual):  # a schedule: compare its values over training
        return all(actual(p) == pytest.approx(expected(p)) for p in (1.0, 0.5, 0.1, 0.0))
    return actual == expected


@zoo_installed
def test_each_tasks_settings_are_its_zoo_entry_after_parsing():
    for task in sb3.SB3_TASKS.values():
        # every compared task has one (a MuJoCo v5 task reads the zoo's v4 entry)
        entry = dict(_zoo_yml(task.algo.lower())[task.zoo_env_id or task.env_id])
        settings = sb3.zoo_settings(task)
        assert settings.source.startswith(f"rl-zoo3 {sb3.zoo_version()} hyperparams/")
        assert settings.policy == entry.pop("policy")
        assert settings.n_timesteps == (task.timesteps or int(entry.pop("n_timesteps")))
        entry.pop("n_timesteps", None)
        assert settings.n_envs == entry.pop("n_envs", 1)
        assert settings.normalize == bool(entry.pop("normalize", False))
        if settings.normalize:
            assert settings.normalize_kwargs == {"gamma": entry.get("gamma", 0.99)}
        noise = (entry.pop("noise_type"), entry.pop("noise_std")) if "noise_type" in entry else None
        assert settings.action_noise == noise
        expected = {}
        for key, value in entry.items():
            if isinstance(value, str) and value.startswith("lin_"):
                initial = float(value[4:])
                expected[key] = lambda p, initial=initial: p * initial
            elif key == "policy_kwargs":
                expected[key] = eval(value, {"dict": dict})
            elif key == "train_freq" and isinstance(value, list):
                expected[key] = tuple(value)
            else:
                expected[key] = value
        assert set(settings.hyperparams) == set(expected), task.entry
        for key, value in expected.items():
            assert _same(settings.hyperparams[key], value), (task.entry, key)


@zoo_installed
def test_the_dqn_entries_are_the_current_tuned_ones():
    """The regression this module once had: an old "almost tuned" transcription for DQN."""
    cartpole = sb3.zoo_settings(sb3.SB3_TASKS["dqn-cartpole"])
    assert cartpole.hyperparams["learning_rate"] == _zoo_yml("dqn")["CartPole-v1"]["learning_rate"]
    assert cartpole.hyperparams["policy_kwargs"] == {"net_arch": [256, 256]}


def test_a_schedule_string_becomes_the_zoos_linear_schedule():
    schedule = sb3.parse_schedule("lin_0.001")
    assert callable(schedule)
    assert schedule(1.0) == pytest.approx(0.001)  # SB3 passes the progress remaining, 1 → 0
    assert schedule(0.25) == pytest.approx(0.00025)
    assert schedule(0.0) == 0.0
    assert sb3.parse_schedule(3e-4) == 3e-4
    with pytest.raises(ValueError, match="lin_"):
        sb3.parse_schedule("exp_0.1")
    parsed = sb3.parse_zoo_entry(
        {"n_timesteps": 1e5, "learning_rate": "lin_7.3e-4", "clip_range": "lin_0.2",
         "clip_range_vf": -1, "policy": "MlpPolicy"}
    )  # fmt: skip
    assert parsed["hyperparams"]["learning_rate"](0.5) == pytest.approx(3.65e-4)
    assert parsed["hyperparams"]["clip_range"](1.0) == pytest.approx(0.2)
    assert parsed["hyperparams"]["clip_range_vf"] == -1  # negative: left alone, as the zoo
    assert parsed["n_timesteps"] == 100_000 and isinstance(parsed["n_timesteps"], int)


def test_the_zoos_other_preprocessing():
    parsed = sb3.parse_zoo_entry(
        {
            "n_timesteps": 20000,
            "policy": "MlpPolicy",
            "n_envs": 4,
            "gamma": 0.98,
            "normalize": "dict(norm_obs=True, norm_reward=False)",
            "noise_type": "ornstein-uhlenbeck",
            "noise_std": 0.5,
            "train_freq": [1, "episode"],
            "frame_stack": 4,
            "policy_kwargs": "dict(log_std_init=-2, net_arch=[64, 64], activation_fn=nn.ReLU)",
        }
    )
    assert parsed["n_envs"] == 4 and parsed["frame_stack"] == 4
    assert parsed["normalize"] is True
    assert parsed["normalize_kwargs"] == {"norm_obs": True, "norm_reward": False, "gamma": 0.98}
    assert parsed["action_noise"] == ("ornstein-uhlenbeck", 0.5)
    assert parsed["hyperparams"]["train_freq"] == (1, "episode")
    assert parsed["hyperparams"]["policy_kwargs"]["activation_fn"] is __import__("torch").nn.ReLU
    assert set(parsed["hyperparams"]) == {"gamma", "train_freq", "policy_kwargs"}
    with pytest.raises(ValueError, match="env_wrapper"):
        sb3.parse_zoo_entry({"n_timesteps": 1, "env_wrapper": "gymnasium.wrappers.X"})


@zoo_installed
def test_a_task_missing_from_the_zoo_runs_on_sb3_defaults_labelled(monkeypatch):
    task = sb3.SB3Task("dqn-pendulum", "stable_baselines3", "DQN", "Pendulum-v1", 500, 600)
    assert "Pendulum-v1" not in _zoo_yml("dqn")
    settings = sb3.zoo_settings(task, fallback_timesteps=12_345)
    assert settings.source.startswith("SB3 defaults")
    assert "dqn.yml has no Pendulum-v1 entry" in settings.source
    assert settings.hyperparams == {} and settings.n_envs == 1 and not settings.normalize
    assert settings.n_timesteps == 12_345
    # without a budget given: the rlteach recipe's
    from rlteach.recipes.base import TRAINABLE

    monkeypatch.setattr(sb3, "read_zoo_entry", lambda algo, env_id: None)
    settings = sb3.zoo_settings(sb3.SB3_TASKS["ppo-cartpole"])
    assert settings.source.startswith("SB3 defaults")
    assert settings.n_timesteps == TRAINABLE["ppo"].configs["CartPole-v1"].total_frames


def test_no_transcribed_hyperparameter_remains():
    import re
    from pathlib import Path

    source = Path(sb3.__file__).read_text()
    for setting in ("learning_rate=", "batch_size=", "gamma=", "n_steps=", "net_arch",
                    "buffer_size=", "ent_coef=", "target_update_interval=", "lin(0"):  # fmt: skip
        assert setting not in source, f"{setting} in rlteach/compare/sb3.py: read it from the zoo"
    assert not re.search(r"n_timesteps\s*=\s*\d", source), "a transcribed budget"


def test_missing_zoo_gives_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "rl_zoo3" else real(name, *a)
    )
    assert not sb3.available()
    with pytest.raises(ImportError, match="rl-zoo3"):
        sb3.zoo_dir()
