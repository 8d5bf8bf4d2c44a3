r"""CrossQ: SAC without target networks, with batch normalisation in the critic (Bhatt et al., 2024).

SAC (Haarnoja et al., 2018) bootstraps from slowly moving *target* critics. CrossQ removes them
and instead puts batch (re)normalisation (:class:`~rlteach.modules.BatchRenorm1d`) into the
critics. That only works if batch normalisation is used the right way, which is the paper's
main point.

**Why a joint batch.** A critic with batch normalisation computes Q(s, a) with the mean and
variance of the batch it is given. In the critic loss it is evaluated twice: at the replayed
pairs (s, a), and at the next pairs (s', a') with :math:`a' \sim \pi(\cdot|s')` for the target.
These two sets come from different distributions: a is an old action from the replay buffer,
a' a fresh action of the current policy. Evaluated in two separate calls, each is normalised
with *its own* statistics, so Q(s, a) and Q(s', a') are computed by two different functions and
the target is inconsistent with the prediction; with running statistics in the target (the
usual ``eval()`` of a target network) the mismatch is as bad. CrossQ concatenates both sets into
**one batch** of 2B pairs, so a single set of batch statistics (a mixture of both distributions)
normalises both halves, and the split result gives Q(s, a) and Q(s', a') from the same function:

.. math::

    \begin{bmatrix} q \\ q' \end{bmatrix} = Q_{\phi_i}\!\left(\begin{bmatrix} s & a \\
    s' & a' \end{bmatrix}\right), \qquad a' \sim \pi(\cdot|s')          \qquad \text{(CQ-1)}

    y = r + \gamma (1 - \text{term}) \Big( \min_i \operatorname{sg}(q'_i)
        - \alpha \log\pi(a'|s') \Big)                                    \qquad \text{(CQ-2)}

    L_Q = \sum_{i=1}^{N} \ell(q_i, y)                                    \qquad \text{(CQ-3)}

    L_\pi = \alpha \log\pi(\tilde a|s) - \min_i Q_{\phi_i}(s, \tilde a), \quad
    \tilde a \sim \pi(\cdot|s) \text{ (critics in eval mode)}           \qquad \text{(CQ-4)}

    L_\alpha = -\log\alpha\,\big(\log\pi(\tilde a|s) + \bar{\mathcal H}\big)  \qquad \text{(CQ-5)}

(sg = stop gradient: the target is a constant for the critic, but the *prediction* q still
gets gradient through the batch statistics, which the q' half shares). The actor loss reads the
critics in evaluation mode (running statistics), as TorchRL 0.14 and the authors' code do, so
that the policy's own fresh actions do not shift the normalisation they are scored with.

No target network means no Polyak update and no lag: with the joint batch the critic is stable
without one (paper, section 4), and the bootstrapped values are current ones.

Where TorchRL 0.14's ``CrossQLoss`` does something worth knowing (kept here):

* (CQ-3) **sums** over the critics before averaging over the batch (SAC in TorchRL averages);
* ``forward`` returns, besides the five documented keys, ``"log_prob"`` ([B], the actor's
  sample) and ``"td_error"`` (``max_i |q_i - y|``), and writes ``"td_error"`` into the batch;
* the actor's sample is drawn *after* the next action: draws go a' (CQ-1), then ã (CQ-4);
* after the actor loss TorchRL calls ``qvalue_network.train()``; rlteach puts back the mode the
  critics were in.

The temperature is SAC's :class:`~rlteach.objectives.sac.Temperature` (TorchRL's CrossQ uses the
same one: ``min_alpha`` / ``max_alpha`` default to None, log alpha is clamped in place).

=========  ===============  =================================================================
symbol     shape            meaning
=========  ===============  =================================================================
s, s'      [B, D]           ``"observation"``, ``("next", "observation")``
a          [B, A]           ``"action"`` (checked against ``action_spec``'s bounds)
r, term    [B, 1]           ``("next", "reward")``, ``("next", "terminated")``
q, q'      [N, B]           the two halves of the joint evaluation (CQ-1)
y          [B]              the target (CQ-2)
=========  ===============  =================================================================
"""

from __future__ import annotations

import dataclasses

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey

from rlteach._checks import check_choice
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
from rlteach.objectives.functional import crossq_split_joint
from rlteach.objectives.sac import Temperature
from rlteach.objectives.utils import distance_loss
from rlteach.value import ValueEstimators

__all__ = ["CrossQLoss"]


class CrossQLoss(LossModule):
    """The CrossQ losses (Bhatt et al., 2024) with TorchRL 0.14's arguments, keys and outputs.

    Args:
        actor_network: a stochastic policy (``ProbabilisticTensorDictSequential``) with a
            reparameterisable distribution, e.g. ``rlteach.modules.make_normal_actor``.
        qvalue_network: one Q(s, a) network (copied ``num_qvalue_nets`` times, each copy
            re-initialised), a list of ``num_qvalue_nets`` networks, or a
            ``rlteach.modules.QValueEnsemble``. Put batch normalisation in it
            (``rlteach.modules.make_crossq_qvalue_network``); without it CrossQ is SAC without
            target networks. The loss holds copies (``loss.qvalue_network``): train
            ``loss.parameters()``.

    Keyword Args:
        num_qvalue_nets: N critics (2), the min in (CQ-2) and (CQ-4).
        loss_function: ``"smooth_l1"`` (default), ``"l2"`` or ``"l1"``.
        alpha_init, min_alpha, max_alpha, fixed_alpha: the temperature, see
            :class:`~rlteach.objectives.sac.Temperature` (1.0, None, None, False).
        action_spec: a TorchRL / Gymnasium spec or the action dim: the target entropy for
            ``"auto"`` and the bounds the batch's actions are checked against. A ``Composite`` spec is read under the action key in force, so
            ``set_keys(action="my_action")`` after construction works (TorchRL's order).
        target_entropy: a number, or ``"auto"`` = -dim(A).
        priority_key: older spelling of ``set_keys(priority=...)``.
        separate_losses: parameters the critics share with the actor (a common trunk) are
            trained by the actor loss only: the critics read them detached. With one Q-network,
            those parameters are kept in every critic (neither copied nor re-initialised), as
            TorchRL does. False (default): each critic holds re-initialised copies of them.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        deactivate_vmap: accepted and stored for TorchRL compatibility; rlteach never vmaps
            (critics with batch normalisation are run one after the other, so their running
            statistics are updated in place).
        scalar_output_mode: with ``reduction="none"``: ``"exclude"`` (default) leaves ``alpha``
            and ``entropy`` out, ``"non_tensor"`` stores them as plain numbers.

    Raises:
        ValueError: ``num_qvalue_nets < 1``, an unknown ``loss_function`` / ``reduction``, a bad
            temperature argument.
    """

    @dataclasses.dataclass
    class _AcceptedKeys:
        """Keys read and written, TorchRL 0.14's defaults (``log_prob`` is not read)."""

        action: NestedKey = "action"
        state_action_value: NestedKey = "state_action_value"
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        log_prob: NestedKey = "_log_prob"

    default_value_estimator = ValueEstimators.TD0
    supported_value_estimators = (
        ValueEstimators.TD0,
        ValueEstimators.TD1,
        ValueEstimators.TDLambda,
    )
    out_keys = ("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy")

    def __init__(
        self,
        actor_network,
        qvalue_network,
        *,
        num_qvalue_nets: int = 2,
        loss_function: str = "smooth_l1",
        alpha_init: float = 1.0,
        min_alpha: float | None = None,
        max_alpha: float | None = None,
        action_spec=None,
        fixed_alpha: bool = False,
        target_entropy: str | float = "auto",
        priority_key: str | None = None,
        separate_losses: bool = False,
        reduction: str | None = None,
        deactivate_vmap: bool = False,
        scalar_output_mode: str | None = None,
    ) -> None:
        owner = type(self).__name__
        reduction = self._check_options(reduction, loss_function=loss_function)
        check_choice("scalar_output_mode", scalar_output_mode, (None, "exclude", "non_tensor"))
        spec = read_spec_and_target_entropy(action_spec, actor_network, target_entropy, owner)
        temperature = Temperature(
            alpha_init=alpha_init,
            min_alpha=min_alpha,
            max_alpha=max_alpha,
            fixed_alpha=fixed_alpha,
            target_entropy=spec.target_entropy,
            owner=owner,
        )
        separate_from = [actor_network] if separate_losses else []
        qvalue = make_qvalue_ensemble(qvalue_network, num_qvalue_nets, owner, separate_from)

        super().__init__()
        if priority_key is not None:
            self.set_keys(priority=priority_key)
        self._register_network("actor_network", actor_network)
        self._register_network("qvalue_network", qvalue)  # no target network: the point of CrossQ
        self.temperature = temperature
        self.num_qvalue_nets = num_qvalue_nets
        self.loss_function = loss_function
        self.reduction = reduction
        self.deactivate_vmap = deactivate_vmap
        self.scalar_output_mode = scalar_output_mode
        attach_action_spec(self, spec)

    # ------------------------------------------------------------------ keys and alpha

    @property
    def in_keys(self) -> list:
        k = self.tensor_keys
        actor_in = list(self.actor_network.in_keys)
        keys = [
            k.action,
            _next(k.reward),
            _next(k.done),
            _next(k.terminated),
            *actor_in,
            *[_next(key) for key in actor_in],
            *self.qvalue_network.in_keys,
        ]
        return list(dict.fromkeys(keys))

    @property
    def log_alpha(self) -> torch.Tensor:
        return self.temperature.log_alpha

    @property
    def target_entropy(self) -> torch.Tensor:
        if self.action_spec_read.auto:
            check_action_spec_read(self, type(self).__name__)
        return self.temperature.target_entropy

    def _after_set_keys(self, renamed: set[str]) -> None:
        if "action" in renamed:  # TorchRL reads the spec under the action key in force
            use_action_spec(self, type(self).__name__)

    @property
    def _alpha(self) -> torch.Tensor:
        """alpha, detached (TorchRL's name); clamps log alpha in place when bounds were given."""
        return self.temperature.alpha

    # ------------------------------------------------------------------ pieces

    def _check_batch(self, td: TensorDictBase) -> None:
        """Every input present and finite, the stored actions inside the spec, before any work."""
        owner = type(self).__name__
        check_action_spec_read(self, owner)
        x = self._read_inputs(td, "action", next_names=("reward", "done", "terminated"))
        self._check_network_inputs(td, self.actor_network)
        check_action_in_bounds(owner, x["action"], self.action_low, self.action_high)

    def _q_inputs(self, td: TensorDictBase, action: torch.Tensor) -> list[torch.Tensor]:
        """The critics' inputs in their in_keys order, with ``action`` as the action entry."""
        return [
            action if key == self.tensor_keys.action else td.get(key)
            for key in self.qvalue_network.in_keys
        ]

    # ------------------------------------------------------------------ losses

    def qvalue_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """(CQ-1)-(CQ-3). Returns the reduced loss and ``{"td_error": [B]}``.

        Runs the critics in training mode (their batch statistics and running averages are
        those of the joint batch), so call it before :meth:`actor_loss`, as ``forward`` does.
        """
        next_td = tensordict.get("next")
        with torch.no_grad():  # a' ~ pi(.|s'), the first draw
            next_action, next_log_prob = rsample_and_log_prob(
                self.actor_network, next_td.select(*self.actor_network.in_keys, strict=False)
            )
        # (CQ-1) one batch of 2B pairs: [(s, a); (s', a')], so both halves share one normalisation
        now_in = self._q_inputs(tensordict, tensordict.get(self.tensor_keys.action))
        next_in = self._q_inputs(next_td, next_action)
        joint = [torch.cat([x, x_next], dim=0) for x, x_next in zip(now_in, next_in, strict=True)]
        q_joint = self.qvalue_network(*joint).squeeze(-1)  # [N, 2B]
        # (CQ-2) the target: min over critics, soft value, one-step TD; no gradient
        q, next_value = crossq_split_joint(
            q_joint, next_log_prob, self._alpha, batch=tensordict.shape[0]
        )
        target = self.value_estimator.value_estimate(
            tensordict, next_value=next_value.unsqueeze(-1)
        )
        target = target.squeeze(-1)
        # (CQ-3) summed over the critics, then reduced over the batch (TorchRL's choice)
        loss = distance_loss(q, target.expand_as(q), self.loss_function).sum(0)
        td_error = (q - target).abs().detach().max(0)[0]
        return self._reduce_loss(loss), {"td_error": td_error}

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """(CQ-4), critics in eval mode (running statistics) and without parameter gradients.

        Returns the reduced loss and ``{"log_prob": [B]}`` (detached), the input of
        :meth:`alpha_loss`.
        """
        td = tensordict.select(*self.actor_network.in_keys, strict=False).copy()
        action, log_prob = rsample_and_log_prob(self.actor_network, td)  # ã ~ pi(.|s)
        critics: QValueEnsemble = self.qvalue_network
        was_training = critics.training
        critics.eval()
        try:
            q = critics(*self._q_inputs(tensordict, action), detach_params=True).squeeze(-1)
        finally:
            critics.train(was_training)
        loss = self._alpha * log_prob - q.min(0)[0]
        return self._reduce_loss(loss), {"log_prob": log_prob.detach()}

    def alpha_loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """(CQ-5), SAC's temperature loss, reduced."""
        return self._reduce_loss(self.temperature.loss(log_prob))

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Critic loss, then actor loss, then temperature loss (TorchRL's order of draws)."""
        self._check_batch(tensordict)
        loss_qvalue, meta_q = self.qvalue_loss(tensordict)
        loss_actor, meta_actor = self.actor_loss(tensordict)
        loss_alpha = self.alpha_loss(meta_actor["log_prob"])
        tensordict.set(self.tensor_keys.priority, meta_q["td_error"])
        out = {
            "loss_actor": loss_actor,
            "loss_qvalue": loss_qvalue,
            "loss_alpha": loss_alpha,
            **meta_actor,
            **meta_q,
        }
        if self.reduction == "none":
            td_out = TensorDict(out, tensordict.batch_size)
            if self.scalar_output_mode == "non_tensor":
                td_out.set_non_tensor("alpha", self._alpha)
                td_out.set_non_tensor("entropy", -meta_actor["log_prob"].mean())
            return td_out
        out["alpha"] = self._alpha
        out["entropy"] = -meta_actor["log_prob"].mean()
        return TensorDict(out)
