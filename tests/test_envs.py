"""Tests for rlteach.envs: the collector against hand-stepped Gymnasium, seeding, evaluation."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from rlteach.envs import Collector, GymEnv, VecGymEnv, evaluate, evaluate_returns
from rlteach.modules import make_categorical_actor, make_normal_actor

MAX_STEPS = 20


class ScriptedPolicy:
    """Env 0 alternates 0, 1, 0, … (keeps the pole up: episodes hit the time limit);
    env 1 always pushes right (the pole falls: episodes terminate)."""

    def __init__(self):
        self.t = 0

    def action(self, t, i):
        return t % 2 if i == 0 else 1

    def __call__(self, td):
        td["action"] = torch.tensor([self.action(self.t, i) for i in range(td.shape[0])])
        self.t += 1
        return td


def hand_rollout(seed, num_envs, steps, policy):
    """Step plain gymnasium environments by hand, resetting after every end (no vector API)."""
    out = []
    for i in range(num_envs):
        env = gym.make("CartPole-v1", max_episode_steps=MAX_STEPS)
        obs, _ = env.reset(seed=seed + i)
        rows = []
        for t in range(steps):
            a = policy.action(t, i)
            nxt, r, term, trunc, _ = env.step(a)
            rows.append((obs, a, r, nxt, term, trunc))
            obs = env.reset()[0] if (term or trunc) else nxt
        out.append(rows)
    return out


def test_collector_matches_hand_stepped_gymnasium_across_batches():
    env = VecGymEnv("CartPole-v1", 2, seed=11, max_episode_steps=MAX_STEPS)
    collector = Collector(env, ScriptedPolicy(), frames_per_batch=2 * 25, total_frames=100)
    batches = list(collector)
    assert len(batches) == len(collector) == 2 and collector.frames == 100
    batch = torch.cat(batches, dim=1)  # an episode spans the two batches
    assert batch.batch_size == (2, 50)
    ref = hand_rollout(11, 2, 50, ScriptedPolicy())
    episodes = []  # (end time, env index, length, return) from the hand rollout
    for i in range(2):
        obs, act, rew, nxt, term, trunc = (np.array(x) for x in zip(*ref[i], strict=True))
        np.testing.assert_array_equal(batch["observation"][i].numpy(), obs.astype(np.float32))
        np.testing.assert_array_equal(batch["action"][i].numpy(), act)
        np.testing.assert_array_equal(batch["next", "reward"][i, :, 0].numpy(), rew)
        # the TRUE next observation, also on the last step of an episode
        np.testing.assert_array_equal(batch["next", "observation"][i].numpy(), nxt)
        np.testing.assert_array_equal(batch["next", "terminated"][i, :, 0].numpy(), term)
        np.testing.assert_array_equal(batch["next", "truncated"][i, :, 0].numpy(), trunc)
        np.testing.assert_array_equal(batch["next", "done"][i, :, 0].numpy(), term | trunc)
        assert not batch["done"][i].any()  # a root is never a final state
        ends = np.flatnonzero(term | trunc)
        for start, end in zip([-1, *ends], ends, strict=False):
            episodes.append((end, i, end - start, float(rew[start + 1 : end + 1].sum())))
    # env 0 is cut by the time limit (truncated, not terminated), env 1 terminates
    assert batch["next", "truncated"][0].any() and not batch["next", "terminated"][0].any()
    assert batch["next", "terminated"][1].any() and not batch["next", "truncated"][1].any()
    # no reset step was stored: after an end the next root is the reset state, which differs
    # from the final observation kept in ("next", "observation")
    t_end = batch["next", "done"][0, :, 0].nonzero()[0].item()
    assert not torch.equal(
        batch["observation"][0, t_end + 1], batch["next", "observation"][0, t_end]
    )
    # episode bookkeeping, in order of ending (time first, then env index)
    episodes.sort()
    assert collector.episode_lengths == [int(e[2]) for e in episodes]
    assert collector.episode_returns == [e[3] for e in episodes]
    assert [int(e[2]) for e in episodes if e[1] == 0] == [MAX_STEPS, MAX_STEPS]  # time limit


def test_single_env_collector_has_time_batch_and_resets_itself():
    env = GymEnv("CartPole-v1", seed=3, max_episode_steps=MAX_STEPS)
    policy = ScriptedPolicy()

    def single(td):
        td["action"] = torch.tensor(policy.action(policy.t, 0))
        policy.t += 1
        return td

    batch = next(iter(Collector(env, single, frames_per_batch=30)))
    assert batch.batch_size == (30,)
    assert batch["action"].dtype == torch.int64 and batch["action"].shape == (30,)
    ref = hand_rollout(3, 1, 30, ScriptedPolicy())[0]
    np.testing.assert_array_equal(
        batch["next", "observation"].numpy(), np.array([row[3] for row in ref])
    )
    np.testing.assert_array_equal(batch["observation"].numpy(), np.array([row[0] for row in ref]))
    np.testing.assert_array_equal(batch["next", "truncated"][:, 0].numpy(), [r[5] for r in ref])
    assert batch["next", "truncated"].sum() == 1


def _collect(seed, frames=40):
    torch.manual_seed(0)
    actor = make_categorical_actor(4, 2, (8,))
    env = VecGymEnv("CartPole-v1", 4, seed=seed)
    torch.manual_seed(123)
    return next(iter(Collector(env, actor, frames)))


def test_same_seed_same_batches():
    a, b, c = _collect(5), _collect(5), _collect(6)
    assert (a == b).all()
    assert not torch.equal(a["observation"], c["observation"])
    assert a["action_log_prob"].shape == (4, 10)
    torch.testing.assert_close(
        a["action_log_prob"],
        a["logits"].log_softmax(-1).gather(-1, a["action"].unsqueeze(-1)).squeeze(-1),
    )


def test_random_collector_is_seeded_by_the_env():
    def run(seed):
        return next(iter(Collector(VecGymEnv("CartPole-v1", 2, seed=seed), None, 20)))

    assert torch.equal(run(1)["action"], run(1)["action"])
    assert not torch.equal(run(1)["action"], run(2)["action"])


def test_continuous_env_shapes_and_policy_outputs():
    env = VecGymEnv("Pendulum-v1", 3, seed=0)
    assert not env.is_discrete and env.action_dim == 1 and env.n_actions is None
    torch.testing.assert_close(env.action_high, torch.tensor([2.0]))
    actor = make_normal_actor(
        env.observation_dim, 1, (8,), low=env.action_low, high=env.action_high
    )
    batch = next(iter(Collector(env, actor, 12)))
    assert batch["action"].shape == (3, 4, 1) and batch["action"].dtype == torch.float32
    assert batch["observation"].shape == (3, 4, 3) and batch["observation"].dtype == torch.float32
    assert (
        batch["next", "reward"].shape == (3, 4, 1)
        and batch["next", "reward"].dtype == torch.float32
    )
    assert batch["next", "done"].dtype == torch.bool
    assert batch["action_log_prob"].shape == (3, 4)
    # the policy ran under no_grad
    assert not batch["action_log_prob"].requires_grad


def test_evaluate_equals_hand_stepped_returns():
    def always_right(td):  # batch-agnostic, like every tensordict.nn policy
        td["action"] = torch.ones(td.batch_size, dtype=torch.int64)
        return td

    expected = []
    for k in range(3):
        env = gym.make("CartPole-v1")
        env.reset(seed=7 + k)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(1)
            total, done = total + r, term or trunc
        expected.append(total)
    assert evaluate_returns(always_right, "CartPole-v1", episodes=3, seed=7) == expected
    assert evaluate(always_right, "CartPole-v1", episodes=3, seed=7) == pytest.approx(
        np.mean(expected)
    )


def test_evaluate_uses_the_deterministic_action():
    torch.manual_seed(0)
    actor = make_categorical_actor(4, 2, (8,))
    env = gym.make("CartPole-v1", max_episode_steps=50)
    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        with torch.no_grad():
            logits = actor[0](TensorDict({"observation": torch.as_tensor(obs)}))["logits"]
        obs, r, term, trunc, _ = env.step(int(logits.argmax()))
        total, done = total + r, term or trunc
    got = evaluate(actor, GymEnv("CartPole-v1", max_episode_steps=50), episodes=1, seed=0)
    assert got == total


def test_truncation_at_time_limit_keeps_final_observation():
    env = GymEnv("CartPole-v1", seed=0, max_episode_steps=3)
    td = env.reset()
    for _ in range(3):
        td["action"] = torch.tensor(0)
        td, root = env.step_and_maybe_reset(td)
    assert td["next", "truncated"].item() and not td["next", "terminated"].item()
    assert td["next", "done"].item()
    assert not torch.equal(root["observation"], td["next", "observation"])


def test_bad_input_messages():
    with pytest.raises(ValueError, match="Did you mean 'CartPole-v1'"):
        GymEnv("CartPol-v1")
    with pytest.raises(ValueError, match="Unknown Gymnasium environment"):
        VecGymEnv("NoSuchEnv-v0", 2)
    env = VecGymEnv("CartPole-v1", 2, seed=0)
    td = env.reset()
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        env.step(td.clone().set("action", torch.zeros(2, 1, dtype=torch.int64)))
    with pytest.raises(ValueError, match="integer index"):
        env.step(td.clone().set("action", torch.zeros(2)))
    with pytest.raises(ValueError, match=r"0\.\.1"):
        env.step(td.clone().set("action", torch.tensor([0, 2])))
    with pytest.raises(KeyError, match="'action'"):
        env.step(td.clone())
    pend = GymEnv("Pendulum-v1", seed=0)
    td = pend.reset()
    with pytest.raises(ValueError, match=r"shape \[1\]"):
        pend.step(td.set("action", torch.zeros(2)))
    with pytest.raises(RuntimeError, match="reset"):
        GymEnv("CartPole-v1").step(TensorDict({"action": torch.tensor(0)}))
    with pytest.raises(ValueError, match="multiple"):
        Collector(env, None, frames_per_batch=5)
    with pytest.raises(ValueError, match="episodes"):
        evaluate(lambda td: td, "CartPole-v1", episodes=0)


# -- the tensor loop against the TensorDict loop ------------------------------------------------


def _actor_for(kind, env):
    if kind == "random":
        return None
    if kind == "categorical":
        return make_categorical_actor(env.observation_dim, env.n_actions, (16,))
    if kind == "minatar":
        from rlteach.modules import make_minatar_categorical_actor

        return make_minatar_categorical_actor(env.observation_shape, env.n_actions, hidden=16)
    low, high = env.action_low, env.action_high
    if kind == "tanh-normal":
        return make_normal_actor(env.observation_dim, env.action_dim, (16,), low=low, high=high)
    return make_normal_actor(  # a plain diagonal Normal with a state-independent scale (PPO's)
        env.observation_dim, env.action_dim, (16,), tanh=False, state_independent_scale=True
    )


def _run_collector(env_id, kind, fast, num_envs=3, steps=70, batches=3, **env_kwargs):
    """Batches, the collector and torch's RNG state after them, from a fixed seed."""
    torch.manual_seed(0)
    env = VecGymEnv(env_id, num_envs, seed=4, **env_kwargs)
    collector = Collector(env, _actor_for(kind, env), num_envs * steps, fast=fast)
    assert collector.fast is fast
    out = [collector.rollout() for _ in range(batches)]
    return out, collector, torch.get_rng_state()


def _assert_same_batch(fast, reference):
    # the same keys in the same order, dtypes, shapes and every value bit for bit
    assert list(fast.keys(True, True)) == list(reference.keys(True, True))
    assert fast.batch_size == reference.batch_size
    for key in reference.keys(True, True):
        assert fast[key].dtype == reference[key].dtype, key
        assert torch.equal(fast[key], reference[key]), key


@pytest.mark.parametrize(
    "env_id, kind, env_kwargs",
    [
        ("CartPole-v1", "categorical", {"max_episode_steps": MAX_STEPS}),  # ends in every batch
        ("CartPole-v1", "random", {}),
        ("Pendulum-v1", "tanh-normal", {"max_episode_steps": 50}),  # float rewards, carried
        ("Pendulum-v1", "normal", {"max_episode_steps": 50}),
        ("Pendulum-v1", "random", {}),
        ("MinAtar/Breakout-v1", "minatar", {}),  # bool image observations
    ],
)
def test_tensor_loop_gives_the_tensordict_loops_batches_bit_for_bit(env_id, kind, env_kwargs):
    if env_id.startswith("MinAtar/"):
        pytest.importorskip("minatar")
    fast, c_fast, rng_fast = _run_collector(env_id, kind, True, **env_kwargs)
    reference, c_ref, rng_ref = _run_collector(env_id, kind, False, **env_kwargs)
    for a, b in zip(fast, reference, strict=True):
        _assert_same_batch(a, b)
    # the same draws from torch's generator, and the same episodes, returns summed in float32
    assert torch.equal(rng_fast, rng_ref)
    assert c_fast.episode_lengths == c_ref.episode_lengths and c_fast.episode_lengths
    assert c_fast.episode_returns == c_ref.episode_returns
    # the state a checkpoint saves is the same too
    s_fast, s_ref = c_fast.state_dict(), c_ref.state_dict()
    for key in ("running_return", "running_length"):
        assert s_fast[key].dtype == s_ref[key].dtype and torch.equal(s_fast[key], s_ref[key])
    assert (s_fast["root"] == s_ref["root"]).all() and s_fast["frames"] == s_ref["frames"]


def test_tensor_loop_resumes_from_the_tensordict_loops_checkpoint():
    torch.manual_seed(0)
    env = VecGymEnv("CartPole-v1", 2, seed=1, max_episode_steps=MAX_STEPS)
    actor = make_categorical_actor(4, 2, (16,))
    slow = Collector(env, actor, 2 * 30, fast=False)
    slow.rollout()
    state, rng = slow.state_dict(), torch.get_rng_state()
    expected = slow.rollout()
    resumed = Collector(VecGymEnv("CartPole-v1", 2, max_episode_steps=MAX_STEPS), actor, 2 * 30)
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)
    assert resumed.fast
    _assert_same_batch(resumed.rollout(), expected)
    assert resumed.episode_returns == slow.episode_returns


def test_other_policies_and_environments_take_the_tensordict_loop():
    vec = VecGymEnv("CartPole-v1", 2, seed=0)
    assert Collector(vec, make_categorical_actor(4, 2), 4).fast
    assert not Collector(vec, ScriptedPolicy(), 4).fast  # any TensorDict callable
    assert not Collector(GymEnv("CartPole-v1", seed=0), make_categorical_actor(4, 2), 4).fast
    from tensordict.nn import InteractionType

    deterministic = InteractionType.DETERMINISTIC
    assert not Collector(vec, make_categorical_actor(4, 2), 4, interaction_type=deterministic).fast


@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 3), (7,)])
def test_categorical_draw_is_torchs_categorical_sample_and_log_prob(shape):
    from rlteach.envs import _categorical_draw

    logits = 5 * torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    logits[..., 0] = -float("inf") if len(shape) == 2 else logits[..., 0]  # an impossible action
    torch.manual_seed(1)
    dist = torch.distributions.Categorical(logits=logits)
    expected = dist.sample()
    torch.manual_seed(1)
    action, log_p = _categorical_draw(logits)
    assert torch.equal(action, expected)  # the same draw from the same generator state
    log_prob = log_p.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    assert torch.equal(log_prob, dist.log_prob(expected))
    after_ours = torch.rand(3)  # and the generator moved on by the same amount
    torch.manual_seed(1)
    dist.sample()
    assert torch.equal(after_ours, torch.rand(3))
