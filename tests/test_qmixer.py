"""QMixerLoss against TorchRL 0.14.1's, plus hand-computed targets, keys and input errors.

Both losses get identical networks (deep copies) and identical target weights; the loss value,
the written td_error and the gradients of every parameter must agree within 1e-5.
"""

import copy
import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential

from rlteach.modules import GreedyAction, MultiAgentMLP, QMixer, VDNMixer
from rlteach.objectives.qmixer import QMixerLoss
from rlteach.updaters import SoftUpdate

TRQ = pytest.importorskip("torchrl.objectives.multiagent")
pytestmark = pytest.mark.filterwarnings("ignore:No target network updater")

ATOL = 1e-5
N_AGENTS, OBS, N_ACTIONS, STATE = 3, 4, 5, 6


def local_q_actor(share_params=True, seed=0):
    """Per-agent Q-network plus greedy head, in TorchRL's QValueActor layout under "agents"."""
    torch.manual_seed(seed)
    qnet = TensorDictModule(
        MultiAgentMLP(
            OBS, N_ACTIONS, N_AGENTS, centralized=False, share_params=share_params, num_cells=(8,)
        ),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "action_value")],
    )
    greedy = TensorDictModule(
        GreedyAction(),
        in_keys=[("agents", "action_value")],
        out_keys=[("agents", "action"), ("agents", "chosen_action_value")],
    )
    return TensorDictSequential(qnet, greedy)


def mixer(kind, seed=1):
    torch.manual_seed(seed)
    if kind == "vdn":
        return TensorDictModule(
            VDNMixer(N_AGENTS),
            in_keys=[("agents", "chosen_action_value")],
            out_keys=["chosen_action_value"],
        )
    return TensorDictModule(
        QMixer((STATE,), mixing_embed_dim=7, n_agents=N_AGENTS),
        in_keys=[("agents", "chosen_action_value"), "state"],
        out_keys=["chosen_action_value"],
    )


def batch(b=16, seed=0, one_hot=False):
    g = torch.Generator().manual_seed(seed)
    action = torch.randint(N_ACTIONS, (b, N_AGENTS), generator=g)
    if one_hot:
        action = torch.nn.functional.one_hot(action, N_ACTIONS)
    terminated = torch.rand(b, 1, generator=g) < 0.3
    return TensorDict(
        {
            "agents": {"observation": torch.randn(b, N_AGENTS, OBS, generator=g), "action": action},
            "state": torch.randn(b, STATE, generator=g),
            "next": {
                "agents": {"observation": torch.randn(b, N_AGENTS, OBS, generator=g)},
                "state": torch.randn(b, STATE, generator=g),
                "reward": torch.randn(b, 1, generator=g),
                "done": terminated.clone(),
                "terminated": terminated,
            },
        },
        batch_size=[b],
    )


def perturb_targets(ours: QMixerLoss, theirs, seed=3):
    """Give both losses the same target weights, different from the online ones."""
    g = torch.Generator().manual_seed(seed)
    pairs = [
        (ours.target_local_value_network, theirs.target_local_value_network_params),
        (ours.target_mixer_network, theirs.target_mixer_network_params),
    ]
    for module, params in pairs:
        for name, buf in module.named_buffers():
            buf.add_(0.3 * torch.randn(buf.shape, generator=g))
            params.get(tuple(name.split("."))).data.copy_(buf)


def loss_pair(kind="qmix", share_params=True, delay_value=True, action_space="categorical"):
    local, mix = local_q_actor(share_params), mixer(kind)
    ours = QMixerLoss(local, mix, delay_value=delay_value, action_space=action_space)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TRQ.QMixerLoss(
            copy.deepcopy(local),
            copy.deepcopy(mix),
            delay_value=delay_value,
            action_space=action_space,
        )
    return ours, theirs


def grads_by_name(module):
    return {n: p.grad for n, p in module.named_parameters()}


@pytest.mark.parametrize("kind", ["qmix", "vdn"])
@pytest.mark.parametrize("share_params", [True, False])
@pytest.mark.parametrize("delay_value", [True, False])
@pytest.mark.parametrize("loss_function", ["l2", "smooth_l1"])
def test_matches_torchrl(kind, share_params, delay_value, loss_function):
    ours, theirs = loss_pair(kind, share_params, delay_value)
    ours.loss_function = theirs.loss_function = loss_function
    if delay_value:
        perturb_targets(ours, theirs)
    for loss in (ours, theirs):
        loss.make_value_estimator(
            "td0" if loss is ours else loss.default_value_estimator, gamma=0.9
        )
    td_ours, td_theirs = batch(), batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out_ours, out_theirs = ours(td_ours), theirs(td_theirs)
    assert list(out_ours.keys()) == list(out_theirs.keys()) == ["loss"]
    torch.testing.assert_close(out_ours["loss"], out_theirs["loss"], atol=ATOL, rtol=0)
    torch.testing.assert_close(td_ours["td_error"], td_theirs["td_error"], atol=ATOL, rtol=0)
    assert td_ours["td_error"].shape == (16, 1)
    out_ours["loss"].backward()
    out_theirs["loss"].backward()
    for ours_net, theirs_net in [
        (ours.local_value_network, theirs.local_value_network),
        (ours.mixer_network, theirs.mixer_network),
    ]:
        g_ours, g_theirs = grads_by_name(ours_net), grads_by_name(theirs_net)
        assert g_ours.keys() == g_theirs.keys()
        for name in g_ours:
            torch.testing.assert_close(g_ours[name], g_theirs[name], atol=ATOL, rtol=0)


def test_one_hot_actions_match_categorical():
    ours, _ = loss_pair(action_space="categorical")
    ours_oh = QMixerLoss(
        ours.local_value_network, ours.mixer_network, action_space="one-hot", delay_value=False
    )
    ours_cat = QMixerLoss(
        ours.local_value_network, ours.mixer_network, action_space="categorical", delay_value=False
    )
    torch.testing.assert_close(
        ours_oh(batch(one_hot=True))["loss"], ours_cat(batch())["loss"], atol=ATOL, rtol=0
    )


def test_vdn_target_by_hand():
    """(QMIX-L2) with VDN: y = r + γ(1-term) Σ_a max_u Q⁻_a(τ'_a, u), computed by hand."""
    local = local_q_actor()
    loss = QMixerLoss(local, mixer("vdn"), action_space="categorical")
    loss.make_value_estimator("td0", gamma=0.5)
    td = batch(b=4)
    with torch.no_grad():
        q_next = local[0](td["next"].clone())["agents", "action_value"]  # target = copy at start
        q_now = local[0](td.clone())["agents", "action_value"]
        chosen = q_now.gather(-1, td["agents", "action"].unsqueeze(-1)).sum((-2, -1))
        not_term = (~td["next", "terminated"]).float().squeeze(-1)
        y = td["next", "reward"].squeeze(-1) + 0.5 * not_term * q_next.max(-1).values.sum(-1)
        expected = ((chosen - y) ** 2).mean()
    torch.testing.assert_close(loss(td)["loss"], expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(td["td_error"].squeeze(-1), (chosen - y) ** 2, atol=ATOL, rtol=0)


def test_target_networks_are_frozen_copies_moved_by_soft_update():
    loss = QMixerLoss(local_q_actor(), mixer("qmix"), action_space="categorical")
    online = {n for n, _ in loss.named_parameters()}
    assert not any(n.startswith("target_") for n in online)
    assert {n.split(".")[0] for n in online} == {"local_value_network", "mixer_network"}
    opt = torch.optim.SGD(loss.parameters(), lr=0.5)
    before = [b.clone() for b in loss.target_mixer_network.buffers()]
    loss(batch())["loss"].backward()
    opt.step()
    after = list(loss.target_mixer_network.buffers())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    SoftUpdate(loss, tau=0.5).step()
    after = list(loss.target_mixer_network.buffers())
    assert not all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_set_keys_renames_group():
    torch.manual_seed(0)
    qnet = TensorDictModule(
        MultiAgentMLP(OBS, N_ACTIONS, N_AGENTS, centralized=False, share_params=True),
        in_keys=[("team", "observation")],
        out_keys=[("team", "action_value")],
    )
    greedy = TensorDictModule(
        GreedyAction(),
        in_keys=[("team", "action_value")],
        out_keys=[("team", "action"), ("team", "chosen_action_value")],
    )
    mix = TensorDictModule(
        VDNMixer(N_AGENTS), in_keys=[("team", "chosen_action_value")], out_keys=["q_tot"]
    )
    loss = QMixerLoss(TensorDictSequential(qnet, greedy), mix, action_space="categorical")
    loss.set_keys(
        action=("team", "action"),
        action_value=("team", "action_value"),
        local_value=("team", "chosen_action_value"),
        global_value="q_tot",
    )
    td = batch()
    td["team"] = td.pop("agents")
    td["next", "team"] = td["next"].pop("agents")
    assert torch.isfinite(loss(td)["loss"])
    assert ("team", "observation") in loss.in_keys


def test_errors():
    local, mix = local_q_actor(), mixer("qmix")
    with pytest.raises(TypeError, match="make_value_estimator"):
        QMixerLoss(local, mix, gamma=0.9, action_space="categorical")
    assert QMixerLoss(local, mix).action_space == "categorical"  # from its GreedyAction head
    undeclared = local_q_actor()
    undeclared.module[1].module.action_space = None  # a greedy head that declares no layout
    with pytest.raises(ValueError, match="action_space='categorical'"):
        QMixerLoss(undeclared, mix)
    with pytest.raises(ValueError, match="Unknown action_space"):
        QMixerLoss(local, mix, action_space="binary")
    with pytest.raises(ValueError, match="Unknown loss_function"):
        QMixerLoss(local, mix, loss_function="huber", action_space="categorical")
    with pytest.raises(TypeError, match="make_qvalue_actor"):
        QMixerLoss(torch.nn.Linear(3, 3), mix, action_space="categorical")
    loss = QMixerLoss(local, mix, action_space="categorical")

    td = batch()
    del td["agents"]  # the whole group is missing
    with pytest.raises(KeyError, match=r"\('agents', 'action'\).*set_keys\(action="):
        loss(td)

    td = batch()
    del td["next", "agents"]
    with pytest.raises(KeyError, match=r"\('next', 'agents', 'observation'\)"):
        loss(td)

    td = batch()  # one agent too many in the data
    td["agents"] = TensorDict(
        {
            "observation": torch.randn(16, N_AGENTS + 1, OBS),
            "action": torch.zeros(16, N_AGENTS + 1, dtype=torch.long),
        },
        batch_size=[16, N_AGENTS + 1],
    )
    with pytest.raises(ValueError, match="n_agents=3"):
        loss(td)
    assert "td_error" not in td.keys()

    td = batch()
    td["next", "reward"] = torch.randn(16, N_AGENTS, 1)
    with pytest.raises(ValueError, match="one team reward"):
        loss(td)


def test_mixer_for_other_agent_count_is_refused_at_forward():
    loss = QMixerLoss(
        local_q_actor(),
        TensorDictModule(
            VDNMixer(N_AGENTS + 1),
            in_keys=[("agents", "chosen_action_value")],
            out_keys=["chosen_action_value"],
        ),
        action_space="categorical",
    )
    with pytest.raises(ValueError, match=r"mixes 4 agents.*got \[16, 3, 1\]"):
        loss(batch())


@pytest.mark.parametrize("kind", ["td1", "td_lambda"])
def test_multistep_estimators_match_torchrl(kind):
    """TD(1) and TD(lambda) on a [B, T] batch, through the target networks, as TorchRL."""
    from torchrl.objectives import ValueEstimators

    ours, theirs = loss_pair("qmix")
    perturb_targets(ours, theirs)
    ours.make_value_estimator(kind, gamma=0.9)
    theirs.make_value_estimator(
        ValueEstimators.TD1 if kind == "td1" else ValueEstimators.TDLambda, gamma=0.9
    )
    td = batch(b=12).reshape(3, 4)
    a, b = ours(td.clone())["loss"], theirs(td.clone())["loss"]
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
