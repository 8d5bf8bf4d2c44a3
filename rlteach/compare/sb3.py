"""Stable-Baselines3 on rlteach's bench tasks, with RL-Zoo's hyper-parameters.

An honest comparison changes only the learner. Both sides therefore share:

* the **task** and its **solved threshold** (``rlteach.bench.SOLVED_THRESHOLDS``);
* the **training seeds** (0 … N−1: SB3's ``seed=`` and ``make_vec_env(seed=)``);
* the **evaluation**: every ``eval_every`` environment steps (frames over all copies, the
  rlteach recipe's interval; at the first batch boundary, i.e. after the update, at or past
  each multiple, and at the end of the budget), the mean return of
  10 episodes of the *deterministic* policy, episode k reset with seed 10000 + k, run by the very
  same function, :func:`rlteach.envs.evaluate` (SB3's policy is wrapped to act on a TensorDict);
* the **clock**: training wall-clock seconds with evaluation excluded (a
  :class:`~rlteach.recipes.base.Stopwatch` paused during evaluation), one torch thread;
* the **stopping rule**: a run ends at the first evaluation at or above the threshold, or when
  its budget is spent.

What differs is each side's own tuned configuration: rlteach's recipe and budget, and RL-Zoo's
tuned hyper-parameters and ``n_timesteps`` for SB3, transcribed below from
``rl-baselines3-zoo/hyperparams/<algo>.yml`` (Raffin 2020). Where RL-Zoo normalises observations
(``normalize: true``), SB3 trains behind ``VecNormalize`` and is evaluated on observations
normalised with its training statistics, as RL-Zoo evaluates it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from rlteach.recipes.base import EvalPoint, RunResult, Stopwatch

try:
    import stable_baselines3
    from stable_baselines3.common.callbacks import BaseCallback
except ImportError:  # the optional `bench` extra is not installed
    stable_baselines3 = None
    BaseCallback = object

__all__ = ["SB3Task", "SB3_TASKS", "available", "require", "train_sb3", "version"]

EVAL_SEED = 10_000
EVAL_EPISODES = 10


def available() -> bool:
    """True when stable-baselines3 and sb3-contrib can be imported."""
    if stable_baselines3 is None:
        return False
    try:
        import sb3_contrib  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> None:
    """Raise a clear error when the optional ``bench`` extra is missing."""
    if not available():
        raise ImportError(
            "--compare sb3 needs stable-baselines3 and sb3-contrib: install the optional extra "
            'with `pip install -e ".[bench]"` (after the CPU torch wheel, as in the README).'
        )


def version() -> str:
    import sb3_contrib

    return (
        f"Stable-Baselines3 {stable_baselines3.__version__}, sb3-contrib {sb3_contrib.__version__}"
    )


def lin(value: float) -> Callable[[float], float]:
    """RL-Zoo's ``lin_<value>``: decay linearly from value to 0 over the training budget."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * value

    schedule.__name__ = f"lin_{value:g}"
    return schedule


@dataclass(frozen=True)
class SB3Task:
    """The SB3 counterpart of one rlteach bench entry."""

    entry: str
    """the rlteach bench entry, e.g. "ppo-cartpole\""""
    library: str
    """"stable_baselines3" or "sb3_contrib\""""
    algo: str
    """the class name, e.g. "PPO\""""
    env_id: str
    n_timesteps: int
    """RL-Zoo's training budget"""
    eval_every: int
    """the rlteach recipe's evaluation interval in frames (kept identical)"""
    quick_timesteps: int
    """the budget in quick mode (the rlteach recipe's quick budget)"""
    n_envs: int = 1
    normalize: bool = False
    hyperparams: dict = field(default_factory=dict)
    source: str = ""
    """where the numbers come from"""
    action_noise_std: float | None = None
    """RL-Zoo's ``noise_type: normal`` with this ``noise_std``: Gaussian exploration noise of
    that standard deviation on every action dimension (TD3, DDPG)"""


ZOO = "rl-baselines3-zoo hyperparams/"
_DQN_CLASSIC = dict(  # dqn.yml, CartPole-v1 ("Almost Tuned") and Acrobot-v1 ("Tuned")
    learning_rate=2.5e-4,
    batch_size=512,
    buffer_size=100_000,
    learning_starts=0,
    gamma=0.99,
    target_update_interval=5000,
    train_freq=16,
    gradient_steps=4,
    exploration_fraction=0.06,
    exploration_final_eps=0.11,
)

_TD3_DDPG_PENDULUM = dict(  # td3.yml and ddpg.yml, Pendulum ("Tuned")
    gamma=0.98,
    buffer_size=200_000,
    learning_starts=10_000,
    gradient_steps=-1,
    train_freq=(1, "episode"),
    learning_rate=1e-3,
    policy_kwargs=dict(net_arch=[400, 300]),
)

SB3_TASKS: dict[str, SB3Task] = {
    t.entry: t
    for t in [
        SB3Task(
            "ppo-cartpole",
            "stable_baselines3",
            "PPO",
            "CartPole-v1",
            n_timesteps=100_000,
            eval_every=2_048,
            quick_timesteps=4_096,
            n_envs=8,
            hyperparams=dict(
                n_steps=32,
                batch_size=256,
                gae_lambda=0.8,
                gamma=0.98,
                n_epochs=20,
                ent_coef=0.0,
                learning_rate=lin(0.001),
                clip_range=lin(0.2),
            ),
            source=ZOO + "ppo.yml, CartPole-v1 (tuned)",
        ),
        SB3Task(
            "ppo-acrobot",
            "stable_baselines3",
            "PPO",
            "Acrobot-v1",
            n_timesteps=1_000_000,
            eval_every=2_048,
            quick_timesteps=4_096,
            n_envs=16,
            normalize=True,
            hyperparams=dict(n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0),
            source=ZOO + "ppo.yml, Acrobot-v1 (normalize: true)",
        ),
        SB3Task(
            "a2c-cartpole",
            "stable_baselines3",
            "A2C",
            "CartPole-v1",
            n_timesteps=500_000,
            eval_every=2_048,
            quick_timesteps=4_096,
            n_envs=8,
            hyperparams=dict(ent_coef=0.0),
            source=ZOO + "a2c.yml, CartPole-v1 (other settings: SB3 defaults)",
        ),
        SB3Task(
            "dqn-cartpole",
            "stable_baselines3",
            "DQN",
            "CartPole-v1",
            n_timesteps=200_000,
            eval_every=2_000,
            quick_timesteps=2_000,
            hyperparams=_DQN_CLASSIC,
            source=ZOO + "dqn.yml, CartPole-v1",
        ),
        SB3Task(
            "dqn-acrobot",
            "stable_baselines3",
            "DQN",
            "Acrobot-v1",
            n_timesteps=150_000,
            eval_every=2_000,
            quick_timesteps=2_000,
            hyperparams=_DQN_CLASSIC,
            source=ZOO + "dqn.yml, Acrobot-v1",
        ),
        SB3Task(
            "sac-pendulum",
            "stable_baselines3",
            "SAC",
            "Pendulum-v1",
            n_timesteps=20_000,
            eval_every=500,
            quick_timesteps=600,
            hyperparams=dict(learning_rate=1e-3),
            source=ZOO + "sac.yml, Pendulum-v1 (other settings: SB3 defaults)",
        ),
        # RL-Zoo's Pendulum settings for TD3 and DDPG (the same for both; the stored version of
        # td3.yml / ddpg.yml names the task Pendulum-v0, which Gymnasium renamed Pendulum-v1)
        SB3Task(
            "td3-pendulum",
            "stable_baselines3",
            "TD3",
            "Pendulum-v1",
            n_timesteps=20_000,
            eval_every=500,
            quick_timesteps=600,
            hyperparams=_TD3_DDPG_PENDULUM,
            action_noise_std=0.1,
            source=ZOO + "td3.yml, Pendulum",
        ),
        SB3Task(
            "ddpg-pendulum",
            "stable_baselines3",
            "DDPG",
            "Pendulum-v1",
            n_timesteps=20_000,
            eval_every=500,
            quick_timesteps=600,
            hyperparams=_TD3_DDPG_PENDULUM,
            action_noise_std=0.1,
            source=ZOO + "ddpg.yml, Pendulum",
        ),
        SB3Task(
            "crossq-pendulum",
            "sb3_contrib",
            "CrossQ",
            "Pendulum-v1",
            n_timesteps=20_000,
            eval_every=500,
            quick_timesteps=400,
            hyperparams=dict(policy_delay=2, policy_kwargs=dict(net_arch=[256, 256])),
            source=ZOO + "crossq.yml, Pendulum-v1",
        ),
    ]
}


class _SB3Policy:
    """SB3's deterministic policy as a TensorDict → TensorDict callable for rlteach.evaluate."""

    def __init__(self, model, normalizer=None) -> None:
        self.model, self.normalizer = model, normalizer

    def __call__(self, td):
        obs = td["observation"].numpy()
        if self.normalizer is not None:
            obs = self.normalizer.normalize_obs(obs)  # training statistics, frozen
        action, _ = self.model.predict(obs, deterministic=True)
        dtype = (
            torch.int64 if np.issubdtype(np.asarray(action).dtype, np.integer) else torch.float32
        )
        td.set("action", torch.as_tensor(np.asarray(action), dtype=dtype))
        return td


class _RlteachEvaluation(BaseCallback):
    """rlteach's evaluation protocol inside SB3's training loop, at batch boundaries."""

    def __init__(self, task, result, clock, threshold, eval_every, stop_on_solve, bar) -> None:
        super().__init__()
        self.task, self.result, self.clock = task, result, clock
        self.threshold, self.every, self.stop_on_solve, self.bar = (
            threshold,
            eval_every,
            stop_on_solve,
            bar,
        )
        self._next = eval_every
        self.solved = False

    def _evaluate(self) -> None:
        from rlteach.envs import evaluate

        with self.clock.paused():
            normalizer = self.model.get_vec_normalize_env()
            policy = _SB3Policy(self.model, normalizer)
            mean_return = evaluate(policy, self.task.env_id, EVAL_EPISODES, seed=EVAL_SEED)
        self.result.curve.append(EvalPoint(self.num_timesteps, self.clock.seconds, mean_return))
        self.solved = mean_return >= self.threshold
        if self.bar is not None:
            self.bar.update(self.num_timesteps - self.bar.n)
            self.bar.set_postfix(eval_return=f"{mean_return:.1f}")

    def _on_training_start(self) -> None:
        self.clock.resume()

    def _on_rollout_start(self) -> None:
        # SB3 calls this right after the update on the previous batch: a batch boundary, where
        # rlteach's recipes evaluate too (evaluating in _on_step would catch the policy one
        # update earlier, mid-collection).
        if self.num_timesteps >= self._next and not self.solved:
            while self._next <= self.num_timesteps:
                self._next += self.every
            self._evaluate()

    def _on_step(self) -> bool:
        return not (self.stop_on_solve and self.solved)  # stop at the first step after solving

    def _on_training_end(self) -> None:
        self.clock.pause()
        last = self.result.curve[-1].env_steps if self.result.curve else -1
        if last < self.num_timesteps and not (self.stop_on_solve and self.solved):
            self._evaluate()  # the budget's end, as rlteach's Evaluator(last=True)


def train_sb3(
    task: SB3Task,
    seed: int = 0,
    quick: bool = False,
    progress: bool = False,
    threshold: float | None = None,
    stop_on_solve: bool = True,
) -> RunResult:
    """Train the SB3 counterpart of a bench entry; the evaluation curve as rlteach logs it."""
    require()
    import importlib

    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from rlteach.bench import SOLVED_THRESHOLDS
    from rlteach.progress import progress_bar

    if threshold is None:
        threshold = SOLVED_THRESHOLDS[task.env_id]
    budget = task.quick_timesteps if quick else task.n_timesteps
    eval_every = min(task.eval_every, budget)
    torch.set_num_threads(1)  # as the rlteach recipes
    env = make_vec_env(task.env_id, n_envs=task.n_envs, seed=seed)
    if task.normalize:
        env = VecNormalize(env)
    algo = getattr(importlib.import_module(task.library), task.algo)
    hyperparams = dict(task.hyperparams)
    if task.action_noise_std is not None:
        from stable_baselines3.common.noise import NormalActionNoise

        dim = env.action_space.shape[-1]
        hyperparams["action_noise"] = NormalActionNoise(
            mean=np.zeros(dim), sigma=task.action_noise_std * np.ones(dim)
        )
    model = algo("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hyperparams)
    result = RunResult(algo=f"sb3-{task.algo.lower()}", env_id=task.env_id, seed=seed)
    clock = Stopwatch()
    clock.pause()  # started by the callback when learning starts
    bar = progress_bar(total=budget, desc=f"SB3 {task.algo} {task.env_id}", disable=not progress)
    callback = _RlteachEvaluation(task, result, clock, threshold, eval_every, stop_on_solve, bar)
    model.learn(total_timesteps=budget, callback=callback)
    bar.close()
    env.close()
    return result
