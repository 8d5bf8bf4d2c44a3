"""rlteach.exercises: each checker passes a correct answer and names the mistake in a wrong one."""

import pytest
import torch
from exercise_helpers import message_of, negate

from rlteach.exercises import (
    ExerciseError,
    check_clip_objective,
    check_close,
    check_discounted_returns,
    check_entropy,
    check_gae,
    check_kl_categorical,
    check_reinforce_loss,
    check_td_lambda,
)

# ---------------------------------------------------------------- student-style solutions


def gae_loop(gamma, lmbda, state_value, next_state_value, reward, done, terminated):
    """A student's GAE, written from the equations (not rlteach's code)."""
    T = reward.shape[-2]
    advantage = torch.zeros_like(reward)
    running = torch.zeros_like(reward[..., 0, :])
    for t in reversed(range(T)):
        not_term = (~terminated[..., t, :]).float()
        not_done = (~done[..., t, :]).float()
        delta = reward[..., t, :] + gamma * not_term * next_state_value[..., t, :]
        delta = delta - state_value[..., t, :]
        running = delta + gamma * lmbda * not_done * running
        advantage[..., t, :] = running
    return advantage


def returns_loop(reward, done, gamma):
    out, g = torch.zeros_like(reward), torch.zeros_like(reward[..., 0, :])
    for t in reversed(range(reward.shape[-2])):
        g = reward[..., t, :] + gamma * (~done[..., t, :]).float() * g
        out[..., t, :] = g
    return out


def td_lambda_loop(gamma, lmbda, next_state_value, reward, done, terminated):
    # past the batch's last step the return is bootstrapped: G^λ_T = V(s_T)
    out, g = torch.zeros_like(reward), next_state_value[..., -1, :]
    for t in reversed(range(reward.shape[-2])):
        v_next = next_state_value[..., t, :]
        g = torch.where(done[..., t, :], v_next, (1 - lmbda) * v_next + lmbda * g)
        g = reward[..., t, :] + gamma * (~terminated[..., t, :]).float() * g
        out[..., t, :] = g
    return out


def shift_forward(fn):
    """Off by one: the value of step t + 1 reported at t."""

    def wrong(*args):
        out = fn(*args)
        out = out[0] if isinstance(out, tuple) else out
        return torch.cat([out[..., 1:, :], torch.zeros_like(out[..., :1, :])], dim=-2)

    return wrong


def squeeze(fn):
    return lambda *args: fn(*args).squeeze(-1)


# ------------------------------------------------------------------------------- check_close


def test_check_close_passes_and_reports_the_index():
    check_close("x", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    with pytest.raises(ExerciseError, match=r"x\[0, 1\] should be 0\.81, got 0\.5 \(1 of 4"):
        check_close("x", torch.tensor([[1.0, 0.5], [0, 0]]), torch.tensor([[1.0, 0.81], [0, 0]]))
    with pytest.raises(ExerciseError, match="opposite sign everywhere.*Hint: look at δ"):
        check_close("adv", -torch.tensor([0.81, 1.0]), torch.tensor([0.81, 1.0]), hint="look at δ")
    with pytest.raises(ExerciseError, match=r"should have shape \[3, 1\], got \[3\].*trailing"):
        check_close("v", torch.zeros(3), torch.zeros(3, 1))
    with pytest.raises(ExerciseError, match="times 2 everywhere"):
        check_close("loss", torch.tensor([2.0, 4.0]), torch.tensor([1.0, 2.0]))
    with pytest.raises(ExerciseError, match="NaN or inf"):
        check_close("h", torch.tensor([float("nan")]), torch.tensor([0.0]))
    with pytest.raises(ExerciseError, match="should be a tensor"):
        check_close("h", "0.5", 0.5)
    check_close("kl", 0.36806, 0.3681)  # numbers are fine, within the tolerance


# ---------------------------------------------------------------------- the estimators


def test_gae_checker():
    check_gae(gae_loop, quiet=True)
    check_gae(lambda *a: (gae_loop(*a), None), quiet=True)  # rlteach's tuple is fine
    assert "shape" in message_of(check_gae, squeeze(gae_loop))
    assert "opposite sign" in message_of(check_gae, negate(gae_loop))
    assert "shifted by one time step" in message_of(check_gae, shift_forward(gae_loop))

    def truncation_is_termination(g, lm, v, nv, r, done, term):
        return gae_loop(g, lm, v, nv, r, done, done)

    assert "truncation (time limit) is treated as a termination" in message_of(
        check_gae, truncation_is_termination
    )

    def gamma_instead_of_gamma_lambda(g, lm, v, nv, r, done, term):
        return gae_loop(g, 1.0, v, nv, r, done, term)

    assert "uses γ where it needs γλ" in message_of(check_gae, gamma_instead_of_gamma_lambda)

    def crashes(*args):
        raise RuntimeError("boom")

    assert "raised RuntimeError: boom on the case 'chapter 1, exercise 1" in message_of(
        check_gae, crashes
    )


def test_gae_checker_names_the_index_of_a_local_error():
    def wrong_last_step(*args):
        out = gae_loop(*args).clone()
        out[..., -1, :] += 1.0
        return out

    text = message_of(check_gae, wrong_last_step)
    assert "advantage (case 'chapter 1, exercise 1" in text
    assert "[2, 0] should be 0.5, got 1.5 (1 of 3 values differ)" in text


def test_discounted_returns_checker():
    check_discounted_returns(returns_loop, quiet=True)
    assert "shape" in message_of(check_discounted_returns, squeeze(returns_loop))
    assert "opposite sign" in message_of(check_discounted_returns, negate(returns_loop))
    assert "shifted by one time step" in message_of(
        check_discounted_returns, shift_forward(returns_loop)
    )

    def forward_in_time(reward, done, gamma):
        out, g = torch.zeros_like(reward), torch.zeros_like(reward[..., 0, :])
        for t in range(reward.shape[-2]):
            g = gamma * g + reward[..., t, :]
            out[..., t, :] = g
        return out

    assert "summed the *past* rewards" in message_of(check_discounted_returns, forward_in_time)

    def ignores_done(reward, done, gamma):
        return returns_loop(reward, torch.zeros_like(done), gamma)

    text = message_of(check_discounted_returns, ignores_done)
    assert "runs on across the end of an episode" in text


def test_td_lambda_checker():
    check_td_lambda(td_lambda_loop, quiet=True)
    assert "shape" in message_of(check_td_lambda, squeeze(td_lambda_loop))
    assert "opposite sign" in message_of(check_td_lambda, negate(td_lambda_loop))
    assert "shifted by one time step" in message_of(check_td_lambda, shift_forward(td_lambda_loop))

    def bootstraps_terminal(g, lm, nv, r, done, term):
        return td_lambda_loop(g, lm, nv, r, done, torch.zeros_like(term))

    assert "terminal state is bootstrapped from" in message_of(check_td_lambda, bootstraps_terminal)

    def crosses_truncations(g, lm, nv, r, done, term):
        return td_lambda_loop(g, lm, nv, r, term, term)

    assert "runs on across a truncation" in message_of(check_td_lambda, crosses_truncations)

    def no_bootstrap_at_the_batch_end(g, lm, nv, r, done, term):  # the author's own first bug
        out, acc = torch.zeros_like(r), torch.zeros_like(r[..., 0, :])
        for t in reversed(range(r.shape[-2])):
            v = nv[..., t, :]
            acc = torch.where(done[..., t, :], v, (1 - lm) * v + lm * acc)
            acc = r[..., t, :] + g * (~term[..., t, :]).float() * acc
            out[..., t, :] = acc
        return out

    text = message_of(check_td_lambda, no_bootstrap_at_the_batch_end)
    assert "[0, 3, 0] should be -0.8406, got -1.127 (3 of 12 values differ)" in text
    assert "G^λ_T = V(s_T)" in text


# ------------------------------------------------------------------------------ the losses


def reinforce_loss(log_prob, advantage):
    return -(log_prob * advantage).mean()


def test_reinforce_loss_checker():
    check_reinforce_loss(reinforce_loss, quiet=True)
    assert "opposite sign" in message_of(check_reinforce_loss, lambda lp, a: (lp * a).mean())
    assert "times 4 everywhere" in message_of(check_reinforce_loss, lambda lp, a: -(lp * a).sum())
    assert "One number is expected" in message_of(check_reinforce_loss, lambda lp, a: -(lp * a))
    assert "not differentiable" in message_of(
        check_reinforce_loss, lambda lp, a: torch.tensor((-(lp * a).mean()).item())
    )


def test_entropy_checker():
    def entropy(p):
        return -(p * torch.log(p.clamp_min(1e-30))).sum(-1)

    check_entropy(entropy, quiet=True)
    assert "opposite sign" in message_of(check_entropy, lambda p: -entropy(p))
    assert "NaN or inf" in message_of(check_entropy, lambda p: -(p * p.log()).sum(-1))
    assert "times 1.443 everywhere" in message_of(check_entropy, lambda p: entropy(p) / 0.6931472)
    assert "shape" in message_of(check_entropy, lambda p: entropy(p).unsqueeze(-1))


def clip_objective(ratio, advantage, eps):
    return torch.minimum(ratio * advantage, ratio.clamp(1 - eps, 1 + eps) * advantage)


def test_clip_objective_checker():
    check_clip_objective(clip_objective, quiet=True)
    assert "opposite sign" in message_of(check_clip_objective, negate(clip_objective))
    assert "shape" in message_of(
        check_clip_objective, lambda r, a, e: clip_objective(r, a, e).mean()
    )
    text = message_of(
        check_clip_objective,
        lambda r, a, e: torch.clamp(r * a, (1 - e) * a, (1 + e) * a),  # chapter 4, exercise 3
    )
    assert "the clamp of the product" in text and "case 'chapter 4, exercise 1" in text
    assert "maximum instead of the minimum" in message_of(
        check_clip_objective,
        lambda r, a, e: torch.maximum(r * a, r.clamp(1 - e, 1 + e) * a),
    )

    def off_by_one_sample(r, a, e):  # e.g. a mis-aligned advantage
        return clip_objective(r, torch.roll(a, 1), e)

    assert "should be" in message_of(check_clip_objective, off_by_one_sample)


def test_kl_checker():
    def kl(p, q):
        return (p * (p.log() - q.log())).sum(-1)

    check_kl_categorical(kl, quiet=True)
    assert "KL[p_new ‖ p_old]" in message_of(check_kl_categorical, lambda p, q: kl(q, p))
    assert "opposite sign" in message_of(check_kl_categorical, lambda p, q: -kl(p, q))
    assert "shape" in message_of(check_kl_categorical, lambda p, q: p * (p.log() - q.log()))


def test_success_is_printed(capsys):
    check_gae(gae_loop)
    assert "✓ check_gae: 3 cases agree with rlteach's reference." in capsys.readouterr().out


def test_checkers_do_not_let_the_student_change_the_inputs():
    def in_place(gamma, lmbda, state_value, next_state_value, reward, done, terminated):
        reward.mul_(0)  # vandalises its input: the next case must not see it
        return gae_loop(gamma, lmbda, state_value, next_state_value, reward, done, terminated)

    with pytest.raises(ExerciseError):
        check_gae(in_place, quiet=True)
    check_gae(gae_loop, quiet=True)  # the cases are intact


def test_every_checker_is_exported_and_listed():
    """The package exports every family's checkers and its docstring names each of them."""
    import rlteach.exercises as ex
    from rlteach.exercises import continuous, multiagent, value_based

    for module in (value_based, continuous, multiagent):
        assert module.__all__, f"{module.__name__} exports no checker"
        for name in module.__all__:
            assert name in ex.__all__ and getattr(ex, name) is getattr(module, name)
            assert name in module.__doc__, f"{module.__name__}'s table does not list {name}"
    for name in ex.__all__:
        if name.startswith("check_"):
            assert name in ex.__doc__, f"rlteach.exercises' docstring does not name {name}"
