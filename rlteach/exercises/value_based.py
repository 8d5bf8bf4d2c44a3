r"""Checkers for the exercises of the value-based chapters: the DQN, Double DQN and C51 targets.

=================================  ==============================================  =========
checker                            your function                                   chapter
=================================  ==============================================  =========
:func:`check_dqn_target`           ``fn(reward, next_action_value, done,           06
                                   terminated, gamma) -> y``
:func:`check_double_dqn_target`    ``fn(reward, next_online_value,                 07
                                   next_target_value, terminated, gamma) -> y``
:func:`check_c51_projection`       ``fn(next_probs, reward, not_terminated,        08
                                   gamma, support) -> m``
=================================  ==============================================  =========

The references are rlteach's own code: the two targets are read out of
:class:`rlteach.objectives.DQNLoss` itself (with and without ``double_dqn``), run on networks
whose Q-values are exactly the ones given, and the projection is
:func:`rlteach.objectives.project_distribution`. Each checker also knows the mistakes its chapter
warns about (a time limit taken for a cliff, the networks of Double DQN swapped, the mass of an
atom that lands exactly on a support point lost...) and names them when your answer matches one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from rlteach.exercises.checks import ExerciseError, _as_tensor, _Case, _col, _run
from rlteach.modules import make_qvalue_actor
from rlteach.objectives import DQNLoss, project_distribution

__all__ = ["check_dqn_target", "check_double_dqn_target", "check_c51_projection"]

_TOL = dict(atol=1e-4, rtol=1e-4)  # check_close's default tolerances


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, **_TOL)


def _run_each(checker: str, fn: Callable, output: str, cases: list[_Case], inspect, quiet: bool):
    """``_run`` one case at a time, with ``inspect(case, answer)`` looking at the answer first:
    it may raise a more specific :class:`ExerciseError` than the generic comparison would."""
    for case in cases:
        _run(checker, fn, output, [case], pick=partial(inspect, case), quiet=True)
    if not quiet:
        print(f"✓ {checker}: {len(cases)} cases agree with rlteach's reference.")


# ---------------------------------------------------------------- the targets of DQNLoss


class _GivenValues(nn.Module):
    """A "network" whose Q(s, ·) is written in its observation ``[*B, 2 A]``: the first half for
    the online network, the second half for the target copy (whose buffer ``which`` is set to 1)."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.register_buffer("which", torch.zeros((), dtype=torch.long))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        halves = observation.unflatten(-1, (2, self.n_actions))
        return halves.select(-2, int(self.which))


def _dqn_loss_target(reward, next_online, next_target, done, terminated, gamma, double_dqn):
    """The regression target y [*B, 1] that :class:`rlteach.objectives.DQNLoss` builds.

    The loss is run with the l2 distance, summed, on a batch whose current Q-values are 0; then
    d loss / d Q(s_t, a_t) = 2 (0 − y_t), so y_t is read off the gradient exactly.
    """
    batch, n_actions = reward.shape[:-1], next_online.shape[-1]
    net = TensorDictModule(
        _GivenValues(n_actions), in_keys=["observation"], out_keys=["action_value"]
    )
    loss = DQNLoss(
        make_qvalue_actor(net),
        loss_function="l2",
        delay_value=True,
        double_dqn=double_dqn,
        action_space="categorical",
        reduction="sum",
    )
    loss.target_value_network.module[0].module.which.fill_(1)
    loss.make_value_estimator(gamma=gamma)
    observation = torch.zeros(*batch, 2 * n_actions, requires_grad=True)
    batch_td = TensorDict(
        {
            "observation": observation,
            "action": torch.zeros(batch, dtype=torch.long),
            "next": {
                "observation": torch.cat([next_online, next_target], -1).float(),
                "reward": reward.float(),
                "done": done.clone(),
                "terminated": terminated.clone(),
            },
        },
        batch_size=batch,
    )
    (grad,) = torch.autograd.grad(loss(batch_td)["loss"], observation)
    return -grad[..., :1] / 2  # the gradient sits on action 0 of the online half


def _target_shape(keep: str, case: _Case, got):
    """Name the two usual wrong shapes of a target: one value per action, or [B, 1] + [B]."""
    got_t = got if isinstance(got, torch.Tensor) else None
    expected = case.expected
    if got_t is None or got_t.shape == expected.shape or expected.dim() < 2:
        return got
    batch, n_actions = tuple(expected.shape[:-1]), case.args[1].shape[-1]
    where = (
        f"y (case '{case.label}') should have shape {list(expected.shape)}, got {list(got_t.shape)}"
    )
    per_action = tuple(got_t.shape) == (*batch, n_actions)
    broadcast = tuple(got_t.shape) == (*batch, batch[-1])
    if per_action and broadcast:
        raise ExerciseError(
            f"{where}: either one value per action or a [*B, 1] tensor plus a [*B] one, "
            f"broadcast to [*B, B]. The target has one value per transition: {keep}."
        )
    if per_action:
        raise ExerciseError(
            f"{where}: one value per action. The target has one value per transition: {keep}."
        )
    if broadcast:
        raise ExerciseError(
            f"{where}: a [*B, 1] tensor plus a [*B] one broadcasts to [*B, B]. Keep the "
            f"trailing dim: {keep}."
        )
    return got


def _dqn_inputs(seed: int, batch: tuple[int, ...], n_actions: int):
    g = torch.Generator().manual_seed(seed)
    reward = torch.randn(*batch, 1, generator=g)
    values = [torch.randn(*batch, n_actions, generator=g) * 2 for _ in range(2)]
    u = torch.rand(*batch, 1, generator=g)
    terminated, truncated = u < 0.3, u > 0.7
    return reward, values, terminated | truncated, terminated


def check_dqn_target(fn: Callable, quiet: bool = False) -> None:
    """Check ``fn``, the DQN target (DQN-2 in :mod:`rlteach.objectives.dqn`, chapter 6's
    ``eq-dqn-target``): ``y = r + γ (1 − terminated) max_a' Q_θ'(s', a')``.

    ``fn(reward, next_action_value, done, terminated, gamma) -> y``, with

    =====================  ============  ================================================
    argument               shape         meaning
    =====================  ============  ================================================
    ``reward``             [*B, 1]       r, float
    ``next_action_value``  [*B, A]       Q_θ'(s', ·), the target network's next values
    ``done``               [*B, 1]       bool, the episode ended (terminated or truncated)
    ``terminated``         [*B, 1]       bool, the task ended: s' has no future
    ``gamma``              float         the discount γ
    returns ``y``          [*B, 1]       the regression target, one per transition
    =====================  ============  ================================================

    Example::

        def my_target(reward, next_action_value, done, terminated, gamma):
            ...

        check_dqn_target(my_target)   # ✓ check_dqn_target: 3 cases agree with ...

    The reference is :class:`rlteach.objectives.DQNLoss`'s own target. Known mistakes named:
    ``done`` in place of ``terminated`` (a time limit treated as a cliff), no mask at all, the
    mask on the reward too, γ on the reward too, the mean or the sum over the actions instead of
    the max, the max over the batch dim.
    """
    W = torch.tensor([[1.0, 2.0], [3.0, 0.5], [-1.0, 4.0]])  # chapter 6's table example
    table = (
        "chapter 6's table example, γ = 0.9",
        _col([1.0, 0.0, 0.0]),
        W[[1, 2, 2]],
        _col([False, True, True], torch.bool),
        _col([False, True, False], torch.bool),
        0.9,
    )
    square = (  # as many transitions as actions: a max over the wrong dim keeps the shape
        "three transitions, three actions, negative values, γ = 0.99",
        _col([1.0, 2.0, -0.5]),
        torch.tensor([[-2.0, -3.0, -1.5], [0.5, 4.0, -1.0], [2.0, -6.0, 1.0]]),
        _col([False, True, False], torch.bool),
        _col([False, True, False], torch.bool),
        0.99,
    )
    reward, (values, _), done, terminated = _dqn_inputs(11, (2, 4), 5)
    rollouts = (
        "a batch [2, 4] of transitions, five actions, γ = 0.5",
        reward,
        values,
        done,
        terminated,
        0.5,
    )

    cases = []
    for label, reward, next_av, done, terminated, gamma in [square, table, rollouts]:
        not_term = (~terminated).float()
        best = next_av.max(-1, keepdim=True).values
        mistakes = [
            (
                "a truncation (time limit) is treated as a termination: bootstrap with "
                "(1 − terminated), not (1 − done); after a time limit s' still has a value",
                reward + gamma * (~done).float() * best,
            ),
            (
                "a terminal transition is bootstrapped from: multiply γ max Q(s', a') by "
                "(1 − terminated)",
                reward + gamma * best,
            ),
            (
                "(1 − terminated) multiplies the reward too: the last reward of an episode is "
                "still earned, only the future after it is cut",
                not_term * (reward + gamma * best),
            ),
            (
                "γ multiplies the reward too: y = r + γ (…), the reward of this step is not "
                "discounted",
                gamma * (reward + not_term * best),
            ),
            (
                "the mean over the next actions instead of the max: DQN bootstraps from the "
                "greedy action, max_a' Q(s', a')",
                reward + gamma * not_term * next_av.mean(-1, keepdim=True),
            ),
            (
                "the sum over the next actions instead of the max: DQN bootstraps from the "
                "greedy action, max_a' Q(s', a')",
                reward + gamma * not_term * next_av.sum(-1, keepdim=True),
            ),
        ]
        if next_av.dim() == 2 and next_av.shape[0] == next_av.shape[1]:
            mistakes.append(
                (
                    "the max runs over the transitions (dim 0), not over the actions: "
                    "max_a' is over the last dim, .max(-1, keepdim=True)",
                    reward + gamma * not_term * next_av.max(0).values.unsqueeze(-1),
                )
            )
        cases.append(
            _Case(
                label,
                (reward, next_av, done, terminated, gamma),
                _dqn_loss_target(reward, next_av, next_av, done, terminated, gamma, False),
                hint="y = r + γ (1 − terminated) max_a' Q_θ'(s', a') (DQN-2, eq-dqn-target).",
                mistakes=mistakes,
            )
        )
    keep = "reduce over a' (the last dim) and keep it, .max(-1, keepdim=True).values"
    _run_each("check_dqn_target", fn, "y", cases, partial(_target_shape, keep), quiet)


def check_double_dqn_target(fn: Callable, quiet: bool = False) -> None:
    """Check ``fn``, the Double DQN target (DQN-3 in :mod:`rlteach.objectives.dqn`, chapter 7's
    ``eq-ddqn-target``): ``y = r + γ (1 − terminated) Q_θ'(s', argmax_a' Q_θ(s', a'))``; the
    online network θ chooses the next action, the target network θ' evaluates it.

    ``fn(reward, next_online_value, next_target_value, terminated, gamma) -> y``, with

    =====================  ============  ================================================
    argument               shape         meaning
    =====================  ============  ================================================
    ``reward``             [*B, 1]       r, float
    ``next_online_value``  [*B, A]       Q_θ(s', ·), the online network's next values
    ``next_target_value``  [*B, A]       Q_θ'(s', ·), the target network's next values
    ``terminated``         [*B, 1]       bool, the task ended: s' has no future
    ``gamma``              float         the discount γ
    returns ``y``          [*B, 1]       the regression target, one per transition
    =====================  ============  ================================================

    Example::

        def my_target(reward, next_online_value, next_target_value, terminated, gamma):
            ...

        check_double_dqn_target(my_target)   # ✓ check_double_dqn_target: 3 cases agree ...

    The reference is :class:`rlteach.objectives.DQNLoss` with ``double_dqn=True``. Known
    mistakes named: the plain DQN target (the target network's max), the two networks swapped,
    the online network for both, a terminal transition bootstrapped from.
    """
    choose_differently = (  # the networks disagree on the best next action in rows 0-2
        "the two networks disagree on the best action, γ = 0.9",
        _col([1.0, -1.0, 0.5, 0.0]),
        torch.tensor([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0], [2.0, 1.0, 0.0], [4.0, 0.0, 1.0]]),
        torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, -1.5], [0.0, 4.0, 1.0], [5.0, 1.0, 0.0]]),
        _col([False, True, False, False], torch.bool),
        0.9,
    )
    same = torch.tensor([[0.5, -1.0], [2.0, 3.0]])
    just_copied = (  # right after a hard update: Double DQN and DQN agree
        "right after a hard update (θ' = θ), γ = 0.99",
        _col([1.0, 1.0]),
        same,
        same.clone(),
        _col([False, True], torch.bool),
        0.99,
    )
    reward, (online, target), _, terminated = _dqn_inputs(12, (2, 3), 4)
    rollouts = (
        "a batch [2, 3] of transitions, four actions, γ = 0.8",
        reward,
        online,
        target,
        terminated,
        0.8,
    )

    cases = []
    for label, reward, online, target, terminated, gamma in [
        choose_differently,
        just_copied,
        rollouts,
    ]:
        not_term = (~terminated).float()

        def target_with(chooser, evaluator, mask=not_term, reward=reward, gamma=gamma):
            picked = evaluator.gather(-1, chooser.argmax(-1, keepdim=True))
            return reward + gamma * mask * picked

        mistakes = [
            (
                "the plain DQN target, max_a' Q_θ'(s', a'): Double DQN chooses a' with the "
                "online network θ and only evaluates it with the target network θ'",
                target_with(target, target),
            ),
            (
                "the networks are swapped: the action is chosen by the target network and "
                "evaluated by the online one; choose with θ (argmax of next_online_value), "
                "evaluate with θ' (next_target_value)",
                target_with(target, online),
            ),
            (
                "the online network both chooses and evaluates, max_a' Q_θ(s', a'): evaluate "
                "the chosen action with the target network θ'",
                target_with(online, online),
            ),
            (
                "a terminal transition is bootstrapped from: multiply by (1 − terminated)",
                target_with(online, target, mask=torch.ones_like(not_term)),
            ),
        ]
        cases.append(
            _Case(
                label,
                (reward, online, target, terminated, gamma),
                _dqn_loss_target(reward, online, target, terminated, terminated, gamma, True),
                hint="y = r + γ (1 − terminated) Q_θ'(s', argmax_a' Q_θ(s', a')) (DQN-3, "
                "eq-ddqn-target): next_target_value.gather(-1, next_online_value.argmax(-1, "
                "keepdim=True)).",
                mistakes=mistakes,
            )
        )
    keep = "choose a* with .argmax(-1, keepdim=True), then .gather(-1, a*) keeps the last dim"
    _run_each("check_double_dqn_target", fn, "y", cases, partial(_target_shape, keep), quiet)


# ------------------------------------------------------------------------ the C51 projection


def _projection(
    p, reward, not_term, gamma, support, *, exact="keep", clamp=True, swap=False, delta_z=None
):
    """C51-2 ... C51-4 with one thing done wrong, for the known mistakes (the defaults give
    the right answer). Indices are kept in range, so that every variant is computable."""
    n_atoms = support.numel()
    v_min, v_max = support[0], support[-1]
    if delta_z is None:
        delta_z = (v_max - v_min) / (n_atoms - 1)
    tz = reward + not_term * gamma * support
    inside = torch.ones_like(tz)
    if clamp:
        tz = tz.clamp(v_min, v_max)
    else:  # mass that falls off the support is dropped
        inside = ((tz >= v_min) & (tz <= v_max)).to(tz.dtype)
    b = (tz - v_min) / delta_z
    lower, upper = b.floor(), b.ceil()
    on_point = (lower == upper).to(b.dtype)
    w_lower, w_upper = upper - b, b - lower
    if exact == "keep":
        w_lower = w_lower + on_point
    elif exact == "twice":
        w_lower, w_upper = w_lower + on_point, w_upper + on_point
    if swap:
        w_lower, w_upper = w_upper, w_lower
    m = torch.zeros_like(p)
    m.scatter_add_(-1, lower.long().clamp(0, n_atoms - 1), p * inside * w_lower)
    m.scatter_add_(-1, upper.long().clamp(0, n_atoms - 1), p * inside * w_upper)
    return m


def _projection_mass(case: _Case, got):
    """Say which row lost (or gained) probability when no known mistake explains the answer."""
    got_t = _as_tensor("m", got)
    expected = case.expected
    if (
        got_t.shape != expected.shape
        or not torch.isfinite(got_t).all()
        or _close(got_t, expected.double())
        or _close(got_t, -expected.double())  # check_close names a flipped sign
        or any(_close(got_t, wrong.double()) for _, wrong in case.mistakes)
    ):
        return got  # check_close says the rest
    mass = got_t.sum(-1)
    off = ((mass - 1).abs() > 1e-4).nonzero()
    if len(off):
        row = off[0].tolist()
        where = f"m{row}" if got_t.dim() > 1 else "m"
        raise ExerciseError(
            f"m (case '{case.label}'): {where} sums to {mass[tuple(row)].item():.4g}, not 1. The "
            f"projection keeps all the probability: each p_j is split between z_l and z_u in "
            f"shares that add up to p_j. Hint: {case.hint}"
        )
    return got


def check_c51_projection(fn: Callable, quiet: bool = False) -> None:
    """Check ``fn``, C51's projection of the Bellman target onto the support (C51-2 ... C51-4 in
    :mod:`rlteach.objectives.dqn`, chapter 8's ``eq-c51-shift`` and ``eq-c51-projection``).

    ``fn(next_probs, reward, not_terminated, gamma, support) -> m``, with

    ==================  ============  ===================================================
    argument            shape         meaning
    ==================  ============  ===================================================
    ``next_probs``      [N, K]        p_j(s', a*), each row sums to 1
    ``reward``          [N, 1]        r, float
    ``not_terminated``  [N, 1]        1 − terminated, float (0.0 after a terminal state)
    ``gamma``           float         the discount γ
    ``support``         [K]           z_1 < ... < z_K, evenly spaced by Δz
    returns ``m``       [N, K]        the target distribution on the support
    ==================  ============  ===================================================

    The steps: T z_j = [r + γ (1 − terminated) z_j] clamped to [V_MIN, V_MAX] (C51-2),
    b_j = (T z_j − V_MIN) / Δz with l = floor(b_j), u = ceil(b_j) (C51-3), and p_j split as
    m_l += p_j (u − b_j), m_u += p_j (b_j − l) (C51-4), where an atom that lands exactly on a
    support point (l = u) gives its whole p_j to it.

    Example::

        def my_projection(next_probs, reward, not_terminated, gamma, support):
            ...

        check_c51_projection(my_projection)   # ✓ check_c51_projection: 4 cases agree ...

    The reference is :func:`rlteach.objectives.project_distribution`. Known mistakes named: the
    mass of exact landings lost (C51-4 as printed) or counted twice, mass beyond [V_MIN, V_MAX]
    dropped instead of clamped, the terminal flag ignored, the two shares swapped, Δz computed as
    (V_MAX − V_MIN) / K. Any other answer whose rows do not sum to 1 is reported by row.
    """
    g = torch.Generator().manual_seed(13)
    z9 = torch.linspace(-2.0, 2.0, 9)  # Δz = 0.5
    cases_in = [
        (
            "chapter 8's five-atom example: atoms land exactly on support points",
            torch.tensor([[0.1, 0.2, 0.4, 0.2, 0.1]]),
            _col([1.0]),
            _col([1.0]),
            0.5,
            torch.linspace(0.0, 4.0, 5),
        ),
        (
            "chapter 8, exercise 1: support (−1, 0, 1), r = 0.25, γ = 0.5",
            torch.tensor([[0.5, 0.0, 0.5]]),
            _col([0.25]),
            _col([1.0]),
            0.5,
            torch.tensor([-1.0, 0.0, 1.0]),
        ),
        (
            "four rows: terminal on a point, terminal between points, clamped above, clamped "
            "below (9 atoms on [−2, 2], γ = 0.9)",
            torch.softmax(torch.randn(4, 9, generator=g), -1),
            _col([0.5, 0.3, 1.5, -1.7]),
            _col([0.0, 0.0, 1.0, 1.0]),
            0.9,
            z9,
        ),
        (
            "chapter 8, exercise 3: a terminal transition, r = 1, 51 atoms on [0, 100]",
            torch.full((1, 51), 1 / 51),
            _col([1.0]),
            _col([0.0]),
            0.99,
            torch.linspace(0.0, 100.0, 51),
        ),
    ]
    cases = []
    for label, p, reward, not_term, gamma, z in cases_in:
        args = (p, reward, not_term, gamma, z)
        wrong_dz = (z[-1] - z[0]) / z.numel()
        cases.append(
            _Case(
                label,
                args,
                project_distribution(*args),
                hint="T z_j = [r + γ(1 − term) z_j] clamped to [V_MIN, V_MAX]; b_j = (T z_j − "
                "V_MIN)/Δz; m_l += p_j (u − b_j), m_u += p_j (b_j − l), and the whole p_j to z_l "
                "when l = u (C51-2 ... C51-4).",
                mistakes=[
                    (
                        "an atom that lands exactly on a support point loses its mass: then "
                        "l = u = b_j and both shares of C51-4 are 0 (the algorithm as printed); "
                        "give the whole p_j to z_l when l = u",
                        _projection(*args, exact="lose"),
                    ),
                    (
                        "an atom that lands exactly on a support point is counted twice: when "
                        "l = u give p_j once, not to both z_l and z_u",
                        _projection(*args, exact="twice"),
                    ),
                    (
                        "the mass of the atoms that land outside [V_MIN, V_MAX] is lost: clamp "
                        "T z_j to the support's range first (C51-2), so that it piles up on the "
                        "end atoms",
                        _projection(*args, clamp=False),
                    ),
                    (
                        "the terminal flag is ignored: after a terminal state T z_j = r for every "
                        "atom, r + γ (1 − terminated) z_j",
                        _projection(p, reward, torch.ones_like(not_term), gamma, z),
                    ),
                    (
                        "the two shares are swapped: the nearer support point gets the larger "
                        "share, m_l += p_j (u − b_j) and m_u += p_j (b_j − l)",
                        _projection(*args, swap=True),
                    ),
                    (
                        "Δz is (V_MAX − V_MIN) / K: K atoms have K − 1 gaps, Δz = (V_MAX − "
                        "V_MIN) / (K − 1) (eq-c51-support)",
                        _projection(*args, delta_z=wrong_dz),
                    ),
                ],
            )
        )
    _run_each("check_c51_projection", fn, "m", cases, _projection_mass, quiet)
