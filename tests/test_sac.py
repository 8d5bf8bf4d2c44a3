"""SACLoss and Temperature: TorchRL parity (outputs and gradients), hand-computed cases, errors.

How parity is made exact: SAC draws Gaussian noise for its actions. Both losses are handed the
*same* actor object (rlteach's TanhNormal actor, which TorchRL accepts as any
ProbabilisticTensorDictSequential), both draw through the distribution's
``rsample_and_log_prob`` in the same order (v2: a' for the target, then a~ for the actor; v1: a~
for the value target, then a~ for the actor) and the global seed is reset before each forward.
Same seed + same order of draws + same distribution = the same actions, bit for bit.
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import pytest
import torch
from tensordict import TensorDict
from torchrl_nets import critics_reading, torchrl_tanh_actor

from rlteach.modules import (
    TanhNormal,
    make_normal_actor,
    make_state_action_value_network,
    make_value_network,
)
from rlteach.objectives import SACLoss, Temperature
from rlteach.updaters import SoftUpdate

torchrl_sac = pytest.importorskip("torchrl.objectives.sac")
Bounded = pytest.importorskip("torchrl.data").Bounded

OBS, ACT, B = 3, 2, 8
TOL = 1e-5
SPEC = Bounded(-2 * torch.ones(ACT), 2 * torch.ones(ACT), (ACT,))


def nets(seed=0, n=2):
    torch.manual_seed(seed)
    actor = make_normal_actor(OBS, ACT, (16,), low=-2.0, high=2.0)
    qs = [make_state_action_value_network(OBS, ACT, (16,)) for _ in range(n)]
    value = make_value_network(OBS, (16,))
    return actor, qs, value


def batch(seed=1, b=B):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(b, OBS, generator=g),
            "action": torch.rand(b, ACT, generator=g) * 4 - 2,
            "next": {
                "observation": torch.randn(b, OBS, generator=g),
                "reward": torch.randn(b, 1, generator=g),
                "done": torch.zeros(b, 1, dtype=torch.bool),
                "terminated": torch.rand(b, 1, generator=g) < 0.3,
            },
        },
        [b],
    )


def grads(loss, ours: bool):
    """(actor grads, stacked critic grads, value grads, log-alpha grad), zeros where absent."""

    def g(p):
        return torch.zeros_like(p) if p.grad is None else p.grad.clone()

    actor = [g(p) for p in loss.actor_network.parameters()]
    if ours:
        critic = [g(p) for lay in loss.qvalue_network.fused.layers for p in (lay.weight, lay.bias)]
        value = [g(p) for p in loss.value_network.parameters()] if loss.version == 1 else []
    else:
        params = loss.qvalue_network_params
        critic = []
        layers = params["module", "layers"]
        for depth in sorted(layers.keys(), key=int):
            layer = layers[depth]
            if "weight" in layer.keys():
                critic += [g(layer["weight"]), g(layer["bias"])]
        value = (
            [g(p) for p in loss.value_network_params.values(True, True)]
            if loss._version == 1
            else []
        )
    alpha = g(loss.log_alpha) if loss.log_alpha.requires_grad else torch.zeros(())
    return actor, critic, value, alpha


def run_pair(kwargs, *, v1=False, steps=2, td_fn=batch, n=2, single=False):
    """Build both losses on the same weights; take ``steps`` SGD steps on both; compare each.

    ``single``: hand both one Q-network (each loss builds its ensemble from the global RNG, which
    is seeded alike before each construction).
    """
    actor, qs, value = nets(n=n)
    ours_kw = dict(kwargs, v1_like_torchrl=True) if v1 else dict(kwargs)
    losses, optims = [], []
    for cls, kw in ((SACLoss, ours_kw), (torchrl_sac.SACLoss, kwargs)):
        torch.manual_seed(42)
        loss = cls(
            copy.deepcopy(actor),
            copy.deepcopy(qs[0]) if single else [copy.deepcopy(q) for q in qs],
            copy.deepcopy(value) if v1 else None,
            num_qvalue_nets=n,
            **kw,
        )
        losses.append(loss)
        optims.append(torch.optim.SGD(loss.parameters(), lr=0.05))
    for step in range(steps):
        td = td_fn(seed=10 + step)
        results = []
        for loss, opt in zip(losses, optims, strict=True):
            opt.zero_grad()
            torch.manual_seed(100 + step)  # same seed, same order of draws in both losses
            data = td.clone()
            out = loss(data)
            total = sum(v.sum() for k, v in out.items() if k.startswith("loss_"))
            total.backward()
            results.append((out, grads(loss, loss is losses[0]), data))
            opt.step()
        (o1, g1, d1), (o2, g2, d2) = results
        assert set(o1.keys()) == set(o2.keys())
        for key in o2.keys():
            torch.testing.assert_close(o1[key], o2[key], atol=TOL, rtol=0, msg=key)
        for part, a, b in zip(("actor", "critic", "value", "alpha"), g1, g2, strict=True):
            if isinstance(a, list):
                assert len(a) == len(b), part
                for x, y in zip(a, b, strict=True):
                    torch.testing.assert_close(x, y, atol=TOL, rtol=0, msg=part)
            else:
                torch.testing.assert_close(a, b, atol=TOL, rtol=0, msg=part)
        torch.testing.assert_close(d1["td_error"], d2["td_error"], atol=TOL, rtol=0)
    return losses


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"loss_function": "l2", "alpha_init": 0.3},
        {"fixed_alpha": True, "alpha_init": 0.5},
        {"min_alpha": 0.5, "max_alpha": 0.9, "alpha_init": 2.0},
        {"delay_qvalue": False, "target_entropy": -0.7},
        {"reduction": "sum"},
    ],
)
def test_v2_parity_with_torchrl(kwargs):
    run_pair(dict(kwargs, action_spec=SPEC))


def test_v2_parity_three_critics():
    run_pair({"action_spec": SPEC}, n=3)


@pytest.mark.parametrize("kwargs", [{}, {"delay_actor": True, "loss_function": "l1"}])
def test_v1_parity_with_torchrl_style(kwargs):
    run_pair(dict(kwargs, action_spec=SPEC), v1=True)


def test_reduction_none_parity():
    """Per-sample losses; alpha and entropy left out (TorchRL's scalar_output_mode='exclude')."""
    actor, qs, _ = nets()
    td = batch()
    outs = []
    for cls, extra in ((SACLoss, {}), (torchrl_sac.SACLoss, {"scalar_output_mode": "exclude"})):
        loss = cls(
            copy.deepcopy(actor), copy.deepcopy(qs), action_spec=SPEC, reduction="none", **extra
        )
        torch.manual_seed(0)
        outs.append(loss(td.clone()))
    assert set(outs[0].keys()) == set(outs[1].keys()) == {"loss_actor", "loss_qvalue", "loss_alpha"}
    for key in outs[1].keys():
        assert outs[0][key].shape == (B,)
        torch.testing.assert_close(outs[0][key], outs[1][key], atol=TOL, rtol=0)


def test_v1_paper_critics_see_the_whole_batch_and_current_critics():
    """The default v1 (the paper): every critic on every sample; (SAC-6) with current critics."""
    actor, qs, value = nets()
    loss = SACLoss(actor, qs, value, action_spec=SPEC, loss_function="l2")
    with torch.no_grad():  # make the target critics differ from the current ones
        for p in loss.target_qvalue_network.buffers():
            p.add_(0.5)
    td = batch()
    torch.manual_seed(0)
    out = loss(td.clone())
    # by hand: y = r + 0.99 (1 - term) Vbar(s'), Vbar = V at init
    with torch.no_grad():
        v_next = value.module(td["next", "observation"])
        y = td["next", "reward"] + 0.99 * (~td["next", "terminated"]).float() * v_next
        pred = torch.stack([q.module(td["observation"], td["action"]) for q in qs])
        expected_q = ((pred - y) ** 2).sum(0).mean()
        torch.manual_seed(0)  # the value loss draws first
        dist = actor.get_dist(td.select("observation"))
        a, lp = dist.rsample_and_log_prob()
        qa = torch.stack([q.module(td["observation"], a) for q in qs]).squeeze(-1).min(0).values
        v = value.module(td["observation"]).squeeze(-1)
        expected_v = ((v - (qa - lp)) ** 2).mean()  # alpha = 1
    torch.testing.assert_close(out["loss_qvalue"], expected_q, atol=TOL, rtol=0)
    torch.testing.assert_close(out["loss_value"], expected_v, atol=TOL, rtol=0)


def test_v2_by_hand_one_sample():
    """(SAC-1)-(SAC-4) recomputed from the networks, with the same noise."""
    actor, qs, _ = nets()
    loss = SACLoss(actor, qs, action_spec=SPEC, loss_function="l2", alpha_init=0.5)
    td = batch(b=1)
    torch.manual_seed(5)
    out = loss(td.clone())
    torch.manual_seed(5)
    with torch.no_grad():
        a1, lp1 = actor.get_dist(td["next"].select("observation")).rsample_and_log_prob()
        s1 = td["next", "observation"]
        q_next = min(q.module(s1, a1).item() for q in qs)
        y = td["next", "reward"].item() + 0.99 * (1 - td["next", "terminated"].float().item()) * (
            q_next - 0.5 * lp1.item()
        )
        q_now = [q.module(td["observation"], td["action"]).item() for q in qs]
        a, lp = actor.get_dist(td.select("observation")).rsample_and_log_prob()
        q_a = min(q.module(td["observation"], a).item() for q in qs)
    assert out["loss_qvalue"].item() == pytest.approx(sum((q - y) ** 2 for q in q_now), abs=1e-5)
    assert out["loss_actor"].item() == pytest.approx(0.5 * lp.item() - q_a, abs=1e-5)
    assert out["loss_alpha"].item() == pytest.approx(-math.log(0.5) * (lp.item() - ACT), abs=1e-5)
    assert out["entropy"].item() == pytest.approx(-lp.item(), abs=1e-6)
    assert out["alpha"].item() == pytest.approx(0.5)


def test_tanh_normal_log_prob_by_hand():
    """log pi(a) = log N(u; mu, sigma) - log|da/du|, u = atanh((a - mid)/half), a = mid + half tanh u."""
    mu, sigma, low, high, a = 0.3, 0.5, -2.0, 2.0, 1.0
    half, mid = (high - low) / 2, (high + low) / 2
    u = math.atanh((a - mid) / half)
    log_normal = -((u - mu) ** 2) / (2 * sigma**2) - math.log(sigma) - 0.5 * math.log(2 * math.pi)
    log_jacobian = math.log(half) + math.log(1 - math.tanh(u) ** 2)
    dist = TanhNormal(torch.tensor([mu]), torch.tensor([sigma]), low, high)
    assert dist.log_prob(torch.tensor([a])).item() == pytest.approx(
        log_normal - log_jacobian, abs=1e-5
    )


@pytest.mark.parametrize("log_prob, direction", [(2.0, +1), (-3.0, -1)])
def test_temperature_sign(log_prob, direction):
    """Entropy -log pi below the target (-1) pushes alpha up; above it pushes alpha down."""
    temp = Temperature(alpha_init=1.0, target_entropy=-1.0)
    loss = temp.loss(torch.full((4,), log_prob)).mean()
    loss.backward()
    # dL/dlog(alpha) = -(log pi + target) = entropy - target
    assert temp.log_alpha.grad.item() == pytest.approx(-(log_prob - 1.0))
    with torch.no_grad():
        temp.log_alpha -= 0.1 * temp.log_alpha.grad
    assert (temp.alpha.item() - 1.0) * direction > 0


def test_temperature_clamp_and_fixed():
    temp = Temperature(alpha_init=5.0, max_alpha=2.0, target_entropy=-1.0)
    assert temp.alpha.item() == pytest.approx(2.0)  # clamped in place on reading
    assert temp.log_alpha.item() == pytest.approx(math.log(2.0))
    fixed = Temperature(alpha_init=0.2, fixed_alpha=True, target_entropy=-1.0)
    assert not isinstance(fixed.log_alpha, torch.nn.Parameter)
    assert list(fixed.parameters()) == []


@pytest.mark.parametrize(
    "spec, expected",
    [(SPEC, -2.0), (3, -3.0), ((2, 3), -6.0), (gym.spaces.Box(-1, 1, (4,)), -4.0)],
)
def test_target_entropy_auto(spec, expected):
    actor, qs, _ = nets()
    loss = SACLoss(actor, qs, action_spec=spec)
    assert loss.target_entropy.item() == expected


def test_target_entropy_explicit_and_missing():
    actor, qs, _ = nets()
    assert SACLoss(actor, qs, target_entropy=-0.25).target_entropy.item() == -0.25
    with pytest.raises(ValueError, match="action dimension is unknown"):
        SACLoss(actor, qs)


def test_soft_update_moves_targets():
    actor, qs, _ = nets()
    loss = SACLoss(actor, qs, action_spec=SPEC)
    updater = SoftUpdate(loss, tau=0.5)
    with torch.no_grad():
        loss.qvalue_network.fused.layers[0].weight.add_(1.0)
    before = loss.target_qvalue_network.fused.layers[0].weight.clone()
    updater.step()
    after = loss.target_qvalue_network.fused.layers[0].weight
    torch.testing.assert_close(after, before + 0.5, atol=1e-6, rtol=0)


def test_keys_and_set_keys():
    actor, qs, value = nets()
    loss = SACLoss(actor, qs, value, action_spec=SPEC)
    assert loss.out_keys == [
        "loss_actor",
        "loss_qvalue",
        "loss_alpha",
        "alpha",
        "entropy",
        "loss_value",
    ]
    assert {"action", ("next", "reward"), ("next", "terminated"), ("next", "observation")} <= set(
        loss.in_keys
    )
    td = batch()
    td["r"] = td["next", "reward"]
    del td["next", "reward"]
    with pytest.raises(KeyError, match="set_keys"):
        loss(td.clone())


def test_errors():
    actor, qs, value = nets()
    td = batch()
    td["action"][0, 0] = 3.0
    loss = SACLoss(actor, qs, action_spec=SPEC)
    with pytest.raises(ValueError, match="outside the action spec"):
        loss(td)
    with pytest.raises(ValueError, match="alpha_init"):
        SACLoss(actor, qs, action_spec=SPEC, alpha_init=0.0)
    with pytest.raises(ValueError, match="min_alpha"):
        SACLoss(actor, qs, action_spec=SPEC, min_alpha=2.0, max_alpha=1.0)
    with pytest.raises(TypeError, match="make_value_estimator"):
        SACLoss(actor, qs, action_spec=SPEC, gamma=0.9)
    with pytest.raises(ValueError, match="loss_function"):
        SACLoss(actor, qs, action_spec=SPEC, loss_function="huber")
    with pytest.raises(ValueError, match="num_qvalue_nets=3"):
        SACLoss(actor, qs, action_spec=SPEC, num_qvalue_nets=3)
    v1 = SACLoss(actor, qs, value, action_spec=SPEC, v1_like_torchrl=True)
    with pytest.raises(ValueError, match="divisible"):
        v1(batch(b=7))


def _renamed_action_nets(seed=0, n=2):
    """TorchRL's actor writing "my_action" (its spec a Composite under that key) and critics
    reading it: the setting of issue 22, where set_keys(action=...) comes after construction."""
    torch.manual_seed(seed)
    actor = torchrl_tanh_actor(OBS, ACT, SPEC, action_key="my_action")
    qs = critics_reading("my_action", OBS, ACT, n)
    return actor, qs


def test_action_key_set_after_construction_matches_torchrl():
    """Issue 22: the actor's spec has no "action" entry, the key is renamed afterwards (TorchRL's
    order). Construction used to fail with KeyError: 'action'."""
    actor, qs = _renamed_action_nets()
    theirs = torchrl_sac.SACLoss(actor, qs)
    theirs.set_keys(action="my_action")
    ours = SACLoss(actor, qs)
    ours.set_keys(action="my_action")
    assert ours.target_entropy.item() == theirs.target_entropy.item() == -ACT
    td = batch().rename_key_("action", "my_action")
    torch.manual_seed(3)
    out_theirs = theirs(td.clone())
    torch.manual_seed(3)
    out_ours = ours(td.clone())
    for key in out_theirs.keys():
        torch.testing.assert_close(out_ours[key], out_theirs[key], atol=TOL, rtol=TOL, msg=key)
    # the bounds came from the spec under the new key: an action outside them is refused
    td["my_action"][0, 0] = 3.0
    with pytest.raises(ValueError, match="outside the action spec"):
        ours(td)


def test_action_spec_without_the_action_key_is_refused_at_forward():
    actor, qs = _renamed_action_nets()
    ours = SACLoss(actor, qs)  # "action" is not in the actor's spec: resolved once renamed
    with pytest.raises(KeyError, match="set_keys\\(action="):
        ours(batch())


@pytest.mark.parametrize("v1", [False, True])
def test_single_qvalue_network_builds_torchrl_ensemble(v1):
    """Issue 22: one Q-network handed to the loss: its N members are drawn from the global RNG at
    construction as TorchRL draws them (uniform between the template's min and max, parameter by
    parameter), so the same seed gives the same numbers."""
    run_pair({"action_spec": SPEC}, v1=v1, single=True)
