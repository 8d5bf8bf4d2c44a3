"""rlteach.exercises, chapters 6-8: the DQN and Double DQN targets and the C51 projection.

Each checker passes a correct answer written from the equations (not rlteach's code), prints its
success line, and names every known mistake, a wrong shape and a flipped sign.
"""

import pytest
import torch
from exercise_helpers import message_of, negate

from rlteach.exercises import (
    ExerciseError,
    check_c51_projection,
    check_double_dqn_target,
    check_dqn_target,
)
from rlteach.exercises.value_based import _dqn_loss_target, _projection
from rlteach.objectives import project_distribution

# ---------------------------------------------------------------------- chapter 6: DQN


def dqn_target(reward, next_action_value, done, terminated, gamma):
    best = next_action_value.max(dim=-1, keepdim=True).values
    return reward + gamma * (1.0 - terminated.float()) * best


def test_dqn_target_passes_and_prints(capsys):
    check_dqn_target(dqn_target)
    assert "✓ check_dqn_target: 3 cases agree with rlteach's reference." in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, message",
    [
        (
            lambda r, q, done, term, g: dqn_target(r, q, done, done, g),
            "a truncation (time limit) is treated as a termination",
        ),
        (
            lambda r, q, done, term, g: r + g * q.max(-1, keepdim=True).values,
            "a terminal transition is bootstrapped from",
        ),
        (
            lambda r, q, done, term, g: (~term).float() * (r + g * q.max(-1, keepdim=True).values),
            "(1 − terminated) multiplies the reward too",
        ),
        (
            lambda r, q, done, term, g: g * (r + (~term).float() * q.max(-1, keepdim=True).values),
            "γ multiplies the reward too",
        ),
        (
            lambda r, q, done, term, g: r + g * (~term).float() * q.mean(-1, keepdim=True),
            "the mean over the next actions instead of the max",
        ),
        (
            lambda r, q, done, term, g: r + g * (~term).float() * q.sum(-1, keepdim=True),
            "the sum over the next actions instead of the max",
        ),
        (
            lambda r, q, done, term, g: r + g * (~term).float() * q.max(0).values.unsqueeze(-1),
            "the max runs over the transitions (dim 0)",
        ),
    ],
    ids=["done", "no-mask", "masked-reward", "gamma-reward", "mean", "sum", "wrong-dim"],
)
def test_dqn_target_names_the_known_mistakes(wrong, message):
    text = message_of(check_dqn_target, wrong)
    assert "matches a known mistake: " + message in text
    assert "Hint: y = r + γ (1 − terminated) max_a' Q_θ'(s', a') (DQN-2" in text


def test_dqn_target_shape_and_sign():
    assert "opposite sign everywhere" in message_of(check_dqn_target, negate(dqn_target))
    text = message_of(check_dqn_target, lambda *a: dqn_target(*a).squeeze(-1))
    assert "should have shape [3, 1], got [3]" in text and "trailing" in text
    for no_keepdim_or_no_max in [
        lambda r, q, d, t, g: r + g * (~t).float() * q.max(-1).values,  # [3, 1] + [3]
        lambda r, q, d, t, g: r + g * (~t).float() * q,  # one value per action
    ]:
        text = message_of(check_dqn_target, no_keepdim_or_no_max)
        assert "should have shape [3, 1], got [3, 3]: either one value per action" in text
        assert "broadcast to [*B, B]" in text and ".max(-1, keepdim=True).values" in text


def test_dqn_target_names_the_index_of_an_unknown_error():
    def off_by_one_action(r, q, d, t, g):  # e.g. q[..., 1:] "to skip a no-op action"
        return r + g * (~t).float() * q[..., 1:].max(-1, keepdim=True).values

    text = message_of(check_dqn_target, off_by_one_action)
    assert "y (case 'three transitions, three actions" in text
    assert "[2, 0] should be 1.48, got 0.49 (1 of 3 values differ)" in text


def test_dqn_target_reports_a_crash_with_the_case():
    def crashes(*args):
        raise RuntimeError("boom")

    assert "raised RuntimeError: boom on the case 'three transitions, three actions" in message_of(
        check_dqn_target, crashes
    )


def test_the_reference_is_dqn_loss_and_matches_the_table_example():
    reward = torch.tensor([[1.0], [0.0], [0.0]])
    next_q = torch.tensor([[3.0, 0.5], [-1.0, 4.0], [-1.0, 4.0]])
    done = torch.tensor([[False], [True], [True]])
    term = torch.tensor([[False], [True], [False]])
    y = _dqn_loss_target(reward, next_q, next_q, done, term, 0.9, False)
    torch.testing.assert_close(y, torch.tensor([[3.7], [0.0], [3.6]]))  # chapter 6, by hand
    torch.testing.assert_close(y, dqn_target(reward, next_q, done, term, 0.9))


# -------------------------------------------------------------- chapter 7: Double DQN


def double_dqn_target(reward, next_online_value, next_target_value, terminated, gamma):
    a_star = next_online_value.argmax(dim=-1, keepdim=True)
    return reward + gamma * (1.0 - terminated.float()) * next_target_value.gather(-1, a_star)


def test_double_dqn_target_passes_and_prints(capsys):
    check_double_dqn_target(double_dqn_target)
    out = capsys.readouterr().out
    assert "✓ check_double_dqn_target: 3 cases agree with rlteach's reference." in out


@pytest.mark.parametrize(
    "wrong, message",
    [
        (
            lambda r, qo, qt, t, g: r + g * (~t).float() * qt.max(-1, keepdim=True).values,
            "the plain DQN target",
        ),
        (
            lambda r, qo, qt, t, g: double_dqn_target(r, qt, qo, t, g),
            "the networks are swapped",
        ),
        (
            lambda r, qo, qt, t, g: r + g * (~t).float() * qo.max(-1, keepdim=True).values,
            "the online network both chooses and evaluates",
        ),
        (
            lambda r, qo, qt, t, g: double_dqn_target(r, qo, qt, torch.zeros_like(t), g),
            "a terminal transition is bootstrapped from",
        ),
    ],
    ids=["plain-dqn", "swapped", "online-both", "no-mask"],
)
def test_double_dqn_target_names_the_known_mistakes(wrong, message):
    text = message_of(check_double_dqn_target, wrong)
    assert "matches a known mistake: " + message in text
    assert "case 'the two networks disagree on the best action" in text
    assert "(DQN-3, eq-ddqn-target)" in text


def test_double_dqn_target_shape_and_sign():
    assert "opposite sign" in message_of(check_double_dqn_target, negate(double_dqn_target))
    text = message_of(check_double_dqn_target, lambda *a: double_dqn_target(*a).squeeze(-1))
    assert "should have shape [4, 1], got [4]" in text
    text = message_of(check_double_dqn_target, lambda r, qo, qt, t, g: r + g * qt * (~t).float())
    assert "got [4, 3]: one value per action" in text
    text = message_of(
        check_double_dqn_target,
        lambda r, qo, qt, t, g: r + g * (~t).float() * qt.gather(-1, qo.argmax(-1, True)).squeeze(),
    )
    assert "got [4, 4]: a [*B, 1] tensor plus a [*B] one broadcasts to [*B, B]" in text


def test_double_dqn_reference_is_dqn_loss_with_double_dqn():
    g = torch.Generator().manual_seed(0)
    reward = torch.randn(5, 1, generator=g)
    online, target = torch.randn(2, 5, 3, generator=g)
    term = torch.tensor([[False], [True], [False], [False], [True]])
    y = _dqn_loss_target(reward, online, target, term, term, 0.7, True)
    torch.testing.assert_close(y, double_dqn_target(reward, online, target, term, 0.7))
    y_plain = _dqn_loss_target(reward, online, target, term, term, 0.7, False)
    torch.testing.assert_close(y_plain, dqn_target(reward, target, term, term, 0.7))


# ------------------------------------------------------------------- chapter 8: C51


def c51_loop(next_probs, reward, not_terminated, gamma, support):
    """Algorithm 1 of Bellemare et al. as a loop, with the exact-landing fix."""
    n, k = next_probs.shape
    v_min, v_max = support[0].item(), support[-1].item()
    dz = (v_max - v_min) / (k - 1)
    m = torch.zeros(n, k)
    for i in range(n):
        for j in range(k):
            tz = reward[i, 0] + gamma * not_terminated[i, 0] * support[j]
            b = (min(max(tz.item(), v_min), v_max) - v_min) / dz
            lo, up = int(torch.tensor(b).floor()), int(torch.tensor(b).ceil())
            p = next_probs[i, j]
            if lo == up:
                m[i, lo] += p
            else:
                m[i, lo] += p * (up - b)
                m[i, up] += p * (b - lo)
    return m


def test_c51_projection_passes_and_prints(capsys):
    check_c51_projection(c51_loop)
    check_c51_projection(project_distribution, quiet=True)
    out = capsys.readouterr().out
    assert out == "✓ check_c51_projection: 4 cases agree with rlteach's reference.\n"


def test_the_mistake_variants_default_to_the_reference():
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(6, 11, generator=g), -1)
    reward, not_term = torch.randn(6, 1, generator=g) * 3, (torch.rand(6, 1) > 0.3).float()
    z = torch.linspace(-5.0, 5.0, 11)
    torch.testing.assert_close(
        _projection(p, reward, not_term, 0.9, z), project_distribution(p, reward, not_term, 0.9, z)
    )


def naive(p, r, nt, g, z):
    """C51-4 as printed: an exact landing loses its mass."""
    return _projection(p, r, nt, g, z, exact="lose")


def exact_twice(p, r, nt, g, z):
    return _projection(p, r, nt, g, z, exact="twice")


def unclamped(p, r, nt, g, z):
    return _projection(p, r, nt, g, z, clamp=False)


def ignores_terminal(p, r, nt, g, z):
    return c51_loop(p, r, torch.ones_like(nt), g, z)


def swapped(p, r, nt, g, z):
    return _projection(p, r, nt, g, z, swap=True)


def delta_z_over_k(p, r, nt, g, z):
    return _projection(p, r, nt, g, z, delta_z=(z[-1] - z[0]) / z.numel())


@pytest.mark.parametrize(
    "wrong, case, message",
    [
        (
            naive,
            "chapter 8's five-atom",
            "an atom that lands exactly on a support point loses its mass",
        ),
        (
            exact_twice,
            "chapter 8's five-atom",
            "an atom that lands exactly on a support point is counted twice",
        ),
        (
            unclamped,
            "four rows: terminal",
            "the mass of the atoms that land outside [V_MIN, V_MAX] is lost",
        ),
        (ignores_terminal, "four rows: terminal", "the terminal flag is ignored"),
        (swapped, "chapter 8, exercise 1", "the two shares are swapped"),
        (delta_z_over_k, "chapter 8's five-atom", "Δz is (V_MAX − V_MIN) / K"),
    ],
    ids=["exact-lost", "exact-twice", "no-clamp", "terminal", "swapped", "delta-z"],
)
def test_c51_projection_names_the_known_mistakes(wrong, case, message):
    text = message_of(check_c51_projection, wrong)
    assert f"m (case '{case}" in text
    assert "matches a known mistake: " + message in text
    assert "(C51-2 ... C51-4)" in text


def only_upper_shares(p, r, nt, g, z):
    """Only m_u += p_j (b_j − l) of C51-4: the lower shares forgotten."""
    dz = (z[-1] - z[0]) / (z.numel() - 1)
    b = ((r + nt * g * z).clamp(z[0], z[-1]) - z[0]) / dz
    return torch.zeros_like(p).scatter_add_(-1, b.ceil().long(), p * (b - b.floor()))


def test_c51_projection_reports_the_row_that_loses_mass():
    text = message_of(check_c51_projection, only_upper_shares)
    assert "m (case 'chapter 8's five-atom example" in text
    assert "m[0] sums to 0.2, not 1" in text and "Hint: T z_j = " in text


def test_c51_projection_shape_and_sign():
    assert "opposite sign everywhere" in message_of(check_c51_projection, negate(c51_loop))
    text = message_of(check_c51_projection, lambda *a: c51_loop(*a)[0])
    assert "should have shape [1, 5], got [5]" in text
    text = message_of(check_c51_projection, lambda *a: c51_loop(*a).T)
    assert "should have shape [1, 5], got [5, 1]" in text


def test_c51_projection_catches_nan():
    def normalised_per_atom(p, r, nt, g, z):  # 0 / 0 on the atoms that get no mass
        m = c51_loop(p, r, nt, g, z)
        return m / (m > 0)

    assert "NaN or inf" in message_of(check_c51_projection, normalised_per_atom)


def test_checkers_do_not_let_the_student_change_the_inputs():
    def in_place(p, r, nt, g, z):
        r.zero_()
        return c51_loop(p, r, nt, g, z)

    with pytest.raises(ExerciseError):
        check_c51_projection(in_place, quiet=True)
    check_c51_projection(c51_loop, quiet=True)
