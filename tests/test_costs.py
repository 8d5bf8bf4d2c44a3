"""rlteach.costs (``python -m rlteach bench --costs``): what each number measures, not how fast
this machine is (no timing assertion: the targets are read from the report)."""

from __future__ import annotations

import json

import pytest
import torch

from rlteach import costs
from rlteach.__main__ import main


def _fake_medians(seconds):
    """Stand-in for _interleaved_medians: runs each function once, reports ``seconds``."""

    def medians(fns, repeats):
        for fn in fns:
            fn()
        return list(seconds)

    return medians


def test_interleaved_medians_alternate_the_two_sides():
    calls = []
    medians = costs._interleaved_medians([lambda: calls.append("a"), lambda: calls.append("b")], 3)
    assert calls == ["a", "b"] * 3 and len(medians) == 2 and all(m >= 0 for m in medians)


def test_floor_ratio_is_the_quotient_of_the_two_times(monkeypatch):
    # rlteach's seconds per repeat, then the floor's
    monkeypatch.setattr(costs, "_interleaved_medians", _fake_medians([4e-3, 1e-3]))
    row = costs.collection_floor(2, steps=4, repeats=1)
    assert row["num_envs"] == 2
    assert row["rlteach_us_per_frame"] == pytest.approx(1e6 * 4e-3 / 8)
    assert row["floor_us_per_frame"] == pytest.approx(1e6 * 1e-3 / 8)
    assert row["ratio"] == pytest.approx(4.0)


def test_the_floor_runs_the_same_network_the_actor_wraps():
    # the floor's forward goes through the very nn.Module the TensorDict actor wraps
    env, actor = costs._actor("CartPole-v1", 3)
    net = actor.module[0].module
    assert isinstance(net, torch.nn.Module) and not hasattr(net, "in_keys")
    out = net(torch.zeros(3, env.observation_dim))
    assert out.shape == (3, env.n_actions)
    env.close()


def test_offpolicy_ratio_is_the_quotient_and_both_sides_step(monkeypatch):
    from rlteach.recipes import _offpolicy

    steps_seen = []
    original = _offpolicy.StepCollector.__iter__

    def counting(self):
        for transition in original(self):
            steps_seen.append(self.frames)
            yield transition

    monkeypatch.setattr(_offpolicy.StepCollector, "__iter__", counting)
    monkeypatch.setattr(costs, "_interleaved_medians", _fake_medians([6e-3, 2e-3]))
    row = costs.offpolicy_floor(steps=3, repeats=1, warmup=260)
    # the warm-up's random steps, then rlteach's warm-up call and its timed call, 3 steps each
    assert steps_seen == list(range(1, 260 + 2 * 3 + 1))
    assert row["env_id"] == "Pendulum-v1"
    assert row["rlteach_us_per_step"] == pytest.approx(1e6 * 6e-3 / 3)
    assert row["floor_us_per_step"] == pytest.approx(1e6 * 2e-3 / 3)
    assert row["ratio"] == pytest.approx(3.0)


def test_the_buffer_is_filled_to_its_size_before_sampling(monkeypatch):
    from rlteach import buffers

    sizes = []
    original = buffers.ReplayBuffer.sample

    def spy(self, batch_size):
        sizes.append(len(self))
        return original(self, batch_size)

    monkeypatch.setattr(buffers.ReplayBuffer, "sample", spy)
    assert costs.buffer_sample_seconds(1_500, batch_size=8, repeats=2) > 0
    assert set(sizes) == {1_500}


def test_markdown_tables_by_hand():
    report = {
        "floor": [{"num_envs": 8, "rlteach_us_per_frame": 30.0, "floor_us_per_frame": 20.0,
                   "ratio": 1.5}],
        "offpolicy": {"env_id": "Pendulum-v1", "rlteach_us_per_step": 900.0,
                      "floor_us_per_step": 600.0, "ratio": 1.5},
        "fps": [{"num_envs": 64, "fps": 12345.6}],
        "buffer": [{"size": 1_000_000, "sample_us": 51.25}],
    }  # fmt: skip
    text = costs.costs_markdown(report)
    assert "| 8 | 30.0 | 20.0 | 1.50 |" in text
    assert "| DDPG, Pendulum-v1 | 900.0 | 600.0 | 1.50 |" in text
    assert "| 64 | 12,346 |" in text
    assert "| 1,000,000 | 51.2 |" in text


def test_bench_costs_writes_its_report(tmp_path, monkeypatch):
    fake = {"floor": [], "fps": [], "buffer": [{"size": 10, "sample_us": 1.0}]}
    monkeypatch.setattr(costs, "measure_costs", lambda quick=False: dict(fake))
    assert main(["bench", "--costs", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "costs.json").read_text())
    assert report["buffer"] == fake["buffer"] and "logical cores" in report["machine"]
    assert "| 10 | 1.0 |" in (tmp_path / "costs.md").read_text()
