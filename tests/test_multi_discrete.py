"""Multi-discrete (multi-one-hot) actions in DQN and C51, against TorchRL 0.14 (issue 22).

DQN: TorchRL's ``QValueActor`` over a ``MultiOneHot([2, 3])`` spec (one one-hot block per action
dimension); Q(s, a) is the sum of the blocks' values (DQN-5). Same network, same batch: the same
loss and gradients within 1e-5, with and without Double DQN, the action space given or read from
the actor. C51: refused (TorchRL's own loss fails on such a batch, shown here).
"""

from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from rlteach.objectives import DistributionalDQNLoss, DQNLoss

TO = pytest.importorskip("torchrl.objectives")
TM = pytest.importorskip("torchrl.modules")
MultiOneHot = pytest.importorskip("torchrl.data").MultiOneHot

OBS, NVEC, B = 4, (2, 3), 7
ATOL = 1e-5


def actor(seed=0):
    """TorchRL's Q-value actor over MultiOneHot([2, 3]): the network, then QValueModule (which
    needs var_nums for a multi-one-hot spec; TorchRL's QValueActor does not pass it on)."""
    from tensordict.nn import TensorDictModule, TensorDictSequential

    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, sum(NVEC)))
    greedy = TM.QValueModule(spec=MultiOneHot(list(NVEC)), var_nums=list(NVEC))
    seq = TensorDictSequential(TensorDictModule(net, ["observation"], ["action_value"]), greedy)
    seq.action_space = greedy.action_space  # "mult_one_hot", where DQNLoss looks for it
    return seq


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    blocks = [nn.functional.one_hot(torch.randint(n, (B,), generator=g), n) for n in NVEC]
    terminated = torch.rand(B, 1, generator=g) < 0.3
    return TensorDict(
        {
            "observation": torch.randn(B, OBS, generator=g),
            "action": torch.cat(blocks, -1),
            "next": {
                "observation": torch.randn(B, OBS, generator=g),
                "reward": torch.randn(B, 1, generator=g),
                "done": terminated.clone(),
                "terminated": terminated,
            },
        },
        [B],
    )


@pytest.mark.parametrize("given", [True, False])  # False: read from the actor
@pytest.mark.parametrize("double_dqn", [False, True])
def test_dqn_multi_one_hot_matches_torchrl(double_dqn, given):
    net = actor()
    kwargs = {"double_dqn": double_dqn}
    if given:
        kwargs["action_space"] = "mult_one_hot"
    ours = DQNLoss(net, **kwargs)
    theirs = TO.DQNLoss(copy.deepcopy(net), **kwargs)
    for loss in (ours, theirs):  # targets apart from the online network
        target = loss.target_value_network if loss is ours else loss.target_value_network_params
        for p in target.buffers() if loss is ours else target.values(True, True):
            p.data.add_(0.05)
    td = batch()
    out_ours, out_theirs = ours(td.clone()), theirs(td.clone())
    torch.testing.assert_close(out_ours["loss"], out_theirs["loss"], atol=ATOL, rtol=0)
    out_ours["loss"].backward()
    out_theirs["loss"].backward()
    theirs_grads = dict(theirs.value_network_params.flatten_keys(".").items())
    for name, p in ours.value_network.named_parameters():
        torch.testing.assert_close(p.grad, theirs_grads[name].grad, atol=ATOL, rtol=0, msg=name)


def test_dqn_multi_one_hot_by_hand():
    """Q(s, a) = Q^1(s, a^1) + Q^2(s, a^2); target r + gamma (1 - term) sum_k max Q^k(s')."""
    net = actor()
    loss = DQNLoss(net, action_space="mult_one_hot", delay_value=False)
    loss.make_value_estimator(gamma=0.5)
    td = batch()[:1]
    with torch.no_grad():
        q = net.module[0].module(td["observation"])[0]  # the action values, [5]
        q_next = net.module[0].module(td["next", "observation"])[0]
    a = td["action"][0].bool()
    pred = q[a].sum()
    next_value = q_next[:2].max() + q_next[2:].max()
    target = td["next", "reward"][0, 0] + 0.5 * (~td["next", "terminated"][0, 0]) * next_value
    torch.testing.assert_close(loss(td.clone())["loss"], (pred - target) ** 2)


def test_dqn_refuses_a_multi_one_hot_action_of_the_wrong_width():
    loss = DQNLoss(actor(), action_space="mult_one_hot")
    td = batch()
    td["action"] = td["action"][:, :4]
    with pytest.raises(ValueError, match="mult_one_hot.*shape of the action values"):
        loss(td)


def test_c51_refuses_multi_one_hot_with_the_reason():
    support = torch.linspace(-1, 1, 5)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(OBS, 5 * sum(NVEC)), nn.Unflatten(-1, (5, sum(NVEC))))
    theirs_actor = TM.DistributionalQValueActor(
        net,
        support=support,
        in_keys=["observation"],
        spec=MultiOneHot(list(NVEC)),
        var_nums=list(NVEC),
    )
    assert theirs_actor.action_space == "mult_one_hot"
    with pytest.raises(ValueError, match="multi-discrete.*not supported.*TorchRL 0.14"):
        DistributionalDQNLoss(theirs_actor, gamma=0.9)
    # TorchRL builds its loss, then fails on the batch
    theirs = TO.DistributionalDQNLoss(copy.deepcopy(theirs_actor), gamma=0.9)
    with pytest.raises(RuntimeError):
        theirs(batch())
