"""rlteach.value estimators (TensorDict modules) against TorchRL 0.14's, plus keys and errors."""

import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import (
    NormalParamExtractor,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from torch.distributions import Normal

import rlteach.value as V
from rlteach.value import functional as F

RV = pytest.importorskip("torchrl.objectives.value")
RU = pytest.importorskip("torchrl.objectives.utils")

ATOL = 1e-5
T = 6
OBS = 3


def value_net(out_key="state_value"):
    torch.manual_seed(0)
    return TensorDictModule(torch.nn.Linear(OBS, 1), in_keys=["observation"], out_keys=[out_key])


def actor_net():
    torch.manual_seed(1)
    body = TensorDictModule(
        torch.nn.Sequential(torch.nn.Linear(OBS, 2), NormalParamExtractor()),
        in_keys=["observation"],
        out_keys=["loc", "scale"],
    )
    head = ProbabilisticTensorDictModule(
        in_keys=["loc", "scale"],
        out_keys=["action"],
        distribution_class=Normal,
        return_log_prob=True,
    )
    return ProbabilisticTensorDictSequential(body, head)


def make_batch(batch, seed=0, with_values=False):
    """A batch [*B, T] with a truncation (not a termination), a termination in the middle and one
    at the last step; row 0 is 'consistent' (next observation = following observation)."""
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, T)
    obs = torch.randn(*shape, OBS, generator=g)
    next_obs = torch.cat([obs[..., 1:, :], torch.randn(*batch, 1, OBS, generator=g)], dim=-2)
    done = torch.zeros(*shape, 1, dtype=torch.bool)
    terminated = torch.zeros_like(done)
    done[..., 1, :] = True  # truncation: the episode goes on elsewhere
    next_obs[..., 1, :] = torch.randn(OBS, generator=g)  # the state a time limit cut us off in
    done[..., 3, :] = terminated[..., 3, :] = True  # termination mid-batch
    if len(batch) and batch[0] > 1:
        done[1:, ..., -1, :] = terminated[1:, ..., -1, :] = True  # termination at the last step
    td = TensorDict(
        {
            "observation": obs,
            "action": torch.randn(*shape, 1, generator=g),
            "action_log_prob": -1.0 + 0.3 * torch.randn(*shape, 1, generator=g),
            "next": {
                "observation": next_obs,
                "reward": torch.randn(*shape, 1, generator=g),
                "done": done,
                "terminated": terminated,
                "truncated": done & ~terminated,
            },
        },
        batch_size=shape,
    )
    if with_values:
        td["state_value"] = torch.randn(*shape, 1, generator=g)
        td["next", "state_value"] = torch.randn(*shape, 1, generator=g)
    return td


def assert_close(a, b):
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def assert_same_outputs(ours, theirs, keys=("advantage", "value_target")):
    for key in keys:
        assert_close(ours[key], theirs[key])


BATCHES = [(), (2,), (2, 3)]

ESTIMATORS = [
    ("TD0Estimator", {"gamma": 0.9}),
    ("TD0Estimator", {"gamma": 1.0, "average_rewards": True}),
    ("TD1Estimator", {"gamma": 0.99}),
    ("TD1Estimator", {"gamma": 0.5, "average_rewards": True}),  # gamma=0 crashes TorchRL
    ("TDLambdaEstimator", {"gamma": 0.9, "lmbda": 0.5}),
    ("TDLambdaEstimator", {"gamma": 1.0, "lmbda": 1.0, "vectorized": False}),
    ("TDLambdaEstimator", {"gamma": 0.99, "lmbda": 0.95, "average_rewards": True}),
    ("GAE", {"gamma": 0.99, "lmbda": 0.95}),
    ("GAE", {"gamma": 0.9, "lmbda": 0.0, "average_gae": True}),
    ("GAE", {"gamma": 1.0, "lmbda": 0.5, "vectorized": True}),
]


@pytest.mark.parametrize("batch", BATCHES, ids=str)
@pytest.mark.parametrize("name,kwargs", ESTIMATORS, ids=lambda x: str(x))
@pytest.mark.parametrize("with_network", [True, False], ids=["value_network", "precomputed"])
def test_estimator_parity(name, kwargs, batch, with_network):
    if name == "GAE" and kwargs.get("vectorized") and kwargs["lmbda"] * kwargs["gamma"] == 0:
        pytest.skip("TorchRL's vectorised GAE crashes when gamma*lmbda == 0")
    net = value_net() if with_network else None
    td = make_batch(batch, with_values=not with_network)
    ours = getattr(V, name)(value_network=net, **kwargs)(td.clone())
    theirs = getattr(RV, name)(value_network=net, **kwargs)(td.clone())
    assert_same_outputs(ours, theirs)
    # both write V(s) and V(s') into the batch, and (with average_rewards) the standardised reward
    assert_same_outputs(ours, theirs, ["state_value", ("next", "state_value"), ("next", "reward")])
    assert not ours["advantage"].requires_grad  # differentiable=False


@pytest.mark.parametrize(
    "name,kwargs",
    [(n, k) for n, k in ESTIMATORS if not k.get("average_rewards")],
    ids=lambda x: str(x),
)
def test_value_estimate_parity(name, kwargs):
    if name == "GAE" and kwargs["lmbda"] * kwargs["gamma"] == 0:
        pytest.skip(
            "TorchRL's GAE.value_estimate is always vectorised and crashes at gamma*lmbda=0"
        )
    net = value_net()
    td = make_batch((2,))
    ours = getattr(V, name)(value_network=net, **kwargs).value_estimate(td.clone())
    theirs = getattr(RV, name)(value_network=net, **kwargs).value_estimate(td.clone())
    assert_close(ours, theirs)


def test_steps_to_next_obs_parity():
    """n-step transitions: gamma becomes gamma**n entry by entry."""
    td = make_batch((2,))
    td["steps_to_next_obs"] = torch.randint(1, 4, (2, T, 1))
    for name, kwargs in ESTIMATORS:
        if kwargs.get("vectorized") or kwargs["gamma"] == 0:
            continue
        ours = getattr(V, name)(value_network=value_net(), **kwargs)(td.clone())
        theirs = getattr(RV, name)(value_network=value_net(), **kwargs)(td.clone())
        assert_same_outputs(ours, theirs)


@pytest.mark.parametrize("name,kwargs", ESTIMATORS[::2], ids=lambda x: str(x))
def test_time_dim_first_parity(name, kwargs):
    """A batch [T, B] with time_dim=0."""
    td = make_batch((2,)).transpose(0, 1).contiguous()
    kwargs = {**kwargs, "time_dim": 0}
    if name == "TD0Estimator":  # TD(0) has no time dim: each step stands alone
        kwargs.pop("time_dim")
    ours = getattr(V, name)(value_network=value_net(), **kwargs)(td.clone())
    theirs = getattr(RV, name)(value_network=value_net(), **kwargs)(td.clone())
    assert_same_outputs(ours, theirs)


def test_set_keys_renames_are_honoured_by_both():
    td = make_batch((2,), with_values=True)
    renamed = TensorDict(
        {
            "v": td["state_value"],
            "next": {
                "v": td["next", "state_value"],
                "rew": td["next", "reward"],
                "dn": td["next", "done"],
                "term": td["next", "terminated"],
            },
        },
        batch_size=td.batch_size,
    )
    keys = {
        "value": "v",
        "reward": "rew",
        "done": "dn",
        "terminated": "term",
        "advantage": "adv",
        "value_target": ("targets", "v"),
    }
    for cls_name, kwargs in [
        ("GAE", {"gamma": 0.9, "lmbda": 0.8}),
        ("TD1Estimator", {"gamma": 0.9}),
    ]:
        ours = getattr(V, cls_name)(value_network=None, **kwargs)
        theirs = getattr(RV, cls_name)(value_network=None, **kwargs)
        ours.set_keys(**keys)
        theirs.set_keys(**keys)
        out_ours, out_theirs = ours(renamed.clone()), theirs(renamed.clone())
        assert_same_outputs(out_ours, out_theirs, ["adv", ("targets", "v")])
        reference = getattr(V, cls_name)(value_network=None, **kwargs)(td.clone())
        assert_close(out_ours["adv"], reference["advantage"])
        assert ours.out_keys == theirs.out_keys == ["adv", ("targets", "v")]


def test_value_network_out_key_renamed():
    net = value_net(out_key="v")
    td = make_batch((2,))
    ours, theirs = (
        V.GAE(gamma=0.9, lmbda=0.9, value_network=net),
        RV.GAE(gamma=0.9, lmbda=0.9, value_network=net),
    )
    ours.set_keys(value="v")
    theirs.set_keys(value="v")
    assert_same_outputs(ours(td.clone()), theirs(td.clone()), ["advantage", "v", ("next", "v")])


def test_keys_mirror_torchrl():
    net = value_net()
    for name, kwargs in ESTIMATORS[::3]:
        ours, theirs = (
            getattr(V, name)(value_network=net, **kwargs),
            getattr(RV, name)(value_network=net, **kwargs),
        )
        assert ours.in_keys == theirs.in_keys
        assert ours.out_keys == theirs.out_keys
    from dataclasses import asdict

    assert asdict(V.GAE._AcceptedKeys()) == asdict(RV.GAE._AcceptedKeys())
    assert [m.name for m in V.ValueEstimators] == [m.name for m in RU.ValueEstimators]


# ---------------------------------------------------------------------------------------------
# V-trace: the actor supplies log pi of the current policy.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", BATCHES, ids=str)
@pytest.mark.parametrize("with_network", [True, False], ids=["value_network", "precomputed"])
@pytest.mark.parametrize("thresh,average_adv", [((1.0, 1.0), False), ((0.5, 2.0), True)])
def test_vtrace_parity_with_torchrl_log_pi(batch, with_network, thresh, average_adv):
    """TorchRL 0.14 evaluates the current policy at the action it would pick now (its mode under
    the default interaction type), not at the stored action: log_pi_of="policy_sample"."""
    net = value_net() if with_network else None
    actor = actor_net()
    td = make_batch(batch, with_values=not with_network)
    kw = dict(gamma=0.9, rho_thresh=thresh[0], c_thresh=thresh[1], average_adv=average_adv)
    ours = V.VTrace(value_network=net, actor_network=actor, log_pi_of="policy_sample", **kw)
    theirs = RV.VTrace(value_network=net, actor_network=actor, **kw)
    assert_same_outputs(ours(td.clone()), theirs(td.clone()))


def test_vtrace_paper_log_pi_uses_the_taken_action():
    actor = actor_net()
    td = make_batch((2,), with_values=True)
    out = V.VTrace(gamma=0.9, value_network=None, actor_network=actor)(td.clone())
    log_pi = actor.get_dist(td.select("observation")).log_prob(td["action"])
    adv, vs = F.vtrace_advantage_estimate(
        0.9,
        log_pi,
        td["action_log_prob"],
        td["state_value"],
        td["next", "state_value"],
        td["next", "reward"],
        td["next", "done"],
        td["next", "terminated"],
        time_dim=1,
    )
    assert_close(out["advantage"], adv)
    assert_close(out["value_target"], vs)
    # ... which is not what TorchRL computes when the stored action is not the policy's mode.
    theirs = RV.VTrace(gamma=0.9, value_network=None, actor_network=actor)(td.clone())
    assert (out["advantage"] - theirs["advantage"]).abs().max() > 1e-2
    # When the stored actions are the policy's modes, the two agree.
    td["action"] = actor.get_dist(td.select("observation")).mode
    ours = V.VTrace(gamma=0.9, value_network=None, actor_network=actor)(td.clone())
    theirs = RV.VTrace(gamma=0.9, value_network=None, actor_network=actor)(td.clone())
    assert_same_outputs(ours, theirs)


def test_vtrace_on_policy_estimator_is_td1():
    """log mu = log pi(a|s) of the same actor and consistent data: V-trace = TD(1) (see
    test_value_functional.test_vtrace_on_policy_is_td1)."""
    actor, net = actor_net(), value_net()
    td = make_batch((2,))
    td["next", "done"][..., 1, :] = False  # keep next_obs = following obs everywhere in row 0
    td["next", "truncated"][..., 1, :] = False
    td["next", "observation"][..., 1, :] = td["observation"][..., 2, :]
    td["action_log_prob"] = actor.get_dist(td.select("observation")).log_prob(td["action"]).detach()
    vt = V.VTrace(gamma=0.9, value_network=net, actor_network=actor)(td.clone())
    td1 = V.TD1Estimator(gamma=0.9, value_network=net)(td.clone())
    assert_close(vt["value_target"][0], td1["value_target"][0])
    assert_close(vt["advantage"][0], td1["advantage"][0])


# ---------------------------------------------------------------------------------------------
# Gradients.
# ---------------------------------------------------------------------------------------------


def test_differentiable_flag_and_held_out_value_network():
    """differentiable=True lets gradients reach precomputed values; the value network's own
    parameters get none through the estimator, in rlteach as in TorchRL."""
    td = make_batch((2,), with_values=True)
    td["state_value"].requires_grad_(True)
    out = V.GAE(gamma=0.9, lmbda=0.9, value_network=None, differentiable=True)(td.clone())
    (grad,) = torch.autograd.grad(out["advantage"][:, 0].sum(), td["state_value"])
    # A_0 = delta_0 + 0.81 * delta_1 (step 1 is done: the trace stops there), and
    # delta_t = ... - V(s_t), so dA_0/dV(s_0) = -1, dA_0/dV(s_1) = -0.81, and 0 afterwards.
    expected = torch.zeros(2, T, 1)
    expected[:, 0], expected[:, 1] = -1.0, -0.81
    assert_close(grad, expected)
    theirs = RV.GAE(gamma=0.9, lmbda=0.9, value_network=None, differentiable=True)(td.clone())
    (grad_theirs,) = torch.autograd.grad(theirs["advantage"][:, 0].sum(), td["state_value"])
    assert_close(grad, grad_theirs)
    for module in (V, RV):
        net = value_net()
        est = module.GAE(gamma=0.9, lmbda=0.9, value_network=net, differentiable=True)
        out = est(make_batch((2,)))
        assert not out["advantage"].requires_grad
        assert all(p.requires_grad for p in net.parameters())  # restored after the call


# ---------------------------------------------------------------------------------------------
# Clear errors.
# ---------------------------------------------------------------------------------------------


def test_missing_key_names_it_and_suggests_set_keys():
    td = make_batch((2,))
    with pytest.raises(KeyError, match=r"GAE needs the key 'state_value'.*set_keys\(value="):
        V.GAE(gamma=0.9, lmbda=0.9, value_network=None)(td)
    del td["next", "reward"]
    with pytest.raises(KeyError, match=r"\('next', 'reward'\).*TD0Estimator.set_keys\(reward="):
        V.TD0Estimator(gamma=0.9, value_network=value_net())(td)


def test_set_keys_unknown_name_lists_accepted():
    est = V.TDLambdaEstimator(gamma=0.9, lmbda=0.9, value_network=None)
    with pytest.raises(KeyError, match=r"'rewards' is not a key.*accepted names: advantage"):
        est.set_keys(rewards="r")
    with pytest.raises(KeyError, match=r"the value network writes"):
        V.GAE(gamma=0.9, lmbda=0.9, value_network=value_net()).set_keys(value="v")


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match=r"gamma must satisfy 0.0 <= gamma <= 1.0, got 1.5"):
        V.GAE(gamma=1.5, lmbda=0.9, value_network=None)
    with pytest.raises(ValueError, match=r"lmbda must satisfy 0.0 <= lmbda <= 1.0, got -0.1"):
        V.TDLambdaEstimator(gamma=0.9, lmbda=-0.1, value_network=None)
    with pytest.raises(ValueError, match=r"Unknown log_pi_of 'sampled'"):
        V.VTrace(gamma=0.9, value_network=None, actor_network=actor_net(), log_pi_of="sampled")
    with pytest.raises(ValueError, match=r"rho_thresh must satisfy 0.0 < rho_thresh"):
        V.VTrace(gamma=0.9, value_network=None, actor_network=actor_net(), rho_thresh=0.0)


def test_nan_reward_is_refused_before_writing():
    td = make_batch((2,))
    td["next", "reward"][0, 2] = math.nan
    before = set(td.keys(include_nested=True, leaves_only=True))
    for est in (
        V.GAE(gamma=0.9, lmbda=0.9, value_network=value_net()),
        V.TDLambdaEstimator(gamma=0.9, lmbda=0.9, value_network=value_net(), average_rewards=True),
    ):
        with pytest.raises(ValueError, match=r"reward contains NaN"):
            est(td)
        # nothing was written: no state_value, no advantage, the reward is the caller's
        assert set(td.keys(include_nested=True, leaves_only=True)) == before
        assert math.isnan(td["next", "reward"][0, 2].item())


@pytest.mark.parametrize("name,kwargs", ESTIMATORS[::2], ids=lambda x: str(x))
@pytest.mark.parametrize("skip_existing", [True, False, None])
def test_skip_existing_parity(name, kwargs, skip_existing):
    """Issue 22: with skip_existing=True, values already in the batch are used, not recomputed
    by the value network (it used to be accepted and ignored); False/None recompute them."""
    net = value_net()
    td = make_batch((2,), with_values=True)
    ours = getattr(V, name)(value_network=net, skip_existing=skip_existing, **kwargs)(td.clone())
    theirs = getattr(RV, name)(value_network=net, skip_existing=skip_existing, **kwargs)(td.clone())
    assert_same_outputs(ours, theirs, ["advantage", "value_target", "state_value",
                                       ("next", "state_value")])
    kept = bool(skip_existing)
    assert torch.equal(ours["state_value"], td["state_value"]) is kept


def test_skip_existing_none_follows_tensordict_global_switch():
    from tensordict.nn import set_skip_existing

    net = value_net()
    td = make_batch((2,), with_values=True)
    with set_skip_existing(True):
        ours = V.GAE(gamma=0.9, lmbda=0.9, value_network=net)(td.clone())
        theirs = RV.GAE(gamma=0.9, lmbda=0.9, value_network=net)(td.clone())
    assert_same_outputs(ours, theirs)
    assert torch.equal(ours["state_value"], td["state_value"])
