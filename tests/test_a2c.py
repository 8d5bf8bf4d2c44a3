"""A2CLoss: a hand-computed case, TorchRL parity (outputs and gradients), bad input."""

from __future__ import annotations

import math

import pytest
import torch
from pg_fixtures import (
    ACT,
    OBS,
    TOL,
    assert_parity,
    grads,
    hand_nets,
    make_batch,
    make_nets,
    make_shared_nets,
)
from tensordict import TensorDict
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from torch import nn
from torch.distributions import Categorical

from rlteach.modules import (
    TanhNormal,
    make_value_network,
)
from rlteach.objectives import A2CLoss
from rlteach.objectives.a2c import entropy, has_closed_form_entropy
from rlteach.objectives.reinforce import estimate_advantage
from rlteach.value import ValueEstimators, VTrace

torchrl_objectives = pytest.importorskip("torchrl.objectives")
TorchRLA2C = torchrl_objectives.A2CLoss


# ----------------------------------------------------------------------------- hand computed


def test_hand_computed_two_action_softmax():
    # pi = softmax([0, ln 3]) = [1/4, 3/4]; actions (0, 1), advantages (2, -1).
    # loss_objective = -(1/2)(2 ln(1/4) - ln(3/4)) = ln(12)/2, gradient (-7/8, 7/8)
    # entropy H = -(1/4 ln 1/4 + 3/4 ln 3/4) = ln 4 - (3/4) ln 3; loss_entropy = -0.01 H
    # dH/dtheta_1 = -dH/dtheta_0 = -p0 p1 (ln p1 - ln p0) = -(3/16) ln 3
    # critic V = w = 0.5, targets (1, 2), l2, critic_coeff 0.5:
    # loss_critic = 0.5 (0.25 + 2.25)/2 = 0.625, d/dw = 0.5 * mean(-2 (G - w)) = -1
    actor, critic = hand_nets()  # pi = softmax([0, ln 3]), V = 0.5
    td = TensorDict(
        {
            "observation": torch.zeros(2, 1),
            "action": torch.tensor([0, 1]),
            "advantage": torch.tensor([[2.0], [-1.0]]),
            "value_target": torch.tensor([[1.0], [2.0]]),
        },
        batch_size=[2],
    )
    out = A2CLoss(actor, critic, loss_critic_type="l2", critic_coeff=0.5)(td)
    theta, w = actor[0].module.theta, critic.module.w
    h = math.log(4.0) - 0.75 * math.log(3.0)
    assert out["loss_objective"].item() == pytest.approx(math.log(12.0) / 2, abs=1e-6)
    assert out["entropy"].item() == pytest.approx(h, abs=1e-6)
    assert out["loss_entropy"].item() == pytest.approx(-0.01 * h, abs=1e-7)
    assert out["loss_critic"].item() == pytest.approx(0.625, abs=1e-6)
    (g,) = torch.autograd.grad(out["loss_objective"], [theta], retain_graph=True)
    torch.testing.assert_close(g, torch.tensor([-7 / 8, 7 / 8]))
    (g,) = torch.autograd.grad(out["loss_entropy"], [theta], retain_graph=True)
    dh = 3 / 16 * math.log(3.0)
    torch.testing.assert_close(g, -0.01 * torch.tensor([dh, -dh]))
    (g,) = torch.autograd.grad(out["loss_critic"], [w])
    torch.testing.assert_close(g, torch.tensor([-1.0]))


def test_monte_carlo_entropy_is_unbiased_for_a_normal_squashed_to_the_identity_region():
    # Near loc = 0 with a tiny scale, tanh is almost the identity, so the entropy of the
    # TanhNormal is close to that of the Gaussian: 1/2 ln(2 pi e sigma^2) per dimension.
    dist = TanhNormal(torch.zeros(2), torch.full((2,), 1e-3))
    assert not has_closed_form_entropy(dist)
    torch.manual_seed(0)
    h = entropy(dist, 4000)
    expected = 2 * 0.5 * math.log(2 * math.pi * math.e * 1e-6)
    assert h.shape == (1,)
    assert h.item() == pytest.approx(expected, abs=0.05)


# ----------------------------------------------------------------------------- TorchRL parity


@pytest.mark.parametrize("family", ["categorical", "tanh_normal", "normal"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(6,), (3, 4)], ids=["B", "BT"])
@pytest.mark.parametrize("precomputed", [True, False], ids=["adv", "no_adv"])
def test_parity(family, reduction, shape, precomputed):
    actor, critic = make_nets(family)
    td = make_batch(family, shape, precomputed=precomputed)
    out = assert_parity(
        A2CLoss(actor, critic, reduction=reduction),
        TorchRLA2C(actor, critic, reduction=reduction),
        td,
        actor,
        critic,
    )
    expected = list(shape) if reduction == "none" else []
    assert list(out["loss_objective"].shape) == expected
    assert out["entropy"].shape == ()  # always a plain mean, for logging


@pytest.mark.parametrize("loss_critic_type", ["l1", "l2", "smooth_l1"])
@pytest.mark.parametrize("family", ["categorical", "tanh_normal"])
def test_parity_loss_critic_type(loss_critic_type, family):
    actor, critic = make_nets(family)
    td = make_batch(family, (3, 4), precomputed=False)
    td["next", "reward"] *= 4  # targets far from V, so smooth_l1's linear part is exercised
    kwargs = {"loss_critic_type": loss_critic_type, "critic_coeff": 0.7}
    assert_parity(A2CLoss(actor, critic, **kwargs), TorchRLA2C(actor, critic, **kwargs), td,
                  actor, critic)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"critic_coeff": None},
        {"entropy_bonus": False},
        {"entropy_coeff": 0.0},
        {"entropy_coeff": 0.3, "samples_mc_entropy": 7},
        {"clip_value": 0.1},
        {"critic_coeff": None, "clip_value": 0.1},
    ],
    ids=str,
)
@pytest.mark.parametrize("family", ["categorical", "tanh_normal"])
@pytest.mark.parametrize("precomputed", [True, False], ids=["adv", "no_adv"])
def test_parity_options(kwargs, family, precomputed):
    actor, critic = make_nets(family)
    td = make_batch(family, (3, 4), precomputed=precomputed)
    out = assert_parity(A2CLoss(actor, critic, **kwargs), TorchRLA2C(actor, critic, **kwargs),
                        td, actor, critic)
    assert ("loss_critic" in out.keys()) == (kwargs.get("critic_coeff", 1.0) is not None)
    has_entropy = kwargs.get("entropy_bonus", True) and kwargs.get("entropy_coeff", 0.01) != 0
    assert ("loss_entropy" in out.keys()) == has_entropy
    loss, ref = A2CLoss(actor, critic, **kwargs), TorchRLA2C(actor, critic, **kwargs)
    assert set(out.keys()) - {"value_clip_fraction"} == set(loss.out_keys)
    assert list(loss.out_keys) == list(ref.out_keys)
    assert set(loss.in_keys) == set(ref.in_keys)


@pytest.mark.parametrize("value_type", [ValueEstimators.TD0, ValueEstimators.TD1])
def test_parity_other_estimators(value_type):
    actor, critic = make_nets("categorical")
    ours = A2CLoss(actor, critic)
    ours.make_value_estimator(value_type, gamma=0.9)
    theirs = TorchRLA2C(actor, critic)
    theirs.make_value_estimator(getattr(torchrl_objectives.ValueEstimators, value_type.name),
                                gamma=0.9)
    assert_parity(ours, theirs, make_batch("categorical", (3, 4), precomputed=False), actor, critic)


@pytest.mark.parametrize("separate_losses", [False, True])
def test_parity_separate_losses(separate_losses):
    actor, critic = make_shared_nets()
    td = make_batch("categorical", (3, 4), precomputed=False)
    out = assert_parity(
        A2CLoss(actor, critic, separate_losses=separate_losses),
        TorchRLA2C(actor, critic, separate_losses=separate_losses),
        td,
        actor,
        critic,
    )
    trunk_weight = actor[0].module.weight
    g = grads(out, "loss_critic", [trunk_weight])[0]
    assert (g.abs().sum() == 0) if separate_losses else (g.abs().sum() > 0)


def test_advantage_with_a_graph_is_differentiated_through_like_torchrl():
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=True)
    scale = torch.tensor(2.0, requires_grad=True)
    td["advantage"] = td["advantage"] * scale
    ours = A2CLoss(actor, critic)(td.clone())["loss_objective"]
    ref = TorchRLA2C(actor, critic)(td.clone())["loss_objective"]
    (g_ours,) = torch.autograd.grad(ours, [scale], retain_graph=True)
    (g_ref,) = torch.autograd.grad(ref, [scale])
    assert g_ours.abs() > 0
    torch.testing.assert_close(g_ours, g_ref, atol=TOL, rtol=TOL)


def test_action_log_prob_is_not_read():
    # Like TorchRL, the score is recomputed from the stored action under the current policy.
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=True)
    ref = A2CLoss(actor, critic)(td.clone())
    out = A2CLoss(actor, critic)(td.exclude("action_log_prob"))
    torch.testing.assert_close(out["loss_objective"], ref["loss_objective"])


def test_caller_batch_is_not_modified():
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=False)
    keys = set(td.keys(True, True))
    A2CLoss(actor, critic)(td)
    assert set(td.keys(True, True)) == keys  # no advantage / value_target written back


def test_action_key_follows_the_actor():
    torch.manual_seed(0)
    net = TensorDictModule(nn.Linear(OBS, ACT), in_keys=["observation"], out_keys=["logits"])
    head = ProbabilisticTensorDictModule(
        in_keys=["logits"], out_keys=["move"], distribution_class=Categorical,
        return_log_prob=True,
    )
    actor = ProbabilisticTensorDictSequential(net, head)
    critic = make_value_network(OBS, (8,))
    loss = A2CLoss(actor, critic)
    assert loss.tensor_keys.action == "move"
    assert loss.tensor_keys.sample_log_prob == TorchRLA2C(actor, critic).tensor_keys.sample_log_prob
    td = make_batch("categorical", (3, 4), precomputed=True)
    td.rename_key_("action", "move")
    ref = TorchRLA2C(actor, critic)(td.clone())
    torch.testing.assert_close(loss(td)["loss_objective"], ref["loss_objective"])


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
        (("next", "done"), r"\('next', 'done'\).*set_keys\(done="),
    ],
)
def test_missing_key_names_it_and_the_fix(drop, match):
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=drop in ("action", "value_target"))
    _unchanged_after(A2CLoss(actor, critic), td.exclude(drop), KeyError, match)


def test_value_target_not_needed_without_critic_loss():
    actor, critic = make_nets("categorical")
    td = make_batch("categorical", (3, 4), precomputed=True).exclude("value_target")
    out = A2CLoss(actor, critic, critic_coeff=None)(td)
    assert "loss_critic" not in out.keys()


def test_nan_advantage_refused_before_anything_changes():
    actor, critic = make_nets("tanh_normal")
    td = make_batch("tanh_normal", (3, 4), precomputed=True)
    td["advantage"][2, 1] = float("nan")
    _unchanged_after(A2CLoss(actor, critic), td, ValueError, r"advantage.*NaN")


def test_action_requiring_grad_is_refused():
    actor, critic = make_nets("tanh_normal")
    td = make_batch("tanh_normal", (3, 4), precomputed=True)
    td["action"] = td["action"].requires_grad_()
    with pytest.raises(RuntimeError, match="requires grad"):
        A2CLoss(actor, critic)(td)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"loss_critic_type": "l3"}, ValueError, r"Unknown loss_critic_type 'l3'.*'smooth_l1'"),
        ({"reduction": "avg"}, ValueError, r"Unknown reduction 'avg'.*'mean'"),
        ({"clip_value": 0.0}, ValueError, r"clip_value must satisfy 0.0 < clip_value"),
        ({"samples_mc_entropy": 0}, ValueError, r"samples_mc_entropy must satisfy 1 <="),
        ({"samples_mc_entropy": 2.5}, ValueError, r"samples_mc_entropy must be an int"),
        ({"entropy_coeff": float("nan")}, ValueError, r"entropy_coeff must be a real number"),
        ({"gamma": 0.9}, TypeError, r"make_value_estimator"),
        ({"advantage_norm": object()}, NotImplementedError, r"average_gae=True"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, match):
    actor, critic = make_nets("categorical")
    with pytest.raises(exc, match=match):
        A2CLoss(actor, critic, **kwargs)


def test_missing_network():
    _, critic = make_nets("categorical")
    with pytest.raises(TypeError, match="actor_network"):
        A2CLoss(critic_network=critic)


def test_vtrace_policy_sample_matches_torchrl_and_default_uses_taken_action():
    actor, critic = make_nets("tanh_normal")
    td = make_batch("tanh_normal", (3, 4), precomputed=False)
    theirs = TorchRLA2C(actor, critic)
    theirs.make_value_estimator(torchrl_objectives.ValueEstimators.VTrace)
    # TorchRL's behaviour on request: log pi at the policy's deterministic action
    ours = A2CLoss(actor, critic).make_value_estimator("vtrace", log_pi_of="policy_sample")
    assert_parity(ours, theirs, td, actor, critic)
    # rlteach's default (the paper): log pi at the stored action, so the advantage differs
    default = A2CLoss(actor, critic).make_value_estimator("vtrace")
    x, y = td.clone(), td.clone()
    estimate_advantage(default, x)
    estimate_advantage(ours, y)
    standalone = VTrace(gamma=0.99, value_network=critic, actor_network=actor)
    ref = standalone(td.clone())
    torch.testing.assert_close(x["advantage"], ref["advantage"])
    assert not torch.allclose(x["advantage"], y["advantage"], atol=1e-3)


def test_vtrace_missing_action_log_prob_names_it():
    actor, critic = make_nets("tanh_normal")
    td = make_batch("tanh_normal", (3, 4), precomputed=False).exclude("action_log_prob")
    loss = A2CLoss(actor, critic).make_value_estimator("vtrace")
    _unchanged_after(loss, td, KeyError, r"'action_log_prob'.*set_keys\(sample_log_prob=")
