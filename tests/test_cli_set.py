"""``python -m rlteach train ... --set FIELD=VALUE`` and the truncation ablation it drives."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from rlteach.__main__ import main
from rlteach.checkpoint import load_checkpoint
from rlteach.recipes import _offpolicy, sac
from rlteach.train import TrainError, apply_overrides, parse_set_options


def test_values_are_parsed_as_the_fields_types():
    cfg = apply_overrides(
        sac.SACConfig(),
        {
            "num_cells": "32, 16",  # tuple[int, ...]
            "bootstrap_truncated": "False",  # bool
            "batch_size": "64",  # int
            "tau": "0.02",  # float
            "target_entropy": "-2",  # float | str: the float first
            "loss_function": "smooth_l1",  # str
        },
    )
    assert cfg.num_cells == (32, 16)
    assert cfg.bootstrap_truncated is False
    assert cfg.batch_size == 64 and cfg.tau == 0.02
    assert cfg.target_entropy == -2.0 and isinstance(cfg.target_entropy, float)
    assert apply_overrides(cfg, {"target_entropy": "auto"}).target_entropy == "auto"
    assert cfg.loss_function == "smooth_l1"
    assert apply_overrides(cfg, None) is cfg


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"num_cell": "1"}, "has no field 'num_cell'. Did you mean num_cells"),
        ({"total_frames": "5"}, "use --steps"),
        ({"env_id": "Hopper-v5"}, "use --env"),
        ({"batch_size": "many"}, "batch_size is <class 'int'>"),
        ({"bootstrap_truncated": "maybe"}, "expected true or false"),
        ({"num_cells": "a,b"}, "Example: --set num_cells=64,64"),
    ],
)
def test_bad_overrides_say_what_to_write(overrides, message):
    with pytest.raises(TrainError, match=message.replace("(", r"\(").replace("[", r"\[")):
        apply_overrides(sac.SACConfig(), overrides)


def test_set_options_are_field_value_pairs_given_once():
    assert parse_set_options(["a=1", "b = x,y"]) == {"a": "1", "b": "x,y"}
    assert parse_set_options(None) is None
    with pytest.raises(TrainError, match="FIELD=VALUE"):
        parse_set_options(["a"])
    with pytest.raises(TrainError, match="given twice"):
        parse_set_options(["a=1", "a=2"])


def test_cli_set_is_kept_in_the_checkpoint_and_refused_when_resuming_otherwise(
    tmp_path, capsys
):
    out = tmp_path / "run"
    args = ["train", "sac", "--out", str(out), "--steps", "200", "--no-progress"]
    assert main([*args, "--set", "num_cells=16,16", "--set", "warmup_steps=100"]) == 0
    meta = load_checkpoint(out / "checkpoint.pt")["meta"]
    assert meta["overrides"] == {"num_cells": "16,16", "warmup_steps": "100"}
    assert meta["config"]["num_cells"] == (16, 16) and meta["config"]["warmup_steps"] == 100
    capsys.readouterr()
    resume = ["train", "sac", "--out", str(out), "--resume", "--no-progress"]
    assert main([*resume, "--set", "num_cells=8,8"]) == 2
    assert "--set {'num_cells': '8,8'} (checkpoint:" in capsys.readouterr().err
    assert main(resume) == 0  # the checkpoint's overrides are used


def test_a_bad_set_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    assert main(["train", "sac", "--out", str(out), "--set", "nope=1", "--no-progress"]) == 2
    assert "has no field 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("bootstrap", [True, False])
def test_truncation_is_stored_as_termination_only_in_the_ablation(monkeypatch, bootstrap):
    """Pendulum-v1 cuts every episode at 200 steps and never terminates: bootstrapping keeps
    terminated False everywhere; the ablation stores each cut as a termination."""
    stored = []

    class Recording(_offpolicy.ReplayBuffer):
        def extend(self, td):
            stored.append(td.get(("next", "terminated")).clone())
            return super().extend(td)

    monkeypatch.setattr(_offpolicy, "ReplayBuffer", Recording)
    cfg = replace(
        sac.SACConfig(), quick_frames=400, num_cells=(8, 8), eval_episodes=1,
        bootstrap_truncated=bootstrap,
    )
    sac.train(seed=0, quick=True, progress=False, cfg=cfg)
    terminated = torch.cat(stored).flatten()
    assert len(terminated) == 400
    expected = torch.zeros(400, dtype=torch.bool)
    if not bootstrap:
        expected[[199, 399]] = True  # steps 200 and 400 end an episode by the time limit
    assert torch.equal(terminated, expected)
