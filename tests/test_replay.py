"""Environments that pickle only their constructor's arguments (MuJoCo, Box2D) come back from a
checkpoint in the state they were saved in (rlteach._replay): same observations, rewards and
time-limit counter for the rest of the episode, random draws of the environment included."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

from rlteach._replay import ReplayOnUnpickle, checkpointable
from rlteach.envs import VecGymEnv

TASKS = [
    pytest.param("Hopper-v5", {}, marks=pytest.mark.skipif(
        not __import__("importlib").util.find_spec("mujoco"), reason="needs mujoco")),
    # the continuous lander's engines draw a random dispersion at every step
    pytest.param("LunarLander-v3", {"continuous": True}, marks=pytest.mark.skipif(
        not __import__("importlib").util.find_spec("Box2D"), reason="needs box2d")),
]  # fmt: skip


def _unwrapped_pickle_loses_the_state(task, kwargs):
    env = gym.make(task, **kwargs)
    env.reset(seed=0)
    for _ in range(10):
        env.step(env.action_space.sample())
    copy = pickle.loads(pickle.dumps(env))
    action = env.action_space.sample()
    try:
        return not np.array_equal(env.step(action)[0], copy.step(action)[0])
    except AssertionError:  # Box2D's lander: the copy has no lander until it is reset
        return True


@pytest.mark.parametrize("task,kwargs", TASKS)
def test_pickled_mid_episode_the_environment_goes_on_identically(task, kwargs):
    assert _unwrapped_pickle_loses_the_state(task, kwargs)  # what the wrapper is for
    env = checkpointable(gym.make(task, **kwargs))
    assert isinstance(env, ReplayOnUnpickle)
    env.action_space.seed(1)
    env.reset(seed=3)
    for _ in range(40):
        env.step(env.action_space.sample())
    env.reset()  # a second episode, started from the generator's state, not from a seed
    for _ in range(25):
        env.step(env.action_space.sample())
    copy = pickle.loads(pickle.dumps(env))
    assert copy.env._elapsed_steps == env.env._elapsed_steps == 25
    for _ in range(200):
        action = env.action_space.sample()
        a, b = env.step(action), copy.step(action)
        assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]
        if a[2] or a[3]:
            break
    # the next episode's random start too
    assert np.array_equal(env.reset()[0], copy.reset()[0])


def test_environments_that_pickle_whole_are_not_wrapped():
    env = checkpointable(gym.make("CartPole-v1"))
    assert not isinstance(env, ReplayOnUnpickle)
    vec = VecGymEnv("CartPole-v1", 2, seed=0)
    assert not any(isinstance(e, ReplayOnUnpickle) for e in vec.env.envs)
    vec.close()
