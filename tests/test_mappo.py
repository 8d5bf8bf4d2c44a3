"""MAPPOLoss / IPPOLoss against TorchRL 0.14.1's, on grouped multi-agent keys.

Identical networks (deep copies) and batches; every output and every parameter gradient must
agree within 1e-5. Also: per-agent advantage standardisation by hand, and input errors.
"""

import copy

import pytest
import torch
from tensordict import TensorDict

from rlteach.modules import make_multiagent_categorical_actor, make_multiagent_value_network
from rlteach.objectives.mappo import IPPOLoss, MAPPOLoss, standardize

TRM = pytest.importorskip("torchrl.objectives.multiagent")

ATOL = 1e-5
N, OBS, ACTS, B, T = 3, 4, 5, 2, 6
KEYS = {
    "action": ("agents", "action"),
    "sample_log_prob": ("agents", "action_log_prob"),
    "value": ("agents", "state_value"),
}


def networks(centralized_critic=True, seed=0):
    torch.manual_seed(seed)
    actor = make_multiagent_categorical_actor(OBS, ACTS, N, share_params=True, num_cells=(8,))
    critic = make_multiagent_value_network(
        OBS, N, centralized=centralized_critic, share_params=False, num_cells=(8,)
    )
    return actor, critic


def batch(per_agent_reward, seed=0):
    g = torch.Generator().manual_seed(seed)
    done = torch.zeros(B, T, 1, dtype=torch.bool)
    done[:, 3] = True
    terminated = done.clone()
    nxt = {
        "agents": {"observation": torch.randn(B, T, N, OBS, generator=g)},
        "done": done,
        "terminated": terminated,
    }
    if per_agent_reward:
        nxt["agents"]["reward"] = torch.randn(B, T, N, 1, generator=g)
    else:
        nxt["reward"] = torch.randn(B, T, 1, generator=g)
    return TensorDict(
        {
            "agents": {
                "observation": torch.randn(B, T, N, OBS, generator=g),
                "action": torch.randint(ACTS, (B, T, N), generator=g),
                "action_log_prob": -1.6 + 0.3 * torch.randn(B, T, N, generator=g),
            },
            "next": nxt,
        },
        batch_size=[B, T],
    )


@pytest.mark.parametrize("cls_name", ["MAPPOLoss", "IPPOLoss"])
@pytest.mark.parametrize("per_agent_reward", [False, True])
@pytest.mark.parametrize("normalize_advantage", [True, False])
def test_matches_torchrl(cls_name, per_agent_reward, normalize_advantage):
    ours_cls = {"MAPPOLoss": MAPPOLoss, "IPPOLoss": IPPOLoss}[cls_name]
    theirs_cls = getattr(TRM, cls_name)
    actor, critic = networks(centralized_critic=cls_name == "MAPPOLoss")
    keys = dict(KEYS, reward=("agents", "reward") if per_agent_reward else "reward")
    ours = ours_cls(actor, critic, normalize_advantage=normalize_advantage)
    theirs = theirs_cls(
        copy.deepcopy(actor), copy.deepcopy(critic), normalize_advantage=normalize_advantage
    )
    for loss in (ours, theirs):
        loss.set_keys(**keys)
        loss.make_value_estimator(**({"gamma": 0.9, "lmbda": 0.8}))
    out_ours, out_theirs = ours(batch(per_agent_reward)), theirs(batch(per_agent_reward))
    for key in ["loss_objective", "loss_critic", "loss_entropy", "entropy", "kl_approx"]:
        torch.testing.assert_close(out_ours[key], out_theirs[key], atol=ATOL, rtol=0)
    sum(out_ours[k] for k in out_ours.keys() if k.startswith("loss_")).backward()
    sum(out_theirs[k] for k in out_theirs.keys() if k.startswith("loss_")).backward()
    for ours_net, theirs_net in [
        (ours.actor_network, theirs.actor_network),
        (ours.critic_network, theirs.critic_network),
    ]:
        g_ours = {n: p.grad for n, p in ours_net.named_parameters()}
        g_theirs = {n: p.grad for n, p in theirs_net.named_parameters()}
        assert g_ours.keys() == g_theirs.keys()
        for name, grad in g_ours.items():
            assert grad is not None and grad.abs().sum() > 0
            torch.testing.assert_close(grad, g_theirs[name], atol=ATOL, rtol=0)


def test_default_estimator_is_multiagent_gae_with_torchrl_defaults():
    actor, critic = networks()
    loss = MAPPOLoss(actor, critic)
    est = loss.value_estimator
    assert type(est).__name__ == "MultiAgentGAE"
    assert float(est.gamma) == pytest.approx(0.99) and float(est.lmbda) == pytest.approx(0.95)
    assert loss.normalize_advantage and loss.normalize_advantage_exclude_dims == (-2,)
    assert float(loss.entropy_coeff) == pytest.approx(0.01)


def test_per_agent_standardisation_by_hand():
    adv = torch.tensor([[[1.0], [10.0]], [[3.0], [30.0]]])  # [B=2, n=2, 1]
    out = standardize(adv, (-2,))
    # agent 0: values 1, 3 -> mean 2, unbiased std sqrt(2); agent 1: 10, 30 -> mean 20, std 10 sqrt 2
    expected = torch.tensor([[[-1.0], [-1.0]], [[1.0], [1.0]]]) / 2**0.5
    torch.testing.assert_close(out, expected)
    global_ = standardize(adv, ())
    assert not torch.allclose(global_, expected)


def test_errors():
    actor, critic = networks()
    with pytest.raises(NotImplementedError, match="value_norm"):
        MAPPOLoss(actor, critic, value_norm=object())
    loss = MAPPOLoss(actor, critic)
    loss.set_keys(**KEYS)
    td = batch(False)
    del td["agents"]
    # the first missing entry is named: the actor's observation (checked with every network
    # input, before the loss reads its own keys) or the log-probability
    with pytest.raises(KeyError, match=r"\('agents', '(observation|action_log_prob)'\)"):
        loss(td)
    td = batch(True)  # per-agent rewards for 4 agents, a critic for 3
    td["next", "agents_reward"] = torch.randn(B, T, N + 1, 1)
    loss.set_keys(reward="agents_reward")
    with pytest.raises(ValueError, match="reward has 4 agents"):
        loss(td)
