"""Fixtures shared by the policy-gradient loss tests: small networks, random batches, parity.

Imported by tests/test_reinforce.py and tests/test_a2c.py (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import math

import torch
from tensordict import TensorDict
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictSequential,
)
from torch import nn
from torch.distributions import Categorical

from rlteach.modules import make_categorical_actor, make_normal_actor, make_value_network

OBS, ACT = 3, 2
TOL = 1e-5


# ----------------------------------------------------------------------------- helpers


def make_nets(family: str, seed: int = 0):
    """A small actor of the given family and a value network, with fixed weights."""
    torch.manual_seed(seed)
    if family == "categorical":
        actor = make_categorical_actor(OBS, ACT, (8,))
    else:
        actor = make_normal_actor(OBS, ACT, (8,), tanh=family == "tanh_normal")
    return actor, make_value_network(OBS, (8,))


def make_shared_nets(seed: int = 0):
    """Actor and critic on one shared trunk, for ``separate_losses``."""
    torch.manual_seed(seed)
    trunk = TensorDictModule(nn.Linear(OBS, 8), in_keys=["observation"], out_keys=["hidden"])
    head = TensorDictModule(nn.Linear(8, ACT), in_keys=["hidden"], out_keys=["logits"])
    dist = ProbabilisticTensorDictModule(
        in_keys=["logits"], out_keys=["action"], distribution_class=Categorical,
        return_log_prob=True,
    )
    actor = ProbabilisticTensorDictSequential(trunk, head, dist)
    value_head = TensorDictModule(nn.Linear(8, 1), in_keys=["hidden"], out_keys=["state_value"])
    return actor, TensorDictSequential(trunk, value_head)


def make_batch(family: str, shape, *, precomputed: bool, seed: int = 1) -> TensorDict:
    """A random batch; with ``precomputed`` it carries advantage, value_target, state_value."""
    g = torch.Generator().manual_seed(seed)
    shape = list(shape)
    if family == "categorical":
        action = torch.randint(ACT, shape, generator=g)
    else:
        action = torch.rand(shape + [ACT], generator=g) * 1.8 - 0.9
    td = TensorDict(
        {
            "observation": torch.randn(shape + [OBS], generator=g),
            "action": action,
            "action_log_prob": torch.randn(shape, generator=g),
            "next": {
                "observation": torch.randn(shape + [OBS], generator=g),
                "reward": torch.randn(shape + [1], generator=g),
                "done": torch.rand(shape + [1], generator=g) < 0.2,
                "terminated": torch.rand(shape + [1], generator=g) < 0.1,
            },
        },
        batch_size=shape,
    )
    td["next", "done"] |= td["next", "terminated"]  # a terminated step is also done
    if precomputed:
        td["advantage"] = torch.randn(shape + [1], generator=g)
        td["value_target"] = torch.randn(shape + [1], generator=g)
        td["state_value"] = torch.randn(shape + [1], generator=g)
    return td


def grads(out: TensorDict, key: str, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """d out[key] / d params (zeros for parameters the term does not reach)."""
    value = out[key]
    if not value.requires_grad:
        return [torch.zeros_like(p) for p in params]
    g = torch.autograd.grad(value.sum(), params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, params, strict=True)]


def assert_parity(ours, theirs, td: TensorDict, actor, critic, *, seed: int = 0) -> TensorDict:
    """Same output keys and values, same gradients wrt actor and critic, within TOL.

    Both losses run after ``torch.manual_seed(seed)``. The only random draw is the Monte-Carlo
    entropy of a TanhNormal: both losses call the *same* distribution class's
    ``rsample_and_log_prob((samples_mc_entropy,))`` once, after the log-prob (which draws
    nothing), so they consume the generator identically and see the same noise.
    """
    torch.manual_seed(seed)
    out = ours(td.clone())
    torch.manual_seed(seed)
    ref = theirs(td.clone())
    assert set(out.keys()) == set(ref.keys())
    params = list(actor.parameters()) + list(critic.parameters())
    for key in ref.keys():
        assert out[key].shape == ref[key].shape, key
        torch.testing.assert_close(out[key], ref[key], atol=TOL, rtol=TOL, msg=key)
        if key.startswith("loss_"):
            for g_ours, g_ref in zip(
                grads(out, key, params), grads(ref, key, params), strict=True
            ):
                torch.testing.assert_close(g_ours, g_ref, atol=TOL, rtol=TOL, msg=key)
    return out


# Hand-computed cases: pi = softmax(theta) and V = w whatever the observation.


class ConstantLogits(nn.Module):
    """logits = theta for every observation: pi(a) = softmax(theta)."""

    def __init__(self, theta):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta))

    def forward(self, obs):
        return self.theta.expand(*obs.shape[:-1], self.theta.shape[-1])


class ConstantValue(nn.Module):
    """V(s) = w for every observation."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w]))

    def forward(self, obs):
        return self.w.expand(*obs.shape[:-1], 1)


def hand_nets():
    actor = ProbabilisticTensorDictSequential(
        TensorDictModule(ConstantLogits([0.0, math.log(3.0)]), ["observation"], ["logits"]),
        ProbabilisticTensorDictModule(
            in_keys=["logits"], out_keys=["action"], distribution_class=Categorical
        ),
    )
    critic = TensorDictModule(ConstantValue(0.5), ["observation"], ["state_value"])
    return actor, critic
