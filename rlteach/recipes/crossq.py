"""CrossQ on Pendulum-v1 (Bhatt et al. 2024): SAC's loop without target networks.

What is CrossQ-specific:

* the critics: two Q(s, a) networks with batch renormalisation on the input and after every
  hidden activation (:func:`rlteach.modules.make_crossq_qvalue_network`), wider than the actor;
* the loss, :class:`rlteach.objectives.CrossQLoss`: current and next state-action pairs go
  through the critics as **one** batch, and there is **no target network**, hence no Polyak step;
* Adam with beta1 = 0.5 (the paper's choice for every network, to make the optimiser forget old
  gradients faster), an update-to-data ratio of 1, and a policy step every ``policy_delay``
  critic steps (3, as in the paper).

The loop is :func:`rlteach.recipes._offpolicy.run_offpolicy`, the one SAC uses: it sees that
the loss has no target networks and runs without a target updater. ``train(seed, quick,
progress, cfg)`` returns an :class:`OffPolicyResult` with the curve, ``logs`` (``loss_qvalue``,
``loss_actor``, ``alpha``, ``entropy``) and ``agent``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlteach.envs import GymEnv
from rlteach.modules import make_crossq_qvalue_network, make_normal_actor
from rlteach.objectives import CrossQLoss
from rlteach.objectives._actions import policy_distribution, rsample_and_log_prob
from rlteach.objectives.utils import distance_loss
from rlteach.recipes._offpolicy import (
    MUJOCO_PROTOCOL,
    Agent,
    OffPolicyConfig,
    OffPolicyResult,
    run_offpolicy,
)
from rlteach.recipes.base import Checkpointer
from rlteach.registry import register_trainable


@dataclass(frozen=True)
class CrossQConfig(OffPolicyConfig):
    """CrossQ's hyper-parameters on top of the loop's: the paper's (Bhatt et al. 2024, table 4)
    except the widths and the budget, chosen for Pendulum on 2 CPU cores."""

    total_frames: int = 6_000
    quick_frames: int = 300
    warmup_steps: int = 250
    """uniformly random actions before the first update (the paper: 5,000 on MuJoCo)"""
    eval_every: int = 500
    batch_size: int = 128
    """5 seeds: 128 solved at a median 4,000 steps in 38 s, 256 at 3,500 steps in 48 CPU-s"""
    policy_delay: int = 3
    """critic steps per policy (and temperature) step"""
    lr: float = 1e-3
    adam_betas: tuple[float, float] = (0.5, 0.999)
    """beta1 = 0.5 for critics, actor and temperature (the paper)"""
    num_qvalue_nets: int = 2
    loss_function: str = "l2"
    actor_cells: tuple[int, ...] = (64, 64)
    critic_cells: tuple[int, ...] = (128, 128)
    """the paper's critics are 2 x 2048 on MuJoCo; 128 suffices for Pendulum and halves the
    seconds of 256 (which solved seed 0 at 3,000 steps in 63 CPU-seconds)"""
    renorm_momentum: float = 0.01
    """momentum of the running statistics (flax's 0.99)"""
    renorm_warmup: int = 10_000
    """steps of plain batch norm before the renorm corrections (TorchRL's default)"""
    joint_batch: bool = True
    """False: the ablation :class:`SeparateBatchesCrossQLoss` (two forward passes, each
    normalised with its own batch's statistics) instead of CrossQ's one joint batch"""


class SeparateBatchesCrossQLoss(CrossQLoss):
    """CrossQ's loss with its joint forward pass taken away: an ablation, not in TorchRL.

    :meth:`CrossQLoss.qvalue_loss` sends ``[(s, a); (s', a')]`` through the critics as one batch
    of 2B, so that batch normalisation standardises both halves with the same statistics
    (Bhatt et al. 2024, Sec. 3: the two halves come from different distributions, since ``a'``
    is the current policy's action and ``a`` the replayed one). Here the critics see the two
    halves in two training-mode passes, first ``(s', a')`` (no gradient) and then ``(s, a)``:
    each half is standardised with its own batch's statistics, and the running statistics take in
    both. Everything else (no target network, the soft value, the actor and temperature losses)
    is CrossQ's. The recipe uses it with ``--set joint_batch=false``.

    Where the two differ: during the renormalisation warm-up the critics are plain batch norm,
    and each pass is standardised with its own batch's mean and variance. After it, a
    training-mode pass computes ``(x − ν_B)/σ_B · r + d_BR`` with ``r = σ_B/σ_run`` and
    ``d_BR = (ν_B − ν_run)/σ_run``, which is ``(x − ν_run)/σ_run`` whatever the batch, unless
    ``r`` or ``d_BR`` is clipped (chapter 13): the passes then differ only where a batch's
    statistics are far enough from the running ones for the corrections to clip.
    """

    def qvalue_loss(self, tensordict):
        next_td = tensordict.get("next")
        with torch.no_grad():  # a' ~ pi(.|s'), then Q(s', a') in a batch of its own
            next_action, next_log_prob = rsample_and_log_prob(
                self.actor_network, next_td.select(*self.actor_network.in_keys, strict=False)
            )
            q_next = self.qvalue_network(*self._q_inputs(next_td, next_action)).squeeze(-1)
        q = self.qvalue_network(
            *self._q_inputs(tensordict, tensordict.get(self.tensor_keys.action))
        ).squeeze(-1)  # Q(s, a) in a second batch, with its own statistics
        next_value = q_next.min(0)[0] - self._alpha * next_log_prob
        target = self.value_estimator.value_estimate(
            tensordict, next_value=next_value.unsqueeze(-1)
        ).squeeze(-1)
        loss = distance_loss(q, target.expand_as(q), self.loss_function).sum(0)
        td_error = (q - target).abs().detach().max(0)[0]
        return self._reduce_loss(loss), {"td_error": td_error}


def build(cfg: CrossQConfig, env: GymEnv) -> Agent:
    """Actor, batch-renormalised critics, CrossQLoss and the per-update step."""
    actor = make_normal_actor(  # ALGO: pi(a|s) = TanhNormal(mu(s), sigma(s)) on the action box
        env.observation_dim,
        env.action_dim,
        cfg.actor_cells,
        torch.nn.ReLU,
        low=env.action_low,
        high=env.action_high,
    )
    critics = [  # ALGO: BRN -> Linear -> ReLU -> BRN -> ... -> Linear, no target copies
        make_crossq_qvalue_network(
            env.observation_dim,
            env.action_dim,
            cfg.critic_cells,
            momentum=cfg.renorm_momentum,
            warmup_steps=cfg.renorm_warmup,
        )
        for _ in range(cfg.num_qvalue_nets)
    ]
    loss_class = CrossQLoss if cfg.joint_batch else SeparateBatchesCrossQLoss
    loss = loss_class(
        actor,
        critics,
        num_qvalue_nets=cfg.num_qvalue_nets,
        loss_function=cfg.loss_function,
        action_spec=env.action_dim,
    )
    loss.make_value_estimator("td0", gamma=cfg.gamma)
    loss.to(env.device)  # PLUMBING: where the observations arrive, before the optimisers
    critic_opt = torch.optim.Adam(
        loss.qvalue_network.parameters(), lr=cfg.lr, betas=cfg.adam_betas, fused=True
    )
    actor_opt = torch.optim.Adam(
        loss.actor_network.parameters(), lr=cfg.lr, betas=cfg.adam_betas, fused=True
    )
    alpha_opt = torch.optim.Adam([loss.log_alpha], lr=cfg.lr, betas=cfg.adam_betas, fused=True)
    actor_scalars = {}  # PLUMBING: the latest actor-side values, logged with every update
    # (the loop's checkpoints save them: extras['carry'])

    def update(batch, i):
        # ALGO: critic step on the joint batch [(s, a); (s', a')] (CQ-1)-(CQ-3)
        loss_qvalue, _ = loss.qvalue_loss(batch)
        critic_opt.zero_grad()
        loss_qvalue.backward()
        critic_opt.step()
        if i % cfg.policy_delay == 0 or not actor_scalars:
            # ALGO: policy step (CQ-4) on eval-mode critics, then temperature step (CQ-5)
            loss_actor, meta = loss.actor_loss(batch)
            loss_alpha = loss.alpha_loss(meta["log_prob"])
            actor_opt.zero_grad()
            alpha_opt.zero_grad()
            (loss_actor + loss_alpha).backward()  # disjoint parameters: one backward suffices
            actor_opt.step()
            alpha_opt.step()
            actor_scalars.update(loss_actor=loss_actor.detach(), entropy=-meta["log_prob"].mean())
        return False, {"loss_qvalue": loss_qvalue.detach(), "alpha": loss.temperature.alpha, **actor_scalars}

    def explore(obs):  # ALGO: act by sampling the policy itself (no added noise)
        return policy_distribution(actor, {"observation": obs}).sample()

    return Agent(
        loss=loss,
        act=explore,
        eval_policy=actor,
        update=update,
        extras={
            "actor": actor,
            "optimizers": (critic_opt, actor_opt, alpha_opt),
            "carry": actor_scalars,
        },
    )


def train(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: CrossQConfig | None = None,
    checkpoint: Checkpointer | None = None,
    *,
    device: str | torch.device = "cpu",
) -> OffPolicyResult:
    """Train CrossQ; the result carries the curve, the logs (alpha, entropy, ...) and the agent."""
    return run_offpolicy(
        "crossq", cfg or CrossQConfig(), build, seed, quick, progress, checkpoint, device=device
    )


def mujoco_config(env_id: str) -> CrossQConfig:
    """CrossQ on a MuJoCo task: RL-Zoo 2.9's ``crossq.yml`` for ``Hopper-v4`` /
    ``HalfCheetah-v4`` (``learning_starts: 5000``, learning rate 1e-3, ``policy_delay: 3``,
    actor [256, 256] and critics [2048, 2048]), which are Bhatt et al. (2024)'s settings, with
    their Adam beta1 = 0.5 and batch 256; the budget and evaluation of
    :data:`~rlteach.recipes._offpolicy.MUJOCO_PROTOCOL`. The renormalisation warm-up is
    TorchRL's 10,000 steps, shorter than the run, so that batch renormalisation is active for
    most of it (a 100,000-step warm-up would keep plain batch norm to the end). Two 2048-wide
    critics on a joint batch of 512 cost 0.44 CPU-seconds per update here (AMD EPYC, one thread):
    12 CPU-hours for 100,000 steps, so the book's runs narrow them with
    ``--set critic_cells=256,256`` (chapter 13 says so)."""
    return CrossQConfig(
        env_id=env_id,
        **{**MUJOCO_PROTOCOL, "warmup_steps": 5_000},
        lr=1e-3,
        policy_delay=3,
        actor_cells=(256, 256),
        critic_cells=(2048, 2048),
        renorm_warmup=10_000,
    )


CONFIGS = {
    "Pendulum-v1": CrossQConfig(),
    "Hopper-v5": mujoco_config("Hopper-v5"),
    "HalfCheetah-v5": mujoco_config("HalfCheetah-v5"),
}

register_trainable(
    "crossq", train, CONFIGS, action_spaces=("continuous",), resumable=True,
    bench={"crossq-pendulum": "Pendulum-v1"},
)  # fmt: skip
