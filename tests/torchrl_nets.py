"""Networks built from TorchRL's own modules, shared by the SAC, REDQ and CrossQ parity tests
(issue 22: a practitioner hands TorchRL's actor to rlteach's loss)."""

from __future__ import annotations

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule

from rlteach.modules import make_state_action_value_network


def torchrl_tanh_actor(obs_dim: int, act_dim: int, spec, action_key: str = "action"):
    """TorchRL's ``ProbabilisticActor`` with its ``TanhNormal`` on [-2, 2]: one linear layer to
    (loc, scale), writing ``action_key``. Its layer is drawn from the global RNG first."""
    from torchrl.modules import ProbabilisticActor, TanhNormal

    net = torch.nn.Sequential(torch.nn.Linear(obs_dim, 2 * act_dim), NormalParamExtractor())
    return ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        out_keys=[action_key],
        spec=spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -2.0, "high": 2.0},
        return_log_prob=True,
    )


def critics_reading(action_key: str, obs_dim: int, act_dim: int, n: int):
    """``n`` rlteach Q-networks (16 hidden units) reading (observation, ``action_key``)."""
    return [
        TensorDictModule(
            make_state_action_value_network(obs_dim, act_dim, (16,)).module,
            ["observation", action_key],
            ["state_action_value"],
        )
        for _ in range(n)
    ]
