r"""Deep deterministic policy gradient (Lillicrap et al., 2016, "Continuous control with deep
reinforcement learning", https://arxiv.org/abs/1509.02971).

A deterministic actor :math:`\mu_\phi(s)` and a critic :math:`Q_\theta(s, a)`, with target copies
:math:`\mu'` and :math:`Q'`. On a replay batch :math:`(s, a, r, s', \text{term})`:

.. math::

    y = r + \gamma\,(1 - \text{term})\,Q'\big(s', \mu'(s')\big)              \qquad \text{(DDPG-1)}

    L_Q = \ell\big(Q_\theta(s, a),\, y\big)                                  \qquad \text{(DDPG-2)}

    L_\mu = -Q_\theta\big(s, \mu_\phi(s)\big)                                \qquad \text{(DDPG-3)}

each averaged over the batch. (DDPG-1)-(DDPG-2) are the critic update of the paper's Algorithm
1; the gradient of (DDPG-3) is the deterministic policy gradient
:math:`\nabla_a Q(s, a)|_{a=\mu(s)}\,\nabla_\phi \mu_\phi(s)` (Silver et al., 2014): the critic is a
differentiable stand-in for the return, and the actor climbs it. The critic's parameters are
detached in (DDPG-3), so the actor loss never trains the critic.

As in TorchRL 0.14: ``loss_function="l2"`` (the paper's squared error), ``delay_actor=False`` (no
target actor: mu' is the current actor) and ``delay_value=True``.
"""

from __future__ import annotations

import dataclasses

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch.func import functional_call

from rlteach.objectives._actions import deterministic_action
from rlteach.objectives.common import LossModule, _next
from rlteach.objectives.utils import distance_loss
from rlteach.value import ValueEstimators

__all__ = ["DDPGLoss"]


class DDPGLoss(LossModule):
    """The DDPG actor and critic losses.

    Args:
        actor_network: mu(s), a ``TensorDictModule`` writing ``"action"`` (e.g.
            ``rlteach.modules.make_deterministic_actor``).
        value_network: Q(s, a), writing ``"state_action_value"`` [*B, 1] (e.g.
            ``make_state_action_value_network``). Trained in place (not copied).

    The keyword arguments are TorchRL 0.14's, with the same defaults.

    Keyword Args:
        loss_function: ``"l2"`` (default), ``"l1"`` or ``"smooth_l1"``.
        delay_actor: keep a target actor mu' (False).
        delay_value: keep a target critic Q' (True).
        separate_losses: parameters the critic shares with the actor (a common trunk) are trained
            by the actor loss only: the critic loss sees them detached (False: both train them).
            TorchRL's option, with its meaning.
        gamma: refused, as in TorchRL: use ``make_value_estimator(gamma=...)``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Output keys (TorchRL's): ``loss_actor``, ``loss_value``, ``pred_value`` [*B],
    ``target_value`` [*B], ``pred_value_max``, ``target_value_max``, ``td_error`` [*B] (the squared
    TD error, also written into the input batch under ``"td_error"``). Reads no random numbers.
    """

    @dataclasses.dataclass
    class _AcceptedKeys:
        """Keys read or written; rename with ``set_keys``.

        Attributes:
            state_action_value: Q(s, a), written by the critic.
            priority: where the TD error is written.
            reward, done, terminated: read under ``"next"``.
        """

        state_action_value: NestedKey = "state_action_value"
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
    out_keys = (
        "loss_actor",
        "loss_value",
        "pred_value",
        "target_value",
        "pred_value_max",
        "target_value_max",
    )

    def __init__(
        self,
        actor_network: TensorDictModule,
        value_network: TensorDictModule,
        *,
        loss_function: str = "l2",
        delay_actor: bool = False,
        delay_value: bool = True,
        gamma: float | None = None,
        separate_losses: bool = False,
        reduction: str | None = None,
    ) -> None:
        owner = type(self).__name__
        self._refuse_gamma(gamma, estimator="td0")
        reduction = self._check_options(reduction, loss_function=loss_function)
        if not isinstance(value_network, TensorDictModule):
            raise TypeError(
                f"{owner}: value_network must be a tensordict.nn.TensorDictModule writing "
                f"'state_action_value', got {type(value_network).__name__}."
            )
        super().__init__()
        self.loss_function, self.reduction = loss_function, reduction
        self.delay_actor, self.delay_value = delay_actor, delay_value
        # separate_losses: the critic's names of the parameters it shares with the actor, which
        # the critic loss reads detached (TorchRL's compare_against)
        actor_ids = {id(p) for p in actor_network.parameters()} if separate_losses else set()
        self._frozen_in_critic = frozenset(
            name for name, p in value_network.module.named_parameters() if id(p) in actor_ids
        )
        self._register_network("actor_network", actor_network, create_target=delay_actor)
        self._register_network("value_network", value_network, create_target=delay_value)

    @property
    def in_keys(self) -> list[NestedKey]:
        actor_keys = list(self.actor_network.in_keys)
        value_keys = list(self.value_network.in_keys)
        flags = [_next(getattr(self.tensor_keys, k)) for k in ("reward", "done", "terminated")]
        keys = [*flags, *actor_keys, *[_next(k) for k in actor_keys], *value_keys]
        return list(dict.fromkeys([*keys, *[_next(k) for k in value_keys]]))

    def _estimator_networks(self, kind):
        return {"value_network": None}  # the loss passes Q'(s', mu'(s')) to value_estimate

    def _target(self, name: str):
        target = getattr(self, f"target_{name}", None)
        return getattr(self, name) if target is None else target

    def _q(self, critic: TensorDictModule, td: TensorDictBase, action=None, detach=False):
        """Q(s, a) [*B] from ``td`` (``action`` replaces the stored one); optionally detached params.

        Parameters shared with the actor under ``separate_losses`` are always read detached.
        """
        inputs = [
            action if (action is not None and key == "action") else td.get(key)
            for key in critic.in_keys
        ]
        if detach or self._frozen_in_critic:
            params = {
                name: p.detach()
                for name, p in critic.module.named_parameters()
                if detach or name in self._frozen_in_critic
            }
            return functional_call(critic.module, params, tuple(inputs)).squeeze(-1)
        return critic.module(*inputs).squeeze(-1)

    def _act(self, actor: TensorDictModule, td: TensorDictBase) -> torch.Tensor:
        return deterministic_action(actor, td)

    def loss_value(self, td: TensorDictBase) -> tuple[torch.Tensor, dict]:
        pred = self._q(self.value_network, td)
        with torch.no_grad():
            # (DDPG-1) y = r + gamma (1 - term) Q'(s', mu'(s'))
            next_td = td.get("next")
            next_action = self._act(self._target("actor_network"), next_td)
            next_q = self._q(self._target("value_network"), next_td, next_action)
            target = self.value_estimator.value_estimate(td, next_value=next_q.unsqueeze(-1))
            target = target.squeeze(-1)
        loss = distance_loss(pred, target, self.loss_function)  # (DDPG-2)
        td_error = (pred - target).detach().pow(2)  # forward writes it into the batch
        metadata = {
            "td_error": td_error,
            "pred_value": pred.detach(),
            "target_value": target,
            "target_value_max": target.max(),
            "pred_value_max": pred.detach().max(),
        }
        return self._reduce_loss(loss), metadata

    def loss_actor(self, td: TensorDictBase) -> torch.Tensor:
        # (DDPG-3) climb the critic: gradient through a = mu(s), critic parameters detached
        action = self._act(self.actor_network, td)
        return self._reduce_loss(-self._q(self.value_network, td, action, detach=True))

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """The DDPG losses of a replay batch (critic first, then actor, as TorchRL)."""
        self._read_inputs(tensordict, next_names=("reward", "done", "terminated"))
        self._check_network_inputs(tensordict, self.actor_network)  # observations, now and next
        self._check_network_inputs(tensordict, self.value_network, next_step=False)  # + action
        loss_value, metadata = self.loss_value(tensordict)
        loss_actor = self.loss_actor(tensordict)
        # written into the caller's batch only once both losses have been formed
        tensordict.set(self.tensor_keys.priority, metadata["td_error"])
        return TensorDict({"loss_actor": loss_actor, "loss_value": loss_value, **metadata}, [])
