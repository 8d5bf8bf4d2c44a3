"""Composite (multi-head) action distributions and per-head entropy coefficients (issue 22).

TorchRL's PPO family takes an actor with a ``CompositeDistribution`` and ``entropy_coeff`` as a
mapping from head to weight; rlteach refuses both with a message naming the TorchRL feature and
why it is left out (rlteach.objectives._composite). The test builds the same composite actor,
shows that TorchRL accepts it (and reads two log-prob keys), and checks rlteach's message.
"""

from __future__ import annotations

import pytest
import torch
from tensordict.nn import (
    CompositeDistribution,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from torch import distributions as D
from torch import nn

from rlteach import objectives

TO = pytest.importorskip("torchrl.objectives")
FAMILY = ["PPOLoss", "ClipPPOLoss", "KLPENPPOLoss", "A2CLoss"]


class _Split(nn.Module):
    def forward(self, x):
        return x[..., :4], x[..., 4:6], nn.functional.softplus(x[..., 6:8]) + 0.1


def composite_actor():
    """A discrete head (4 choices) and a continuous head (2 dims), one CompositeDistribution."""
    torch.manual_seed(0)
    net = TensorDictModule(nn.Linear(3, 8), ["observation"], ["flat"])
    split = TensorDictModule(
        _Split(),
        ["flat"],
        [("params", "disc", "logits"), ("params", "cont", "loc"), ("params", "cont", "scale")],
    )
    head = ProbabilisticTensorDictModule(
        in_keys=["params"],
        out_keys=[("action", "disc"), ("action", "cont")],
        distribution_class=CompositeDistribution,
        distribution_kwargs={
            "distribution_map": {"disc": D.Categorical, "cont": D.Normal},
            "name_map": {"disc": ("action", "disc"), "cont": ("action", "cont")},
        },
        return_log_prob=True,
    )
    return ProbabilisticTensorDictSequential(net, split, head)


def critic():
    return TensorDictModule(nn.Linear(3, 1), ["observation"], ["state_value"])


@pytest.mark.parametrize("cls_name", FAMILY)
def test_composite_actor_is_refused_with_the_reason(cls_name):
    actor = composite_actor()
    theirs = getattr(TO, cls_name)(actor, critic())  # TorchRL takes it: two log-prob keys
    assert len(actor.log_prob_keys) == 2
    if cls_name != "A2CLoss":
        assert isinstance(theirs.tensor_keys.sample_log_prob, list)
    with pytest.raises(
        NotImplementedError, match=r"composite \(multi-head\).*CompositeDistribution"
    ):
        getattr(objectives, cls_name)(actor, critic())
    with pytest.raises(NotImplementedError, match=r"sum_k log pi_k"):
        getattr(objectives, cls_name)(actor, critic())


@pytest.mark.parametrize("cls_name", ["PPOLoss", "ClipPPOLoss", "KLPENPPOLoss"])
def test_per_head_entropy_coefficients_are_refused_with_the_reason(cls_name):
    from pg_fixtures import make_nets

    coeffs = {("action", "disc_entropy"): 0.01, ("action", "cont_entropy"): 0.02}
    getattr(TO, cls_name)(composite_actor(), critic(), entropy_coeff=coeffs)  # TorchRL's feature
    actor, value = make_nets("categorical")
    with pytest.raises(NotImplementedError, match="per-head entropy coefficients.*Pass one number"):
        getattr(objectives, cls_name)(actor, value, entropy_coeff=coeffs)
