"""ReinforceLoss: a hand-computed case, TorchRL parity (outputs and gradients), bad input."""

from __future__ import annotations

import math

import pytest
import torch
from pg_fixtures import (
    TOL,
    assert_parity,
    grads,
    hand_nets,
    make_batch,
    make_nets,
    make_shared_nets,
)
from tensordict import TensorDict

from rlteach.objectives import ReinforceLoss
from rlteach.objectives.reinforce import estimate_advantage
from rlteach.value import ValueEstimators, VTrace

torchrl_objectives = pytest.importorskip("torchrl.objectives")
TorchRLReinforce = torchrl_objectives.ReinforceLoss


# ----------------------------------------------------------------------------- hand computed


def hand_batch():
    return TensorDict(
        {
            "observation": torch.zeros(2, 1),
            "action": torch.tensor([0, 1]),
            "advantage": torch.tensor([[2.0], [-1.0]]),
            "value_target": torch.tensor([[1.0], [2.0]]),
        },
        batch_size=[2],
    )


def test_hand_computed_two_action_softmax():
    # pi = softmax([0, ln 3]) = [1/4, 3/4]; actions (0, 1) with advantages (2, -1).
    # loss_actor = -(1/2)(2 ln(1/4) - ln(3/4)) = (1/2)(ln 4 + ln 3) = ln(12)/2
    # d log pi(a)/d theta = e_a - pi: a=0 -> (3/4, -3/4), a=1 -> (-1/4, 1/4)
    # d loss_actor/d theta = -(1/2)(2 (3/4, -3/4) - (-1/4, 1/4)) = (-7/8, 7/8)
    # critic V = w = 0.5, targets (1, 2), "l2": loss_value = (0.5^2 + 1.5^2)/2 = 1.25,
    # d/dw = mean(-2 (G - w)) = -(1 + 3)/2 = -2
    actor, critic = hand_nets()
    loss = ReinforceLoss(actor, critic, loss_critic_type="l2")
    out = loss(hand_batch())
    assert out["loss_actor"].item() == pytest.approx(math.log(12.0) / 2, abs=1e-6)
    assert out["loss_value"].item() == pytest.approx(1.25, abs=1e-6)
    (g_theta,) = torch.autograd.grad(out["loss_actor"], [actor[0].module.theta])
    torch.testing.assert_close(g_theta, torch.tensor([-7 / 8, 7 / 8]))
    (g_w,) = torch.autograd.grad(out["loss_value"], [critic.module.w])
    torch.testing.assert_close(g_w, torch.tensor([-2.0]))
    # the policy loss does not reach the critic, the value loss does not reach the actor
    assert out["loss_actor"].grad_fn is not None
    (g_w_actor,) = torch.autograd.grad(
        loss(hand_batch())["loss_actor"], [critic.module.w], allow_unused=True
    )
    assert g_w_actor is None


def test_hand_computed_smooth_l1_and_sum():
    # d = G - w = (0.5, 1.5): smooth_l1 = (0.5 * 0.25, 1.5 - 0.5) = (0.125, 1.0), sum 1.125;
    # gradient wrt w: -(0.5) + -(1) = -1.5
    actor, critic = hand_nets()
    out = ReinforceLoss(actor, critic, reduction="sum")(hand_batch())
    assert out["loss_value"].item() == pytest.approx(1.125, abs=1e-6)
    assert out["loss_actor"].item() == pytest.approx(math.log(12.0), abs=1e-6)
    (g_w,) = torch.autograd.grad(out["loss_value"], [critic.module.w])
    torch.testing.assert_close(g_w, torch.tensor([-1.5]))


# ----------------------------------------------------------------------------- TorchRL parity


@pytest.mark.parametrize("family", ["categorical", "tanh_normal", "normal"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(6,), (3, 4)], ids=["B", "BT"])
@pytest.mark.parametrize("precomputed", [True, False], ids=["adv", "no_adv"])
def test_parity(family, reduction, shape, precomputed):
    actor, critic = make_nets(family)
    td = make_batch(family, shape, precomputed=precomputed)
    out = assert_parity(
        ReinforceLoss(actor, critic, reduction=reduction),
        TorchRLReinforce(actor, critic, reduction=reduction),
        td,
        actor,
        critic,
    )
    expected = list(shape) if reduction == "none" else []
    assert list(out["loss_actor"].shape) == expected


@pytest.mark.parametrize("loss_critic_type", ["l1", "l2", "smooth_l1"])
@pytest.mark.parametrize("family", ["categorical", "tanh_normal"])
def test_parity_loss_critic_type(loss_critic_type, family):
    actor, critic = make_nets(family)
    td = make_batch(family, (3, 4), precomputed=False)
    td["next", "reward"] *= 4  # targets far from V, so smooth_l1's linear part is exercised
    assert_parity(
        ReinforceLoss(actor, critic, loss_critic_type=loss_critic_type),
        TorchRLReinforce(actor, critic, loss_critic_type=loss_critic_type),
        td,
        actor,
        critic,
    )


@pytest.mark.parametrize("precomputed", [True, False], ids=["adv", "no_adv"])
def test_parity_clip_value(precomputed):
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=precomputed)
    out = assert_parity(
        ReinforceLoss(actor, critic, clip_value=0.1),
        TorchRLReinforce(actor, critic, clip_value=0.1),
        td,
        actor,
        critic,
    )
    # With random old values most predictions are clipped; with values just computed by the
    # current critic nothing is.
    assert (out["value_clip_fraction"] > 0.5) if precomputed else (out["value_clip_fraction"] == 0)


@pytest.mark.parametrize("value_type", [ValueEstimators.TD0, ValueEstimators.TDLambda])
def test_parity_other_estimators(value_type):
    actor, critic = make_nets("categorical")
    ours = ReinforceLoss(actor, critic)
    ours.make_value_estimator(value_type, gamma=0.9)
    theirs = TorchRLReinforce(actor, critic)
    theirs.make_value_estimator(getattr(torchrl_objectives.ValueEstimators, value_type.name),
                                gamma=0.9)
    assert_parity(ours, theirs, make_batch("categorical", (3, 4), precomputed=False), actor, critic)


@pytest.mark.parametrize("separate_losses", [False, True])
def test_parity_separate_losses(separate_losses):
    actor, critic = make_shared_nets()
    td = make_batch("categorical", (3, 4), precomputed=False)
    out = assert_parity(
        ReinforceLoss(actor, critic, separate_losses=separate_losses),
        TorchRLReinforce(actor, critic, separate_losses=separate_losses),
        td,
        actor,
        critic,
    )
    trunk_weight = actor[0].module.weight
    g = grads(out, "loss_value", [trunk_weight])[0]
    assert (g.abs().sum() == 0) if separate_losses else (g.abs().sum() > 0)


def test_keys_match_torchrl():
    actor, critic = make_nets("categorical")
    loss, ref = ReinforceLoss(actor, critic), TorchRLReinforce(actor, critic)
    assert list(loss.out_keys) == list(ref.out_keys)
    assert set(loss.in_keys) == set(ref.in_keys)
    assert loss.tensor_keys.sample_log_prob == ref.tensor_keys.sample_log_prob


def test_estimated_advantage_written_into_input_like_torchrl():
    actor, critic = make_nets("categorical")
    td, td_ref = (make_batch("categorical", (3, 4), precomputed=False) for _ in range(2))
    ReinforceLoss(actor, critic)(td)
    TorchRLReinforce(actor, critic)(td_ref)
    for key in ("advantage", "value_target", "state_value"):
        torch.testing.assert_close(td[key], td_ref[key], atol=TOL, rtol=TOL)
        assert not td[key].requires_grad


def test_set_keys_renames_inputs():
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=True)
    ref = ReinforceLoss(actor, critic)(td.clone())
    td.rename_key_("advantage", "adv")
    td.rename_key_("value_target", "ret")
    out = ReinforceLoss(actor, critic).set_keys(advantage="adv", value_target="ret")(td)
    torch.testing.assert_close(out["loss_actor"], ref["loss_actor"])
    torch.testing.assert_close(out["loss_value"], ref["loss_value"])


def test_action_log_prob_is_not_read():
    # Like TorchRL, the score is recomputed from the stored action: the behaviour policy's
    # log-prob is neither needed nor used.
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=True)
    ref = ReinforceLoss(actor, critic)(td.clone())
    out = ReinforceLoss(actor, critic)(td.exclude("action_log_prob"))
    torch.testing.assert_close(out["loss_actor"], ref["loss_actor"])


# ----------------------------------------------------------------------------- bad input


def _unchanged_after(loss, td, exc, match):
    """The call raises, and neither the parameters nor the batch have changed."""
    before = [p.detach().clone() for p in loss.parameters()]
    snapshot = td.clone()
    with pytest.raises(exc, match=match):
        loss(td)
    for p, b in zip(loss.parameters(), before, strict=True):
        assert torch.equal(p, b) and p.grad is None
    assert set(td.keys(True, True)) == set(snapshot.keys(True, True))
    for key in snapshot.keys(True, True):
        torch.testing.assert_close(td[key], snapshot[key], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize(
    ("drop", "match"),
    [
        ("action", r"'action'.*set_keys\(action="),
        ("value_target", r"'value_target'.*set_keys\(value_target="),
        (("next", "reward"), r"\('next', 'reward'\).*set_keys\(reward="),
    ],
)
def test_missing_key_names_it_and_the_fix(drop, match):
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=drop != ("next", "reward"))
    _unchanged_after(ReinforceLoss(actor, critic), td.exclude(drop), KeyError, match)


def test_nan_advantage_refused_before_anything_changes():
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=True)
    td["advantage"][0, 0] = float("nan")
    _unchanged_after(ReinforceLoss(actor, critic), td, ValueError, r"advantage.*NaN")


def test_nan_reward_refused_before_the_estimator_writes():
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=False)
    td["next", "reward"][1, 2] = float("nan")
    _unchanged_after(ReinforceLoss(actor, critic), td, ValueError, r"reward.*NaN")


def test_nan_observation_refused_before_the_estimator_writes():
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=False)
    td["next", "observation"][0, 3, 1] = float("nan")
    _unchanged_after(ReinforceLoss(actor, critic), td, ValueError, r"observation.*NaN")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"loss_critic_type": "l3"}, ValueError, r"Unknown loss_critic_type 'l3'.*'smooth_l1'"),
        ({"reduction": "avg"}, ValueError, r"Unknown reduction 'avg'.*'mean'"),
        ({"clip_value": -0.2}, ValueError, r"clip_value must satisfy 0.0 < clip_value"),
        ({"gamma": 0.9}, TypeError, r"make_value_estimator"),
        ({"delay_value": True, "functional": False}, RuntimeError, r"delay_value"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, match):
    actor, critic = make_nets("categorical")
    with pytest.raises(exc, match=match):
        ReinforceLoss(actor, critic, **kwargs)


def test_missing_network():
    actor, _ = make_nets("categorical")
    with pytest.raises(TypeError, match="critic_network"):
        ReinforceLoss(actor)


def test_unsupported_estimator():
    actor, critic = make_nets("categorical")
    with pytest.raises(ValueError, match="Unknown value estimator"):
        ReinforceLoss(actor, critic).make_value_estimator("td2")


def test_vtrace_policy_sample_matches_torchrl_and_default_uses_taken_action():
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=False)
    theirs = TorchRLReinforce(actor, critic)
    theirs.make_value_estimator(torchrl_objectives.ValueEstimators.VTrace)
    # TorchRL's behaviour on request: log pi at the policy's deterministic action
    ours = ReinforceLoss(actor, critic).make_value_estimator("vtrace", log_pi_of="policy_sample")
    assert_parity(ours, theirs, td, actor, critic)
    # rlteach's default (the paper): log pi at the stored action, so the advantage differs
    default = ReinforceLoss(actor, critic).make_value_estimator("vtrace")
    x, y = td.clone(), td.clone()
    estimate_advantage(default, x)
    estimate_advantage(ours, y)
    standalone = VTrace(gamma=0.99, value_network=critic, actor_network=actor)
    ref = standalone(td.clone())
    torch.testing.assert_close(x["advantage"], ref["advantage"])
    assert not torch.allclose(x["advantage"], y["advantage"], atol=1e-3)


def test_vtrace_missing_action_log_prob_names_it():
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=False).exclude("action_log_prob")
    loss = ReinforceLoss(actor, critic).make_value_estimator("vtrace")
    _unchanged_after(loss, td, KeyError, r"'action_log_prob'.*set_keys\(sample_log_prob=")


@pytest.mark.parametrize("value_type", ["gae", "td0", "td_lambda"])
def test_parity_delay_value(value_type):
    """Issue 22: delay_value=True bootstraps V(s') from a target critic (a frozen copy made at
    construction), V(s) from the critic, as TorchRL; it used to raise NotImplementedError."""
    actor, critic = make_nets("categorical")
    ours = ReinforceLoss(actor, critic, delay_value=True)
    theirs = TorchRLReinforce(actor, critic, delay_value=True)
    for loss, kinds in ((ours, ValueEstimators), (theirs, torchrl_objectives.ValueEstimators)):
        name = {"gae": "GAE", "td0": "TD0", "td_lambda": "TDLambda"}[value_type]
        loss.make_value_estimator(getattr(kinds, name), gamma=0.9)
    with torch.no_grad():  # the critic moves on; both targets stay where they were
        for p in critic.parameters():
            p.add_(0.5 * torch.randn_like(p))
    td = make_batch("categorical", (3, 4), precomputed=False)
    assert_parity(ours, theirs, td, actor, critic)
    # the target network is what makes the difference
    undelayed = ReinforceLoss(actor, critic).make_value_estimator(value_type, gamma=0.9)
    delayed_td, undelayed_td = td.clone(), td.clone()
    ours(delayed_td)
    undelayed(undelayed_td)
    assert not torch.allclose(delayed_td["advantage"], undelayed_td["advantage"])
    assert [name for name, _, _ in ours.target_network_pairs()] == ["critic_network"]
