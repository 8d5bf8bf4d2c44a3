"""Multi-agent environments: the PettingZoo wrapper against stepping PettingZoo by hand, and the
QMIX paper's two-step game against its payoff tables."""

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from rlteach.envs_multiagent import (
    MultiAgentCollector,
    PettingZooParallelEnv,
    TwoStepGame,
    evaluate_team_return,
    make_simple_spread,
)

pytest.importorskip("mpe2")


def test_wrapper_matches_pettingzoo_stepped_by_hand():
    """Same seeds, same actions: observations, rewards, flags and state agree step by step,
    through the time-limit truncation and the reset that follows."""
    from mpe2 import simple_spread_v3

    num_envs, seed, max_cycles = 2, 7, 5
    env = PettingZooParallelEnv(make_simple_spread(max_cycles=max_cycles), num_envs, seed=seed)
    refs = [
        simple_spread_v3.parallel_env(max_cycles=max_cycles, continuous_actions=False)
        for _ in range(num_envs)
    ]
    ref_obs = [ref.reset(seed=seed + e)[0] for e, ref in enumerate(refs)]
    agents = refs[0].possible_agents
    td = env.reset()
    rng = np.random.default_rng(0)
    for t in range(2 * max_cycles + 2):
        for e in range(num_envs):
            expected = np.stack([ref_obs[e][a] for a in agents])
            np.testing.assert_allclose(td["agents", "observation"][e].numpy(), expected)
            np.testing.assert_allclose(td["state"][e].numpy(), refs[e].state().reshape(-1))
        actions = rng.integers(5, size=(num_envs, len(agents)))
        td["agents", "action"] = torch.as_tensor(actions)
        td, root = env.step_and_maybe_reset(td)
        for e, ref in enumerate(refs):
            obs, rew, term, trunc, _ = ref.step(
                {a: int(actions[e, i]) for i, a in enumerate(agents)}
            )
            np.testing.assert_allclose(
                td["next", "agents", "observation"][e].numpy(), np.stack([obs[a] for a in agents])
            )
            np.testing.assert_allclose(
                td["next", "agents", "reward"][e, :, 0].numpy(),
                np.array([rew[a] for a in agents], dtype=np.float32),
                rtol=1e-6,
            )
            done = all(term[a] or trunc[a] for a in agents)
            assert bool(td["next", "done"][e]) == done == ((t + 1) % max_cycles == 0)
            assert bool(td["next", "truncated"][e]) == done  # MPE only truncates
            assert not td["next", "terminated"][e].any()
            ref_obs[e] = ref.reset()[0] if done else obs
        td = root
    assert td["agents", "observation"].shape == (num_envs, 3, 18)


def test_copies_are_seeded_apart_and_reproducible():
    def first_obs(seed):
        env = PettingZooParallelEnv(make_simple_spread(), 3, seed=seed)
        return env.reset()["agents", "observation"]

    a, b = first_obs(0), first_obs(0)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # copy e uses seed + e
    assert torch.equal(first_obs(1)[0], a[1])


def test_random_policy_return_and_collector_shapes():
    env = PettingZooParallelEnv(make_simple_spread(max_cycles=10), 4, seed=0)
    collector = MultiAgentCollector(env, None, steps_per_batch=10)
    batch = collector.rollout()
    assert batch.batch_size == (4, 10)
    assert batch["next", "agents", "reward"].shape == (4, 10, 3, 1)
    assert batch["next", "done"][:, -1].all() and not batch["next", "done"][:, :-1].any()
    team = batch["next", "agents", "reward"].mean(-2).sum(1).squeeze(-1)
    torch.testing.assert_close(torch.tensor(collector.episode_returns), team)
    assert evaluate_team_return(None, env, seed=0) < 0


def test_wrapper_errors():
    env = PettingZooParallelEnv(make_simple_spread(), 2, seed=0)
    td = env.reset()
    with pytest.raises(KeyError, match=r"\('agents', 'action'\)"):
        env.step(td)  # no action written
    wrong = TensorDict({("agents", "action"): torch.zeros(2, 4, dtype=torch.int64)}, [2])
    with pytest.raises(ValueError, match=r"n_agents=3"):
        env.step(wrong)
    with pytest.raises(ValueError, match="num_envs"):
        PettingZooParallelEnv(make_simple_spread(), 0)
    with pytest.raises(ValueError, match="Discrete"):
        PettingZooParallelEnv(make_simple_spread(continuous_actions=True), 1)


def _play(env, steps, seed):
    """``steps`` random joint actions (their own generator) through step_and_maybe_reset; the
    observations, states, rewards and done flags seen."""
    actions = torch.Generator().manual_seed(seed)
    td, seen = env.reset() if env._obs is None else env._root(env._obs), []
    for _ in range(steps):
        td[env.group, "action"] = torch.randint(
            env.n_actions, (env.num_envs, env.n_agents), generator=actions
        )
        td, root = env.step_and_maybe_reset(td)
        nxt = td["next"]
        seen.append((nxt["agents", "observation"], nxt["state"], nxt["agents", "reward"]))
        seen.append((nxt["done"], root["agents", "observation"]))
        td = root
    return seen


def test_state_dict_continues_mid_episode_in_a_fresh_environment():
    """Save after 7 steps of 10-step episodes (mid-episode: positions, velocities and the step
    counter all matter), load into a newly built wrapper (never reset), and the two must then
    see the same 30 steps, through three automatic resets (unseeded: they draw from each copy's
    restored np_random). The saved state must also survive a round trip through torch.save."""
    import io

    task = make_simple_spread(max_cycles=10)
    env = PettingZooParallelEnv(task, 2, seed=3)
    _play(env, 7, seed=0)
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)
    buffer.seek(0)
    fresh = PettingZooParallelEnv(task, 2, seed=99)
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    assert fresh.envs[0].aec_env.unwrapped.steps == 7
    a, b = _play(env, 30, seed=1), _play(fresh, 30, seed=1)
    assert any(step[0].all() for step in a[1::2])  # episodes did end (and were reset)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            assert torch.equal(u, v)
    # the random-action generator is restored too
    assert torch.equal(
        env.rand_action()["agents", "action"], fresh.rand_action()["agents", "action"]
    )


def test_state_dict_refuses_another_number_of_copies_or_another_task():
    env = PettingZooParallelEnv(make_simple_spread(), 2, seed=0)
    env.reset()
    state = env.state_dict()
    other = PettingZooParallelEnv(make_simple_spread(), 3, seed=0)
    with pytest.raises(ValueError, match="holds 2 copies, this one has 3"):
        other.load_state_dict(state)

    from mpe2 import simple_reference_v3

    reference = PettingZooParallelEnv(
        lambda: simple_reference_v3.parallel_env(continuous_actions=False), 2, seed=0
    )
    before = reference.envs[0].aec_env.unwrapped.world
    with pytest.raises(ValueError, match="same kind of environment"):
        reference.load_state_dict(state)
    assert reference.envs[0].aec_env.unwrapped.world is before  # checked before any change


# ---------------------------------------------------------------------------- two-step game


def play(actions_step1, actions_step2):
    """Play the four joint actions of each step in four copies; return (state, reward) rows."""
    game = TwoStepGame(num_envs=len(actions_step1))
    td = game.reset()
    td["agents", "action"] = torch.tensor(actions_step1)
    td, root = game.step_and_maybe_reset(td)
    first = td["next"].clone()
    root["agents", "action"] = torch.tensor(actions_step2)
    td2, root2 = game.step_and_maybe_reset(root)
    return first, td2["next"], root2


def test_two_step_game_payoffs_by_hand():
    joint = [[0, 0], [0, 1], [1, 0], [1, 1]]
    # agent 1 plays A: state 2A, every second-step joint action pays 7
    first, second, _ = play([[0, 0], [0, 1], [0, 0], [0, 1]], joint)
    assert first["reward"].squeeze(-1).tolist() == [0.0] * 4
    assert first["state"].argmax(-1).tolist() == [1] * 4  # 2A
    assert not first["done"].any()
    assert second["reward"].squeeze(-1).tolist() == [7.0] * 4
    assert second["terminated"].all() and second["done"].all()
    # agent 1 plays B (agent 2's first action is irrelevant): state 2B, payoff [[0, 1], [1, 8]]
    first, second, root = play([[1, 0], [1, 1], [1, 0], [1, 1]], joint)
    assert first["state"].argmax(-1).tolist() == [2] * 4  # 2B
    assert second["reward"].squeeze(-1).tolist() == [0.0, 1.0, 1.0, 8.0]
    assert root["state"].argmax(-1).tolist() == [0] * 4  # reset after the episode


def test_two_step_game_observations():
    game = TwoStepGame(num_envs=1)
    obs = game.reset()["agents", "observation"][0]
    assert obs.tolist() == [[1, 0, 0, 1, 0], [1, 0, 0, 0, 1]]  # one-hot state, one-hot agent id


def test_two_step_game_optimal_and_random_returns():
    game = TwoStepGame(num_envs=64, seed=0)
    big = TwoStepGame(num_envs=4096, seed=0)

    def always_b(td):
        td["agents", "action"] = torch.ones(64, 2, dtype=torch.int64)
        return td

    def always_a(td):
        td["agents", "action"] = torch.zeros(64, 2, dtype=torch.int64)
        return td

    assert evaluate_team_return(always_b, game) == 8.0
    assert evaluate_team_return(always_a, game) == 7.0
    # random: E = 1/2 * 7 + 1/2 * (0 + 1 + 1 + 8)/4 = 4.75, sd 3.19, so 4096 episodes: se 0.05
    assert abs(evaluate_team_return(None, big) - 4.75) < 0.2  # 4 standard errors


def test_two_step_game_errors():
    game = TwoStepGame(num_envs=2)
    td = game.reset()
    with pytest.raises(KeyError, match="agents"):
        game.step(td)
    wrong = TensorDict({("agents", "action"): torch.zeros(2, 3, dtype=torch.int64)}, [2])
    with pytest.raises(ValueError, match=r"\[2, 2\]"):
        game.step(wrong)
    with pytest.raises(RuntimeError, match="reset"):
        fresh = TwoStepGame(num_envs=1)
        fresh.step(TensorDict({("agents", "action"): torch.zeros(1, 2, dtype=torch.int64)}, [1]))
