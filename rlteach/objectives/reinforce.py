r"""REINFORCE with a learned baseline (Williams, 1992), mirroring TorchRL 0.14's ``ReinforceLoss``.

The policy-gradient theorem turns the gradient of the expected return into an expectation of
the *score function* :math:`\nabla_\theta \log \pi_\theta(a|s)` weighted by how good the action
turned out to be. Subtracting a learned baseline :math:`V_\phi(s)` from the return leaves the
gradient unbiased and lowers its variance; what remains is the advantage :math:`\hat A`:

.. math::

    \log \pi_\theta(a_t|s_t) \quad \text{(REINFORCE-1)  score function of the stored action}

    \ell^{\pi}_t = -\log \pi_\theta(a_t|s_t)\, \mathrm{sg}[\hat A_t]
        \quad \text{(REINFORCE-2)  surrogate whose gradient is the policy gradient}

    \ell^{V}_t = d\big(V_\phi(s_t),\, \hat G_t\big)
        \quad \text{(REINFORCE-3)  baseline regression on the value target}

``sg`` is stop-gradient and :math:`d` the distance ``loss_critic_type`` (``"smooth_l1"`` by
default). The advantage and value target come from the batch or, when the ``"advantage"`` key
is absent, from the loss's value estimator (GAE with gamma 0.99, lambda 0.95 by default).

This module also holds the pieces A2C reuses (``a2c.py`` imports them): the score of the
stored action, the critic regression with optional value clipping, and the advantage estimate.

Reference: R. J. Williams, "Simple statistical gradient-following algorithms for connectionist
reinforcement learning", Machine Learning 8, 229-256 (1992).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, unravel_key
from tensordict.nn import InteractionType, set_interaction_type
from tensordict.utils import NestedKey
from torch import nn
from torch.func import functional_call

from rlteach._checks import check_action, check_finite, check_range, key_str
from rlteach.objectives.common import LossModule
from rlteach.objectives.functional import policy_gradient_objective
from rlteach.objectives.utils import distance_loss
from rlteach.value import ValueEstimators

# The estimators a policy-gradient loss can take its advantage from (TorchRL also lists its
# multi-agent GAE, which rlteach.value does not have).
_PG_ESTIMATORS = (
    ValueEstimators.TD0,
    ValueEstimators.TD1,
    ValueEstimators.TDLambda,
    ValueEstimators.GAE,
    ValueEstimators.MAGAE,
    ValueEstimators.VTrace,
)


def check_networks(owner: str, actor_network, critic_network) -> None:
    """Both networks are required (TorchRL raises the same ``TypeError``)."""
    if actor_network is None or critic_network is None:
        raise TypeError(
            f"{owner} needs both an actor_network (the policy) and a critic_network (the "
            f"baseline V(s)); got actor_network={type(actor_network).__name__}, "
            f"critic_network={type(critic_network).__name__}."
        )


def check_clip_value(clip_value) -> torch.Tensor | None:
    """``clip_value`` is ``None`` or a positive number (a one-element tensor is accepted)."""
    if clip_value is None:
        return None
    if isinstance(clip_value, torch.Tensor) and clip_value.numel() != 1:
        raise ValueError(
            f"clip_value must be a positive float or a one-element tensor, got a tensor of "
            f"shape {list(clip_value.shape)}."
        )
    check_range("clip_value", clip_value, 0.0, low_open=True)
    return torch.as_tensor(clip_value, dtype=torch.float32).reshape(())


def estimate_advantage(loss: LossModule, td: TensorDictBase) -> None:
    """Write ``advantage`` and ``value_target`` into ``td`` with ``loss.value_estimator``.

    TorchRL calls its estimator with the critic's parameters *detached*, so neither output
    carries a gradient. rlteach's estimators already hold the value network out of the graph;
    the outputs, and the values V(s), V(s') they write, are detached here as well so that an
    estimator you plug in yourself cannot leak a gradient into the critic's regression target.
    """
    keys = loss.tensor_keys
    # The estimator needs these; read them now so a missing one is named with its set_keys fix,
    # and refuse NaN in the critic's inputs before the estimator writes into td.
    loss._read_inputs(td, next_names=("reward", "done"))  # noqa: SLF001 (its own loss's check)
    critic = loss.value_estimator.value_network
    for key in getattr(critic, "in_keys", []):
        for where in (key, unravel_key(("next", key))):
            check_finite(type(loss).__name__, **{f"the critic input {where!r}": td.get(where, None)})
    # TorchRL runs a loss's forward in "deterministic sampling mode": an actor called inside the
    # estimator (V-trace with log_pi_of="policy_sample") takes its deterministic action.
    with set_interaction_type(InteractionType.DETERMINISTIC):
        loss.value_estimator(td)
    for key in (keys.advantage, keys.value_target, keys.value, unravel_key(("next", keys.value))):
        if td.get(key, None) is not None:
            td.set(key, td.get(key).detach())


def distribution(actor_network: nn.Module, td: TensorDictBase) -> torch.distributions.Distribution:
    """pi_theta(.|s) for the batch; the actor writes its intermediate outputs into a copy of td."""
    return actor_network.get_dist(td.select(*actor_network.in_keys, strict=False).copy())


def critic_value(
    critic_network: nn.Module,
    td: TensorDictBase,
    value_key: NestedKey,
    *,
    frozen: set[int] | None = None,
) -> torch.Tensor:
    """V_phi(s) for the batch, with the parameters whose ``id`` is in ``frozen`` detached.

    ``frozen`` implements ``separate_losses``: parameters the critic shares with the actor get
    no gradient from the critic loss, so they are trained by the policy loss alone.
    """
    inputs = td.select(*critic_network.in_keys, strict=False)
    if not frozen:
        return critic_network(inputs).get(value_key)
    params = {
        name: p.detach() if id(p) in frozen else p
        for name, p in critic_network.named_parameters()
    }
    return functional_call(critic_network, params, (inputs,)).get(value_key)


def critic_loss(
    state_value: torch.Tensor,
    value_target: torch.Tensor,
    loss_critic_type: str,
    *,
    old_value: torch.Tensor | None = None,
    clip_value: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Per-sample baseline regression, optionally clipped around the old value estimate.

    (VALUE-1) l = d(G, V)
    (VALUE-2) with clipping (PPO-style, Schulman et al. 2017 code): V_clip = V_old + clamp(V -
    V_old, -c, c) and l = max(d(G, V), d(G, V_clip)), the more pessimistic of the two.

    Returns the loss and, when clipping, the fraction of samples whose value was clipped.
    """
    loss = distance_loss(value_target, state_value, loss_critic_type)  # (VALUE-1)
    if clip_value is None:
        return loss, None
    step = state_value - old_value
    clipped_step = step.clamp(-clip_value, clip_value)  # (VALUE-2)
    with torch.no_grad():
        clip_fraction = (step != clipped_step).to(state_value.dtype).mean()
    loss_clipped = distance_loss(value_target, old_value + clipped_step, loss_critic_type)
    return torch.maximum(loss, loss_clipped), clip_fraction


class ReinforceLoss(LossModule):
    r"""REINFORCE with a value baseline (Williams, 1992): ``loss_actor`` and ``loss_value``.

    ====================  ============  ====================================================
    Symbol (key)          Shape         Meaning
    ====================  ============  ====================================================
    a (``action``)        [*B, T, ...]  the stored action; it is scored, never resampled
    Â (``advantage``)     [*B, T, 1]    advantage; estimated (GAE) when absent
    G (``value_target``)  [*B, T, 1]    regression target of the baseline
    V (``state_value``)   [*B, T, 1]    the critic's output key
    loss_actor            []            (REINFORCE-2), reduced; [*B, T] with "none"
    loss_value            []            (REINFORCE-3), reduced; [*B, T] with "none"
    value_clip_fraction   []            only with ``clip_value``
    ====================  ============  ====================================================

    Args:
        actor_network: a probabilistic policy (``ProbabilisticTensorDictSequential``) with
            ``get_dist``.
        critic_network: V(s), writing ``"state_value"``.
        delay_value: keep a target critic (a frozen copy, updated by ``SoftUpdate`` /
            ``HardUpdate``) from which the estimator bootstraps V(s'); V(s) still comes from
            the critic. As TorchRL; needs ``functional=True``.
        loss_critic_type: ``"l1"``, ``"l2"`` or ``"smooth_l1"`` (default, as TorchRL).
        gamma: refused, as in TorchRL: pass it to ``make_value_estimator(gamma=...)``.
        separate_losses: parameters shared by actor and critic are trained by the actor loss
            only.
        functional: accepted for TorchRL compatibility; rlteach networks are plain modules.
        actor, critic: aliases of the first two arguments.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        clip_value: clip the value prediction to within this distance of the batch's
            ``"state_value"`` (VALUE-2).

    One departure from TorchRL, on purpose: with the V-trace estimator TorchRL evaluates
    log pi at the *deterministic action of the current policy* (the loss runs in deterministic
    sampling mode and its V-trace re-samples the action), not at the stored action. rlteach's
    V-trace uses the stored action by default, as in Espeholt et al. (2018);
    ``make_value_estimator("vtrace", log_pi_of="policy_sample")`` reproduces TorchRL.

    TorchRL behaviours matched here, which a learner may not expect:

    * The "action_log_prob" written by the acting policy is *not* read: the log-probability is
      recomputed from the stored action under the current parameters.
    * When ``"advantage"`` is absent, the estimator writes ``advantage``, ``value_target`` and
      ``state_value`` into the caller's TensorDict (A2C, by contrast, works on a copy), all
      without gradient.
    * ``loss_value`` uses the *same* reduction as ``loss_actor``; there is no 1/2 in ``"l2"``.
    * With ``reduction="none"`` the trailing singleton dim is squeezed: losses are [*B, T].
    * With ``clip_value`` and the advantage estimated inside the loss, ``"state_value"`` was just
      computed by the current critic, so clipping changes nothing (TorchRL says so too).
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read or written; ``sample_log_prob`` is only passed on to the estimator."""

        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "state_value"
        sample_log_prob: NestedKey = "action_log_prob"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_value_estimator = ValueEstimators.GAE
    supported_value_estimators = _PG_ESTIMATORS
    out_keys = ("loss_actor", "loss_value")

    _schedulable_buffers = frozenset({"clip_value"})

    def __init__(
        self,
        actor_network: nn.Module | None = None,
        critic_network: nn.Module | None = None,
        *,
        delay_value: bool = False,
        loss_critic_type: str = "smooth_l1",
        gamma: float | None = None,
        separate_losses: bool = False,
        functional: bool = True,
        actor: nn.Module | None = None,
        critic: nn.Module | None = None,
        reduction: str | None = None,
        clip_value: float | None = None,
    ) -> None:
        actor_network = actor if actor is not None else actor_network
        critic_network = critic if critic is not None else critic_network
        check_networks("ReinforceLoss", actor_network, critic_network)
        self._refuse_gamma(gamma, estimator="gae")
        if delay_value and not functional:
            raise RuntimeError(
                "ReinforceLoss: delay_value=True and functional=False are incompatible (as in "
                "TorchRL, where the target critic is a set of functional parameters)."
            )
        reduction = self._check_options(reduction, loss_critic_type=loss_critic_type)
        clip = check_clip_value(clip_value)
        super().__init__()
        self.delay_value = delay_value
        self.loss_critic_type = loss_critic_type
        self.reduction = reduction
        self.separate_losses = separate_losses
        self.functional = functional
        self._register_network("actor_network", actor_network)
        self._register_network("critic_network", critic_network, create_target=delay_value)
        self.register_buffer("clip_value", clip)

    def make_value_estimator(self, value_type=None, **hyperparams) -> ReinforceLoss:
        """As :meth:`LossModule.make_value_estimator`; with ``delay_value`` the estimator
        bootstraps V(s') from ``target_critic_network`` (V(s) from the critic), as TorchRL."""
        super().make_value_estimator(value_type, **hyperparams)
        estimator = self._value_estimator
        if self.delay_value and getattr(estimator, "value_network", None) is self.critic_network:
            estimator.use_target_value_network(self.target_critic_network)
        return self

    @property
    def in_keys(self) -> list[NestedKey]:
        """The action, the next-step flags and reward, and the networks' inputs (now and next)."""
        k = self.tensor_keys
        keys = [k.action, *(unravel_key(("next", x)) for x in (k.reward, k.done, k.terminated))]
        keys += list(self.actor_network.in_keys)
        keys += [unravel_key(("next", x)) for x in self.actor_network.in_keys]
        keys += list(self.critic_network.in_keys)
        return list(dict.fromkeys(keys))

    def _frozen_for_critic(self) -> set[int] | None:
        """ids of actor parameters the critic loss must not train (``separate_losses``)."""
        return {id(p) for p in self.actor_network.parameters()} if self.separate_losses else None

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Compute ``loss_actor`` and ``loss_value`` (and ``value_clip_fraction``) from a batch."""
        td = tensordict
        clip = self.clip_value is not None
        # Every check first: a missing key or a NaN fails before anything is written.
        action = self._read_inputs(td, "action")["action"]
        dist = distribution(self.actor_network, td)  # the actor reads none of what is estimated
        check_action(type(self).__name__, dist, action, key_str(self.tensor_keys.action))
        if td.get(self.tensor_keys.advantage, None) is None:
            estimate_advantage(self, td)  # written into the caller's td, as TorchRL does
        names = ("action", "advantage", "value_target") + (("value",) if clip else ())
        x = self._read_inputs(td, *names)

        # (REINFORCE-1) score function of the stored action under the current policy
        log_prob = dist.log_prob(x["action"])
        if log_prob.shape == x["advantage"].shape[:-1]:
            log_prob = log_prob.unsqueeze(-1)  # [*B, T] -> [*B, T, 1], like the advantage
        # (REINFORCE-2) surrogate; the advantage is a constant for the policy gradient
        loss_actor = policy_gradient_objective(log_prob, x["advantage"].detach())

        # (REINFORCE-3) baseline regression
        value = critic_value(
            self.critic_network, td, self.tensor_keys.value, frozen=self._frozen_for_critic()
        )
        loss_value, clip_fraction = critic_loss(
            value,
            x["value_target"],
            self.loss_critic_type,
            old_value=x["value"].clone() if clip else None,
            clip_value=self.clip_value,
        )

        out = {
            "loss_actor": self._reduce_loss(loss_actor).squeeze(-1),
            "loss_value": self._reduce_loss(loss_value).squeeze(-1),
        }
        if clip_fraction is not None:
            out["value_clip_fraction"] = clip_fraction
        return TensorDict(out, batch_size=[])
