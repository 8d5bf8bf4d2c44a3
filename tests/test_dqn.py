"""DQNLoss and DistributionalDQNLoss: TorchRL parity, hand-computed targets, the C51 projection
on a 5-atom support, mass conservation on exact support points, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from rlteach.modules import (
    DistributionalQValueActor,
    make_distributional_qvalue_network,
    make_qvalue_actor,
    make_qvalue_network,
)
from rlteach.objectives import DistributionalDQNLoss, DQNLoss, project_distribution
from rlteach.updaters import HardUpdate

torchrl_objectives = pytest.importorskip("torchrl.objectives")

OBS, N_ACTIONS, N_ATOMS = 4, 3, 11
TOL = 1e-5


def make_batch(batch_shape, action_space="categorical", seed=1, n_actions=N_ACTIONS):
    """Random transitions with a mix of terminated, truncated-only and running steps."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, n_actions, batch_shape, generator=g)
    action = index if action_space == "categorical" else nn.functional.one_hot(index, n_actions)
    terminated = torch.rand(*batch_shape, 1, generator=g) < 0.3
    truncated = (torch.rand(*batch_shape, 1, generator=g) < 0.3) & ~terminated
    return TensorDict(
        {
            "observation": torch.randn(*batch_shape, OBS, generator=g),
            "action": action,
            "next": {
                "observation": torch.randn(*batch_shape, OBS, generator=g),
                "reward": 3 * torch.randn(*batch_shape, 1, generator=g),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=batch_shape,
    )


def perturb_(module, seed=7, scale=0.3):
    """Move the online weights away from the target copy made at construction."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def loss_and_grads(loss_module, network, td):
    network.zero_grad()
    out = loss_module(td)
    out["loss"].sum().backward()
    return out, [p.grad.clone() for p in network.parameters()]


def assert_grads_close(g1, g2):
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)


# ------------------------------------------------------------------------------ DQN: parity


def dqn_pair(action_space, ours_kwargs, theirs_kwargs=None, seed=0):
    """An rlteach DQNLoss and a TorchRL DQNLoss on two identical copies of one Q actor."""
    torch.manual_seed(seed)
    actor = make_qvalue_actor(make_qvalue_network(OBS, N_ACTIONS, num_cells=(16,)), action_space)
    twin = copy.deepcopy(actor)
    ours = DQNLoss(actor, **ours_kwargs)
    theirs_kwargs = dict(ours_kwargs if theirs_kwargs is None else theirs_kwargs)
    theirs = torchrl_objectives.DQNLoss(twin, action_space=action_space, **theirs_kwargs)
    perturb_(actor)
    perturb_(twin)
    return ours, actor, theirs, twin


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("action_space", ["categorical", "one-hot"])
@pytest.mark.parametrize("double_dqn", [False, True])
@pytest.mark.parametrize("loss_function", ["l2", "l1", "smooth_l1"])
@pytest.mark.parametrize("batch_shape", [(12,), (3, 5)])
def test_dqn_matches_torchrl(action_space, double_dqn, loss_function, batch_shape):
    kwargs = {"double_dqn": double_dqn, "loss_function": loss_function}
    ours, actor, theirs, twin = dqn_pair(action_space, kwargs)
    td = make_batch(batch_shape, action_space)
    td_ours, td_theirs = td.clone(), td.clone()
    out, grads = loss_and_grads(ours, actor, td_ours)
    out_t, grads_t = loss_and_grads(theirs, twin, td_theirs)
    assert set(out.keys()) == set(out_t.keys()) == {"loss"}
    torch.testing.assert_close(out["loss"], out_t["loss"], atol=TOL, rtol=0)
    assert_grads_close(grads, grads_t)
    # the TD error written for prioritized replay
    torch.testing.assert_close(td_ours["td_error"], td_theirs["td_error"], atol=TOL, rtol=0)
    assert td_ours["td_error"].shape == (*batch_shape, 1)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_dqn_reduction_weights_and_no_target_match_torchrl(reduction):
    kwargs = {"reduction": reduction, "delay_value": False}
    ours, actor, theirs, twin = dqn_pair("categorical", kwargs)
    td = make_batch((10,))
    td["priority_weight"] = torch.rand(10)
    out, grads = loss_and_grads(ours, actor, td.clone())
    out_t, grads_t = loss_and_grads(theirs, twin, td.clone())
    torch.testing.assert_close(out["loss"], out_t["loss"], atol=TOL, rtol=0)
    assert_grads_close(grads, grads_t)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind,hyper", [("td0", {"gamma": 0.5}), ("td_lambda", {"lmbda": 0.7})])
def test_dqn_value_estimators_match_torchrl(kind, hyper):
    ours, actor, theirs, twin = dqn_pair("categorical", {"double_dqn": True})
    ours.make_value_estimator(kind, **hyper)
    torchrl_kind = {
        "td0": torchrl_objectives.ValueEstimators.TD0,
        "td_lambda": torchrl_objectives.ValueEstimators.TDLambda,
    }
    theirs.make_value_estimator(torchrl_kind[kind], **hyper)
    td = make_batch((2, 6))
    out, grads = loss_and_grads(ours, actor, td.clone())
    out_t, grads_t = loss_and_grads(theirs, twin, td.clone())
    torch.testing.assert_close(out["loss"], out_t["loss"], atol=TOL, rtol=0)
    assert_grads_close(grads, grads_t)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dqn_set_keys_and_in_keys_match_torchrl():
    ours, actor, theirs, twin = dqn_pair("categorical", {})
    assert set(ours.in_keys) == set(theirs.in_keys)
    ours.set_keys(action="act", reward="rew")
    theirs.set_keys(action="act", reward="rew")
    td = make_batch((8,)).rename_key_("action", "act")
    td.rename_key_(("next", "reward"), ("next", "rew"))
    out, _ = loss_and_grads(ours, actor, td.clone())
    out_t, _ = loss_and_grads(theirs, twin, td.clone())
    torch.testing.assert_close(out["loss"], out_t["loss"], atol=TOL, rtol=0)
    assert set(ours.in_keys) == set(theirs.in_keys)


# ------------------------------------------------------------------------------ DQN: by hand


class FixedQ(nn.Module):
    """Q(s, ·) = s[..., :3]: the observation *is* the action-value vector."""

    def forward(self, obs):
        return obs[..., :N_ACTIONS]


def fixed_q_actor():
    return make_qvalue_actor(
        TensorDictModule(FixedQ(), in_keys=["observation"], out_keys=["action_value"])
    )


@pytest.mark.parametrize("double_dqn", [False, True])
def test_dqn_target_by_hand_terminated_versus_truncated(double_dqn):
    """y = r + γ max Q(s') unless terminated; truncation (done, not terminated) bootstraps."""
    loss = DQNLoss(fixed_q_actor(), double_dqn=double_dqn, reduction="none")
    loss.make_value_estimator(gamma=0.5)
    obs = torch.tensor([[1.0, 2.0, 3.0, 0.0]]).expand(3, OBS)
    next_obs = torch.tensor([[4.0, 10.0, 6.0, 0.0]]).expand(3, OBS)
    td = TensorDict(
        {
            "observation": obs,
            "action": torch.tensor([0, 1, 2]),
            "next": {
                "observation": next_obs,
                "reward": torch.tensor([[1.0], [1.0], [1.0]]),
                # running, truncated by a time limit, terminated
                "truncated": torch.tensor([[False], [True], [False]]),
                "terminated": torch.tensor([[False], [False], [True]]),
                "done": torch.tensor([[False], [True], [True]]),
            },
        },
        batch_size=[3],
    )
    # targets: 1 + 0.5 * 10 = 6 (running), 6 (truncated: still bootstraps), 1 (terminated)
    # Q(s, a) = 1, 2, 3; squared errors 25, 16, 4
    out = loss(td)
    torch.testing.assert_close(out["loss"], torch.tensor([25.0, 16.0, 4.0]))
    torch.testing.assert_close(td["td_error"], torch.tensor([[25.0], [16.0], [4.0]]))


def test_double_dqn_evaluates_the_online_choice_with_the_target():
    """With θ ≠ θ', DQN-3 reads Q_θ'(s', argmax Q_θ(s', ·)), not max Q_θ'(s', ·)."""
    torch.manual_seed(0)
    net = nn.Linear(OBS, N_ACTIONS)
    actor = make_qvalue_actor(TensorDictModule(net, ["observation"], ["action_value"]))
    td = make_batch((6,))
    td["next", "terminated"] = torch.zeros(6, 1, dtype=torch.bool)
    loss = DQNLoss(actor, double_dqn=True, reduction="none")
    with torch.no_grad():
        net.weight.add_(torch.randn_like(net.weight))
        q_online_next = net(td["next", "observation"])
        q_target_next = loss.target_value_network.module[0].module(td["next", "observation"])
    a_star = q_online_next.argmax(-1, keepdim=True)
    y = td["next", "reward"] + 0.99 * q_target_next.gather(-1, a_star)
    q_taken = net(td["observation"]).gather(-1, td["action"].unsqueeze(-1))
    torch.testing.assert_close(loss(td)["loss"], (q_taken - y).squeeze(-1).pow(2).detach())


def test_hard_update_copies_the_online_network_into_the_target():
    actor = make_qvalue_actor(make_qvalue_network(OBS, N_ACTIONS, num_cells=(8,)))
    loss = DQNLoss(actor)
    perturb_(actor)
    updater = HardUpdate(loss, value_network_update_interval=2)
    perturb_(actor, seed=3)
    updater.step()
    online = dict(actor.named_parameters())
    target = dict(loss.target_value_network.named_buffers())
    assert set(online) == set(target)
    assert not any(torch.equal(p, target[name]) for name, p in online.items())
    updater.step()
    for name, p in online.items():
        torch.testing.assert_close(p, target[name], atol=0, rtol=0)


# ------------------------------------------------------------------------------ DQN: errors


def test_double_dqn_without_target_is_refused_like_torchrl():
    actor = fixed_q_actor()
    with pytest.raises(ValueError, match="double_dqn=True requires delay_value=True"):
        torchrl_objectives.DQNLoss(actor, double_dqn=True, delay_value=False)
    with pytest.raises(ValueError, match="decouples choosing the next action"):
        DQNLoss(actor, double_dqn=True, delay_value=False)
    with pytest.raises(ValueError, match="decouples"):
        DistributionalDQNLoss(c51_actor(), gamma=0.9, double_dqn=True, delay_value=False)


def test_dqn_refuses_actions_out_of_range_and_bad_one_hot():
    loss = DQNLoss(fixed_q_actor())
    td = make_batch((4,))
    td["action"] = torch.tensor([0, 1, 3, 2])
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 2\]"):
        loss(td)
    assert "td_error" not in td.keys()
    td["action"] = torch.tensor([0, -1, 1, 2])
    with pytest.raises(ValueError, match="must lie in"):
        loss(td)
    one_hot = DQNLoss(fixed_q_actor(), action_space="one-hot")
    td["action"] = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]])
    with pytest.raises(ValueError, match="exactly one 1"):
        one_hot(td)
    td["action"] = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="one-hot actions must have shape"):
        one_hot(td)


def test_dqn_argument_errors():
    with pytest.raises(TypeError, match="make_value_estimator"):
        DQNLoss(fixed_q_actor(), gamma=0.9)
    with pytest.raises(ValueError, match="loss_function"):
        DQNLoss(fixed_q_actor(), loss_function="huber")
    with pytest.raises(ValueError, match="action_space"):
        DQNLoss(fixed_q_actor(), action_space="binary")
    with pytest.raises(ValueError, match="reduction"):
        DQNLoss(fixed_q_actor(), reduction="avg")


def test_dqn_infers_the_action_space():
    assert DQNLoss(fixed_q_actor()).action_space == "categorical"
    one_hot_actor = make_qvalue_actor(
        TensorDictModule(FixedQ(), in_keys=["observation"], out_keys=["action_value"]), "one_hot"
    )
    assert DQNLoss(one_hot_actor).action_space == "one-hot"
    # a network without the attribute: read from the action's shape at each call
    bare = fixed_q_actor()
    del bare.action_space
    loss = DQNLoss(bare)
    assert loss.action_space is None
    td = make_batch((5,))
    expected = DQNLoss(fixed_q_actor())(td.clone())["loss"]
    torch.testing.assert_close(loss(td.clone())["loss"], expected)
    td["action"] = nn.functional.one_hot(td["action"], N_ACTIONS)
    torch.testing.assert_close(loss(td.clone())["loss"], expected)


# ------------------------------------------------------------------------------ C51: projection


SUPPORT5 = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
P5 = torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15]])


def test_c51_projection_by_hand_on_five_atoms():
    """r = 0.5, γ = 0.5: T z = [-0.5, 0, 0.5, 1, 1.5], b = T z + 2 = [1.5, 2, 2.5, 3, 3.5].

    atom 0 (b = 1.5) splits 0.10 into 0.05 on z_1 and 0.05 on z_2
    atom 1 (b = 2, exactly on z_2) puts all 0.20 on z_2
    atom 2 (b = 2.5) splits 0.30 into 0.15 on z_2 and 0.15 on z_3
    atom 3 (b = 3, exactly on z_3) puts all 0.25 on z_3
    atom 4 (b = 3.5) splits 0.15 into 0.075 on z_3 and 0.075 on z_4
    => m = [0, 0.05, 0.40, 0.475, 0.075]
    """
    m = project_distribution(P5, torch.tensor([[0.5]]), torch.ones(1, 1), 0.5, SUPPORT5)
    torch.testing.assert_close(m, torch.tensor([[0.0, 0.05, 0.40, 0.475, 0.075]]))
    # the projection keeps the mean: Σ m_i z_i = r + γ Σ p_j z_j when nothing is clamped
    torch.testing.assert_close((m * SUPPORT5).sum(), 0.5 + 0.5 * (P5 * SUPPORT5).sum())


def test_c51_projection_terminal_and_clamped():
    # terminated: the whole distribution collapses onto r = 0.5, halfway between z_2 and z_3
    m = project_distribution(P5, torch.tensor([[0.5]]), torch.zeros(1, 1), 0.5, SUPPORT5)
    torch.testing.assert_close(m, torch.tensor([[0.0, 0.0, 0.5, 0.5, 0.0]]))
    # r = 5 pushes every atom beyond V_MAX = 2: all mass on the last atom (an exact point)
    m = project_distribution(P5, torch.tensor([[5.0]]), torch.ones(1, 1), 0.5, SUPPORT5)
    torch.testing.assert_close(m, torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]]))


def naive_algorithm_1(p, reward, not_terminated, gamma, support):
    """C51-4 exactly as printed: m_l += p (u - b), m_u += p (b - l), no l = u case."""
    v_min, v_max = support[0], support[-1]
    dz = (v_max - v_min) / (support.numel() - 1)
    b = ((reward + not_terminated * gamma * support).clamp(v_min, v_max) - v_min) / dz
    lower, upper = b.floor(), b.ceil()
    m = torch.zeros_like(p)
    m.scatter_add_(-1, lower.long(), p * (upper - b))
    m.scatter_add_(-1, upper.long(), p * (b - lower))
    return m


def test_c51_mass_is_kept_when_atoms_land_on_support_points():
    """γ = 1 and whole-number rewards on an integer support put every atom on a point."""
    g = torch.Generator().manual_seed(0)
    p = torch.rand(64, 5, generator=g).softmax(-1)
    reward = torch.randint(-3, 4, (64, 1), generator=g).float()
    not_terminated = (torch.rand(64, 1, generator=g) < 0.7).float()
    m = project_distribution(p, reward, not_terminated, 1.0, SUPPORT5)
    torch.testing.assert_close(m.sum(-1), torch.ones(64))
    assert (m >= 0).all()
    # the algorithm as printed loses it: the reason for the l = u case
    lost = 1 - naive_algorithm_1(p, reward, not_terminated, 1.0, SUPPORT5).sum(-1)
    assert lost.max() > 0.5
    # and general positions keep their mass too
    reward = 4 * torch.randn(64, 1, generator=g)
    m = project_distribution(p, reward, not_terminated, 0.9, SUPPORT5)
    torch.testing.assert_close(m.sum(-1), torch.ones(64))


# ------------------------------------------------------------------------------ C51: loss


def c51_actor(action_space="categorical", n_atoms=N_ATOMS, seed=0):
    torch.manual_seed(seed)
    net = make_distributional_qvalue_network(OBS, N_ACTIONS, n_atoms, num_cells=(16,))
    return DistributionalQValueActor(net, torch.linspace(-5.0, 5.0, n_atoms), action_space)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("action_space", ["categorical", "one-hot"])
@pytest.mark.parametrize("delay_value", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_c51_matches_torchrl(action_space, delay_value, reduction):
    """TorchRL picks a* with the online network: rlteach's double_dqn=True."""
    actor = c51_actor(action_space)
    twin = copy.deepcopy(actor)
    ours = DistributionalDQNLoss(
        actor, gamma=0.9, delay_value=delay_value, double_dqn=delay_value, reduction=reduction
    )
    theirs = torchrl_objectives.DistributionalDQNLoss(
        twin, gamma=0.9, delay_value=delay_value, reduction=reduction
    )
    perturb_(actor)
    perturb_(twin)
    td = make_batch((16,), action_space)
    td_ours, td_theirs = td.clone(), td.clone()
    out, grads = loss_and_grads(ours, actor, td_ours)
    out_t, grads_t = loss_and_grads(theirs, twin, td_theirs)
    assert set(out.keys()) == set(out_t.keys()) == {"loss"}
    torch.testing.assert_close(out["loss"], out_t["loss"], atol=TOL, rtol=0)
    assert_grads_close(grads, grads_t)
    torch.testing.assert_close(td_ours["td_error"], td_theirs["td_error"], atol=TOL, rtol=0)


def test_c51_default_chooses_the_next_action_with_the_target_network():
    """The paper's a* (target network) by hand, and that it differs from TorchRL's choice."""
    actor = c51_actor()
    loss = DistributionalDQNLoss(actor, gamma=0.9, reduction="none")
    double = DistributionalDQNLoss(actor, gamma=0.9, reduction="none", double_dqn=True)
    perturb_(actor, scale=1.0)
    double.target_value_network.load_state_dict(loss.target_value_network.state_dict())
    td = make_batch((32,))
    z = actor.support
    with torch.no_grad():
        log_p_next = loss.target_value_network(td["next"].clone())["action_value"]
        a_star = (log_p_next.exp() * z[:, None]).sum(-2).argmax(-1)
        p_next = log_p_next.exp()[torch.arange(32), :, a_star]
        not_term = 1.0 - td["next", "terminated"].float()
        m = project_distribution(p_next, td["next", "reward"], not_term, 0.9, z)
    log_p = actor(td.clone())["action_value"][torch.arange(32), :, td["action"]]
    expected = -(m * log_p).sum(-1)
    torch.testing.assert_close(loss(td.clone())["loss"], expected, atol=TOL, rtol=0)
    assert not torch.allclose(double(td.clone())["loss"], expected, atol=1e-3)


def test_c51_accepts_a_time_dim():
    actor = c51_actor()
    loss = DistributionalDQNLoss(actor, gamma=0.9, reduction="none")
    td = make_batch((3, 5))
    out = loss(td.clone())["loss"]
    flat = loss(td.reshape(15).clone())["loss"]
    assert out.shape == (3, 5)
    torch.testing.assert_close(out.reshape(15), flat)


def test_c51_support_must_match_the_network():
    net = make_distributional_qvalue_network(OBS, N_ACTIONS, 7)
    with pytest.raises(ValueError, match="outputs 7 atoms but the support has 11"):
        DistributionalQValueActor(net, torch.linspace(-5, 5, 11))
    # a network that does not announce its atoms is caught when it runs, before any loss
    plain = TensorDictModule(
        nn.Sequential(nn.Linear(OBS, 7 * N_ACTIONS), nn.Unflatten(-1, (7, N_ACTIONS))),
        in_keys=["observation"],
        out_keys=["action_value"],
    )
    actor = DistributionalQValueActor(plain, torch.linspace(-5, 5, 11))
    loss = DistributionalDQNLoss(actor, gamma=0.9)
    td = make_batch((4,))
    with pytest.raises(ValueError, match="support has 11 points"):
        loss(td)
    assert "td_error" not in td.keys()
    with pytest.raises(ValueError, match="has no 'support'"):
        DistributionalDQNLoss(fixed_q_actor(), gamma=0.9)
    with pytest.raises(ValueError, match="equal steps"):
        DistributionalQValueActor(
            make_distributional_qvalue_network(OBS, N_ACTIONS, 3), torch.tensor([0.0, 1.0, 3.0])
        )


def test_c51_refuses_actions_out_of_range_and_bad_gamma():
    loss = DistributionalDQNLoss(c51_actor(), gamma=0.9)
    td = make_batch((4,))
    td["action"] = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match="must lie in"):
        loss(td)
    with pytest.raises(ValueError, match="gamma"):
        DistributionalDQNLoss(c51_actor(), gamma=1.5)
