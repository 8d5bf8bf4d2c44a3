r"""Target-network updaters: the slow copy of a network that bootstrapped targets are read from.

A loss that bootstraps (DQN, DDPG, TD3, SAC, ...) computes its regression target from a
*target network* :math:`\theta'`, a lagged copy of the online network :math:`\theta`, so that
the target does not move with every gradient step (Mnih et al., 2015). Two ways of lagging:

.. math::

    \text{soft (Polyak):}\quad \theta' \leftarrow (1 - \tau)\,\theta' + \tau\,\theta
    \quad\text{every step} \qquad \text{(TGT-1)}

    \text{hard:}\quad \theta' \leftarrow \theta \quad\text{every } N \text{ steps}
    \qquad \text{(TGT-2)}

Soft updates come from DDPG (Lillicrap et al., 2016); hard updates from DQN (Mnih et al., 2015)
and Double DQN (van Hasselt et al., 2016). With :math:`\tau = 1 - \epsilon`, TGT-1 keeps an
exponential moving average of the online weights with time constant about :math:`1/\tau` steps.

The pairs (network, target network) come from ``loss_module.target_network_pairs()``; a
target is a deep copy whose parameters are buffers (see ``rlteach.objectives.common``).

As in TorchRL 0.14:

* building an updater copies every network into its target once (``init_()``), so the two
  start equal whatever happened before;
* ``step()`` moves the target's copies of the online network's *trainable parameters* only.
  Buffers such as BatchNorm running statistics are copied by ``init_()`` and then left alone,
  and so are frozen parameters (``requires_grad=False``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from rlteach._checks import check_range
from rlteach.objectives.common import LossModule


def _paired_tensors(
    source: nn.Module, target: nn.Module, *, trainable_only: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (online tensor, target tensor) pairs, matched by name.

    The target's buffers carry the names of the online network's parameters and buffers.
    """
    target_tensors = dict(target.named_buffers())
    online = list(source.named_parameters())
    if not trainable_only:
        online += list(source.named_buffers())
    for name, tensor in online:
        if trainable_only and not tensor.requires_grad:
            continue
        if name not in target_tensors:
            raise RuntimeError(
                f"The target network has no entry {name!r}, which the online network has: "
                f"the online network changed shape after the loss copied it."
            )
        yield tensor, target_tensors[name]


class TargetNetUpdater:
    """Common part of the updaters: find the target networks and copy them in once.

    Args:
        loss_module: a ``rlteach.objectives.LossModule`` built with at least one target network
            (e.g. ``delay_value=True``).

    Raises:
        TypeError: ``loss_module`` is not a ``LossModule``.
        ValueError: the loss has no target network.
    """

    def __init__(self, loss_module: LossModule) -> None:
        if not isinstance(loss_module, LossModule):
            raise TypeError(
                f"{type(self).__name__} needs an rlteach LossModule, got "
                f"{type(loss_module).__name__}."
            )
        if not loss_module.target_network_pairs():
            raise ValueError(
                f"{type(loss_module).__name__} has no target network, so "
                f"{type(self).__name__} has nothing to update. Build the loss with its "
                f"target-network option on (delay_value=True, delay_qvalue=True, ...), or "
                f"do not use a target updater."
            )
        self.loss_module = loss_module
        # the loss stops warning that its targets have no updater (TorchRL's bookkeeping, under
        # TorchRL's private name, which TorchRL's own updaters also set on an rlteach loss)
        associated = loss_module._has_update_associated  # noqa: SLF001
        for name in associated:
            associated[name] = True
        self.initialized = False
        self.init_()

    def pairs(self, *, trainable_only: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(online tensor, target tensor) for every network of the loss that has a target."""
        for _, source, target in self.loss_module.target_network_pairs():
            yield from _paired_tensors(source, target, trainable_only=trainable_only)

    def _checked_pairs(self, *, trainable_only: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every (online, target) pair, all matched and shape-checked before any is copied.

        A mismatch found half-way through would otherwise leave the targets half updated.
        """
        pairs = list(self.pairs(trainable_only=trainable_only))
        for p, p_target in pairs:
            if p.shape != p_target.shape:
                raise RuntimeError(
                    f"{type(self).__name__}: an online tensor of shape {list(p.shape)} has a "
                    f"target of shape {list(p_target.shape)}: the online network changed after "
                    f"the loss copied it. Build the loss again from the current network."
                )
        return pairs

    @torch.no_grad()
    def init_(self) -> None:
        """Copy every online network, parameters and buffers, into its target: theta' <- theta."""
        if self.initialized:
            warnings.warn(
                f"{type(self).__name__} was already initialised; copying again.", stacklevel=2
            )
        for p, p_target in self._checked_pairs(trainable_only=False):
            p_target.copy_(p)
        self.initialized = True

    def step(self) -> None:
        """Move the targets towards their networks; call once after each optimiser step."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """The updater's own progress (the target weights live in the loss's state_dict)."""
        return {"initialized": self.initialized}

    def load_state_dict(self, state: dict) -> None:
        initialized = state.get("initialized", self.initialized)
        if not isinstance(initialized, bool):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: 'initialized' must be a bool, got "
                f"{initialized!r}. Pass a dict saved by {type(self).__name__}.state_dict()."
            )
        self.initialized = initialized

    def __repr__(self) -> str:
        names = [name for name, _, _ in self.loss_module.target_network_pairs()]
        return f"{type(self).__name__}(networks={names})"


class SoftUpdate(TargetNetUpdater):
    r"""Polyak averaging of the target networks (Lillicrap et al., 2016, "Continuous control
    with deep reinforcement learning", https://arxiv.org/abs/1509.02971).

    Each ``step()`` applies (TGT-1), :math:`\theta' \leftarrow (1-\tau)\theta' + \tau\theta`,
    to every trainable parameter of every network that has a target.

    Give exactly one of:

    ======  ============  ====================================================
    Symbol  Range         Meaning
    ======  ============  ====================================================
    tau     (0, 1)        how much of the online weights enters per step
                          (DDPG and SAC use 0.005)
    eps     (0, 1)        how much of the old target is kept, ``eps = 1 - tau``
    ======  ============  ====================================================

    Args:
        loss_module: an rlteach loss with at least one target network.
        eps: the decay, TorchRL's name for ``1 - tau``.
        tau: the Polyak coefficient.

    Raises:
        ValueError: both or neither of ``eps`` and ``tau``, or a value outside (0, 1).
    """

    def __init__(
        self,
        loss_module: LossModule,
        *,
        eps: float | None = None,
        tau: float | None = None,
    ) -> None:
        if (eps is None) == (tau is None):
            raise ValueError(
                "SoftUpdate needs exactly one of eps or tau (eps = 1 - tau), got "
                f"eps={eps}, tau={tau}. Typical: SoftUpdate(loss, tau=0.005)."
            )
        if eps is not None:
            check_range("eps", eps, 0.0, 1.0, low_open=True, high_open=True)
            tau = 1.0 - eps
        else:
            check_range("tau", tau, 0.0, 1.0, low_open=True, high_open=True)
            eps = 1.0 - tau
        if eps < 0.5:
            warnings.warn(
                f"SoftUpdate with eps={eps} keeps less than half of the target per step. eps "
                f"is the share of the OLD target kept; did you mean tau={eps}?",
                stacklevel=2,
            )
        super().__init__(loss_module)
        self.eps = eps
        self.tau = tau

    @torch.no_grad()
    def step(self) -> None:
        """Apply (TGT-1) once to every trainable parameter of every target network."""
        for p, p_target in self._checked_pairs(trainable_only=True):
            # (TGT-1) theta' <- (1 - tau) theta' + tau theta, in place
            p_target.mul_(1.0 - self.tau).add_(p, alpha=self.tau)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, tau={self.tau})"


class HardUpdate(TargetNetUpdater):
    r"""Periodic copy of the networks into their targets (Mnih et al., 2015, "Human-level
    control through deep reinforcement learning"; van Hasselt et al., 2016, "Deep
    Reinforcement Learning with Double Q-learning", https://arxiv.org/abs/1509.06461).

    ``step()`` counts calls and applies (TGT-2), :math:`\theta' \leftarrow \theta`, on every
    ``value_network_update_interval``-th call, as in the DQN paper's "every C steps reset
    :math:`\hat Q = Q`": with interval 3 the copies happen on calls 3, 6, 9, ...
    A copy is due once the counter *reaches or passes* the period, so the schedule stays right
    after ``load_state_dict`` with a larger counter or when the interval is lowered mid-run.

    .. note:: TorchRL 0.14 copies one call later: its counter runs 0, 1, ..., N and copies
       when it *equals* N, so its period is N + 1 calls (calls 4, 8, 12, ... for N = 3).
       ``count_like_torchrl=True`` reproduces that exactly.

    Args:
        loss_module: an rlteach loss with at least one target network.
        value_network_update_interval: N, an integer >= 1 (default 1000).
        count_like_torchrl: use TorchRL's period of N + 1 calls (default ``False``).

    Raises:
        ValueError: an interval that is not an integer >= 1.
    """

    def __init__(
        self,
        loss_module: LossModule,
        *,
        value_network_update_interval: int = 1000,
        count_like_torchrl: bool = False,
    ) -> None:
        interval = value_network_update_interval
        if isinstance(interval, float) and math.isfinite(interval) and interval.is_integer():
            interval = int(interval)
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(
                f"value_network_update_interval must be an integer >= 1 (the number of step() "
                f"calls between copies), got {value_network_update_interval!r}."
            )
        super().__init__(loss_module)
        self.value_network_update_interval = interval
        self.count_like_torchrl = count_like_torchrl
        self.counter = 0  # step() calls since the last copy

    @torch.no_grad()
    def step(self) -> None:
        """Count this call; on every N-th (TorchRL: (N+1)-th) call copy the networks over."""
        period = self.value_network_update_interval + (1 if self.count_like_torchrl else 0)
        counter = self.counter + 1
        if counter >= period:  # ">=": a loaded counter or a lowered interval may have passed it
            for p, p_target in self._checked_pairs(trainable_only=True):
                p_target.copy_(p)  # (TGT-2) theta' <- theta
            counter = 0
        self.counter = counter  # counted only once the copy (if any) has succeeded

    def state_dict(self) -> dict:
        return {**super().state_dict(), "counter": self.counter}

    def load_state_dict(self, state: dict) -> None:
        counter = state.get("counter", self.counter)
        if isinstance(counter, bool) or not isinstance(counter, int) or counter < 0:
            raise ValueError(
                f"HardUpdate.load_state_dict: 'counter' must be an integer >= 0 (step() calls "
                f"since the last copy), got {counter!r}. Pass a dict saved by "
                f"HardUpdate.state_dict()."
            )
        super().load_state_dict(state)  # checks 'initialized' before anything is set
        self.counter = counter

    def __repr__(self) -> str:
        return (
            f"{super().__repr__()[:-1]}, interval={self.value_network_update_interval}, "
            f"counter={self.counter})"
        )
