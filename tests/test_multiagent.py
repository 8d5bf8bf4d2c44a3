"""Multi-agent pieces against TorchRL 0.14.1: MultiAgentGAE, MultiAgentMLP, VDNMixer, QMixer.

Parity is checked within 1e-5 (float32) on outputs and gradients; the mixers' monotonicity
dQ_tot/dQ_a >= 0 is checked by autograd on random inputs; bad inputs must raise clear errors.
"""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from rlteach.modules import MultiAgentMLP, QMixer, VDNMixer
from rlteach.value import MultiAgentGAE, broadcast_to_agents

TRV = pytest.importorskip("torchrl.objectives.value")
TRM = pytest.importorskip("torchrl.modules.models.multiagent")

ATOL = 1e-5
N_AGENTS, OBS, T = 3, 4, 7


# ---------------------------------------------------------------------------- helpers


def ma_batch(batch=(2,), seed=0, per_agent_reward=False, with_values=False):
    """A multi-agent batch [*B, T] with a truncation at t=2 and a termination at t=4."""
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, T)
    done = torch.zeros(*shape, 1, dtype=torch.bool)
    terminated = torch.zeros_like(done)
    done[..., 2, :] = True
    done[..., 4, :] = terminated[..., 4, :] = True
    agents = {"observation": torch.randn(*shape, N_AGENTS, OBS, generator=g)}
    next_agents = {"observation": torch.randn(*shape, N_AGENTS, OBS, generator=g)}
    nxt = {"done": done, "terminated": terminated, "agents": next_agents}
    if per_agent_reward:
        next_agents["reward"] = torch.randn(*shape, N_AGENTS, 1, generator=g)
    else:
        nxt["reward"] = torch.randn(*shape, 1, generator=g)
    if with_values:
        agents["state_value"] = torch.randn(*shape, N_AGENTS, 1, generator=g)
        next_agents["state_value"] = torch.randn(*shape, N_AGENTS, 1, generator=g)
    return TensorDict({"agents": agents, "next": nxt}, batch_size=shape)


def ma_critic(centralized=True, share_params=True, seed=0):
    torch.manual_seed(seed)
    mlp = MultiAgentMLP(
        OBS, 1, N_AGENTS, centralized=centralized, share_params=share_params, num_cells=(8,)
    )
    return TensorDictModule(
        mlp, in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")]
    )


def gae_pair(value_network, reward_key="reward", **kwargs):
    ours = MultiAgentGAE(gamma=0.9, lmbda=0.8, value_network=value_network, **kwargs)
    theirs = TRV.MultiAgentGAE(gamma=0.9, lmbda=0.8, value_network=value_network, **kwargs)
    for est in (ours, theirs):
        est.set_keys(value=("agents", "state_value"), reward=reward_key)
    return ours, theirs


# ---------------------------------------------------------------------------- MultiAgentGAE


def test_broadcast_team_signal_by_hand():
    value = torch.zeros(2, 5, 3, 1)
    reward = torch.arange(10.0).view(2, 5, 1)
    out = broadcast_to_agents(reward, value)
    assert out.shape == (2, 5, 3, 1)
    for agent in range(3):
        assert torch.equal(out[:, :, agent], reward)
    per_agent = torch.randn(2, 5, 3, 1)
    assert broadcast_to_agents(per_agent, value) is per_agent


def test_team_reward_gives_same_advantage_as_single_agent_gae_per_agent():
    """Hand check of (MAGAE-1/2): agent i's advantage is plain GAE on (r, d, V_i)."""
    from rlteach.value import generalized_advantage_estimate

    td = ma_batch(with_values=True)
    est = MultiAgentGAE(gamma=0.9, lmbda=0.8, value_network=None)
    est.set_keys(value=("agents", "state_value"))
    est(td)
    for i in range(N_AGENTS):
        adv, target = generalized_advantage_estimate(
            0.9,
            0.8,
            td["agents", "state_value"][..., i, :],
            td["next", "agents", "state_value"][..., i, :],
            td["next", "reward"],
            td["next", "done"],
            td["next", "terminated"],
            time_dim=-2,
        )
        torch.testing.assert_close(td["advantage"][..., i, :], adv)
        torch.testing.assert_close(td["value_target"][..., i, :], target)


@pytest.mark.parametrize("batch", [(), (2,), (2, 3)])
@pytest.mark.parametrize("vectorized", [False, True])
@pytest.mark.parametrize("average_gae", [False, True])
@pytest.mark.parametrize("per_agent_reward", [False, True])
@pytest.mark.parametrize("centralized,share", [(True, True), (False, False), (True, False)])
def test_gae_matches_torchrl(batch, vectorized, average_gae, per_agent_reward, centralized, share):
    critic = ma_critic(centralized, share)
    reward_key = ("agents", "reward") if per_agent_reward else "reward"
    ours, theirs = gae_pair(
        critic, reward_key=reward_key, vectorized=vectorized, average_gae=average_gae
    )
    td = ma_batch(batch, per_agent_reward=per_agent_reward)
    a, b = ours(td.clone()), theirs(td.clone())
    assert a["advantage"].shape == (*batch, T, N_AGENTS, 1)
    for key in ["advantage", "value_target", ("agents", "state_value")]:
        torch.testing.assert_close(a[key], b[key], atol=ATOL, rtol=0)


def test_gae_value_estimate_matches_torchrl():
    critic = ma_critic()
    ours, theirs = gae_pair(critic)
    td = ma_batch()
    torch.testing.assert_close(
        ours.value_estimate(td.clone()), theirs.value_estimate(td.clone()), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("per_agent_reward", [False, True])
def test_gae_gradients_match_torchrl(per_agent_reward):
    """Values read from the batch carry gradients; d(sum w*A)/dV must agree."""
    reward_key = ("agents", "reward") if per_agent_reward else "reward"
    grads = []
    for cls in (MultiAgentGAE, TRV.MultiAgentGAE):
        td = ma_batch(per_agent_reward=per_agent_reward, with_values=True)
        v = td["agents", "state_value"].requires_grad_()
        nv = td["next", "agents", "state_value"].requires_grad_()
        est = cls(gamma=0.95, lmbda=0.9, value_network=None, differentiable=True)
        est.set_keys(value=("agents", "state_value"), reward=reward_key)
        est(td)
        weights = torch.linspace(-1, 1, td["advantage"].numel()).view_as(td["advantage"])
        (td["advantage"] * weights + td["value_target"] ** 2).sum().backward()
        grads.append((v.grad.clone(), nv.grad.clone()))
    for ours, theirs in zip(grads[0], grads[1], strict=True):
        assert ours.abs().sum() > 0
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_gae_per_agent_standardisation_by_hand():
    td = ma_batch(with_values=True)
    est = MultiAgentGAE(gamma=0.9, lmbda=0.8, value_network=None, average_gae=True)
    est.set_keys(value=("agents", "state_value"))
    est(td)
    adv = td["advantage"]
    for i in range(N_AGENTS):
        assert abs(adv[..., i, :].mean().item()) < 1e-5
        assert abs(adv[..., i, :].std().item() - 1.0) < 1e-5


def test_gae_refuses_value_without_agent_dim():
    td = ma_batch(with_values=True)
    td["state_value"] = td["agents", "state_value"].sum(-2)
    td["next", "state_value"] = td["next", "agents", "state_value"].sum(-2)
    est = MultiAgentGAE(gamma=0.9, lmbda=0.8, value_network=None)
    with pytest.raises(ValueError, match="no agent dim"):
        est(td)


def test_gae_refuses_per_agent_reward_with_other_agent_count():
    td = ma_batch(with_values=True)
    td["next", "agent_reward"] = torch.randn(2, T, N_AGENTS + 1, 1)
    est = MultiAgentGAE(gamma=0.9, lmbda=0.8, value_network=None)
    est.set_keys(value=("agents", "state_value"), reward="agent_reward")
    with pytest.raises(ValueError, match="reward has 4 agents .* the value has 3"):
        est(td)
    assert "advantage" not in td.keys()


def test_gae_refuses_missing_group_key():
    td = ma_batch()
    del td["agents"]
    est = MultiAgentGAE(gamma=0.9, lmbda=0.8, value_network=None)
    est.set_keys(value=("agents", "state_value"))
    with pytest.raises(KeyError, match=r"\('agents', 'state_value'\).*set_keys\(value="):
        est(td)


# ---------------------------------------------------------------------------- MultiAgentMLP


def load_torchrl_mlp(ours: MultiAgentMLP, theirs) -> None:
    """Copy our per-agent MLP weights into TorchRL's stacked parameter TensorDict."""
    params = theirs.params
    for key in params.keys(include_nested=True, leaves_only=True):
        layer, name = key if isinstance(key, tuple) else key.split(".")
        stacked = torch.stack(
            [getattr(net.layers[int(layer)], name).detach() for net in ours.agent_networks]
        )
        target = params.get(key)
        target.data.copy_(stacked if not ours.share_params else stacked[0])


@pytest.mark.parametrize("centralized", [False, True])
@pytest.mark.parametrize("share_params", [False, True])
def test_multiagent_mlp_matches_torchrl(centralized, share_params):
    torch.manual_seed(0)
    ours = MultiAgentMLP(
        OBS, 2, N_AGENTS, centralized=centralized, share_params=share_params, depth=2, num_cells=8
    )
    theirs = TRM.MultiAgentMLP(
        OBS, 2, N_AGENTS, centralized=centralized, share_params=share_params, depth=2, num_cells=8
    )
    load_torchrl_mlp(ours, theirs)
    x = torch.randn(5, 6, N_AGENTS, OBS)
    out = ours(x)
    assert out.shape == (5, 6, N_AGENTS, 2)
    torch.testing.assert_close(out, theirs(x), atol=ATOL, rtol=0)
    if centralized and share_params:  # one output for the team
        assert torch.equal(out[..., 0, :], out[..., 1, :])
    if not centralized:  # agent i's output depends on agent i's input only
        x2 = x.clone()
        x2[..., 1, :] += 1.0
        out2 = ours(x2)
        assert torch.equal(out2[..., 0, :], out[..., 0, :])
        assert not torch.equal(out2[..., 1, :], out[..., 1, :])


def test_multiagent_mlp_counts_parameters():
    shared = MultiAgentMLP(OBS, 2, N_AGENTS, centralized=False, share_params=True, num_cells=(8,))
    separate = MultiAgentMLP(
        OBS, 2, N_AGENTS, centralized=False, share_params=False, num_cells=(8,)
    )
    one = (OBS * 8 + 8) + (8 * 2 + 2)
    assert sum(p.numel() for p in shared.parameters()) == one
    assert sum(p.numel() for p in separate.parameters()) == N_AGENTS * one


def test_multiagent_mlp_errors():
    with pytest.raises(TypeError, match="centralized=True/False"):
        MultiAgentMLP(OBS, 2, N_AGENTS, share_params=True)
    mlp = MultiAgentMLP(OBS, 2, N_AGENTS, centralized=True, share_params=True)
    with pytest.raises(ValueError, match="n_agents=3"):
        mlp(torch.randn(5, N_AGENTS + 1, OBS))
    with pytest.raises(ValueError, match="needs depth"):
        MultiAgentMLP(OBS, 2, N_AGENTS, centralized=True, share_params=True, num_cells=8)


# ---------------------------------------------------------------------------- mixers

STATE_SHAPE = (2, 5)


def qmixer_pair(seed=0):
    torch.manual_seed(seed)
    ours = QMixer(STATE_SHAPE, mixing_embed_dim=6, n_agents=N_AGENTS)
    theirs = TRM.QMixer(STATE_SHAPE, mixing_embed_dim=6, n_agents=N_AGENTS, device="cpu")
    theirs.load_state_dict(ours.state_dict())  # same parameter names as TorchRL
    return ours, theirs


def test_vdn_sums_by_hand():
    q = torch.tensor([[[1.0], [2.0], [-0.5]]])
    assert VDNMixer(N_AGENTS)(q).tolist() == [[2.5]]


@pytest.mark.parametrize("batch", [(4,), (3, 4)])
def test_mixers_match_torchrl(batch):
    q = torch.randn(*batch, N_AGENTS, 1, requires_grad=True)
    state = torch.randn(*batch, *STATE_SHAPE)
    ours, theirs = qmixer_pair()
    out_ours, out_theirs = ours(q, state), theirs(q, state)
    assert out_ours.shape == (*batch, 1)
    torch.testing.assert_close(out_ours, out_theirs, atol=ATOL, rtol=0)
    g_ours = torch.autograd.grad(out_ours.sum(), [q, *ours.parameters()])
    g_theirs = torch.autograd.grad(out_theirs.sum(), [q, *theirs.parameters()])
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    vdn_ours, vdn_theirs = VDNMixer(N_AGENTS), TRM.VDNMixer(N_AGENTS, device="cpu")
    torch.testing.assert_close(vdn_ours(q), vdn_theirs(q), atol=ATOL, rtol=0)


@pytest.mark.parametrize("seed", range(5))
def test_mixers_are_monotonic(seed):
    """(QMIX-5): dQ_tot/dQ_a >= 0 for every agent, at random Q-values, states and weights."""
    torch.manual_seed(seed)
    qmix = QMixer(STATE_SHAPE, mixing_embed_dim=6, n_agents=N_AGENTS)
    for p in qmix.parameters():  # large random weights, negative ones included
        torch.nn.init.normal_(p, std=2.0)
    q = (5 * torch.randn(256, N_AGENTS, 1)).requires_grad_()
    state = 3 * torch.randn(256, *STATE_SHAPE)
    (grad,) = torch.autograd.grad(qmix(q, state).sum(), q)
    assert (grad >= 0).all()
    assert (grad > 0).any()  # not trivially flat
    (grad_vdn,) = torch.autograd.grad(VDNMixer(N_AGENTS)(q).sum(), q)
    assert torch.equal(grad_vdn, torch.ones_like(grad_vdn))
    # the same, in finite differences: raising any one Q_a never lowers Q_tot
    with torch.no_grad():
        base = qmix(q, state)
        for a in range(N_AGENTS):
            bumped = q.clone()
            bumped[:, a] += 0.5
            assert (qmix(bumped, state) >= base - 1e-6).all()


def test_qmixer_state_conditioned_bias_is_free():
    """The bias V(s) may be negative: monotonicity constrains weights, not Q_tot's sign."""
    torch.manual_seed(0)
    qmix = QMixer(STATE_SHAPE, mixing_embed_dim=6, n_agents=N_AGENTS)
    zero_q = torch.zeros(64, N_AGENTS, 1)
    out = qmix(zero_q, 3 * torch.randn(64, *STATE_SHAPE))
    assert out.min() < 0 < out.max()


def test_mixers_refuse_wrong_agent_count_and_state():
    qmix = QMixer(STATE_SHAPE, mixing_embed_dim=6, n_agents=N_AGENTS)
    with pytest.raises(ValueError, match=r"mixes 3 agents.*\[\*B, 3, 1\], got \[4, 2, 1\]"):
        qmix(torch.randn(4, 2, 1), torch.randn(4, *STATE_SHAPE))
    with pytest.raises(ValueError, match="state of shape"):
        qmix(torch.randn(4, N_AGENTS, 1), torch.randn(4, 7))
    with pytest.raises(ValueError, match=r"\(local Q-values, state\)"):
        qmix(torch.randn(4, N_AGENTS, 1))
    with pytest.raises(ValueError, match="mixes 3 agents"):
        VDNMixer(N_AGENTS)(torch.randn(4, N_AGENTS))  # trailing dim missing
