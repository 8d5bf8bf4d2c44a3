r"""Twin delayed DDPG, TD3 (Fujimoto, van Hoof & Meger, 2018, "Addressing Function Approximation
Error in Actor-Critic Methods", https://arxiv.org/abs/1802.09477).

DDPG with three fixes against the critic's overestimation. With critics :math:`Q_1 \dots Q_N`
(N = 2), target copies :math:`Q'_i` and :math:`\mu'`, on a replay batch
:math:`(s, a, r, s', \text{term})`:

.. math::

    \epsilon = \mathrm{clip}\big(\sigma\,\xi,\ -c,\ c\big),\quad \xi \sim \mathcal N(0, I)
    \qquad a' = \mathrm{clip}\big(\mu'(s') + \epsilon,\ a_{low},\ a_{high}\big)   \qquad \text{(TD3-1)}

    y = r + \gamma\,(1 - \text{term})\,\min_i Q'_i(s', a')                        \qquad \text{(TD3-2)}

    L_Q = \sum_i \ell\big(Q_i(s, a),\, y\big)                                     \qquad \text{(TD3-3)}

    L_\mu = -Q_1\big(s, \mu(s)\big)                                              \qquad \text{(TD3-4)}

(TD3-1) is *target policy smoothing* (paper section 5.3: :math:`\sigma` = ``policy_noise``, c =
``noise_clip``), (TD3-2) *clipped double Q* (section 4.2), (TD3-4) the actor loss on the first critic
only. The third fix, *delayed policy updates* (the actor and the targets move once every
``policy_delay`` = 2 critic updates), is about *when* the losses are used, not what they are, so
it lives in the training loop (``rlteach/recipes/td3.py``), as in TorchRL.

TorchRL's details kept here: the noise has the shape of the stored action and is drawn once per
forward with ``torch.randn_like`` (before any other draw), it is not scaled by the action range,
and the actor loss is computed first. ``clipped_double_q=False`` (rlteach only, for the
chapter's ablation) bootstraps from the first target critic alone, as DDPG does.
"""

from __future__ import annotations

import dataclasses

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey

from rlteach._checks import check_range
from rlteach.modules.ensemble import QValueEnsemble, make_qvalue_ensemble
from rlteach.objectives._actions import (
    check_action_in_bounds,
    deterministic_action,
    read_action_spec,
)
from rlteach.objectives.common import LossModule, _next
from rlteach.objectives.functional import clipped_double_q, td3_target_action
from rlteach.objectives.utils import distance_loss
from rlteach.value import ValueEstimators

__all__ = ["TD3Loss"]


class TD3Loss(LossModule):
    """The TD3 actor and critic losses (the delayed actor update is the recipe's job).

    Args:
        actor_network: mu(s), a ``TensorDictModule`` writing ``"action"``.
        qvalue_network: one Q(s, a) network (copied ``num_qvalue_nets`` times, each copy
            re-initialised), a list of them (weights stacked), or a ``QValueEnsemble``.

    The keyword arguments are TorchRL 0.14's, with the same defaults.

    Keyword Args:
        action_spec: a bounded action spec (TorchRL ``Bounded``, Gymnasium ``Box``); or
        bounds: ``(low, high)``. Exactly one of the two: a' is clipped to these bounds, and stored
            actions outside them are refused.
        num_qvalue_nets: N critics (2; at least 2 for clipped double Q).
        policy_noise: sigma of the target smoothing noise (0.2); 0 turns smoothing off.
        noise_clip: c, the noise is clipped to [-c, c] (0.5).
        loss_function: ``"smooth_l1"`` (default), ``"l2"`` or ``"l1"``.
        delay_actor, delay_qvalue: keep target copies mu' and Q'_i (True, True).
        gamma: refused, as in TorchRL: use ``make_value_estimator(gamma=...)``.
        separate_losses: parameters the critics share with the actor (a common trunk) are
            trained by the actor loss only: the critics read them detached. With one Q-network,
            those parameters are kept in every critic (neither copied nor re-initialised), as
            TorchRL does. False (default): each critic holds re-initialised copies of them.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        deactivate_vmap: accepted for TorchRL code and stored; no effect. TorchRL runs its
            critics with ``torch.vmap`` unless this is set; rlteach never vmaps (a
            ``QValueEnsemble`` runs its members with one batched matrix product per layer, or
            loops over them), so both values give the same numbers.
        clipped_double_q: rlteach only; ``False`` bootstraps from Q'_1 alone (ablation).

    Output keys (TorchRL's): ``loss_actor``, ``loss_qvalue``, ``pred_value`` [N, *B],
    ``state_action_value_actor`` [N, *B], ``next_state_value`` [*B], ``target_value`` [*B]; the
    TD error ``max_i (Q_i - y)^2`` is written into the input batch under ``"td_error"``.
    """

    @dataclasses.dataclass
    class _AcceptedKeys:
        """Keys read or written; rename with ``set_keys``.

        Attributes:
            action: the stored action a.
            state_action_value: Q(s, a), written by each critic.
            priority: where the TD error is written.
            reward, done, terminated: read under ``"next"``.
        """

        action: NestedKey = "action"
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
        "loss_qvalue",
        "pred_value",
        "state_action_value_actor",
        "next_state_value",
        "target_value",
    )

    def __init__(
        self,
        actor_network: TensorDictModule,
        qvalue_network: TensorDictModule | list[TensorDictModule] | QValueEnsemble,
        *,
        action_spec=None,
        bounds: tuple[float, float] | None = None,
        num_qvalue_nets: int = 2,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        loss_function: str = "smooth_l1",
        delay_actor: bool = True,
        delay_qvalue: bool = True,
        gamma: float | None = None,
        separate_losses: bool = False,
        reduction: str | None = None,
        deactivate_vmap: bool = False,
        clipped_double_q: bool = True,
    ) -> None:
        owner = type(self).__name__
        self._refuse_gamma(gamma, estimator="td0")
        reduction = self._check_options(reduction, loss_function=loss_function)
        check_range(f"{owner}: policy_noise", policy_noise, 0.0)
        check_range(f"{owner}: noise_clip", noise_clip, 0.0)
        if clipped_double_q and (isinstance(num_qvalue_nets, int) and num_qvalue_nets < 2):
            raise ValueError(
                f"{owner}: clipped double Q takes the minimum over at least two critics, got "
                f"num_qvalue_nets={num_qvalue_nets}. Use 2 (the paper), or "
                f"clipped_double_q=False for the single-critic ablation (or DDPGLoss)."
            )
        if (action_spec is None) == (bounds is None):
            raise ValueError(
                f"{owner}: pass exactly one of action_spec and bounds (the box a' is clipped "
                f"to), got action_spec={action_spec!r} and bounds={bounds!r}."
            )
        if bounds is not None:
            low, high = (torch.as_tensor(b, dtype=torch.float32) for b in bounds)
        else:
            _, low, high = read_action_spec(action_spec, owner=owner)
            if low is None:
                raise ValueError(
                    f"{owner}: the action_spec has no bounds; TD3 clips a' to the action box. "
                    f"Pass a bounded spec or bounds=(low, high)."
                )
        if not bool((high >= low).all()):
            raise ValueError(f"{owner}: a low bound is above its high bound: {low} > {high}.")
        separate_from = [actor_network] if separate_losses else []
        qvalue = make_qvalue_ensemble(qvalue_network, num_qvalue_nets, owner, separate_from)

        super().__init__()
        self.num_qvalue_nets = num_qvalue_nets
        self.policy_noise, self.noise_clip = policy_noise, noise_clip
        self.loss_function, self.reduction = loss_function, reduction
        self.delay_actor, self.delay_qvalue = delay_actor, delay_qvalue
        self.clipped_double_q = clipped_double_q
        self.deactivate_vmap = deactivate_vmap
        self._register_network("actor_network", actor_network, create_target=delay_actor)
        self._register_network("qvalue_network", qvalue, create_target=delay_qvalue)
        self.register_buffer("min_action", low)
        self.register_buffer("max_action", high)

    @property
    def in_keys(self) -> list[NestedKey]:
        actor_keys = list(self.actor_network.in_keys)
        flags = [_next(getattr(self.tensor_keys, k)) for k in ("reward", "done", "terminated")]
        keys = [self.tensor_keys.action, *flags, *actor_keys, *[_next(k) for k in actor_keys]]
        return list(dict.fromkeys([*keys, *self.qvalue_network.in_keys]))

    def _estimator_networks(self, kind):
        return {"value_network": None}  # the loss passes min_i Q'_i(s', a') to value_estimate

    def _target(self, name: str):
        target = getattr(self, f"target_{name}", None)
        return getattr(self, name) if target is None else target

    def _q_inputs(self, td: TensorDictBase, action: torch.Tensor) -> list[torch.Tensor]:
        action_key = self.tensor_keys.action
        return [action if key == action_key else td.get(key) for key in self.qvalue_network.in_keys]

    def _act(self, actor: TensorDictModule, td: TensorDictBase) -> torch.Tensor:
        return deterministic_action(actor, td, self.tensor_keys.action)

    def actor_loss(self, td: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """(TD3-4) -Q_1(s, mu(s)); every critic is evaluated (TorchRL logs them), none trained."""
        action = self._act(self.actor_network, td)
        q = self.qvalue_network(*self._q_inputs(td, action), detach_params=True).squeeze(-1)
        return self._reduce_loss(-q[0]), {"state_action_value_actor": q.detach()}

    def value_loss(self, td: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """(TD3-1)-(TD3-3); the metadata holds ``td_error``, ``next_state_value``,
        ``pred_value`` and ``target_value``."""
        action = td.get(self.tensor_keys.action)
        xi = torch.randn_like(action)  # drawn before the target actor runs, as TorchRL
        with torch.no_grad():
            next_td = td.get("next")
            # (TD3-1) target policy smoothing: clipped Gaussian noise on the target action
            next_action = td3_target_action(
                self._act(self._target("actor_network"), next_td),
                xi,
                self.policy_noise,
                self.noise_clip,
                self.min_action,
                self.max_action,
            )
            next_q = self._target("qvalue_network")(*self._q_inputs(next_td, next_action))
            # (TD3-2) clipped double Q: the smallest of the target critics
            next_value = clipped_double_q(next_q.squeeze(-1), self.clipped_double_q)
            target = self.value_estimator.value_estimate(td, next_value=next_value.unsqueeze(-1))
            target = target.squeeze(-1)
        pred = self.qvalue_network(*self._q_inputs(td, action)).squeeze(-1)  # [N, *B]
        loss = distance_loss(pred, target.expand_as(pred), self.loss_function).sum(0)  # (TD3-3)
        metadata = {
            "td_error": (pred.detach() - target).pow(2),
            "next_state_value": next_value,
            "pred_value": pred.detach(),
            "target_value": target,
        }
        return self._reduce_loss(loss), metadata

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """The TD3 losses of a replay batch (actor first, then critics, as TorchRL)."""
        owner = type(self).__name__
        x = self._read_inputs(tensordict, "action", next_names=("reward", "done", "terminated"))
        check_action_in_bounds(owner, x["action"], self.min_action, self.max_action)
        self._check_network_inputs(tensordict, self.actor_network)  # observations, now and next
        loss_actor, metadata_actor = self.actor_loss(tensordict)
        loss_qvalue, metadata = self.value_loss(tensordict)
        tensordict.set(self.tensor_keys.priority, metadata.pop("td_error").max(0).values)
        out = {"loss_actor": loss_actor, "loss_qvalue": loss_qvalue, **metadata_actor, **metadata}
        return TensorDict(out, [])
