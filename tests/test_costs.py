"""rlteach.costs (``python -m rlteach bench --costs``): what each number measures, not how fast
this machine is (no timing assertion: the targets are read from the report)."""

from __future__ import annotations

import json

import pytest
import torch

from rlteach import costs
from rlteach.__main__ import main


def test_floor_ratio_is_the_quotient_of_the_two_times(monkeypatch):
    times = iter([4e-3, 1e-3])  # rlteach's repeat, then the floor's (seconds per repeat)
    monkeypatch.setattr(costs, "_median_seconds", lambda fn, repeats: (fn(), next(times))[1])
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
        "fps": [{"num_envs": 64, "fps": 12345.6}],
        "buffer": [{"size": 1_000_000, "sample_us": 51.25}],
    }  # fmt: skip
    text = costs.costs_markdown(report)
    assert "| 8 | 30.0 | 20.0 | 1.50 |" in text
    assert "| 64 | 12,346 |" in text
    assert "| 1,000,000 | 51.2 |" in text


def test_bench_costs_writes_its_report(tmp_path, monkeypatch):
    fake = {"floor": [], "fps": [], "buffer": [{"size": 10, "sample_us": 1.0}]}
    monkeypatch.setattr(costs, "measure_costs", lambda quick=False: dict(fake))
    assert main(["bench", "--costs", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "costs.json").read_text())
    assert report["buffer"] == fake["buffer"] and "logical cores" in report["machine"]
    assert "| 10 | 1.0 |" in (tmp_path / "costs.md").read_text()
