r"""QMixerLoss: Q-learning on a mixture of per-agent Q-values (VDN and QMIX).

Rashid et al. (2018), "QMIX: Monotonic Value Function Factorisation for Deep Multi-Agent
Reinforcement Learning", Sec. 4; Sunehag et al. (2018), "Value-Decomposition Networks for
Cooperative Multi-Agent Learning".

Each agent a has its own Q-network Q_a(τ_a, ·) over its own observation; a *mixer* (a sum for
VDN, a state-conditioned monotonic network for QMIX, see :mod:`rlteach.modules.multiagent`)
combines the chosen Q-values into the team's Q_tot, and Q_tot is trained by ordinary DQN
regression on the team reward:

.. math::
    Q_{tot}(\tau, u, s) = f_{mix}\big(Q_1(\tau_1, u_1), \dots, Q_n(\tau_n, u_n);\ s\big)
    \tag{QMIX-L1}

.. math::
    y = r + \gamma\,(1 - \mathrm{term})\, f^-_{mix}\big(\max_{u'_1} Q^-_1(\tau'_1, u'_1), \dots,
    \max_{u'_n} Q^-_n(\tau'_n, u'_n);\ s'\big)  \tag{QMIX-L2}

.. math::
    \mathcal{L} = \frac{1}{B} \sum_{b} \ell\big(Q_{tot}(\tau_b, u_b, s_b),\ y_b\big)  \tag{QMIX-L3}

The minus signs mark the *target* networks (copies updated by ``SoftUpdate`` / ``HardUpdate``
when ``delay_value=True``; the networks themselves, without gradient, otherwise). Because the
mixer is monotonic, the max in (QMIX-L2) can be taken agent by agent: the joint greedy action of
Q_tot is the tuple of the agents' greedy actions (Rashid et al. 2018, eq. 4). That is why the
target runs the local networks' own greedy head and mixes their max values.

Keys read and written (rename with ``set_keys``):

=====================================  ===============  ====================================
key (default)                          shape            role
=====================================  ===============  ====================================
``("agents", "action")``               [*B, n] or       u_a, index (categorical) or one-hot
                                       [*B, n, A]
``("agents", "action_value")``         [*B, n, A]       Q_a(τ_a, ·), written by the local net
``("agents", "chosen_action_value")``  [*B, n, 1]       Q_a(τ_a, u_a): the mixer's input
``"chosen_action_value"``              [*B, 1]          Q_tot: the mixer's output
``("next", "reward")``                 [*B, 1]          team reward r
``("next", "done" / "terminated")``    [*B, 1]          shared flags
``"td_error"``                         [*B, 1]          written: (Q_tot − y)², detached
=====================================  ===============  ====================================

Like TorchRL 0.14.1's ``torchrl.objectives.multiagent.QMixerLoss``: the same arguments (with
``delay_value=True`` by default), keys and single output ``"loss"`` (a mean; there is no
``reduction`` argument), the default TD(0) estimator with γ = 0.99 (change it with
``make_value_estimator("td0", gamma=...)``), and ``"td_error"`` written into the input batch
for a prioritised buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, unravel_key
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from tensordict.utils import NestedKey
from torch import nn

from rlteach._checks import check_choice, get_key, key_str
from rlteach.objectives.common import LossModule
from rlteach.objectives.utils import distance_loss
from rlteach.value import ValueEstimators

__all__ = ["QMixerLoss"]

#: How actions are stored: an index per agent, or a one-hot vector per agent.
ACTION_SPACES = ("categorical", "one-hot")


def _action_space_of(network: nn.Module) -> str | None:
    """The action layout a Q-value module declares: its own ``action_space`` (TorchRL's
    ``QValueActor``, rlteach's ``make_qvalue_actor``), else that of the first sub-module that has
    one (a ``QValueModule`` at the end of a ``TensorDictSequential``); ``None`` if none does."""
    for module in network.modules():
        action_space = getattr(module, "action_space", None)
        if isinstance(action_space, str):
            return action_space
    return None


class QMixerLoss(LossModule):
    """DQN on the mixed team value Q_tot (QMIX-L1)–(QMIX-L3); see the module docstring.

    Args:
        local_value_network: a ``tensordict.nn`` module reading each agent's observation and
            writing ``("agents", "action_value")`` [*B, n, A], ``("agents", "action")`` (greedy)
            and ``("agents", "chosen_action_value")`` = max_u Q_a [*B, n, 1], e.g.
            ``make_qvalue_actor`` applied to a Q-network over ``("agents", "observation")``
            (or TorchRL's ``QValueActor``). The target (QMIX-L2) uses its greedy output.
        mixer_network: a ``TensorDictModule`` wrapping :class:`~rlteach.modules.VDNMixer` or
            :class:`~rlteach.modules.QMixer`, reading ``("agents", "chosen_action_value")``
            (and the state) and writing ``"chosen_action_value"``. A bare ``nn.Module`` is
            wrapped with those two keys (so it gets no state).

    Keyword Args:
        loss_function: ``"l2"`` (default), ``"l1"`` or ``"smooth_l1"``.
        delay_value: keep frozen copies of both networks for the target (default ``True``).
        gamma: not accepted here (TorchRL's deprecation): use ``make_value_estimator``.
        action_space: ``"categorical"`` (action indices) or ``"one-hot"``; when ``None``, read
            from the Q-value module: ``local_value_network.action_space``, or that of its greedy
            head (a ``QValueModule`` inside a ``TensorDictSequential``).
        priority_key: the key where ``td_error`` is written (prefer ``set_keys(priority=...)``).
    """

    _strict_input_shapes = False  # _check_inputs checks the team reward with its own message

    @dataclass
    class _AcceptedKeys:
        """Every key the loss reads or writes; rename any with ``set_keys``."""

        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        local_value: NestedKey = ("agents", "chosen_action_value")
        global_value: NestedKey = "chosen_action_value"
        action_value: NestedKey = ("agents", "action_value")
        action: NestedKey = ("agents", "action")
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_value_estimator = ValueEstimators.TD0
    supported_value_estimators = (
        ValueEstimators.TD0,
        ValueEstimators.TD1,
        ValueEstimators.TDLambda,
    )
    out_keys = ("loss",)

    def __init__(
        self,
        local_value_network: TensorDictModuleBase,
        mixer_network: TensorDictModuleBase | nn.Module,
        *,
        loss_function: str = "l2",
        delay_value: bool = True,
        gamma: float | None = None,
        action_space: str | None = None,
        priority_key: NestedKey | None = None,
    ) -> None:
        # ---- every check first: a refused call changes nothing
        self._refuse_gamma(gamma, estimator="td0")
        self._check_options(None, loss_function=loss_function)
        if not isinstance(local_value_network, TensorDictModuleBase):
            raise TypeError(
                f"QMixerLoss: local_value_network must be a tensordict.nn module writing "
                f"('agents', 'action_value') and ('agents', 'chosen_action_value'), got "
                f"{type(local_value_network).__name__}. Wrap a Q-network with "
                f"rlteach.modules.make_qvalue_actor."
            )
        if action_space is None:
            action_space = _action_space_of(local_value_network)
        if action_space is None:
            raise ValueError(
                "QMixerLoss needs to know how actions are stored: pass "
                "action_space='categorical' (one index per agent) or 'one-hot'."
            )
        action_space = "one-hot" if action_space == "one_hot" else action_space
        check_choice("action_space", action_space, ACTION_SPACES)
        keys = self._AcceptedKeys()
        if not isinstance(mixer_network, TensorDictModuleBase):
            mixer_network = TensorDictModule(
                mixer_network, in_keys=[keys.local_value], out_keys=[keys.global_value]
            )

        super().__init__()
        if priority_key is not None:
            self.set_keys(priority=priority_key)
        self.delay_value = delay_value
        self.loss_function = loss_function
        self.action_space = action_space
        self._register_network(
            "local_value_network", local_value_network, create_target=delay_value
        )
        self._register_network("mixer_network", mixer_network, create_target=delay_value)

    # ------------------------------------------------------------ networks and keys

    def _global_value_network(self, target: bool) -> TensorDictSequential:
        """Local Q-networks then the mixer: observations -> Q_tot. Not stored in the module tree
        (its parts already are), so parameters and state_dict entries are not duplicated."""
        local, mixer = self.local_value_network, self.mixer_network
        if target and self.delay_value:
            local, mixer = self.target_local_value_network, self.target_mixer_network
        return TensorDictSequential(local, mixer)

    def _estimator_networks(self, kind: ValueEstimators) -> dict:
        # (QMIX-L2): the target runs the *target* networks' greedy Q-values through the mixer.
        return {"value_network": self._global_value_network(target=True)}

    def _value_estimator_keys(self, keys) -> dict[str, NestedKey]:
        names = super()._value_estimator_keys(keys)
        names["value"] = keys.global_value  # the estimator bootstraps from Q_tot
        return names

    @property
    def in_keys(self) -> list[NestedKey]:
        network_in = self._global_value_network(target=False).in_keys
        keys = [
            self.tensor_keys.action,
            *(
                unravel_key(("next", getattr(self.tensor_keys, n)))
                for n in ("reward", "done", "terminated")
            ),
            *network_in,
            *(unravel_key(("next", k)) for k in network_in),
        ]
        return list(dict.fromkeys(keys))

    # ------------------------------------------------------------------ forward

    def _check_inputs(self, td: TensorDictBase) -> torch.Tensor:
        """The action, every network input (now and next) and the flags, before any work."""
        owner = "QMixerLoss"
        inputs = self._read_inputs(td, "action", next_names=("reward", "done"))
        for key in self._global_value_network(target=False).in_keys:
            if key in self._global_value_network(target=False).out_keys:
                continue
            get_key(td, key, owner=owner)
            get_key(td, unravel_key(("next", key)), owner=owner)
        reward = inputs["next_reward"]
        if reward.shape != (*td.batch_size, 1):
            raise ValueError(
                f"QMixerLoss trains the team value Q_tot [*B, 1], so the reward "
                f"{key_str(unravel_key(('next', self.tensor_keys.reward)))} must be one team "
                f"reward of shape {[*td.batch_size, 1]}, got {list(reward.shape)}. Sum or "
                f"average per-agent rewards first."
            )
        return inputs["action"]

    def _chosen_local_values(self, action_value: torch.Tensor, action: torch.Tensor):
        """Q_a(τ_a, u_a) [*B, n, 1] of the actions taken (not the greedy ones)."""
        if self.action_space == "categorical":
            n_actions = action_value.shape[-1]
            if action.is_floating_point() or action.dtype == torch.bool:
                raise ValueError(
                    f"QMixerLoss: the action {key_str(self.tensor_keys.action)} holds indices "
                    f"and must be an integer tensor, got {action.dtype} (.long())."
                )
            if action.numel() and (action.min() < 0 or action.max() >= n_actions):
                raise ValueError(
                    f"QMixerLoss: the action {key_str(self.tensor_keys.action)} must lie in "
                    f"[0, {n_actions - 1}] (the agents have {n_actions} action values), got "
                    f"values from {int(action.min())} to {int(action.max())}."
                )
            if action.shape != action_value.shape:
                action = action.unsqueeze(-1)  # an index per agent, [*B, n] -> [*B, n, 1]
            if action.shape[:-1] != action_value.shape[:-1]:
                raise ValueError(
                    f"QMixerLoss: the action {key_str(self.tensor_keys.action)} has shape "
                    f"{list(action.shape)} but the Q-values are {list(action_value.shape)} "
                    f"([*B, n_agents, n_actions]); do the two come from the same agent group?"
                )
            return action_value.gather(-1, action.long())
        if action.shape != action_value.shape:
            raise ValueError(
                f"QMixerLoss: a one-hot action must have the Q-values' shape "
                f"{list(action_value.shape)}, got {list(action.shape)}."
            )
        return (action_value * action.to(action_value.dtype)).sum(-1, keepdim=True)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """(QMIX-L1)–(QMIX-L3); also writes ``td_error`` into ``tensordict``."""
        action = self._check_inputs(tensordict)
        td = tensordict.clone(False)  # the networks write into a shallow copy
        self.local_value_network(td)
        action_value = td.get(self.tensor_keys.action_value)  # [*B, n, A]
        td.set(self.tensor_keys.local_value, self._chosen_local_values(action_value, action))
        self.mixer_network(td)  # (QMIX-L1) Q_tot [*B, 1]
        q_tot = td.get(self.tensor_keys.global_value).squeeze(-1)
        target = self.value_estimator.value_estimate(td).squeeze(-1)  # (QMIX-L2)
        with torch.no_grad():
            priority = (q_tot - target).pow(2).unsqueeze(-1)
        tensordict.set(self.tensor_keys.priority, priority)
        loss = distance_loss(q_tot, target, self.loss_function).mean()  # (QMIX-L3)
        return TensorDict({"loss": loss}, batch_size=[])
