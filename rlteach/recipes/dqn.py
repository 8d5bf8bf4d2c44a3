"""DQN on a Gymnasium task: one readable replay-buffer training loop (Mnih et al. 2015).

The loop, top to bottom: act ε-greedily in ``num_envs`` copies of the task for
``steps_per_batch`` steps; put the transitions in a replay buffer; once it holds
``learning_starts`` transitions, take ``updates_per_batch`` gradient steps on minibatches drawn
uniformly from it with :class:`rlteach.objectives.DQNLoss`, moving the target network after each
step with :class:`rlteach.updaters.HardUpdate` (copy every N steps) or ``SoftUpdate`` (Polyak);
anneal ε linearly; every ``eval_every`` frames evaluate the greedy policy on 10 episodes with the
clock paused. Double DQN (van Hasselt et al. 2016) is one flag, ``double_dqn``.

Image observations (MinAtar's 10 × 10 × k booleans) need no other loop: :func:`build` picks
MinAtar's convolutional Q-network (Young & Tian, 2019; :mod:`rlteach.modules.conv`) when the
environment gives images, and the replay buffer stores the frames as bool and hands them back as
float32 (:mod:`rlteach.buffers`). The per-task configs are at the end of this file: CartPole and
Acrobot (tuned here), MinAtar (Young & Tian's settings) and LunarLander-v3 (RL-Zoo's).

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
and ``train_agent(seed, quick, progress, cfg, callback) -> (RunResult, TrainedDQN)``, which also hands
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

from rlteach.buffers import ReplayBuffer
from rlteach.checkpoint import Checkpointer, as_checkpointer
from rlteach.envs import Collector, VecGymEnv
from rlteach.modules import (
    EGreedyModule,
    make_minatar_qvalue_network,
    make_qvalue_actor,
    make_qvalue_network,
)
from rlteach.objectives import DQNLoss, LossModule
from rlteach.progress import progress_bar
from rlteach.recipes._offpolicy import (  # noqa: F401  (TRANSITION_KEYS: read here too)
    TRANSITION_KEYS,
    Agent,
    UpdateLog,
    offpolicy_loop,
)
from rlteach.recipes._scale import LUNARLANDER_PROTOCOL, MINATAR_GAMES, MINATAR_PROTOCOL
from rlteach.recipes.base import (
    Evaluator,
    RunResult,
    resolve_device,
    seed_everything,
)
from rlteach.registry import register_trainable
from rlteach.tasks import solved_threshold
from rlteach.updaters import HardUpdate, SoftUpdate


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
    optimizer: str = "adam"
    """"adam" or "rmsprop" (centred or not, see rmsprop_centered)"""
    optim_eps: float = 1e-8
    """the optimiser's epsilon (Adam's, or RMSprop's added to the root of the average)"""
    rmsprop_alpha: float = 0.99
    """RMSprop's decay of the squared-gradient average (and of the gradient's, when centred)"""
    rmsprop_centered: bool = False
    gamma: float = 0.99
    loss_function: str = "smooth_l1"
    """"l2", "l1" or "smooth_l1" (the Huber loss of the DQN paper)"""
    max_grad_norm: float | None = 10.0
    """clip the gradient's global norm to this; None: no clipping"""
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
    exploration_delay: int = 0
    """frames at ε = eps_init before the fall starts (MinAtar's DQN: the learning_starts frames)"""
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
class TrainedDQN:
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
    """The greedy Q actor and DQNLoss with its TD(0) target at the config's gamma.

    An MLP of ``num_cells`` for flat observations; MinAtar's convolutional network for images.
    """
    if env.is_pixels:
        qnet = make_minatar_qvalue_network(env.observation_shape, env.n_actions)
    else:
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


def make_optimizer(cfg, params) -> torch.optim.Optimizer:
    """Adam, or RMSprop as Young & Tian's MinAtar DQN uses it (centred, alpha and eps given)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.optim_eps)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=cfg.lr, alpha=cfg.rmsprop_alpha, eps=cfg.optim_eps,
            centered=cfg.rmsprop_centered,
        )  # fmt: skip
    raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {cfg.optimizer!r}.")


def run_value_based(
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
) -> tuple[RunResult, TrainedDQN]:
    """DQN's and C51's set-up around the off-policy loop (see the module docstring).

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
            exploration_delay=min(cfg.exploration_delay, cfg.quick_frames // 4),
        )
    if cfg.target_update not in ("hard", "soft", "none"):  # before anything is built
        raise ValueError(
            f"target_update must be 'hard', 'soft' or 'none', got {cfg.target_update!r}."
        )
    if cfg.optimizer not in ("adam", "rmsprop"):
        raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {cfg.optimizer!r}.")
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
    optimizer = make_optimizer(cfg, loss.parameters())
    target_updater = make_target_updater(cfg, loss)
    # ALGO: frames stored as the env gives them (MinAtar: bool), sampled as float32
    buffer = ReplayBuffer(
        cfg.buffer_size,
        generator=generator,
        device=device,
        as_float=("observation", ("next", "observation")),
    )
    frames_per_batch = cfg.num_envs * cfg.steps_per_batch
    collector = Collector(env, policy, frames_per_batch, total_frames=cfg.total_frames)

    def update(minibatch: TensorDictBase, i: int):
        out = loss(minibatch)  # ALGO: (DQN-1..4) or (C51-1..5)
        optimizer.zero_grad()
        out["loss"].backward()
        if cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(loss.parameters(), cfg.max_grad_norm)
        optimizer.step()
        return True, out  # the target network's updater counts every step (TGT-1, TGT-2)

    def anneal(frames: int) -> None:  # ALGO: (EG-1) ε falls over the frames past the delay
        exploration.step(min(frames_per_batch, frames - cfg.exploration_delay))

    agent = Agent(loss, act=policy, eval_policy=actor, update=update, after_collect=anneal)

    result = RunResult(algo=algo, env_id=cfg.env_id, seed=seed)  # PLUMBING
    bar = progress_bar(  # PLUMBING
        total=cfg.total_frames, desc=f"{algo} {cfg.env_id}", disable=not progress, unit="frame"
    )
    evaluator = Evaluator(
        result, actor, cfg.env_id, cfg.eval_every, solved_threshold(cfg.env_id),
        cfg.eval_episodes, cfg.stop_on_solve, bar,
    )  # fmt: skip
    checkpoint = as_checkpointer(checkpoint)  # PLUMBING: save / resume everything below
    updater = {} if target_updater is None else {"target_updater": target_updater}  # PLUMBING
    checkpoint.track(  # PLUMBING
        policy=actor, loss=loss, optimizer=optimizer, **updater, exploration=exploration,
        exploration_generator=exploration.generator, buffer=buffer, collector=collector,
        evaluator=evaluator, generator=generator,
    )  # fmt: skip
    with skip_missing_pandas_lookup():
        offpolicy_loop(
            agent, collector, buffer, UpdateLog({}, None, {}), evaluator, checkpoint,
            target_updater, learning_starts=cfg.learning_starts,
            updates_per_batch=cfg.updates_per_batch, batch_size=cfg.batch_size,
            total_frames=cfg.total_frames, callback=callback,
        )  # fmt: skip
    bar.close()  # PLUMBING
    env.close()  # PLUMBING
    return result, TrainedDQN(actor, policy, loss, exploration, buffer)


def train_agent(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: DQNConfig | None = None,
    callback: Callable | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> tuple[RunResult, TrainedDQN]:
    """Train DQN; return the evaluation curve (seconds exclude evaluation) and the agent."""
    return run_value_based(
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


def minatar_config(env_id: str) -> DQNConfig:
    """DQN on a MinAtar game: Young & Tian (2019), "MinAtar: An Atari-Inspired Testbed for
    Thorough and Reproducible Reinforcement Learning Experiments", as set in their reference
    code, ``examples/dqn.py`` of github.com/kenjyoung/MinAtar (read at its 2024-12 head; the
    constants are those of the 2019 first commit): replay of 100,000 transitions, minibatches of
    32, one update per frame, the Huber (smooth L1) loss, γ = 0.99, the target network copied
    every 1,000 updates, 5,000 frames of uniformly random play before learning, then ε annealed
    linearly from 1.0 to 0.1 over 100,000 frames, and centred RMSprop with step size 2.5e-4,
    decay 0.95 and ε 0.01 (torch.optim.RMSprop(alpha=0.95, centered=True, eps=0.01), no momentum:
    the code's unused GRAD_MOMENTUM constant was deleted in 2024, and torch's centred RMSprop
    decays the gradient's average with the same 0.95), no gradient clipping, their network
    (:mod:`rlteach.modules.conv`). The paper's own hyper-parameter table was not found here, so
    the code is the source. Departures: ``-v1`` (minimal action set; the paper used all six
    actions), 1,000,000 frames instead of 5,000,000, and the evaluation of
    :mod:`rlteach.recipes._scale`. Double DQN is the same config with ``double_dqn=True``."""
    return DQNConfig(
        env_id=env_id,
        **MINATAR_PROTOCOL,
        num_envs=1,
        steps_per_batch=1,
        updates_per_batch=1,
        buffer_size=100_000,
        batch_size=32,
        learning_starts=5_000,
        lr=2.5e-4,
        optimizer="rmsprop",
        rmsprop_alpha=0.95,
        rmsprop_centered=True,
        optim_eps=0.01,
        gamma=0.99,
        loss_function="smooth_l1",
        max_grad_norm=None,
        target_update="hard",
        target_update_interval=1_000,
        eps_init=1.0,
        eps_end=0.1,
        exploration_frames=100_000,
        exploration_delay=5_000,
    )


LUNARLANDER = DQNConfig(
    env_id="LunarLander-v3",
    **LUNARLANDER_PROTOCOL,
    num_envs=1,
    steps_per_batch=4,
    updates_per_batch=4,
    buffer_size=50_000,
    batch_size=128,
    learning_starts=0,
    lr=6.3e-4,
    gamma=0.99,
    loss_function="smooth_l1",
    max_grad_norm=10.0,
    target_update="hard",
    target_update_interval=250,
    eps_init=1.0,
    eps_end=0.1,
    exploration_frames=12_000,
    num_cells=(256, 256),
)
"""LunarLander-v3: RL-Zoo 2.9's ``hyperparams/dqn.yml`` entry for ``LunarLander-v3`` (learning
rate 6.3e-4, batch 128, buffer 50,000, learning_starts 0, γ 0.99, target_update_interval 250,
train_freq 4 with gradient_steps -1, i.e. 4 updates every 4 frames, exploration_fraction 0.12 of
its 100,000 steps = 12,000 frames down to ε = 0.1, net_arch [256, 256]) over Stable-Baselines3's
DQN defaults (Adam, ReLU, Huber loss, gradient norm clipped at 10, ε from 1.0, one environment).
The target copy every 250 frames is every 250 updates here (one update per frame). Departures:
500,000 frames instead of RL-Zoo's 100,000 (ε still anneals over the first 12,000), and the
evaluation of :mod:`rlteach.recipes._scale`."""


CONFIGS = {
    "CartPole-v1": DQNConfig(),
    "Acrobot-v1": ACROBOT,
    **{game: minatar_config(game) for game in MINATAR_GAMES},
    "LunarLander-v3": LUNARLANDER,
}

register_trainable(
    "dqn", train, CONFIGS, resumable=True,
    bench={
        "dqn-cartpole": "CartPole-v1", "dqn-acrobot": "Acrobot-v1",
        "dqn-lunarlander": "LunarLander-v3",
    },
)  # fmt: skip
