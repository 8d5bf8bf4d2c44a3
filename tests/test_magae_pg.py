"""``ValueEstimators.MAGAE`` in the PPO family, A2C and REINFORCE, against TorchRL 0.14 (issue 22).

TorchRL lets any policy-gradient loss switch to its multi-agent GAE; rlteach builds its
:class:`~rlteach.value.MultiAgentGAE` (and then accepts entries with an agent dim, as MAPPO does).
Same networks (deep copies), same grouped multi-agent batch; every ``loss_*`` output and every
parameter gradient agree within 1e-5.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_mappo import KEYS, batch, networks

from rlteach import objectives
from rlteach.objectives.common import UnsupportedEstimatorError
from rlteach.value import MultiAgentGAE, ValueEstimators

torchrl_objectives = pytest.importorskip("torchrl.objectives")
ATOL = 1e-5


@pytest.mark.parametrize("cls_name", ["ClipPPOLoss", "KLPENPPOLoss", "PPOLoss", "A2CLoss"])
@pytest.mark.parametrize("per_agent_reward", [False, True])
@pytest.mark.parametrize("enum", ["rlteach", "torchrl"])
def test_magae_matches_torchrl(cls_name, per_agent_reward, enum):
    actor, critic = networks()
    # KLPEN: TorchRL's gradient uses the updated beta (rlteach's documented switch)
    quirk = {"beta_update_in_graph": True} if cls_name == "KLPENPPOLoss" else {}
    ours = getattr(objectives, cls_name)(actor, critic, **quirk)
    theirs = getattr(torchrl_objectives, cls_name)(copy.deepcopy(actor), copy.deepcopy(critic))
    keys = dict(KEYS, reward=("agents", "reward") if per_agent_reward else "reward")
    # rlteach's enum, or TorchRL's own members (taken by name): code written for TorchRL runs
    theirs_enum = torchrl_objectives.ValueEstimators
    ours_kind = ValueEstimators.MAGAE if enum == "rlteach" else theirs_enum.MAGAE
    for loss, kind in ((ours, ours_kind), (theirs, theirs_enum.MAGAE)):
        loss.set_keys(**keys)
        loss.make_value_estimator(kind, gamma=0.9, lmbda=0.8)
    assert isinstance(ours.value_estimator, MultiAgentGAE)
    td = batch(per_agent_reward)
    g = torch.Generator().manual_seed(3)
    td["agents", "logits"] = torch.randn(*td["agents", "action"].shape, 5, generator=g)  # KL
    out_ours, out_theirs = ours(td.clone()), theirs(td.clone())
    loss_keys = [k for k in out_theirs.keys() if k.startswith("loss_")]
    assert loss_keys and set(loss_keys) <= set(out_ours.keys())
    for key in loss_keys:
        torch.testing.assert_close(out_ours[key], out_theirs[key], atol=ATOL, rtol=0, msg=key)
    sum(out_ours[k] for k in loss_keys).backward()
    sum(out_theirs[k] for k in loss_keys).backward()
    for net_ours, net_theirs in [(actor, theirs.actor_network), (critic, theirs.critic_network)]:
        g_theirs = dict(net_theirs.named_parameters())
        for name, p in net_ours.named_parameters():
            torch.testing.assert_close(p.grad, g_theirs[name].grad, atol=ATOL, rtol=0, msg=name)


def test_magae_alias_and_defaults():
    actor, critic = networks()
    loss = objectives.ClipPPOLoss(actor, critic).make_value_estimator("magae")
    est = loss.value_estimator
    assert isinstance(est, MultiAgentGAE)
    assert float(est.gamma) == pytest.approx(0.99) and float(est.lmbda) == pytest.approx(0.95)


def test_magae_refused_where_torchrl_refuses_it():
    """DQN's family never takes it (TorchRL: NotImplementedError)."""
    from rlteach.modules import make_qvalue_actor, make_qvalue_network

    loss = objectives.DQNLoss(make_qvalue_actor(make_qvalue_network(3, 2, (8,))))
    with pytest.raises(UnsupportedEstimatorError, match="MAGAE"):
        loss.make_value_estimator(ValueEstimators.MAGAE)
