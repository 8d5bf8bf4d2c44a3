"""Checkpoints of environments that pickle only their constructor's arguments.

A checkpoint saves the Gymnasium environments by pickling them (``envs._GymBase.state_dict``).
That keeps the whole state of most environments (classic control, MinAtar), but MuJoCo's and
Box2D's environments are ``gymnasium.utils.EzPickle``: unpickling one builds a *new* environment
from its constructor's arguments, at its initial pose, with a fresh random generator. A run
resumed from such a checkpoint would go on from another state than the one it was saved in: a
valid run, but not the run that was interrupted.

:class:`ReplayOnUnpickle` makes them exact. It records how the episode in progress began (the
seed, or the random generator's state when no seed was given) and every action since; on
unpickling, it resets the new environment the same way and steps it through the same actions.
MuJoCo and Box2D are deterministic given their state and their ``np_random`` (which the replay
re-draws in the same order), so the environment arrives in the saved state, its time-limit
counter included (the wrapper sits outside ``TimeLimit``). An episode lasts at most a few
thousand steps, so a replay costs at most a few seconds once per resume.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
from gymnasium.utils import EzPickle


class ReplayOnUnpickle(gym.Wrapper):
    """Record the current episode's start and actions; replay them when unpickled."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._start: tuple | None = None  # (seed, options, generator state or None)
        self._actions: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        rng_state = None
        if seed is None:  # the reset draws from the generator as it stands: keep its state
            rng_state = copy.deepcopy(self.env.unwrapped.np_random.bit_generator.state)
        self._start = (seed, options, rng_state)
        self._actions = []
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self._actions.append(np.array(action, copy=True))
        return self.env.step(action)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._start is None:  # never reset: nothing to bring back
            return
        seed, options, rng_state = self._start
        if rng_state is not None:
            generator = np.random.Generator(getattr(np.random, rng_state["bit_generator"])())
            generator.bit_generator.state = rng_state
            self.env.unwrapped.np_random = generator
        self.env.reset(seed=seed, options=options)
        for action in self._actions:
            self.env.step(action)


def checkpointable(env: gym.Env) -> gym.Env:
    """``env`` wrapped in :class:`ReplayOnUnpickle` when pickling would lose its state
    (its base environment is ``EzPickle``: MuJoCo, Box2D); ``env`` itself otherwise."""
    return ReplayOnUnpickle(env) if isinstance(env.unwrapped, EzPickle) else env
