"""What a loss reads from the networks it is given, as TorchRL does (issue 22).

* ``QMixerLoss`` takes the action layout from the Q-value module's greedy head (TorchRL's
  ``QValueModule`` at the end of a ``TensorDictSequential``) when ``action_space`` is not given.
* ``DQNLoss`` takes a plain ``nn.Module`` (observation -> Q(s, ·)) and wraps it in a greedy actor
  reading ``"observation"``, as TorchRL wraps it in a ``QValueActor``.
* PPO and SAC take their action and log-probability keys from the actor's sampling keys (a nested
  multi-agent ``("agents", "action_log_prob")``); A2C already did.
Each: the same numbers as TorchRL within 1e-5.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from tensordict.nn import TensorDictSequential
from torch import nn

from rlteach import objectives

TO = pytest.importorskip("torchrl.objectives")
TM = pytest.importorskip("torchrl.modules")
TRQ = pytest.importorskip("torchrl.objectives.multiagent")
ATOL = 1e-5


@pytest.mark.parametrize("action_space", ["categorical", "one-hot"])
def test_qmixer_reads_the_action_space_of_a_qvalue_module(action_space):
    from test_qmixer import batch, local_q_actor, mixer

    qnet = local_q_actor().module[0]
    greedy = TM.QValueModule(
        action_space=action_space,
        action_value_key=("agents", "action_value"),
        out_keys=[
            ("agents", "action"),
            ("agents", "action_value"),
            ("agents", "chosen_action_value"),
        ],
    )
    local, mix = TensorDictSequential(qnet, greedy), mixer("qmix")
    assert not hasattr(local, "action_space")  # only its head declares it
    ours = objectives.QMixerLoss(local, mix, delay_value=False)
    assert ours.action_space == action_space
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TRQ.QMixerLoss(
            copy.deepcopy(local), copy.deepcopy(mix), delay_value=False, action_space=action_space
        )
    td = batch(one_hot=action_space == "one-hot")
    torch.testing.assert_close(
        ours(td.clone())["loss"], theirs(td.clone())["loss"], atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("double_dqn", [False, True])
def test_dqn_wraps_a_plain_module_as_torchrl(double_dqn):
    from test_dqn import OBS, make_batch

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(OBS, 16), nn.ReLU(), nn.Linear(16, 3))
    ours = objectives.DQNLoss(net, action_space="categorical", double_dqn=double_dqn)
    theirs = TO.DQNLoss(copy.deepcopy(net), action_space="categorical", double_dqn=double_dqn)
    for p in ours.target_value_network.buffers():  # targets apart from the online network
        p.add_(0.05)
    for p in theirs.target_value_network_params.values(True, True):
        p.data.add_(0.05)
    td = make_batch([6], n_actions=3)
    out_ours, out_theirs = ours(td.clone()), theirs(td.clone())
    torch.testing.assert_close(out_ours["loss"], out_theirs["loss"], atol=ATOL, rtol=0)
    assert ours.value_network.in_keys == ["observation"]


def test_dqn_plain_module_and_multi_one_hot_is_refused():
    with pytest.raises(ValueError, match="mult_one_hot.*var_nums"):
        objectives.DQNLoss(nn.Linear(3, 5), action_space="mult_one_hot")


@pytest.mark.parametrize("cls_name", ["ClipPPOLoss", "KLPENPPOLoss", "PPOLoss", "A2CLoss"])
def test_policy_gradient_keys_follow_a_multi_agent_actor(cls_name):
    from test_mappo import networks

    actor, critic = networks()
    ours = getattr(objectives, cls_name)(actor, critic)
    theirs = getattr(TO, cls_name)(copy.deepcopy(actor), copy.deepcopy(critic))
    for name in ("action", "sample_log_prob"):
        assert getattr(ours.tensor_keys, name) == getattr(theirs.tensor_keys, name)
    assert ours.tensor_keys.sample_log_prob == ("agents", "action_log_prob")


def test_sac_keys_follow_the_actor():
    from tensordict.nn import NormalParamExtractor, TensorDictModule
    from test_sac import SPEC, batch
    from torchrl_nets import critics_reading

    torch.manual_seed(0)
    actor = TM.ProbabilisticActor(  # writes "act" and its log-prob under "act_log_prob"
        TensorDictModule(
            nn.Sequential(nn.Linear(3, 4), NormalParamExtractor()),
            ["observation"],
            ["loc", "scale"],
        ),
        in_keys=["loc", "scale"],
        out_keys=["act"],
        spec=SPEC,
        distribution_class=TM.TanhNormal,
        distribution_kwargs={"low": -2.0, "high": 2.0},
        return_log_prob=True,
        log_prob_key="act_log_prob",
    )
    critics = critics_reading("act", 3, 2, 2)
    ours = objectives.SACLoss(actor, critics, action_spec=SPEC)
    theirs = TO.SACLoss(copy.deepcopy(actor), copy.deepcopy(critics), action_spec=SPEC)
    assert ours.tensor_keys.action == theirs.tensor_keys.action == "act"
    assert ours.tensor_keys.log_prob == theirs.tensor_keys.log_prob == "act_log_prob"
    td = batch().rename_key_("action", "act")
    torch.manual_seed(3)
    out_ours = ours(td.clone())
    torch.manual_seed(3)
    out_theirs = theirs(td.clone())
    for key in ("loss_actor", "loss_qvalue", "loss_alpha"):
        torch.testing.assert_close(out_ours[key], out_theirs[key], atol=ATOL, rtol=0, msg=key)
