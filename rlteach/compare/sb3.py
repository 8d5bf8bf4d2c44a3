"""Stable-Baselines3 on rlteach's bench tasks, with RL-Zoo's hyper-parameters.

An honest comparison changes only the learner. Both sides therefore share:

* the **task** and its **solved threshold** (``rlteach.tasks.SOLVED_THRESHOLDS``);
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

What differs is each side's own tuned configuration: rlteach's recipe and budget, and for SB3
the task's entry in ``hyperparams/<algo>.yml`` of the installed ``rl-zoo3`` package (Raffin 2020),
read when the comparison runs (:func:`zoo_settings`) and never copied here. The entry is parsed
as RL-Zoo's ``ExperimentManager`` parses it (``read_hyperparameters`` and
``_preprocess_hyperparams`` in ``rl_zoo3/exp_manager.py``): ``lin_<x>`` schedules, ``n_envs``,
``n_timesteps``, ``normalize`` (SB3 trains behind ``VecNormalize``, with the algorithm's
``gamma``, and is evaluated on observations normalised with its training statistics, as RL-Zoo
evaluates it), ``policy_kwargs`` strings, ``train_freq`` lists, ``noise_type``/``noise_std`` and
``frame_stack``. Where the zoo has no entry for the task, SB3 runs with its own defaults for the
rlteach recipe's budget, and the results say "SB3 defaults".

rl-zoo3 is read, not imported: ``import rl_zoo3`` needs the zoo's heavy dependencies (Optuna,
the Hugging Face hub) and patches Gymnasium's ``TimeLimit`` as a side effect, so the yml files are
found through the package's location and its version through its metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rlteach.recipes.base import EvalPoint, RunResult, Stopwatch

try:
    import stable_baselines3
    from stable_baselines3.common.callbacks import BaseCallback
except ImportError:  # the optional `bench` extra is not installed
    stable_baselines3 = None
    BaseCallback = object

__all__ = [
    "SB3Task",
    "SB3_TASKS",
    "ZooSettings",
    "available",
    "require",
    "train_sb3",
    "version",
    "zoo_settings",
    "zoo_version",
]

EVAL_SEED = 10_000
EVAL_EPISODES = 10


def available() -> bool:
    """True when stable-baselines3 and sb3-contrib can be imported and rl-zoo3 is installed."""
    import importlib.util

    if stable_baselines3 is None:
        return False
    try:
        import sb3_contrib  # noqa: F401
    except ImportError:
        return False
    return importlib.util.find_spec(ZOO_PACKAGE) is not None


def require() -> None:
    """Raise a clear error when the optional ``bench`` extra is missing."""
    if not available():
        raise ImportError(
            "--compare sb3 needs stable-baselines3, sb3-contrib and rl-zoo3 (RL-Zoo's "
            "hyper-parameters): install the optional extra "
            'with `pip install -e ".[bench]"` (after the CPU torch wheel, as in the README).'
        )


def version() -> str:
    import sb3_contrib

    return (
        f"Stable-Baselines3 {stable_baselines3.__version__}, sb3-contrib {sb3_contrib.__version__}"
    )


ZOO_PACKAGE = "rl_zoo3"
SB3_DEFAULTS = "SB3 defaults"

SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf", "delta_std")
"""the keys whose values RL-Zoo turns into schedules (``ExperimentManager._preprocess_schedules``)"""

UNSUPPORTED_KEYS = (
    "env_wrapper",
    "vec_env_wrapper",
    "callback",
    "env_kwargs",
    "monitor_kwargs",
    "replay_buffer_class",
)
"""keys the zoo understands that would change the task or the loop (not only the learner): none
of the compared tasks' entries uses them, and an entry that does is refused, not half-applied"""


def lin(value: float) -> Callable[[float], float]:
    """RL-Zoo's ``lin_<value>``: decay linearly from value to 0 over the training budget
    (``SimpleLinearSchedule`` in ``rl_zoo3/utils.py``; SB3 passes the progress remaining, 1 → 0)."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * value

    schedule.__name__ = f"lin_{value:g}"
    schedule.initial_value = value
    return schedule


def zoo_dir():
    """The installed rl-zoo3's ``hyperparams/`` folder, found without importing the package."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(ZOO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "--compare sb3 reads RL-Zoo's hyper-parameters from the rl-zoo3 package: install the "
            'optional extra with `pip install -e ".[bench]"` (or `pip install "rl-zoo3>=2.9,<3"`).'
        )
    return Path(list(spec.submodule_search_locations)[0]) / "hyperparams"


def zoo_version() -> str:
    """The installed rl-zoo3's version (its metadata, the same string as ``rl_zoo3.__version__``)."""
    from importlib.metadata import version as dist_version

    zoo_dir()  # the clear error when it is missing
    return dist_version("rl_zoo3")


def read_zoo_entry(algo: str, env_id: str) -> dict | None:
    """The raw entry for ``env_id`` in the zoo's ``hyperparams/<algo>.yml`` (None if absent).

    Only an entry named after the task counts: the zoo's ``default`` entry (a 10⁶-step budget and
    nothing else tuned) is not a tuned setting, so a task without its own entry runs on SB3's
    defaults, labelled as such.
    """
    import yaml

    path = zoo_dir() / f"{algo.lower()}.yml"
    if not path.is_file():
        return None
    with open(path) as f:
        entries = yaml.safe_load(f)
    entry = entries.get(env_id)
    return None if entry is None else dict(entry)


def _python_value(text: str, key: str):
    """A ``policy_kwargs``-style string of the yml as the zoo evaluates it (``eval``), restricted
    to ``dict`` and torch's ``nn`` (``nn.ReLU``, ``th.nn.Tanh``): no builtins, no imports."""
    namespace = {"__builtins__": {}, "dict": dict, "nn": torch.nn, "th": torch}
    try:
        return eval(text, namespace)  # noqa: S307 - the zoo's own files, as the zoo does
    except Exception as err:
        raise ValueError(f"rl-zoo3 entry: cannot evaluate {key}={text!r}: {err}") from err


def parse_schedule(value, key: str = "learning_rate"):
    """``"lin_<x>"`` → :func:`lin` (x); a number stays a number (SB3 makes it constant, as the
    zoo's ``ConstantSchedule`` does)."""
    if isinstance(value, str):
        kind, _, initial = value.partition("_")
        if kind != "lin" or not initial:
            raise ValueError(
                f"rl-zoo3 entry: {key}={value!r} is not a schedule the zoo knows ('lin_<value>')."
            )
        return lin(float(initial))
    if isinstance(value, (int, float)):
        return float(value)
    raise ValueError(f"rl-zoo3 entry: invalid value for {key}: {value!r}")


@dataclass(frozen=True)
class ZooSettings:
    """One task's SB3 configuration after RL-Zoo's parsing of its yml entry."""

    policy: str
    n_timesteps: int
    n_envs: int
    hyperparams: dict
    """keyword arguments of the algorithm's constructor (schedules as callables)"""
    normalize: bool = False
    normalize_kwargs: dict = field(default_factory=dict)
    """``VecNormalize`` arguments (the zoo adds the algorithm's ``gamma``)"""
    action_noise: tuple[str, float] | None = None
    """``(noise_type, noise_std)``: ``normal`` or ``ornstein-uhlenbeck``, on every action dim"""
    frame_stack: int | None = None
    source: str = ""
    """where the settings come from, as the results and the page show it"""
    zoo_version: str = ""


def parse_zoo_entry(entry: dict) -> dict:
    """RL-Zoo's preprocessing of one yml entry (``ExperimentManager._preprocess_hyperparams``,
    ``_preprocess_schedules``, ``_preprocess_normalization``, ``_preprocess_action_noise`` in
    ``rl_zoo3/exp_manager.py``, rl-zoo3 2.9), the subset a Gymnasium task needs.

    Returns the :class:`ZooSettings` fields other than ``source``/``zoo_version``.
    """
    hyper = dict(entry)
    unsupported = [key for key in UNSUPPORTED_KEYS if key in hyper]
    if unsupported:
        raise ValueError(
            f"rl-zoo3 entry uses {unsupported}, which rlteach's comparison does not apply (it "
            "would change the task or the training loop, not only the learner)."
        )
    policy = hyper.pop("policy", "MlpPolicy")
    if not isinstance(policy, str) or "." in policy:
        raise ValueError(f"rl-zoo3 entry: custom policy class {policy!r} is not supported.")
    n_envs = int(hyper.pop("n_envs", 1))
    n_timesteps = int(hyper.pop("n_timesteps"))  # the zoo's yml stores e.g. 1e5 as a float
    for key in SCHEDULE_KEYS:
        if key in hyper:
            if isinstance(hyper[key], (int, float)) and hyper[key] < 0:
                continue  # the zoo leaves a negative number (e.g. no clipping) as it is
            hyper[key] = parse_schedule(hyper[key], key)
    if isinstance(hyper.get("train_freq"), list):
        hyper["train_freq"] = tuple(hyper["train_freq"])  # e.g. [1, "episode"]
    normalize, normalize_kwargs = False, {}
    if "normalize" in hyper:
        value = hyper.pop("normalize")
        if isinstance(value, str):  # e.g. "dict(norm_obs=False, norm_reward=True)"
            value = _python_value(value, "normalize")
        if isinstance(value, dict):
            normalize, normalize_kwargs = True, dict(value)
        else:
            normalize = bool(value)
        if normalize and "gamma" in hyper:
            normalize_kwargs["gamma"] = hyper["gamma"]  # the algorithm's discount, as the zoo
    for key in ("policy_kwargs", "replay_buffer_kwargs"):
        if isinstance(hyper.get(key), str):
            hyper[key] = _python_value(hyper[key], key)
    action_noise = None
    if hyper.get("noise_type") is not None:
        action_noise = (hyper.pop("noise_type").strip(), float(hyper.pop("noise_std")))
    hyper.pop("noise_type", None)
    hyper.pop("noise_std", None)
    frame_stack = hyper.pop("frame_stack", None)
    return dict(
        policy=policy,
        n_timesteps=n_timesteps,
        n_envs=n_envs,
        hyperparams=hyper,
        normalize=normalize,
        normalize_kwargs=normalize_kwargs,
        action_noise=action_noise,
        frame_stack=None if frame_stack is None else int(frame_stack),
    )


@dataclass(frozen=True)
class SB3Task:
    """The SB3 counterpart of one rlteach bench entry: which algorithm on which task. Its
    hyper-parameters are not here: :func:`zoo_settings` reads them from rl-zoo3."""

    entry: str
    """the rlteach bench entry, e.g. "ppo-cartpole\""""
    library: str
    """"stable_baselines3" or "sb3_contrib\""""
    algo: str
    """the class name, e.g. "PPO"; the zoo's file is ``hyperparams/<algo lower-cased>.yml``"""
    env_id: str
    eval_every: int
    """the rlteach recipe's evaluation interval in frames (kept identical)"""
    quick_timesteps: int
    """the budget in quick mode (the rlteach recipe's quick budget)"""
    zoo_env_id: str | None = None
    """the zoo entry to read when it is named after another version of the task (the zoo tunes
    ``Hopper-v4``; rlteach runs ``Hopper-v5``, the same robot and task); None: ``env_id``"""
    timesteps: int | None = None
    """the budget when the protocol fixes it (the MuJoCo protocol's 100,000 steps, where the
    zoo trains for 10^6); None: the zoo's ``n_timesteps``"""

    @property
    def zoo_file(self) -> str:
        return f"hyperparams/{self.algo.lower()}.yml"


def _recipe_budget(task: SB3Task) -> int:
    """The rlteach recipe's training budget on the task (SB3's budget when the zoo has none)."""
    from rlteach.recipes import load_all
    from rlteach.registry import TRAINABLE

    load_all()
    recipe = TRAINABLE.get(task.entry.split("-")[0])
    if recipe is None or task.env_id not in recipe.configs:
        raise KeyError(
            f"{task.entry}: rl-zoo3 has no {task.env_id} entry and no rlteach recipe gives a "
            "budget; pass fallback_timesteps."
        )
    return int(recipe.configs[task.env_id].total_frames)


def zoo_settings(task: SB3Task, fallback_timesteps: int | None = None) -> ZooSettings:
    """The task's SB3 settings: its entry in the installed rl-zoo3's ``hyperparams/<algo>.yml``,
    parsed as the zoo parses it; without an entry, SB3's defaults (labelled "SB3 defaults") for
    ``fallback_timesteps`` steps (default: the rlteach recipe's budget)."""
    version = zoo_version()
    where = f"rl-zoo3 {version} {task.zoo_file}"
    zoo_env_id = task.zoo_env_id or task.env_id
    entry = read_zoo_entry(task.algo, zoo_env_id)
    if entry is None:
        budget = fallback_timesteps if fallback_timesteps is not None else _recipe_budget(task)
        return ZooSettings(
            policy="MlpPolicy",
            n_timesteps=int(budget),
            n_envs=1,
            hyperparams={},
            source=f"{SB3_DEFAULTS} ({where} has no {task.env_id} entry; rlteach's budget)",
            zoo_version=version,
        )
    settings = ZooSettings(
        **parse_zoo_entry(entry), source=f"{where}, {zoo_env_id}", zoo_version=version
    )
    if zoo_env_id != task.env_id:
        settings = replace(settings, source=f"{settings.source} (applied to {task.env_id})")
    if task.timesteps is not None and task.timesteps != settings.n_timesteps:
        note = f"; {task.timesteps:,} steps instead of its {settings.n_timesteps:,}, the protocol's"
        settings = replace(settings, n_timesteps=task.timesteps, source=settings.source + note)
    return settings


SB3_TASKS: dict[str, SB3Task] = {
    t.entry: t
    for t in [
        SB3Task("ppo-cartpole", "stable_baselines3", "PPO", "CartPole-v1", 2_048, 4_096),
        SB3Task("ppo-acrobot", "stable_baselines3", "PPO", "Acrobot-v1", 2_048, 4_096),
        SB3Task("a2c-cartpole", "stable_baselines3", "A2C", "CartPole-v1", 2_048, 4_096),
        SB3Task("dqn-cartpole", "stable_baselines3", "DQN", "CartPole-v1", 2_000, 2_000),
        SB3Task("dqn-acrobot", "stable_baselines3", "DQN", "Acrobot-v1", 2_000, 2_000),
        SB3Task("sac-pendulum", "stable_baselines3", "SAC", "Pendulum-v1", 500, 600),
        SB3Task("td3-pendulum", "stable_baselines3", "TD3", "Pendulum-v1", 500, 600),
        SB3Task("ddpg-pendulum", "stable_baselines3", "DDPG", "Pendulum-v1", 500, 600),
        SB3Task("crossq-pendulum", "sb3_contrib", "CrossQ", "Pendulum-v1", 500, 400),
        SB3Task("sac-hopper", "stable_baselines3", "SAC", "Hopper-v5", 5_000, 600,
                zoo_env_id="Hopper-v4", timesteps=100_000),
        SB3Task("td3-hopper", "stable_baselines3", "TD3", "Hopper-v5", 5_000, 600,
                zoo_env_id="Hopper-v4", timesteps=100_000),
        # the zoo's own budgets (DQN 10^5, PPO 10^6 steps): its ε schedule is a fraction of them
        SB3Task("dqn-lunarlander", "stable_baselines3", "DQN", "LunarLander-v3", 25_000, 500),
        SB3Task("ppo-lunarlander", "stable_baselines3", "PPO", "LunarLander-v3", 32_768, 512),
    ]  # fmt: skip
}
"""entry → (library, class, task, the recipe's evaluation interval, its quick budget)"""


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


def make_action_noise(noise_type: str, noise_std: float, action_space):
    """The zoo's exploration noise (``_preprocess_action_noise``): Gaussian or Ornstein-Uhlenbeck
    of standard deviation ``noise_std`` on every action dimension."""
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    dim = action_space.shape[-1]
    mean, sigma = np.zeros(dim), noise_std * np.ones(dim)
    if "normal" in noise_type:
        return NormalActionNoise(mean=mean, sigma=sigma)
    if "ornstein-uhlenbeck" in noise_type:
        return OrnsteinUhlenbeckActionNoise(mean=mean, sigma=sigma)
    raise ValueError(f"rl-zoo3 entry: unknown noise_type {noise_type!r}")


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
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

    from rlteach.progress import progress_bar
    from rlteach.tasks import SOLVED_THRESHOLDS

    if threshold is None:
        threshold = SOLVED_THRESHOLDS[task.env_id]
    settings = zoo_settings(task)
    budget = task.quick_timesteps if quick else settings.n_timesteps
    eval_every = min(task.eval_every, budget)
    torch.set_num_threads(1)  # as the rlteach recipes
    env = make_vec_env(task.env_id, n_envs=settings.n_envs, seed=seed)
    if settings.normalize:  # the zoo's order: normalise, then stack frames
        env = VecNormalize(env, **settings.normalize_kwargs)
    if settings.frame_stack is not None:
        env = VecFrameStack(env, settings.frame_stack)
    algo = getattr(importlib.import_module(task.library), task.algo)
    hyperparams = dict(settings.hyperparams)
    if settings.action_noise is not None:
        hyperparams["action_noise"] = make_action_noise(*settings.action_noise, env.action_space)
    model = algo(settings.policy, env, seed=seed, device="cpu", verbose=0, **hyperparams)
    result = RunResult(algo=f"sb3-{task.algo.lower()}", env_id=task.env_id, seed=seed)
    clock = Stopwatch()
    clock.pause()  # started by the callback when learning starts
    bar = progress_bar(total=budget, desc=f"SB3 {task.algo} {task.env_id}", disable=not progress)
    callback = _RlteachEvaluation(task, result, clock, threshold, eval_every, stop_on_solve, bar)
    model.learn(total_timesteps=budget, callback=callback)
    bar.close()
    env.close()
    return result
