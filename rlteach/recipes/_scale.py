"""The protocols of the field-scale runs: MinAtar games and LunarLander-v3 (discrete actions),
MuJoCo's Hopper-v5 and HalfCheetah-v5 (the off-policy recipes).

Each recipe's config for these tasks starts from one of the two dicts below and adds its own
hyper-parameters, with their source, in its module (``dqn.py``, ``c51.py``, ``ppo.py``, ``sac.py``, ...).

* Budgets: at most 1,000,000 environment frames per MinAtar run, 500,000 per LunarLander run. A
  recipe whose batches do not divide the budget takes the largest whole number of batches below
  it (PPO), so that no run goes over.
* Evaluation: the deterministic (greedy) policy, 10 episodes seeded 10000, 10001, ..., every
  50,000 frames on MinAtar and every 25,000 on LunarLander (20 points each), and at the end.
  PPO, whose batches are large, evaluates every whole number of batches instead: 49,152 frames
  (6 batches of 8,192) on MinAtar, 32,768 (2 batches of 16,384) on LunarLander.
* ``stop_on_solve=False``: every run uses its whole budget (MinAtar has no solved threshold;
  LunarLander's 200 is drawn on the curves but does not stop the run).

The three MinAtar games: Breakout and SpaceInvaders, the two the field reports most, and
Asterix: five actions (Breakout has three, SpaceInvaders four), a reward for every treasure
caught, and episodes that end at the first collision (about 70 frames under a random policy),
so evaluations stay cheap while the agent is poor. Freeway was the other candidate; its episodes
last 2,500 frames whatever the agent does (10 evaluation episodes = 25,000 frames, half an
evaluation interval) and its reward is sparse. ``-v1`` is MinAtar's minimal action set (Young & Tian's
paper used the full set of six actions, ``-v0``); sticky actions (probability 0.1) and difficulty
ramping stay at MinAtar's defaults, as in the paper.
"""

from __future__ import annotations

MINATAR_GAMES = ("MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1", "MinAtar/Asterix-v1")

MINATAR_PROTOCOL = dict(
    total_frames=1_000_000,
    eval_every=50_000,
    eval_episodes=10,
    stop_on_solve=False,
    quick_frames=500,
)
"""Budget and evaluation of a MinAtar run (``quick_frames``: the smoke run under quick=True)."""

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

LUNARLANDER_PROTOCOL = dict(
    total_frames=500_000,
    eval_every=25_000,
    eval_episodes=10,
    stop_on_solve=False,
    quick_frames=500,
)
"""Budget and evaluation of a LunarLander-v3 run."""


def whole_batches(budget: int, frames_per_batch: int) -> int:
    """The largest multiple of ``frames_per_batch`` not above ``budget`` (a run's frame count)."""
    return (budget // frames_per_batch) * frames_per_batch
