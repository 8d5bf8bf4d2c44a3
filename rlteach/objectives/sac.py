r"""Soft actor-critic (Haarnoja et al., 2018a, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep
Reinforcement Learning with a Stochastic Actor", https://arxiv.org/abs/1801.01290, and 2018b, "Soft
Actor-Critic Algorithms and Applications", https://arxiv.org/abs/1812.05905).

SAC maximises return *plus entropy*, :math:`\sum_t \mathbb E[r_t + \alpha\,\mathcal H(\pi(\cdot|s_t))]`.
With a replay batch :math:`(s, a, r, s', \text{term})`, an ensemble of critics
:math:`Q_1 \dots Q_N` (target copies :math:`\bar Q_i`) and the reparameterised TanhNormal policy
:math:`\tilde a = \tanh(\mu_\phi(s) + \sigma_\phi(s)\,\xi)`, :math:`\xi \sim \mathcal N(0, I)`:

.. math::

    y = r + \gamma\,(1 - \text{term})\,\Big(\min_i \bar Q_i(s', a') - \alpha \log\pi(a'|s')\Big),
    \quad a' \sim \pi(\cdot|s')                                              \qquad \text{(SAC-1)}

    L_Q = \sum_i \ell\big(Q_i(s, a),\, y\big)                               \qquad \text{(SAC-2)}

    L_\pi = \alpha \log \pi(\tilde a|s) - \min_i Q_i(s, \tilde a)             \qquad \text{(SAC-3)}

    L_\alpha = -\log\alpha\,\big(\log\pi(\tilde a|s) + \bar{\mathcal H}\big)  \qquad \text{(SAC-4)}

each averaged over the batch (``reduction="mean"``). (SAC-1)-(SAC-3) are the soft Bellman target,
the critic and the policy objectives of 2018b (section 4), with the clipped double-Q of Fujimoto
et al. (2018); (SAC-4) is 2018b's temperature objective (section 5), written in
:math:`\log\alpha` as TorchRL does (the optimum is the same and :math:`\alpha = e^{\log\alpha}`
stays positive). Its gradient is :math:`\partial L_\alpha / \partial \log\alpha =
\mathcal H - \bar{\mathcal H}` (with :math:`\mathcal H \approx -\log\pi`): gradient descent raises
:math:`\alpha` when the entropy is *below* the target :math:`\bar{\mathcal H}` and lowers it
when above. The default target is :math:`-\dim(\mathcal A)` (2018b, section 5).

Version 1 (2018a) also learns a state-value network :math:`V_\psi` with a target copy
:math:`\bar V`, and the critics regress on it:

.. math::

    y^{v1} = r + \gamma\,(1 - \text{term})\,\bar V(s')                       \qquad \text{(SAC-5)}

    L_V = \ell\Big(V(s),\; \min_i Q_i(s, \tilde a) - \alpha\log\pi(\tilde a|s)\Big) \qquad \text{(SAC-6)}

``SACLoss(actor, qvalue)`` is version 2; ``SACLoss(actor, qvalue, value_network)`` version 1.

Where rlteach and TorchRL 0.14 differ (version 1 only)
-------------------------------------------------------
TorchRL trains critic i on the i-th slice of the batch only (the batch is cut into
``num_qvalue_nets`` chunks) and evaluates (SAC-6) with the *target* critics
:math:`\bar Q_i`. The paper trains every critic on the whole batch and uses the current critics
in (SAC-6). rlteach follows the paper; ``v1_like_torchrl=True`` reproduces TorchRL (tested).

The temperature (:class:`Temperature`) is a separate small module so that REDQ and CrossQ,
which use the same automatic temperature, share it.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import nn
from torch.func import functional_call

from rlteach._checks import check_range
from rlteach.modules.ensemble import QValueEnsemble, make_qvalue_ensemble
from rlteach.objectives._actions import (
    attach_action_spec,
    check_action_in_bounds,
    check_action_spec_read,
    read_spec_and_target_entropy,
    rsample_and_log_prob,
    use_action_spec,
)
from rlteach.objectives.common import LossModule, _next
from rlteach.objectives.functional import (
    sac_actor_objective,
    soft_state_value,
    temperature_loss,
)
from rlteach.objectives.utils import distance_loss
from rlteach.value import ValueEstimators

__all__ = ["SACLoss", "Temperature"]


class Temperature(nn.Module):
    r"""The entropy temperature :math:`\alpha = e^{\log\alpha}`, learned by (SAC-4) or fixed.

    Shared by SAC, REDQ and CrossQ. Holds ``log_alpha`` (an ``nn.Parameter``, or a buffer when
    ``fixed_alpha``) and the target entropy :math:`\bar{\mathcal H}`.

    Args:
        alpha_init: initial :math:`\alpha > 0` (TorchRL's default 1.0).
        min_alpha, max_alpha: optional bounds. As in TorchRL, ``log_alpha`` is clamped *in
            place* each time :attr:`alpha` is read, and giving one bound sets the other to 0 (no
            lower bound) or 1e9.
        fixed_alpha: keep :math:`\alpha` at ``alpha_init`` (``loss`` is still reported).
        target_entropy: :math:`\bar{\mathcal H}` as a number, or ``None`` (then ``loss`` is 0).
        owner: the loss's name, for error messages.

    ==============  ==========  ======================================================
    ``alpha``       ``[]``      :math:`\alpha`, detached (what the other losses multiply)
    ``loss(lp)``    ``[*B]``    :math:`-\log\alpha\,(\log\pi + \bar{\mathcal H})`, per sample,
                                with ``lp`` = :math:`\log\pi(\tilde a|s)` detached
    ==============  ==========  ======================================================
    """

    def __init__(
        self,
        *,
        alpha_init: float = 1.0,
        min_alpha: float | None = None,
        max_alpha: float | None = None,
        fixed_alpha: bool = False,
        target_entropy: float | None = None,
        owner: str = "Temperature",
    ) -> None:
        super().__init__()
        check_range(f"{owner}: alpha_init", alpha_init, 0.0, low_open=True)
        # TorchRL: one bound given -> the other becomes 0 (i.e. none) or 1e9
        if bool(min_alpha) ^ bool(max_alpha):
            if max_alpha == 0:
                raise ValueError(f"{owner}: max_alpha must be None or greater than 0, got 0.")
            min_alpha = min_alpha if min_alpha else 0.0
            max_alpha = max_alpha if max_alpha else 1e9
        for name, value in (("min_alpha", min_alpha), ("max_alpha", max_alpha)):
            if value is not None:
                check_range(f"{owner}: {name}", value, 0.0)
        if min_alpha and max_alpha and min_alpha > max_alpha:
            raise ValueError(
                f"{owner}: min_alpha ({min_alpha}) must not exceed max_alpha ({max_alpha})."
            )
        if target_entropy is not None:
            check_range(f"{owner}: target_entropy", float(target_entropy))
        self.register_buffer("alpha_init", torch.tensor(float(alpha_init)))
        self.min_log_alpha = math.log(min_alpha) if min_alpha else None
        self.max_log_alpha = math.log(max_alpha) if max_alpha else None
        self.fixed_alpha = fixed_alpha
        log_alpha = torch.tensor(math.log(alpha_init))
        if fixed_alpha:
            self.register_buffer("log_alpha", log_alpha)
        else:
            self.log_alpha = nn.Parameter(log_alpha)
        if target_entropy is None:
            self.target_entropy = None
        else:
            self.register_buffer("target_entropy", torch.tensor(float(target_entropy)))

    @property
    def alpha(self) -> torch.Tensor:
        """:math:`\\alpha`, detached; clamps ``log_alpha`` in place first when bounds were given."""
        if self.min_log_alpha is not None or self.max_log_alpha is not None:
            self.log_alpha.data.clamp_(self.min_log_alpha, self.max_log_alpha)
        return self.log_alpha.detach().exp()

    def loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """(SAC-4) per sample: :math:`-\\log\\alpha\\,(\\log\\pi + \\bar{\\mathcal H})`."""
        if self.target_entropy is None:
            return torch.zeros_like(log_prob)
        return temperature_loss(self.log_alpha, log_prob, self.target_entropy)


class SACLoss(LossModule):
    """SAC losses, version 2 (critics only) or version 1 (critics and a state-value network).

    Args:
        actor_network: stochastic policy (``ProbabilisticTensorDictSequential``) with a
            reparameterisable distribution (e.g. ``make_normal_actor``'s TanhNormal).
        qvalue_network: one Q(s, a) network (copied ``num_qvalue_nets`` times, each copy
            re-initialised), a list of ``num_qvalue_nets`` networks (their weights are stacked), or
            a :class:`~rlteach.modules.QValueEnsemble`. The loss holds the ensemble as
            ``loss.qvalue_network``: train ``loss.parameters()``, not the networks passed in.
        value_network: V(s), for version 1; ``None`` (default) selects version 2.

    The keyword arguments are TorchRL 0.14's, with the same defaults.

    Keyword Args:
        num_qvalue_nets: N critics (2).
        loss_function: critic distance, ``"smooth_l1"`` (default), ``"l2"`` or ``"l1"``.
        alpha_init, min_alpha, max_alpha, fixed_alpha: see :class:`Temperature`.
        action_spec: the action spec (TorchRL or Gymnasium, or the action dim as an int); used for
            ``target_entropy="auto"`` and to refuse stored actions outside its bounds. Taken from
            ``actor_network.spec`` when absent. A ``Composite`` spec is read under the action key in force, so
            ``set_keys(action="my_action")`` after construction works (TorchRL's order).
        target_entropy: :math:`\\bar{\\mathcal H}`; ``"auto"`` (default) is ``-dim(action)``.
        delay_actor: keep a target actor (False). Only version 1 uses it, in (SAC-6).
        delay_qvalue: target critics :math:`\\bar Q_i` for (SAC-1) (True).
        delay_value: target value network :math:`\\bar V` for (SAC-5), version 1 (True).
        gamma: refused, as in TorchRL: use ``make_value_estimator(gamma=...)``.
        separate_losses: parameters the critics share with the actor (a common trunk) are
            trained by the actor loss only: the critics read them detached. With one Q-network,
            those parameters are kept in every critic (neither copied nor re-initialised), as
            TorchRL does. False (default): each critic holds re-initialised copies of them.
            Version 1's value network likewise reads the parameters it shares with the actor
            detached, and the critics those they share with the actor or the value network.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``. With ``"none"`` the output has
            the batch's shape and leaves out ``alpha`` and ``entropy`` (TorchRL's
            ``scalar_output_mode="exclude"``).
        deactivate_vmap: accepted for TorchRL code and stored; no effect. TorchRL runs its
            critics with ``torch.vmap`` unless this is set; rlteach never vmaps (a
            ``QValueEnsemble`` runs its members with one batched matrix product per layer, or
            loops over them), so both values give the same numbers.
        v1_like_torchrl: version 1 only; see the module docstring (False: the paper).

    Output keys: ``loss_actor``, ``loss_qvalue``, ``loss_alpha``, ``loss_value`` (version 1),
    ``alpha``, ``entropy`` (:math:`-\\log\\pi(\\tilde a|s)` averaged over the batch). Like TorchRL,
    ``forward`` also writes ``"td_error"`` (``max_i |Q_i(s,a) - y|``) into the input batch, for
    prioritised replay. TorchRL's ``priority_weight`` input is not read (no prioritised replay
    here).

    Random draws, in TorchRL's order: version 2 draws a' for (SAC-1), then ã for (SAC-3);
    version 1 draws ã for (SAC-6), then ã for (SAC-3).
    """

    @dataclasses.dataclass
    class _AcceptedKeys:
        """Keys read or written; rename with ``set_keys``.

        Attributes:
            action: the stored action a.
            value: V(s), written by ``value_network`` (version 1).
            state_action_value: Q(s, a), written by each critic.
            log_prob: log pi of the policy's action (TorchRL 0.14's default name).
            priority: where the TD error is written for prioritised replay.
            reward, done, terminated: read under ``"next"``.
        """

        action: NestedKey = "action"
        value: NestedKey = "state_value"
        state_action_value: NestedKey = "state_action_value"
        log_prob: NestedKey = "action_log_prob"
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

    def __init__(
        self,
        actor_network: TensorDictModule,
        qvalue_network: TensorDictModule | list[TensorDictModule] | QValueEnsemble,
        value_network: TensorDictModule | None = None,
        *,
        num_qvalue_nets: int = 2,
        loss_function: str = "smooth_l1",
        alpha_init: float = 1.0,
        min_alpha: float | None = None,
        max_alpha: float | None = None,
        action_spec=None,
        fixed_alpha: bool = False,
        target_entropy: str | float = "auto",
        delay_actor: bool = False,
        delay_qvalue: bool = True,
        delay_value: bool = True,
        gamma: float | None = None,
        separate_losses: bool = False,
        reduction: str | None = None,
        deactivate_vmap: bool = False,
        v1_like_torchrl: bool = False,
    ) -> None:
        owner = type(self).__name__
        # every argument is checked before anything is stored
        self._refuse_gamma(gamma, estimator="td0")
        reduction = self._check_options(reduction, loss_function=loss_function)
        spec = read_spec_and_target_entropy(action_spec, actor_network, target_entropy, owner)
        temperature = Temperature(
            alpha_init=alpha_init,
            min_alpha=min_alpha,
            max_alpha=max_alpha,
            fixed_alpha=fixed_alpha,
            target_entropy=spec.target_entropy,
            owner=owner,
        )
        # separate_losses (TorchRL's compare_against): the critics freeze what they share with
        # the actor and the value network, the value network what it shares with the actor
        separate_from = [actor_network] if separate_losses else []
        if separate_losses and value_network is not None:
            separate_from.append(value_network)
        qvalue = make_qvalue_ensemble(qvalue_network, num_qvalue_nets, owner, separate_from)
        actor_ids = {id(p) for p in actor_network.parameters()} if separate_losses else set()
        frozen_in_value = frozenset(
            name
            for name, p in (value_network.named_parameters() if value_network is not None else ())
            if id(p) in actor_ids
        )

        super().__init__()
        self._version = 1 if value_network is not None else 2
        self.num_qvalue_nets = num_qvalue_nets
        self.loss_function = loss_function
        self.reduction = reduction
        self.delay_actor, self.delay_qvalue, self.delay_value = (
            delay_actor,
            delay_qvalue,
            delay_value,
        )
        self.v1_like_torchrl = v1_like_torchrl
        self.deactivate_vmap = deactivate_vmap
        self._register_network("actor_network", actor_network, create_target=delay_actor)
        self._register_network("qvalue_network", qvalue, create_target=delay_qvalue)
        if value_network is not None:
            self._register_network("value_network", value_network, create_target=delay_value)
        self._frozen_in_value = frozen_in_value
        self.temperature = temperature
        attach_action_spec(self, spec, as_buffers=True)
        # The action and log-prob keys follow the actor's sampling keys, as in TorchRL
        sample_keys = getattr(actor_network, "dist_sample_keys", None)
        log_prob_keys = getattr(actor_network, "log_prob_keys", None)
        if sample_keys and log_prob_keys:
            self.set_keys(action=sample_keys[0], log_prob=log_prob_keys[0])

    def _after_set_keys(self, renamed: set[str]) -> None:
        if "action" in renamed:  # TorchRL reads the spec under the action key in force
            use_action_spec(self, type(self).__name__)

    # ---------------------------------------------------------------- properties and keys

    @property
    def version(self) -> int:
        return self._version

    @property
    def log_alpha(self) -> torch.Tensor:
        """log alpha (the temperature's parameter; a buffer when ``fixed_alpha``)."""
        return self.temperature.log_alpha

    @property
    def target_entropy(self) -> torch.Tensor | None:
        if self.action_spec_read.auto:
            check_action_spec_read(self, type(self).__name__)
        return self.temperature.target_entropy

    @property
    def _alpha(self) -> torch.Tensor:
        """alpha, detached (TorchRL's name)."""
        return self.temperature.alpha

    @property
    def out_keys(self) -> list[str]:
        keys = ["loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy"]
        return keys + ["loss_value"] if self._version == 1 else keys

    @property
    def in_keys(self) -> list[NestedKey]:
        keys = [
            self.tensor_keys.action,
            _next(self.tensor_keys.reward),
            _next(self.tensor_keys.done),
            _next(self.tensor_keys.terminated),
            *self.actor_network.in_keys,
            *[_next(k) for k in self.actor_network.in_keys],
            *self.qvalue_network.in_keys,
        ]
        if self._version == 1:
            keys += [*self.value_network.in_keys, *[_next(k) for k in self.value_network.in_keys]]
        return list(dict.fromkeys(keys))

    def _estimator_networks(self, kind):
        # the loss hands the estimator the next-state value itself (value_estimate(next_value=))
        return {"value_network": None}

    # ------------------------------------------------------------------------ helpers

    def _q_inputs(self, td: TensorDictBase, action: torch.Tensor) -> list[torch.Tensor]:
        """The critics' inputs read from ``td``, with ``action`` in the action's place."""
        action_key = self.tensor_keys.action
        return [action if key == action_key else td.get(key) for key in self.qvalue_network.in_keys]

    def _target(self, name: str) -> nn.Module:
        """The target copy of a network, or the network itself when it has none."""
        target = getattr(self, f"target_{name}", None)
        return getattr(self, name) if target is None else target

    def _bootstrap(self, td: TensorDictBase, next_value: torch.Tensor) -> torch.Tensor:
        """y = r + gamma (1 - term) next_value with the loss's estimator (TD(0) by default)."""
        return self.value_estimator.value_estimate(td, next_value=next_value).squeeze(-1)

    # ------------------------------------------------------------------------ losses

    def _qvalue_v2_loss(self, td: TensorDictBase, action: torch.Tensor, alpha: torch.Tensor):
        with torch.no_grad():
            next_td = td.get("next").select(*self.actor_network.in_keys)
            # (SAC-1) a' ~ pi(.|s') from the current policy, scored by the target critics
            next_action, next_log_prob = rsample_and_log_prob(self.actor_network, next_td)
            next_inputs = self._q_inputs(td.get("next"), next_action)
            next_q = self._target("qvalue_network")(*next_inputs)
            next_value = soft_state_value(next_q, next_log_prob, alpha)
            target = self._bootstrap(td, next_value)
        pred = self.qvalue_network(*self._q_inputs(td, action)).squeeze(-1)  # [N, *B]
        # (SAC-2) every critic regresses on the same target; the critics' losses are summed
        loss = distance_loss(pred, target.expand_as(pred), self.loss_function).sum(0)
        td_error = (pred - target).detach().abs().max(0).values
        return self._reduce_loss(loss), td_error

    def _qvalue_v1_loss(self, td: TensorDictBase, action: torch.Tensor):
        with torch.no_grad():
            # (SAC-5) y = r + gamma (1 - term) Vbar(s')
            value_net = self._target("value_network")
            next_td = td.get("next").select(*value_net.in_keys)
            next_value = value_net(next_td).get(self.tensor_keys.value)
            target = self._bootstrap(td, next_value)
        inputs = self._q_inputs(td, action)
        if self.v1_like_torchrl:
            return self._qvalue_v1_loss_like_torchrl(td, inputs, target)
        pred = self.qvalue_network(*inputs).squeeze(-1)  # every critic on the whole batch
        loss = distance_loss(pred, target.expand_as(pred), self.loss_function).sum(0)
        td_error = (pred - target).detach().abs().max(0).values
        return self._reduce_loss(loss), td_error

    def _value_loss(self, td: TensorDictBase, alpha: torch.Tensor) -> torch.Tensor:
        value_td = td.select(*self.value_network.in_keys)
        if self._frozen_in_value:  # separate_losses: the actor's parameters, read detached
            params = {
                name: p.detach()
                for name, p in self.value_network.named_parameters()
                if name in self._frozen_in_value
            }
            value_td = functional_call(self.value_network, params, (value_td,))
        else:
            value_td = self.value_network(value_td)
        pred = value_td.get(self.tensor_keys.value)
        with torch.no_grad():
            # (SAC-6) target min_i Q_i(s, a~) - alpha log pi(a~|s), no gradient
            actor = self._target("actor_network")
            action, log_prob = rsample_and_log_prob(actor, td.select(*actor.in_keys))
            critics = (
                self._target("qvalue_network") if self.v1_like_torchrl else self.qvalue_network
            )
            q = critics(*self._q_inputs(td, action)).squeeze(-1).min(0).values
            target = q - alpha * log_prob
        loss = distance_loss(pred.squeeze(-1), target, self.loss_function)
        return self._reduce_loss(loss)

    def _actor_loss(self, td: TensorDictBase, alpha: torch.Tensor):
        # (SAC-3) a~ = squash(nu + sigma xi): gradients reach the actor through a~ and log pi;
        # the critics' parameters are detached so that this loss never trains them
        actor_td = td.select(*self.actor_network.in_keys)
        action, log_prob = rsample_and_log_prob(self.actor_network, actor_td)
        q = self.qvalue_network(*self._q_inputs(td, action), detach_params=True)
        q = q.squeeze(-1)
        self._check_log_prob_shape(log_prob, q)
        return self._reduce_loss(sac_actor_objective(q, log_prob, alpha)), log_prob.detach()

    def _check_log_prob_shape(self, log_prob: torch.Tensor, q: torch.Tensor) -> None:
        if log_prob.shape != q.shape[1:]:
            raise ValueError(
                f"{type(self).__name__}: log pi has shape {list(log_prob.shape)} but Q has "
                f"{list(q.shape[1:])}; the actor's log_prob must be summed over the action dims."
            )

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """The SAC losses of a replay batch (see the module docstring for the equations)."""
        check_action_spec_read(self, type(self).__name__)
        x = self._read_inputs(tensordict, "action", next_names=("reward", "done", "terminated"))
        check_action_in_bounds(type(self).__name__, x["action"], self.action_low, self.action_high)
        self._check_network_inputs(tensordict, self.actor_network)  # observations, now and next
        alpha = self.temperature.alpha
        if self._version == 2:
            loss_qvalue, td_error = self._qvalue_v2_loss(tensordict, x["action"], alpha)
            loss_value = None
        else:
            loss_qvalue, td_error = self._qvalue_v1_loss(tensordict, x["action"])
            loss_value = self._value_loss(tensordict, alpha)
        loss_actor, log_prob = self._actor_loss(tensordict, alpha)
        loss_alpha = self._reduce_loss(self.temperature.loss(log_prob))  # (SAC-4)
        tensordict.set(self.tensor_keys.priority, td_error)

        out = {"loss_actor": loss_actor, "loss_qvalue": loss_qvalue, "loss_alpha": loss_alpha}
        if loss_value is not None:
            out["loss_value"] = loss_value
        if self.reduction == "none":
            return TensorDict(out, batch_size=tensordict.batch_size)
        out["alpha"] = alpha
        out["entropy"] = -log_prob.mean()
        return TensorDict(out, batch_size=[])

    # ------------------------------------------------------------ reproducing TorchRL (v1)

    def _qvalue_v1_loss_like_torchrl(self, td: TensorDictBase, inputs, target: torch.Tensor):
        """``v1_like_torchrl=True``: critic i sees only the i-th of N equal slices of the batch."""
        n, shape = self.num_qvalue_nets, td.shape
        if shape[0] % n:
            raise ValueError(
                f"{type(self).__name__}(v1_like_torchrl=True) cuts the batch into "
                f"num_qvalue_nets={n} slices: its first dim ({shape[0]}) must be divisible by {n}."
            )
        chunks = [x.reshape(n, -1, *x.shape[1:]) for x in inputs]
        pred = self.qvalue_network(*chunks, shared_inputs=False).squeeze(-1)
        loss = distance_loss(pred, target.reshape(n, -1, *target.shape[1:]), self.loss_function)
        td_error = (pred.detach() - target.reshape(pred.shape)).pow(2).reshape(shape)
        return self._reduce_loss(loss.reshape(shape)), td_error
