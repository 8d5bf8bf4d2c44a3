"""DQN on a Gymnasium task: one readable replay-buffer training loop (Mnih et al. 2015).

The loop, top to bottom: act ε-greedily in ``num_envs`` copies of the task for
``steps_per_batch`` steps; put the transitions in a replay buffer; once it holds
``learning_starts`` transitions, take ``updates_per_batch`` gradient steps on minibatches drawn
uniformly from it with :class:`rlteach.objectives.DQNLoss`, moving the target network after each
step with :class:`rlteach.updaters.HardUpdate` (copy every N steps) or ``SoftUpdate`` (Polyak);
anneal ε linearly; every ``eval_every`` frames evaluate the greedy policy on 10 episodes with the
clock paused. Double DQN (van Hasselt et al. 2016) is one flag, ``double_dqn``.

The same loop trains C51 (``rlteach/recipes/c51.py``): only the network and the loss change,
which is the point the chapters make.

Given a :class:`rlteach.checkpoint.Checkpointer` (``checkpoint=``), the loop saves everything
that shapes the rest of the run at batch boundaries, at most every ``every_frames`` frames (after
that batch's evaluation), and, when the checkpointer resumes, continues from it bit-identically:
the Q-network and its target (the loss), the Adam optimiser, the target updater (HardUpdate's
call counter), the ε-greedy module (ε where the schedule is, and its private generator), the
replay buffer (storage, cursor, size, generator), the collector (frames, the observation the
next batch starts from, the episodes in progress and finished, the Gymnasium environments with
their ``np_random``, time-limit counters and the action space's RNG), the seeded generator and
the evaluator. Without a checkpointer the run is exactly what it was without one.

Comment tags separate the algorithm from the plumbing (after CleanRL):
``# ALGO`` lines are DQN itself; ``# PLUMBING`` lines are logging, timing and bookkeeping.

Public entry points: ``train(seed, quick, progress, cfg) -> RunResult`` (what the bench calls)
and ``train_agent(seed, quick, progress, cfg, callback) -> (RunResult, Agent)``, which also hands
back the trained networks and the loss.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential

from rlteach.bench import SOLVED_THRESHOLDS, register
from rlteach.buffers import ReplayBuffer
from rlteach.checkpoint import Checkpointer, as_checkpointer
from rlteach.envs import Collector, VecGymEnv
from rlteach.modules import EGreedyModule, make_qvalue_actor, make_qvalue_network
from rlteach.objectives import DQNLoss, LossModule
from rlteach.progress import progress_bar
from rlteach.recipes.base import (
    Evaluator,
    RunResult,
    register_trainable,
    resolve_device,
    seed_everything,
)
from rlteach.updaters import HardUpdate, SoftUpdate

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


@dataclass(frozen=True)
class DQNConfig:
    """Hyper-parameters of the DQN loop; the defaults are tuned for CartPole-v1.

    The rhythm follows RL-Zoo's tuned CartPole DQN (Raffin 2020): collect a batch of frames,
    then take a burst of gradient steps against a target network copied once per burst, so the
    target stays frozen while the online network is fitted to it. Fewer, larger minibatches
    than RL-Zoo (256 × 32 steps per 256 frames instead of 64 × 128) keep the update cheap on a
    CPU. Measured over 5 seeds: see the bench table in the chapter.
    """

    env_id: str = "CartPole-v1"
    num_envs: int = 16
    """parallel copies of the task; a frame is one step of one copy"""
    steps_per_batch: int = 16
    """vector steps between two rounds of updates (num_envs × steps_per_batch frames)"""
    updates_per_batch: int = 32
    """gradient steps after each batch of frames"""
    total_frames: int = 50_000
    """training budget in environment frames"""
    quick_frames: int = 2_000
    """the budget under RLTEACH_QUICK=1"""
    buffer_size: int = 50_000
    batch_size: int = 256
    """minibatch drawn from the replay buffer per gradient step"""
    learning_starts: int = 1_000
    """frames collected (ε = 1, uniformly random actions) before the first update"""
    lr: float = 2.3e-3
    gamma: float = 0.99
    loss_function: str = "smooth_l1"
    """"l2", "l1" or "smooth_l1" (the Huber loss of the DQN paper)"""
    max_grad_norm: float = 10.0
    double_dqn: bool = False
    """Double DQN target (van Hasselt et al. 2016) instead of the max over the target network"""
    target_update: str = "hard"
    """"hard": copy every target_update_interval steps; "soft": Polyak with tau each step;
    "none": no target network at all (bootstrap from the online network, delay_value=False)"""
    target_update_interval: int = 32
    """gradient steps between two copies of the online network (hard updates)"""
    tau: float = 0.01
    """Polyak coefficient (soft updates)"""
    eps_init: float = 1.0
    eps_end: float = 0.04
    exploration_frames: int = 8_000
    """frames over which ε falls linearly from eps_init to eps_end"""
    num_cells: tuple[int, ...] = (128, 128)
    eval_every: int = 2_000
    """frames between evaluations"""
    eval_episodes: int = 10
    stop_on_solve: bool = True
    """end the run at the first evaluation at or above the solved threshold"""
    torch_threads: int = 1


ACROBOT = DQNConfig(env_id="Acrobot-v1", lr=1e-3, eps_end=0.1, exploration_frames=12_000)
"""Acrobot-v1: a smaller step size and more exploration than CartPole (RL-Zoo also explores
more here); with CartPole's settings the greedy policy often collapsed back to -500."""


@dataclass
class Agent:
    """What a training run leaves behind: the networks and the loss that trained them.

    ==============  ===========================================================================
    ``actor``       the greedy policy (reads ``"observation"``, writes ``"action"``; for DQN
                    also ``"action_value"`` and ``"chosen_action_value"``)
    ``policy``      ``actor`` followed by the ε-greedy module, as it acted during training
    ``loss``        the loss module: ``loss.value_network`` (= ``actor``) and
                    ``loss.target_value_network``
    ``exploration`` the :class:`~rlteach.modules.EGreedyModule` (its ``eps`` where it ended)
    ``buffer``      the replay buffer
    ==============  ===========================================================================
    """

    actor: TensorDictModule
    policy: TensorDictSequential
    loss: LossModule
    exploration: EGreedyModule
    buffer: ReplayBuffer


@contextlib.contextmanager
def skip_missing_pandas_lookup():
    """PLUMBING (speed only). tensordict 0.14 asks ``importlib.util.find_spec("pandas")`` for
    every tensor a ``TensorDictModule`` writes; without pandas installed each ask searches the
    whole ``sys.path`` (about 0.1 ms). Recording the absence in ``sys.modules`` (what a failed
    import means anyway) answers it at once. Undone on exit; does nothing if pandas exists."""
    missing = "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None
    if missing:
        sys.modules["pandas"] = None
    try:
        yield
    finally:
        if missing and sys.modules.get("pandas", 0) is None:
            del sys.modules["pandas"]


def build(cfg: DQNConfig, env: VecGymEnv) -> tuple[TensorDictModule, LossModule]:
    """The greedy Q actor and DQNLoss with its TD(0) target at the config's gamma."""
    qnet = make_qvalue_network(env.observation_dim, env.n_actions, cfg.num_cells)
    actor = make_qvalue_actor(qnet)
    loss = DQNLoss(
        actor,
        loss_function=cfg.loss_function,
        double_dqn=cfg.double_dqn,
        delay_value=cfg.target_update != "none",
    )
    loss.make_value_estimator(gamma=cfg.gamma)
    return actor, loss


def make_target_updater(cfg, loss: LossModule) -> HardUpdate | SoftUpdate | None:
    """HardUpdate every ``target_update_interval`` steps, SoftUpdate with ``tau``, or None."""
    if cfg.target_update == "none":
        return None
    if cfg.target_update == "hard":
        return HardUpdate(loss, value_network_update_interval=cfg.target_update_interval)
    if cfg.target_update == "soft":
        return SoftUpdate(loss, tau=cfg.tau)
    raise ValueError(f"target_update must be 'hard', 'soft' or 'none', got {cfg.target_update!r}.")


def run_off_policy(
    algo: str,
    cfg,
    build_fn: Callable,
    seed: int,
    quick: bool,
    progress: bool,
    callback: Callable[[int, TensorDictBase, TensorDictBase], None] | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> tuple[RunResult, Agent]:
    """The replay-buffer loop shared by DQN and C51 (see the module docstring).

    ``callback(frames, minibatch, loss_out)``, if given, is called after every gradient step
    (e.g. to record Q-value estimates for the overestimation experiment). With a ``checkpoint``
    (a :class:`~rlteach.checkpoint.Checkpointer`) the run saves its full state at most every
    ``checkpoint.every_frames`` frames and, if the checkpointer resumes, continues from it (a
    resumed run calls ``callback`` only for the updates it does itself). ``device`` is where the
    networks, the batches and the replay buffer live; ``build_fn`` builds on the CPU and the
    loop moves its loss there.
    """
    device = resolve_device(device)  # PLUMBING: refuse an unknown or absent device first
    if quick:  # PLUMBING
        cfg = replace(
            cfg,
            total_frames=cfg.quick_frames,
            eval_every=min(cfg.eval_every, cfg.quick_frames),
            learning_starts=min(cfg.learning_starts, cfg.quick_frames // 4),
            exploration_frames=min(cfg.exploration_frames, cfg.quick_frames // 2),
        )
    if cfg.target_update not in ("hard", "soft", "none"):  # before anything is built
        raise ValueError(
            f"target_update must be 'hard', 'soft' or 'none', got {cfg.target_update!r}."
        )
    torch.set_num_threads(cfg.torch_threads)  # PLUMBING
    generator = seed_everything(seed)
    env = VecGymEnv(cfg.env_id, cfg.num_envs, seed=seed, device=device)
    with torch.device("cpu"):  # PLUMBING: initialised on the CPU, the same on every device
        actor, loss = build_fn(cfg, env)
        # ALGO: ε-greedy behaviour policy, ε annealed linearly over exploration_frames (EG-1)
        exploration = EGreedyModule(
            env.n_actions, cfg.eps_init, cfg.eps_end, cfg.exploration_frames, seed=seed
        )
    loss.to(device)  # PLUMBING: the networks go where they train, before the optimiser
    policy = TensorDictSequential(actor, exploration).to(device)
    optimizer = torch.optim.Adam(loss.parameters(), lr=cfg.lr)
    target_updater = make_target_updater(cfg, loss)
    buffer = ReplayBuffer(cfg.buffer_size, generator=generator, device=device)
    frames_per_batch = cfg.num_envs * cfg.steps_per_batch
    collector = Collector(env, policy, frames_per_batch, total_frames=cfg.total_frames)
    threshold = SOLVED_THRESHOLDS.get(cfg.env_id, float("inf"))

    result = RunResult(algo=algo, env_id=cfg.env_id, seed=seed)  # PLUMBING
    bar = progress_bar(
        total=cfg.total_frames, desc=f"{algo} {cfg.env_id}", disable=not progress, unit="frame"
    )
    evaluator = Evaluator(
        result, actor, cfg.env_id, cfg.eval_every, threshold, cfg.eval_episodes,
        cfg.stop_on_solve, bar,
    )  # fmt: skip
    checkpoint = as_checkpointer(checkpoint)  # PLUMBING: save / resume everything below
    updater = {} if target_updater is None else {"target_updater": target_updater}
    checkpoint.track(
        policy=actor, loss=loss, optimizer=optimizer, **updater, exploration=exploration,
        exploration_generator=exploration.generator, buffer=buffer, collector=collector,
        evaluator=evaluator, generator=generator,
    )  # fmt: skip
    with skip_missing_pandas_lookup():
        for batch in collector:
            buffer.extend(batch.select(*TRANSITION_KEYS))  # ALGO: store the transitions
            exploration.step(frames_per_batch)  # ALGO: (EG-1) anneal ε
            if collector.frames >= cfg.learning_starts:
                for _ in range(cfg.updates_per_batch):
                    minibatch = buffer.sample(cfg.batch_size)  # ALGO: uniform replay
                    out = loss(minibatch)  # ALGO: (DQN-1..4) or (C51-1..5)
                    optimizer.zero_grad()
                    out["loss"].backward()
                    torch.nn.utils.clip_grad_norm_(loss.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    if target_updater is not None:
                        target_updater.step()  # ALGO: (TGT-1) or (TGT-2)
                    if callback is not None:  # PLUMBING
                        callback(collector.frames, minibatch, out)
            last = collector.frames >= cfg.total_frames  # PLUMBING
            solved = evaluator.after_batch(collector.frames, last=last)
            checkpoint.after_batch(collector.frames, finished=solved or last)  # PLUMBING
            if solved:
                break
    bar.close()
    env.close()
    return result, Agent(actor, policy, loss, exploration, buffer)


def train_agent(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: DQNConfig | None = None,
    callback: Callable | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> tuple[RunResult, Agent]:
    """Train DQN; return the evaluation curve (seconds exclude evaluation) and the agent."""
    return run_off_policy(
        "dqn", cfg or DQNConfig(), build, seed, quick, progress, callback, checkpoint,
        device=device,
    )


def train(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: DQNConfig | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> RunResult:
    """Train DQN; return the evaluation curve (seconds exclude evaluation). With a
    ``checkpoint`` the run is saved and can be resumed (``python -m rlteach train dqn --resume``).
    """
    return train_agent(seed, quick, progress, cfg, checkpoint=checkpoint, device=device)[0]


def train_acrobot(seed: int = 0, quick: bool = False, progress: bool = True) -> RunResult:
    return train(seed, quick, progress, cfg=ACROBOT)


register("dqn-cartpole", "dqn", "CartPole-v1", train)
register("dqn-acrobot", "dqn", "Acrobot-v1", train_acrobot)
register_trainable(
    "dqn", train, {"CartPole-v1": DQNConfig(), "Acrobot-v1": ACROBOT}, resumable=True
)
