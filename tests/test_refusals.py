"""Issue 21's examples: a bad call is refused with a clear error and changes nothing.

Each test here failed before the fix it names (see the commit that added it).
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from rlteach.modules import (
    make_categorical_actor,
    make_deterministic_actor,
    make_normal_actor,
    make_qvalue_network,
    make_state_action_value_network,
    make_value_network,
)
from rlteach.objectives import A2CLoss, DDPGLoss, DQNLoss, KLPENPPOLoss, SACLoss, TD3Loss
from rlteach.updaters import HardUpdate
from rlteach.value import GAE, TD1Estimator, TDLambdaEstimator, VTrace

OBS, ACT, N = 3, 2, 4


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same_state(before, module):
    after = module.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _same_batch(td, original):
    """Bit for bit the same entries (NaN compares equal to itself here)."""
    keys = set(td.keys(True, True))
    return keys == set(original.keys(True, True)) and all(
        td[k].dtype == original[k].dtype
        and td[k].shape == original[k].shape
        and td[k].numpy().tobytes() == original[k].numpy().tobytes()
        for k in keys
    )


def _transitions(b=6, *, discrete=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    action = (
        torch.randint(N, (b,), generator=g) if discrete else torch.rand(b, ACT, generator=g) - 0.5
    )
    term = torch.rand(b, 1, generator=g) < 0.3
    return TensorDict(
        {
            "observation": torch.randn(b, OBS, generator=g),
            "action": action,
            "next": {
                "observation": torch.randn(b, OBS, generator=g),
                "reward": torch.randn(b, 1, generator=g),
                "done": term.clone(),
                "terminated": term,
            },
        },
        [b],
    )


# ------------------------------------------------------------------------------- KLPEN's beta


def test_klpen_refusal_leaves_beta_unchanged():
    torch.manual_seed(0)
    actor = make_categorical_actor(OBS, N, (8,))
    loss = KLPENPPOLoss(actor, make_value_network(OBS, (8,)), dtarg=1e-9)
    td = _transitions(discrete=True)
    with torch.no_grad():
        td.update(actor(td.clone()).select("logits", "action_log_prob"))
    td["action_log_prob"] = td["action_log_prob"] - 0.5  # the policy moved: KL far above dtarg
    td["advantage"] = torch.randn(6, 1)  # ... but no value_target
    before = _state(loss)
    with pytest.raises(KeyError, match="value_target"):
        loss(td)
    assert _same_state(before, loss), "the refused call changed beta"


# ------------------------------------------------------------------------------ time_dim


def _gae_batch():
    g = torch.Generator().manual_seed(0)
    return TensorDict(
        {
            "state_value": torch.randn(2, 5, 1, generator=g),
            "next": {
                "state_value": torch.randn(2, 5, 1, generator=g),
                "reward": torch.randn(2, 5, 1, generator=g),
                "done": torch.zeros(2, 5, 1, dtype=torch.bool),
                "terminated": torch.zeros(2, 5, 1, dtype=torch.bool),
            },
        },
        [2, 5],
    )


@pytest.mark.parametrize("time_dim", [2, 5, -3])
@pytest.mark.parametrize("where", ["constructor", "call"])
def test_estimator_time_dim_must_name_an_existing_dim(time_dim, where):
    for cls, kw in (
        (GAE, {"lmbda": 0.9}),
        (TD1Estimator, {}),
        (TDLambdaEstimator, {"lmbda": 0.9}),
    ):
        kwargs = {"gamma": 0.9, "value_network": None, **kw}
        td = _gae_batch()
        original = td.clone()
        if where == "constructor":
            est = cls(time_dim=time_dim, **kwargs)
            with pytest.raises(ValueError, match="time_dim"):
                est(td)
        else:
            est = cls(**kwargs)
            with pytest.raises(ValueError, match="time_dim"):
                est.value_estimate(td, time_dim=time_dim)
        assert _same_batch(td, original)


def test_estimator_time_dim_must_be_an_int():
    with pytest.raises(ValueError, match="time_dim"):
        GAE(gamma=0.9, lmbda=0.9, value_network=None, time_dim=1.0)
    with pytest.raises(ValueError, match="time_dim"):
        TD1Estimator(gamma=0.9, value_network=None, time_dim=True)


def test_vtrace_time_dim_out_of_range():
    torch.manual_seed(0)
    actor = make_categorical_actor(OBS, N, (8,))
    est = VTrace(gamma=0.9, actor_network=actor, value_network=None, time_dim=4)
    td = _gae_batch()
    td["observation"] = torch.randn(2, 5, OBS)
    td["action"] = torch.randint(N, (2, 5))
    td["action_log_prob"] = torch.randn(2, 5)
    with pytest.raises(ValueError, match="time_dim"):
        est(td)


# ------------------------------------------------------------------------------ A2C advantage


def test_a2c_refuses_an_advantage_without_trailing_dim():
    torch.manual_seed(0)
    loss = A2CLoss(make_categorical_actor(OBS, N, (8,)), make_value_network(OBS, (8,)))
    td = _transitions(discrete=True)
    td["advantage"] = torch.randn(6)
    td["value_target"] = torch.randn(6, 1)
    with pytest.raises(ValueError, match="advantage"):
        loss(td)


# ------------------------------------------------------- NaN observations, td_error unwritten


def _dqn():
    torch.manual_seed(0)
    return DQNLoss(make_qvalue_network(OBS, N, (8,)), action_space="categorical")


def _ddpg():
    torch.manual_seed(0)
    actor = make_deterministic_actor(OBS, ACT, (8,), low=-1.0, high=1.0)
    return DDPGLoss(actor, make_state_action_value_network(OBS, ACT, (8,)))


def _td3():
    torch.manual_seed(0)
    actor = make_deterministic_actor(OBS, ACT, (8,), low=-1.0, high=1.0)
    critic = make_state_action_value_network(OBS, ACT, (8,))
    return TD3Loss(actor, critic, bounds=(-1.0, 1.0))


def _sac():
    torch.manual_seed(0)
    actor = make_normal_actor(OBS, ACT, (8,), low=-1.0, high=1.0)
    return SACLoss(actor, make_state_action_value_network(OBS, ACT, (8,)), action_spec=ACT)


@pytest.mark.parametrize("make", [_dqn, _ddpg, _td3, _sac], ids=["DQN", "DDPG", "TD3", "SAC"])
@pytest.mark.parametrize("key", ["observation", ("next", "observation")])
def test_nan_observation_is_refused_and_nothing_written(make, key):
    loss = make()
    td = _transitions(discrete=make is _dqn)
    td[key][2, 1] = float("nan")
    original = td.clone()
    before = _state(loss)
    with pytest.raises(ValueError, match="NaN"):
        loss(td)
    assert "td_error" not in td.keys()
    assert _same_batch(td, original)
    assert _same_state(before, loss)


# ---------------------------------------------------------------------------- HardUpdate


def _hard(interval):
    torch.manual_seed(0)
    loss = DQNLoss(make_qvalue_network(OBS, N, (8,)), action_space="categorical", delay_value=True)
    return loss, HardUpdate(loss, value_network_update_interval=interval)


def _copied(loss):
    return all(
        torch.equal(p, t)
        for p, t in zip(
            loss.value_network.parameters(), loss.target_value_network.buffers(), strict=True
        )
    )


def _move(loss):
    with torch.no_grad():
        for p in loss.value_network.parameters():
            p.add_(1.0)


def test_hard_update_copies_after_loading_a_larger_counter():
    loss, updater = _hard(3)
    updater.load_state_dict({"initialized": True, "counter": 7})
    _move(loss)
    updater.step()
    assert _copied(loss), "a counter past the period must copy on the next step"
    assert updater.counter == 0


def test_hard_update_copies_after_the_interval_is_lowered():
    loss, updater = _hard(10)
    for _ in range(5):
        updater.step()
    updater.value_network_update_interval = 3
    _move(loss)
    updater.step()
    assert _copied(loss)
    _move(loss)
    for _ in range(2):
        updater.step()
        assert not _copied(loss)
    updater.step()
    assert _copied(loss)


@pytest.mark.parametrize("counter", [-1, 1.5, "3", True])
def test_hard_update_refuses_a_bad_counter_and_keeps_its_own(counter):
    _, updater = _hard(3)
    updater.step()
    with pytest.raises(ValueError, match="counter"):
        updater.load_state_dict({"initialized": True, "counter": counter})
    assert updater.counter == 1


# ------------------------------------------------ whatever raises, the loss is left as it was
# LossModule.__call__ restores the state a call may change in place (buffers, parameters outside
# the networks) when the call raises: this holds for a failure no check foresaw, too.


def _sac_clamping():
    torch.manual_seed(0)
    actor = make_normal_actor(OBS, ACT, (8,), low=-1.0, high=1.0)
    critic = make_state_action_value_network(OBS, ACT, (8,))
    loss = SACLoss(actor, critic, action_spec=ACT, max_alpha=2.0)
    with torch.no_grad():  # an optimiser step took log alpha above the bound: the next read of
        loss.log_alpha.fill_(torch.tensor(5.0).log().item())  # alpha clamps it in place (TorchRL)
    return loss


def test_sac_refused_call_leaves_log_alpha_unclamped(monkeypatch):
    loss = _sac_clamping()
    td = _transitions()
    before, original = _state(loss), td.clone()

    def fail(*args, **kwargs):  # a failure after alpha was read (and log_alpha clamped)
        raise ValueError("SACLoss: refused late")

    monkeypatch.setattr(loss, "_actor_loss", fail)
    with pytest.raises(ValueError, match="refused late"):
        loss(td)
    assert loss.log_alpha.item() == pytest.approx(torch.tensor(5.0).log().item())
    assert _same_state(before, loss)
    assert _same_batch(td, original)
    monkeypatch.undo()
    loss(td)  # a good call clamps, as in TorchRL
    assert loss.log_alpha.item() == pytest.approx(torch.tensor(2.0).log().item())


def test_sac_bad_input_leaves_log_alpha_unclamped():
    loss = _sac_clamping()
    td = _transitions()
    td["observation"] = td["observation"].double()  # refused before alpha is read
    before = _state(loss)
    with pytest.raises(ValueError, match="SACLoss"):
        loss(td)
    assert _same_state(before, loss)


def _crossq():
    from rlteach.modules import make_crossq_qvalue_network
    from rlteach.objectives import CrossQLoss

    torch.manual_seed(0)
    actor = make_normal_actor(OBS, ACT, (8,), low=-1.0, high=1.0)
    critics = [make_crossq_qvalue_network(OBS, ACT, (8,)) for _ in range(2)]
    return CrossQLoss(actor, critics, action_spec=ACT)


def test_crossq_refused_call_leaves_batch_norm_statistics(monkeypatch):
    loss = _crossq()
    td = _transitions()
    loss(td)  # running statistics away from their initial values
    before, original = _state(loss), td.clone()
    assert any("running" in k for k in before)

    def fail(*args, **kwargs):  # after the critics ran in training mode
        raise ValueError("CrossQLoss: refused late")

    monkeypatch.setattr(loss, "actor_loss", fail)
    with pytest.raises(ValueError, match="refused late"):
        loss(td)
    assert _same_state(before, loss)
    assert _same_batch(td, original)


def test_crossq_bad_input_leaves_batch_norm_statistics():
    loss = _crossq()
    td = _transitions()
    td["next", "reward"][2] = float("nan")
    before, original = _state(loss), td.clone()
    with pytest.raises(ValueError, match="CrossQLoss"):
        loss(td)
    assert _same_state(before, loss)
    assert _same_batch(td, original)


# ---------------------------------------------------------------- averaging over one element


def test_standardising_one_element_leaves_it_as_it_is():
    """Standardising needs a spread: one element has none (its unbiased std is NaN). It is left
    as it is, as PPO's normalize_advantage leaves a one-element advantage alone."""
    td = TensorDict(
        {
            "state_value": torch.tensor([[[0.5]]]),
            "next": {
                "state_value": torch.tensor([[[1.0]]]),
                "reward": torch.tensor([[[2.0]]]),
                "done": torch.tensor([[[False]]]),
                "terminated": torch.tensor([[[False]]]),
            },
        },
        [1, 1],
    )
    plain = GAE(gamma=0.9, lmbda=0.9, value_network=None)(td.clone())["advantage"]
    averaged = GAE(gamma=0.9, lmbda=0.9, value_network=None, average_gae=True)(td.clone())
    assert torch.equal(averaged["advantage"], plain)
    assert plain.item() == pytest.approx(2.0 + 0.9 * 1.0 - 0.5)
    target = TD1Estimator(gamma=0.9, value_network=None, average_rewards=True)(td.clone())
    assert torch.isfinite(target["value_target"]).all()
