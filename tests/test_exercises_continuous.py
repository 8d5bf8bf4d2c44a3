"""rlteach.exercises, chapters 9-13: soft update, TD3's target action and target, the squashed
Gaussian's log-density, REDQ's target and batch renormalisation.

Each checker passes a correct answer written from the equations (not rlteach's code), prints its
success line, and names every known mistake, a wrong shape and a flipped sign.
"""

import math

import pytest
import torch
from exercise_helpers import message_of, negate
from torch.nn.functional import softplus

from rlteach.exercises import (
    check_batch_renorm,
    check_redq_target,
    check_soft_update,
    check_tanh_normal_log_prob,
    check_target_smoothing,
    check_td3_target,
)
from rlteach.exercises.continuous import _smoothed_action_reference, _td3_target_reference


def squeeze(fn):
    return lambda *args: fn(*args).squeeze(-1)


def passes_and_prints(checker, fn, capsys, line):
    checker(fn)
    assert line in capsys.readouterr().out


# --------------------------------------------------------------- chapter 9: soft update


def soft_update(target, online, tau):
    return (1 - tau) * target + tau * online


def test_soft_update_passes_and_prints(capsys):
    passes_and_prints(
        check_soft_update,
        soft_update,
        capsys,
        "✓ check_soft_update: 3 cases agree with rlteach's reference.",
    )


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda t, o, tau: tau * t + (1 - tau) * o, "τ and 1 − τ are swapped"),
        (lambda t, o, tau: o.clone(), "a hard copy θ' ← θ"),
        (lambda t, o, tau: t.clone(), "the target did not move"),
        (lambda t, o, tau: t + tau * o, "the (1 − τ) factor on θ' is missing"),
    ],
)
def test_soft_update_names_the_mistakes(wrong, message):
    text = message_of(check_soft_update, wrong)
    assert message in text and "Hint: θ' ← (1 − τ) θ' + τ θ (eq-ddpg-soft)" in text


def test_soft_update_shape_and_sign():
    assert "should have shape [3]" in message_of(
        check_soft_update, lambda t, o, tau: soft_update(t, o, tau).unsqueeze(0)
    )
    assert "opposite sign everywhere" in message_of(check_soft_update, negate(soft_update))


# ------------------------------------------------------------------- chapter 10: TD3


def smoothing(next_action, noise, noise_clip, low, high):
    a = next_action + noise.clamp(-noise_clip, noise_clip)
    return torch.maximum(torch.minimum(a, torch.as_tensor(high)), torch.as_tensor(low))


def test_target_smoothing_passes_and_prints(capsys):
    passes_and_prints(
        check_target_smoothing,
        smoothing,
        capsys,
        "✓ check_target_smoothing: 3 cases agree with rlteach's reference.",
    )


def test_target_smoothing_reference_is_td3loss():
    """The reference reads a' out of TD3Loss: it does depend on the noise and the clips."""
    mu = torch.tensor([[0.0, 1.9], [-1.0, 0.3]])
    noise = torch.tensor([[0.2, 0.3], [-0.9, 0.1]])
    got = _smoothed_action_reference(mu, noise, 0.5, -2.0, 2.0)
    torch.testing.assert_close(got, torch.tensor([[0.2, 2.0], [-1.5, 0.4]]))


@pytest.mark.parametrize(
    "wrong, message",
    [
        (
            lambda mu, n, c, lo, hi: torch.clamp(mu + n, torch.as_tensor(lo), torch.as_tensor(hi)),
            "the noise is not clipped to [−c, c]",
        ),
        (
            lambda mu, n, c, lo, hi: mu + n.clamp(-c, c),
            "outside the action box",
        ),
        (
            lambda mu, n, c, lo, hi: torch.clamp(mu + n.clamp(-c, c), -c, c),
            "the sum is clipped to [−c, c]",
        ),
    ],
)
def test_target_smoothing_names_the_mistakes(wrong, message):
    assert message in message_of(check_target_smoothing, wrong)


def test_target_smoothing_clip_order_and_unclipped():
    def action_clipped_first(mu, n, c, lo, hi):
        return torch.clamp(mu, torch.as_tensor(lo), torch.as_tensor(hi)) + n.clamp(-c, c)

    # the result leaves the box in the first case: the box message comes first
    assert "clipping μ'(s') first and adding the noise after" in message_of(
        check_target_smoothing, action_clipped_first
    )
    assert "outside the action box" in message_of(check_target_smoothing, lambda mu, n, *a: mu + n)


def test_target_smoothing_shape_and_sign():
    assert "should have shape [5, 1]" in message_of(check_target_smoothing, squeeze(smoothing))
    assert "opposite sign everywhere" in message_of(check_target_smoothing, negate(smoothing))


def td3_target(reward, next_q1, next_q2, done, terminated, gamma):
    return reward + gamma * (1.0 - terminated.float()) * torch.min(next_q1, next_q2)


def test_td3_target_passes_and_prints(capsys):
    passes_and_prints(
        check_td3_target,
        td3_target,
        capsys,
        "✓ check_td3_target: 3 cases agree with rlteach's reference.",
    )


def test_td3_target_reference_is_td3loss():
    r, q1, q2 = (
        torch.tensor([[1.0], [2.0]]),
        torch.tensor([[3.0], [-1.0]]),
        torch.tensor([[2.0], [4.0]]),
    )
    term = torch.tensor([[False], [True]])
    y = _td3_target_reference(r, q1, q2, term, term, 0.5)
    torch.testing.assert_close(y, torch.tensor([[2.0], [2.0]]))


@pytest.mark.parametrize(
    "wrong, message",
    [
        (
            lambda r, q1, q2, d, t, g: td3_target(r, torch.max(q1, q2), q1 * 0 + 1e9, d, t, g),
            "the maximum of the two critics",
        ),
        (lambda r, q1, q2, d, t, g: td3_target(r, (q1 + q2) / 2, q1 * 0 + 1e9, d, t, g), "mean"),
        (lambda r, q1, q2, d, t, g: td3_target(r, q1, q1, d, t, g), "only the first critic"),
        (
            lambda r, q1, q2, d, t, g: td3_target(r, q1, q2, d, d, g),
            "a time limit (truncation) cuts the bootstrap",
        ),
        (
            lambda r, q1, q2, d, t, g: r + g * torch.min(q1, q2),
            "a terminal state is bootstrapped from",
        ),
    ],
)
def test_td3_target_names_the_mistakes(wrong, message):
    assert message in message_of(check_td3_target, wrong)


def test_td3_target_shape_and_sign():
    assert "should have shape [3, 1], got [3]" in message_of(check_td3_target, squeeze(td3_target))
    assert "opposite sign everywhere" in message_of(check_td3_target, negate(td3_target))


# -------------------------------------------------------------------- chapter 11: SAC


def log_det(u):
    return 2 * (math.log(2.0) - u - softplus(-2 * u))


def tanh_log_prob(loc, scale, u):
    normal = torch.distributions.Normal(loc, scale).log_prob(u)
    return (normal - log_det(u)).sum(-1)


def test_tanh_normal_log_prob_passes_and_prints(capsys):
    passes_and_prints(
        check_tanh_normal_log_prob,
        tanh_log_prob,
        capsys,
        "✓ check_tanh_normal_log_prob: 3 cases agree with rlteach's reference.",
    )


def normal(loc, scale, u):
    return torch.distributions.Normal(loc, scale).log_prob(u)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda loc, s, u: normal(loc, s, u).sum(-1), "the Jacobian term is missing"),
        (
            lambda loc, s, u: (normal(loc, s, u) + log_det(u)).sum(-1),
            "the Jacobian term has the wrong sign",
        ),
        (
            lambda loc, s, u: (normal(loc, s.sqrt(), u) - log_det(u)).sum(-1),
            "scale is used as the variance",
        ),
        (
            lambda loc, s, u: (normal(loc, s, torch.tanh(u)) - log_det(u)).sum(-1),
            "the Gaussian is evaluated at a = tanh(u)",
        ),
        (
            lambda loc, s, u: (normal(loc, s, u) + 0.5 * math.log(2 * math.pi) - log_det(u)).sum(
                -1
            ),
            "the constant −log √(2π) is missing",
        ),
        (
            lambda loc, s, u: normal(loc, s, u) - log_det(u),
            "one value per action dimension; summed over the last dim it is right",
        ),
        (
            lambda loc, s, u: (normal(loc, s, u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1),
            "|u| = 20: there tanh(u) rounds to ±1 and log(1 − tanh²u) = log 0 = −inf",
        ),
    ],
)
def test_tanh_normal_log_prob_names_the_mistakes(wrong, message):
    assert message in message_of(check_tanh_normal_log_prob, wrong)


def test_tanh_normal_log_prob_shape_and_sign():
    assert "should have shape [4], got []" in message_of(
        check_tanh_normal_log_prob, lambda *a: tanh_log_prob(*a).sum()
    )
    assert "has shape [4, 1], one value per action dimension" in message_of(
        check_tanh_normal_log_prob, lambda *a: tanh_log_prob(*a).unsqueeze(-1)
    )
    assert "opposite sign everywhere" in message_of(
        check_tanh_normal_log_prob, negate(tanh_log_prob)
    )


# ------------------------------------------------------------------- chapter 12: REDQ


def redq_target(reward, next_q, subset, next_log_prob, alpha, terminated, gamma):
    soft = next_q.index_select(0, subset).amin(0) - alpha * next_log_prob
    return reward + gamma * (~terminated) * soft


def test_redq_target_passes_and_prints(capsys):
    passes_and_prints(
        check_redq_target,
        redq_target,
        capsys,
        "✓ check_redq_target: 3 cases agree with rlteach's reference.",
    )


def all_n(r, q, s, lp, a, t, g):
    return redq_target(r, q, torch.arange(q.shape[0]), lp, a, t, g)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (all_n, "the minimum over all N critics"),
        (
            lambda r, q, s, lp, a, t, g: redq_target(r, q, torch.arange(len(s)), lp, a, t, g),
            "the minimum over the first M critics",
        ),
        (
            lambda r, q, s, lp, a, t, g: r + g * (~t) * (q[s].mean(0) - a * lp),
            "the mean over the subset",
        ),
        (
            lambda r, q, s, lp, a, t, g: redq_target(r, q, s, -lp, a, t, g),
            "the entropy term has the wrong sign",
        ),
        (
            lambda r, q, s, lp, a, t, g: redq_target(r, q, s, lp, 0.0, t, g),
            "the entropy term −α log π(a'|s') is missing",
        ),
        (
            lambda r, q, s, lp, a, t, g: redq_target(r, q, s, lp, a, torch.zeros_like(t), g),
            "a terminal state is bootstrapped from",
        ),
    ],
)
def test_redq_target_names_the_mistakes(wrong, message):
    assert message in message_of(check_redq_target, wrong)


def test_redq_target_shape_and_sign():
    assert "should have shape [3, 1], got [3]" in message_of(
        check_redq_target, squeeze(redq_target)
    )
    assert "opposite sign everywhere" in message_of(check_redq_target, negate(redq_target))


# ----------------------------------------------------------------- chapter 13: CrossQ


def batch_renorm(x, running_mean, running_var, r_max, d_max, eps, *, detach=True, **wrong):
    mu_b = x.mean(0)
    var_b = x.var(0, unbiased=wrong.get("unbiased", False))
    sigma_b, sigma = (var_b + eps).sqrt(), (running_var + eps).sqrt()
    if wrong.get("eps_on_std"):
        sigma_b, sigma = var_b.sqrt() + eps, running_var.sqrt() + eps
    r, d = sigma_b / sigma, (mu_b - running_mean) / sigma
    if detach:
        r, d = r.detach(), d.detach()
    if not wrong.get("no_clip"):
        r = r.clamp(wrong.get("r_low", 1 / r_max), r_max)
        d = d.clamp(-d_max, d_max)
    if wrong.get("plain"):
        r, d = 1.0, 0.0
    return (x - mu_b) / sigma_b * r + d


def test_batch_renorm_passes_and_prints(capsys):
    passes_and_prints(
        check_batch_renorm,
        batch_renorm,
        capsys,
        "✓ check_batch_renorm: 3 cases agree with rlteach's reference (values, and the gradient",
    )


@pytest.mark.parametrize(
    "wrong, message",
    [
        (dict(plain=True), "plain batch normalisation (r = 1, d = 0)"),
        (dict(no_clip=True), "r and d are not clipped"),
        (dict(unbiased=True), "the batch variance is the unbiased one"),
        (dict(r_low=0.0), "r is clipped from below at 0"),
        (dict(eps_on_std=True), "eps is added to the standard deviation"),
        (dict(detach=False), "the values are right but the gradient flows through r and d"),
    ],
)
def test_batch_renorm_names_the_mistakes(wrong, message):
    assert message in message_of(check_batch_renorm, lambda *a: batch_renorm(*a, **wrong))


def test_batch_renorm_running_statistics_instead_of_the_batch():
    def eval_mode(x, running_mean, running_var, r_max, d_max, eps):
        return (x - running_mean) / (running_var + eps).sqrt()

    assert "r and d are not clipped" in message_of(check_batch_renorm, eval_mode)


def test_batch_renorm_shape_sign_and_gradient_errors():
    assert "should have shape [4, 2], got [2, 4]" in message_of(
        check_batch_renorm, lambda *a: batch_renorm(*a).T
    )
    assert "opposite sign everywhere" in message_of(check_batch_renorm, negate(batch_renorm))

    def through_numpy(x, *rest):
        return torch.as_tensor(batch_renorm(x.detach(), *rest).numpy())

    assert "gradient of your x̂ with respect to x could not be computed" in message_of(
        check_batch_renorm, through_numpy
    )
