"""Tests for rlteach.modules: TanhNormal against TorchRL and torch, and the network builders."""

import math
import subprocess
import sys

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import InteractionType, set_interaction_type
from torch import distributions as D

from rlteach.modules import (
    MLP,
    LocScaleHead,
    TanhNormal,
    make_categorical_actor,
    make_normal_actor,
    make_qvalue_actor,
    make_qvalue_network,
    make_state_action_value_network,
    make_value_network,
)

BOUNDS = [
    (-1.0, 1.0),
    (-2.0, 2.0),
    (torch.tensor([-1.0, 0.0, -3.0]), torch.tensor([1.0, 2.0, 5.0])),
]


def _params(seed=0, batch=(5,)):
    g = torch.Generator().manual_seed(seed)
    loc = 3 * torch.randn(*batch, 3, generator=g)
    scale = torch.rand(*batch, 3, generator=g) + 0.05
    return loc, scale


# ---------------------------------------------------------------------------------------------
# TanhNormal
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("low,high", BOUNDS)
def test_tanh_normal_log_prob_matches_torchrl(low, high):
    torchrl_dists = pytest.importorskip("torchrl.modules")
    loc, scale = _params()
    ours = TanhNormal(loc, scale, low, high)
    theirs = torchrl_dists.TanhNormal(loc, scale, low=low, high=high)
    torch.manual_seed(1)
    actions = theirs.sample((4,))
    # interior samples: TorchRL's own draws
    torch.testing.assert_close(ours.log_prob(actions), theirs.log_prob(actions), atol=1e-5, rtol=0)
    # at and next to the bounds, where atanh needs the clamp; log-densities reach ~1e4 there,
    # so allow float32 relative rounding (1e-6) on top of atol
    lo = torch.as_tensor(low).expand(3)
    hi = torch.as_tensor(high).expand(3)
    edge = torch.stack([lo, hi, lo + 1e-7 * (hi - lo), hi - 1e-8, lo + 1e-3 * (hi - lo)])
    edge = edge.unsqueeze(1).expand(5, 5, 3)
    lp = ours.log_prob(edge)
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp, theirs.log_prob(edge), atol=1e-5, rtol=1e-6)
    # the deterministic action is squash(loc) in both
    torch.testing.assert_close(ours.deterministic_sample, theirs.deterministic_sample)


def test_tanh_normal_matches_torch_transformed_distribution():
    loc, scale = _params(seed=2, batch=(4, 2))
    low, high = torch.tensor([-1.0, 0.0, -3.0]), torch.tensor([1.0, 2.0, 5.0])
    ours = TanhNormal(loc, scale, low, high)
    ref = D.TransformedDistribution(
        D.Independent(D.Normal(loc, scale), 1),
        [D.TanhTransform(), D.AffineTransform((high + low) / 2, (high - low) / 2)],
    )
    torch.manual_seed(3)
    a = ours.sample((6,))
    assert a.shape == (6, 4, 2, 3)
    inside = ((a - (high + low) / 2).abs() < 0.999 * (high - low) / 2).all(-1)
    torch.testing.assert_close(
        ours.log_prob(a)[inside], ref.log_prob(a)[inside], atol=1e-4, rtol=1e-5
    )
    assert ours.log_prob(a).shape == (6, 4, 2)


def test_tanh_normal_density_integrates_and_matches_histogram():
    dist = TanhNormal(torch.tensor([0.4]), torch.tensor([0.8]), low=-2.0, high=3.0)
    grid = torch.linspace(-2.0, 3.0, 200_001)[1:-1].unsqueeze(-1)
    density = dist.log_prob(grid).exp()
    assert torch.trapezoid(density, grid.squeeze(-1)).item() == pytest.approx(1.0, abs=1e-3)
    # histogram of 200k draws vs the probability of each bin, integrated from the density
    torch.manual_seed(0)
    samples = dist.sample((200_000,)).squeeze(-1)
    counts = torch.histc(samples, bins=25, min=-2.0, max=3.0)
    per_bin = density.squeeze(-1)[: 25 * 7999].reshape(25, 7999)
    expected = torch.trapezoid(per_bin, dx=5.0 / 200_000, dim=-1)
    torch.testing.assert_close(counts / 200_000, expected, atol=3e-3, rtol=0)


def test_tanh_normal_event_dims_zero_keeps_per_dimension_log_prob():
    loc, scale = _params()
    a = TanhNormal(loc, scale, event_dims=0)
    b = TanhNormal(loc, scale, event_dims=1)
    x = b.sample()
    assert a.log_prob(x).shape == (5, 3)
    torch.testing.assert_close(a.log_prob(x).sum(-1), b.log_prob(x))


def test_tanh_normal_rsample_gradient_is_the_chain_rule():
    loc = torch.tensor([[0.3, -1.2]], requires_grad=True)
    scale = torch.tensor([[0.5, 2.0]], requires_grad=True)
    dist = TanhNormal(loc, scale, low=-2.0, high=4.0)
    torch.manual_seed(7)
    dist.rsample().sum().backward()
    torch.manual_seed(7)
    xi = torch.randn(1, 2)
    u = loc.detach() + scale.detach() * xi
    da_du = 3.0 * (1 - torch.tanh(u) ** 2)  # half-range (4 - (-2)) / 2 = 3
    torch.testing.assert_close(loc.grad, da_du)
    torch.testing.assert_close(scale.grad, da_du * xi)


def test_tanh_normal_log_prob_gradient_flows_to_parameters():
    loc = torch.zeros(2, 3, requires_grad=True)
    scale = torch.ones(2, 3, requires_grad=True)
    dist = TanhNormal(loc, scale)
    a, logp = dist.rsample_and_log_prob()
    logp.sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(scale.grad).all()
    assert scale.grad.abs().sum() > 0


def test_rsample_and_log_prob_agrees_with_log_prob_until_tanh_saturates():
    torch.manual_seed(0)
    moderate = TanhNormal(torch.zeros(1000, 2), torch.ones(1000, 2) * 0.7)
    a, logp = moderate.rsample_and_log_prob()
    torch.testing.assert_close(logp, moderate.log_prob(a), atol=2e-3, rtol=1e-4)
    # far in the tail tanh(u) rounds to the clamp, so log_prob(a) must invert a clamped value
    # and returns a different (wrong) density; rsample_and_log_prob scores the true u
    far = TanhNormal(torch.full((1,), 20.0), torch.full((1,), 0.1))
    a, logp = far.rsample_and_log_prob()
    assert torch.isfinite(logp).all()
    assert (logp - far.log_prob(a)).abs().item() > 1.0


def test_tanh_normal_closed_forms_refuse():
    dist = TanhNormal(torch.zeros(3), torch.ones(3))
    with pytest.raises(NotImplementedError):
        dist.entropy()
    # the Monte-Carlo estimate the docstring points to: for a tiny scale the squashed density
    # is almost Gaussian, entropy ≈ Σ log(σ √(2πe)) + E log|da/du| with da/du ≈ 1 at loc = 0
    torch.manual_seed(0)
    narrow = TanhNormal(torch.zeros(3), torch.full((3,), 0.01))
    estimate = -narrow.rsample_and_log_prob((4000,))[1].mean(0)
    assert estimate.item() == pytest.approx(
        3 * math.log(0.01 * math.sqrt(2 * math.pi * math.e)), abs=0.01
    )
    with pytest.raises(NotImplementedError, match="deterministic_sample"):
        _ = dist.mode
    with pytest.raises(NotImplementedError, match="mean"):
        _ = dist.mean
    assert dist.has_rsample
    assert dist.support.check(torch.tensor([-0.5, 0.0, 0.99])).item()
    assert not dist.support.check(torch.tensor([-1.5, 0.0, 0.0])).item()


def test_tanh_normal_rejects_bad_bounds_and_scale():
    with pytest.raises(ValueError, match="high > low"):
        TanhNormal(torch.zeros(2), torch.ones(2), low=1.0, high=1.0)
    with pytest.raises(ValueError, match="scale"):
        TanhNormal(torch.zeros(2), -torch.ones(2), validate_args=True)


# ---------------------------------------------------------------------------------------------
# MLP and heads
# ---------------------------------------------------------------------------------------------


def test_mlp_layers_and_bad_input():
    mlp = MLP(4, 2, num_cells=(8, 16))
    linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 8), (8, 16), (16, 2)]
    assert isinstance(mlp.layers[-1], torch.nn.Linear)  # no activation on the output
    assert mlp(torch.zeros(3, 5, 4)).shape == (3, 5, 2)
    with pytest.raises(ValueError, match="in_features=3"):
        mlp(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="positive integer"):
        MLP(0, 2)


def test_loc_scale_head_is_one_at_zero_and_positive():
    loc, scale = LocScaleHead()(torch.zeros(2, 6))
    torch.testing.assert_close(scale, torch.ones(2, 3))
    _, scale = LocScaleHead(min_scale=0.01)(torch.full((1, 2), -100.0))
    torch.testing.assert_close(scale, torch.full((1, 1), 0.01))


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def test_categorical_actor_keys_shapes_and_log_prob():
    torch.manual_seed(0)
    actor = make_categorical_actor(4, 3, num_cells=(16,))
    td = TensorDict({"observation": torch.randn(5, 2, 4)}, [5, 2])
    out = actor(td)
    assert out["logits"].shape == (5, 2, 3)
    assert out["action"].shape == (5, 2) and out["action"].dtype == torch.int64
    expected = out["logits"].log_softmax(-1).gather(-1, out["action"].unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out["action_log_prob"], expected)
    with set_interaction_type(InteractionType.DETERMINISTIC):
        greedy = actor(td.select("observation"))
    torch.testing.assert_close(greedy["action"], greedy["logits"].argmax(-1))


@pytest.mark.parametrize("state_independent_scale", [False, True])
def test_tanh_normal_actor_stays_in_bounds(state_independent_scale):
    torch.manual_seed(0)
    low, high = torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0])
    actor = make_normal_actor(
        3, 2, (16,), low=low, high=high, state_independent_scale=state_independent_scale
    )
    td = actor(TensorDict({"observation": 5 * torch.randn(64, 3)}, [64]))
    assert td["action"].shape == (64, 2) and td["action_log_prob"].shape == (64,)
    assert ((td["action"] > low) & (td["action"] < high)).all()
    dist = TanhNormal(td["loc"], td["scale"], low, high)
    torch.testing.assert_close(td["action_log_prob"], dist.log_prob(td["action"]))
    if state_independent_scale:
        torch.testing.assert_close(td["scale"], torch.ones(64, 2))  # exp(0) at init
    with set_interaction_type(InteractionType.DETERMINISTIC):
        det = actor(td.select("observation"))
    torch.testing.assert_close(
        det["action"], (high + low) / 2 + (high - low) / 2 * det["loc"].tanh()
    )


def test_plain_normal_actor_deterministic_is_loc():
    torch.manual_seed(0)
    actor = make_normal_actor(3, 2, (16,), tanh=False)
    td = actor(TensorDict({"observation": torch.randn(8, 3)}, [8]))
    expected = D.Normal(td["loc"], td["scale"]).log_prob(td["action"]).sum(-1)
    torch.testing.assert_close(td["action_log_prob"], expected)
    with set_interaction_type(InteractionType.DETERMINISTIC):
        det = actor(td.select("observation"))
    torch.testing.assert_close(det["action"], det["loc"])


def test_value_and_q_networks_keys_and_shapes():
    obs = TensorDict({"observation": torch.randn(7, 4), "action": torch.randn(7, 2)}, [7])
    assert make_value_network(4, (8,))(obs.clone())["state_value"].shape == (7, 1)
    qnet = make_qvalue_network(4, 3, (8,))
    assert qnet(obs.clone())["action_value"].shape == (7, 3)
    out = make_qvalue_actor(qnet)(obs.clone())
    assert out["action"].dtype == torch.int64 and out["action"].shape == (7,)
    torch.testing.assert_close(
        out["chosen_action_value"], out["action_value"].max(-1, keepdim=True).values
    )
    sa = make_state_action_value_network(4, 2, (8,))
    out = sa(obs.clone())
    assert out["state_action_value"].shape == (7, 1)
    # Q(s, a) depends on a
    other = obs.clone().set("action", obs["action"] + 1.0)
    assert not torch.allclose(sa(other)["state_action_value"], out["state_action_value"])


def _ppo_batch(obs_dim, action, log_prob, n=6):
    return TensorDict(
        {
            "observation": torch.randn(n, obs_dim),
            "action": action,
            "action_log_prob": log_prob,
            "advantage": torch.randn(n, 1),
            "value_target": torch.randn(n, 1),
            ("next", "observation"): torch.randn(n, obs_dim),
            ("next", "reward"): torch.randn(n, 1),
            ("next", "done"): torch.zeros(n, 1, dtype=torch.bool),
            ("next", "terminated"): torch.zeros(n, 1, dtype=torch.bool),
        },
        [n],
    )


def test_builders_plug_into_torchrl_clip_ppo_loss():
    objectives = pytest.importorskip("torchrl.objectives")
    torch.manual_seed(0)
    value = make_value_network(4, (8,))
    # discrete actor: the loss's ratio must be 1 when the stored log-prob is the current one
    actor = make_categorical_actor(4, 3, (8,))
    with torch.no_grad():  # as a collector would
        rollout = actor(TensorDict({"observation": torch.randn(6, 4)}, [6]))
    batch = _ppo_batch(4, rollout["action"], rollout["action_log_prob"])
    batch["observation"] = rollout["observation"]
    loss = objectives.ClipPPOLoss(actor, value, entropy_bonus=True)
    out = loss(batch)
    torch.testing.assert_close(out["clip_fraction"], torch.tensor(0.0))
    expected = -batch["advantage"].mean()
    torch.testing.assert_close(out["loss_objective"], expected)
    out["loss_objective"].backward()
    assert all(p.grad is not None for p in actor.parameters())
    # continuous TanhNormal actor: no closed-form entropy, TorchRL falls back to Monte Carlo
    actor = make_normal_actor(4, 2, (8,), low=-2.0, high=2.0)
    with torch.no_grad():  # as a collector would
        rollout = actor(TensorDict({"observation": torch.randn(6, 4)}, [6]))
    batch = _ppo_batch(4, rollout["action"], rollout["action_log_prob"])
    batch["observation"] = rollout["observation"]
    out = objectives.ClipPPOLoss(actor, value, entropy_bonus=True)(batch)
    torch.testing.assert_close(out["loss_objective"], -batch["advantage"].mean())
    assert torch.isfinite(out["entropy"]) and torch.isfinite(out["loss_entropy"])


@pytest.mark.filterwarnings("ignore:No target network updater")
def test_builders_plug_into_torchrl_sac_loss():
    objectives = pytest.importorskip("torchrl.objectives")
    torch.manual_seed(0)
    actor = make_normal_actor(3, 2, (8,))
    qvalue = make_state_action_value_network(3, 2, (8,))
    loss = objectives.SACLoss(actor, qvalue, num_qvalue_nets=2, target_entropy=-2.0)
    n = 5
    batch = TensorDict(
        {
            "observation": torch.randn(n, 3),
            "action": torch.rand(n, 2) * 2 - 1,
            ("next", "observation"): torch.randn(n, 3),
            ("next", "reward"): torch.randn(n, 1),
            ("next", "done"): torch.zeros(n, 1, dtype=torch.bool),
            ("next", "terminated"): torch.zeros(n, 1, dtype=torch.bool),
        },
        [n],
    )
    out = loss(batch)
    for key in ("loss_actor", "loss_qvalue", "loss_alpha"):
        assert torch.isfinite(out[key]), key
    out["loss_actor"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
    assert math.isfinite(out["entropy"].item())


def test_rlteach_never_imports_torchrl_at_run_time():
    code = (
        "import sys, rlteach.modules, rlteach.envs, rlteach.buffers; "
        "print(any(m == 'torchrl' or m.startswith('torchrl.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
