r"""REDQ: randomised ensembled double Q-learning (Chen, Wang, Zhou & Ross, ICLR 2021).

REDQ is SAC (Haarnoja et al., 2018) with three changes that let it take many gradient steps per
environment step (a high *update-to-data ratio* UTD, 20 in the paper) without its Q-values running
away:

1. an **ensemble** of N Q-functions (N = 10), each regressed on the same target;
2. an **in-target minimisation over a random subset** of M of them (M = 2), drawn afresh at each
   update, which controls the overestimation that a min over all N would turn into
   underestimation;
3. a policy trained on the **average** of all N Q-values.

With :math:`\mathcal M` the random subset, :math:`a' \sim \pi(\cdot|s')`, :math:`\tilde a \sim
\pi(\cdot|s)` (reparameterised) and :math:`\bar\phi` the target parameters:

.. math::

    \mathcal M \subset \{1, \dots, N\},\ |\mathcal M| = M \text{ drawn uniformly}
                                                                 \qquad \text{(REDQ-1)}

    y = r + \gamma (1 - \text{term}) \Big( \min_{i \in \mathcal M} Q_{\bar\phi_i}(s', a')
        - \alpha \log \pi(a'|s') \Big)                          \qquad \text{(REDQ-2)}

    L_Q = \frac{1}{N} \sum_{i=1}^N \ell\big(Q_{\phi_i}(s, a), y\big)   \qquad \text{(REDQ-3)}

    L_\pi = \frac{1}{N} \sum_{i=1}^N \Big( \alpha \log \pi(\tilde a|s) - Q_{\phi_i}(s, \tilde a)
            \Big)                                                \qquad \text{(REDQ-4)}

    L_\alpha = -\alpha \big( \log \pi(\tilde a|s) + \bar{\mathcal H} \big)  \qquad \text{(REDQ-5)}

(equations of Algorithm 1 in the paper; :math:`\ell` is ``loss_function``, :math:`\bar{\mathcal
H}` the target entropy, ``-dim(A)`` by default). The target (REDQ-2) and the critics inside the
actor loss (REDQ-4) carry no gradient.

Where TorchRL 0.14's ``REDQLoss`` does something worth knowing (all kept here, for the same
numbers):

* The temperature loss (REDQ-5) multiplies by :math:`\alpha`, not :math:`\log\alpha` as SAC's
  does, and :math:`\alpha` is clamped to ``[min_alpha, max_alpha]`` = [0.1, 10] by default with a
  *straight-through* clamp (the value is clamped, the gradient is that of the unclamped
  :math:`\alpha`).
* ``forward`` samples actions at s and s' in **one** draw of shape ``[2, B, A]`` and averages
  (REDQ-5) and the logged ``entropy`` over **both** halves, the next states' samples included.
* ``sub_sample_len`` is silently cut to ``num_qvalue_nets - 1`` by TorchRL; here M = N is allowed
  (the paper allows it: N = M = 2 is SAC's clipped double Q) and M > N is refused. To reproduce
  TorchRL with M = N, pass M = N - 1.
* Draws happen in this order: the subset (``torch.randperm(N)[:M]``, sorted), then the actions.

For training, :meth:`qvalue_loss` and :meth:`actor_loss` compute (REDQ-1)-(REDQ-3) and
(REDQ-4)-(REDQ-5) separately, so a loop can take UTD critic steps per actor step, as Algorithm 1
does, without paying for the actor's N critic evaluations each time.

=========  ===============  =================================================================
symbol     shape            meaning
=========  ===============  =================================================================
s, s'      [B, D]           ``"observation"``, ``("next", "observation")``
a          [B, A]           ``"action"`` (checked against ``action_spec``'s bounds)
r          [B, 1]           ``("next", "reward")``
term       [B, 1]           ``("next", "terminated")``
Q          [N, B]           the ensemble at (s, a)
y          [B]              the target (REDQ-2), shared by the N critics
=========  ===============  =================================================================

``B`` may be several dims, e.g. ``[B, T]`` for a batch of trajectories (time last).
"""

from __future__ import annotations

import dataclasses

import torch
from tensordict import TensorDict, TensorDictBase

from rlteach._checks import check_choice, check_range
from rlteach.modules.ensemble import make_qvalue_ensemble
from rlteach.objectives._actions import (
    attach_action_spec,
    check_action_in_bounds,
    check_action_spec_read,
    policy_distribution,
    read_spec_and_target_entropy,
    use_action_spec,
)
from rlteach.objectives.common import LossModule, _next
from rlteach.objectives.functional import redq_soft_target_value
from rlteach.objectives.sac import Temperature
from rlteach.objectives.utils import distance_loss
from rlteach.value import ValueEstimators

__all__ = ["REDQLoss"]


class REDQTemperature(Temperature):
    r"""SAC's :class:`~rlteach.objectives.sac.Temperature` with TorchRL's REDQ variant of (REDQ-5).

    Two differences from SAC's temperature, both TorchRL 0.14's ``REDQLoss``:

    * :attr:`alpha` clamps a *copy* of :math:`\log\alpha` to [log min_alpha, log max_alpha]
      (SAC clamps the parameter in place);
    * the loss is :math:`-\alpha_c (\log\pi + \bar{\mathcal H})` with :math:`\alpha_c` the clamped
      value carrying the gradient of the unclamped :math:`\alpha` (a straight-through clamp), so
      :math:`\partial L/\partial\log\alpha = -\alpha_c(\log\pi + \bar{\mathcal H})`: the same
      sign as SAC's, scaled by :math:`\alpha_c`.
    """

    @property
    def alpha(self) -> torch.Tensor:
        with torch.no_grad():
            return self.log_alpha.clamp(self.min_log_alpha, self.max_log_alpha).exp()

    def loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """(REDQ-5) per sample, with the straight-through clamp."""
        with torch.no_grad():
            clamped = self.log_alpha.clamp(self.min_log_alpha, self.max_log_alpha)
            shift = clamped - self.log_alpha
        alpha = (self.log_alpha + shift).exp()  # value: clamped; gradient: unclamped
        return -alpha * (log_prob.detach() + self.target_entropy)


def _check_int(owner: str, name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}.")


class REDQLoss(LossModule):
    """The REDQ losses (Chen et al., 2021) with TorchRL 0.14's arguments, keys and outputs.

    Args:
        actor_network: a stochastic policy (``ProbabilisticTensorDictSequential``) with a
            reparameterisable distribution, e.g. ``rlteach.modules.make_normal_actor``.
        qvalue_network: one Q(s, a) network (copied ``num_qvalue_nets`` times, each copy
            re-initialised), a list of ``num_qvalue_nets`` networks (their weights are stacked),
            or a ``rlteach.modules.QValueEnsemble``.

    Keyword Args:
        num_qvalue_nets: N, the ensemble size (10). At least 2.
        sub_sample_len: M, the size of the random subset in the target (2); 1 <= M <= N.
        loss_function: ``"smooth_l1"`` (default), ``"l2"`` or ``"l1"``.
        alpha_init: the initial temperature (1.0).
        min_alpha, max_alpha: bounds of the temperature (0.1 and 10.0).
        action_spec: a TorchRL / Gymnasium spec or the action dim; gives the target entropy
            for ``"auto"`` and the bounds the batch's actions are checked against. A ``Composite`` spec is read under the action key in force, so
            ``set_keys(action="my_action")`` after construction works (TorchRL's order).
        fixed_alpha: keep alpha at ``alpha_init`` (a buffer instead of a parameter).
        target_entropy: a number, or ``"auto"`` = -dim(A).
        delay_qvalue: bootstrap from a frozen copy of the ensemble, updated by
            ``rlteach.updaters.SoftUpdate`` (True, as in the paper with rho = 0.995).
        gSDE: write a zero ``"_eps_gSDE"`` into the actor's input, as TorchRL does for actors
            with generalised state-dependent exploration.
        gamma: removed in TorchRL; passing it raises (use ``make_value_estimator(gamma=...)``).
        priority_key: older spelling of ``set_keys(priority=...)``.
        separate_losses: parameters the critics share with the actor (a common trunk) are
            trained by the actor loss only: the critics read them detached. With one Q-network,
            those parameters are kept in every critic (neither copied nor re-initialised), as
            TorchRL does. False (default): each critic holds re-initialised copies of them.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        deactivate_vmap: accepted for TorchRL compatibility and stored; rlteach never vmaps (a
            ``QValueEnsemble`` runs its members with one batched matrix product per layer, or
            loops over them, see ``rlteach.modules.ensemble``).
        scalar_output_mode: with ``reduction="none"``, ``"exclude"`` (default) leaves ``alpha``
            and ``entropy`` out of the output, ``"non_tensor"`` stores them as plain numbers.

    Raises:
        ValueError: ``num_qvalue_nets < 2``, ``sub_sample_len`` outside [1, num_qvalue_nets],
            ``alpha_init <= 0``, ``min_alpha > max_alpha``, an unknown ``loss_function`` or
            ``reduction``.
        TypeError: ``gamma`` given.
    """

    @dataclasses.dataclass
    class _AcceptedKeys:
        """Keys read and written, with TorchRL 0.14's defaults.

        ``value`` is where the next state's soft value would be read by the estimator (REDQ
        passes it directly); ``priority`` receives the max over critics of the squared TD error.
        """

        action: str = "action"
        value: str = "state_value"
        sample_log_prob: str = "action_log_prob"
        priority: str = "td_error"
        state_action_value: str = "state_action_value"
        reward: str = "reward"
        done: str = "done"
        terminated: str = "terminated"

    default_value_estimator = ValueEstimators.TD0
    supported_value_estimators = (
        ValueEstimators.TD0,
        ValueEstimators.TD1,
        ValueEstimators.TDLambda,
    )
    out_keys = (
        "loss_actor",
        "loss_qvalue",
        "loss_alpha",
        "alpha",
        "entropy",
        "state_action_value_actor",
        "action_log_prob_actor",
        "next.state_value",
        "target_value",
    )
    delay_actor = False

    def __init__(
        self,
        actor_network,
        qvalue_network,
        *,
        num_qvalue_nets: int = 10,
        sub_sample_len: int = 2,
        loss_function: str = "smooth_l1",
        alpha_init: float = 1.0,
        min_alpha: float = 0.1,
        max_alpha: float = 10.0,
        action_spec=None,
        fixed_alpha: bool = False,
        target_entropy: str | float = "auto",
        delay_qvalue: bool = True,
        gSDE: bool = False,
        gamma: float | None = None,
        priority_key: str | None = None,
        separate_losses: bool = False,
        reduction: str | None = None,
        deactivate_vmap: bool = False,
        scalar_output_mode: str | None = None,
    ) -> None:
        owner = type(self).__name__
        # --- every argument is checked before anything is built
        self._refuse_gamma(gamma, estimator="td0")
        _check_int(owner, "num_qvalue_nets", num_qvalue_nets, 2)
        _check_int(owner, "sub_sample_len", sub_sample_len, 1)
        if sub_sample_len > num_qvalue_nets:
            raise ValueError(
                f"{owner}: sub_sample_len={sub_sample_len} is larger than num_qvalue_nets="
                f"{num_qvalue_nets}: the target takes the min over a subset of the ensemble. "
                f"Pass sub_sample_len <= num_qvalue_nets (the paper uses 2 of 10)."
            )
        reduction = self._check_options(reduction, loss_function=loss_function)
        check_choice("scalar_output_mode", scalar_output_mode, (None, "exclude", "non_tensor"))
        check_range("min_alpha", min_alpha, 0.0, low_open=True)
        check_range("max_alpha", max_alpha, min_alpha)
        if not isinstance(target_entropy, str):
            check_range("target_entropy", target_entropy)
        elif target_entropy != "auto":
            raise ValueError(
                f'{owner}: target_entropy must be a number or "auto", got {target_entropy!r}.'
            )
        spec = read_spec_and_target_entropy(action_spec, actor_network, target_entropy, owner)
        separate_from = [actor_network] if separate_losses else []
        ensemble = make_qvalue_ensemble(qvalue_network, num_qvalue_nets, owner, separate_from)

        super().__init__()
        if priority_key is not None:
            self.set_keys(priority=priority_key)
        self._register_network("actor_network", actor_network)
        self._register_network("qvalue_network", ensemble, create_target=delay_qvalue)
        self.num_qvalue_nets = num_qvalue_nets
        self.sub_sample_len = sub_sample_len
        self.loss_function = loss_function
        self.delay_qvalue = delay_qvalue
        self.gSDE = gSDE
        self.fixed_alpha = fixed_alpha
        self.reduction = reduction
        self.deactivate_vmap = deactivate_vmap
        self.scalar_output_mode = scalar_output_mode
        attach_action_spec(self, spec)
        self.temperature = REDQTemperature(
            alpha_init=alpha_init,
            min_alpha=min_alpha,
            max_alpha=max_alpha,
            fixed_alpha=fixed_alpha,
            target_entropy=spec.target_entropy,
            owner=owner,
        )

    # ------------------------------------------------------------------ keys

    @property
    def in_keys(self) -> list:
        k = self.tensor_keys
        actor_in = list(self.actor_network.in_keys)
        keys = [
            k.action,
            k.sample_log_prob,
            _next(k.reward),
            _next(k.done),
            _next(k.terminated),
            *actor_in,
            *[_next(key) for key in actor_in],
            *self.qvalue_network.in_keys,
        ]
        return list(dict.fromkeys(keys))

    # ------------------------------------------------------------- temperature

    @property
    def alpha(self) -> torch.Tensor:
        """alpha = exp(clamp(log alpha, log min_alpha, log max_alpha)), without gradient."""
        return self.temperature.alpha

    @property
    def log_alpha(self) -> torch.Tensor:
        """log alpha (the temperature's parameter; a buffer when ``fixed_alpha``)."""
        return self.temperature.log_alpha

    @property
    def target_entropy(self) -> torch.Tensor:
        if self.action_spec_read.auto:
            check_action_spec_read(self, type(self).__name__)
        return self.temperature.target_entropy

    def _after_set_keys(self, renamed: set[str]) -> None:
        if "action" in renamed:  # TorchRL reads the spec under the action key in force
            use_action_spec(self, type(self).__name__)

    def _alpha_loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        return self.temperature.loss(log_prob)  # (REDQ-5)

    # ------------------------------------------------------------------ pieces

    def _check_batch(self, td: TensorDictBase) -> dict[str, torch.Tensor]:
        """Read and check every input (keys present, finite, actions inside the spec)."""
        owner = type(self).__name__
        check_action_spec_read(self, owner)
        inputs = self._read_inputs(td, "action", next_names=("reward", "done", "terminated"))
        self._check_network_inputs(td, self.actor_network)
        check_action_in_bounds(owner, inputs["action"], self.action_low, self.action_high)
        return inputs

    def _draw_subset(self) -> torch.Tensor:
        """(REDQ-1) M distinct critics out of N, uniformly, sorted (TorchRL's draw).

        Drawn on the CPU, as TorchRL does, whatever the critics' device: the same subsets follow
        from a seed on every device, and a CPU index selects rows of a GPU tensor as well."""
        return torch.randperm(self.num_qvalue_nets, device="cpu")[: self.sub_sample_len].sort()[0]

    def _policy_sample(self, actor_td: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and its log-probability, one Gaussian draw for the batch."""
        if self.gSDE:
            actor_td.set("_eps_gSDE", torch.zeros(actor_td.shape, device=actor_td.device))
        dist = policy_distribution(self.actor_network, actor_td)  # = actor.get_dist(actor_td)
        if hasattr(dist, "rsample_and_log_prob"):
            return dist.rsample_and_log_prob()
        action = dist.rsample()
        return action, dist.log_prob(action)

    def _q(self, td: TensorDictBase, action: torch.Tensor, *, detach=False) -> torch.Tensor:
        """Q_i(s, action) for every critic i: [N, B]. The observation entries come from ``td``."""
        return self.qvalue_network(*self._q_inputs(td, action), detach_params=detach).squeeze(-1)

    def _q_inputs(self, td: TensorDictBase, action: torch.Tensor) -> list[torch.Tensor]:
        """The critics' inputs in their in_keys order, with ``action`` as the action entry."""
        return [
            action if key == self.tensor_keys.action else td.get(key)
            for key in self.qvalue_network.in_keys
        ]

    def _target_q(self, td: TensorDictBase, action: torch.Tensor, subset: torch.Tensor):
        """Q_i(s', a') for the M critics i of the subset only, [M, B], without gradient.

        Runs M networks instead of running N and discarding N - M rows (same numbers).
        """
        net = self.target_qvalue_network if self.delay_qvalue else self.qvalue_network
        inputs = self._q_inputs(td, action)
        if net.fused is None:  # a list of networks: run the chosen ones
            return torch.stack([net.members[i](*inputs) for i in subset.tolist()]).squeeze(-1)
        layers = net.fused.layers
        batch_shape = action.shape[:-1]  # [B] or [B, T]: flattened for the batched products
        h = torch.cat(inputs, dim=-1).reshape(-1, net.fused.in_features)
        h = h.expand(len(subset), *h.shape)
        for depth, layer in enumerate(layers):  # EnsembleMLP's forward on the chosen rows
            weight, bias = layer.weight[subset], layer.bias[subset]
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if depth < len(layers) - 1:
                h = net.fused.activation(h)
        return h.reshape(len(subset), *batch_shape)

    def subset_target(
        self,
        td: TensorDictBase,
        subset: torch.Tensor,
        next_action: torch.Tensor,
        next_log_prob: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(REDQ-2): the soft value of s' from the min over the subset, then the TD(0) target."""
        next_td = td.get("next")
        with torch.no_grad():
            q_next = self._target_q(next_td, next_action, subset)
            next_value = redq_soft_target_value(q_next, next_log_prob, self.alpha)  # [B]
            target = self.value_estimator.value_estimate(td, next_value=next_value.unsqueeze(-1))
        return next_value, target.squeeze(-1)

    def _critic_loss(self, td: TensorDictBase, target: torch.Tensor):
        """(REDQ-3): every critic regresses on the same target. Returns [N, B] and the TD error."""
        q = self._q(td, td.get(self.tensor_keys.action))
        loss = distance_loss(q, target.expand_as(q), self.loss_function)
        td_error = (q - target).pow(2).detach().max(0)[0]
        return loss, td_error

    def _actor_terms(self, td: TensorDictBase, action: torch.Tensor, log_prob: torch.Tensor):
        """(REDQ-4): alpha log pi - Q_i for every critic i ([N, B]); critics without gradient."""
        q = self._q(td, action, detach=True)
        return -(q - self.alpha * log_prob), q.detach()

    # ------------------------------------------------------------------ losses

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """All three losses in TorchRL's order of random draws (subset, then one [2, B] sample)."""
        self._check_batch(tensordict)
        k = self.tensor_keys
        obs_keys = list(self.actor_network.in_keys)
        subset = self._draw_subset()  # (REDQ-1)
        # the policy at s (with gradient) and at s' (used only inside the target), one draw
        now = tensordict.select(*obs_keys, strict=False)
        nxt = tensordict.get("next").select(*obs_keys, strict=False)
        actor_td = torch.stack([now.copy(), nxt.copy()], 0)
        action, log_prob = self._policy_sample(actor_td)  # [2, *B, A], [2, *B]
        log_prob = log_prob.reshape(actor_td.shape)  # [2, *B] with *B = [B] or [B, T]
        next_value, target = self.subset_target(tensordict, subset, action[1], log_prob[1])
        loss_qvalue, td_error = self._critic_loss(tensordict, target)  # (REDQ-3)
        loss_actor, q_actor = self._actor_terms(tensordict, action[0], log_prob[0])  # (REDQ-4)
        loss_alpha = self._alpha_loss(log_prob)  # (REDQ-5), over both halves as TorchRL
        tensordict.set(k.priority, td_error)
        out = {
            "loss_actor": self._reduce_loss(loss_actor),
            "loss_qvalue": self._reduce_loss(loss_qvalue),
            "loss_alpha": self._reduce_loss(loss_alpha),
            "alpha": self.alpha.detach(),
            "entropy": -log_prob.detach().mean(),
            "state_action_value_actor": q_actor,
            "action_log_prob_actor": log_prob[0].detach(),
            "next.state_value": next_value.detach(),
            "target_value": target.detach(),
        }
        return self._pack(out)

    def _pack(self, out: dict) -> TensorDict:
        scalars = {"alpha": out.pop("alpha"), "entropy": out.pop("entropy")}
        td_out = TensorDict(out, [])
        if self.reduction != "none" or self.scalar_output_mode == "non_tensor":
            for name, value in scalars.items():
                if self.reduction == "none":
                    td_out.set_non_tensor(name, value)
                else:
                    td_out.set(name, value)
        return td_out

    def qvalue_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """(REDQ-1)-(REDQ-3) alone, for the UTD critic updates per environment step.

        Draws the subset, then an action at s' only ([B, A]), so its random numbers differ from
        ``forward``'s; the equations are the same. Returns the reduced loss and
        ``{"td_error", "target_value"}``.
        """
        self._check_batch(tensordict)
        subset = self._draw_subset()
        nxt = tensordict.get("next").select(*self.actor_network.in_keys, strict=False).copy()
        with torch.no_grad():
            next_action, next_log_prob = self._policy_sample(nxt)
        _, target = self.subset_target(tensordict, subset, next_action, next_log_prob)
        loss, td_error = self._critic_loss(tensordict, target)
        return self._reduce_loss(loss), {"td_error": td_error, "target_value": target}

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(REDQ-4) and (REDQ-5) at s only, as Algorithm 1's policy update.

        Returns the reduced actor loss, the reduced temperature loss (over the current states'
        samples only, as the paper) and ``{"log_prob", "entropy"}``.
        """
        self._check_batch(tensordict)
        now = tensordict.select(*self.actor_network.in_keys, strict=False).copy()
        action, log_prob = self._policy_sample(now)
        loss_actor, _ = self._actor_terms(tensordict, action, log_prob)
        loss_alpha = self._alpha_loss(log_prob)
        metadata = {"log_prob": log_prob.detach(), "entropy": -log_prob.detach().mean()}
        return self._reduce_loss(loss_actor), self._reduce_loss(loss_alpha), metadata
