"""Wall-clock comparison of a loss's forward and backward pass: rlteach against TorchRL.

Used by ``python -m rlteach bench --losses``. Both losses receive the *same* actor and critic
objects and the same batch (advantage and value target precomputed, so only the loss itself is
timed). The two are timed alternately, pass after pass, so that the machine's load drifts over
both alike; the ratio is median(rlteach) / median(TorchRL). TorchRL is imported inside the
function only.
"""

from __future__ import annotations

import statistics
import time

import torch
from tensordict import TensorDict

from rlteach.modules import make_categorical_actor, make_normal_actor, make_value_network


def _batch(n: int, obs_dim: int, actor, generator: torch.Generator) -> TensorDict:
    td = TensorDict({"observation": torch.randn(n, obs_dim, generator=generator)}, [n])
    with torch.no_grad():
        actor(td)  # writes action and action_log_prob, as the collector does
    td["advantage"] = torch.randn(n, 1, generator=generator)
    td["value_target"] = torch.randn(n, 1, generator=generator)
    return td.select("observation", "action", "action_log_prob", "advantage", "value_target")


def _forward_backward(loss, batch: TensorDict) -> float:
    start = time.perf_counter()
    out = loss(batch.clone(False))
    total = sum(value for key, value in out.items() if key.startswith("loss_"))
    total.backward()
    seconds = time.perf_counter() - start
    loss.zero_grad(set_to_none=True)
    return seconds


def time_losses(batch_size: int = 4096, repeats: int = 30) -> list[dict]:
    """Time ClipPPOLoss (rlteach vs TorchRL) on a discrete and a continuous actor.

    Returns rows ``{"name", "rlteach_seconds", "torchrl_seconds", "ratio"}`` (medians over
    ``repeats`` alternating passes after 3 warm-up passes each). Raises ``ImportError`` with an
    install hint when TorchRL is missing: the comparison needs it.
    """
    try:
        from torchrl.objectives import ClipPPOLoss as TorchRLClipPPOLoss
    except ImportError as err:
        raise ImportError(
            "bench --losses compares against TorchRL: pip install 'torchrl>=0.14,<0.15' "
            "(it is in rlteach's dev extra)."
        ) from err
    from rlteach.objectives import ClipPPOLoss

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    obs_dim = 8
    actors = {
        "ClipPPOLoss, categorical actor": make_categorical_actor(obs_dim, 4),
        "ClipPPOLoss, TanhNormal actor": make_normal_actor(obs_dim, 2),
    }
    rows = []
    for name, actor in actors.items():
        critic = make_value_network(obs_dim)
        batch = _batch(batch_size, obs_dim, actor, generator)
        ours = ClipPPOLoss(actor_network=actor, critic_network=critic, entropy_coeff=0.01)
        theirs = TorchRLClipPPOLoss(actor_network=actor, critic_network=critic, entropy_coeff=0.01)
        times = {"rlteach": [], "torchrl": []}
        for _ in range(3):
            _forward_backward(ours, batch)
            _forward_backward(theirs, batch)
        for _ in range(repeats):
            times["rlteach"].append(_forward_backward(ours, batch))
            times["torchrl"].append(_forward_backward(theirs, batch))
        mine, reference = (statistics.median(times[k]) for k in ("rlteach", "torchrl"))
        rows.append(
            {
                "name": f"{name}, batch {batch_size}",
                "rlteach_seconds": mine,
                "torchrl_seconds": reference,
                "ratio": mine / reference,
            }
        )
    return rows
