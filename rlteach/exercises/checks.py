"""The checkers behind :mod:`rlteach.exercises` (see there for the list and the signatures).

A checker is a list of small hand-made cases. For each case it calls your function on copies of
the inputs and compares the result with rlteach's reference using :func:`check_close`. When they
differ, the message tries, in this order: the type and the shape; NaN or inf; the *known
mistakes* of that exercise (each a wrong variant of the reference computed on the same inputs,
e.g. a truncation treated as a termination); a flipped sign; a shift by one time step; a
constant factor; and finally the first index whose value differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from rlteach.objectives.functional import policy_gradient_objective, ppo_clip_objective
from rlteach.value import (
    generalized_advantage_estimate,
    reward2go,
    td_lambda_return_estimate,
)

__all__ = [
    "ExerciseError",
    "check_close",
    "check_discounted_returns",
    "check_td_lambda",
    "check_gae",
    "check_reinforce_loss",
    "check_entropy",
    "check_clip_objective",
    "check_kl_categorical",
]


class ExerciseError(AssertionError):
    """Your answer differs from the reference; the message says where and how."""


# ------------------------------------------------------------------------------ comparison


def _as_tensor(name: str, value) -> torch.Tensor:
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        raise ExerciseError(
            f"{name} should be one tensor, got a {type(value).__name__} of {len(value)} tensors."
        )
    try:
        return torch.as_tensor(value).detach().to(torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ExerciseError(
            f"{name} should be a tensor (or a number), got {type(value).__name__}: {value!r}."
        ) from err


def _index(idx) -> str:
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.3e}"


def _shape_message(name: str, got: torch.Tensor, expected: torch.Tensor) -> str:
    msg = f"{name} should have shape {list(expected.shape)}, got {list(got.shape)}."
    if got.numel() == expected.numel():
        msg += (
            " Same number of values: a missing or extra dimension of size 1? Per-step tensors "
            "keep a trailing feature dim, [..., T, 1] (x.unsqueeze(-1) adds it, "
            "x.squeeze(-1) removes it)."
        )
    elif expected.dim() == 0:
        msg += " One number is expected: reduce over the batch (e.g. .mean())."
    elif got.dim() == 0 or got.numel() < expected.numel():
        msg += " One value per element is expected: did you reduce (sum or mean) too early?"
    return msg


def check_close(
    name: str,
    got,
    expected,
    *,
    hint: str = "",
    atol: float = 1e-4,
    rtol: float = 1e-4,
    time_dim: int | None = None,
    mistakes: Sequence[tuple[str, torch.Tensor]] = (),
) -> None:
    """Raise :class:`ExerciseError` unless ``got`` matches ``expected`` (shape and values).

    ``hint`` is appended to a value mismatch (say which equation to look at). ``time_dim``
    enables the off-by-one-step diagnosis along that dim. ``mistakes`` are ``(description,
    wrong_value)`` pairs: if ``got`` matches a wrong value, the message names that mistake.
    """
    got = _as_tensor(name, got)
    expected = _as_tensor(f"the reference {name}", expected)
    if got.shape != expected.shape:
        raise ExerciseError(_shape_message(name, got, expected))
    if not torch.isfinite(got).all():
        bad = (~torch.isfinite(got)).nonzero()[0].tolist()
        where = f"{name}{_index(bad)}" if got.dim() else name
        raise ExerciseError(
            f"{where} is {got[tuple(bad)].item()} (NaN or inf); expected "
            f"{_fmt(expected[tuple(bad)].item())}. A log of 0, a division by 0, or 0 · log 0 "
            f"(which must count as 0: torch.special.xlogy)?"
        )

    def close(a, b):
        return torch.allclose(a, b, atol=atol, rtol=rtol)

    if close(got, expected):
        return
    tail = f" Hint: {hint}" if hint else ""
    for description, wrong in mistakes:
        wrong = _as_tensor("mistake", wrong)
        if wrong.shape == got.shape and close(got, wrong) and not close(wrong, expected):
            raise ExerciseError(f"{name} matches a known mistake: {description}.{tail}")
    if expected.abs().max() > atol and close(got, -expected):
        raise ExerciseError(
            f"{name} has the right magnitudes but the opposite sign everywhere "
            f"(e.g. {name}{_index([0] * got.dim())} should be "
            f"{_fmt(expected.flatten()[0].item())}, got {_fmt(got.flatten()[0].item())}): "
            f"check the sign.{tail}"
        )
    if time_dim is not None and got.dim() and got.shape[time_dim] > 1:
        n = got.shape[time_dim] - 1
        g_early, g_late = got.narrow(time_dim, 0, n), got.narrow(time_dim, 1, n)
        e_early, e_late = expected.narrow(time_dim, 0, n), expected.narrow(time_dim, 1, n)
        if close(g_early, e_late):
            raise ExerciseError(
                f"{name} is shifted by one time step: your value at t is the reference's at "
                f"t + 1. Check the indices of your loop (r_{{t+1}} is stored at index t).{tail}"
            )
        if close(g_late, e_early):
            raise ExerciseError(
                f"{name} is shifted by one time step: your value at t + 1 is the reference's at "
                f"t. Check the indices of your loop (r_{{t+1}} is stored at index t).{tail}"
            )
    nonzero = expected.abs() > atol
    if nonzero.any():
        ratio = got[nonzero] / expected[nonzero]
        c = ratio.flatten()[0].item()
        if abs(c - 1) > rtol and close(got, c * expected):
            raise ExerciseError(
                f"{name} is the reference times {_fmt(c)} everywhere: a missing or extra factor "
                f"(a sum instead of a mean, a discount applied once too often, log base 2?).{tail}"
            )
    wrong = ~torch.isclose(got, expected, atol=atol, rtol=rtol)
    idx = wrong.nonzero()[0].tolist()
    where = f"{name}{_index(idx)}" if got.dim() else name
    count = f" ({int(wrong.sum())} of {wrong.numel()} values differ)" if got.dim() else ""
    raise ExerciseError(
        f"{where} should be {_fmt(expected[tuple(idx)].item())}, got "
        f"{_fmt(got[tuple(idx)].item())}{count}.{tail}"
    )


# ------------------------------------------------------------------------------ the runner


@dataclass
class _Case:
    label: str
    args: tuple
    expected: torch.Tensor
    hint: str = ""
    time_dim: int | None = None
    mistakes: list = field(default_factory=list)


def _clone(x):
    return x.clone() if isinstance(x, torch.Tensor) else x


def _run(checker: str, fn: Callable, output: str, cases: list[_Case], pick=None, quiet=False):
    if not callable(fn):
        raise TypeError(f"{checker} needs your function, got {type(fn).__name__}.")
    for case in cases:
        args = tuple(_clone(a) for a in case.args)
        try:
            got = fn(*args)
        except Exception as err:
            shapes = ", ".join(
                str(list(a.shape)) if isinstance(a, torch.Tensor) else repr(a) for a in case.args
            )
            raise ExerciseError(
                f"{checker}: your function raised {type(err).__name__}: {err} on the case "
                f"'{case.label}' (arguments: {shapes})."
            ) from err
        if pick is not None:
            got = pick(got)
        check_close(
            f"{output} (case '{case.label}')",
            got,
            case.expected,
            hint=case.hint,
            time_dim=case.time_dim,
            mistakes=case.mistakes,
        )
    if not quiet:
        print(f"✓ {checker}: {len(cases)} cases agree with rlteach's reference.")


def _col(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).unsqueeze(-1)


def _first(result):
    """Accept ``advantage`` or rlteach's ``(advantage, value_target)``."""
    return result[0] if isinstance(result, tuple) and len(result) == 2 else result


def _random_rollouts(seed: int, batch: int = 2, steps: int = 6):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, steps, 1)
    value = torch.randn(shape, generator=g)
    next_value = torch.randn(shape, generator=g)
    reward = torch.randn(shape, generator=g)
    terminated = torch.zeros(shape, dtype=torch.bool)
    truncated = torch.zeros(shape, dtype=torch.bool)
    terminated[0, 2], truncated[1, 3], terminated[1, 5] = True, True, True
    return value, next_value, reward, terminated | truncated, terminated


# ------------------------------------------------------------------------- the checkers

# Chapter 1's hand-made trajectory: a truncation after step 1, a termination after step 3.
_HAND = dict(
    gamma=0.5,
    lmbda=0.5,
    state_value=_col([1.0, 2.0, 4.0, 2.0]),
    next_state_value=_col([2.0, 8.0, 2.0, 6.0]),
    reward=_col([1.0, 2.0, 3.0, 4.0]),
    done=_col([False, True, False, True], torch.bool),
    terminated=_col([False, False, False, True], torch.bool),
)


def check_discounted_returns(fn: Callable, quiet: bool = False) -> None:
    """``fn(reward, done, gamma)`` → the discounted reward-to-go ``G_t`` (no bootstrap), the
    return of chapters 1 and 2: ``G_t = r_{t+1} + γ (1 − d_{t+1}) G_{t+1}``, restarting at every
    episode end. ``reward``, ``done``: ``[*B, T, 1]``."""
    cases = []
    for label, reward, done, gamma in [
        ("one episode, γ = 0.5", _col([1.0, 2.0, 3.0, 4.0]), _col([0, 0, 0, 1], torch.bool), 0.5),
        (
            "two episodes back to back, γ = 0.9",
            _col([1.0, 0.0, 2.0, 1.0, 1.0]),
            _col([0, 1, 0, 0, 1], torch.bool),
            0.9,
        ),
        ("a batch of two rollouts [2, 6, 1], γ = 0.8", *_random_rollouts(3)[2:4], 0.8),
    ]:
        expected = reward2go(reward, done, gamma)
        past = torch.zeros_like(reward)  # the classic mistake: accumulate forward in time
        acc = torch.zeros_like(reward[..., 0, :])
        for t in range(reward.shape[-2]):
            acc = gamma * acc + reward[..., t, :]
            past[..., t, :] = acc
        cases.append(
            _Case(
                label,
                (reward, done, gamma),
                expected,
                hint="loop backward from the last step: G_t = r_{t+1} + γ (1 − d_{t+1}) G_{t+1}.",
                time_dim=-2,
                mistakes=[
                    (
                        "the return runs on across the end of an episode; reset it where done is True",
                        reward2go(reward, torch.zeros_like(done), gamma),
                    ),
                    (
                        "you summed the *past* rewards; the return sums the rewards that follow t "
                        "(loop backward in time)",
                        past,
                    ),
                ],
            )
        )
    _run("check_discounted_returns", fn, "return", cases, quiet=quiet)


def _estimator_mistakes(reference: Callable, kw: dict) -> list:
    """The done / terminated confusions every estimator exercise is about."""
    no_flags = torch.zeros_like(kw["done"])
    return [
        (
            "a truncation (time limit) is treated as a termination: pass `terminated`, not `done`, "
            "to the bootstrap mask, so that V(s_{t+1}) is still used after a time limit",
            reference(**{**kw, "terminated": kw["done"]}),
        ),
        (
            "a terminal state is bootstrapped from: multiply γ V(s_{t+1}) by (1 − terminated)",
            reference(**{**kw, "terminated": no_flags}),
        ),
        (
            "the recursion runs on across a truncation (time limit): stop it where done is "
            "True, not only where terminated is",
            reference(**{**kw, "done": kw["terminated"]}),
        ),
    ]


def check_td_lambda(fn: Callable, quiet: bool = False) -> None:
    """``fn(gamma, lmbda, next_state_value, reward, done, terminated)`` → the TD(λ) return
    ``G^λ_t = r_{t+1} + γ(1 − τ_{t+1}) [(1 − λ) V(s_{t+1}) + λ G^λ_{t+1}]`` inside an episode,
    ``[*B, T, 1]`` (chapter 1, eq-lambda-recursion with its masks)."""

    def reference(gamma, lmbda, next_state_value, reward, done, terminated):
        return td_lambda_return_estimate(gamma, lmbda, next_state_value, reward, done, terminated)

    value, next_value, reward, done, terminated = _random_rollouts(5)
    inputs = [
        (
            "chapter 1's trajectory, γ = λ = 0.5",
            {k: v for k, v in _HAND.items() if k != "state_value"},
        ),
        (
            "λ = 0 is TD(0)",
            dict(
                gamma=0.9,
                lmbda=0.0,
                next_state_value=next_value[0],
                reward=reward[0],
                done=done[0],
                terminated=terminated[0],
            ),
        ),
        (
            "a batch of two rollouts [2, 6, 1], γ = 0.9, λ = 0.8",
            dict(
                gamma=0.9,
                lmbda=0.8,
                next_state_value=next_value,
                reward=reward,
                done=done,
                terminated=terminated,
            ),
        ),
    ]
    cases = [
        _Case(
            label,
            tuple(kw.values()),
            reference(**kw),
            hint="G^λ_t = r_{t+1} + γ(1−τ_{t+1})[(1−λ)V(s_{t+1}) + λ G^λ_{t+1}], and the "
            "λ-part only inside an episode (where done is False); past the last step of a rollout "
            "that did not end, G^λ_T = V(s_T).",
            time_dim=-2,
            mistakes=_estimator_mistakes(reference, kw),
        )
        for label, kw in inputs
    ]
    _run("check_td_lambda", fn, "G^λ", cases, quiet=quiet)


def check_gae(fn: Callable, quiet: bool = False) -> None:
    """``fn(gamma, lmbda, state_value, next_state_value, reward, done, terminated)`` → the GAE
    advantage ``[*B, T, 1]`` (or rlteach's ``(advantage, value_target)``):
    ``δ_t = r_{t+1} + γ(1 − τ_{t+1}) V(s_{t+1}) − V(s_t)``, ``Â_t = δ_t + γλ(1 − d_{t+1}) Â_{t+1}``
    (chapters 1 and 3)."""

    def reference(gamma, lmbda, state_value, next_state_value, reward, done, terminated):
        return generalized_advantage_estimate(
            gamma, lmbda, state_value, next_state_value, reward, done, terminated
        )[0]

    value, next_value, reward, done, terminated = _random_rollouts(7)
    inputs = [
        (
            "chapter 1, exercise 1: γ = 0.9, λ = 0.8, terminated after step 3",
            dict(
                gamma=0.9,
                lmbda=0.8,
                state_value=_col([0.5, 0.5, 0.5]),
                next_state_value=_col([0.5, 0.5, 0.7]),
                reward=_col([0.0, 0.0, 1.0]),
                done=_col([0, 0, 1], torch.bool),
                terminated=_col([0, 0, 1], torch.bool),
            ),
        ),
        ("chapter 1's trajectory, γ = λ = 0.5", dict(_HAND)),
        (
            "a batch of two rollouts [2, 6, 1], γ = 0.99, λ = 0.95",
            dict(
                gamma=0.99,
                lmbda=0.95,
                state_value=value,
                next_state_value=next_value,
                reward=reward,
                done=done,
                terminated=terminated,
            ),
        ),
    ]
    cases = []
    for label, kw in inputs:
        mistakes = _estimator_mistakes(reference, kw)
        mistakes.append(
            (
                "the recursion uses γ where it needs γλ (or λ where it needs γλ)",
                reference(**{**kw, "lmbda": 1.0}),
            )
        )
        cases.append(
            _Case(
                label,
                tuple(kw.values()),
                reference(**kw),
                hint="δ_t = r_{t+1} + γ(1−τ_{t+1})V(s_{t+1}) − V(s_t); Â_t = δ_t + γλ(1−d_{t+1})Â_{t+1}, "
                "from the last step backward.",
                time_dim=-2,
                mistakes=mistakes,
            )
        )
    _run("check_gae", fn, "advantage", cases, pick=_first, quiet=quiet)


def check_reinforce_loss(fn: Callable, quiet: bool = False) -> None:
    """``fn(log_prob, advantage)`` → the scalar REINFORCE loss ``−mean(log π(a|s) · Â)``, whose
    gradient is minus the policy-gradient estimate (chapter 2). ``log_prob``, ``advantage``:
    ``[N]``. Also checks that the loss is differentiable in ``log_prob``."""
    cases = [
        (
            "four samples",
            torch.tensor([-0.1, -2.0, -0.7, -1.2]),
            torch.tensor([1.0, -0.5, 2.0, 0.0]),
        ),
        ("one sample", torch.tensor([-0.3]), torch.tensor([3.0])),
    ]
    for label, log_prob, advantage in cases:
        lp = log_prob.clone().requires_grad_(True)
        try:
            loss = fn(lp, advantage.clone())
        except Exception as err:
            raise ExerciseError(
                f"check_reinforce_loss: your function raised {type(err).__name__}: {err} on the "
                f"case '{label}'."
            ) from err
        expected = policy_gradient_objective(log_prob, advantage).mean()
        check_close(
            f"loss (case '{label}')",
            loss,
            expected,
            hint="minimise −mean(log π(a|s) · Â): the minus sign turns gradient descent into "
            "ascent on the return, and the mean (not the sum) keeps the scale independent of N.",
        )
        if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
            raise ExerciseError(
                f"loss (case '{label}') is not differentiable in log_prob: build it from the "
                f"log_prob tensor with torch operations (no .item(), .detach() or numpy)."
            )
        (grad,) = torch.autograd.grad(loss, lp)
        check_close(
            f"d loss / d log_prob (case '{label}')",
            grad,
            -advantage / len(advantage),
            hint="the advantage is a constant weight: it must not depend on log_prob.",
        )
    if not quiet:
        print(f"✓ check_reinforce_loss: {len(cases)} cases agree (value and gradient).")


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(probs, probs).sum(-1)


def check_entropy(fn: Callable, quiet: bool = False) -> None:
    """``fn(probs)`` → the entropy ``H = −Σ_a π(a) ln π(a)`` over the last dim, with
    ``0 · ln 0 = 0`` (chapter 3's entropy bonus). ``probs``: ``[*B, A]`` → ``[*B]``."""
    cases = []
    for label, probs in [
        ("uniform over two actions", torch.tensor([0.5, 0.5])),
        ("π = (1/4, 3/4)", torch.tensor([0.25, 0.75])),
        ("a batch with an impossible action", torch.tensor([[0.2, 0.3, 0.5], [0.0, 0.4, 0.6]])),
    ]:
        cases.append(
            _Case(
                label,
                (probs,),
                _entropy(probs),
                hint="H = −Σ_a π(a) ln π(a), natural log, summed over the actions (the last dim).",
                mistakes=[
                    ("you summed over the wrong dim", -torch.special.xlogy(probs, probs).sum(0))
                ]
                if probs.dim() > 1
                else [],
            )
        )
    _run("check_entropy", fn, "entropy", cases, quiet=quiet)


def check_clip_objective(fn: Callable, quiet: bool = False) -> None:
    """``fn(ratio, advantage, clip_epsilon)`` → PPO's clipped surrogate per sample,
    ``L^CLIP = min(r Â, clip(r, 1 − ε, 1 + ε) Â)`` (the objective, to maximise; chapter 4).
    ``ratio``, ``advantage``: ``[N]``."""
    cases = []
    for label, ratio, advantage, eps in [
        (
            "chapter 4, exercise 1 (ε = 0.2)",
            torch.tensor([1.3, 0.7, 1.3, 0.7]),
            torch.tensor([2.0, 2.0, -2.0, -2.0]),
            0.2,
        ),
        (
            "ratios inside and outside the band (ε = 0.1)",
            torch.tensor([1.0, 1.05, 0.5, 2.0, 0.95]),
            torch.tensor([1.0, -1.0, 0.5, -0.5, 3.0]),
            0.1,
        ),
    ]:
        clipped = ratio.clamp(1 - eps, 1 + eps)
        eps_t = torch.tensor(eps)
        expected, _ = ppo_clip_objective(ratio.log(), advantage, eps_t, eps_t)  # as PPO computes
        cases.append(
            _Case(
                label,
                (ratio, advantage, eps),
                expected,
                hint="L^CLIP = min(r·Â, clip(r, 1−ε, 1+ε)·Â): the pessimistic minimum of the two.",
                mistakes=[
                    (
                        "the clamp of the product, clamp(r·Â, (1−ε)Â, (1+ε)Â) (chapter 4, exercise 3): "
                        "for Â < 0 its bounds are reversed; clip the ratio, then take the minimum",
                        torch.clamp(
                            ratio * advantage, (1 - eps) * advantage, (1 + eps) * advantage
                        ),
                    ),
                    (
                        "the maximum instead of the minimum: the clip must make the objective "
                        "pessimistic",
                        torch.maximum(ratio * advantage, clipped * advantage),
                    ),
                    (
                        "only the clipped term: without the minimum with r·Â, a ratio that moved the "
                        "wrong way is clipped too",
                        clipped * advantage,
                    ),
                    ("no clipping at all (r·Â)", ratio * advantage),
                ],
            )
        )
    _run("check_clip_objective", fn, "L_clip", cases, quiet=quiet)


def check_kl_categorical(fn: Callable, quiet: bool = False) -> None:
    """``fn(p_old, p_new)`` → ``KL[p_old ‖ p_new] = Σ_a p_old(a) ln(p_old(a) / p_new(a))`` over
    the last dim (chapter 5, exercise 1: the old policy first). ``[*B, A]`` → ``[*B]``."""
    cases = []
    for label, p, q in [
        ("chapter 5, exercise 1", torch.tensor([0.9, 0.1]), torch.tensor([0.5, 0.5])),
        (
            "a batch of three-action policies",
            torch.tensor([[0.2, 0.3, 0.5], [0.7, 0.2, 0.1]]),
            torch.tensor([[0.3, 0.3, 0.4], [0.1, 0.1, 0.8]]),
        ),
    ]:

        def kl(a, b):
            return (torch.special.xlogy(a, a) - torch.special.xlogy(a, b)).sum(-1)

        cases.append(
            _Case(
                label,
                (p, q),
                kl(p, q),
                hint="KL[p_old ‖ p_new] = Σ_a p_old(a) (ln p_old(a) − ln p_new(a)).",
                mistakes=[
                    (
                        "you computed KL[p_new ‖ p_old]: the KL is not symmetric, and the "
                        "expectation is under the old policy, which goes first",
                        kl(q, p),
                    )
                ],
            )
        )
    _run("check_kl_categorical", fn, "KL", cases, quiet=quiet)
