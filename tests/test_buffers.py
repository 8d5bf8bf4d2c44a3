"""Tests for rlteach.buffers.ReplayBuffer: ring order, uniform sampling, seeding, checkpoints."""

import pytest
import torch
from tensordict import TensorDict

from rlteach.buffers import ReplayBuffer


def _transitions(start, n):
    ids = torch.arange(start, start + n)
    return TensorDict(
        {
            "observation": ids.float().unsqueeze(-1).expand(n, 3).clone(),
            "action": ids,
            ("next", "reward"): ids.float().unsqueeze(-1),
        },
        [n],
    )


def test_circular_overwrite_order():
    rb = ReplayBuffer(5, seed=0)
    slots = rb.extend(_transitions(0, 3))
    assert slots.tolist() == [0, 1, 2] and len(rb) == 3
    slots = rb.extend(_transitions(3, 4))  # 3, 4 fill the ring, 5, 6 overwrite slots 0, 1
    assert slots.tolist() == [3, 4, 0, 1] and len(rb) == 5
    assert rb.storage["action"].tolist() == [5, 6, 2, 3, 4]
    assert rb.storage["next", "reward"][:, 0].tolist() == [5.0, 6.0, 2.0, 3.0, 4.0]
    # more than capacity at once: only the last 5 survive, as if written one by one
    rb.extend(_transitions(7, 12))
    one_by_one = ReplayBuffer(5, seed=0)
    for k in range(19):
        one_by_one.extend(_transitions(k, 1))
    assert rb.storage["action"].tolist() == one_by_one.storage["action"].tolist()
    assert sorted(rb.storage["action"].tolist()) == [14, 15, 16, 17, 18]


def test_batch_dims_are_flattened():
    rb = ReplayBuffer(10, seed=0)
    td = _transitions(0, 6).reshape(2, 3)
    rb.extend(td)
    assert len(rb) == 6 and rb.storage.batch_size == (10,)
    assert rb.storage["action"][:6].tolist() == list(range(6))
    assert rb.sample(4).batch_size == (4,)


def test_sampling_is_uniform_over_stored_items():
    rb = ReplayBuffer(10, seed=1)
    rb.extend(_transitions(0, 8))  # 8 of 10 slots: samples must never touch the empty ones
    n = 16_000
    counts = torch.bincount(rb.sample(n)["action"], minlength=10).float()
    assert counts[8:].sum() == 0
    expected = n / 8
    chi2 = ((counts[:8] - expected) ** 2 / expected).sum().item()
    assert chi2 < 24.32  # 99.9% quantile of chi-square with 7 degrees of freedom


def test_seeding_reproduces_samples():
    def draws(seed):
        rb = ReplayBuffer(50, seed=seed)
        rb.extend(_transitions(0, 50))
        return rb.sample(20)["action"]

    assert torch.equal(draws(3), draws(3))
    assert not torch.equal(draws(3), draws(4))
    g = torch.Generator().manual_seed(3)
    rb = ReplayBuffer(50, generator=g)
    rb.extend(_transitions(0, 50))
    assert torch.equal(rb.sample(20)["action"], draws(3))


def test_same_storage_and_samples_as_torchrl():
    data = pytest.importorskip("torchrl.data")
    ours = ReplayBuffer(7, seed=3)
    theirs = data.ReplayBuffer(storage=data.LazyTensorStorage(7), batch_size=5)
    theirs.set_rng(torch.Generator().manual_seed(3))
    start = 0
    for n in (3, 4, 2, 5):
        ours.extend(_transitions(start, n))
        theirs.extend(_transitions(start, n))
        start += n
    assert len(ours) == len(theirs) == 7
    assert torch.equal(ours.storage["action"], theirs.storage._storage["action"])
    assert torch.equal(ours.sample(5)["action"], theirs.sample()["action"])


def test_state_dict_round_trip_resumes_sampling():
    rb = ReplayBuffer(6, seed=0)
    rb.extend(_transitions(0, 9))
    rb.sample(3)
    state = rb.state_dict()
    expected_next = rb.sample(8)
    restored = ReplayBuffer(6, seed=123)
    restored.load_state_dict(state)
    assert len(restored) == 6
    assert torch.equal(restored.storage["action"], rb.storage["action"])
    assert torch.equal(restored.sample(8)["action"], expected_next["action"])
    # the cursor came back too: the next write overwrites the oldest slot in both
    rb.extend(_transitions(100, 1))
    restored.extend(_transitions(100, 1))
    assert torch.equal(restored.storage["action"], rb.storage["action"])
    with pytest.raises(ValueError, match="capacity 6"):
        ReplayBuffer(5).load_state_dict(state)


def test_bad_input_messages():
    rb = ReplayBuffer(4, seed=0)
    with pytest.raises(RuntimeError, match="empty"):
        rb.sample(2)
    rb.extend(_transitions(0, 2))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        rb.sample(0)
    with pytest.raises(KeyError, match=r"missing: \('next', 'reward'\)"):
        rb.extend(_transitions(0, 2).exclude(("next", "reward")))
    with pytest.raises(KeyError, match="unexpected: 'extra'"):
        rb.extend(_transitions(0, 2).set("extra", torch.zeros(2)))
    bad = _transitions(0, 2)
    bad["observation"] = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"'observation' has per-transition shape \[4\]"):
        rb.extend(bad)
    assert len(rb) == 2  # failed calls left the buffer untouched
    assert rb.storage["action"][:2].tolist() == [0, 1]
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0)
