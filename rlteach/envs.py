"""Gymnasium environments stepped into TensorDicts, an on-policy collector and an evaluator.

The layout is TorchRL's (see DESIGN.md). ``reset()`` returns the root of a transition, ``step(td)``
reads ``"action"`` and adds a ``"next"`` sub-TensorDict:

=============================  ==============  =====================================================
key                            shape / dtype   meaning
=============================  ==============  =====================================================
``"observation"``              [*B, D] f32     s_t (an image observation [*B, H, W, C] keeps the
                                               environment's dtype: MinAtar's bool frames)
``"done"``, ``"terminated"``,  [*B, 1] bool    flags of s_t (False: s_t is never a final state)
``"truncated"``
``"action"``                   [*B] int64      a_t for a discrete space (an index)
                               [*B, A] f32     a_t for a continuous space
``("next", "observation")``    [*B, D] f32     s_{t+1}, the TRUE next state even when the episode
                                               ended (never the first state of the next episode)
``("next", "reward")``         [*B, 1] f32     r_{t+1}
``("next", "terminated")``     [*B, 1] bool    s_{t+1} is terminal: do not bootstrap from it
``("next", "truncated")``      [*B, 1] bool    the episode was cut (time limit): s_{t+1} is not
                                               terminal, so V(s_{t+1}) must still be bootstrapped
``("next", "done")``           [*B, 1] bool    terminated or truncated: the trajectory ends here
=============================  ==============  =====================================================

``*B`` is ``[]`` for :class:`GymEnv` and ``[num_envs]`` for :class:`VecGymEnv`; a
:class:`Collector` batch adds a time dim last, ``[*B, T]``.

Device: an environment made with ``device="cuda"`` puts every tensor it hands out (observations,
rewards, flags, random actions, the action bounds) on that device, as they enter from NumPy; the
actions it receives may live anywhere and go back to NumPy with ``.cpu().numpy()``. Give it the
device of the networks that read its observations.

Autoreset: Gymnasium 1.x vector environments default to ``NEXT_STEP`` autoreset, where the step
after an episode's end ignores the action and only resets; storing it would invent a transition
(final state → first state) that never happened. :class:`VecGymEnv` uses ``SAME_STEP`` autoreset
instead: the step that ends an episode also resets that sub-environment, Gymnasium hands the true
final observation back in ``info["final_obs"]``, and we put it in ``("next", "observation")``
while the reset observation becomes the root of the following transition. No reset step exists,
so none can be stored.

Image observations: a Box of shape (H, W, C) (channels last, Gymnasium's convention) is kept as
the environment gives it, bool or uint8, so that a replay buffer stores it compactly (1 byte per
cell instead of 4); the networks that read it (:mod:`rlteach.modules.conv`) convert it to float
and to channels first. Flat observations are float32 as before.

Optional task families load on first use: an id starting with ``"MinAtar/"`` registers MinAtar's
games (``minatar.gym.register_envs()``), and a missing ``minatar`` or Box2D (LunarLander) or
MuJoCo package is reported with the extra that installs it, ``pip install "rlteach[scale]"``.
"""

from __future__ import annotations

import difflib
import pickle
from collections.abc import Callable, Iterator

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    set_interaction_type,
)

from rlteach._checks import get_key, module_device, resolve_device
from rlteach._replay import checkpointable

__all__ = ["GymEnv", "VecGymEnv", "Collector", "evaluate", "evaluate_returns"]

Policy = Callable[[TensorDictBase], TensorDictBase]

#: Image dtypes kept as they are (1 byte per cell); every other observation becomes float32.
_COMPACT_DTYPES = {np.dtype(bool): torch.bool, np.dtype(np.uint8): torch.uint8}


SCALE_EXTRA = 'pip install "rlteach[scale]"'
"""What installs the field-scale tasks: MuJoCo, Box2D (LunarLander) and MinAtar."""


def _register_minatar(env_id: str) -> None:
    """Register MinAtar's games with Gymnasium (once), or say which extra installs them."""
    if env_id in gym.registry:
        return
    try:
        import minatar.gym
    except ImportError as err:
        raise ImportError(
            f"{env_id} is a MinAtar game and needs the minatar package, which is missing "
            f"({err}). Install it with {SCALE_EXTRA} (or pip install minatar)."
        ) from err
    minatar.gym.register_envs()


def _make_gym(env_id: str, **kwargs) -> gym.Env:
    """``gymnasium.make`` with a helpful message for an unknown id or a missing package."""
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a Gymnasium id such as 'CartPole-v1', got {env_id!r}.")
    if env_id.startswith("MinAtar/"):
        _register_minatar(env_id)
    try:
        return checkpointable(gym.make(env_id, **kwargs))
    except gym.error.DependencyNotInstalled as err:
        raise ImportError(
            f"{env_id} needs a package that is not installed ({err}). The field-scale tasks "
            f"(Box2D's LunarLander, MuJoCo, MinAtar) come with {SCALE_EXTRA}."
        ) from err
    except gym.error.Error as err:
        close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown Gymnasium environment {env_id!r} ({err}).{hint} Registered ids are listed "
            f"by gymnasium.pprint_registry(); ids carry a version suffix such as '-v1'."
        ) from err


class _GymBase:
    """What a single and a vector environment share: the spaces, action checks and conversion."""

    batch_size: torch.Size

    def _read_spaces(self, obs_space: gym.Space, act_space: gym.Space, env_id: str) -> None:
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) not in (1, 3):
            raise ValueError(
                f"{env_id}: rlteach handles flat Box observations and images (H, W, C), got "
                f"{obs_space}. Wrap the environment with gymnasium.wrappers.FlattenObservation "
                f"first."
            )
        self.observation_shape: tuple[int, ...] = tuple(int(n) for n in obs_space.shape)
        self.is_pixels: bool = len(self.observation_shape) == 3
        """image observations [H, W, C], channels last (MinAtar: 10 x 10 x k booleans)"""
        self._obs_dtype = torch.float32
        if self.is_pixels and obs_space.dtype in _COMPACT_DTYPES:
            self._obs_dtype = _COMPACT_DTYPES[obs_space.dtype]
        self.is_discrete: bool = isinstance(act_space, gym.spaces.Discrete)
        if self.is_discrete:
            self.n_actions: int | None = int(act_space.n)
            self.action_dim: int | None = None
            self.action_low = self.action_high = None
        elif isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
            self.n_actions = None
            self.action_dim = int(act_space.shape[0])
            self.action_low = torch.as_tensor(act_space.low, dtype=torch.float32, device=self.device)
            self.action_high = torch.as_tensor(
                act_space.high, dtype=torch.float32, device=self.device
            )
        else:
            raise ValueError(
                f"{env_id}: rlteach handles Discrete or flat Box action spaces, got {act_space}."
            )

    @property
    def observation_dim(self) -> int:
        """The length D of a flat observation (refused for images: they have no flat length)."""
        if self.is_pixels:
            raise ValueError(
                f"{self.env_id} gives image observations of shape {list(self.observation_shape)} "
                f"(H, W, C); this network takes flat vectors. The dqn, c51 and ppo recipes build "
                f"MinAtar's convolutional network for images (rlteach.modules.conv)."
            )
        return self.observation_shape[0]

    def _action_to_numpy(self, td: TensorDictBase) -> np.ndarray:
        """Check ``td["action"]`` against the action space before anything is stepped."""
        return self.action_to_numpy(get_key(td, "action", owner=type(self).__name__))

    def action_to_numpy(self, action: torch.Tensor, check: bool = True) -> np.ndarray:
        """An action tensor as the NumPy array Gymnasium takes, checked against the action
        space first unless ``check=False`` (for an action valid by construction)."""
        if not check:
            dtype = np.int64 if self.is_discrete else np.float32
            array = action.detach().numpy() if action.device.type == "cpu" else action.cpu().numpy()
            return array if array.dtype == dtype else array.astype(dtype)
        if self.is_discrete:
            expected = list(self.batch_size)
            if action.shape != self.batch_size or action.is_floating_point():
                raise ValueError(
                    f"{type(self).__name__}: a discrete action must be an integer index tensor of "
                    f"shape {expected}, got dtype {action.dtype} and shape {list(action.shape)}. "
                    f"A categorical policy writes it that way; turn one-hot actions into "
                    f"indices with action.argmax(-1)."
                )
            if action.numel() and (action.min() < 0 or action.max() >= self.n_actions):
                raise ValueError(
                    f"{type(self).__name__}: discrete actions must lie in 0..{self.n_actions - 1}, "
                    f"got {action.flatten().tolist()}."
                )
            return action.detach().cpu().numpy().astype(np.int64)
        expected = [*self.batch_size, self.action_dim]
        if list(action.shape) != expected:
            raise ValueError(
                f"{type(self).__name__}: a continuous action must have shape {expected} "
                f"(batch, action_dim), got {list(action.shape)}."
            )
        if not torch.isfinite(action).all():
            raise ValueError(f"{type(self).__name__}: the action contains NaN or inf: {action}.")
        return action.detach().cpu().numpy().astype(np.float32)

    def root(self, obs) -> TensorDict:
        """The root of a transition: an observation and all-False flags."""
        false = torch.zeros(*self.batch_size, 1, dtype=torch.bool, device=self.device)
        return TensorDict(
            {
                "observation": self._tensor(obs, self._obs_dtype),
                "done": false,
                "terminated": false.clone(),
                "truncated": false.clone(),
            },
            batch_size=self.batch_size,
        )

    def _tensor(self, value, dtype: torch.dtype) -> torch.Tensor:
        """NumPy (or a Python number) in, a tensor on the environment's device out."""
        return torch.as_tensor(np.asarray(value), dtype=dtype, device=self.device)

    def _next(self, obs, reward, terminated, truncated) -> TensorDict:
        return TensorDict(
            self.next_tensors(obs, reward, terminated, truncated), batch_size=self.batch_size
        )

    def next_tensors(self, obs, reward, terminated, truncated) -> dict[str, torch.Tensor]:
        """The ``"next"`` entries of transitions, from what Gymnasium's step returns.

        The arguments are NumPy arrays (or Python numbers) of batch shape ``[*B]``, one step,
        or ``[*B, T]``, T steps stacked; rewards and flags get their trailing singleton dim."""
        shape = (*np.shape(reward), 1)
        terminated = self._tensor(terminated, torch.bool).reshape(shape)
        truncated = self._tensor(truncated, torch.bool).reshape(shape)
        return {
            "observation": self._tensor(obs, self._obs_dtype),
            "reward": self._tensor(reward, torch.float32).reshape(shape),
            "done": terminated | truncated,
            "terminated": terminated,
            "truncated": truncated,
        }

    def state_dict(self) -> dict:
        """Everything that shapes the environment's future, for a checkpoint: the Gymnasium
        environment(s) pickled whole (physical state, ``np_random``, time-limit counter), the
        action space (its RNG draws the random actions) and the reset flags."""
        inner = self.env.envs if hasattr(self.env, "envs") else self.env  # VecGymEnv | GymEnv
        flags = ("_seeded", "_needs_reset", "_obs")
        return {
            "gym": pickle.dumps(inner),
            "action_space": pickle.dumps(self._action_space),
            "flags": {k: getattr(self, k) for k in flags if hasattr(self, k)},
        }

    def load_state_dict(self, state: dict) -> None:
        inner = pickle.loads(state["gym"])
        if hasattr(self.env, "envs"):
            if len(inner) != len(self.env.envs):
                raise ValueError(
                    f"checkpoint: it holds {len(inner)} environment copies, this run has "
                    f"{len(self.env.envs)}; resume with the same num_envs."
                )
            self.env.envs = inner
        else:
            self.env = inner
        self._action_space = pickle.loads(state["action_space"])
        for key, value in state["flags"].items():
            setattr(self, key, value)

    def rand_action(self, td: TensorDictBase | None = None) -> TensorDictBase:
        """Write a uniformly random ``"action"`` (seeded by the env's seed) into ``td``."""
        if td is None:
            td = TensorDict(batch_size=self.batch_size)
        td.set("action", self.random_action())
        return td

    def random_action(self) -> torch.Tensor:
        """A uniformly random action tensor (seeded by the env's seed)."""
        action = self._action_space.sample()
        dtype = torch.int64 if self.is_discrete else torch.float32
        return self._tensor(action, dtype)


class GymEnv(_GymBase):
    """One Gymnasium environment with TorchRL's TensorDict layout; batch size ``[]``.

    ``kwargs`` go to ``gymnasium.make`` (e.g. ``max_episode_steps=20``). ``seed`` seeds the first
    ``reset()``; later resets continue the environment's random stream. There is no autoreset:
    after ``("next", "done")`` call :meth:`reset` (or use :meth:`step_and_maybe_reset`).
    ``device`` is where the tensors it hands out live (see the module docstring).
    """

    def __init__(
        self,
        env_id: str,
        seed: int | None = None,
        *,
        device: str | torch.device = "cpu",
        **kwargs,
    ) -> None:
        self.device = resolve_device(device)
        self.env_id = env_id
        self.env = _make_gym(env_id, **kwargs)
        self.batch_size = torch.Size([])
        self._read_spaces(self.env.observation_space, self.env.action_space, env_id)
        self._action_space = self.env.action_space
        self._seed = seed
        self._seeded = False
        self._needs_reset = True
        if seed is not None:
            self._action_space.seed(seed)

    def reset(self, seed: int | None = None) -> TensorDict:
        if seed is None and not self._seeded:
            seed = self._seed
        self._seeded = True
        obs, _ = self.env.reset(seed=seed)
        self._needs_reset = False
        return self.root(obs)

    def step(self, td: TensorDictBase) -> TensorDictBase:
        """Apply ``td["action"]`` and write ``td["next"]``; returns ``td``."""
        action = self._action_to_numpy(td)
        if self._needs_reset:
            raise RuntimeError(
                f"GymEnv({self.env_id!r}): the episode is over (or never started); call reset() "
                f"before step()."
            )
        obs, reward, terminated, truncated, _ = self.env.step(
            action.item() if self.is_discrete else action
        )
        self._needs_reset = bool(terminated or truncated)
        td.set("next", self._next(obs, reward, terminated, truncated))
        return td

    def step_and_maybe_reset(self, td: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        """Step, then return ``(td, root of the next transition)``, resetting after an end."""
        td = self.step(td)
        if self._needs_reset:
            return td, self.reset()
        return td, self.root(td["next", "observation"])

    def close(self) -> None:
        self.env.close()


class VecGymEnv(_GymBase):
    """``num_envs`` copies of a Gymnasium environment stepped together; batch ``[num_envs]``.

    Built on ``gymnasium.vector.SyncVectorEnv`` with SAME_STEP autoreset (see the module
    docstring). Sub-environment i is seeded with ``seed + i`` at the first reset.
    ``step`` returns the true final observation in ``("next", "observation")``; the reset
    observation of a finished sub-environment is the root returned by
    :meth:`step_and_maybe_reset`. ``device`` is where the tensors it hands out live.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int | None = None,
        *,
        device: str | torch.device = "cpu",
        **kwargs,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"VecGymEnv: num_envs must be a positive integer, got {num_envs!r}.")
        self.device = resolve_device(device)
        _make_gym(env_id, **kwargs).close()  # fail early, with the helpful message
        self.env_id = env_id
        self.num_envs = num_envs
        self.env = SyncVectorEnv(
            [lambda: checkpointable(gym.make(env_id, **kwargs)) for _ in range(num_envs)],
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
        self.batch_size = torch.Size([num_envs])
        self._read_spaces(self.env.single_observation_space, self.env.single_action_space, env_id)
        self._action_space = self.env.action_space
        self._seed = seed
        self._seeded = False
        self._obs = None
        if seed is not None:
            self._action_space.seed(seed)

    def reset(self, seed: int | None = None) -> TensorDict:
        if seed is None and not self._seeded:
            seed = self._seed
        self._seeded = True
        self._obs, _ = self.env.reset(seed=seed)
        return self.root(self._obs)

    def step(self, td: TensorDictBase) -> TensorDictBase:
        """Apply ``td["action"]`` to every sub-environment and write ``td["next"]``."""
        action = self._action_to_numpy(td)
        if self._obs is None:
            raise RuntimeError(f"VecGymEnv({self.env_id!r}): call reset() before step().")
        td.set("next", self._next(*self.step_numpy(action)))
        return td

    def step_numpy(self, action: np.ndarray) -> tuple[np.ndarray, ...]:
        """Step every copy with a NumPy action; NumPy ``(next_obs, reward, terminated,
        truncated)`` of batch ``[num_envs]``, what :meth:`step` writes into ``"next"``.

        ``next_obs`` holds the true final observation of a finished copy; the observation the
        next transition starts from (the reset one there) is :meth:`observation`."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        # SAME_STEP autoreset: obs already holds the reset observation of finished envs; their
        # true last observation is in info["final_obs"] and is the one a transition must keep.
        next_obs = np.array(obs, copy=True)
        if "final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                next_obs[i] = info["final_obs"][i]
        self._obs = obs
        return next_obs, reward, terminated, truncated

    def step_and_maybe_reset(self, td: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        """Step, then return ``(td, root of the next transition)`` (reset obs where done)."""
        td = self.step(td)
        return td, self.current_root()

    def observation(self) -> torch.Tensor:
        """The observation the next transition starts from (the reset one after an end)."""
        return self._tensor(self._obs, self._obs_dtype)

    def current_root(self) -> TensorDict:
        """The root of the next transition: :meth:`observation` and all-False flags."""
        return self.root(self._obs)

    def close(self) -> None:
        self.env.close()


def _categorical_draw(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``Categorical(logits=logits).sample()`` by the very operations torch's Categorical runs,
    in its order, minus the argument checks that cost more than the draw: logits [*B, n] →
    (action (int64) [*B], the normalised logits log π(·) [*B, n]). ``Categorical.log_prob`` of
    the action is the normalised logits' entry at it, ``log_p.gather(-1, action[..., None])``."""
    log_p = logits - logits.logsumexp(dim=-1, keepdim=True)  # Categorical's normalised logits
    probs = torch.nn.functional.softmax(log_p, dim=-1)  # its probs
    if logits.dim() == 2:  # Categorical reshapes probs to [N, n], draws [N, 1], transposes
        return torch.multinomial(probs, 1, True).squeeze(-1), log_p
    draw = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, True).T
    return draw.reshape(logits.shape[:-1]), log_p


class _TensorActor:
    """An actor of :mod:`rlteach.modules` (categorical, normal, MinAtar's) called on plain tensors.

    The actor is ``ProbabilisticTensorDictSequential(TensorDictModule(network), head)``; called on
    a TensorDict, tensordict builds the distribution from the network's outputs, draws from it
    (``rsample()`` when it has one, else ``sample()``) and scores the draw with ``log_prob``.
    This does exactly that on tensors: the same network, the same distribution built with the
    same arguments, the same calls in the same order, so it takes the very draws from torch's
    generator that the TensorDict modules take and returns the same tensors, without the
    TensorDict bookkeeping around them (tests/test_envs.py checks the two bit for bit).
    :meth:`recognise` returns ``None`` for any other policy, which then runs as a TensorDict.
    """

    def __init__(self, net: TensorDictModule, head: ProbabilisticTensorDictModule) -> None:
        self.network = net.module
        self.param_keys = list(net.out_keys)
        self.dist_keys = [
            (dist_key[-1] if isinstance(dist_key, tuple) else dist_key, td_key)
            for dist_key, td_key in zip(head.dist_keys, head.in_keys, strict=True)
        ]
        self.head = head
        self.log_prob_key = head.log_prob_key
        self.categorical = (
            head.distribution_class is torch.distributions.Categorical
            and not head.distribution_kwargs
            and [dist_key for dist_key, _ in self.dist_keys] == ["logits"]
        )
        self.logits_index = self.param_keys.index(self.dist_keys[0][1])
        last = "normalised logits" if self.categorical else self.log_prob_key
        self.keys = [*self.param_keys, "action", last]
        """the names of what a call returns, in the order the TensorDict modules write them"""

    @classmethod
    def recognise(cls, policy) -> _TensorActor | None:
        """A tensor twin of ``policy``, or ``None`` where its TensorDict call does more."""
        if type(policy) is not ProbabilisticTensorDictSequential or len(policy.module) != 2:
            return None
        net, head = policy.module
        if type(net) is not TensorDictModule or type(head) is not ProbabilisticTensorDictModule:
            return None
        # torch's hook tables: a module with hooks runs as a TensorDict, hooks and all
        modules = (policy, net, head, net.module)
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in modules)  # noqa: SLF001
        plain = (
            not hooked
            and list(net.in_keys) == ["observation"]
            and all(isinstance(key, str) for key in net.out_keys)
            and set(head.in_keys) <= set(net.out_keys)
            and head.return_log_prob
            and list(head.dist_sample_keys) == ["action"]
            and isinstance(head.log_prob_key, str)
            and head.num_samples is None
            and getattr(head, "_generator", None) is None
            and getattr(head, "_generator_key", None) is None
            and isinstance(head.distribution_class, type)
            and issubclass(head.distribution_class, torch.distributions.Distribution)
            and not policy.return_composite
            and policy.inplace is None
            and not policy._select_before_return  # noqa: SLF001 (tensordict's own flag)
        )
        return cls(net, head) if plain else None

    def __call__(self, observation: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The network's outputs, the action and its log-probability (named by ``keys``) for
        one batch of observations; for a Categorical, the normalised logits instead of the
        log-probability, which :meth:`finish` picks from them once per batch."""
        params = self.network(observation)
        params = params if isinstance(params, tuple) else (params,)
        if self.categorical:
            return (*params, *_categorical_draw(params[self.logits_index]))
        named = dict(zip(self.param_keys, params, strict=True))
        dist = self.head.distribution_class(
            **{dist_key: named[td_key] for dist_key, td_key in self.dist_keys},
            **self.head.distribution_kwargs,
        )
        action = dist.rsample() if dist.has_rsample else dist.sample()  # InteractionType.RANDOM
        return (*params, action, dist.log_prob(action))

    def finish(self, columns: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch's columns, stacked calls [*B, T, ...] named by ``keys``, with the
        log-probability of every action in place of a Categorical's normalised logits."""
        if self.categorical:
            log_p = columns.pop("normalised logits")  # Categorical.log_prob's gather
            log_prob = log_p.gather(-1, columns["action"].unsqueeze(-1)).squeeze(-1)
            columns[self.log_prob_key] = log_prob
        return columns


class Collector:
    """Roll a policy in an environment and yield batches of ``frames_per_batch`` transitions.

    ====================  =================================================================
    ``env``               a :class:`GymEnv` or :class:`VecGymEnv` (batch ``*B``)
    ``policy``            TensorDict → TensorDict writing ``"action"`` (and e.g.
                          ``"action_log_prob"``); ``None`` acts uniformly at random
    ``frames_per_batch``  transitions per batch, a multiple of ``num_envs``
    ``total_frames``      stop after this many transitions (``-1``: never stop)
    ``fast``              step on plain tensors where that gives the same batch (below);
                          ``False``: always the per-step TensorDict loop
    ====================  =================================================================

    Each batch has batch size ``[*B, T]`` with ``T = frames_per_batch / num_envs`` (time last)
    and holds the root keys, everything the policy wrote, and ``"next"``. The environment is
    reset once, on the first batch; later batches continue from the last observation, so an
    episode can span batches. The policy runs under ``torch.no_grad()`` and
    ``set_interaction_type(interaction_type)`` (random sampling by default). Finished episodes
    are recorded in ``episode_returns`` / ``episode_lengths`` (in order of ending); ``frames``
    counts the transitions collected so far.

    Reproducibility: the environment's ``seed`` fixes the environment (and random actions when
    ``policy`` is ``None``); a stochastic policy samples from torch's global RNG, so call
    ``torch.manual_seed`` as well.

    The batches live on the environment's ``device``, which must be the policy's.

    Two loops give the same batches. :meth:`rollout_tensordict` is the readable one: each step
    clones the root TensorDict, calls the policy on it, and the environment writes ``"next"``
    into it; the batch is the stack of those TensorDicts. Building and stacking a TensorDict per
    step costs more than CartPole's step and a small network's forward together, so with
    ``fast=True`` (the default) a :class:`VecGymEnv` on the CPU run by one of
    :mod:`rlteach.modules`' actors, or by random actions, uses :meth:`rollout_tensors` instead: the actor's network and
    distribution called on tensors (:class:`_TensorActor`), the environment's NumPy arrays
    kept as they come, and one TensorDict built per batch. It draws the same random numbers in
    the same order, so the batches, the episode records and every run built on them are
    bit-identical (tests/test_envs.py checks it). Any other policy, environment or device (the
    tensor loop was written for any device but compared with the reference on the CPU only), or
    an ``interaction_type`` other than random sampling, runs the TensorDict loop.
    """

    def __init__(
        self,
        env: GymEnv | VecGymEnv,
        policy: Policy | None,
        frames_per_batch: int,
        total_frames: int = -1,
        interaction_type: InteractionType = InteractionType.RANDOM,
        fast: bool = True,
    ) -> None:
        if not isinstance(env, _GymBase):
            raise TypeError(
                f"Collector needs a rlteach GymEnv or VecGymEnv, got {type(env).__name__}. Wrap "
                f"a Gymnasium id with GymEnv('CartPole-v1') or VecGymEnv('CartPole-v1', 4)."
            )
        num_envs = env.batch_size.numel()
        if (
            isinstance(frames_per_batch, bool)
            or not isinstance(frames_per_batch, int)
            or frames_per_batch < num_envs
            or frames_per_batch % num_envs
        ):
            raise ValueError(
                f"Collector: frames_per_batch must be a positive multiple of the number of "
                f"environments ({num_envs}), got {frames_per_batch!r}."
            )
        if not isinstance(total_frames, int) or (total_frames < 1 and total_frames != -1):
            raise ValueError(
                f"Collector: total_frames must be a positive integer or -1 (no limit), got "
                f"{total_frames!r}."
            )
        self.env = env
        self.policy = policy
        self.frames_per_batch = frames_per_batch
        self.total_frames = total_frames
        self.interaction_type = interaction_type
        self.steps_per_batch = frames_per_batch // num_envs
        self.frames = 0
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []
        self._root: TensorDict | None = None
        self._running_return = torch.zeros(env.batch_size, device=env.device)
        self._running_length = torch.zeros(env.batch_size, dtype=torch.int64, device=env.device)
        self._tensor_actor = _TensorActor.recognise(policy)
        self.fast = (
            fast
            and isinstance(env, VecGymEnv)
            and env.device.type == "cpu"  # the only device the two loops were compared on
            and interaction_type == InteractionType.RANDOM
            and (policy is None or self._tensor_actor is not None)
        )
        """whether :meth:`rollout` takes the tensor loop (see the class docstring)"""

    def _act(self, td: TensorDictBase) -> TensorDictBase:
        if self.policy is None:
            return self.env.rand_action(td)
        out = self.policy(td)
        return td if out is None else out

    def _record_episodes(self, next_td: TensorDictBase) -> None:
        self._running_return += next_td["reward"].squeeze(-1)
        self._running_length += 1
        done = next_td["done"].squeeze(-1)
        for i in done.flatten().nonzero().flatten().tolist():
            idx = np.unravel_index(i, tuple(self.env.batch_size)) if done.ndim else ()
            self.episode_returns.append(float(self._running_return[idx]))
            self.episode_lengths.append(int(self._running_length[idx]))
        self._running_return = torch.where(done, 0.0, self._running_return)
        self._running_length = torch.where(done, 0, self._running_length)

    def state_dict(self) -> dict:
        """Frames so far, the observation the next batch starts from, the episodes in progress
        and finished, and the environment's own state (for a checkpoint)."""
        return {
            "frames": self.frames,
            "episode_returns": list(self.episode_returns),
            "episode_lengths": list(self.episode_lengths),
            "root": None if self._root is None else self._root.clone(),
            "running_return": self._running_return.clone(),
            "running_length": self._running_length.clone(),
            "env": self.env.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output (its tensors go to the environment's device)."""
        self.frames = state["frames"]
        self.episode_returns[:] = state["episode_returns"]
        self.episode_lengths[:] = state["episode_lengths"]
        device = self.env.device  # a checkpoint is read onto the CPU
        self._root = None if state["root"] is None else state["root"].to(device)
        self._running_return = state["running_return"].to(device)
        self._running_length = state["running_length"].to(device)
        self.env.load_state_dict(state["env"])

    def rollout(self) -> TensorDict:
        """Collect one batch ``[*B, T]``."""
        return self.rollout_tensors() if self.fast else self.rollout_tensordict()

    def rollout_tensordict(self) -> TensorDict:
        """One batch, a TensorDict per step: the readable loop, and the reference."""
        if self._root is None:
            self._root = self.env.reset()
        steps = []
        with torch.no_grad(), set_interaction_type(self.interaction_type):
            for _ in range(self.steps_per_batch):
                td = self._act(self._root.clone())
                td, self._root = self.env.step_and_maybe_reset(td)
                self._record_episodes(td["next"])
                steps.append(td)
        self.frames += self.frames_per_batch
        return torch.stack(steps, dim=-1).contiguous()

    def rollout_tensors(self) -> TensorDict:
        """One batch, plain tensors per step and one TensorDict at the end: the same batch as
        :meth:`rollout_tensordict` (same keys in the same order, same values), made faster."""
        env = self.env
        if self._root is None:
            self._root = env.reset()
        obs = self._root["observation"]
        # a categorical draw is an index in range by construction: only random or continuous
        # actions are checked, as env.step checks them
        check = not (env.is_discrete and self._tensor_actor is not None)
        actor = self._tensor_actor
        keys = ["action"] if actor is None else actor.keys
        action_index = keys.index("action")
        observations, outputs, steps = [], [], []
        with torch.no_grad():
            for _ in range(self.steps_per_batch):
                observations.append(obs)
                # random actions are drawn as env.rand_action draws them
                out = (env.random_action(),) if actor is None else actor(obs)
                outputs.append(out)
                steps.append(env.step_numpy(env.action_to_numpy(out[action_index], check)))
                obs = env.observation()
        self._root = env.current_root()
        # each of Gymnasium's four results stacked along time, [*B, T, ...] (one C-level copy)
        time_dim = len(env.batch_size)
        next_arrays = [
            np.ascontiguousarray(np.moveaxis(np.array(column), 0, time_dim))
            for column in zip(*steps, strict=True)
        ]
        self._record_batch_episodes(*next_arrays[1:])
        self.frames += self.frames_per_batch
        columns = {
            key: torch.stack(column, dim=time_dim)
            for key, column in zip(keys, zip(*outputs, strict=True), strict=True)
        }
        if actor is not None:
            columns = actor.finish(columns)
        return self._batch(observations, columns, next_arrays)

    def _record_batch_episodes(self, rewards, terminated, truncated) -> None:
        """:meth:`_record_episodes` for a whole batch at once, with the same float32 sums.

        Each copy's running return is its carried sum plus the rewards added one at a time
        (``np.add.accumulate`` is that sequential float32 sum), restarted from 0 after each
        episode's end; the finished episodes are appended in the same order, by step then copy.
        """
        reward = np.asarray(rewards, dtype=np.float32)  # [num_envs, T]
        done = np.logical_or(terminated, truncated)
        running_return = self._running_return.cpu().numpy().copy()
        running_length = self._running_length.cpu().numpy().copy()
        ended = []  # (step, copy, return, length)
        for i in range(reward.shape[0]):
            start = 0
            for t in np.flatnonzero(done[i]).tolist():
                sums = np.add.accumulate(np.append(running_return[i], reward[i, start : t + 1]))
                ended.append((t, i, float(sums[-1]), int(running_length[i]) + t + 1 - start))
                running_return[i], running_length[i], start = 0.0, 0, t + 1
            sums = np.add.accumulate(np.append(running_return[i], reward[i, start:]))
            running_return[i] = sums[-1]
            running_length[i] += reward.shape[1] - start
        for _, _, episode_return, length in sorted(ended):
            self.episode_returns.append(episode_return)
            self.episode_lengths.append(length)
        self._running_return = torch.as_tensor(running_return, device=self.env.device)
        self._running_length = torch.as_tensor(running_length, device=self.env.device)

    def _batch(self, observations, outputs, next_arrays) -> TensorDict:
        """The [*B, T] TensorDict of rollout_tensordict, from the steps' tensors and arrays."""
        env, time_dim = self.env, len(self.env.batch_size)
        shape = (*env.batch_size, self.steps_per_batch, 1)
        false = torch.zeros(shape, dtype=torch.bool, device=env.device)
        data = {
            "observation": torch.stack(observations, dim=time_dim),
            "done": false,
            "terminated": false.clone(),
            "truncated": false.clone(),
        }
        data.update(outputs)
        data["next"] = env.next_tensors(*next_arrays)
        return TensorDict(data, batch_size=shape[:-1])

    def __iter__(self) -> Iterator[TensorDict]:
        while self.total_frames == -1 or self.frames < self.total_frames:
            yield self.rollout()

    def __len__(self) -> int:
        if self.total_frames == -1:
            raise TypeError("Collector with total_frames=-1 is endless and has no length.")
        return -(-self.total_frames // self.frames_per_batch)


def evaluate_returns(
    policy: Policy,
    env: str | GymEnv,
    episodes: int = 10,
    seed: int = 0,
    deterministic: bool = True,
    max_steps: int | None = None,
) -> list[float]:
    """Returns of ``episodes`` full episodes; episode k starts from ``reset(seed=seed + k)``.

    Each episode runs until termination or truncation (the environment's time limit, or
    ``max_steps`` when given). The policy acts under ``torch.no_grad()`` and
    ``InteractionType.DETERMINISTIC`` (argmax / squash(loc) / mean) unless
    ``deterministic=False``, in which case it samples.

    Given a Gymnasium id, the episodes run side by side in a vector environment (one copy each,
    same seeds), so the policy must accept a batch ``[episodes]`` as every ``tensordict.nn``
    module does; given a :class:`GymEnv`, they run one after another on that environment.
    The vector environment puts its observations on the policy's device (that of its first
    parameter; the CPU for a policy without any).
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"evaluate: episodes must be a positive integer, got {episodes!r}.")
    if not isinstance(env, (str, GymEnv)):
        raise TypeError(
            f"evaluate needs a Gymnasium id or a rlteach GymEnv, got {type(env).__name__}."
        )
    mode = InteractionType.DETERMINISTIC if deterministic else InteractionType.RANDOM
    if isinstance(env, str):
        device = module_device(policy)
        return _evaluate_side_by_side(policy, env, episodes, seed, mode, max_steps, device)
    returns = []
    with torch.no_grad(), set_interaction_type(mode):
        for k in range(episodes):
            td = env.reset(seed=seed + k)
            total, steps = 0.0, 0
            while True:
                td = policy(td)
                td = env.step(td)
                total += float(td["next", "reward"])
                steps += 1
                if bool(td["next", "done"]) or (max_steps is not None and steps >= max_steps):
                    break
                td = env.root(td["next", "observation"])
            returns.append(total)
    return returns


def _evaluate_side_by_side(
    policy, env_id, episodes, seed, mode, max_steps, device, trace: EvalTrace | None = None
) -> list[float]:
    """The episodes of :func:`evaluate_returns` run at once, one per copy of a vector env.

    Copy k is reset with ``seed + k`` (as the one-at-a-time loop resets episode k), and only
    its first episode counts: after it ends, the copy's rewards are ignored. The policy is called
    once per time step for all episodes instead of once per step per episode. Given a ``trace``,
    every step of every counted episode is recorded into it as well.
    """
    venv = VecGymEnv(env_id, episodes, device=device)
    td = venv.reset(seed=seed)
    returns = np.zeros(episodes)
    finished = np.zeros(episodes, dtype=bool)
    steps = 0
    with torch.no_grad(), set_interaction_type(mode):
        while not finished.all() and (max_steps is None or steps < max_steps):
            td, next_root = venv.step_and_maybe_reset(policy(td))
            reward = td["next", "reward"].reshape(episodes).double().cpu().numpy()
            returns += np.where(finished, 0.0, reward)
            if trace is not None:
                trace.record(td, reward, ~finished)
            finished |= td["next", "done"].reshape(episodes).cpu().numpy()
            steps += 1
            td = next_root
    venv.close()
    return returns.tolist()


class EvalTrace:
    """Every step of evaluation episodes: what a value estimate is checked against.

    After :func:`evaluate_trace`, ``observations[k]``, ``actions[k]`` and ``rewards[k]`` hold
    episode k's steps in order ([L_k, ...] tensors and a float64 array) and ``terminated[k]``
    says whether it ended in a terminal state (False: cut by the time limit or ``max_steps``).
    """

    def __init__(self, episodes: int) -> None:
        self._obs: list[list[torch.Tensor]] = [[] for _ in range(episodes)]
        self._act: list[list[torch.Tensor]] = [[] for _ in range(episodes)]
        self._rew: list[list[float]] = [[] for _ in range(episodes)]
        self.terminated = [False] * episodes

    def record(self, td: TensorDictBase, reward: np.ndarray, live: np.ndarray) -> None:
        terminated = td["next", "terminated"].reshape(len(self._obs)).cpu().numpy()
        for k in np.flatnonzero(live):
            self._obs[k].append(td["observation"][k])
            self._act[k].append(td["action"][k])
            self._rew[k].append(float(reward[k]))
            self.terminated[k] = bool(terminated[k])

    @property
    def observations(self) -> list[torch.Tensor]:
        return [torch.stack(o) for o in self._obs]

    @property
    def actions(self) -> list[torch.Tensor]:
        return [torch.stack(a) for a in self._act]

    @property
    def rewards(self) -> list[np.ndarray]:
        return [np.asarray(r, dtype=np.float64) for r in self._rew]

    def discounted_returns(self, gamma: float) -> list[np.ndarray]:
        """G_t = sum_j gamma^j r_{t+j} within each episode (0 after its last step)."""
        out = []
        for rewards in self.rewards:
            g, acc = np.zeros_like(rewards), 0.0
            for t in range(len(rewards) - 1, -1, -1):
                acc = rewards[t] + gamma * acc
                g[t] = acc
            out.append(g)
        return out


def evaluate_trace(
    policy: Policy,
    env_id: str,
    episodes: int = 10,
    seed: int = 0,
    deterministic: bool = True,
    max_steps: int | None = None,
) -> tuple[list[float], EvalTrace]:
    """:func:`evaluate_returns` on a Gymnasium id (same episodes, same returns), plus the
    :class:`EvalTrace` of every step: observations, the policy's actions and the rewards."""
    mode = InteractionType.DETERMINISTIC if deterministic else InteractionType.RANDOM
    trace = EvalTrace(episodes)
    device = module_device(policy)
    returns = _evaluate_side_by_side(
        policy, env_id, episodes, seed, mode, max_steps, device, trace
    )
    return returns, trace


def evaluate(
    policy: Policy,
    env: str | GymEnv,
    episodes: int = 10,
    seed: int = 0,
    deterministic: bool = True,
    max_steps: int | None = None,
) -> float:
    """Mean return of ``episodes`` evaluation episodes (see :func:`evaluate_returns`)."""
    returns = evaluate_returns(policy, env, episodes, seed, deterministic, max_steps)
    return float(np.mean(returns))
