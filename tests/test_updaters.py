"""Target-network updaters: hand-computed Polyak averages and copy schedules, TorchRL parity."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from rlteach.objectives import LossModule
from rlteach.updaters import HardUpdate, SoftUpdate


class TinyLoss(LossModule):
    """The least a loss needs for an updater: one network, optionally with a target."""

    @dataclass
    class _AcceptedKeys:
        value: str = "state_value"

    def __init__(self, network: nn.Module, *, delay_value: bool = True):
        super().__init__()
        self._register_network("value_network", network, create_target=delay_value)

    def forward(self, td):
        return TensorDict(loss_value=self.value_network(td)["state_value"].mean())


def scalar_loss(value: float = 0.0) -> TinyLoss:
    """A loss whose network is one weight w (no bias), set to ``value``."""
    layer = nn.Linear(1, 1, bias=False)
    nn.init.constant_(layer.weight, value)
    net = TensorDictModule(layer, in_keys=["observation"], out_keys=["state_value"])
    return TinyLoss(net)


def weight(module) -> float:
    return next(iter(module.module.state_dict().values())).item()


def set_weight(loss: TinyLoss, value: float) -> None:
    with torch.no_grad():
        loss.value_network.module.weight.fill_(value)


# ----------------------------------------------------------------------------- soft update


def test_soft_update_hand_computed():
    # target 0, source 1, tau 0.1: theta' <- 0.9 theta' + 0.1 * 1
    #   step 1: 0.9 * 0     + 0.1 = 0.1
    #   step 2: 0.9 * 0.1   + 0.1 = 0.19
    #   step 3: 0.9 * 0.19  + 0.1 = 0.271
    loss = scalar_loss(0.0)
    updater = SoftUpdate(loss, tau=0.1)  # copies source (0) into target
    set_weight(loss, 1.0)
    seen = []
    for _ in range(3):
        updater.step()
        seen.append(weight(loss.target_value_network))
    assert seen == pytest.approx([0.1, 0.19, 0.271], abs=1e-7)
    assert weight(loss.value_network) == 1.0  # the source is never touched


def test_soft_update_eps_is_one_minus_tau():
    a, b = scalar_loss(0.0), scalar_loss(0.0)
    up_a, up_b = SoftUpdate(a, eps=0.75), SoftUpdate(b, tau=0.25)
    assert up_a.tau == pytest.approx(0.25) and up_b.eps == pytest.approx(0.75)
    set_weight(a, 2.0)
    set_weight(b, 2.0)
    up_a.step()
    up_b.step()
    assert weight(a.target_value_network) == pytest.approx(0.5)  # 0.75 * 0 + 0.25 * 2
    assert weight(b.target_value_network) == pytest.approx(0.5)


def test_updater_construction_copies_source_into_target():
    loss = scalar_loss(3.0)
    set_weight(loss, 5.0)  # target still 3.0
    assert weight(loss.target_value_network) == 3.0
    SoftUpdate(loss, tau=0.01)
    assert weight(loss.target_value_network) == 5.0


def test_small_eps_warns_that_tau_was_probably_meant():
    with pytest.warns(UserWarning, match="did you mean tau"):
        SoftUpdate(scalar_loss(), eps=0.005)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one of eps or tau"),
        ({"eps": 0.9, "tau": 0.1}, "exactly one of eps or tau"),
        ({"eps": 0.0}, "eps must satisfy 0.0 < eps < 1.0"),
        ({"eps": 1.0}, "eps must satisfy"),
        ({"eps": 1.5}, "eps must satisfy"),
        ({"tau": -0.1}, "tau must satisfy 0.0 < tau < 1.0"),
        ({"tau": float("nan")}, "tau must be a real number"),
    ],
)
def test_soft_update_bad_arguments(kwargs, match):
    loss = scalar_loss(1.0)
    set_weight(loss, 7.0)
    with pytest.raises(ValueError, match=match):
        SoftUpdate(loss, **kwargs)
    # The check ran before init_(): the target was not overwritten.
    assert weight(loss.target_value_network) == 1.0


# ----------------------------------------------------------------------------- hard update


def copies_happen_at(updater: HardUpdate, loss: TinyLoss, calls: int) -> list[int]:
    """Step ``calls`` times, moving the source each time; return the calls that copied."""
    copied = []
    for call in range(1, calls + 1):
        set_weight(loss, float(call))
        updater.step()
        if weight(loss.target_value_network) == float(call):
            copied.append(call)
    return copied


def test_hard_update_copies_every_n_calls_like_the_dqn_paper():
    loss = scalar_loss(0.0)
    updater = HardUpdate(loss, value_network_update_interval=3)
    assert copies_happen_at(updater, loss, 9) == [3, 6, 9]
    assert updater.counter == 0


def test_hard_update_torchrl_counting_copies_every_n_plus_one_calls():
    loss = scalar_loss(0.0)
    updater = HardUpdate(loss, value_network_update_interval=3, count_like_torchrl=True)
    assert copies_happen_at(updater, loss, 9) == [4, 8]
    assert updater.counter == 1


def test_hard_update_interval_one_copies_every_call():
    loss = scalar_loss(0.0)
    updater = HardUpdate(loss, value_network_update_interval=1)
    assert copies_happen_at(updater, loss, 3) == [1, 2, 3]


def test_hard_update_counter_survives_state_dict():
    loss = scalar_loss(0.0)
    updater = HardUpdate(loss, value_network_update_interval=5)
    for _ in range(3):
        updater.step()
    fresh = HardUpdate(loss, value_network_update_interval=5)
    fresh.load_state_dict(updater.state_dict())
    assert fresh.counter == 3
    set_weight(loss, 9.0)
    fresh.step()
    assert weight(loss.target_value_network) == 0.0  # call 4: not yet
    fresh.step()
    assert weight(loss.target_value_network) == 9.0  # call 5: copy


@pytest.mark.parametrize("interval", [0, -3, 2.5, "10", True])
def test_hard_update_bad_interval(interval):
    loss = scalar_loss(1.0)
    set_weight(loss, 7.0)
    with pytest.raises(ValueError, match="value_network_update_interval must be an integer >= 1"):
        HardUpdate(loss, value_network_update_interval=interval)
    assert weight(loss.target_value_network) == 1.0


def test_hard_update_accepts_integral_float_interval():
    assert (
        HardUpdate(scalar_loss(), value_network_update_interval=10.0).value_network_update_interval
        == 10
    )


# ------------------------------------------------------------------------ what gets updated


@pytest.mark.parametrize(
    "make",
    [
        lambda loss: SoftUpdate(loss, tau=0.5),
        lambda loss: HardUpdate(loss, value_network_update_interval=1),
    ],
)
def test_loss_without_target_is_refused(make):
    net = TensorDictModule(nn.Linear(1, 1), in_keys=["observation"], out_keys=["state_value"])
    with pytest.raises(ValueError, match="has no target network.*delay_value=True"):
        make(TinyLoss(net, delay_value=False))


def test_non_loss_is_refused():
    with pytest.raises(TypeError, match="needs an rlteach LossModule, got Linear"):
        SoftUpdate(nn.Linear(1, 1), tau=0.1)


def test_buffers_and_frozen_parameters_are_copied_once_then_left_alone():
    # TorchRL's rule, matched: init_ copies everything; step() moves trainable parameters only.
    body = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 1))
    body[2].weight.requires_grad_(False)  # a frozen parameter
    loss = TinyLoss(TensorDictModule(body, in_keys=["observation"], out_keys=["state_value"]))
    with torch.no_grad():
        body[1].running_mean.fill_(4.0)
        body[2].weight.fill_(2.0)
    updater = SoftUpdate(loss, tau=0.5)
    target = loss.target_value_network.module
    assert torch.equal(target[1].running_mean, torch.full((2,), 4.0))  # copied by init_
    assert torch.equal(target[2].weight, torch.full((1, 2), 2.0))
    with torch.no_grad():
        body[1].running_mean.fill_(8.0)
        body[2].weight.fill_(6.0)
        body[0].weight.add_(1.0)
    before = target[0].weight.clone()
    updater.step()
    assert torch.allclose(target[0].weight, 0.5 * before + 0.5 * body[0].weight)
    assert torch.equal(target[1].running_mean, torch.full((2,), 4.0))  # buffer: not moved
    assert torch.equal(target[2].weight, torch.full((1, 2), 2.0))  # frozen: not moved


def test_ensemble_targets_are_updated_member_by_member():
    members = [nn.Linear(1, 1, bias=False) for _ in range(3)]
    for i, m in enumerate(members):
        nn.init.constant_(m.weight, float(i))

    class EnsembleLoss(LossModule):
        def __init__(self):
            super().__init__()
            self._register_network("qvalue_network", members, create_target=True)

    loss = EnsembleLoss()
    updater = SoftUpdate(loss, tau=0.5)
    with torch.no_grad():
        for m in members:
            m.weight.add_(2.0)
    updater.step()
    got = [m.weight.item() for m in loss.target_qvalue_network]
    assert got == pytest.approx([1.0, 2.0, 3.0])  # 0.5 * i + 0.5 * (i + 2)


def test_reinitialising_warns():
    updater = SoftUpdate(scalar_loss(), tau=0.1)
    with pytest.warns(UserWarning, match="already initialised"):
        updater.init_()


# ------------------------------------------------------------------------ parity with TorchRL


def _twin_losses(seed: int = 0):
    """A TorchRL DQNLoss and an rlteach TinyLoss on identical copies of one Q-network."""
    torchrl_modules = pytest.importorskip("torchrl.modules")
    torchrl_objectives = pytest.importorskip("torchrl.objectives")
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    actor = torchrl_modules.QValueActor(body, in_keys=["observation"], action_space="one-hot")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torchrl_objectives.DQNLoss(actor, action_space="one-hot", delay_value=True)
    ours = TinyLoss(copy.deepcopy(actor))
    return torchrl_objectives, theirs, ours


def _perturb_identically(theirs, ours, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, p_ours in ours.value_network.named_parameters():
            p_theirs = theirs.value_network_params.get(tuple(name.split(".")))
            noise = torch.randn(p_ours.shape, generator=generator)
            p_theirs.add_(noise)
            p_ours.add_(noise)


def _assert_targets_match(theirs, ours, atol: float) -> None:
    their_targets = theirs.target_value_network_params.flatten_keys(".")
    our_targets = dict(ours.target_value_network.named_buffers())
    assert set(their_targets.keys()) == set(our_targets)
    for name, tensor in our_targets.items():
        torch.testing.assert_close(tensor, their_targets[name], atol=atol, rtol=0)


def test_soft_update_matches_torchrl():
    torchrl_objectives, theirs, ours = _twin_losses()
    generator = torch.Generator().manual_seed(1)
    their_updater = torchrl_objectives.SoftUpdate(theirs, tau=0.05)
    our_updater = SoftUpdate(ours, tau=0.05)
    _assert_targets_match(theirs, ours, atol=0)  # both start as exact copies
    for _ in range(10):
        _perturb_identically(theirs, ours, generator)
        their_updater.step()
        our_updater.step()
        # TorchRL computes lerp (theta' + tau (theta - theta')); we write the equation as
        # (1 - tau) theta' + tau theta. Same number up to float32 rounding.
        _assert_targets_match(theirs, ours, atol=1e-6)
    # and the targets really moved away from where they started
    assert not torch.allclose(
        ours.target_value_network.module[0].module[0].weight,
        _twin_losses()[2].target_value_network.module[0].module[0].weight,
    )


def test_hard_update_matches_torchrl_when_counting_like_it():
    torchrl_objectives, theirs, ours = _twin_losses(seed=2)
    generator = torch.Generator().manual_seed(3)
    their_updater = torchrl_objectives.HardUpdate(theirs, value_network_update_interval=3)
    our_updater = HardUpdate(ours, value_network_update_interval=3, count_like_torchrl=True)
    for _ in range(10):
        _perturb_identically(theirs, ours, generator)
        their_updater.step()
        our_updater.step()
        _assert_targets_match(theirs, ours, atol=0)
        assert our_updater.counter == their_updater.counter


def test_hard_update_default_differs_from_torchrl_by_one_call():
    # The paper's schedule (default) copies on call N, TorchRL's on call N + 1.
    torchrl_objectives, theirs, ours = _twin_losses(seed=4)
    generator = torch.Generator().manual_seed(5)
    their_updater = torchrl_objectives.HardUpdate(theirs, value_network_update_interval=2)
    our_updater = HardUpdate(ours, value_network_update_interval=2)
    _perturb_identically(theirs, ours, generator)
    their_updater.step()
    our_updater.step()
    _assert_targets_match(theirs, ours, atol=0)  # call 1: neither copies
    _perturb_identically(theirs, ours, generator)
    their_updater.step()
    our_updater.step()  # call 2: only ours copies
    ours_now = ours.target_value_network.module[0].module[0].weight
    assert torch.equal(ours_now, ours.value_network.module[0].module[0].weight)
    assert not torch.allclose(
        theirs.target_value_network_params.flatten_keys(".")["module.0.module.0.weight"],
        ours_now,
    )
    _perturb_identically(theirs, ours, generator)
    their_updater.step()  # call 3: TorchRL copies
    assert torch.equal(
        theirs.target_value_network_params.flatten_keys(".")["module.0.module.0.weight"],
        theirs.value_network_params.flatten_keys(".")["module.0.module.0.weight"],
    )
