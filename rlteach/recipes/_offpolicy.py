"""The off-policy training loop, one readable loop: DQN, C51, DDPG, TD3, SAC, REDQ and CrossQ.

Every off-policy method trains the same way; only the networks, the losses, the exploration and
what one gradient step does differ. :func:`offpolicy_loop` is the part they share: collect a
batch, store it, learn from uniform minibatches once the warm-up is over, move the target
networks when due, evaluate and save when due. Two set-ups feed it: :func:`run_offpolicy` here
(continuous actions, one environment stepped one transition at a time by a
:class:`StepCollector`) and :func:`rlteach.recipes.dqn.run_value_based` (discrete actions, a
vector :class:`~rlteach.envs.Collector` running the ε-greedy policy). For the continuous-action
recipes, top to bottom:

1. **warm-up**: ``warmup_steps`` uniformly random actions fill the replay buffer first;
2. **act**: afterwards each environment step uses the recipe's exploration policy;
3. **store** the transition in the replay buffer (:class:`rlteach.buffers.ReplayBuffer`);
4. **learn**: ``updates_per_step`` gradient steps per environment step (the update-to-data
   ratio, UTD), each on a fresh uniform minibatch, done by the recipe's ``update``;
5. **track**: after every update the recipe says whether the target networks are due;
   if so they move by Polyak averaging (:class:`rlteach.updaters.SoftUpdate`, TGT-1). A loss
   without target networks (CrossQ) gets no updater and ``targets_due`` is ignored;
6. **evaluate** every ``eval_every`` steps: the mean return of ``eval_episodes`` deterministic
   episodes, with the clock paused (:class:`rlteach.recipes.base.Evaluator`), stopping at the
   solved threshold when ``stop_on_solve``.

A recipe hands the loop an :class:`Agent`::

    agent = Agent(
        loss=loss,                 # an rlteach LossModule (with target networks, or none)
        act=explore,               # observation tensor -> action tensor, used to collect
        eval_policy=actor,         # evaluated under InteractionType.DETERMINISTIC
        update=update,             # update(batch, i) -> (targets_due, {name: scalar tensor})
    )
    result = run_offpolicy("sac", cfg, build, seed, quick, progress)  # build(cfg, env) -> Agent

``build`` moves its loss to ``env.device`` (``loss.to(env.device)``) before it makes the
optimisers; the loop calls it under ``with torch.device("cpu")``, so the networks are initialised
on the CPU (the same seed, the same networks on every device) and then moved. With
``device="cuda"`` the observations enter the GPU as they come from Gymnasium, the replay buffer
stores there, and each action goes back with ``.cpu().numpy()``.

Given a :class:`rlteach.checkpoint.Checkpointer` (``checkpoint=``), the loop saves everything
that shapes the rest of the run at most every ``every_frames`` steps (after that step's
evaluation) and, when the checkpointer resumes, continues from the saved step bit-identically:
the networks and their targets (the loss), the optimisers (``extras["optimizers"]``), the replay
buffer and its generator, the collector (its step, the current observation, the training
episodes, and the Gymnasium environment: its state, ``np_random``, time-limit counter and
action space's RNG), the evaluator (its curve, clocks and CPU seconds), the update log (update
count, logged scalars, and whatever the update keeps between calls, ``extras["carry"]``) and the
critic check's value estimates; each of them saves itself (``state_dict``). A checkpoint of the
layout before issue 19 is read by :func:`upgrade_checkpoint_layout`. Without a checkpointer the
run is exactly what it was without one.

``result.logs`` holds the update's scalars (e.g. ``alpha`` and ``entropy`` for SAC) averaged
over every ``log_every`` updates, with the environment step they belong to, for plotting;
``result.agent`` the trained networks. Tags: ``# ALGO`` lines are the method, ``# PLUMBING``
lines bookkeeping (after CleanRL).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from rlteach.buffers import ReplayBuffer
from rlteach.checkpoint import Checkpointer, NoCheckpoint, as_checkpointer
from rlteach.envs import EvalTrace, GymEnv, evaluate_trace
from rlteach.modules.ensemble import QValueEnsemble
from rlteach.objectives.common import LossModule
from rlteach.progress import progress_bar
from rlteach.recipes._scale import MUJOCO_PROTOCOL
from rlteach.recipes.base import Evaluator, RunResult, resolve_device, seed_everything
from rlteach.tasks import solved_threshold
from rlteach.updaters import HardUpdate, SoftUpdate

__all__ = [
    "MUJOCO_PROTOCOL",
    "TRANSITION_KEYS",
    "Agent",
    "CriticCheck",
    "OffPolicyConfig",
    "OffPolicyResult",
    "StepCollector",
    "UpdateLog",
    "offpolicy_loop",
    "run_offpolicy",
    "upgrade_checkpoint_layout",
]


@dataclass(frozen=True)
class OffPolicyConfig:
    """The loop's hyper-parameters; each recipe's config extends this one with its own."""

    env_id: str = "Pendulum-v1"
    total_frames: int = 20_000
    """training budget in environment steps"""
    quick_frames: int = 600
    """the budget under RLTEACH_QUICK=1 (or quick=True)"""
    warmup_steps: int = 1_000
    """uniformly random actions before the first update"""
    buffer_size: int = 100_000
    batch_size: int = 256
    updates_per_step: int = 1
    """gradient steps per environment step (the update-to-data ratio)"""
    gamma: float = 0.99
    tau: float = 0.005
    """Polyak rate of the target networks, theta' <- (1 - tau) theta' + tau theta"""
    eval_every: int = 1_000
    """environment steps between evaluations"""
    eval_episodes: int = 10
    stop_on_solve: bool = True
    """end the run at the first evaluation at or above the solved threshold"""
    log_every: int = 100
    """updates averaged into one entry of ``result.logs``"""
    torch_threads: int = 1
    """small networks run fastest on one thread"""
    bootstrap_truncated: bool = True
    """a time-limit cut is stored as truncated, not terminated, so the target still bootstraps
    from the next state; False stores it as a termination, the mistake Pardo et al. (2018),
    *Time Limits in Reinforcement Learning*, measure (for the ablation only)"""


@dataclass
class Agent:
    """The algorithm-specific parts a recipe hands the off-policy loop (:func:`offpolicy_loop`).

    ==============  ==================================================================
    loss            the rlteach loss; its target networks, if any, move by the run's updater
    act             the exploring policy: observation [obs_dim] -> action [action_dim]
                    (:func:`run_offpolicy`, called without gradient), or a TensorDict
                    policy that the vector collector runs (DQN's ε-greedy, ``run_value_based``)
    eval_policy     a TensorDict policy, evaluated under InteractionType.DETERMINISTIC
    update          ``update(batch, i)`` -> ``(targets_due, scalars)``: one gradient step on a
                    replay minibatch; ``i`` counts updates from 0; ``targets_due`` says whether
                    the target networks move after this step; ``scalars`` are logged
    after_collect   ``after_collect(frames)`` after each batch is stored, before learning
                    (DQN anneals ε there); None: nothing
    ==============  ==================================================================
    """

    loss: LossModule
    act: Callable
    eval_policy: Callable[[TensorDictBase], TensorDictBase]
    update: Callable[[TensorDictBase, int], tuple[bool, dict[str, torch.Tensor]]]
    extras: dict = field(default_factory=dict)
    """anything else the recipe wants to return (optimisers, networks). Two keys are read by the
    loop's checkpoints: ``"optimizers"`` (a tuple, saved and restored) and ``"carry"`` (a dict the
    update mutates between calls, e.g. the last actor-side scalars, saved and restored in place)"""
    after_collect: Callable[[int], None] | None = None


@dataclass
class OffPolicyResult(RunResult):
    """A :class:`RunResult` plus training logs and (not serialised) the trained agent.

    ``logs["env_steps"][k]`` is the environment step of the k-th log entry; every other key
    (``"loss_qvalue"``, ``"alpha"``, ``"entropy"``, ...) is that scalar averaged over the
    ``log_every`` updates before it. ``episode_returns`` are the training episodes' returns
    (exploration on) and ``episode_steps`` the step at which each ended.
    """

    logs: dict[str, list[float]] = field(default_factory=dict)
    cpu_seconds: list[float] = field(default_factory=list)
    """process CPU seconds at each evaluation, evaluation excluded: unlike the wall clock, barely
    inflated when other programs compete for the cores"""
    episode_returns: list[float] = field(default_factory=list)
    episode_steps: list[int] = field(default_factory=list)
    value_estimates: list[dict[str, float]] = field(default_factory=list)
    """one entry per evaluation (see :func:`value_estimate_check`): the critics' estimate of
    the deterministic policy's value on the states it visited, beside the discounted return it
    actually obtained from them"""
    agent: Agent | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        data = RunResult(self.algo, self.env_id, self.seed, self.curve).to_dict()
        data.update(logs=self.logs, episode_returns=self.episode_returns)
        data.update(episode_steps=self.episode_steps, cpu_seconds=self.cpu_seconds)
        data.update(value_estimates=self.value_estimates)
        return data


def critic_estimates(loss: LossModule, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Q_i(s, a) of every critic of the loss, [n_critics, N], with the critics in eval mode
    (batch norm reads its running statistics and updates nothing) and no gradient."""
    critic = getattr(loss, "qvalue_network", None)
    if critic is None:  # DDPG: one critic, under TorchRL's name value_network
        critic = loss.value_network
    modes = [(m, m.training) for m in critic.modules()]
    critic.eval()
    try:
        with torch.no_grad():
            if isinstance(critic, QValueEnsemble):  # Q_i(s, a) of every member at once
                q = critic(obs, action).reshape(-1, len(obs))
            else:  # one TensorDictModule critic (DDPG)
                td = TensorDict({"observation": obs, "action": action}, batch_size=[len(obs)])
                q = critic(td)[critic.out_keys[0]].reshape(1, len(obs))
    finally:
        for module, training in modes:
            module.training = training
    return q


def value_estimate_check(loss: LossModule, trace: EvalTrace, gamma: float) -> dict[str, float]:
    """How far the critics' estimate is from the truth, on the states evaluation visited.

    For every state s_t of the evaluation episodes and the deterministic action a_t taken there,
    the estimate Q_i(s_t, a_t) of each critic and the discounted return G_t actually obtained
    from s_t on (Fujimoto et al., 2018, section 4.1, measure the same thing on states sampled from
    the replay buffer). An episode cut by the time limit gives G_t too small near its end, so its
    last H steps, with gamma^H < 0.01, are left out; an episode that terminated counts entirely.
    ``q_mean`` averages over critics and states, ``q_min`` takes the smallest critic per state.
    """
    cut = math.ceil(math.log(0.01) / math.log(gamma)) if gamma < 1 else None
    q_all, g_all = [], []
    returns = trace.discounted_returns(gamma)
    episodes = zip(trace.observations, trace.actions, returns, trace.terminated, strict=True)
    for obs, act, g, done in episodes:
        keep = len(g) if done or cut is None else max(len(g) - cut, 0)
        if keep:
            q_all.append(critic_estimates(loss, obs[:keep], act[:keep]))
            g_all.append(g[:keep])
    if not q_all:
        return {"q_mean": math.nan, "q_min": math.nan, "discounted_return": math.nan, "states": 0}
    q = torch.cat(q_all, dim=1).double()
    return {
        "q_mean": float(q.mean()),
        "q_min": float(q.min(dim=0).values.mean()),
        "discounted_return": float(np.concatenate(g_all).mean()),
        "states": int(q.shape[1]),
    }


def _transition(obs, action, next_obs, reward, terminated, truncated) -> TensorDict:
    """One transition in TorchRL's layout, batch size [1] (see rlteach.envs), on obs's device."""
    flag = torch.tensor([[terminated]], device=obs.device)
    cut = torch.tensor([[truncated]], device=obs.device)
    return TensorDict(
        {
            "observation": obs.unsqueeze(0),
            "action": action.unsqueeze(0),
            "next": TensorDict(
                {
                    "observation": next_obs.unsqueeze(0),
                    "reward": torch.tensor([[float(reward)]], device=obs.device),
                    "done": flag | cut,
                    "terminated": flag,
                    "truncated": cut,
                },
                batch_size=[1],
            ),
        },
        batch_size=[1],
    )


class StepCollector:
    """One environment, stepped one transition at a time: the off-policy loop's collector.

    Iterating yields each transition (batch size [1]) once its episode bookkeeping is done:
    ``warmup_steps`` uniformly random actions first, then ``act(obs)``; a time-limit cut is
    stored as truncated, not terminated, unless ``bootstrap_truncated`` is False (the ablation).
    ``frames`` counts the steps so far; ``episode_returns`` / ``episode_steps`` hold each
    finished training episode's return (exploration on) and the step it ended at.

    It steps the Gymnasium environment itself, on plain tensors: the TensorDict plumbing of
    :class:`~rlteach.envs.GymEnv` costs more per step than a small network does.
    """

    def __init__(
        self,
        env: GymEnv,
        act: Callable[[torch.Tensor], torch.Tensor],
        total_frames: int,
        warmup_steps: int,
        bootstrap_truncated: bool = True,
    ) -> None:
        self.env, self.act = env, act
        self.total_frames, self.warmup_steps = total_frames, warmup_steps
        self.bootstrap_truncated = bootstrap_truncated
        self.frames = 0
        self.obs: torch.Tensor | None = None
        self.episode_return = 0.0
        self.episode_returns: list[float] = []
        self.episode_steps: list[int] = []

    def _tensor(self, array) -> torch.Tensor:
        return torch.as_tensor(array, dtype=torch.float32, device=self.env.device)

    def start(self, seed: int) -> None:
        """Seed the random warm-up actions and reset the environment with ``seed``."""
        self.env.env.action_space.seed(seed)
        self.obs = self._tensor(self.env.env.reset(seed=seed)[0])

    def __iter__(self):
        gym_env = self.env.env  # read here: a resumed run's environment is the restored one
        while self.frames < self.total_frames:
            step = self.frames + 1
            # ALGO: act (uniformly at random during the warm-up)
            if step <= self.warmup_steps:
                action = self._tensor(gym_env.action_space.sample())
            else:
                with torch.no_grad():
                    action = self.act(self.obs)
            next_obs, reward, terminated, truncated, _ = gym_env.step(action.cpu().numpy())
            next_obs = self._tensor(next_obs)
            # ALGO: a time-limit cut is not a terminal state: V(s') still counts in the target
            ends = terminated or (truncated and not self.bootstrap_truncated)
            transition = _transition(self.obs, action, next_obs, reward, ends, truncated)
            self.episode_return += float(reward)  # PLUMBING: the training episodes' returns
            if terminated or truncated:
                self.episode_returns.append(self.episode_return)
                self.episode_steps.append(step)
                self.episode_return = 0.0
                next_obs = self._tensor(gym_env.reset()[0])
            self.obs, self.frames = next_obs, step
            yield transition

    def state_dict(self) -> dict:
        return {
            "frames": self.frames,
            "obs": None if self.obs is None else self.obs.clone(),
            "episode_return": self.episode_return,
            "episode_returns": list(self.episode_returns),
            "episode_steps": list(self.episode_steps),
            "env": self.env.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.frames = state["frames"]
        self.obs = None if state["obs"] is None else state["obs"].to(self.env.device)
        self.episode_return = state["episode_return"]
        self.episode_returns[:] = state["episode_returns"]
        self.episode_steps[:] = state["episode_steps"]
        self.env.load_state_dict(state["env"])


class UpdateLog:
    """The updates so far: their count, the scalars they logged (``logs``, averaged over every
    ``log_every`` updates, with the environment step they belong to; ``None``: count only), and
    ``carry``, the dict an update keeps between calls (e.g. the last actor-side scalars of a
    delayed actor)."""

    def __init__(self, logs: dict[str, list[float]], log_every: int | None, carry: dict) -> None:
        self.logs, self.log_every, self.carry = logs, log_every, carry
        self.n_updates = 0
        self.sums: dict[str, float] = {}

    def add(self, step: int, scalars: dict[str, torch.Tensor]) -> None:
        """Count one update and add its scalars; every ``log_every`` updates, log their means."""
        self.n_updates += 1
        if self.log_every is None:
            return
        for key, value in scalars.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        if self.n_updates % self.log_every == 0:
            self.logs.setdefault("env_steps", []).append(step)
            for key, total in self.sums.items():
                self.logs.setdefault(key, []).append(total / self.log_every)
            self.sums = {}

    def state_dict(self) -> dict:
        return {
            "n_updates": self.n_updates,
            "sums": dict(self.sums),
            "logs": {key: list(values) for key, values in self.logs.items()},
            "carry": dict(self.carry),
        }

    def load_state_dict(self, state: dict) -> None:
        self.n_updates, self.sums = state["n_updates"], dict(state["sums"])
        self.logs.clear()
        self.logs.update({key: list(values) for key, values in state["logs"].items()})
        self.carry.clear()
        self.carry.update(state["carry"])


class CriticCheck:
    """An evaluation that also records how far the critics' estimate is from the truth: called by
    the :class:`Evaluator`, it returns the mean return of the deterministic policy and appends
    :func:`value_estimate_check` (at the collector's step) to ``value_estimates``."""

    def __init__(self, agent, cfg: OffPolicyConfig, collector: StepCollector, seed: int, out):
        self.agent, self.cfg, self.collector, self.seed = agent, cfg, collector, seed
        self.value_estimates: list[dict[str, float]] = out

    def __call__(self) -> float:
        cfg = self.cfg
        returns, trace = evaluate_trace(
            self.agent.eval_policy, cfg.env_id, cfg.eval_episodes, seed=self.seed
        )
        check = value_estimate_check(self.agent.loss, trace, cfg.gamma)
        self.value_estimates.append({"env_steps": self.collector.frames, **check})
        return float(np.mean(returns))

    def state_dict(self) -> dict:
        return {"value_estimates": [dict(v) for v in self.value_estimates]}

    def load_state_dict(self, state: dict) -> None:
        self.value_estimates[:] = state["value_estimates"]


def upgrade_checkpoint_layout(objects: dict) -> dict:
    """A checkpoint written before issue 19 (one ``"loop"`` entry holding the loop's counters,
    the environment under ``"env"``, the CPU seconds with the loop) in today's layout: the
    collector, the update log, the critic check and the evaluator each hold their own state.
    Today's layout passes through unchanged."""
    if "loop" not in objects:
        return objects
    objects = dict(objects)
    loop, env = objects.pop("loop"), objects.pop("env")
    objects["collector"] = {
        "frames": loop["step"],
        "obs": loop["obs"],
        "episode_return": loop["episode_return"],
        "episode_returns": loop["episode_returns"],
        "episode_steps": loop["episode_steps"],
        "env": env,
    }
    objects["updates"] = {key: loop[key] for key in ("n_updates", "sums", "logs", "carry")}
    objects["critic_check"] = {"value_estimates": loop.get("value_estimates", [])}
    objects["evaluator"] = {
        **objects["evaluator"],
        "cpu_seconds": loop["cpu_seconds"],
        "cpu_elapsed": loop["cpu_elapsed"],
    }
    return objects


def _check_config(cfg: OffPolicyConfig) -> None:
    for name in ("total_frames", "batch_size", "buffer_size", "updates_per_step", "eval_every"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{type(cfg).__name__}.{name} must be an integer >= 1, got {value!r}.")
    if cfg.warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {cfg.warmup_steps}.")
    if not 0.0 < cfg.tau <= 1.0:
        raise ValueError(f"tau must lie in (0, 1], got {cfg.tau}.")


def _check_placed(loss: LossModule, device: torch.device) -> None:
    """A recipe's ``build`` must move its loss to ``env.device`` before making its optimisers."""
    stray = sorted(
        {str(t.device) for t in [*loss.parameters(), *loss.buffers()] if t.device != device}
    )
    if stray:
        raise ValueError(
            f"build(cfg, env) returned a loss with tensors on {', '.join(stray)}, but the run "
            f"trains on {device}: call loss.to(env.device) in build, before the optimisers are "
            f"made (they must see the moved parameters)."
        )


#: What a transition in the replay buffer keeps (not the policy's Q-values or greedy action).
TRANSITION_KEYS = (
    "observation",
    "action",
    ("next", "observation"),
    ("next", "reward"),
    ("next", "terminated"),
    ("next", "truncated"),
    ("next", "done"),
)


def offpolicy_loop(
    agent: Agent,
    collector: Iterable[TensorDictBase],
    buffer: ReplayBuffer,
    updates: UpdateLog,
    evaluator: Evaluator,
    checkpoint: Checkpointer | NoCheckpoint,
    target_updater: SoftUpdate | HardUpdate | None,
    *,
    learning_starts: int,
    updates_per_batch: int,
    batch_size: int,
    total_frames: int,
    callback: Callable[[int, TensorDictBase, dict], None] | None = None,
) -> None:
    """The one off-policy loop, DQN's and C51's as SAC's, TD3's, DDPG's, REDQ's and CrossQ's.

    Each batch of transitions from ``collector`` (one step, or ``num_envs`` x T frames) is
    stored; once ``collector.frames`` reaches ``learning_starts``, ``updates_per_batch``
    gradient steps follow, each on a fresh uniform minibatch, each followed by the target
    networks' move when due; then the evaluator and the checkpointer act when due.
    ``callback(frames, minibatch, scalars)``, if given, is called after every gradient step.
    """
    for batch in collector:
        buffer.extend(batch.select(*TRANSITION_KEYS))  # ALGO: store the transitions
        if agent.after_collect is not None:
            agent.after_collect(collector.frames)  # ALGO: e.g. DQN's ε schedule (EG-1)
        if collector.frames >= learning_starts:  # ALGO: learn, after the warm-up
            for _ in range(updates_per_batch):
                minibatch = buffer.sample(batch_size)  # ALGO: uniform replay
                targets_due, scalars = agent.update(minibatch, updates.n_updates)
                if targets_due and target_updater is not None:
                    target_updater.step()  # ALGO: (TGT-1) Polyak or (TGT-2) a copy every N
                if callback is not None:  # PLUMBING: e.g. a chapter's measurements
                    callback(collector.frames, minibatch, scalars)
                updates.add(collector.frames, scalars)  # PLUMBING: logs
        # PLUMBING: evaluate when due (clocks paused), save when due
        last = collector.frames >= total_frames
        solved = evaluator.after_batch(collector.frames, last=last)
        checkpoint.after_batch(collector.frames, finished=solved or last)
        if solved:
            break


def run_offpolicy(
    algo: str,
    cfg: OffPolicyConfig,
    build: Callable[[OffPolicyConfig, GymEnv], Agent],
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> OffPolicyResult:
    """Train with the off-policy loop; ``build(cfg, env)`` makes the recipe's :class:`Agent`.

    Seeded: ``seed`` fixes torch (networks, exploration noise, action sampling), the
    environment and its random warm-up actions, and the replay buffer's sampling. The reported
    seconds exclude evaluation. With a ``checkpoint`` (a
    :class:`~rlteach.checkpoint.Checkpointer`) the run saves its full state at most every
    ``checkpoint.every_frames`` steps and, if the checkpointer resumes, continues from it.
    ``device`` is where the networks, the observations and the replay buffer live.
    """
    device = resolve_device(device)  # PLUMBING: refuse an unknown or absent device first
    if quick:
        budget = cfg.quick_frames
        cfg = replace(
            cfg,
            total_frames=budget,
            warmup_steps=min(cfg.warmup_steps, budget // 2),
            eval_every=min(cfg.eval_every, budget),
        )
    _check_config(cfg)
    torch.set_num_threads(cfg.torch_threads)  # PLUMBING
    generator = seed_everything(seed)
    env = GymEnv(cfg.env_id, seed=seed, device=device)
    with torch.device("cpu"):  # PLUMBING: initialised on the CPU, then moved to env.device
        agent = build(cfg, env)
    _check_placed(agent.loss, device)
    # (TGT-1) for the losses that keep target networks; CrossQ has none, so no updater
    has_targets = bool(agent.loss.target_network_pairs())
    target_updater = SoftUpdate(agent.loss, tau=cfg.tau) if has_targets else None
    buffer = ReplayBuffer(cfg.buffer_size, generator=generator, device=device)
    collector = StepCollector(
        env, agent.act, cfg.total_frames, cfg.warmup_steps, cfg.bootstrap_truncated
    )

    # PLUMBING: the result, the evaluation (clocks paused) and the logs, each saving its state
    result = OffPolicyResult(algo=algo, env_id=cfg.env_id, seed=seed, agent=agent)
    bar = progress_bar(total=cfg.total_frames, desc=f"{algo} {cfg.env_id}", disable=not progress)
    critic_check = CriticCheck(agent, cfg, collector, 10_000, result.value_estimates)
    evaluator = Evaluator(
        result, agent.eval_policy, cfg.env_id, cfg.eval_every, solved_threshold(cfg.env_id),
        cfg.eval_episodes, cfg.stop_on_solve, bar, evaluate=critic_check,
        cpu_seconds=result.cpu_seconds,
    )  # fmt: skip
    updates = UpdateLog(result.logs, cfg.log_every, agent.extras.get("carry", {}))
    collector.start(seed)
    checkpoint = as_checkpointer(checkpoint)  # PLUMBING: save / resume everything below
    optimizers = {f"optimizer_{i}": opt for i, opt in enumerate(agent.extras.get("optimizers", ()))}
    updater = {"target_updater": target_updater} if target_updater is not None else {}
    checkpoint.track(
        policy=agent.eval_policy, upgrade=upgrade_checkpoint_layout, loss=agent.loss,
        **optimizers, **updater, buffer=buffer, collector=collector, generator=generator,
        evaluator=evaluator, updates=updates, critic_check=critic_check,
    )  # fmt: skip
    offpolicy_loop(
        agent, collector, buffer, updates, evaluator, checkpoint, target_updater,
        learning_starts=cfg.warmup_steps + 1,  # the first update follows the warm-up's last step
        updates_per_batch=cfg.updates_per_step, batch_size=cfg.batch_size,
        total_frames=cfg.total_frames,
    )  # fmt: skip
    result.episode_returns[:] = collector.episode_returns
    result.episode_steps[:] = collector.episode_steps
    bar.close()
    env.close()
    return result
