"""Running normalisation (rlteach.modules.normalize): the running moments against the moments of
the concatenated data and against Stable-Baselines3's RunningMeanStd, the observation layer by
hand, and the reward scaling against Stable-Baselines3's VecNormalize on a scripted environment.
Everything is float64 and compared with tolerances far above the rounding of any processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlteach.modules.normalize import (
    ObservationNormalizer,
    RewardScaler,
    RunningMeanStd,
    find_normalizer,
)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_running_moments_equal_the_moments_of_all_the_data(sizes, seed):
    """With epsilon = 0 the merged mean and population variance are those of the concatenation,
    whatever the split into batches (Chan et al.'s formula is exact)."""
    gen = torch.Generator().manual_seed(seed)
    batches = [torch.randn(n, 3, generator=gen, dtype=torch.float64) * 5 + 2 for n in sizes]
    stats = RunningMeanStd((3,), epsilon=0.0)
    for b in batches:
        stats.update(b)
    data = torch.cat(batches)
    torch.testing.assert_close(stats.mean, data.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(stats.var, data.var(0, unbiased=False), rtol=0, atol=1e-10)
    assert stats.count.item() == sum(sizes)


def test_running_moments_match_stable_baselines3():
    rms_sb3 = pytest.importorskip("stable_baselines3.common.running_mean_std")
    ours, theirs = RunningMeanStd((2,)), rms_sb3.RunningMeanStd(shape=(2,))
    rng = np.random.default_rng(0)
    for n in (1, 5, 64, 3):
        batch = rng.normal(3.0, 2.0, size=(n, 2))
        ours.update(torch.from_numpy(batch))
        theirs.update(batch)
    np.testing.assert_allclose(ours.mean.numpy(), theirs.mean, rtol=1e-12)
    np.testing.assert_allclose(ours.var.numpy(), theirs.var, rtol=1e-12)
    assert ours.count.item() == pytest.approx(theirs.count, rel=1e-12)


def test_running_moments_refuse_a_wrong_shape():
    with pytest.raises(ValueError, match=r"end in the statistics' shape \[3\]"):
        RunningMeanStd((3,)).update(torch.zeros(4, 2))


def test_observation_normalizer_by_hand():
    norm = ObservationNormalizer(2, clip=1.5, eps=0.0)
    norm.stats.mean.copy_(torch.tensor([1.0, -2.0], dtype=torch.float64))
    norm.stats.var.copy_(torch.tensor([4.0, 0.25], dtype=torch.float64))
    obs = torch.tensor([[3.0, -2.0], [1.0, 0.0], [-9.0, -2.25]])
    # (3-1)/2 = 1, (-2+2)/0.5 = 0; (1-1)/2 = 0, (0+2)/0.5 = 4 -> 1.5; (-9-1)/2 = -5 -> -1.5, -0.5
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.5], [-1.5, -0.5]])
    out = norm(obs)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    before = norm.stats.mean.clone()
    norm(obs)  # the forward pass never moves the statistics
    assert torch.equal(norm.stats.mean, before)


def test_find_normalizer_in_a_built_network():
    from rlteach.modules import make_normal_actor, make_value_network

    norm = ObservationNormalizer(3)
    actor = make_normal_actor(3, 1, (8,), normalizer=norm, state_independent_scale=True)
    critic = make_value_network(3, (8,), normalizer=norm)
    assert find_normalizer(actor) is norm and find_normalizer(critic) is norm
    assert find_normalizer(make_value_network(3, (8,))) is None
    # buffers in the state dict: a checkpoint carries the statistics
    assert any(k.endswith("stats.mean") for k in critic.state_dict())


class _Scripted:
    """A Gymnasium environment whose rewards and episode ends are a fixed script."""

    def __init__(self, rewards, ends):
        import gymnasium as gym

        class Env(gym.Env):
            observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
            action_space = gym.spaces.Discrete(2)

            def __init__(self):
                self.t = 0

            def reset(self, seed=None, options=None):
                return np.zeros(1, np.float32), {}

            def step(self, action):
                r, end = rewards[self.t], ends[self.t]
                self.t += 1
                return np.zeros(1, np.float32), r, end, False, {}

        self.Env = Env


@pytest.mark.parametrize("gamma", [0.99, 0.5])
def test_reward_scaler_matches_vecnormalize(gamma):
    """The same rewards and episode ends through SB3's VecNormalize (reward normalisation
    only) and through RewardScaler, one batch split in two to carry the running return over."""
    vec_env = pytest.importorskip("stable_baselines3.common.vec_env")
    rng = np.random.default_rng(1)
    T = 40
    script = [(rng.normal(0.0, 3.0, T).tolist(), (rng.random(T) < 0.1).tolist()) for _ in range(3)]
    venv = vec_env.DummyVecEnv([_Scripted(r, e).Env for r, e in script])
    norm = vec_env.VecNormalize(
        venv, norm_obs=False, norm_reward=True, gamma=gamma, clip_reward=2.0
    )
    norm.reset()
    theirs = []
    for _ in range(T):
        _, rew, _, _ = norm.step(np.zeros(3, dtype=np.int64))
        theirs.append(rew)
    theirs = np.stack(theirs, axis=1)  # [envs, T]
    reward = torch.tensor([r for r, _ in script], dtype=torch.float32).unsqueeze(-1)
    done = torch.tensor([e for _, e in script]).unsqueeze(-1)
    scaler = RewardScaler(3, gamma, clip=2.0)
    ours = torch.cat(
        [scaler(reward[:, :17], done[:, :17]), scaler(reward[:, 17:], done[:, 17:])], 1
    )
    np.testing.assert_allclose(ours.squeeze(-1).numpy(), theirs, rtol=1e-5, atol=1e-6)
    assert (ours.abs() <= 2.0).all()
    np.testing.assert_allclose(scaler.stats.var.numpy(), norm.ret_rms.var, rtol=1e-10)


def test_reward_scaler_keeps_signs_and_refuses_bad_shapes():
    scaler = RewardScaler(2, 0.9)
    reward = torch.tensor([[[1.0], [-2.0]], [[0.0], [5.0]]])
    out = scaler(reward, torch.zeros_like(reward, dtype=torch.bool))
    assert torch.equal(torch.sign(out), torch.sign(reward))
    with pytest.raises(ValueError, match="built for 2 environments"):
        scaler(torch.zeros(3, 1, 1), torch.zeros(3, 1, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[num_envs, T, 1\]"):
        scaler(torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="gamma must lie in"):
        RewardScaler(2, 1.5)
