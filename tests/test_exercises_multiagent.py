"""rlteach.exercises for chapters 14-15: a correct answer passes, each known mistake is named."""

import torch
from exercise_helpers import message_of, negate

from rlteach.exercises import (
    check_multiagent_gae,
    check_qmix_mixing,
    check_vdn_target,
)
from rlteach.exercises.multiagent import _mix, _qmixer_reference
from rlteach.modules import QMixer

# ------------------------------------------------------------------ chapter 14: multi-agent GAE


def magae_loop(gamma, lmbda, state_value, next_state_value, reward, done, terminated):
    """A student's multi-agent GAE from the equations: team signals broadcast, time at dim -3."""
    team = {
        "r": reward.unsqueeze(-2),
        "d": (~done).unsqueeze(-2).float(),
        "nt": (~terminated).unsqueeze(-2).float(),
    }
    advantage = torch.zeros_like(state_value)
    running = torch.zeros_like(state_value[..., 0, :, :])
    for t in reversed(range(state_value.shape[-3])):
        delta = (
            team["r"][..., t, :, :]
            + gamma * team["nt"][..., t, :, :] * next_state_value[..., t, :, :]
            - state_value[..., t, :, :]
        )
        running = delta + gamma * lmbda * team["d"][..., t, :, :] * running
        advantage[..., t, :, :] = running
    return advantage


def magae_variant(**changes):
    """magae_loop on altered inputs: each known mistake written the way a student would."""

    def fn(gamma, lmbda, v, nv, r, d, term):
        n = v.shape[-2]
        kw = dict(gamma=gamma, lmbda=lmbda, v=v, nv=nv, r=r, d=d, term=term)
        for key, change in changes.items():
            kw[key] = change(kw, n)
        return magae_loop(*kw.values())

    return fn


def test_multiagent_gae_accepts_a_correct_answer(capsys):
    check_multiagent_gae(magae_loop)
    assert "✓ check_multiagent_gae: 3 cases agree" in capsys.readouterr().out
    check_multiagent_gae(lambda *a: (magae_loop(*a), None), quiet=True)  # rlteach's tuple


def test_multiagent_gae_names_the_known_mistakes():
    expected = {
        "divided among the agents": magae_variant(r=lambda kw, n: kw["r"] / n),
        "summed over the agents": magae_variant(r=lambda kw, n: kw["r"] * n),
        "truncation (time limit) is treated as a termination": magae_variant(
            term=lambda kw, n: kw["d"]
        ),
        "terminal state is bootstrapped from": magae_variant(
            term=lambda kw, n: torch.zeros_like(kw["term"])
        ),
        "runs on across a truncation": magae_variant(d=lambda kw, n: kw["term"]),
        "values were mixed (averaged over the agent dim)": magae_variant(
            v=lambda kw, n: kw["v"].mean(-2, keepdim=True).expand_as(kw["v"]),
            nv=lambda kw, n: kw["nv"].mean(-2, keepdim=True).expand_as(kw["v"]),
        ),
    }
    for phrase, fn in expected.items():
        text = message_of(check_multiagent_gae, fn)
        assert "matches a known mistake" in text and phrase in text, (phrase, text)

    def standardised(*args):
        adv = magae_loop(*args)
        dims = [d for d in range(adv.ndim) if d != adv.ndim - 2]
        mean = adv.mean(dim=dims, keepdim=True)
        return (adv - mean) / adv.std(dim=dims, keepdim=True).clamp_min(1e-4)

    assert "standardised per agent (MAGAE-3)" in message_of(check_multiagent_gae, standardised)

    def time_along_agents(gamma, lmbda, v, nv, r, d, term):  # the default time_dim=-2
        from rlteach.value import generalized_advantage_estimate

        team = [x.unsqueeze(-2).expand_as(v) for x in (r, d, term)]
        return generalized_advantage_estimate(gamma, lmbda, v, nv, *team)[0]

    assert "ran along the agent dim" in message_of(check_multiagent_gae, time_along_agents)


def test_multiagent_gae_a_missing_broadcast_is_named_or_explained():
    def no_broadcast(gamma, lmbda, v, nv, r, d, term):
        adv, running = torch.zeros_like(v), torch.zeros_like(v[..., 0, :, :])
        for t in reversed(range(v.shape[-3])):
            delta = r[..., t, :] + gamma * (~term[..., t, :]).float() * nv[..., t, :, :]
            running = delta - v[..., t, :, :] + gamma * lmbda * (~d[..., t, :]).float() * running
            adv[..., t, :, :] = running
        return adv

    # right on one rollout by luck, silently wrong when the batch size equals the agent count
    text = message_of(check_multiagent_gae, no_broadcast)
    assert "case 'two rollouts of two agents" in text
    assert "not broadcast along the agent dim" in text and "rollout i's reward" in text

    def whole_tensors(gamma, lmbda, v, nv, r, d, term):  # [B, T, 1] + [B, T, n, 1] fails
        return magae_loop(gamma, lmbda, v, nv, r, d, term) + r * 0

    text = message_of(check_multiagent_gae, whole_tensors)
    assert "raised RuntimeError" in text and "reward.unsqueeze(-2)" in text


def test_multiagent_gae_shape_sign_and_shift():
    text = message_of(check_multiagent_gae, lambda *a: magae_loop(*a).mean(-2))
    assert "has the team's shape [5, 1]; one advantage per agent is expected, [5, 3, 1]" in text
    assert "should have shape [5, 3, 1], got [5, 3]" in message_of(
        check_multiagent_gae, lambda *a: magae_loop(*a).squeeze(-1)
    )
    assert "opposite sign" in message_of(check_multiagent_gae, negate(magae_loop))

    def shifted(*args):
        out = magae_loop(*args)
        return torch.cat([out[1:], torch.zeros_like(out[:1])])

    assert "shifted by one time step" in message_of(check_multiagent_gae, shifted)
    assert "NaN or inf" in message_of(check_multiagent_gae, lambda *a: magae_loop(*a) / 0)


# ------------------------------------------------------------------- chapter 15: QMIX mixing


def qmix_mixing(agent_qs, w1, b1, w2, b2, act=torch.nn.functional.elu):
    hidden = act(torch.bmm(agent_qs.transpose(1, 2), w1.abs()) + b1.unsqueeze(1))
    return torch.bmm(hidden, w2.abs()).squeeze(1) + b2


def test_qmixer_reference_is_the_formula_and_the_module():
    g = torch.Generator().manual_seed(0)
    args = (
        torch.randn(5, 3, 1, generator=g),
        torch.randn(5, 3, 4, generator=g),
        torch.randn(5, 4, generator=g),
        torch.randn(5, 4, 1, generator=g),
        torch.randn(5, 1, generator=g),
    )
    torch.testing.assert_close(_qmixer_reference(*args), qmix_mixing(*args))
    torch.testing.assert_close(_mix(*args), qmix_mixing(*args))
    # and a QMixer's own mix agrees with the formula applied to its hypernetworks' outputs
    torch.manual_seed(0)
    mixer = QMixer(state_shape=(3,), mixing_embed_dim=4, n_agents=2)
    q, s = torch.randn(6, 2, 1), torch.randn(6, 3)
    raw = (
        mixer.hyper_w_1(s).view(6, 2, 4),
        mixer.hyper_b_1(s),
        mixer.hyper_w_final(s).view(6, 4, 1),
        mixer.V(s),
    )
    torch.testing.assert_close(mixer(q, s), qmix_mixing(q, *raw))


def test_qmix_mixing_accepts_a_correct_answer(capsys):
    check_qmix_mixing(qmix_mixing)
    assert "✓ check_qmix_mixing: 3 cases agree" in capsys.readouterr().out


def test_qmix_mixing_names_the_known_mistakes():
    elu, relu = torch.nn.functional.elu, torch.nn.functional.relu

    def no_abs(q, w1, b1, w2, b2):
        return (
            torch.bmm(elu(torch.bmm(q.transpose(1, 2), w1) + b1.unsqueeze(1)), w2).squeeze(1) + b2
        )

    def abs_all(q, w1, b1, w2, b2):
        return qmix_mixing(q, w1, b1.abs(), w2, b2.abs())

    def bias_after(q, w1, b1, w2, b2):
        hidden = elu(torch.bmm(q.transpose(1, 2), w1.abs())) + b1.unsqueeze(1)
        return torch.bmm(hidden, w2.abs()).squeeze(1) + b2

    expected = {
        "no absolute value on the weights": no_abs,
        "W1 is used without its absolute value": lambda q, w1, b1, w2, b2: (
            torch.bmm(elu(torch.bmm(q.transpose(1, 2), w1) + b1.unsqueeze(1)), w2.abs()).squeeze(1)
            + b2
        ),
        "W2 is used without its absolute value": lambda q, w1, b1, w2, b2: (
            torch.bmm(elu(torch.bmm(q.transpose(1, 2), w1.abs()) + b1.unsqueeze(1)), w2).squeeze(1)
            + b2
        ),
        "ReLU instead of ELU": lambda *a: qmix_mixing(*a, act=relu),
        "no activation between the two layers": lambda *a: qmix_mixing(*a, act=lambda x: x),
        "absolute values on the biases too": abs_all,
        "b1 is added after the ELU": bias_after,
        "b2 = V(s) is missing": lambda q, w1, b1, w2, b2: qmix_mixing(q, w1, b1, w2, b2) - b2,
    }
    for phrase, fn in expected.items():
        text = message_of(check_qmix_mixing, fn)
        assert "matches a known mistake" in text and phrase in text, (phrase, text)


def test_qmix_mixing_shape_and_sign():
    text = message_of(check_qmix_mixing, lambda *a: qmix_mixing(*a).squeeze(-1))
    assert "should have shape [1, 1], got [1]" in text
    assert "should have shape [1, 1], got [1, 1, 1]" in message_of(
        check_qmix_mixing, lambda *a: qmix_mixing(*a).unsqueeze(-1)
    )
    assert "opposite sign" in message_of(check_qmix_mixing, negate(qmix_mixing))


# ---------------------------------------------------------------------- chapter 15: VDN target


def vdn_target(gamma, next_action_values, reward, done, terminated):
    best = next_action_values.max(-1).values.sum(-1, keepdim=True)
    return reward + gamma * (~terminated).float() * best


def test_vdn_target_accepts_a_correct_answer(capsys):
    check_vdn_target(vdn_target)
    assert "✓ check_vdn_target: 2 cases agree" in capsys.readouterr().out


def test_vdn_target_names_the_known_mistakes():
    def mask(term, q, reduce):
        return lambda g, qs, r, d, t: r + g * (~term(d, t)).float() * reduce(qs)

    def best_sum(q):
        return q.max(-1).values.sum(-1, keepdim=True)

    expected = {
        "truncation (time limit) is treated as a termination": mask(lambda d, t: d, None, best_sum),
        "terminal state is bootstrapped from": mask(
            lambda d, t: torch.zeros_like(t), None, best_sum
        ),
        "mean over the agents instead of the sum": mask(
            lambda d, t: t, None, lambda q: q.max(-1).values.mean(-1, keepdim=True)
        ),
        "summed over the actions": mask(
            lambda d, t: t, None, lambda q: q.sum((-2, -1)).unsqueeze(-1)
        ),
        "only the best agent's value": mask(
            lambda d, t: t, None, lambda q: q.flatten(1).max(-1, keepdim=True).values
        ),
        "the dims are swapped": mask(
            lambda d, t: t, None, lambda q: q.max(-2).values.sum(-1, keepdim=True)
        ),
    }
    for phrase, fn in expected.items():
        text = message_of(check_vdn_target, fn)
        assert "matches a known mistake" in text and phrase in text, (phrase, text)


def test_vdn_target_shape_and_sign():
    assert "should have shape [3, 1], got [3]" in message_of(
        check_vdn_target, lambda *a: vdn_target(*a).squeeze(-1)
    )
    assert "opposite sign" in message_of(check_vdn_target, negate(vdn_target))
    text = message_of(check_vdn_target, lambda g, q, r, d, t: vdn_target(g, q, r, d, t) + r)
    assert "y (case 'three transitions" in text and "[2, 0] should be 8, got 16" in text
