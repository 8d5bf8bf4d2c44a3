"""The off-policy training loop shared by DDPG, TD3, SAC (and REDQ, CrossQ): one readable loop.

Every off-policy actor-critic method trains the same way; only the networks, the losses and
what one gradient step does differ. This module is the part they share, top to bottom:

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
buffer and its generator, the Gymnasium environment (its state, ``np_random``, time-limit
counter and action space's RNG), the evaluator, the loop's own counters
(:class:`_LoopState`) and whatever the update keeps between calls (``extras["carry"]``, a
dict). Without a checkpointer the run is exactly what it was without one.

``result.logs`` holds the update's scalars (e.g. ``alpha`` and ``entropy`` for SAC) averaged
over every ``log_every`` updates, with the environment step they belong to, for plotting;
``result.agent`` the trained networks. Tags: ``# ALGO`` lines are the method, ``# PLUMBING``
lines bookkeeping (after CleanRL).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from rlteach.bench import SOLVED_THRESHOLDS
from rlteach.buffers import ReplayBuffer
from rlteach.checkpoint import Checkpointer, as_checkpointer
from rlteach.envs import EvalTrace, GymEnv, evaluate_trace
from rlteach.modules.ensemble import QValueEnsemble
from rlteach.objectives.common import LossModule
from rlteach.progress import progress_bar
from rlteach.recipes.base import Evaluator, RunResult, resolve_device, seed_everything
from rlteach.updaters import SoftUpdate

__all__ = ["MUJOCO_PROTOCOL", "Agent", "OffPolicyConfig", "OffPolicyResult", "run_offpolicy"]


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


MUJOCO_PROTOCOL = dict(
    total_frames=100_000,
    eval_every=5_000,
    eval_episodes=10,
    stop_on_solve=False,
    buffer_size=1_000_000,
    batch_size=256,
    gamma=0.99,
    tau=0.005,
    warmup_steps=10_000,
)
"""The MuJoCo protocol every off-policy recipe's Hopper-v5 / HalfCheetah-v5 config starts from:
100,000 environment steps (the sample-efficiency point of the REDQ, DroQ and CrossQ papers),
the deterministic policy evaluated every 5,000 steps over 10 episodes, and the settings RL-Zoo
2.9 gives SAC, TD3 and DDPG on ``HalfCheetah-v4`` / ``Hopper-v4`` in ``hyperparams/{sac,td3,
ddpg}.yml`` (``learning_starts: 10000``, batch 256, a 10^6 buffer; tau 0.005 and gamma 0.99 are
Stable-Baselines3's defaults, which the zoo keeps). Each recipe adds its own learning rates and
network sizes."""


@dataclass
class Agent:
    """The algorithm-specific parts a recipe hands :func:`run_offpolicy`.

    ============  ====================================================================
    loss          the rlteach loss; its target networks, if any, are tracked with SoftUpdate
    act           observation [obs_dim] -> action [action_dim], the exploring policy
                  (called without gradient)
    eval_policy   a TensorDict policy, evaluated under InteractionType.DETERMINISTIC
    update        ``update(batch, i)`` -> ``(targets_due, scalars)``: one gradient step on a
                  replay minibatch; ``i`` counts updates from 0; ``targets_due`` says whether
                  the target networks move after this step; ``scalars`` are logged
    ============  ====================================================================
    """

    loss: LossModule
    act: Callable[[torch.Tensor], torch.Tensor]
    eval_policy: Callable[[TensorDictBase], TensorDictBase]
    update: Callable[[TensorDictBase, int], tuple[bool, dict[str, torch.Tensor]]]
    extras: dict = field(default_factory=dict)
    """anything else the recipe wants to return (optimisers, networks). Two keys are read by the
    loop's checkpoints: ``"optimizers"`` (a tuple, saved and restored) and ``"carry"`` (a dict the
    update mutates between calls, e.g. the last actor-side scalars, saved and restored in place)"""


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
    critic = getattr(loss, "qvalue_network", None) or loss.value_network
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


class _LoopState:
    """The loop's counters, kept in one object so that a checkpoint can save and restore them.

    ``step`` is the last environment step done, ``obs`` the observation the next one starts from;
    the result's training-episode lists, logs and CPU seconds are saved with them. ``cpu_start``
    is the process time the CPU seconds are counted from (saved as the seconds elapsed since).
    ``device`` is where ``obs`` lives (a checkpoint is read onto the CPU).
    """

    def __init__(self, result: OffPolicyResult, carry: dict, device: torch.device) -> None:
        self.device = device
        self.result = result
        self.carry = carry
        self.step = 0
        self.obs: torch.Tensor | None = None
        self.episode_return = 0.0
        self.n_updates = 0
        self.sums: dict[str, float] = {}
        self.cpu_start = 0.0

    def state_dict(self) -> dict:
        r = self.result
        return {
            "step": self.step,
            "obs": None if self.obs is None else self.obs.clone(),
            "episode_return": self.episode_return,
            "n_updates": self.n_updates,
            "sums": dict(self.sums),
            "cpu_elapsed": time.process_time() - self.cpu_start,
            "logs": {key: list(values) for key, values in r.logs.items()},
            "cpu_seconds": list(r.cpu_seconds),
            "episode_returns": list(r.episode_returns),
            "episode_steps": list(r.episode_steps),
            "value_estimates": [dict(v) for v in r.value_estimates],
            "carry": dict(self.carry),
        }

    def load_state_dict(self, state: dict) -> None:
        r = self.result
        self.step = state["step"]
        self.obs = None if state["obs"] is None else state["obs"].to(self.device)
        self.episode_return, self.n_updates = state["episode_return"], state["n_updates"]
        self.sums = dict(state["sums"])
        self.cpu_start = time.process_time() - state["cpu_elapsed"]
        r.logs.clear()
        r.logs.update({key: list(values) for key, values in state["logs"].items()})
        r.cpu_seconds[:] = state["cpu_seconds"]
        r.episode_returns[:] = state["episode_returns"]
        r.episode_steps[:] = state["episode_steps"]
        r.value_estimates[:] = state.get("value_estimates", [])
        self.carry.clear()
        self.carry.update(state["carry"])


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

    result = OffPolicyResult(algo=algo, env_id=cfg.env_id, seed=seed, agent=agent)  # PLUMBING
    threshold = SOLVED_THRESHOLDS.get(cfg.env_id, float("inf"))
    bar = progress_bar(total=cfg.total_frames, desc=f"{algo} {cfg.env_id}", disable=not progress)

    def evaluate_and_check() -> float:  # PLUMBING: the mean return, and the critics' estimate
        returns, trace = evaluate_trace(
            agent.eval_policy, cfg.env_id, cfg.eval_episodes, seed=evaluator.seed
        )
        check = value_estimate_check(agent.loss, trace, cfg.gamma)
        result.value_estimates.append({"env_steps": step, **check})
        return float(np.mean(returns))

    evaluator = Evaluator(
        result,
        agent.eval_policy,
        cfg.env_id,
        cfg.eval_every,
        threshold,
        cfg.eval_episodes,
        cfg.stop_on_solve,
        bar,
        evaluate=evaluate_and_check,
    )
    # PLUMBING: the loop's counters (running sums of the logged scalars, ...) in one object
    state = _LoopState(result, agent.extras.get("carry", {}), device)

    # The loop steps the Gymnasium environment itself, on plain tensors: the TensorDict
    # plumbing of GymEnv costs more per step than a small network does.
    gym_env = env.env
    gym_env.action_space.seed(seed)
    state.cpu_start = time.process_time()
    state.obs = torch.as_tensor(gym_env.reset(seed=seed)[0], dtype=torch.float32, device=device)
    checkpoint = as_checkpointer(checkpoint)  # PLUMBING: save / resume everything below
    optimizers = {f"optimizer_{i}": opt for i, opt in enumerate(agent.extras.get("optimizers", ()))}
    updater = {"target_updater": target_updater} if target_updater is not None else {}
    checkpoint.track(
        policy=agent.eval_policy,
        loss=agent.loss,
        **optimizers,
        **updater,
        buffer=buffer,
        env=env,
        generator=generator,
        evaluator=evaluator,
        loop=state,
    )
    gym_env = env.env  # PLUMBING: a resumed run's environment is the restored one
    sums, obs = state.sums, state.obs
    episode_return, n_updates, cpu_start = state.episode_return, state.n_updates, state.cpu_start
    for step in range(state.step + 1, cfg.total_frames + 1):
        # ALGO: act (uniformly at random during the warm-up) and store the transition
        if step <= cfg.warmup_steps:
            sample = gym_env.action_space.sample()
            action = torch.as_tensor(sample, dtype=torch.float32, device=device)
        else:
            with torch.no_grad():
                action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = gym_env.step(action.cpu().numpy())
        next_obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device)
        # ALGO: a time-limit cut is not a terminal state: V(s') still counts in the target
        ends = terminated or (truncated and not cfg.bootstrap_truncated)
        buffer.extend(_transition(obs, action, next_obs, reward, ends, truncated))
        episode_return += float(reward)  # PLUMBING
        if terminated or truncated:
            result.episode_returns.append(episode_return)
            result.episode_steps.append(step)
            episode_return = 0.0
            next_obs = torch.as_tensor(gym_env.reset()[0], dtype=torch.float32, device=device)
        obs = next_obs

        # ALGO: learn, updates_per_step gradient steps per environment step
        if step > cfg.warmup_steps:
            for _ in range(cfg.updates_per_step):
                batch = buffer.sample(cfg.batch_size)
                targets_due, scalars = agent.update(batch, n_updates)
                if targets_due and target_updater is not None:
                    target_updater.step()  # (TGT-1) theta' <- (1 - tau) theta' + tau theta
                n_updates += 1
                for key, value in scalars.items():  # PLUMBING: logs
                    sums[key] = sums.get(key, 0.0) + float(value)
                if n_updates % cfg.log_every == 0:
                    result.logs.setdefault("env_steps", []).append(step)
                    for key, total in sums.items():
                        result.logs.setdefault(key, []).append(total / cfg.log_every)
                    sums = {}

        # PLUMBING: evaluate when due (wall clock paused; its CPU time is subtracted too)
        n_evals, cpu_before = len(result.curve), time.process_time()
        solved = evaluator.after_batch(step, last=step == cfg.total_frames)
        if len(result.curve) > n_evals:
            result.cpu_seconds.append(cpu_before - cpu_start)
            cpu_start += time.process_time() - cpu_before
        # PLUMBING: save the loop's state (the checkpointer decides whether it is due)
        state.step, state.obs, state.sums = step, obs, sums
        state.episode_return, state.n_updates = episode_return, n_updates
        state.cpu_start = cpu_start
        checkpoint.after_batch(step, finished=solved or step == cfg.total_frames)
        if solved:
            break
    bar.close()
    gym_env.close()
    return result
