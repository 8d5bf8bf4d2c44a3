"""TorchRL's engineering arguments of the losses, and its no-updater warning (issue 22).

* ``functional=`` (PPO family): rlteach's networks are always plain modules, so either value
  gives TorchRL's numbers for the same value (tolerance 1e-5).
* ``device=`` (PPO family): the loss's own buffers go there, the networks stay, as in TorchRL.
* ``deactivate_vmap=`` (SAC, TD3): TorchRL loops instead of vmapping; rlteach never vmaps, so the
  numbers are TorchRL's either way.
* A loss with target networks and no updater warns at forward with TorchRL's text and category;
  attaching ``SoftUpdate`` / ``HardUpdate`` stops it, ``RL_WARNINGS=0`` silences it.
"""

from __future__ import annotations

import copy
import warnings

import pytest
from pg_fixtures import make_nets

from rlteach import objectives
from rlteach.modules import make_qvalue_actor, make_qvalue_network
from rlteach.objectives import LossModule
from rlteach.updaters import HardUpdate, SoftUpdate

TO = pytest.importorskip("torchrl.objectives")


@pytest.mark.parametrize("functional", [True, False])
@pytest.mark.parametrize("cls_name", ["PPOLoss", "ClipPPOLoss"])
def test_functional_is_accepted_and_changes_nothing(cls_name, functional):
    from test_ppo import assert_parity, run_both

    kwargs = {"functional": functional, "clip_value": 0.3}
    ours_cls, theirs_cls = getattr(objectives, cls_name), getattr(TO, cls_name)
    results = run_both(ours_cls, theirs_cls, "normal", (4, 5), kwargs, with_advantage=True)
    assert_parity(*results)
    assert results[0][2].functional is functional


def test_klpen_takes_functional():
    actor, critic = make_nets("normal")
    assert objectives.KLPENPPOLoss(actor, critic, functional=False).functional is False


@pytest.mark.parametrize("cls_name", ["PPOLoss", "ClipPPOLoss", "KLPENPPOLoss"])
def test_device_places_the_loss_buffers_not_the_networks(cls_name):
    actor, critic = make_nets("normal")
    kwargs = {"clip_value": 0.5} if cls_name != "KLPENPPOLoss" else {}
    # TorchRL cannot build its loss on the meta device (it reads a buffer back): compare names
    ours = getattr(objectives, cls_name)(actor, critic, device="meta", **kwargs)
    theirs = getattr(TO, cls_name)(
        copy.deepcopy(actor), copy.deepcopy(critic), device="cpu", **kwargs
    )
    own = {n: b for n, b in ours.named_buffers(recurse=False) if b is not None}
    assert own and all(b.device.type == "meta" for b in own.values()), own.keys()
    theirs_own = [b for b in theirs.named_buffers(recurse=False) if b[1] is not None]
    assert len(theirs_own) > 0  # TorchRL holds its coefficients as buffers too
    assert all(p.device.type == "cpu" for p in actor.parameters())


def test_sac_deactivate_vmap_changes_nothing():
    from test_sac import SPEC, run_pair

    losses = run_pair({"action_spec": SPEC, "deactivate_vmap": True})
    assert all(loss.deactivate_vmap for loss in losses)


def test_td3_deactivate_vmap_changes_nothing():
    from test_ddpg_td3 import SPEC, run_pair

    run_pair(
        objectives.TD3Loss,
        TO.TD3Loss,
        lambda cls, a, qs: cls(
            copy.deepcopy(a), copy.deepcopy(qs), action_spec=SPEC, deactivate_vmap=True
        ),
    )


def _dqn():
    from test_dqn import make_batch as dqn_batch

    loss = objectives.DQNLoss(make_qvalue_actor(make_qvalue_network(4, 3, (8,))))
    return loss, dqn_batch([5], n_actions=3)


def _warnings_of(call) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if "target network updater" in str(w.message)]


@pytest.fixture(autouse=True)
def _rl_warnings_on(monkeypatch):
    """conftest.py turns TorchRL's warnings off for the chapters' kernels; here they are the
    subject, so each test starts with them on (as a user's process has them)."""
    monkeypatch.setenv("RL_WARNINGS", "1")


def test_target_network_without_updater_warns_as_torchrl():
    assert LossModule.TARGET_NET_WARNING == TO.LossModule.TARGET_NET_WARNING
    loss, td = _dqn()
    caught = _warnings_of(lambda: loss(td.clone()))
    assert len(caught) == 1 and caught[0].category is UserWarning
    assert str(caught[0].message) == TO.LossModule.TARGET_NET_WARNING


@pytest.mark.parametrize("updater", [lambda loss: SoftUpdate(loss, tau=0.01), HardUpdate])
def test_an_attached_updater_stops_the_warning(updater):
    loss, td = _dqn()
    updater(loss)
    assert _warnings_of(lambda: loss(td.clone())) == []


def test_no_target_network_no_warning_and_rl_warnings_off(monkeypatch):
    loss = objectives.DQNLoss(make_qvalue_actor(make_qvalue_network(4, 3, (8,))), delay_value=False)
    _, td = _dqn()
    assert _warnings_of(lambda: loss(td.clone())) == []
    loss, td = _dqn()
    monkeypatch.setenv("RL_WARNINGS", "False")
    assert _warnings_of(lambda: loss(td.clone())) == []
