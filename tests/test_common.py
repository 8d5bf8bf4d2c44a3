"""LossModule, distance_loss and _reduce: keys, estimators, target networks, errors, parity."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from tensordict.utils import NestedKey
from torch import nn

from rlteach._checks import check_choice
from rlteach.objectives import (
    LOSS_FUNCTIONS,
    REDUCTIONS,
    LossModule,
    default_value_kwargs,
    distance_loss,
)
from rlteach.objectives.utils import _reduce, read_inputs
from rlteach.value import (
    GAE,
    TD0Estimator,
    TD1Estimator,
    TDLambdaEstimator,
    ValueEstimators,
    VTrace,
)


class ValueRegressionLoss(LossModule):
    r"""TD(0) value regression with a target network, the smallest loss with every moving part.

    (VR-1) y = r + gamma (1 - terminated) V_{theta'}(s')   [from the value estimator]
    (VR-2) loss_value = reduce(distance(V_theta(s), y))
    """

    @dataclass
    class _AcceptedKeys:
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"

    default_value_estimator = ValueEstimators.TD0
    supported_value_estimators = tuple(ValueEstimators)
    out_keys = ("loss_value",)

    def __init__(self, value_network, *, loss_function="l2", reduction="mean", delay_value=True):
        check_choice("loss_function", loss_function, LOSS_FUNCTIONS)
        check_choice("reduction", reduction, REDUCTIONS)
        super().__init__()
        self.loss_function = loss_function
        self.reduction = reduction
        self.delay_value = delay_value
        self._register_network("value_network", value_network, create_target=delay_value)

    def _estimator_networks(self, kind):
        networks = super()._estimator_networks(kind)
        if self.delay_value:  # bootstrap from the frozen copy
            networks["value_network"] = self.target_value_network
        return networks

    def forward(self, td):
        self._read_inputs(td, next_names=("reward", "done", "terminated"))
        work = td.clone(False)  # the estimator writes into its input; keep the caller's clean
        with torch.no_grad():
            target = self.value_estimator(work).get(self.tensor_keys.value_target)  # (VR-1)
        value = self.value_network(td.select(*self.value_network.in_keys).clone(False))
        value = value.get(self.tensor_keys.value)
        loss = distance_loss(value, target, self.loss_function)  # (VR-2)
        return TensorDict(loss_value=self._reduce_loss(loss))


def linear_value(w: float) -> TensorDictModule:
    """V(s) = w * s, one weight."""
    layer = nn.Linear(1, 1, bias=False)
    nn.init.constant_(layer.weight, w)
    return TensorDictModule(layer, in_keys=["observation"], out_keys=["state_value"])


def hand_batch(reward_key="reward", done_key="done", terminated_key="terminated") -> TensorDict:
    """Three transitions, the last one terminal."""
    terminated = torch.tensor([[False], [False], [True]])
    return TensorDict(
        {
            "observation": torch.tensor([[1.0], [2.0], [3.0]]),
            "next": {
                "observation": torch.tensor([[2.0], [3.0], [4.0]]),
                reward_key: torch.tensor([[1.0], [0.0], [2.0]]),
                done_key: terminated.clone(),
                terminated_key: terminated,
            },
        },
        batch_size=[3],
    )


def hand_loss(**kwargs) -> ValueRegressionLoss:
    """Target network w' = 2 (copied at construction), online network then moved to w = 3."""
    loss = ValueRegressionLoss(linear_value(2.0), **kwargs)
    with torch.no_grad():
        loss.value_network.module.weight.fill_(3.0)
    loss.make_value_estimator("td0", gamma=0.5)
    return loss


def random_batch(batch=(2, 6), seed=0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    done = torch.zeros(*batch, 1, dtype=torch.bool)
    done[0, 2] = True
    done[:, -1] = True
    terminated = done.clone()
    terminated[:, -1] = False  # truncated at the end of the window
    states = torch.randn(batch[0], batch[1] + 1, 1, generator=g)  # s_{t+1} is next of s_t
    return TensorDict(
        {
            "observation": states[:, :-1],
            "next": {
                "observation": states[:, 1:],
                "reward": torch.randn(*batch, 1, generator=g),
                "done": done,
                "terminated": terminated,
            },
        },
        batch_size=list(batch),
    )


def params_snapshot(loss: LossModule) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in loss.state_dict().items()}


def assert_unchanged(loss: LossModule, snapshot: dict[str, torch.Tensor]) -> None:
    now = loss.state_dict()
    assert set(now) == set(snapshot)
    for k, v in snapshot.items():
        assert torch.equal(now[k], v), k


# ------------------------------------------------------------------ the forward pass by hand


# V'(s') = 2 * [2, 3, 4] = [4, 6, 8]                    (target network, w' = 2)
# y      = r + 0.5 (1 - term) V'(s') = [1 + 2, 0 + 3, 2 + 0] = [3, 3, 2]
# V(s)   = 3 * [1, 2, 3] = [3, 6, 9]                    (online network, w = 3)
# d      = V - y = [0, 3, 7]
@pytest.mark.parametrize(
    "loss_function, reduction, expected",
    [
        ("l2", "mean", 58 / 3),  # (0 + 9 + 49) / 3: no factor 1/2
        ("l2", "sum", 58.0),
        ("l1", "mean", 10 / 3),  # (0 + 3 + 7) / 3
        ("smooth_l1", "mean", 3.0),  # (0 + (3 - 0.5) + (7 - 0.5)) / 3
        ("smooth_l1", "sum", 9.0),
    ],
)
def test_forward_hand_computed(loss_function, reduction, expected):
    loss = hand_loss(loss_function=loss_function, reduction=reduction)
    out = loss(hand_batch())
    assert set(out.keys()) == set(loss.out_keys)
    assert out["loss_value"].item() == pytest.approx(expected, abs=1e-6)


def test_forward_reduction_none_keeps_per_sample_losses():
    out = hand_loss(reduction="none")(hand_batch())
    assert torch.equal(out["loss_value"], torch.tensor([[0.0], [9.0], [49.0]]))


def test_gradient_reaches_the_online_network_only():
    # d/dw mean((w s - y)^2) = mean(2 (V - y) s) = (2*0*1 + 2*3*2 + 2*7*3) / 3 = 18
    loss = hand_loss()
    loss(hand_batch())["loss_value"].backward()
    assert loss.value_network.module.weight.grad.item() == pytest.approx(18.0)
    target_weight = loss.target_value_network.module.weight
    assert target_weight.grad is None and not target_weight.requires_grad


def test_forward_leaves_the_input_batch_unchanged():
    batch = hand_batch()
    keys_before = set(batch.keys(True, True))
    hand_loss()(batch)
    assert set(batch.keys(True, True)) == keys_before


# -------------------------------------------------------------------------------- set_keys


def test_set_keys_renames_reach_the_estimator_and_the_forward_pass():
    reference = hand_loss()(hand_batch())["loss_value"]
    loss = hand_loss()
    loss.set_keys(reward="r", done=("flags", "done"), terminated="term", value_target="y")
    assert loss.tensor_keys.reward == "r"
    estimator_keys = loss.value_estimator.tensor_keys
    assert estimator_keys.reward == "r"
    assert estimator_keys.done == ("flags", "done")
    assert estimator_keys.terminated == "term"
    assert estimator_keys.value_target == "y"
    renamed = hand_batch(reward_key="r", done_key=("flags", "done"), terminated_key="term")
    assert loss(renamed)["loss_value"].item() == pytest.approx(reference.item())


def test_keys_set_before_the_estimator_exists_reach_it_when_built():
    loss = ValueRegressionLoss(linear_value(1.0))
    loss.set_keys(reward="r", advantage="adv")
    for kind in ("td0", "gae"):
        loss.make_value_estimator(kind)
        assert loss.value_estimator.tensor_keys.reward == "r"
        assert loss.value_estimator.tensor_keys.advantage == "adv"


def test_set_keys_none_restores_the_default():
    loss = hand_loss()
    loss.set_keys(reward="r")
    loss.set_keys(reward=None)
    assert loss.tensor_keys.reward == "reward"
    assert loss.value_estimator.tensor_keys.reward == "reward"


def test_set_keys_unknown_name_lists_the_accepted_ones_and_changes_nothing():
    loss = hand_loss()
    with pytest.raises(KeyError, match="'rewrd' is not a key name.*Accepted names: value, reward"):
        loss.set_keys(reward="r", rewrd="x")
    assert loss.tensor_keys.reward == "reward"
    assert loss.value_estimator.tensor_keys.reward == "reward"


@pytest.mark.parametrize("bad", [3, ("next", 1), (), ["a", "b"]])
def test_set_keys_refuses_a_key_that_is_not_a_str_or_tuple(bad):
    loss = hand_loss()
    with pytest.raises(ValueError, match="must be a string or a tuple of strings"):
        loss.set_keys(reward=bad)
    assert loss.tensor_keys.reward == "reward"


def test_set_keys_refused_by_the_estimator_changes_nothing():
    # The target network writes "state_value"; the estimator refuses to look for "v".
    loss = hand_loss()
    with pytest.raises(KeyError, match="writes"):
        loss.set_keys(reward="r", value="v")
    assert loss.tensor_keys.value == "state_value"
    assert loss.tensor_keys.reward == "reward"
    assert loss.value_estimator.tensor_keys.reward == "reward"


def test_in_keys_and_out_keys():
    loss = hand_loss()
    assert loss.in_keys == ["observation"]  # the network's; the target is not listed twice
    assert loss.out_keys == ("loss_value",)


# ---------------------------------------------------------------------- make_value_estimator


@pytest.mark.parametrize(
    "value_type, cls, kind",
    [
        (ValueEstimators.TD0, TD0Estimator, ValueEstimators.TD0),
        ("td0", TD0Estimator, ValueEstimators.TD0),
        ("TD0", TD0Estimator, ValueEstimators.TD0),
        (ValueEstimators.TD1, TD1Estimator, ValueEstimators.TD1),
        ("td1", TD1Estimator, ValueEstimators.TD1),
        (ValueEstimators.TDLambda, TDLambdaEstimator, ValueEstimators.TDLambda),
        ("td_lambda", TDLambdaEstimator, ValueEstimators.TDLambda),
        ("TDLambda", TDLambdaEstimator, ValueEstimators.TDLambda),
        (ValueEstimators.GAE, GAE, ValueEstimators.GAE),
        ("Gae", GAE, ValueEstimators.GAE),
    ],
)
def test_make_value_estimator_each_kind_with_torchrl_defaults(value_type, cls, kind):
    loss = ValueRegressionLoss(linear_value(1.0))
    assert loss.make_value_estimator(value_type) is loss
    estimator = loss.value_estimator
    assert type(estimator) is cls
    assert loss.value_type is kind
    assert estimator.gamma.item() == pytest.approx(0.99)
    assert estimator.differentiable is True
    if kind in (ValueEstimators.TDLambda, ValueEstimators.GAE):
        assert estimator.lmbda.item() == pytest.approx(0.95)
    assert estimator.value_network is loss.target_value_network


def test_default_value_kwargs_match_torchrl():
    utils = pytest.importorskip("torchrl.objectives.utils")
    for kind in ValueEstimators:
        theirs = utils.default_value_kwargs(getattr(utils.ValueEstimators, kind.name))
        assert default_value_kwargs(kind) == theirs
        assert default_value_kwargs(kind.name.lower()) == theirs


def test_default_estimator_is_built_on_first_use():
    loss = ValueRegressionLoss(linear_value(1.0))
    assert type(loss.value_estimator) is TD0Estimator
    assert loss.value_estimator.gamma.item() == pytest.approx(0.99)


def test_hyperparameters_reach_the_estimator():
    loss = ValueRegressionLoss(linear_value(1.0))
    loss.make_value_estimator("gae", gamma=0.5, lmbda=0.3, average_gae=True, differentiable=False)
    estimator = loss.value_estimator
    assert estimator.gamma.item() == pytest.approx(0.5)
    assert estimator.lmbda.item() == pytest.approx(0.3)
    assert estimator.average_gae is True
    assert estimator.differentiable is False


def test_a_loss_gamma_attribute_is_the_default_gamma():
    loss = ValueRegressionLoss(linear_value(1.0))
    loss.gamma = 0.7
    assert loss.make_value_estimator("td1").value_estimator.gamma.item() == pytest.approx(0.7)
    loss.make_value_estimator("td1", gamma=0.2)  # the caller wins
    assert loss.value_estimator.gamma.item() == pytest.approx(0.2)


def test_default_estimator_network_is_critic_then_value_network():
    class TwoNetLoss(LossModule):
        supported_value_estimators = (ValueEstimators.TD0,)

        def __init__(self, critic=None, value=None):
            super().__init__()
            if critic is not None:
                self._register_network("critic_network", critic)
            if value is not None:
                self._register_network("value_network", value)

    critic, value = linear_value(1.0), linear_value(2.0)
    assert (
        TwoNetLoss(critic, value).make_value_estimator("td0").value_estimator.value_network
        is critic
    )
    assert (
        TwoNetLoss(None, value).make_value_estimator("td0").value_estimator.value_network is value
    )
    assert TwoNetLoss().make_value_estimator("td0").value_estimator.value_network is None


def test_estimator_identities_through_the_loss():
    # TD(lambda=0) is TD(0); TD(lambda=1) is TD(1); GAE's target A + V is the TD(lambda) return.
    batch = random_batch()

    def loss_with(kind, **hyper):
        torch.manual_seed(0)
        loss = ValueRegressionLoss(linear_value(0.5))
        with torch.no_grad():
            loss.value_network.module.weight.fill_(-1.0)
        return loss.make_value_estimator(kind, gamma=0.9, **hyper)(batch)["loss_value"]

    torch.testing.assert_close(loss_with("td_lambda", lmbda=0.0), loss_with("td0"))
    torch.testing.assert_close(loss_with("td_lambda", lmbda=1.0), loss_with("td1"))
    torch.testing.assert_close(loss_with("gae", lmbda=0.7), loss_with("td_lambda", lmbda=0.7))
    assert not torch.allclose(loss_with("td0"), loss_with("td1"))  # and they do differ


def test_vtrace_needs_an_actor_network():
    loss = ValueRegressionLoss(linear_value(1.0))
    with pytest.raises(ValueError, match="V-trace needs.*actor_network"):
        loss.make_value_estimator("vtrace")
    assert loss.value_type is ValueEstimators.TD0  # unchanged
    actor = ProbabilisticTensorDictSequential(
        TensorDictModule(nn.Linear(1, 2), in_keys=["observation"], out_keys=["logits"]),
        ProbabilisticTensorDictModule(
            in_keys=["logits"],
            out_keys=["action"],
            distribution_class=torch.distributions.Categorical,
            return_log_prob=True,
        ),
    )
    loss.make_value_estimator(ValueEstimators.VTrace, actor_network=actor, gamma=0.8)
    assert type(loss.value_estimator) is VTrace
    assert loss.value_estimator.actor_network is actor
    assert loss.value_estimator.gamma.item() == pytest.approx(0.8)


def test_an_estimator_instance_or_class_can_be_passed():
    loss = ValueRegressionLoss(linear_value(1.0))
    loss.set_keys(reward="r")
    mine = TD0Estimator(gamma=0.3, value_network=None)
    loss.make_value_estimator(mine)
    assert loss.value_estimator is mine and loss.value_type is TD0Estimator
    assert mine.tensor_keys.reward == "r"  # the loss's names were forwarded
    loss.make_value_estimator(TD1Estimator, gamma=0.4, value_network=None)
    assert type(loss.value_estimator) is TD1Estimator
    assert loss.value_estimator.gamma.item() == pytest.approx(0.4)


@pytest.mark.parametrize("bad", ["td2", "lambda", 3, None])
def test_unknown_estimator_lists_the_options(bad):
    class NoDefault(ValueRegressionLoss):
        default_value_estimator = None

    loss = NoDefault(linear_value(1.0))
    with pytest.raises(ValueError, match=r"Unknown value estimator .*ValueEstimators\.GAE.*'gae'"):
        loss.make_value_estimator(bad)


def test_unsupported_estimator_is_refused_and_the_old_one_kept():
    class TD0Only(ValueRegressionLoss):
        supported_value_estimators = (ValueEstimators.TD0,)

    loss = TD0Only(linear_value(1.0)).make_value_estimator("td0", gamma=0.5)
    before = loss.value_estimator
    with pytest.raises(
        ValueError, match=r"does not support .*GAE\. Supported: ValueEstimators\.TD0"
    ):
        loss.make_value_estimator("gae")
    assert loss.value_estimator is before and loss.value_type is ValueEstimators.TD0


@pytest.mark.parametrize("hyper, match", [({"gamma": 1.5}, "gamma"), ({"lmbda": -0.1}, "lmbda")])
def test_out_of_range_hyperparameters_keep_the_old_estimator(hyper, match):
    loss = hand_loss()
    before = loss.value_estimator
    with pytest.raises(ValueError, match=match):
        loss.make_value_estimator("td_lambda", **hyper)
    assert loss.value_estimator is before


def test_loss_without_estimator_says_so():
    class NoEstimator(LossModule):
        pass

    with pytest.raises(RuntimeError, match="NoEstimator does not use a value estimator"):
        _ = NoEstimator().value_estimator


def test_swapping_estimators_does_not_change_parameters_or_state_dict_keys():
    loss = ValueRegressionLoss(linear_value(1.0))
    keys, n_params = set(loss.state_dict()), len(list(loss.parameters()))
    loss.make_value_estimator("gae")
    assert set(loss.state_dict()) == keys and len(list(loss.parameters())) == n_params


def test_moving_the_loss_moves_the_estimator():
    loss = hand_loss()
    loss.double()
    assert loss.value_estimator.gamma.dtype == torch.float64
    assert loss.target_value_network.module.weight.dtype == torch.float64


# ------------------------------------------------------------------- errors before any change


def test_missing_key_names_it_and_set_keys_and_changes_nothing():
    loss = hand_loss()
    snapshot = params_snapshot(loss)
    batch = hand_batch()
    del batch["next", "reward"]
    with pytest.raises(KeyError, match=r"\('next', 'reward'\).*set_keys\(reward=<your key>\)"):
        loss(batch)
    assert_unchanged(loss, snapshot)
    assert loss.value_network.module.weight.grad is None


def test_nan_input_is_refused_before_anything_runs():
    loss = hand_loss()
    snapshot = params_snapshot(loss)
    batch = hand_batch()
    batch["next", "reward"][1] = float("nan")
    with pytest.raises(
        ValueError, match=r"next_reward .*contains NaN or inf \(first at index \[1, 0\]\)"
    ):
        loss(batch)
    assert_unchanged(loss, snapshot)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"loss_function": "l3"},
            r"Unknown loss_function 'l3': choose one of 'l1', 'l2', 'smooth_l1'",
        ),
        ({"reduction": "avg"}, r"Unknown reduction 'avg': choose one of 'none', 'mean', 'sum'"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ValueRegressionLoss(linear_value(1.0), **kwargs)


def test_read_inputs_lists_the_keys_present():
    td = TensorDict({"observation": torch.zeros(2, 1)}, batch_size=[2])
    with pytest.raises(
        KeyError, match=r"Loss needs the key 'action'.*set_keys\(action=.*'observation'"
    ):
        read_inputs(td, {"action": "action"}, owner="Loss")
    got = read_inputs(td, {"observation": "observation"}, owner="Loss")
    assert got["observation"] is td["observation"]


# --------------------------------------------------------------------------- target networks


def test_target_network_is_a_frozen_deep_copy():
    net = linear_value(2.0)
    loss = ValueRegressionLoss(net)
    assert loss.value_network is net  # the caller's network itself, not a copy
    target = loss.target_value_network
    assert target is not net and target.module is not net.module
    assert list(target.parameters()) == []  # parameters became buffers...
    buffers = dict(target.named_buffers())
    assert set(buffers) == {"module.weight"}
    assert not buffers["module.weight"].requires_grad  # ...without gradient
    assert buffers["module.weight"].item() == 2.0
    with torch.no_grad():
        net.module.weight.fill_(5.0)
    assert buffers["module.weight"].item() == 2.0  # no shared storage
    # The optimiser sees the online weight only; the checkpoint has both.
    assert [p is net.module.weight for p in loss.parameters()] == [True]
    assert {"value_network.module.weight", "target_value_network.module.weight"} <= set(
        loss.state_dict()
    )
    assert loss.target_network_pairs() == [("value_network", net, target)]
    # the copy still runs as a network
    out = target(TensorDict(observation=torch.tensor([[3.0]]), batch_size=[1]))
    assert out["state_value"].item() == 6.0


def test_no_target_without_create_target():
    loss = ValueRegressionLoss(linear_value(1.0), delay_value=False)
    assert loss.target_network_pairs() == []
    assert not hasattr(loss, "target_value_network")
    assert loss.value_estimator.value_network is loss.value_network


def test_tied_weights_stay_tied_in_the_target():
    body = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2))
    body[2].weight = body[0].weight

    class Tied(LossModule):
        def __init__(self):
            super().__init__()
            self._register_network("value_network", body, create_target=True)

    target = Tied().target_value_network
    assert target[2].weight is target[0].weight
    assert target[0].weight.data_ptr() != body[0].weight.data_ptr()


def test_ensemble_of_networks():
    members = [linear_value(float(i)) for i in range(3)]

    class Ensemble(LossModule):
        def __init__(self):
            super().__init__()
            self._register_network("qvalue_network", members, create_target=True)

    loss = Ensemble()
    assert isinstance(loss.qvalue_network, nn.ModuleList) and loss.qvalue_network[2] is members[2]
    assert [m.module.weight.item() for m in loss.target_qvalue_network] == [0.0, 1.0, 2.0]
    assert len(list(loss.parameters())) == 3
    assert loss.in_keys == ["observation"]


def test_register_network_errors():
    class Loss(LossModule):
        pass

    loss = Loss()
    with pytest.raises(ValueError, match="lazy module.*forward pass"):
        loss._register_network("value_network", nn.LazyLinear(1), create_target=True)
    assert not hasattr(loss, "value_network")  # nothing was registered
    with pytest.raises(ValueError, match="may not start with 'target_'"):
        loss._register_network("target_net", nn.Linear(1, 1))
    loss._register_network("net", nn.Linear(1, 1))
    with pytest.raises(ValueError, match="already has an attribute 'net'"):
        loss._register_network("net", nn.Linear(1, 1))
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        loss._register_network("other", lambda x: x)


# ------------------------------------------------------------------------------ distance_loss


@pytest.mark.parametrize("loss_function", LOSS_FUNCTIONS)
def test_distance_loss_matches_torchrl_values_and_gradients(loss_function):
    utils = pytest.importorskip("torchrl.objectives.utils")
    g = torch.Generator().manual_seed(0)
    v1 = (2 * torch.randn(64, 3, generator=g)).requires_grad_()  # |d| on both sides of 1
    v2 = (2 * torch.randn(64, 3, generator=g)).requires_grad_()
    ours = distance_loss(v1, v2, loss_function)
    (g1, g2) = torch.autograd.grad(ours.sum(), (v1, v2))
    theirs = utils.distance_loss(v1, v2, loss_function)
    (t1, t2) = torch.autograd.grad(theirs.sum(), (v1, v2))
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    torch.testing.assert_close(g1, t1, atol=1e-6, rtol=0)
    torch.testing.assert_close(g2, t2, atol=1e-6, rtol=0)


def test_distance_loss_hand_computed():
    d = torch.tensor([0.0, 0.5, -1.0, 3.0])
    zero = torch.zeros(4)
    assert distance_loss(d, zero, "l2").tolist() == [0.0, 0.25, 1.0, 9.0]  # d^2, no 1/2
    assert distance_loss(d, zero, "l1").tolist() == [0.0, 0.5, 1.0, 3.0]
    assert distance_loss(d, zero, "smooth_l1").tolist() == [0.0, 0.125, 0.5, 2.5]
    # Huber's point: the gradient is clipped to [-1, 1]
    x = torch.tensor([3.0, 0.5, -4.0], requires_grad=True)
    distance_loss(x, torch.zeros(3), "smooth_l1").sum().backward()
    assert x.grad.tolist() == [1.0, 0.5, -1.0]


def test_distance_loss_shape_check_and_broadcast():
    a, b = torch.randn(5, 1), torch.randn(5)
    with pytest.raises(ValueError, match=r"v1 has shape \[5, 1\] but v2 has shape \[5\]"):
        distance_loss(a, b, "l2")
    utils = pytest.importorskip("torchrl.objectives.utils")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that mse_loss broadcasts
        theirs = utils.distance_loss(a, b, "l2", strict_shape=False)
    torch.testing.assert_close(distance_loss(a, b, "l2", strict_shape=False), theirs)


def test_distance_loss_unknown_function():
    with pytest.raises(
        ValueError, match="Unknown loss_function 'l3': choose one of 'l1', 'l2', 'smooth_l1'"
    ):
        distance_loss(torch.zeros(2), torch.zeros(2), "l3")


def test_distance_loss_on_tensordicts_goes_leaf_by_leaf():
    a = TensorDict(x=torch.tensor([1.0, 4.0]), y=torch.tensor([[2.0]]))
    b = TensorDict(x=torch.tensor([0.0, 1.0]), y=torch.tensor([[0.0]]))
    out = distance_loss(a, b, "l2")
    assert out["x"].tolist() == [1.0, 9.0] and out["y"].tolist() == [[4.0]]


# ------------------------------------------------------------------------------------ _reduce


LOSSES = torch.tensor([1.0, 2.0, 3.0, 4.0])
WEIGHTS = torch.tensor([1.0, 0.0, 1.0, 2.0])
MASK = torch.tensor([True, True, False, True])


@pytest.mark.parametrize(
    "reduction, mask, weights, expected",
    [
        ("mean", None, None, 2.5),
        ("sum", None, None, 10.0),
        ("mean", None, WEIGHTS, 3.0),  # (1 + 0 + 3 + 8) / (1 + 0 + 1 + 2)
        ("sum", None, WEIGHTS, 12.0),
        ("mean", MASK, None, 7 / 3),  # (1 + 2 + 4) / 3
        ("sum", MASK, None, 7.0),
        ("mean", MASK, WEIGHTS, 3.0),  # (1 + 0 + 8) / (1 + 0 + 2)
        ("none", None, WEIGHTS, [1.0, 0.0, 3.0, 8.0]),
        ("none", MASK, None, [1.0, 2.0, 4.0]),
    ],
)
def test_reduce_hand_computed_and_like_torchrl(reduction, mask, weights, expected):
    ours = _reduce(LOSSES, reduction, mask=mask, weights=weights)
    if isinstance(expected, list):
        assert ours.tolist() == expected
    else:
        assert ours.item() == pytest.approx(expected)
    utils = pytest.importorskip("torchrl.objectives.utils")
    torch.testing.assert_close(ours, utils._reduce(LOSSES, reduction, mask=mask, weights=weights))


def test_reduce_errors():
    with pytest.raises(
        ValueError, match="Unknown reduction 'avg': choose one of 'none', 'mean', 'sum'"
    ):
        _reduce(LOSSES, "avg")
    with pytest.raises(ValueError, match=r"mask has shape \[2\] but the loss has shape \[4\]"):
        _reduce(LOSSES, "mean", mask=torch.tensor([True, False]))


def test_set_keys_unknown_name_raises_torchrl_exception_class():
    """Issue 22: TorchRL's LossModule.set_keys raises ValueError for an unknown name; rlteach's
    error is a ValueError too (and still a KeyError, for code written against rlteach)."""
    torchrl_objectives = pytest.importorskip("torchrl.objectives")
    actor = TensorDictModule(nn.Linear(3, 2), ["observation"], ["action_value"])
    with pytest.raises(ValueError) as theirs:
        torchrl_objectives.DQNLoss(actor, action_space="one-hot").set_keys(rewrd="x")
    ours = hand_loss()
    with pytest.raises(ValueError, match="'rewrd' is not a key name"):
        ours.set_keys(rewrd="x")
    assert type(theirs.value) is ValueError
    with pytest.raises(KeyError):
        ours.set_keys(rewrd="x")
