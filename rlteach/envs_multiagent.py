"""Multi-agent environments stepped into TensorDicts with TorchRL's grouped layout.

Per-agent entries live under a *group* key (``"agents"``), with the agent dim after the batch
dims; flags that concern the whole team live at the root:

==================================  ================  =============================================
key                                 shape / dtype     meaning
==================================  ================  =============================================
``("agents", "observation")``       [E, n, D] f32     o^i_t, agent i's own observation
``"state"``                         [E, S] f32        s_t, the global state (centralised training)
``("agents", "action")``            [E, n] int64      u^i_t, an index per agent (discrete actions)
``("next", "agents", "reward")``    [E, n, 1] f32     r^i_{t+1} (PettingZoo hands one per agent)
``("next", "reward")``              [E, 1] f32        the team reward (:class:`TwoStepGame`)
``("next", "done")``,               [E, 1] bool       shared flags: the episode of copy e ended,
``("next", "terminated")``,                           terminally, or by a time limit
``("next", "truncated")``
==================================  ================  =============================================

``E`` is the number of environment copies stepped together (``num_envs``). This is the layout of
TorchRL's ``PettingZooEnv`` / ``VmasEnv`` for a single group of homogeneous agents, so a batch
from here can be fed to TorchRL's multi-agent losses as it is.

Stepping follows :mod:`rlteach.envs`: ``reset()`` returns the root of a transition,
``step(td)`` adds ``"next"``, and ``step_and_maybe_reset(td)`` also returns the root of the
following transition, resetting (only) the copies whose episode ended. Copy e is seeded with
``seed + e`` at the first reset.

:class:`MultiAgentCollector` rolls a policy in either environment and records **team returns**:
the episode sum of the team reward, or, when rewards are per agent, of their mean over agents.

Device: as in :mod:`rlteach.envs`, an environment made with ``device="cuda"`` hands out its
tensors on that device and takes its actions back from anywhere (``.cpu()``); the collector keeps
its running returns there too.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import InteractionType, set_interaction_type

from rlteach._checks import get_key, resolve_device

__all__ = [
    "PettingZooParallelEnv",
    "make_simple_spread",
    "TwoStepGame",
    "MultiAgentCollector",
    "evaluate_team_return",
    "evaluate_team_returns",
    "make_multiagent_env",
    "MULTIAGENT_TASKS",
]


def _check_num_envs(owner: str, num_envs) -> int:
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"{owner}: num_envs must be a positive integer, got {num_envs!r}.")
    return num_envs


def _flags(done: np.ndarray, terminated: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    done_t = torch.as_tensor(done, dtype=torch.bool, device=device).reshape(-1, 1)
    term_t = torch.as_tensor(terminated, dtype=torch.bool, device=device).reshape(-1, 1)
    return {"done": done_t, "terminated": term_t, "truncated": done_t & ~term_t}


# ----------------------------------------------------------------------------------------------
# PettingZoo's parallel API
# ----------------------------------------------------------------------------------------------


def make_simple_spread(**kwargs):
    """A factory for MPE *simple spread* (PettingZoo / ``mpe2``), discrete actions.

    ``kwargs`` go to ``mpe2.simple_spread_v3.parallel_env`` (defaults there: ``N=3`` agents and
    landmarks, ``local_ratio=0.5``, ``max_cycles=25``). Returns a zero-argument callable, as
    :class:`PettingZooParallelEnv` expects.
    """
    try:
        from mpe2 import simple_spread_v3
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError(
            "MPE simple spread needs the packages pettingzoo and mpe2: pip install pettingzoo mpe2 "
            "(or pip install -e '.[dev]')."
        ) from err
    kwargs.setdefault("continuous_actions", False)
    return lambda: simple_spread_v3.parallel_env(**kwargs)


_LINKS = ("aec_env", "env")
"""Attributes through which a PettingZoo wrapper holds the environment it wraps."""
_RENDERING = frozenset({"viewer", "screen", "game_font", "renderOn", "clock"})
"""Attributes of MPE's pygame rendering: not state, and pygame objects do not pickle."""


def _layers(env) -> list:
    """The wrapper chain of a PettingZoo environment, outermost first, down to the raw env."""
    layers = [env]
    while True:
        inner = next((vars(layers[-1])[k] for k in _LINKS if k in vars(layers[-1])), None)
        if inner is None:
            return layers
        layers.append(inner)


def _layer_name(layer) -> str:
    return f"{type(layer).__module__}.{type(layer).__qualname__}"


def _pettingzoo_state(env) -> bytes:
    """A PettingZoo environment's state, pickled by value, layer by layer.

    Pickling the environment itself does not work: MPE's ``raw_env`` is an ``EzPickle``, which
    pickles its *constructor arguments* and unpickles a freshly built, never reset environment
    (stepping it fails with ``'raw_env' object has no attribute 'agent_selection'``). So the
    instance attributes of every layer are saved instead (the world with each entity's position
    and velocity, the env's ``np_random``, the step counter, the agent selector, the reward and
    termination dicts, the wrappers' flags), without the links between layers and the pygame
    rendering objects, and :meth:`PettingZooParallelEnv.load_state_dict` writes them back into
    live layers.
    """
    return pickle.dumps(
        [
            (
                _layer_name(layer),
                {k: v for k, v in vars(layer).items() if k not in _LINKS and k not in _RENDERING},
            )
            for layer in _layers(env)
        ]
    )


def _check_same_layers(env, saved: list) -> None:
    names = [_layer_name(layer) for layer in _layers(env)]
    if names != [name for name, _ in saved]:
        raise ValueError(
            f"PettingZooParallelEnv: the saved state comes from the wrapper chain "
            f"{[name for name, _ in saved]}, this environment is {names}; load it into the same "
            f"kind of environment (same env_fn)."
        )


class PettingZooParallelEnv:
    """``num_envs`` copies of a PettingZoo parallel environment, grouped under ``group``.

    ==================  ============================================================
    ``env_fn``          zero-argument callable returning a PettingZoo ``ParallelEnv``
                        (e.g. ``make_simple_spread()``)
    ``num_envs``        copies stepped together: batch size ``[num_envs]``
    ``seed``            copy e is reset with ``seed + e`` the first time
    ``group``           the group key (TorchRL's default ``"agents"``)
    ``device``          where the tensors it hands out live (default the CPU)
    ==================  ============================================================

    The agents must be homogeneous (same observation and discrete action space) and all act at
    every step until the episode ends for all of them at once (true of MPE). The global
    ``"state"`` is written when the environment implements ``state()``. Rewards are per agent,
    ``("next", group, "reward")``; ``done = all agents terminated or truncated``.
    """

    def __init__(
        self,
        env_fn: Callable[[], object],
        num_envs: int = 1,
        seed: int | None = None,
        group: str = "agents",
        *,
        device: str | torch.device = "cpu",
    ) -> None:
        owner = "PettingZooParallelEnv"
        self.num_envs = _check_num_envs(owner, num_envs)
        self.device = resolve_device(device)
        self.envs = [env_fn() for _ in range(num_envs)]
        first = self.envs[0]
        self.agents = list(first.possible_agents)
        spaces_obs = [first.observation_space(a) for a in self.agents]
        spaces_act = [first.action_space(a) for a in self.agents]
        if any(s.shape != spaces_obs[0].shape for s in spaces_obs):
            raise ValueError(
                f"{owner}: the agents' observation spaces differ "
                f"({[s.shape for s in spaces_obs]}); one group needs one shape. Split them into "
                f"groups by hand."
            )
        if any(not hasattr(s, "n") or s.n != spaces_act[0].n for s in spaces_act):
            raise ValueError(
                f"{owner}: every agent needs the same Discrete action space, got {spaces_act}. "
                f"For MPE pass continuous_actions=False."
            )
        self.group = group
        self.n_agents = len(self.agents)
        self.observation_dim = int(np.prod(spaces_obs[0].shape))
        self.n_actions = int(spaces_act[0].n)
        self.is_discrete = True
        self.state_dim = None
        if hasattr(first, "state"):  # MPE's state() needs a reset world first
            first.reset(seed=seed)
            self.state_dim = int(np.asarray(first.state()).size)
        self.batch_size = torch.Size([num_envs])
        self._seed = seed
        self._seeded = False
        self._rng = np.random.default_rng(seed)
        self._obs: list[dict] | None = None

    # -- conversion ----------------------------------------------------------------------
    def _obs_tensor(self, obs_dicts: list[dict]) -> torch.Tensor:
        stacked = np.stack(
            [np.stack([np.asarray(o[a], dtype=np.float32) for a in self.agents]) for o in obs_dicts]
        )
        return torch.as_tensor(stacked, device=self.device).reshape(
            self.num_envs, self.n_agents, self.observation_dim
        )

    def _states(self) -> torch.Tensor:
        return torch.as_tensor(
            np.stack([np.asarray(e.state(), dtype=np.float32).reshape(-1) for e in self.envs]),
            device=self.device,
        )

    def _root(self, obs_dicts: list[dict]) -> TensorDict:
        false = torch.zeros(self.num_envs, 1, dtype=torch.bool, device=self.device)
        td = TensorDict(
            {
                self.group: TensorDict(
                    {"observation": self._obs_tensor(obs_dicts)},
                    batch_size=[self.num_envs, self.n_agents],
                ),
                "done": false,
                "terminated": false.clone(),
                "truncated": false.clone(),
            },
            batch_size=self.batch_size,
        )
        if self.state_dim is not None:
            td.set("state", self._states())
        return td

    # -- the environment API -------------------------------------------------------------
    def reset(self, seed: int | None = None) -> TensorDict:
        """Reset every copy (copy e with ``seed + e``); return the root TensorDict."""
        if seed is None and not self._seeded:
            seed = self._seed
        self._seeded = True
        self._obs = [
            env.reset(seed=None if seed is None else seed + e)[0] for e, env in enumerate(self.envs)
        ]
        return self._root(self._obs)

    def _actions(self, td: TensorDictBase) -> np.ndarray:
        action = get_key(td, (self.group, "action"), owner="PettingZooParallelEnv")
        if action.shape != (self.num_envs, self.n_agents):
            raise ValueError(
                f"PettingZooParallelEnv: ('{self.group}', 'action') must have shape "
                f"[num_envs={self.num_envs}, n_agents={self.n_agents}] (one index per agent), "
                f"got {list(action.shape)}."
            )
        return action.detach().cpu().numpy().astype(np.int64)

    def step(self, td: TensorDictBase) -> TensorDictBase:
        """Apply ``(group, "action")`` in every copy and write ``td["next"]``; returns ``td``."""
        actions = self._actions(td)
        if self._obs is None:
            raise RuntimeError("PettingZooParallelEnv: call reset() before step().")
        obs, rewards, dones, terms = [], [], [], []
        for e, env in enumerate(self.envs):
            o, r, term, trunc, _ = env.step(
                {a: int(actions[e, i]) for i, a in enumerate(self.agents)}
            )
            obs.append(o)
            rewards.append([r[a] for a in self.agents])
            ended = [term[a] or trunc[a] for a in self.agents]
            if any(ended) and not all(ended):
                raise RuntimeError(
                    "PettingZooParallelEnv: some agents finished while others go on; this "
                    "wrapper needs the whole team to end together (as in MPE)."
                )
            dones.append(all(ended))
            terms.append(all(term[a] for a in self.agents))
        nxt = TensorDict(
            {
                self.group: TensorDict(
                    {
                        "observation": self._obs_tensor(obs),
                        "reward": torch.tensor(
                            rewards, dtype=torch.float32, device=self.device
                        ).unsqueeze(-1),
                    },
                    batch_size=[self.num_envs, self.n_agents],
                ),
                **_flags(np.array(dones), np.array(terms), self.device),
            },
            batch_size=self.batch_size,
        )
        if self.state_dim is not None:
            nxt.set("state", self._states())
        self._obs = obs
        td.set("next", nxt)
        return td

    def step_and_maybe_reset(self, td: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        """Step, then return ``(td, root of the next transition)``; ended copies are reset."""
        td = self.step(td)
        done = td["next", "done"].reshape(-1).tolist()
        for e, ended in enumerate(done):
            if ended:
                self._obs[e] = self.envs[e].reset()[0]
        return td, self._root(self._obs)

    def rand_action(self, td: TensorDictBase | None = None) -> TensorDictBase:
        """Write a uniformly random ``(group, "action")`` [E, n] (seeded by the env's seed)."""
        if td is None:
            td = TensorDict(batch_size=self.batch_size)
        action = self._rng.integers(self.n_actions, size=(self.num_envs, self.n_agents))
        td.set(
            (self.group, "action"), torch.as_tensor(action, dtype=torch.int64, device=self.device)
        )
        return td

    def state_dict(self) -> dict:
        """Everything the next steps depend on: each copy's state (see :func:`_pettingzoo_state`),
        the random-action RNG, whether the first reset was seeded, and the current observations.
        """
        return {
            "envs": [_pettingzoo_state(env) for env in self.envs],
            "rng": self._rng.bit_generator.state,
            "seeded": self._seeded,
            "obs": pickle.dumps(self._obs),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` into this environment's live copies (checked first)."""
        if len(state["envs"]) != self.num_envs:
            raise ValueError(
                f"PettingZooParallelEnv: the state holds {len(state['envs'])} copies, this one "
                f"has {self.num_envs}; load it into an environment with the same num_envs."
            )
        layers = [pickle.loads(blob) for blob in state["envs"]]
        for env, saved in zip(self.envs, layers, strict=True):
            _check_same_layers(env, saved)
        for env, saved in zip(self.envs, layers, strict=True):
            for layer, attributes in zip(_layers(env), saved, strict=True):
                vars(layer).update(attributes[1])
        self._rng.bit_generator.state = state["rng"]
        self._seeded = state["seeded"]
        self._obs = pickle.loads(state["obs"])

    def close(self) -> None:
        for env in self.envs:
            env.close()


# ----------------------------------------------------------------------------------------------
# The QMIX paper's two-step cooperative matrix game
# ----------------------------------------------------------------------------------------------


class TwoStepGame:
    """The two-step cooperative matrix game of Rashid et al. (2018), Sec. 5 / Fig. 3.

    Two agents, two actions each (0 = "A", 1 = "B"). In state 1 agent 1's action picks the game
    played next (A → state 2A, B → state 2B); agent 2's action has no effect; the reward is 0.
    In the second step both agents act and receive the team reward of that state's payoff
    matrix, and the episode terminates:

    ========  =====================  ======================
    state     payoff (rows: agent 1, columns: agent 2)
    ========  =============================================
    2A        [[7, 7], [7, 7]]
    2B        [[0, 1], [1, 8]]
    ========  =============================================

    The optimal joint policy goes to 2B and plays (B, B): return 8. A value factorisation that
    cannot represent 2B's payoff (VDN's sum) values 2B too low and settles for 2A: return 7.

    Observations: agent i sees the one-hot state (3) and its own one-hot id (2), [E, 2, 5];
    the global ``"state"`` is the one-hot state [E, 3]. The game is deterministic; ``seed`` only
    seeds :meth:`rand_action` (drawn on the CPU, then moved: the same on every device).
    ``device`` is where the tensors it hands out live.
    """

    PAYOFF_2A = torch.tensor([[7.0, 7.0], [7.0, 7.0]])
    PAYOFF_2B = torch.tensor([[0.0, 1.0], [1.0, 8.0]])
    n_agents = 2
    n_actions = 2
    observation_dim = 5
    state_dim = 3
    is_discrete = True

    def __init__(
        self,
        num_envs: int = 1,
        seed: int | None = None,
        group: str = "agents",
        *,
        device: str | torch.device = "cpu",
    ) -> None:
        self.num_envs = _check_num_envs("TwoStepGame", num_envs)
        self.device = resolve_device(device)
        self._payoff_2a = self.PAYOFF_2A.to(self.device)
        self._payoff_2b = self.PAYOFF_2B.to(self.device)
        self.batch_size = torch.Size([num_envs])
        self.group = group
        self._generator = torch.Generator().manual_seed(0 if seed is None else seed)
        self._state: torch.Tensor | None = None  # 0 = state 1, 1 = 2A, 2 = 2B

    def root(self, state: torch.Tensor) -> TensorDict:
        false = torch.zeros(self.num_envs, 1, dtype=torch.bool, device=self.device)
        return TensorDict(
            {
                self.group: TensorDict(
                    {"observation": self._observation(state)},
                    batch_size=[self.num_envs, self.n_agents],
                ),
                "state": torch.nn.functional.one_hot(state, 3).float(),
                "done": false,
                "terminated": false.clone(),
                "truncated": false.clone(),
            },
            batch_size=self.batch_size,
        )

    def _observation(self, state: torch.Tensor) -> torch.Tensor:
        one_hot_state = torch.nn.functional.one_hot(state, 3).float()  # [E, 3]
        ids = torch.eye(self.n_agents, device=self.device).expand(self.num_envs, -1, -1)  # [E, 2, 2]
        return torch.cat([one_hot_state.unsqueeze(1).expand(-1, self.n_agents, -1), ids], -1)

    def reset(self, seed: int | None = None) -> TensorDict:
        if seed is not None:
            self._generator.manual_seed(seed)
        self._state = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        return self.root(self._state)

    def step(self, td: TensorDictBase) -> TensorDictBase:
        action = get_key(td, (self.group, "action"), owner="TwoStepGame")
        if action.shape != (self.num_envs, self.n_agents):
            raise ValueError(
                f"TwoStepGame: ('{self.group}', 'action') must have shape [{self.num_envs}, 2], "
                f"got {list(action.shape)}."
            )
        if self._state is None:
            raise RuntimeError("TwoStepGame: call reset() before step().")
        a1, a2 = action[:, 0].long(), action[:, 1].long()
        first = self._state == 0
        # step 1: agent 1 chooses the game (A -> 2A = 1, B -> 2B = 2); no reward
        # step 2: the chosen game's payoff, then the episode ends
        payoff = torch.where(self._state == 1, self._payoff_2a[a1, a2], self._payoff_2b[a1, a2])
        reward = torch.where(first, torch.zeros_like(payoff), payoff)
        next_state = torch.where(first, 1 + a1, self._state)
        terminated = ~first
        nxt = self.root(next_state)
        nxt.set("reward", reward.unsqueeze(-1))
        nxt.update(_flags(terminated.cpu().numpy(), terminated.cpu().numpy(), self.device))
        self._state = next_state
        td.set("next", nxt)
        return td

    def step_and_maybe_reset(self, td: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        td = self.step(td)
        done = td["next", "done"].reshape(-1)
        self._state = torch.where(done, torch.zeros_like(self._state), self._state)
        return td, self.root(self._state)

    def rand_action(self, td: TensorDictBase | None = None) -> TensorDictBase:
        if td is None:
            td = TensorDict(batch_size=self.batch_size)
        action = torch.randint(
            self.n_actions, (self.num_envs, self.n_agents), generator=self._generator, device="cpu"
        )
        td.set((self.group, "action"), action.to(self.device))
        return td

    def state_dict(self) -> dict:
        """The game's generator and the current state of each copy."""
        return {
            "generator": self._generator.get_state(),
            "state": None if self._state is None else self._state.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        self._generator.set_state(state["generator"])
        self._state = None if state["state"] is None else state["state"].to(self.device).clone()

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------------------------
# Collecting and evaluating
# ----------------------------------------------------------------------------------------------


def _team_reward(next_td: TensorDictBase, group: str) -> torch.Tensor:
    """[E]: the team reward, or the mean over agents of per-agent rewards."""
    reward = next_td.get("reward", None)
    if reward is None:
        reward = next_td.get((group, "reward")).mean(dim=-2)
    return reward.reshape(-1)


class MultiAgentCollector:
    """Roll ``policy`` in a multi-agent environment; batches ``[E, T]`` (time last).

    Like :class:`rlteach.envs.Collector`: ``policy=None`` acts at random, the policy runs under
    ``torch.no_grad()`` and ``set_interaction_type(interaction_type)``, the environment is
    reset once and episodes may span batches. ``episode_returns`` records team returns. The
    batches live on the environment's ``device``, which must be the policy's.
    """

    def __init__(
        self,
        env,
        policy: Callable[[TensorDictBase], TensorDictBase] | None,
        steps_per_batch: int,
        interaction_type: InteractionType = InteractionType.RANDOM,
    ) -> None:
        if isinstance(steps_per_batch, bool) or not isinstance(steps_per_batch, int):
            raise ValueError(f"steps_per_batch must be a positive int, got {steps_per_batch!r}.")
        if steps_per_batch < 1:
            raise ValueError(f"steps_per_batch must be a positive int, got {steps_per_batch!r}.")
        self.env, self.policy = env, policy
        self.steps_per_batch = steps_per_batch
        self.interaction_type = interaction_type
        self.frames = 0
        self.episode_returns: list[float] = []
        self._root: TensorDict | None = None
        self._running = torch.zeros(env.num_envs, device=env.device)

    def state_dict(self) -> dict:
        """Frames so far, finished and running team returns, the observation the next batch
        starts from, and the environment's own state (its ``state_dict()``)."""
        return {
            "frames": self.frames,
            "episode_returns": list(self.episode_returns),
            "root": None if self._root is None else self._root.clone(),
            "running": self._running.clone(),
            "env": self.env.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.frames = state["frames"]
        self.episode_returns[:] = state["episode_returns"]
        device = self.env.device  # a checkpoint is read onto the CPU
        self._root = None if state["root"] is None else state["root"].to(device).clone()
        self._running = state["running"].to(device).clone()
        self.env.load_state_dict(state["env"])

    def rollout(self) -> TensorDict:
        if self._root is None:
            self._root = self.env.reset()
        steps = []
        with torch.no_grad(), set_interaction_type(self.interaction_type):
            for _ in range(self.steps_per_batch):
                td = self._root.clone()
                td = self.env.rand_action(td) if self.policy is None else self.policy(td)
                td, self._root = self.env.step_and_maybe_reset(td)
                self._running += _team_reward(td["next"], self.env.group)
                done = td["next", "done"].reshape(-1)
                self.episode_returns += self._running[done].tolist()
                self._running[done] = 0.0
                steps.append(td)
        self.frames += self.steps_per_batch * self.env.num_envs
        return torch.stack(steps, dim=-1).contiguous()


def evaluate_team_returns(
    policy: Callable[[TensorDictBase], TensorDictBase] | None,
    env,
    deterministic: bool = True,
    seed: int | None = None,
) -> torch.Tensor:
    """[E]: the team return of one episode per environment copy.

    The environment is reset (with ``seed`` when given: copy e with ``seed + e``) and stepped
    until every copy has ended one episode; later rewards of a finished copy are ignored.
    ``policy=None`` acts at random.
    """
    mode = InteractionType.DETERMINISTIC if deterministic else InteractionType.RANDOM
    td = env.reset(seed=seed)
    returns = torch.zeros(env.num_envs, device=env.device)
    finished = torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
    with torch.no_grad(), set_interaction_type(mode):
        while not finished.all():
            td = env.rand_action(td) if policy is None else policy(td)
            td, root = env.step_and_maybe_reset(td)
            returns += torch.where(finished, 0.0, _team_reward(td["next"], env.group))
            finished |= td["next", "done"].reshape(-1)
            td = root
    return returns


def evaluate_team_return(
    policy: Callable[[TensorDictBase], TensorDictBase] | None,
    env,
    episodes: int | None = None,
    deterministic: bool = True,
    seed: int | None = None,
) -> float:
    """Mean team return of one episode per environment copy (the first ``episodes`` copies);
    see :func:`evaluate_team_returns`."""
    n = env.num_envs if episodes is None else episodes
    if not 1 <= n <= env.num_envs:
        raise ValueError(f"episodes must be between 1 and num_envs={env.num_envs}, got {n}.")
    returns = evaluate_team_returns(policy, env, deterministic, seed)
    return float(returns[:n].mean())


MULTIAGENT_TASKS = ("simple_spread_v3", "TwoStepGame")
"""The multi-agent tasks of the recipes, by the names the command line uses."""


def make_multiagent_env(
    env_id: str,
    num_envs: int = 1,
    seed: int | None = None,
    *,
    device: str | torch.device = "cpu",
    **kwargs,
):
    """A multi-agent task by name: ``"simple_spread_v3"`` (``kwargs`` go to
    :func:`make_simple_spread`, e.g. ``max_cycles``) or ``"TwoStepGame"``, on ``device``."""
    if env_id == "simple_spread_v3":
        task = make_simple_spread(**kwargs)
        return PettingZooParallelEnv(task, num_envs, seed=seed, device=device)
    if env_id == "TwoStepGame":
        if kwargs:
            raise ValueError(f"TwoStepGame takes no options, got {sorted(kwargs)}.")
        return TwoStepGame(num_envs, seed=seed, device=device)
    raise ValueError(
        f"Unknown multi-agent task {env_id!r}; the known ones are {', '.join(MULTIAGENT_TASKS)}."
    )
