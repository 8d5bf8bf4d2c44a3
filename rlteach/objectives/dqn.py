r"""The DQN loss, mirroring TorchRL 0.14's ``DQNLoss``; C51 is in :mod:`rlteach.objectives.c51`.

DQN (Mnih et al., 2015, "Human-level control through deep reinforcement learning") regresses
Q(s, a) on a bootstrapped target read from a frozen copy of the network; Double DQN (van Hasselt
et al., 2016) picks the next action with the online network and evaluates it with the target
one.

=====  ======================================================================================
Tag    Equation
=====  ======================================================================================
DQN-1  Q(s_t, a_t), the online network's value of the action taken
DQN-2  y_t = r_t + γ (1 - term_t) max_a' Q_θ'(s_{t+1}, a')                (Mnih et al. 2015)
DQN-3  y_t = r_t + γ (1 - term_t) Q_θ'(s_{t+1}, argmax_a' Q_θ(s_{t+1}, a'))  (van Hasselt 2016)
DQN-4  loss = mean_t dist(Q(s_t, a_t), y_t), dist in {l2, l1, smooth_l1}
DQN-5  multi-discrete a = (a^1, ..., a^K): Q(s, a) = sum_k Q^k(s, a^k), the greedy a' and
       max_a' Q(s', a') taken block by block (TorchRL's "mult_one_hot")
=====  ======================================================================================

``term_t`` is ``("next", "terminated")``: only a true end of the task stops the bootstrap. A
time-limit truncation (``("next", "truncated")``, which also sets ``done``) still bootstraps,
because the state after it has a value; reading ``done`` instead would teach the network that
the time limit is a cliff.

Where rlteach departs from TorchRL (and says so)
------------------------------------------------
* An action out of range, or a one-hot action that is not one-hot, is refused with an error
  (TorchRL computes on silently). ``double_dqn=True`` without a target network is refused by
  both, rlteach with an explanation.

The mathematics is in :mod:`rlteach.objectives.functional` (:func:`action_value_of`,
:func:`dqn_next_value`); this module wraps it with TorchRL's API.
"""

from __future__ import annotations

import dataclasses

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import nn

from rlteach.modules.core import make_qvalue_actor
from rlteach.modules.qvalue import check_action_space
from rlteach.objectives._discrete import DOUBLE_NEEDS_TARGET, action_index, infer_action_space
from rlteach.objectives.c51 import DistributionalDQNLoss, project_distribution
from rlteach.objectives.common import LossModule
from rlteach.objectives.functional import action_value_of, dqn_next_value
from rlteach.objectives.utils import distance_loss
from rlteach.value import ValueEstimators

# C51 lives in rlteach.objectives.c51; re-exported here, where it used to be.
__all__ = ["DQNLoss", "DistributionalDQNLoss", "project_distribution"]


class DQNLoss(LossModule):
    r"""The DQN loss (Mnih et al., 2015), with the Double DQN target (van Hasselt et al., 2016).

    ``value_network`` is a greedy Q actor (:func:`rlteach.modules.make_qvalue_actor`, or
    TorchRL's ``QValueActor``), or a plain ``nn.Module`` mapping the observation to Q(s, ·),
    which is wrapped in one reading ``"observation"`` (as TorchRL does): it reads the
    observation and writes ``"action_value"``
    [*B, n_actions], the greedy ``"action"`` and ``"chosen_action_value"`` [*B, 1].

    ==============  ==============  ==================================================
    symbol          shape           meaning
    ==============  ==============  ==================================================
    Q(s_t, ·)       [*B, n_act]     online action values (key ``action_value``)
    a_t             [*B] / one-hot  the action taken (key ``action``)
    r_t, term_t     [*B, 1]         ("next", "reward"), ("next", "terminated")
    y_t             [*B]            the regression target, DQN-2 or DQN-3 (no gradient)
    ``td_error``    [*B, 1]         (Q(s_t, a_t) - y_t)^2, written into the input batch for
                                    prioritized replay (TorchRL's ``priority`` key)
    ==============  ==============  ==================================================

    The keyword arguments have TorchRL 0.14's names and defaults.

    Keyword Args:
        loss_function: ``"l2"`` (default), ``"l1"`` or ``"smooth_l1"`` (the Huber loss of the
            DQN paper).
        delay_value: keep a target network θ' (default ``True``); update it with
            ``rlteach.updaters.HardUpdate`` or ``SoftUpdate``. With ``False`` the target is
            computed from the online network, without gradient.
        double_dqn: use DQN-3 instead of DQN-2 (needs ``delay_value=True``).
        gamma: not accepted here (as in TorchRL): set it with
            ``loss.make_value_estimator(gamma=...)`` (default 0.99).
        action_space: ``"one-hot"``, ``"categorical"`` or ``"mult_one_hot"`` (multi-discrete:
            one one-hot block per action dimension, concatenated, as TorchRL's ``MultiOneHot``;
            Q(s, a) is then the sum of the blocks' values, (DQN-5)). ``None``: the network's
            ``action_space`` attribute if it has one, else read from the action's shape at each
            call (TorchRL falls back to one-hot with a warning instead).
        priority_key: deprecated in TorchRL; use ``set_keys(priority=...)``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        use_prioritized_weights: ``"auto"`` (default) weighs the per-sample losses by
            ``"priority_weight"`` when the batch has it; ``True`` / ``False`` force it.

    Output: ``TensorDict(loss=...)``, the only entry TorchRL returns for this loss (it logs
    nothing else); the target is built by the value estimator (TD(0) by default; TD(1) and
    TD(λ) are supported as in TorchRL).

    Raises:
        ValueError: ``double_dqn=True`` with ``delay_value=False``, an unknown
            ``loss_function`` / ``reduction`` / ``action_space``, a ``gamma`` argument, or at
            call time an action out of range.
    """

    @dataclasses.dataclass
    class _AcceptedKeys:
        """Every key DQNLoss reads or writes (TorchRL's names).

        Attributes:
            advantage, value_target: used by the value estimator.
            value: the estimator's value key, the greedy ``"chosen_action_value"``.
            action_value: Q(s, ·) written by the network.
            action: the action taken.
            priority: where the per-sample TD error is written (``"td_error"``).
            reward, done, terminated: read under ``"next"``.
            priority_weight: importance weights of prioritized replay.
        """

        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "chosen_action_value"
        action_value: NestedKey = "action_value"
        action: NestedKey = "action"
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        priority_weight: NestedKey = "priority_weight"

    default_value_estimator = ValueEstimators.TD0
    supported_value_estimators = (
        ValueEstimators.TD0,
        ValueEstimators.TD1,
        ValueEstimators.TDLambda,
    )
    out_keys = ("loss",)

    _schedulable_buffers = frozenset({"gamma"})

    def __init__(
        self,
        value_network: nn.Module,
        *,
        loss_function: str | None = "l2",
        delay_value: bool = True,
        double_dqn: bool = False,
        gamma: float | None = None,
        action_space: str | None = None,
        priority_key: NestedKey | None = None,
        reduction: str | None = None,
        use_prioritized_weights: str | bool = "auto",
    ) -> None:
        owner = type(self).__name__
        # every check first: a refused configuration builds nothing
        if double_dqn and not delay_value:
            raise ValueError(DOUBLE_NEEDS_TARGET.format(owner=owner))
        self._refuse_gamma(gamma, estimator="td0")
        reduction = self._check_options(reduction, loss_function=loss_function)
        self._check_use_prioritized_weights(use_prioritized_weights)
        if action_space is None:
            action_space = getattr(value_network, "action_space", None)
            if action_space is not None and not isinstance(action_space, str):
                action_space = None  # a TorchRL spec object: fall back to inferring
        if isinstance(action_space, str) and action_space.replace("-", "_") == "mult_one_hot":
            action_space = "mult_one_hot"  # TorchRL's name for a multi-discrete one-hot action
        elif action_space is not None:
            action_space = check_action_space(owner, action_space)
        if isinstance(value_network, nn.Module) and not hasattr(value_network, "in_keys"):
            # a plain Q-network, observation -> Q(s, ·): TorchRL wraps it in a QValueActor
            # reading "observation"; rlteach in the same layout
            if action_space == "mult_one_hot":
                raise ValueError(
                    f"{owner}: a plain nn.Module value network is wrapped in a greedy actor over "
                    f"one action; for action_space='mult_one_hot' pass a TensorDict actor whose "
                    f"greedy head knows the blocks (TorchRL's QValueModule(var_nums=...))."
                )
            value_network = make_qvalue_actor(
                TensorDictModule(value_network, ["observation"], ["action_value"]),
                action_space or "categorical",
            )
        if not isinstance(value_network, TensorDictModule) and not hasattr(
            value_network, "in_keys"
        ):
            raise TypeError(
                f"{owner}: value_network must be a TensorDict module reading the observation "
                f"and writing 'action_value' and 'chosen_action_value' (e.g. "
                f"rlteach.modules.make_qvalue_actor(make_qvalue_network(...))), got "
                f"{type(value_network).__name__}."
            )

        super().__init__()
        self.delay_value = delay_value
        self.double_dqn = double_dqn
        self.loss_function = loss_function
        self.action_space = action_space
        self.reduction = reduction
        self.use_prioritized_weights = use_prioritized_weights
        self._register_network("value_network", value_network, create_target=delay_value)
        self._set_deprecated_priority_key(priority_key)

    # ------------------------------------------------------------------ keys, estimator

    @property
    def in_keys(self) -> list[NestedKey]:
        """Action, next reward / done / terminated, and the network's inputs now and next."""
        keys = self.tensor_keys
        net_in = list(self.value_network.in_keys)
        wanted = [
            keys.action,
            ("next", keys.reward),
            ("next", keys.done),
            ("next", keys.terminated),
            *net_in,
            *[("next", k) for k in net_in],
        ]
        out: list[NestedKey] = []
        for key in wanted:
            if key not in out:
                out.append(key)
        return out

    def _estimator_networks(self, kind):
        # The estimator bootstraps from the target network when there is one (TorchRL swaps
        # the target parameters into the value network for this call).
        net = self.target_value_network if self.delay_value else self.value_network
        return {"value_network": net}

    # ------------------------------------------------------------------ the loss

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Compute DQN-1 ... DQN-4 on a batch from the replay buffer; write ``td_error`` into it."""
        keys = self.tensor_keys
        action, weights = self._check_batch(tensordict)
        net = self.value_network
        target_net = self.target_value_network if self.delay_value else net

        # (DQN-1) Q(s_t, a_t) from the online network (a copy of the batch: inputs stay as given)
        q_all = net(tensordict.select(*net.in_keys, strict=False).copy()).get(keys.action_value)
        if self.action_space == "mult_one_hot":  # (DQN-5) one value per block, summed
            q_taken = (q_all * self._multi_one_hot(action, q_all)).sum(-1)
        else:
            q_taken = action_value_of(q_all, self._action_index(action, q_all))  # [*B]

        # (DQN-2) / (DQN-3) the value of the next state, never differentiated
        with torch.no_grad():
            next_in = tensordict.get("next").select(*net.in_keys, strict=False)
            if self.double_dqn and self.action_space == "mult_one_hot":  # (DQN-3) with (DQN-5)
                # the online actor's greedy blocks, evaluated by θ' (as TorchRL)
                next_action = net(next_in.copy()).get(keys.action).to(q_all.dtype)
                next_q_target = target_net(next_in.copy()).get(keys.action_value)
                next_value = (next_q_target * next_action).sum(-1, keepdim=True)
            elif self.double_dqn:  # (DQN-3) choose a' with θ, evaluate it with θ'
                next_q_online = net(next_in.copy()).get(keys.action_value)
                next_q_target = target_net(next_in.copy()).get(keys.action_value)
                next_value = dqn_next_value(next_q_target, next_q_online)  # [*B, 1]
            else:  # (DQN-2) max_a' Q_θ'(s', a'), the greedy actor's chosen_action_value
                next_value = target_net(next_in.copy()).get(keys.value)  # [*B, 1]

        # y_t = r_t + γ (1 - term_t) next_value for TD(0); TD(1), TD(λ) chain along time
        target = self.value_estimator.value_estimate(tensordict, next_value=next_value)
        target = target.squeeze(-1).detach()

        # (DQN-4) the regression, and the TD error prioritized replay sorts by
        loss = distance_loss(q_taken, target, self.loss_function)
        out = TensorDict(loss=self._reduce_loss(loss, weights=weights))
        # written into the caller's batch only now, with every check passed and the loss formed
        tensordict.set(keys.priority, (q_taken - target).detach().pow(2).unsqueeze(-1))
        return out

    def _check_batch(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every check of the batch before any network runs; the action and the weights of
        prioritized replay (or None)."""
        inputs = self._read_inputs(tensordict, "action", next_names=("reward", "terminated"))
        self._check_network_inputs(tensordict, self.value_network)
        return inputs["action"], self._prioritized_weights(tensordict)

    def _multi_one_hot(self, action: torch.Tensor, q_all: torch.Tensor) -> torch.Tensor:
        """The taken multi-discrete action as a float 0/1 mask [*B, n_total], checked."""
        owner = type(self).__name__
        if action.shape != q_all.shape:
            raise ValueError(
                f"{owner}: with action_space='mult_one_hot' the action must have the shape of "
                f"the action values, {list(q_all.shape)} (one one-hot block per action "
                f"dimension, concatenated), got {list(action.shape)}."
            )
        if not bool(((action == 0) | (action == 1)).all()):
            raise ValueError(f"{owner}: a multi-one-hot action holds only zeros and ones.")
        return action.to(q_all.dtype)

    def _action_index(self, action: torch.Tensor, q_all: torch.Tensor) -> torch.Tensor:
        """The taken action as an index [*B], refused when out of range or not one-hot."""
        batch, n_actions = q_all.shape[:-1], q_all.shape[-1]
        action_space = self.action_space or infer_action_space(action, batch, n_actions)
        return action_index(type(self).__name__, action, action_space, n_actions, batch)
