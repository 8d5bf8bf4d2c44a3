"""What collecting data costs, against the floor, and how the cost grows.

``python -m rlteach bench --costs`` measures, in one process and one thread:

* **The collection floor.** rlteach's on-policy collection path (Gymnasium's vector environment
  step → the PPO actor → a TensorDict batch, i.e. :class:`rlteach.envs.Collector` with the
  recipe's categorical actor, as every on-policy recipe runs it) against the least that any
  library must do per step: the same ``gymnasium.vector.SyncVectorEnv`` step and one forward of
  the same ``nn.Module`` on a tensor made from the NumPy batch, the action drawn with
  ``torch.multinomial`` and handed back as a NumPy array, nothing else (not even the
  log-probability PPO needs). The ratio of the two per-frame times is what rlteach's layer
  costs (the distribution, the TensorDicts, the episode bookkeeping); it is reported for 1, 8,
  32 and 64 environments.
* **The off-policy floor.** One step of rlteach's off-policy loop (DDPG on Pendulum-v1: the
  :class:`~rlteach.recipes._offpolicy.StepCollector`'s environment step with the recipe's
  exploring actor, the transition stored in the :class:`~rlteach.buffers.ReplayBuffer`, one
  minibatch of 256 drawn, one update of the critic and the actor through
  :class:`~rlteach.objectives.DDPGLoss`, the targets moved by
  :class:`~rlteach.updaters.SoftUpdate`, i.e. :func:`~rlteach.recipes._offpolicy.offpolicy_loop`
  itself) against the least that step needs: a plain Gymnasium step, the same actor's forward
  plus the same Gaussian noise, the transition written into preallocated tensors, 256 indices
  drawn and gathered, the same two gradient steps written on tensors with the same
  ``nn.Module`` copies and Adam, and the targets moved by ``torch._foreach_lerp_``.
* **Frames per second against the number of environments** (1 to 64): the same collection path.
* **The replay buffer's sample time against its size** (10³ to 10⁶ transitions): one minibatch
  of 256 drawn from a :class:`rlteach.buffers.ReplayBuffer` holding that many Pendulum-shaped
  transitions. Uniform sampling indexes the storage, so the time must not grow with the size.

Every number is a median over repeats (``repeats``), measured after a warm-up, so a busy
machine inflates it less. The two sides of a ratio are timed in turn, repeat by repeat
(rlteach's, then the floor's, then rlteach's again, ...), and in this process's CPU time
(``time.process_time``; one torch thread, and Gymnasium's vector environment steps its copies
in this thread): the work each side does, which other programs competing for the cores do not
inflate as they inflate the wall clock. On an idle machine the two clocks agree. That is what
makes the ratios comparable across machines; frames per second and the buffer's sample time
are wall-clock. Nothing here is a unit test: the targets (ratio ≤ 1.5, flat sampling) are read
from the report, see :func:`costs_markdown`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from tensordict import TensorDict

__all__ = [
    "buffer_sample_seconds",
    "collection_floor",
    "costs_markdown",
    "frames_per_second",
    "measure_costs",
    "offpolicy_floor",
]


def _median_seconds(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _interleaved_medians(fns: Sequence[Callable[[], None]], repeats: int) -> list[float]:
    """Median CPU seconds of this process for each of ``fns``, timed in turn in each repeat."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times, strict=True):
            t0 = time.process_time()
            fn()
            fn_times.append(time.process_time() - t0)
    return [statistics.median(fn_times) for fn_times in times]


def _actor(env_id: str, num_envs: int):
    from rlteach.envs import VecGymEnv
    from rlteach.modules import make_categorical_actor

    env = VecGymEnv(env_id, num_envs, seed=0)
    actor = make_categorical_actor(env.observation_dim, env.n_actions, (64, 64))
    return env, actor


def collection_floor(
    num_envs: int, steps: int = 256, repeats: int = 5, env_id: str = "CartPole-v1"
) -> dict:
    """Seconds per frame of rlteach's collection path and of the floor, and their ratio.

    ``steps`` vector steps per timed repeat (``steps × num_envs`` frames)."""
    from rlteach.envs import Collector

    torch.manual_seed(0)
    env, actor = _actor(env_id, num_envs)
    collector = Collector(env, actor, frames_per_batch=steps * num_envs)
    collector.rollout()  # warm-up: the first reset and torch's first calls

    net = actor.module[0].module  # the logits network the TensorDictModule wraps
    vec = SyncVectorEnv(
        [lambda: gym.make(env_id) for _ in range(num_envs)], autoreset_mode=AutoresetMode.SAME_STEP
    )
    state = {"obs": vec.reset(seed=0)[0]}

    def floor_steps() -> None:
        obs = state["obs"]
        with torch.no_grad():
            for _ in range(steps):
                logits = net(torch.as_tensor(obs, dtype=torch.float32))
                action = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1)
                obs, _, _, _, _ = vec.step(action.numpy())
        state["obs"] = obs

    floor_steps()
    ours, floor = (
        seconds / (steps * num_envs)
        for seconds in _interleaved_medians([collector.rollout, floor_steps], repeats)
    )
    env.close()
    vec.close()
    return {
        "num_envs": num_envs,
        "rlteach_us_per_frame": 1e6 * ours,
        "floor_us_per_frame": 1e6 * floor,
        "ratio": ours / floor,
    }


class _NoEvaluation:
    """The evaluator the timed loop gets: never due."""

    def after_batch(self, frames: int, last: bool = False) -> bool:
        return False


def offpolicy_floor(
    steps: int = 200, repeats: int = 5, warmup: int = 1_000, env_id: str = "Pendulum-v1"
) -> dict:
    """Seconds per environment step (one step, one update) of rlteach's off-policy loop and of
    its floor, and their ratio (DDPG's networks and hyper-parameters, ``steps`` per repeat)."""
    import copy

    from rlteach.buffers import ReplayBuffer
    from rlteach.checkpoint import NoCheckpoint
    from rlteach.envs import GymEnv
    from rlteach.recipes import ddpg
    from rlteach.recipes._offpolicy import (
        TRANSITION_KEYS,
        StepCollector,
        UpdateLog,
        offpolicy_loop,
    )
    from rlteach.updaters import SoftUpdate

    torch.manual_seed(0)
    cfg = ddpg.DDPGConfig(env_id=env_id)
    env = GymEnv(env_id, seed=0)
    agent = ddpg.build(cfg, env)
    updater = SoftUpdate(agent.loss, tau=cfg.tau)
    buffer = ReplayBuffer(cfg.buffer_size, generator=torch.Generator().manual_seed(0))
    collector = StepCollector(env, agent.act, warmup, warmup)
    collector.start(0)
    for transition in collector:  # random warm-up transitions, so the minibatches are full
        buffer.extend(transition.select(*TRANSITION_KEYS))
    log = UpdateLog({}, cfg.log_every, {})

    def ours() -> None:
        collector.total_frames = collector.frames + steps
        offpolicy_loop(
            agent, collector, buffer, log, _NoEvaluation(), NoCheckpoint(), updater,
            learning_starts=0, updates_per_batch=1, batch_size=cfg.batch_size,
            total_frames=collector.total_frames,
        )  # fmt: skip

    # the floor: copies of the same networks, a plain Gymnasium env and tensors
    actor = copy.deepcopy(agent.extras["actor"].module)  # mu(s), the recipe's nn.Module
    critic = copy.deepcopy(agent.loss.value_network.module)  # Q(s, a), a ConcatMLP
    actor_target, critic_target = copy.deepcopy(actor), copy.deepcopy(critic)
    params = [*actor.parameters(), *critic.parameters()]
    target_params = [*actor_target.parameters(), *critic_target.parameters()]
    actor_opt = torch.optim.Adam(actor.parameters(), lr=cfg.actor_lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    gym_env = gym.make(env_id)
    low, high = env.action_low, env.action_high
    noise = cfg.expl_noise * (high - low) / 2
    size = warmup + steps * (repeats + 1)
    obs_dim, act_dim = env.observation_dim, env.action_dim
    storage = {
        "obs": torch.zeros(size, obs_dim), "action": torch.zeros(size, act_dim),
        "reward": torch.zeros(size, 1), "next_obs": torch.zeros(size, obs_dim),
        "terminated": torch.zeros(size, 1),
    }  # fmt: skip
    stored = buffer.sample(warmup)  # warm-up transitions, so that both sample the same kind
    storage["obs"][:warmup], storage["action"][:warmup] = stored["observation"], stored["action"]
    storage["next_obs"][:warmup] = stored["next", "observation"]
    storage["reward"][:warmup] = stored["next", "reward"]
    storage["terminated"][:warmup] = stored["next", "terminated"]
    state = {"obs": gym_env.reset(seed=0)[0], "filled": warmup}

    def floor_steps() -> None:
        obs = state["obs"]
        for _ in range(steps):
            obs_t = torch.as_tensor(obs, dtype=torch.float32)
            with torch.no_grad():
                action = actor(obs_t)
                action = (action + noise * torch.randn_like(action)).clamp(low, high)
            next_obs, reward, terminated, truncated, _ = gym_env.step(action.numpy())
            i = state["filled"]
            storage["obs"][i], storage["action"][i] = obs_t, action
            storage["reward"][i, 0], storage["terminated"][i, 0] = float(reward), terminated
            storage["next_obs"][i] = torch.as_tensor(next_obs, dtype=torch.float32)
            state["filled"] = i + 1
            obs = gym_env.reset()[0] if terminated or truncated else next_obs
            index = torch.randint(i + 1, (cfg.batch_size,))
            o, a, r, o2, d = (storage[k][index] for k in storage)
            with torch.no_grad():  # (DDPG-1) the target, from the target networks
                target = r + cfg.gamma * (1 - d) * critic_target(o2, actor_target(o2))
            critic_loss = (critic(o, a) - target).pow(2).mean()  # (DDPG-2)
            critic_opt.zero_grad()
            critic_loss.backward()
            critic_opt.step()
            actor_loss = -critic(o, actor(o)).mean()  # (DDPG-3), gradients for the actor only
            actor_opt.zero_grad()
            actor_loss.backward(inputs=list(actor.parameters()))
            actor_opt.step()
            with torch.no_grad():  # (TGT-1)
                torch._foreach_lerp_(target_params, params, cfg.tau)
        state["obs"] = obs

    ours()  # warm-up: torch's first calls on both sides
    floor_steps()
    rlteach_s, floor_s = (
        seconds / steps for seconds in _interleaved_medians([ours, floor_steps], repeats)
    )
    env.close()
    gym_env.close()
    return {
        "env_id": env_id,
        "rlteach_us_per_step": 1e6 * rlteach_s,
        "floor_us_per_step": 1e6 * floor_s,
        "ratio": rlteach_s / floor_s,
    }


def frames_per_second(
    num_envs: int, steps: int = 128, repeats: int = 3, env_id: str = "CartPole-v1"
) -> float:
    """Frames per second of rlteach's collection path with ``num_envs`` environments."""
    from rlteach.envs import Collector

    torch.manual_seed(0)
    env, actor = _actor(env_id, num_envs)
    collector = Collector(env, actor, frames_per_batch=steps * num_envs)
    collector.rollout()
    seconds = _median_seconds(collector.rollout, repeats)
    env.close()
    return steps * num_envs / seconds


def buffer_sample_seconds(size: int, batch_size: int = 256, repeats: int = 200) -> float:
    """Median seconds to draw one minibatch from a full buffer of ``size`` transitions
    (Pendulum's shapes: a 3-dimensional observation, a 1-dimensional action)."""
    from rlteach.buffers import ReplayBuffer

    generator = torch.Generator().manual_seed(0)
    buffer = ReplayBuffer(size, generator=generator)
    chunk = min(size, 100_000)
    filled = 0
    while filled < size:
        n = min(chunk, size - filled)
        buffer.extend(
            TensorDict(
                {
                    "observation": torch.randn(n, 3),
                    "action": torch.randn(n, 1),
                    "next": {
                        "observation": torch.randn(n, 3),
                        "reward": torch.randn(n, 1),
                        "terminated": torch.zeros(n, 1, dtype=torch.bool),
                        "truncated": torch.zeros(n, 1, dtype=torch.bool),
                        "done": torch.zeros(n, 1, dtype=torch.bool),
                    },
                },
                batch_size=[n],
            )
        )
        filled += n
    for _ in range(10):
        buffer.sample(batch_size)
    return _median_seconds(lambda: buffer.sample(batch_size), repeats)


def measure_costs(
    floor_envs: Sequence[int] = (1, 8, 32, 64),
    fps_envs: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    buffer_sizes: Sequence[int] = (1_000, 10_000, 100_000, 1_000_000),
    quick: bool = False,
) -> dict:
    """Every measurement of this module, as one JSON-ready dict (``quick``: tiny repeats)."""
    torch.set_num_threads(1)
    scale = dict(steps=8, repeats=1) if quick else {}
    return {
        "floor": [collection_floor(n, **scale) for n in floor_envs],
        "offpolicy": offpolicy_floor(**(dict(steps=4, repeats=1, warmup=300) if quick else {})),
        "fps": [{"num_envs": n, "fps": frames_per_second(n, **scale)} for n in fps_envs],
        "buffer": [
            {"size": s, "sample_us": 1e6 * buffer_sample_seconds(s, repeats=5 if quick else 200)}
            for s in buffer_sizes
        ],
    }


def costs_markdown(report: dict) -> str:
    """The tables of a :func:`measure_costs` report, as Markdown."""
    lines = [
        "| environments | rlteach, µs per frame | floor, µs per frame | ratio |",
        "|---|---|---|---|",
    ]
    for row in report["floor"]:
        lines.append(
            f"| {row['num_envs']} | {row['rlteach_us_per_frame']:.1f} | "
            f"{row['floor_us_per_frame']:.1f} | {row['ratio']:.2f} |"
        )
    if "offpolicy" in report:
        row = report["offpolicy"]
        lines += [
            "",
            "| off-policy step + update | rlteach, µs per step | floor, µs per step | ratio |",
            "|---|---|---|---|",
            f"| DDPG, {row['env_id']} | {row['rlteach_us_per_step']:.1f} | "
            f"{row['floor_us_per_step']:.1f} | {row['ratio']:.2f} |",
        ]
    lines += ["", "| environments | frames per second |", "|---|---|"]
    lines += [f"| {row['num_envs']} | {row['fps']:,.0f} |" for row in report["fps"]]
    lines += ["", "| buffer size | µs per minibatch of 256 |", "|---|---|"]
    lines += [f"| {row['size']:,} | {row['sample_us']:.1f} |" for row in report["buffer"]]
    return "\n".join(lines)
