"""CrossQ on Pendulum-v1 (Bhatt et al. 2024): SAC's loop without target networks.

What is CrossQ-specific:

* the critics: two Q(s, a) networks with batch renormalisation on the input and after every
  hidden activation (:func:`rlteach.modules.make_crossq_qvalue_network`), wider than the actor;
* the loss, :class:`rlteach.objectives.CrossQLoss`: current and next state-action pairs go
  through the critics as **one** batch, and there is **no target network**, hence no Polyak step;
* Adam with beta1 = 0.5 (the paper's choice for every network, to make the optimiser forget old
  gradients faster), an update-to-data ratio of 1, and a policy step every ``policy_delay``
  critic steps (3, as in the paper).

The loop is the one of :mod:`rlteach.recipes._offpolicy` (warm-up, act, store, update, evaluate
with the clock paused, CPU seconds logged), written out here without its target-network updater:
``run_offpolicy`` builds a ``SoftUpdate``, which refuses a loss without target networks. ``train(seed, quick, progress, cfg)`` returns an :class:`OffPolicyResult` with the curve,
``logs`` (``loss_qvalue``, ``loss_actor``, ``alpha``, ``entropy``) and ``agent``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch
from tqdm import tqdm

from rlteach.bench import SOLVED_THRESHOLDS, register
from rlteach.buffers import ReplayBuffer
from rlteach.envs import GymEnv
from rlteach.modules import make_crossq_qvalue_network, make_normal_actor
from rlteach.objectives import CrossQLoss
from rlteach.objectives._actions import policy_distribution
from rlteach.recipes._offpolicy import Agent, OffPolicyConfig, OffPolicyResult, _transition
from rlteach.recipes.base import Evaluator, seed_everything


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
    loss = CrossQLoss(
        actor,
        critics,
        num_qvalue_nets=cfg.num_qvalue_nets,
        loss_function=cfg.loss_function,
        action_spec=env.action_dim,
    )
    loss.make_value_estimator("td0", gamma=cfg.gamma)
    critic_opt = torch.optim.Adam(
        loss.qvalue_network.parameters(), lr=cfg.lr, betas=cfg.adam_betas, fused=True
    )
    actor_opt = torch.optim.Adam(
        loss.actor_network.parameters(), lr=cfg.lr, betas=cfg.adam_betas, fused=True
    )
    alpha_opt = torch.optim.Adam([loss.log_alpha], lr=cfg.lr, betas=cfg.adam_betas, fused=True)
    actor_scalars = {}  # PLUMBING: the latest actor-side values, logged with every update

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
        return False, {"loss_qvalue": loss_qvalue.detach(), "alpha": loss._alpha, **actor_scalars}

    def explore(obs):  # ALGO: act by sampling the policy itself (no added noise)
        return policy_distribution(actor, {"observation": obs}).sample()

    return Agent(
        loss=loss,
        act=explore,
        eval_policy=actor,
        update=update,
        extras={"actor": actor, "optimizers": (critic_opt, actor_opt, alpha_opt)},
    )


def train(
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    cfg: CrossQConfig | None = None,
) -> OffPolicyResult:
    """Train CrossQ; the result carries the curve, the logs (alpha, entropy, ...) and the agent.

    The loop of :func:`rlteach.recipes._offpolicy.run_offpolicy` minus the target updater.
    """
    cfg = cfg or CrossQConfig()
    if quick:  # PLUMBING: the small budget of RLTEACH_QUICK=1
        budget = cfg.quick_frames
        cfg = replace(
            cfg,
            total_frames=budget,
            warmup_steps=min(cfg.warmup_steps, budget // 2),
            eval_every=min(cfg.eval_every, budget),
        )
    torch.set_num_threads(cfg.torch_threads)  # PLUMBING
    generator = seed_everything(seed)
    env = GymEnv(cfg.env_id, seed=seed)
    agent = build(cfg, env)
    buffer = ReplayBuffer(cfg.buffer_size, generator=generator)

    result = OffPolicyResult(algo="crossq", env_id=cfg.env_id, seed=seed, agent=agent)  # PLUMBING
    threshold = SOLVED_THRESHOLDS.get(cfg.env_id, float("inf"))
    bar = tqdm(total=cfg.total_frames, desc=f"crossq {cfg.env_id}", disable=not progress)
    evaluator = Evaluator(
        result,
        agent.eval_policy,
        cfg.env_id,
        cfg.eval_every,
        threshold,
        cfg.eval_episodes,
        cfg.stop_on_solve,
        bar,
    )
    sums: dict[str, float] = {}  # PLUMBING: running sums of the logged scalars
    episode_return, n_updates = 0.0, 0

    # as in run_offpolicy: the Gymnasium environment stepped on plain tensors
    gym_env = env.env
    gym_env.action_space.seed(seed)
    cpu_start = time.process_time()
    obs = torch.as_tensor(gym_env.reset(seed=seed)[0], dtype=torch.float32)
    for step in range(1, cfg.total_frames + 1):
        # ALGO: act (uniformly at random during the warm-up) and store the transition
        if step <= cfg.warmup_steps:
            action = torch.as_tensor(gym_env.action_space.sample(), dtype=torch.float32)
        else:
            with torch.no_grad():
                action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = gym_env.step(action.numpy())
        next_obs = torch.as_tensor(next_obs, dtype=torch.float32)
        buffer.extend(_transition(obs, action, next_obs, reward, terminated, truncated))
        episode_return += float(reward)  # PLUMBING
        if terminated or truncated:
            result.episode_returns.append(episode_return)
            result.episode_steps.append(step)
            episode_return = 0.0
            next_obs = torch.as_tensor(gym_env.reset()[0], dtype=torch.float32)
        obs = next_obs

        # ALGO: learn, updates_per_step gradient steps per environment step; no target network
        if step > cfg.warmup_steps:
            for _ in range(cfg.updates_per_step):
                _, scalars = agent.update(buffer.sample(cfg.batch_size), n_updates)
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
        if solved:
            break
    bar.close()
    gym_env.close()
    return result


register("crossq-pendulum", "crossq", "Pendulum-v1", train)
