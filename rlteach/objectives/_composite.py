"""What the policy-gradient losses refuse: composite (multi-head) action distributions.

TorchRL's PPO family accepts an actor whose distribution is a ``tensordict.nn.CompositeDistribution``
(several action heads, e.g. a discrete choice and a continuous amount, each with its own
log-probability key) and, for such actors, one entropy coefficient per head
(``entropy_coeff={("head", "entropy"): 0.01, ...}``). rlteach leaves both out: its losses are
written for one distribution π(a|s), and the composite machinery (log-probabilities and entropies
kept per head in TensorDicts, aggregated or not by ``set_composite_lp_aggregate``) is a layer of
engineering the book does not teach. The mathematics does not change: with independent heads,
log π(a|s) = Σ_k log π_k(a_k|s) and H(π) = Σ_k H(π_k), so one distribution whose ``log_prob`` and
``entropy`` sum over the heads gives PPO and A2C exactly; per-head coefficients weigh the terms of
the second sum differently.
"""

from __future__ import annotations

from collections.abc import Mapping

from tensordict.nn import CompositeDistribution, ProbabilisticTensorDictModule
from torch import nn

__all__ = ["refuse_composite"]

_WHY = (
    "rlteach's losses are written for one action distribution pi(a|s) and leave TorchRL's "
    "composite-distribution machinery out (per-head log-probabilities and entropies kept in "
    "TensorDicts). With independent heads log pi(a|s) = sum_k log pi_k(a_k|s) and "
    "H = sum_k H_k: give the actor one distribution whose log_prob and entropy sum over the "
    "heads, or use TorchRL's loss for this actor."
)


def refuse_composite(owner: str, actor_network: nn.Module | None, entropy_coeff) -> None:
    """Raise ``NotImplementedError`` for a composite actor or per-head entropy coefficients.

    Raises:
        NotImplementedError: ``entropy_coeff`` is a mapping (TorchRL's per-head coefficients), or
            the actor samples several action heads (a ``CompositeDistribution``, or more than one
            ``log_prob_keys`` / ``dist_sample_keys``).
    """
    if isinstance(entropy_coeff, Mapping):
        raise NotImplementedError(
            f"{owner}: entropy_coeff as a mapping (TorchRL's per-head entropy coefficients for a "
            f"composite action distribution, {dict(entropy_coeff)!r}) is not mirrored. {_WHY} "
            f"Pass one number."
        )
    if actor_network is None:
        return
    heads = [
        m
        for m in actor_network.modules()
        if isinstance(m, ProbabilisticTensorDictModule)
        and isinstance(m.distribution_class, type)
        and issubclass(m.distribution_class, CompositeDistribution)
    ]
    keys = [
        list(getattr(actor_network, name, None) or [])
        for name in ("log_prob_keys", "dist_sample_keys")
    ]
    if heads or any(len(k) > 1 for k in keys):
        raise NotImplementedError(
            f"{owner}: the actor has a composite (multi-head) action distribution (TorchRL's "
            f"CompositeDistribution; sample keys {keys[1]}, log-prob keys {keys[0]}), which is "
            f"not mirrored. {_WHY}"
        )
