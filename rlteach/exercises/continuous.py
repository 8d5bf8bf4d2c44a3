r"""Checkers for the exercises of the continuous-control chapters (DDPG, TD3, SAC, REDQ, CrossQ).

===================================  ============================================  =========
checker                              your function                                 chapter
===================================  ============================================  =========
:func:`check_soft_update`            ``fn(target, online, tau) -> new_target``     09
:func:`check_target_smoothing`       ``fn(next_action, noise, noise_clip, low,     10
                                     high) -> smoothed_next_action``
:func:`check_td3_target`             ``fn(reward, next_q1, next_q2, done,          10
                                     terminated, gamma) -> y``
:func:`check_tanh_normal_log_prob`   ``fn(loc, scale, pre_tanh) -> log_prob``      11
:func:`check_redq_target`            ``fn(reward, next_q, subset, next_log_prob,   12
                                     alpha, terminated, gamma) -> y``
:func:`check_batch_renorm`           ``fn(x, running_mean, running_var, r_max,     13
                                     d_max, eps) -> y``
===================================  ============================================  =========

The references are rlteach's own code, run on inputs built so that the quantity of the exercise
can be read off exactly: the soft update is a :class:`rlteach.updaters.SoftUpdate` step on a
:class:`rlteach.objectives.DDPGLoss` whose critic is one parameter vector; the TD3 target action
and target come out of :class:`rlteach.objectives.TD3Loss` with linear critics that return one
coordinate of their input; the squashed log-density is :class:`rlteach.modules.TanhNormal`'s;
the REDQ target is :class:`rlteach.objectives.REDQLoss`'s on an ensemble of critics that return
the given Q-values; the batch renormalisation is :class:`rlteach.modules.BatchRenorm1d` in
training mode. Each checker also knows the mistakes its chapter warns about (a soft update with
tau and 1 - tau swapped, the maximum of two critics, a tanh Jacobian that overflows, the minimum
over the whole ensemble, an unbiased batch variance...) and names them when an answer matches one.

Shapes: a target's inputs and output keep a trailing dim of size 1, as the networks write them:
``reward``, ``done``, ``terminated``, ``next_q1``, ``next_log_prob`` and ``y`` are ``[B, 1]``,
an ensemble's Q-values ``[N, B, 1]``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import partial

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from rlteach.exercises.checks import ExerciseError, _Case, _col, _run
from rlteach.modules import BatchRenorm1d, TanhNormal, make_normal_actor
from rlteach.modules import make_state_action_value_network as _q_net
from rlteach.objectives import DDPGLoss, REDQLoss, TD3Loss
from rlteach.objectives.functional import td_target
from rlteach.updaters import SoftUpdate

__all__ = [
    "check_soft_update",
    "check_target_smoothing",
    "check_td3_target",
    "check_tanh_normal_log_prob",
    "check_redq_target",
    "check_batch_renorm",
]

_TOL = dict(atol=1e-4, rtol=1e-4)  # check_close's default tolerances


def _close(a, b) -> bool:
    return a.shape == b.shape and torch.allclose(a.double(), b.double(), **_TOL)


def _run_each(checker: str, fn: Callable, output: str, cases: list[_Case], inspect, quiet: bool):
    """``_run`` one case at a time, with ``inspect(case, answer)`` looking at the answer first:
    it may raise a more specific :class:`ExerciseError` than the generic comparison would."""
    for case in cases:
        _run(checker, fn, output, [case], pick=partial(inspect, case), quiet=True)
    if not quiet:
        print(f"✓ {checker}: {len(cases)} cases agree with rlteach's reference.")


def _flags(values) -> torch.Tensor:
    return _col(values, torch.bool)


# ------------------------------------------------------------------ chapter 9: soft update


class _Vector(nn.Module):
    """A "critic" that is nothing but one parameter vector (its output is irrelevant here)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(size))

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return (observation * 0).sum(-1, keepdim=True) + self.theta.sum()


def _soft_update_reference(target: torch.Tensor, online: torch.Tensor, tau: float):
    """One :class:`SoftUpdate` step (TGT-1) of a DDPGLoss whose critic is the vector ``online``
    and whose target critic is the vector ``target``."""
    critic = TensorDictModule(
        _Vector(target.numel()), in_keys=["observation", "action"], out_keys=["state_action_value"]
    )
    actor = TensorDictModule(nn.Linear(1, 1), in_keys=["observation"], out_keys=["action"])
    loss = DDPGLoss(actor, critic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tau > 0.5 is allowed here, SoftUpdate only warns
        updater = SoftUpdate(loss, tau=tau)
    ((p, p_target),) = list(updater.pairs(trainable_only=True))
    with torch.no_grad():
        p.copy_(online.flatten())
        p_target.copy_(target.flatten())
    updater.step()
    return p_target.detach().clone().reshape(target.shape)


def check_soft_update(fn: Callable, quiet: bool = False) -> None:
    r"""``fn(target, online, tau)`` → the target network's new parameters after one Polyak step,
    :math:`\theta' \leftarrow (1 - \tau)\,\theta' + \tau\,\theta` (chapter 9, eq-ddpg-soft;
    ``(TGT-1)`` in ``rlteach/updaters.py``).

    ``target`` :math:`\theta'` and ``online`` :math:`\theta`: ``[P]`` (the flattened parameters),
    ``tau``: a float in (0, 1). Returns ``[P]``; the reference is one
    :meth:`rlteach.updaters.SoftUpdate.step`. Example::

        def my_soft_update(target, online, tau):
            return (1 - tau) * target + tau * online

        check_soft_update(my_soft_update)
    """
    g = torch.Generator().manual_seed(9)
    inputs = [
        (
            "θ' = (0, 0, 4), θ = (1, 2, 0), τ = 0.25",
            torch.tensor([0.0, 0.0, 4.0]),
            torch.tensor([1.0, 2.0, 0.0]),
            0.25,
        ),
        (
            "six random weights, τ = 0.005 (the recipe's scale)",
            torch.randn(6, generator=g),
            torch.randn(6, generator=g),
            0.005,
        ),
        ("τ = 0.9: a fast target", torch.tensor([1.0, -1.0]), torch.tensor([-3.0, 5.0]), 0.9),
    ]
    cases = []
    for label, target, online, tau in inputs:
        cases.append(
            _Case(
                label,
                (target, online, tau),
                _soft_update_reference(target, online, tau),
                hint="θ' ← (1 − τ) θ' + τ θ (eq-ddpg-soft): the target keeps 1 − τ of itself and "
                "takes τ of the online network.",
                mistakes=[
                    (
                        "τ and 1 − τ are swapped: (1 − τ) θ + τ θ' keeps only τ of the target, so "
                        "the target follows the online network almost at once",
                        (1 - tau) * online + tau * target,
                    ),
                    (
                        "a hard copy θ' ← θ: that is DQN's update every C steps (TGT-2), not "
                        "Polyak averaging",
                        online.clone(),
                    ),
                    ("the target did not move: return the updated θ'", target.clone()),
                    (
                        "the (1 − τ) factor on θ' is missing: θ' + τ θ grows without bound",
                        target + tau * online,
                    ),
                ],
            )
        )
    _run("check_soft_update", fn, "new target", cases, quiet=quiet)


# ------------------------------------------------------------------- chapter 10: TD3


def _td3_value_metadata(
    obs_dim, action_dim, critic_weights, low, high, batch, *, noise=None, noise_clip=0.5, gamma=0.99
):
    """TD3Loss.value_loss's metadata on a batch built from ``batch`` (a dict of next-step
    entries), with an identity target actor (``mu'(s') = s'``) when ``obs_dim == action_dim``,
    else a zero actor, and two linear critics with the given weights ``[2, obs + action]``.

    ``noise`` (``[B, A]``, the unclipped ``sigma xi``) is fed to TD3Loss's own draw: the loss
    draws ``randn_like(action) * policy_noise``; with policy_noise 1 and the global generator
    replaced for the call, that draw is ``noise`` exactly.
    """
    if obs_dim == action_dim:
        actor_module: nn.Module = nn.Identity()
    else:
        actor_module = nn.Linear(obs_dim, action_dim)
        nn.init.zeros_(actor_module.weight)
        nn.init.zeros_(actor_module.bias)
    actor = TensorDictModule(actor_module, in_keys=["observation"], out_keys=["action"])
    critics = []
    for w in critic_weights:
        net = _q_net(obs_dim, action_dim, num_cells=())
        linear = net.module.layers[0]
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(w, dtype=torch.float32).reshape(1, -1))
            linear.bias.zero_()
        critics.append(net)
    loss = TD3Loss(
        actor,
        critics,
        bounds=(low, high),
        policy_noise=0.0 if noise is None else 1.0,
        noise_clip=noise_clip,
    )
    loss.make_value_estimator("td0", gamma=gamma)
    n = batch["reward"].shape[0]
    low_t = torch.as_tensor(low, dtype=torch.float32).expand(action_dim)
    td = TensorDict(
        {
            "observation": torch.zeros(n, obs_dim),
            "action": low_t.expand(n, action_dim).clone(),  # inside the bounds
            "next": {k: v.clone() for k, v in batch.items()},
        },
        [n],
    )
    if noise is None:
        return loss.value_loss(td)[1]
    with torch.random.fork_rng():
        real_randn_like = torch.randn_like
        try:
            torch.randn_like = lambda x, **kw: noise.to(x.dtype).clone()
            return loss.value_loss(td)[1]
        finally:
            torch.randn_like = real_randn_like


def _smoothed_action_reference(next_action, noise, noise_clip, low, high):
    """(TD3-1) as TD3Loss computes it: read a' coordinate by coordinate from next_state_value,
    with both critics equal to the coordinate."""
    batch, action_dim = next_action.shape
    flags = torch.zeros(batch, 1, dtype=torch.bool)
    columns = []
    for j in range(action_dim):
        w = torch.zeros(2 * action_dim)
        w[action_dim + j] = 1.0  # Q(s', a') = a'_j
        meta = _td3_value_metadata(
            action_dim,
            action_dim,
            [w, w],
            low,
            high,
            {
                "observation": next_action,
                "reward": torch.zeros(batch, 1),
                "done": flags,
                "terminated": flags,
            },
            noise=noise,
            noise_clip=noise_clip,
        )
        columns.append(meta["next_state_value"])
    return torch.stack(columns, -1)


def _smoothing_inspect(case: _Case, got):
    got_t = got if isinstance(got, torch.Tensor) else None
    next_action, noise, c, low, high = case.args
    if got_t is not None and got_t.shape == case.expected.shape and torch.isfinite(got_t).all():
        low_t = torch.as_tensor(low, dtype=got_t.dtype).expand_as(got_t)
        high_t = torch.as_tensor(high, dtype=got_t.dtype).expand_as(got_t)
        outside = (got_t < low_t - 1e-5) | (got_t > high_t + 1e-5)
        if outside.any() and not _close(got_t, case.expected):
            idx = outside.nonzero()[0].tolist()
            raise ExerciseError(
                f"smoothed action (case '{case.label}')[{idx[0]}, {idx[1]}] is "
                f"{got_t[tuple(idx)].item():.4g}, outside the action box [{low_t[tuple(idx)]:.4g}, "
                f"{high_t[tuple(idx)]:.4g}]: the environment cannot take that action, so the "
                f"critic never learned its value. Clip the sum μ'(s') + clip(ε, −c, c) to [low, high] "
                f"last (eq-td3-smoothing): clipping μ'(s') first and adding the noise after, or "
                f"not clipping at all, can leave the box."
            )
    return got


def check_target_smoothing(fn: Callable, quiet: bool = False) -> None:
    r"""``fn(next_action, noise, noise_clip, low, high)`` → TD3's smoothed target action
    :math:`\tilde a' = \mathrm{clip}\big(\mu'(s') + \mathrm{clip}(\varepsilon, -c, c),\
    a_{low}, a_{high}\big)` (chapter 10, eq-td3-smoothing; ``(TD3-1)`` in
    ``rlteach/objectives/td3.py``).

    ``next_action`` :math:`\mu'(s')` and ``noise`` :math:`\varepsilon = \tilde\sigma\xi` (already
    scaled, not yet clipped): ``[B, A]``; ``noise_clip`` :math:`c`: a float; ``low``, ``high``:
    floats or ``[A]`` tensors. Returns ``[B, A]``. The reference is the action that
    :class:`rlteach.objectives.TD3Loss` feeds its target critics. Example::

        def my_smoothing(next_action, noise, noise_clip, low, high):
            noise = noise.clamp(-noise_clip, noise_clip)
            return torch.clamp(next_action + noise, low, high)

        check_target_smoothing(my_smoothing)
    """
    g = torch.Generator().manual_seed(10)
    inputs = [
        (
            "Pendulum's box [-2, 2], c = 0.5",
            torch.tensor([[0.0], [1.9], [-1.0], [-1.8], [0.3]]),
            torch.tensor([[0.2], [0.3], [0.9], [-0.6], [-0.4]]),
            0.5,
            -2.0,
            2.0,
        ),
        (
            "a box [-1, 1]² with actions on its edges, c = 0.3",
            torch.tensor([[1.0, -1.0], [0.9, 0.0], [-0.95, 0.5]]),
            torch.tensor([[0.1, -0.2], [-0.5, 0.25], [0.4, 0.4]]),
            0.3,
            -1.0,
            1.0,
        ),
        (
            "per-dimension bounds [0, 1] × [-3, 3], c = 0.5",
            torch.rand(4, 2, generator=g) * torch.tensor([1.2, 6.0]) - torch.tensor([0.1, 3.0]),
            torch.randn(4, 2, generator=g) * 0.6,
            0.5,
            torch.tensor([0.0, -3.0]),
            torch.tensor([1.0, 3.0]),
        ),
    ]
    cases = []
    for label, mu, noise, c, low, high in inputs:
        clipped = noise.clamp(-c, c)
        lo, hi = torch.as_tensor(low), torch.as_tensor(high)
        cases.append(
            _Case(
                label,
                (mu, noise, c, low, high),
                _smoothed_action_reference(mu, noise, c, low, high),
                hint="ã' = clip(μ'(s') + clip(ε, −c, c), low, high) (eq-td3-smoothing): clip "
                "the noise to [−c, c], add it, then clip the sum to the action box.",
                mistakes=[
                    (
                        "the noise is not clipped to [−c, c]: a large draw moves the target action "
                        "far from μ'(s')",
                        torch.clamp(mu + noise, lo, hi),
                    ),
                    (
                        "the sum is clipped to [−c, c]: c bounds the noise, the action box bounds "
                        "the action",
                        torch.clamp(mu + clipped, -c, c),
                    ),
                ],
            )
        )
    _run_each("check_target_smoothing", fn, "smoothed action", cases, _smoothing_inspect, quiet)


def _td3_target_reference(reward, next_q1, next_q2, done, terminated, gamma, clipped=True):
    """(TD3-2) as TD3Loss computes it: critic i returns coordinate i of the next observation."""
    batch = reward.shape[0]
    meta = _td3_value_metadata(
        2,
        1,
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        -1.0,
        1.0,
        {
            "observation": torch.cat([next_q1, next_q2], -1),
            "reward": reward,
            "done": done,
            "terminated": terminated,
        },
        gamma=gamma,
    )
    if not clipped:
        return td_target(reward, terminated, gamma, next_q1)  # (TD3-2) without the min
    return meta["target_value"].reshape(batch, 1)


def check_td3_target(fn: Callable, quiet: bool = False) -> None:
    r"""``fn(reward, next_q1, next_q2, done, terminated, gamma)`` → TD3's clipped double-Q target
    :math:`y = r + \gamma\,(1 - \text{term})\,\min\big(Q'_1(s', \tilde a'),\ Q'_2(s', \tilde
    a')\big)` (chapter 10, eq-td3-target; ``(TD3-2)`` in ``rlteach/objectives/td3.py``).

    All tensors ``[B, 1]``: the reward, the two target critics' values at the smoothed next action,
    the flags ``done`` (the episode ended, by a time limit or not) and ``terminated`` (it reached
    a terminal state). Returns ``y`` ``[B, 1]``; the reference is
    :class:`rlteach.objectives.TD3Loss`'s ``target_value``. Example::

        def my_td3_target(reward, next_q1, next_q2, done, terminated, gamma):
            return reward + gamma * (~terminated).float() * torch.minimum(next_q1, next_q2)

        check_td3_target(my_td3_target)
    """
    g = torch.Generator().manual_seed(11)
    inputs = [
        (
            "three steps, a truncation in the middle, γ = 0.9",
            _col([1.0, -1.0, 0.5]),
            _col([2.0, 3.0, -4.0]),
            _col([1.0, 5.0, -6.0]),
            _flags([0, 1, 0]),
            _flags([0, 0, 0]),
            0.9,
        ),
        (
            "a termination and a truncation, γ = 0.5",
            _col([0.0, 2.0, -3.0, 1.0]),
            _col([-1.0, 4.0, 2.0, 8.0]),
            _col([-2.0, 3.0, 6.0, 1.0]),
            _flags([0, 1, 1, 0]),
            _flags([0, 1, 0, 0]),
            0.5,
        ),
        (
            "a batch of eight, γ = 0.99",
            torch.randn(8, 1, generator=g),
            torch.randn(8, 1, generator=g) * 3,
            torch.randn(8, 1, generator=g) * 3,
            _flags([0, 0, 1, 0, 0, 1, 0, 0]),
            _flags([0, 0, 1, 0, 0, 0, 0, 0]),
            0.99,
        ),
    ]
    cases = []
    for label, r, q1, q2, done, term, gamma in inputs:

        def target(next_value, mask=term, r=r, gamma=gamma):
            return r + gamma * (~mask).float() * next_value

        smaller = torch.minimum(q1, q2)
        cases.append(
            _Case(
                label,
                (r, q1, q2, done, term, gamma),
                _td3_target_reference(r, q1, q2, done, term, gamma),
                hint="y = r + γ (1 − terminated) min(Q'_1, Q'_2) (eq-td3-target).",
                mistakes=[
                    (
                        "the maximum of the two critics: clipped double Q bootstraps from the "
                        "*smaller* one, against overestimation",
                        target(torch.maximum(q1, q2)),
                    ),
                    (
                        "the mean of the two critics: the minimum is what cancels the bias",
                        target((q1 + q2) / 2),
                    ),
                    (
                        "only the first critic: that is DDPG's target (TD3Loss with "
                        "clipped_double_q=False)",
                        _td3_target_reference(r, q1, q2, done, term, gamma, clipped=False),
                    ),
                    (
                        "a time limit (truncation) cuts the bootstrap: mask with terminated, not "
                        "done; Pendulum's episodes end only by truncation",
                        target(smaller, done),
                    ),
                    (
                        "a terminal state is bootstrapped from: multiply by (1 − terminated)",
                        target(smaller, torch.zeros_like(term)),
                    ),
                ],
            )
        )
    _run("check_td3_target", fn, "y", cases, quiet=quiet)


# -------------------------------------------------------------------- chapter 11: SAC

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _gauss(u, loc, scale):
    return -((u - loc) ** 2) / (2 * scale**2) - scale.log() - _LOG_SQRT_2PI


def _tanh_inspect(case: _Case, got):
    loc, scale, u = case.args
    got_t = got if isinstance(got, torch.Tensor) else None
    if got_t is None:
        return got
    label = f"log_prob (case '{case.label}')"
    if got_t.shape == u.shape and u.shape != case.expected.shape:
        summed = got_t.detach().double().sum(-1)
        if _close(summed, case.expected.double()):
            raise ExerciseError(
                f"{label} has shape {list(got_t.shape)}, one value per action dimension; "
                f"summed over the last dim it is right. The density of a vector action is the "
                f"product over its dims: sum both terms over the action dims "
                f"(eq-sac-change-of-variables) (TN-5)."
            )
        raise ExerciseError(
            f"{label} should have shape {list(case.expected.shape)}, got {list(got_t.shape)}: "
            f"one log-probability per action vector, summed over the action dims (TN-5)."
        )
    if got_t.shape == case.expected.shape and not torch.isfinite(got_t).all():
        bad = (~torch.isfinite(got_t)).nonzero()[0].tolist()
        big = u.abs().amax(-1)[tuple(bad)].item() if bad else u.abs().max().item()
        if big > 8:
            raise ExerciseError(
                f"{label}{bad} is {got_t[tuple(bad)].item()}, at a pre-tanh value with "
                f"|u| = {big:.3g}: there tanh(u) rounds to ±1 and log(1 − tanh²u) = log 0 = −inf. "
                f"Use the stable form log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)) "
                f"(eq-sac-logdet) (TN-4)."
            )
    return got


def check_tanh_normal_log_prob(fn: Callable, quiet: bool = False) -> None:
    r"""``fn(loc, scale, pre_tanh)`` → :math:`\log\pi(a)` of the squashed action
    :math:`a = \tanh(u)`, :math:`u \sim \mathcal N(\text{loc}, \text{scale}^2)` per dimension, in
    the box :math:`[-1, 1]^A`: :math:`\log\pi(a) = \sum_j \big[\log\mathcal N(u_j;
    \text{loc}_j, \text{scale}_j) - \log(1 - \tanh^2 u_j)\big]` (chapter 11,
    eq-sac-change-of-variables with eq-sac-logdet; ``(TN-3)``-``(TN-5)`` in
    ``rlteach/modules/core.py``).

    ``loc``, ``scale`` (> 0), ``pre_tanh`` :math:`u`: ``[*B, A]``. Returns ``[*B]``, summed over
    the action dims. The reference is :class:`rlteach.modules.TanhNormal`'s density at ``u``
    (what ``rsample_and_log_prob`` returns). One case has :math:`|u| = 20`, where the literal
    :math:`\log(1 - \tanh^2 u)` is :math:`-\infty`. Example::

        def my_log_prob(loc, scale, pre_tanh):
            u = pre_tanh
            normal = torch.distributions.Normal(loc, scale).log_prob(u)
            log_det = 2 * (math.log(2) - u - torch.nn.functional.softplus(-2 * u))
            return (normal - log_det).sum(-1)

        check_tanh_normal_log_prob(my_log_prob)
    """
    g = torch.Generator().manual_seed(12)
    inputs = [
        (
            "one action dim, u = 0 and either side",
            torch.zeros(4, 1),
            torch.ones(4, 1),
            _col([0.0, 0.5, -1.0, 2.0]),
        ),
        (
            "a batch of three 2-d actions",
            torch.randn(3, 2, generator=g),
            torch.rand(3, 2, generator=g) + 0.3,
            torch.randn(3, 2, generator=g),
        ),
        (
            "a saturated sample, |u| = 20 (tanh(u) rounds to ±1)",
            torch.tensor([[3.0, 0.0], [-2.0, 0.5]]),
            torch.tensor([[5.0, 1.0], [4.0, 0.2]]),
            torch.tensor([[20.0, 0.3], [-20.0, 0.4]]),
        ),
    ]
    cases = []
    for label, loc, scale, u in inputs:
        reference = TanhNormal(loc, scale).log_prob_pre_tanh(u)
        normal = _gauss(u, loc, scale)
        log_det = 2 * (math.log(2.0) - u - nn.functional.softplus(-2 * u))
        cases.append(
            _Case(
                label,
                (loc, scale, u),
                reference,
                hint="log π(a) = Σ_j [log N(u_j; loc_j, scale_j) − log(1 − tanh² u_j)] "
                "(eq-sac-change-of-variables): the Gaussian's log-density at u, minus the log "
                "of the Jacobian da/du.",
                mistakes=[
                    (
                        "the Jacobian term is missing: that is the density of u, not of a = tanh(u)",
                        normal.sum(-1),
                    ),
                    (
                        "the Jacobian term has the wrong sign: the change of variables *divides* by "
                        "|da/du|, so its log is subtracted",
                        (normal + log_det).sum(-1),
                    ),
                    (
                        "scale is used as the variance: N(u; loc, scale) has (u − loc)²/(2 scale²) "
                        "and −log scale",
                        (
                            -((u - loc) ** 2) / (2 * scale)
                            - 0.5 * scale.log()
                            - _LOG_SQRT_2PI
                            - log_det
                        ).sum(-1),
                    ),
                    (
                        "the Gaussian is evaluated at a = tanh(u): its variable is the pre-tanh u",
                        (_gauss(torch.tanh(u), loc, scale) - log_det).sum(-1),
                    ),
                    (
                        "the constant −log √(2π) is missing from each dim's Gaussian log-density",
                        (normal + _LOG_SQRT_2PI - log_det).sum(-1),
                    ),
                ],
            )
        )
    _run_each("check_tanh_normal_log_prob", fn, "log_prob", cases, _tanh_inspect, quiet)


# ------------------------------------------------------------------- chapter 12: REDQ


def _redq_target_reference(reward, next_q, subset, next_log_prob, alpha, terminated, gamma):
    """(REDQ-2) from REDQLoss.subset_target: critic i returns coordinate i of the next observation."""
    n, batch = next_q.shape[0], reward.shape[0]
    critics = []
    for i in range(n):
        net = _q_net(n, 1, num_cells=())
        with torch.no_grad():
            net.module.layers[0].weight.zero_()
            net.module.layers[0].weight[0, i] = 1.0
            net.module.layers[0].bias.zero_()
        critics.append(net)
    loss = REDQLoss(
        make_normal_actor(n, 1, (4,)),
        critics,
        num_qvalue_nets=n,
        sub_sample_len=len(subset),
        alpha_init=alpha,
        min_alpha=min(alpha, 1e-3),
        max_alpha=max(alpha, 10.0),
        action_spec=1,
    )
    loss.make_value_estimator("td0", gamma=gamma)
    flags = terminated.clone()
    td = TensorDict(
        {
            "observation": torch.zeros(batch, n),
            "action": torch.zeros(batch, 1),
            "next": {
                "observation": next_q.squeeze(-1).T.contiguous(),
                "reward": reward.clone(),
                "done": flags,
                "terminated": flags,
            },
        },
        [batch],
    )
    _, target = loss.subset_target(td, subset, torch.zeros(batch, 1), next_log_prob.squeeze(-1))
    return target.reshape(batch, 1)


def check_redq_target(fn: Callable, quiet: bool = False) -> None:
    r"""``fn(reward, next_q, subset, next_log_prob, alpha, terminated, gamma)`` → REDQ's target
    :math:`y = r + \gamma\,(1 - \text{term})\big(\min_{i \in \mathcal M} Q'_i(s', a') -
    \alpha\log\pi(a'|s')\big)` (chapter 12, eq-redq-target; ``(REDQ-2)`` in
    ``rlteach/objectives/redq.py``).

    ``reward``, ``next_log_prob`` :math:`\log\pi(a'|s')`, ``terminated``: ``[B, 1]``;
    ``next_q``: ``[N, B, 1]``, all N target critics at (s', a'); ``subset``: ``[M]`` integer
    indices of the critics drawn for this update (:math:`\mathcal M`); ``alpha``, ``gamma``:
    floats. Returns ``y`` ``[B, 1]``; the reference is :class:`rlteach.objectives.REDQLoss`'s
    target. Example::

        def my_redq_target(reward, next_q, subset, next_log_prob, alpha, terminated, gamma):
            soft = next_q[subset].min(0).values - alpha * next_log_prob
            return reward + gamma * (~terminated).float() * soft

        check_redq_target(my_redq_target)
    """
    g = torch.Generator().manual_seed(13)
    inputs = [
        (
            "N = 4, subset {1, 3}, a termination, α = 0.5, γ = 0.9",
            _col([1.0, 0.0, -1.0]),
            torch.tensor(
                [[-5.0, 0.0, 2.0], [1.0, 4.0, 3.0], [0.5, -2.0, -1.0], [2.0, 3.0, 0.0]]
            ).unsqueeze(-1),
            torch.tensor([1, 3]),
            _col([-1.0, 0.5, 2.0]),
            0.5,
            _flags([0, 0, 1]),
            0.9,
        ),
        (
            "N = 10, M = 2, a batch of six, α = 0.2, γ = 0.99",
            torch.randn(6, 1, generator=g),
            torch.randn(10, 6, 1, generator=g) * 2,
            torch.tensor([2, 7]),
            torch.randn(6, 1, generator=g),
            0.2,
            _flags([0, 0, 0, 1, 0, 0]),
            0.99,
        ),
        (
            "N = 5, M = 3, α = 1, γ = 0.5",
            torch.randn(4, 1, generator=g),
            torch.randn(5, 4, 1, generator=g) * 2,
            torch.tensor([0, 2, 4]),
            torch.randn(4, 1, generator=g) - 1.0,
            1.0,
            _flags([0, 1, 0, 0]),
            0.5,
        ),
    ]
    cases = []
    for label, r, q, subset, lp, alpha, term, gamma in inputs:

        def target(soft_value, mask=term, r=r, gamma=gamma):
            return r + gamma * (~mask).float() * soft_value

        q_sub = q[subset].min(0).values
        cases.append(
            _Case(
                label,
                (r, q, subset, lp, alpha, term, gamma),
                _redq_target_reference(r, q, subset, lp, alpha, term, gamma),
                hint="y = r + γ (1 − terminated) (min over the subset M of Q'_i − α log π(a'|s')) "
                "(eq-redq-target).",
                mistakes=[
                    (
                        "the minimum over all N critics: REDQ takes it over the random subset "
                        "only (next_q[subset]); over all N the target underestimates",
                        target(q.min(0).values - alpha * lp),
                    ),
                    (
                        "the minimum over the first M critics, not over the given subset",
                        target(q[: len(subset)].min(0).values - alpha * lp),
                    ),
                    (
                        "the mean over the subset instead of its minimum",
                        target(q[subset].mean(0) - alpha * lp),
                    ),
                    (
                        "the entropy term has the wrong sign: the soft value is Q − α log π "
                        "(a bonus for unlikely actions)",
                        target(q_sub + alpha * lp),
                    ),
                    ("the entropy term −α log π(a'|s') is missing", target(q_sub)),
                    (
                        "a terminal state is bootstrapped from: multiply by (1 − terminated)",
                        target(q_sub - alpha * lp, torch.zeros_like(term)),
                    ),
                ],
            )
        )
    _run("check_redq_target", fn, "y", cases, quiet=quiet)


# ------------------------------------------------------------------ chapter 13: CrossQ


def _batch_renorm_reference(x, running_mean, running_var, r_max, d_max, eps):
    """BatchRenorm1d in training mode after its warm-up (gamma = 1, beta = 0)."""
    layer = BatchRenorm1d(x.shape[1], eps=eps, max_r=r_max, max_d=d_max, warmup_steps=0)
    with torch.no_grad():
        layer.running_mean.copy_(running_mean)
        layer.running_var.copy_(running_var)
    layer.train()
    return layer(x)


def _renorm(
    x,
    mu,
    var,
    r_max,
    d_max,
    eps,
    *,
    unbiased=False,
    clip=True,
    detach=True,
    plain=False,
    r_low=None,
    eps_on_std=False,
):
    """(BRN-1)-(BRN-3) with switches for the known mistakes."""
    mu_b = x.mean(0)
    var_b = x.var(0, unbiased=unbiased)
    sigma_b = var_b.sqrt() + eps if eps_on_std else (var_b + eps).sqrt()
    sigma = var.sqrt() + eps if eps_on_std else (var + eps).sqrt()
    r = (sigma_b.detach() if detach else sigma_b) / sigma
    d = ((mu_b.detach() if detach else mu_b) - mu) / sigma
    if clip:
        r = r.clamp(1 / r_max if r_low is None else r_low, r_max)
        d = d.clamp(-d_max, d_max)
    if plain:
        r, d = torch.ones_like(r), torch.zeros_like(d)
    return (x - mu_b) / sigma_b * r + d


def check_batch_renorm(fn: Callable, quiet: bool = False) -> None:
    r"""``fn(x, running_mean, running_var, r_max, d_max, eps)`` → batch renormalisation's
    training-mode output :math:`\hat x = \frac{x - \mu_B}{\sigma_B}\, r + d` with
    :math:`r = \mathrm{clip}_{[1/r_{\max}, r_{\max}]}(\sigma_B / \sigma)`,
    :math:`d = \mathrm{clip}_{[-d_{\max}, d_{\max}]}((\mu_B - \mu) / \sigma)`, no gradient through
    :math:`r` and :math:`d` (chapter 13, eq-crossq-brn; ``(BRN-1)``-``(BRN-3)`` in
    ``rlteach/modules/batchrenorm.py``).

    ``x``: ``[B, F]``, features on the last dim; ``running_mean`` :math:`\mu`, ``running_var``
    :math:`v`: ``[F]``; floats ``r_max``, ``d_max``, ``eps``. :math:`\mu_B` and
    :math:`\operatorname{Var}_B` are the batch mean and the **biased** batch variance,
    :math:`\sigma_B = \sqrt{\operatorname{Var}_B + \epsilon}`, :math:`\sigma = \sqrt{v + \epsilon}`.
    Returns ``[B, F]`` (no scale and shift: :math:`\gamma = 1, \beta = 0`; the running statistics'
    update is not part of the exercise). The reference is :class:`rlteach.modules.BatchRenorm1d`
    in training mode after its warm-up. The last case also compares the gradient with respect to
    ``x``. Example::

        def my_batch_renorm(x, running_mean, running_var, r_max, d_max, eps):
            mu_b, var_b = x.mean(0), x.var(0, unbiased=False)
            sigma_b, sigma = (var_b + eps).sqrt(), (running_var + eps).sqrt()
            r = (sigma_b / sigma).clamp(1 / r_max, r_max).detach()
            d = ((mu_b - running_mean) / sigma).clamp(-d_max, d_max).detach()
            return (x - mu_b) / sigma_b * r + d

        check_batch_renorm(my_batch_renorm)
    """
    g = torch.Generator().manual_seed(14)
    inputs = [
        (
            "clips inactive: x̂ = (x − μ)/σ, 4 × 2",
            torch.tensor([[1.0, -2.0], [3.0, 0.0], [0.0, 1.0], [2.0, 5.0]]),
            torch.tensor([1.0, 0.5]),
            torch.tensor([1.5, 6.0]),
            3.0,
            5.0,
            1e-5,
        ),
        (
            "r and d clipped: running statistics far from the batch's, 6 × 3",
            torch.randn(6, 3, generator=g) * torch.tensor([5.0, 0.05, 1.0])
            + torch.tensor([0.0, 0.0, 8.0]),
            torch.tensor([0.0, 0.0, 0.0]),
            torch.tensor([1.0, 1.0, 1.0]),
            3.0,
            5.0,
            1e-5,
        ),
        (
            "tight clips r_max = 1.5, d_max = 0.5, large eps, 5 × 2",
            torch.randn(5, 2, generator=g) * 2 + 1,
            torch.tensor([0.0, 2.0]),
            torch.tensor([1.0, 0.5]),
            1.5,
            0.5,
            0.1,
        ),
    ]
    cases = []
    for label, x, mu, var, r_max, d_max, eps in inputs:
        args = (x, mu, var, r_max, d_max, eps)
        cases.append(
            _Case(
                label,
                args,
                _batch_renorm_reference(*args).detach(),
                hint="x̂ = (x − μ_B)/σ_B · r + d with σ_B from the biased batch variance and r, d "
                "clipped (eq-crossq-brn) (BRN-1, BRN-2).",
                mistakes=[
                    (
                        "plain batch normalisation (r = 1, d = 0): the corrections towards the "
                        "running statistics are missing",
                        _renorm(*args, plain=True),
                    ),
                    (
                        "r and d are not clipped: without the clips the training output is exactly "
                        "the evaluation output (x − μ)/σ, whatever the batch",
                        _renorm(*args, clip=False),
                    ),
                    (
                        "the batch variance is the unbiased one (torch.var's default divides by "
                        "B − 1): σ_B uses the biased variance, as batch norm does (BRN-1); only the "
                        "running average (BRN-4) is unbiased",
                        _renorm(*args, unbiased=True),
                    ),
                    (
                        "r is clipped from below at 0 (or not at all): its range is "
                        "[1/r_max, r_max]",
                        _renorm(*args, r_low=0.0),
                    ),
                    (
                        "eps is added to the standard deviation: it goes under the square root, "
                        "σ = √(v + ε)",
                        _renorm(*args, eps_on_std=True),
                    ),
                ],
            )
        )
    _run("check_batch_renorm", fn, "x̂", cases, quiet=True)

    # the gradient: r and d are constants for it (BRN-2)
    x, mu, var = inputs[0][1], inputs[0][2], inputs[0][3]
    w = torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0], [-1.0, 2.0]])
    x_ref = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(
        (_batch_renorm_reference(x_ref, mu, var, 3.0, 5.0, 1e-5) * w).sum(), x_ref
    )
    x_got = x.clone().requires_grad_(True)
    try:
        y = fn(x_got, mu.clone(), var.clone(), 3.0, 5.0, 1e-5)
        (got,) = torch.autograd.grad((y * w).sum(), x_got)
    except Exception as err:
        raise ExerciseError(
            f"check_batch_renorm: the gradient of your x̂ with respect to x could not be computed "
            f"({type(err).__name__}: {err}). Build x̂ from x with torch operations (no .item(), "
            f"numpy, or .detach() of x itself)."
        ) from err
    x_wrong = x.clone().requires_grad_(True)
    (wrong,) = torch.autograd.grad(
        (_renorm(x_wrong, mu, var, 3.0, 5.0, 1e-5, detach=False) * w).sum(), x_wrong
    )
    label = "dx̂/dx (case 'clips inactive: x̂ = (x − μ)/σ, 4 × 2', weighted sum)"
    if not _close(got, expected):
        if _close(got, wrong):
            raise ExerciseError(
                f"{label}: the values are right but the gradient flows through r and d. They are "
                f"corrections without gradient (BRN-2): detach σ_B and μ_B inside r and d, or r "
                f"and d themselves; otherwise the layer trains like (x − μ)/σ, not like batch norm."
            )
        idx = (~torch.isclose(got, expected, **_TOL)).nonzero()[0].tolist()
        raise ExerciseError(
            f"{label}[{idx[0]}, {idx[1]}] should be {expected[tuple(idx)].item():.4g}, got "
            f"{got[tuple(idx)].item():.4g}: the gradient must flow through μ_B and σ_B in "
            f"(x − μ_B)/σ_B, but not through r and d (BRN-2)."
        )
    if not quiet:
        print(
            f"✓ check_batch_renorm: {len(cases)} cases agree with rlteach's reference "
            f"(values, and the gradient of one)."
        )
