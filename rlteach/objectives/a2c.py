r"""Advantage actor-critic (Mnih et al., 2016), mirroring TorchRL 0.14's ``A2CLoss``.

A2C is the synchronous version of A3C: the policy follows the advantage-weighted score
function, the critic regresses on a bootstrapped target, and an entropy bonus keeps the policy
from collapsing too early:

.. math::

    \ell^{\pi}_t = -\log \pi_\theta(a_t|s_t)\, \hat A_t
        \quad \text{(A2C-1)  policy-gradient surrogate}

    \mathcal H_t = -\mathbb E_{a \sim \pi_\theta(\cdot|s_t)} \log \pi_\theta(a|s_t),
    \qquad \ell^{\mathcal H}_t = -\beta\, \mathcal H_t
        \quad \text{(A2C-2)  entropy bonus, as a loss to minimise}

    \ell^{V}_t = c_V\, d\big(V_\phi(s_t),\, \hat G_t\big)
        \quad \text{(A2C-3)  critic regression, scaled by critic\_coeff}

The total loss the optimiser minimises is the sum of the three reduced terms. The entropy is
exact when the distribution has a closed form (Categorical, Normal) and otherwise a Monte-Carlo
estimate :math:`-\frac1N \sum_{i} \log \pi(\tilde a_i|s)` with ``samples_mc_entropy`` = N
reparameterised draws (TanhNormal).

Reference: V. Mnih et al., "Asynchronous methods for deep reinforcement learning", ICML 2016.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, unravel_key
from tensordict.utils import NestedKey
from torch import nn
from torch.distributions import Distribution, Independent

from rlteach._checks import check_action, check_range, key_str
from rlteach.objectives._composite import refuse_composite
from rlteach.objectives.common import LossModule
from rlteach.objectives.functional import policy_gradient_objective
from rlteach.objectives.reinforce import (
    _PG_ESTIMATORS,
    check_clip_value,
    check_networks,
    critic_loss,
    critic_value,
    distribution,
    estimate_advantage,
)
from rlteach.value import ValueEstimators


def has_closed_form_entropy(dist: Distribution) -> bool:
    """True when the distribution's class implements ``entropy`` (looking inside Independent)."""
    while isinstance(dist, Independent):
        dist = dist.base_dist
    return type(dist).entropy is not Distribution.entropy


def entropy(dist: Distribution, samples_mc_entropy: int) -> torch.Tensor:
    """H[pi(.|s)] per sample, [*B, T, 1]: exact if possible, else a Monte-Carlo estimate.

    The Monte-Carlo draws are reparameterised (``rsample_and_log_prob`` when the distribution
    has it, as TorchRL does), so the estimate carries a gradient to the policy parameters.
    """
    if has_closed_form_entropy(dist):
        h = dist.entropy()
    else:
        shape = (samples_mc_entropy,)
        if hasattr(dist, "rsample_and_log_prob"):
            _, log_prob = dist.rsample_and_log_prob(shape)
        else:
            log_prob = dist.log_prob(dist.rsample(shape))
        h = -log_prob.mean(0)  # (A2C-2) H ~ -1/N sum_i log pi(a_i|s)
    return h.unsqueeze(-1)


class A2CLoss(LossModule):
    r"""Advantage actor-critic (Mnih et al., 2016): ``loss_objective``, ``loss_critic``, entropy.

    ====================  ============  ====================================================
    Symbol (key)          Shape         Meaning
    ====================  ============  ====================================================
    a (``action``)        [*B, T, ...]  the stored action, scored under the current policy
    Â (``advantage``)     [*B, T, 1]    advantage; estimated (GAE) when absent
    G (``value_target``)  [*B, T, 1]    regression target of the critic
    V (``state_value``)   [*B, T, 1]    the critic's output key
    β (entropy_coeff)     scalar        weight of the entropy bonus (0.01)
    c_V (critic_coeff)    scalar        weight of the critic loss (1.0; None drops it)
    loss_objective        []            (A2C-1), reduced; [*B, T] with "none"
    loss_critic           []            (A2C-3), reduced, only if critic_coeff is not None
    entropy               []            mean entropy, detached (logging), if entropy_bonus
    loss_entropy          []            (A2C-2), reduced, if entropy_bonus
    value_clip_fraction   []            only with ``clip_value`` and a critic loss
    ====================  ============  ====================================================

    Args:
        actor_network: a probabilistic policy with ``get_dist``.
        critic_network: V(s), writing ``"state_value"``.
        entropy_bonus: add the entropy terms (off as well when ``entropy_coeff`` is 0).
        samples_mc_entropy: number of draws for the Monte-Carlo entropy (default 1).
        entropy_coeff: β, default 0.01.
        critic_coeff: c_V, default 1.0; ``None`` drops the critic loss altogether.
        loss_critic_type: ``"l1"``, ``"l2"`` or ``"smooth_l1"`` (default).
        advantage_norm: TorchRL's running return normaliser; not supported (must be None).
        gamma: refused as in TorchRL: use ``make_value_estimator(gamma=...)``.
        separate_losses: parameters shared by actor and critic are trained by the actor loss only.
        functional: accepted for TorchRL compatibility; rlteach networks are plain modules.
        actor, critic: aliases of the first two arguments.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        clip_value: clip the value prediction to within this distance of ``"state_value"``.

    One departure from TorchRL, on purpose: with the V-trace estimator TorchRL evaluates
    log pi at the *deterministic action of the current policy* (the loss runs in deterministic
    sampling mode and its V-trace re-samples the action), not at the stored action. rlteach's
    V-trace uses the stored action by default, as in Espeholt et al. (2018);
    ``make_value_estimator("vtrace", log_pi_of="policy_sample")`` reproduces TorchRL.

    TorchRL behaviours matched here, which a learner may not expect:

    * The policy term is called ``loss_objective`` (not ``loss_actor`` as in ReinforceLoss), and
      the critic term ``loss_critic`` (not ``loss_value``).
    * The advantage is **not** detached in (A2C-1): one estimated inside the loss carries no
      gradient anyway, but an advantage you pass in with a graph is differentiated through.
    * ``critic_coeff`` multiplies the per-sample critic loss *before* the reduction, and
      ``loss_entropy`` is ``-entropy_coeff * entropy``: negative, to be minimised.
    * ``entropy`` is always a plain mean, whatever ``reduction`` says.
    * The loss works on a shallow copy of the batch: an estimated advantage is not written
      back into the caller's TensorDict (ReinforceLoss does write it).
    * The action key follows the actor: if the actor samples into another key, the loss reads
      that key.
    * "action_log_prob" is not read (only passed to V-trace): the log-probability is recomputed.
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read or written; ``sample_log_prob`` is only passed on to the estimator."""

        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "state_value"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        sample_log_prob: NestedKey = "action_log_prob"

    default_value_estimator = ValueEstimators.GAE
    supported_value_estimators = _PG_ESTIMATORS

    _schedulable_buffers = frozenset({"entropy_coeff", "critic_coeff", "clip_value"})

    def __init__(
        self,
        actor_network: nn.Module | None = None,
        critic_network: nn.Module | None = None,
        *,
        entropy_bonus: bool = True,
        samples_mc_entropy: int = 1,
        entropy_coeff: float | None = None,
        critic_coeff: float | None = 1.0,
        loss_critic_type: str = "smooth_l1",
        advantage_norm=None,
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
        check_networks("A2CLoss", actor_network, critic_network)
        refuse_composite("A2CLoss", actor_network, entropy_coeff)  # TorchRL's multi-head actors
        self._refuse_gamma(gamma, estimator="gae")
        if advantage_norm is not None:
            raise NotImplementedError(
                "A2CLoss(advantage_norm=...) is not supported by rlteach; standardise the "
                "advantage with make_value_estimator('gae', average_gae=True) instead."
            )
        entropy_coeff = 0.01 if entropy_coeff is None else entropy_coeff
        check_range("entropy_coeff", entropy_coeff)
        if critic_coeff is not None:
            check_range("critic_coeff", critic_coeff)
        if isinstance(samples_mc_entropy, bool) or not isinstance(samples_mc_entropy, int):
            raise ValueError(f"samples_mc_entropy must be an int >= 1, got {samples_mc_entropy!r}.")
        check_range("samples_mc_entropy", samples_mc_entropy, 1)
        reduction = self._check_options(reduction, loss_critic_type=loss_critic_type)
        clip = check_clip_value(clip_value)
        super().__init__()
        self._register_network("actor_network", actor_network)
        self._register_network("critic_network", critic_network)
        self.samples_mc_entropy = samples_mc_entropy
        # As in TorchRL: a zero coefficient switches the entropy terms off entirely.
        self.entropy_bonus = bool(entropy_bonus and entropy_coeff)
        self.register_buffer("entropy_coeff", torch.tensor(float(entropy_coeff)))
        if critic_coeff is None:
            self.critic_coeff = None
        else:
            self.register_buffer("critic_coeff", torch.tensor(float(critic_coeff)))
        self.register_buffer("clip_value", clip)
        self.loss_critic_type = loss_critic_type
        self.reduction = reduction
        self.separate_losses = separate_losses
        self.functional = functional
        # The action (and its log-prob) keys follow the actor's sampling keys.
        sample_keys = getattr(actor_network, "dist_sample_keys", None)
        log_prob_keys = getattr(actor_network, "log_prob_keys", None)
        if sample_keys and log_prob_keys:
            self.set_keys(action=sample_keys[0], sample_log_prob=log_prob_keys[0])

    @property
    def out_keys(self) -> tuple[str, ...]:
        """``loss_objective``, then ``loss_critic`` and the entropy entries when configured."""
        keys = ["loss_objective"]
        if self.critic_coeff is not None:
            keys.append("loss_critic")
        if self.entropy_bonus:
            keys += ["entropy", "loss_entropy"]
        return tuple(keys)

    @property
    def in_keys(self) -> list[NestedKey]:
        """The action, the next-step flags and reward, and the networks' inputs."""
        k = self.tensor_keys
        keys = [k.action, *(unravel_key(("next", x)) for x in (k.reward, k.done, k.terminated))]
        keys += list(self.actor_network.in_keys)
        keys += [unravel_key(("next", x)) for x in self.actor_network.in_keys]
        if self.critic_coeff is not None:
            keys += list(self.critic_network.in_keys)
        return list(dict.fromkeys(keys))

    def _check_constant_action(self, action: torch.Tensor) -> None:
        if action.requires_grad:
            raise RuntimeError(
                f"A2CLoss: the stored action {self.tensor_keys.action!r} requires grad; the "
                f"score function needs a constant action. Store action.detach()."
            )

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Compute the A2C loss terms from a batch (see the class docstring for the keys)."""
        td = tensordict.clone(False)  # estimator outputs stay out of the caller's TensorDict
        critic = self.critic_coeff is not None
        clip = critic and self.clip_value is not None
        # Every check first: a missing key or a NaN fails before anything is computed.
        self._read_inputs(td, "action")
        if td.get(self.tensor_keys.advantage, None) is None:
            estimate_advantage(self, td)
        names = ("action", "advantage")
        names += ("value_target",) if critic else ()
        names += ("value",) if clip else ()
        x = self._read_inputs(td, *names)
        self._check_constant_action(x["action"])

        dist = distribution(self.actor_network, td)
        check_action(type(self).__name__, dist, x["action"], key_str(self.tensor_keys.action))
        log_prob = dist.log_prob(x["action"]).unsqueeze(-1)  # [*B, T, 1]
        # (A2C-1) advantage-weighted score function
        out = {"loss_objective": policy_gradient_objective(log_prob, x["advantage"])}
        if self.entropy_bonus:
            h = entropy(dist, self.samples_mc_entropy)
            out["entropy"] = h.detach().mean()  # logging only
            out["loss_entropy"] = -self.entropy_coeff * h  # (A2C-2) bonus, as a loss
        if critic:
            value = critic_value(
                self.critic_network,
                td,
                self.tensor_keys.value,
                frozen={id(p) for p in self.actor_network.parameters()}
                if self.separate_losses
                else None,
            )
            loss_critic, clip_fraction = critic_loss(
                value,
                x["value_target"],
                self.loss_critic_type,
                old_value=x["value"].clone() if clip else None,
                clip_value=self.clip_value if clip else None,
            )
            out["loss_critic"] = self.critic_coeff * loss_critic  # (A2C-3)
            if clip_fraction is not None:
                out["value_clip_fraction"] = clip_fraction
        for name in out:
            if name.startswith("loss_"):
                out[name] = self._reduce_loss(out[name]).squeeze(-1)
        return TensorDict(out, batch_size=[])
