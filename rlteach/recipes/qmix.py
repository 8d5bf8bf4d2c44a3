"""QMIX and VDN on the QMIX paper's two-step game: one readable training loop (Rashid et al. 2018).

The experiment of Rashid et al. (2018), Sec. 5: both agents explore uniformly at random
(ε = 1 throughout, as in the paper), transitions go to a replay buffer, and the agents'
Q-networks and the mixer are trained by :class:`rlteach.objectives.QMixerLoss` (TD(0) on the
mixed Q_tot, γ = 0.99, hard target updates). Every ``eval_every`` episodes the greedy
decentralised policy plays the (deterministic) game once. QMIX can represent state 2B's payoff
[[0, 1], [1, 8]] and so learns that going to 2B is worth 8: return 8. VDN's sum cannot, values
2B at about 6.5 and prefers 2A: return 7.

Comment tags separate the algorithm from the plumbing (after CleanRL):
``# ALGO`` lines are the method; ``# PLUMBING`` lines are logging, timing and bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from rlteach._checks import module_device
from rlteach.buffers import ReplayBuffer
from rlteach.checkpoint import Checkpointer, as_checkpointer
from rlteach.envs_multiagent import MultiAgentCollector, TwoStepGame, evaluate_team_return
from rlteach.modules import GreedyAction, MultiAgentMLP, QMixer, VDNMixer
from rlteach.objectives import QMixerLoss
from rlteach.progress import progress_bar
from rlteach.recipes.base import (
    Evaluator,
    RunResult,
    resolve_device,
    seed_everything,
)
from rlteach.registry import register_trainable
from rlteach.updaters import HardUpdate

ENV_ID = "TwoStepGame"
OPTIMAL_RETURN = 8.0  # (B, then B, B): the optimal joint policy
VDN_RETURN = 7.0  # going to 2A: what an additive factorisation settles for


@dataclass(frozen=True)
class QMixConfig:
    """Hyper-parameters of the two-step experiment."""

    mixer: str = "qmix"
    """"qmix" (monotonic hypernetwork mixer) or "vdn" (sum)"""
    episodes: int = 5_000
    """training episodes (2 steps each); the paper trains for 5000"""
    quick_episodes: int = 2_000
    """the budget under RLTEACH_QUICK=1"""
    num_envs: int = 50
    """game copies played side by side: one batch = num_envs episodes"""
    epsilon: float = 1.0
    """exploration rate; 1.0 = uniform random actions throughout, as in the paper"""
    gamma: float = 0.99
    lr: float = 5e-3
    batch_size: int = 64
    updates_per_batch: int = 8
    buffer_size: int = 2_000
    """transitions kept (the most recent)"""
    target_update_interval: int = 20
    """hard target update every this many gradient steps"""
    num_cells: tuple[int, ...] = (32,)
    mixing_embed_dim: int = 8
    eval_every: int = 250
    """episodes between greedy evaluations"""
    torch_threads: int = 1
    env_id: str = ENV_ID
    """the task's name (for ``python -m rlteach train``)"""
    total_frames: int | None = None
    """budget in frames (team steps, 2 per episode and copy) instead of ``episodes``; when set
    (``python -m rlteach train`` sets it), ``eval_every`` counts frames too"""
    eval_episodes: int = 1
    """greedy episodes per evaluation (the game is deterministic: once is enough)"""
    stop_on_solve: bool = False
    """stop once the greedy return reaches the optimum 8 (the command line's
    ``--stop-when-solved``)"""


class EpsilonGreedy(nn.Module):
    """Each agent acts greedily, or uniformly at random with probability ε (independently)."""

    def __init__(self, actor: TensorDictModule, n_actions: int, epsilon: float, group="agents"):
        super().__init__()
        self.actor, self.n_actions, self.epsilon, self.group = actor, n_actions, epsilon, group

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        td = self.actor(td)
        greedy = td.get((self.group, "action"))
        explore = torch.rand(greedy.shape, device=greedy.device) < self.epsilon
        random = torch.randint(self.n_actions, greedy.shape, device=greedy.device)
        td.set((self.group, "action"), torch.where(explore, random, greedy))
        return td


def build(cfg: QMixConfig, env: TwoStepGame):
    """Shared per-agent Q-network (its input carries the agent id), greedy head, mixer, loss."""
    qnet = TensorDictModule(
        MultiAgentMLP(
            env.observation_dim,
            env.n_actions,
            env.n_agents,
            centralized=False,
            share_params=True,
            num_cells=cfg.num_cells,
            activation_class=nn.ReLU,
        ),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "action_value")],
    )
    greedy = TensorDictModule(
        GreedyAction(),
        in_keys=[("agents", "action_value")],
        out_keys=[("agents", "action"), ("agents", "chosen_action_value")],
    )
    actor = TensorDictSequential(qnet, greedy)
    if cfg.mixer == "qmix":
        mixer = TensorDictModule(
            QMixer((env.state_dim,), cfg.mixing_embed_dim, env.n_agents),
            in_keys=[("agents", "chosen_action_value"), "state"],
            out_keys=["chosen_action_value"],
        )
    elif cfg.mixer == "vdn":
        mixer = TensorDictModule(
            VDNMixer(env.n_agents),
            in_keys=[("agents", "chosen_action_value")],
            out_keys=["chosen_action_value"],
        )
    else:
        raise ValueError(f"Unknown mixer {cfg.mixer!r}: choose 'qmix' or 'vdn'.")
    loss = QMixerLoss(actor, mixer, action_space="categorical", delay_value=True)
    loss.make_value_estimator("td0", gamma=cfg.gamma)
    return actor, mixer, loss


@torch.no_grad()
def q_tot_table(loss: QMixerLoss) -> dict[str, torch.Tensor]:
    """The learned Q_tot(s, u1, u2) of each state as a 2×2 table (rows: agent 1's action).

    The quantity whose learned values Rashid et al. (2018) tabulate for the two-step game
    (computed on the loss's device).
    """
    device = module_device(loss)
    game = TwoStepGame(num_envs=4, device=device)
    td = game.reset()
    joint = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], device=device)
    tables = {}
    for index, name in enumerate(["1", "2A", "2B"]):
        state = torch.full((4,), index, dtype=torch.int64, device=device)
        td = game.root(state)
        td = loss.local_value_network(td)
        q = td["agents", "action_value"]  # [4, 2, 2]
        chosen = q.gather(-1, joint.unsqueeze(-1))  # [4, 2, 1]
        td.set(("agents", "chosen_action_value"), chosen)
        tables[name] = loss.mixer_network(td)["chosen_action_value"].view(2, 2)
    return tables



@torch.no_grad()
def utility_tables(loss: QMixerLoss) -> dict[str, torch.Tensor]:
    """Each agent's learned utility Q_i(h^i, u^i) in each state, [n_agents, n_actions] per state.

    Row i is agent i; column u its action (0 = A, 1 = B). With VDN, Q_tot of a joint action is the
    sum of the two agents' entries (computed on the loss's device).
    """
    device = module_device(loss)
    game = TwoStepGame(num_envs=1, device=device)
    tables = {}
    for index, name in enumerate(["1", "2A", "2B"]):
        td = game.root(torch.full((1,), index, dtype=torch.int64, device=device))
        tables[name] = loss.local_value_network(td)["agents", "action_value"][0]  # [2, 2]
    return tables

def train(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: QMixConfig | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> RunResult:
    """Train QMIX (or VDN) on the two-step game; the curve holds the greedy policy's return.

    With a ``checkpoint`` (a :class:`~rlteach.checkpoint.Checkpointer`) the run saves its full
    state (networks and targets, optimiser, target updater, replay buffer, collector with the
    game's state, evaluation history) after each due batch and, if the checkpointer resumes,
    continues from it bit-identically. ``device`` is where the networks, the batches and the
    replay buffer live.
    """
    device = resolve_device(device)  # PLUMBING: refuse an unknown or absent device first
    cfg = cfg or QMixConfig()
    if quick:
        cfg = replace(cfg, episodes=cfg.quick_episodes)
    torch.set_num_threads(cfg.torch_threads)  # PLUMBING
    seed_everything(seed)
    env = TwoStepGame(cfg.num_envs, seed=seed, device=device)
    with torch.device("cpu"):  # PLUMBING: initialised on the CPU, the same on every device
        actor, _, loss = build(cfg, env)
    loss.to(device)  # PLUMBING: the networks go where they train, before the optimiser
    explorer = EpsilonGreedy(actor, env.n_actions, cfg.epsilon)
    collector = MultiAgentCollector(env, explorer, steps_per_batch=2)  # 2 steps = 1 episode each
    buffer = ReplayBuffer(cfg.buffer_size, seed=seed, device=device)
    optimizer = torch.optim.Adam(loss.parameters(), lr=cfg.lr)
    target_updater = HardUpdate(loss, value_network_update_interval=cfg.target_update_interval)
    eval_env = TwoStepGame(cfg.eval_episodes, device=device)  # deterministic: every copy plays the same

    result = RunResult(algo=cfg.mixer, env_id=ENV_ID, seed=seed)  # PLUMBING
    if cfg.total_frames is None:  # PLUMBING: budget in frames, 2 per episode
        total, every = 2 * cfg.episodes, 2 * cfg.eval_every
    else:
        total, every = cfg.total_frames, cfg.eval_every
    bar = progress_bar(total=total, desc=cfg.mixer.upper(), disable=not progress, unit="frame")
    evaluator = Evaluator(  # PLUMBING: the greedy policy's return every `every` frames
        result,
        actor,
        ENV_ID,
        every,
        OPTIMAL_RETURN if cfg.mixer == "qmix" else VDN_RETURN,
        stop_on_solve=cfg.stop_on_solve,
        bar=bar,
        evaluate=lambda: evaluate_team_return(actor, eval_env),
    )
    checkpoint = as_checkpointer(checkpoint)  # PLUMBING: save / resume everything below
    checkpoint.track(
        policy=actor,
        loss=loss,
        optimizer=optimizer,
        target_updater=target_updater,
        buffer=buffer,
        collector=collector,
        evaluator=evaluator,
    )
    while collector.frames < total:
        buffer.extend(collector.rollout())  # ALGO: ε-greedy experience (ε = 1: uniform)
        for _ in range(cfg.updates_per_batch):
            batch = buffer.sample(cfg.batch_size)
            out = loss(batch)  # ALGO: (QMIX-L1)-(QMIX-L3), TD(0) on Q_tot
            optimizer.zero_grad()
            out["loss"].backward()
            optimizer.step()
            target_updater.step()  # ALGO: θ⁻ ← θ every target_update_interval steps
        last = collector.frames >= total
        solved = evaluator.after_batch(collector.frames, last=last)  # PLUMBING: clock paused
        done = solved or last
        checkpoint.after_batch(collector.frames, finished=done)  # PLUMBING
        if solved:
            break
    bar.close()
    result.q_tot = q_tot_table(loss)  # PLUMBING: for the chapter's table
    result.utilities = utility_tables(loss)  # PLUMBING: the per-agent tables too
    return result


def train_vdn(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: QMixConfig | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> RunResult:
    cfg = cfg or QMixConfig(mixer="vdn")
    return train(seed, quick, progress, cfg=cfg, checkpoint=checkpoint, device=device)


# Thresholds: QMIX must find the optimal return 8; VDN "solves" its own task at 7, the best an
# additive factorisation can do here (its bench row shows it never reaches 8).
# The command line counts frames (team steps): 5,000 episodes = 10,000 frames, evaluated every
# 500 frames (250 episodes), as the bench's run.
_CLI = QMixConfig(total_frames=10_000, eval_every=500)
register_trainable(
    "qmix", train, {ENV_ID: _CLI}, action_spaces=(), resumable=True,
    bench={"qmix-twostep": ENV_ID}, threshold=OPTIMAL_RETURN,
)  # fmt: skip
register_trainable(
    "vdn", train_vdn, {ENV_ID: replace(_CLI, mixer="vdn")}, action_spaces=(), resumable=True,
    bench={"vdn-twostep": ENV_ID}, threshold=VDN_RETURN,
)  # fmt: skip
