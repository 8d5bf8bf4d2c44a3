"""What collecting data costs, against the floor, and how the cost grows.

``python -m rlteach bench --costs`` measures, in one process and one thread:

* **The collection floor.** rlteach's on-policy collection path (Gymnasium's vector environment
  step → TensorDict → the PPO actor → TensorDict, i.e. :class:`rlteach.envs.Collector` with the
  recipe's categorical actor) against the least that any library must do per step: the same
  ``gymnasium.vector.SyncVectorEnv`` step and one forward of the same ``nn.Module`` on a tensor
  made from the NumPy batch, the action drawn with ``torch.multinomial`` and handed back as a
  NumPy array, nothing else. The ratio of the two per-frame times is what the TensorDict layer
  costs; it is reported for 1, 8 and 32 environments.
* **Frames per second against the number of environments** (1 to 64): the same collection path.
* **The replay buffer's sample time against its size** (10³ to 10⁶ transitions): one minibatch
  of 256 drawn from a :class:`rlteach.buffers.ReplayBuffer` holding that many Pendulum-shaped
  transitions. Uniform sampling indexes the storage, so the time must not grow with the size.

Every number is a median over repeats (``repeats``), measured after a warm-up, so a busy
machine inflates it less; the ratios compare numbers taken side by side in the same run, which
is what makes them comparable across machines. Nothing here is a unit test: the targets
(ratio ≤ 1.5, flat sampling) are read from the report, see :func:`costs_markdown`.
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
]


def _median_seconds(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
    ours = _median_seconds(collector.rollout, repeats) / (steps * num_envs)
    env.close()

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
    floor = _median_seconds(floor_steps, repeats) / (steps * num_envs)
    vec.close()
    return {
        "num_envs": num_envs,
        "rlteach_us_per_frame": 1e6 * ours,
        "floor_us_per_frame": 1e6 * floor,
        "ratio": ours / floor,
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
    floor_envs: Sequence[int] = (1, 8, 32),
    fps_envs: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    buffer_sizes: Sequence[int] = (1_000, 10_000, 100_000, 1_000_000),
    quick: bool = False,
) -> dict:
    """Every measurement of this module, as one JSON-ready dict (``quick``: tiny repeats)."""
    torch.set_num_threads(1)
    scale = dict(steps=8, repeats=1) if quick else {}
    return {
        "floor": [collection_floor(n, **scale) for n in floor_envs],
        "fps": [{"num_envs": n, "fps": frames_per_second(n, **scale)} for n in fps_envs],
        "buffer": [
            {"size": s, "sample_us": 1e6 * buffer_sample_seconds(s, repeats=5 if quick else 200)}
            for s in buffer_sizes
        ],
    }


def costs_markdown(report: dict) -> str:
    """The three tables of a :func:`measure_costs` report, as Markdown."""
    lines = [
        "| environments | rlteach, µs per frame | floor, µs per frame | ratio |",
        "|---|---|---|---|",
    ]
    for row in report["floor"]:
        lines.append(
            f"| {row['num_envs']} | {row['rlteach_us_per_frame']:.1f} | "
            f"{row['floor_us_per_frame']:.1f} | {row['ratio']:.2f} |"
        )
    lines += ["", "| environments | frames per second |", "|---|---|"]
    lines += [f"| {row['num_envs']} | {row['fps']:,.0f} |" for row in report["fps"]]
    lines += ["", "| buffer size | µs per minibatch of 256 |", "|---|---|"]
    lines += [f"| {row['size']:,} | {row['sample_us']:.1f} |" for row in report["buffer"]]
    return "\n".join(lines)
