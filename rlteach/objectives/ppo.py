r"""Proximal policy optimisation: the plain, clipped and KL-penalised surrogate losses.

Schulman, Wolski, Dhariwal, Radford & Klimov (2017), *Proximal Policy Optimization Algorithms*,
arXiv:1707.06347. The equations below carry the tags used in the code.

.. math::

    r_t(\theta) = \frac{\pi_\theta(a_t|s_t)}{\pi_{\theta_\text{old}}(a_t|s_t)}
        = \exp\big(\log\pi_\theta(a_t|s_t) - \log\pi_{\theta_\text{old}}(a_t|s_t)\big)
        \qquad \text{(PPO-1) importance ratio}

    L^\text{CPI}_t = r_t \hat A_t \qquad \text{(PPO-2) conservative policy iteration surrogate}

    L^\text{CLIP}_t = \min\big(r_t \hat A_t,\ \text{clip}(r_t, 1-\epsilon, 1+\epsilon)\hat A_t\big)
        \qquad \text{(PPO-3) clipped surrogate}

    L^\text{KLPEN}_t = r_t \hat A_t - \beta\,\text{KL}[\pi_{\theta_\text{old}}(\cdot|s_t),
        \pi_\theta(\cdot|s_t)] \qquad \text{(PPO-4) KL-penalised surrogate}

    \beta \leftarrow \beta \cdot \text{increment} \text{ if } d > 1.5\,d_\text{targ}, \quad
    \beta \leftarrow \beta \cdot \text{decrement} \text{ if } d < d_\text{targ}/1.5
        \qquad \text{(PPO-5) adaptive KL coefficient}

    L^\text{VF}_t = \ell\big(V_\phi(s_t), V^\text{targ}_t\big) \qquad \text{(PPO-6) critic loss}

    \text{loss} = -L_t + c_1 L^\text{VF}_t - c_2 S[\pi_\theta](s_t)
        \qquad \text{(PPO-7) the three returned terms}

The three terms are returned separately (``loss_objective``, ``loss_critic``, ``loss_entropy``)
as TorchRL 0.14 does: sum them before calling ``backward``.

Where rlteach follows TorchRL 0.14.1 to the number (and the tests prove it)
----------------------------------------------------------------------------
* The ratio is clipped in log space: ``log r`` is clamped to ``[log(1-eps), log(1+eps)]`` and
  ``clip_fraction`` is the fraction of samples whose **log**-ratio was moved by the clamp.
* ``kl_approx`` is the mean of ``log pi_old - log pi_theta`` (the "k1" estimator: it can be
  negative), detached. ``ESS`` is ``(sum w)^2 / sum w^2 / B`` with ``w = r`` over the **first**
  batch dim only (a ``[B, T]`` batch gives one ESS per time step), detached.
* Logging entries (``entropy``, ``kl_approx``, ``clip_fraction``, ``ESS``, ...) are means over
  the batch; only ``loss_*`` entries follow ``reduction``. ``KLPENPPOLoss``'s ``kl`` is the
  detached per-sample KL of shape ``[*B, 1]``, not reduced.
* ``loss_entropy = -entropy_coeff * H``: the minus sign sits in the loss, so adding it to the
  total loss *rewards* entropy. Entropy is analytic when the distribution has a closed form
  (Categorical, Normal), else a Monte-Carlo estimate ``-mean_k log pi(a_k)`` over
  ``samples_mc_entropy`` reparameterised draws (the tanh-Gaussian).
* ``normalize_advantage`` standardises with the unbiased std floored at 1e-6, and only when the
  advantage has more than one element.
* ``loss_critic`` is already multiplied by ``critic_coeff``; ``critic_coeff=None`` with a
  critic means 1.0, and ``critic_coeff=0`` drops the critic loss. ``explained_variance``
  (``1 - Var[y - V] / Var[y]``, population variances over the first batch dim) is logged next
  to it. ``clip_value`` keeps the larger of the unclipped and clipped value losses.
* KLPEN's β is a buffer updated **in place** at the end of each ``forward`` (PPO-5), after the
  whole loss was formed (a refused batch leaves β as it was). TorchRL does this with
  ``beta.data *= ...``, which autograd does not see: the backward pass of ``beta * KL`` then
  uses the *new* β while the loss value used the old one. rlteach follows the paper by default
  (value and gradient both use the β of this step); ``beta_update_in_graph=True`` reproduces
  TorchRL's gradient.

Not mirrored (TorchRL extras outside the PPO paper): composite (multi-head) action
distributions and per-head entropy coefficients, ``advantage_norm``, ``delay_actor``,
``max_importance_ratio``, ``normalize_advantage_exclude_dims``, ``functional=False``, padding
masks read from the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, unravel_key
from tensordict.nn import ProbabilisticTensorDictModule
from tensordict.utils import NestedKey
from torch import distributions as D
from torch import nn

from rlteach._checks import check_action, check_finite, check_range, key_str
from rlteach.modules import TanhNormal
from rlteach.objectives._composite import refuse_composite
from rlteach.objectives.common import LossModule
from rlteach.objectives.functional import (
    ppo_beta_factor,
    ppo_clip_objective,
    ppo_kl_penalty_objective,
)
from rlteach.objectives.utils import distance_loss
from rlteach.value import ValueEstimators

# The std floor of the advantage standardisation: float32's resolution, as in TorchRL.
_ADVANTAGE_STD_FLOOR = torch.finfo(torch.float).resolution


def _has_analytic_entropy(dist: D.Distribution) -> bool:
    """True when the distribution's class implements a closed-form entropy."""
    if isinstance(dist, D.Independent):
        return _has_analytic_entropy(dist.base_dist)
    return type(dist).entropy is not D.Distribution.entropy


def _has_analytic_kl(p: D.Distribution, q: D.Distribution) -> bool:
    """True when torch has a closed-form KL(p || q) for these two distributions."""
    if isinstance(p, D.Independent) and isinstance(q, D.Independent):
        return p.reinterpreted_batch_ndims == q.reinterpreted_batch_ndims and _has_analytic_kl(
            p.base_dist, q.base_dist
        )
    return any(
        issubclass(type(p), sp) and issubclass(type(q), sq)
        for sp, sq in D.kl._KL_REGISTRY  # noqa: SLF001 (torch's table of analytic KLs)
        if D.Independent not in (sp, sq) and D.TransformedDistribution not in (sp, sq)
    )


def _gaussian_of(dist: TanhNormal) -> D.Distribution:
    """The Gaussian N(loc, scale²) that ``dist`` squashes, with the same event dims."""
    normal = D.Normal(dist.loc, dist.scale)
    return D.Independent(normal, dist.event_dims) if dist.event_dims else normal


def _same_squashing(p: TanhNormal, q: TanhNormal) -> bool:
    return (
        p.event_dims == q.event_dims
        and p.low.shape == q.low.shape
        and p.high.shape == q.high.shape
        and bool((p.low == q.low).all())
        and bool((p.high == q.high).all())
    )


def _closed_form_kl(p: D.Distribution, q: D.Distribution) -> torch.Tensor | None:
    r"""KL(p ‖ q) in closed form, or ``None`` when there is none for this pair.

    A bijection f leaves the KL unchanged, :math:`\text{KL}(f_\# p \,\|\, f_\# q) =
    \text{KL}(p \,\|\, q)` (KL-1): the Jacobian terms of the two densities cancel in the log-ratio.
    So two tanh-Gaussians squashed into the same box have the KL of their Gaussians, in closed
    form -- rlteach's :class:`~rlteach.modules.TanhNormal` and any ``TransformedDistribution``
    pair with equal transforms (TorchRL's ``TanhNormal``), as TorchRL 0.14's ``has_analytic_kl``
    resolves them.
    """
    if isinstance(p, TanhNormal) and isinstance(q, TanhNormal):
        if not _same_squashing(p, q):
            return None
        return D.kl_divergence(_gaussian_of(p), _gaussian_of(q))  # (KL-1)
    if isinstance(p, D.TransformedDistribution) and isinstance(q, D.TransformedDistribution):
        if p.transforms != q.transforms or p.event_shape != q.event_shape:
            return None
        return _closed_form_kl(p.base_dist, q.base_dist)  # (KL-1)
    if isinstance(p, D.Independent) and isinstance(q, D.Independent):
        if p.reinterpreted_batch_ndims != q.reinterpreted_batch_ndims:
            return None
        base = _closed_form_kl(p.base_dist, q.base_dist)
        if base is None:
            return None
        n = p.reinterpreted_batch_ndims
        return base.sum(dim=tuple(range(-n, 0))) if n else base
    if _has_analytic_kl(p, q):
        return D.kl_divergence(p, q)
    return None


class PPOLoss(LossModule):
    r"""The unclipped PPO loss (PPO-2), and the pieces every PPO variant shares.

    Schulman et al. (2017), *Proximal Policy Optimization Algorithms*. The subclasses
    :class:`ClipPPOLoss` (PPO-3) and :class:`KLPENPPOLoss` (PPO-4, PPO-5) replace the surrogate;
    the log-ratio, entropy bonus and critic loss live here.

    =================== ============= ===========================================================
    Symbol / key        Shape         Meaning
    =================== ============= ===========================================================
    ``action``          ``[*B, ...]`` the action taken
    ``action_log_prob`` ``[*B]``      log π_old(a|s), written by the acting policy
    ``advantage``       ``[*B, 1]``   Â; computed with the value estimator (GAE) when absent
    ``value_target``    ``[*B, 1]``   V^targ, regression target of the critic
    ``state_value``     ``[*B, 1]``   V(s) at collection time (read by ``clip_value``)
    ``loss_objective``  ``[]``        −surrogate, reduced (``[*B]`` with ``reduction="none"``)
    ``loss_entropy``    ``[]``        −c₂·H, reduced
    ``loss_critic``     ``[]``        c₁·ℓ(V, V^targ), reduced
    ``entropy``         ``[]``        mean entropy, detached (logging)
    ``kl_approx``       ``[]``        mean of log π_old − log π_θ, detached (logging)
    =================== ============= ===========================================================

    Args:
        actor_network: a ``ProbabilisticTensorDictSequential`` writing the action distribution.
        critic_network: a ``TensorDictModule`` writing ``"state_value"`` (may be ``None`` when
            the advantage and no critic loss are wanted: ``critic_coeff`` must then be None/0).
        entropy_bonus: add ``loss_entropy``. samples_mc_entropy: draws for a Monte-Carlo entropy.
        entropy_coeff: c₂ (default 0.01). critic_coeff: c₁ (None -> 1.0 with a critic; 0 -> no
            critic loss). loss_critic_type: ``"l1"``, ``"l2"`` or ``"smooth_l1"``.
        log_explained_variance: also return ``explained_variance``.
        normalize_advantage: standardise Â over the batch before using it.
        separate_losses: the critic loss sends no gradient to parameters the actor shares.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        clip_value: if a float δ, clip V(s) to V_old(s) ± δ in the critic loss (PPO2-style).
        functional: accepted for TorchRL code and stored; no effect. TorchRL's ``functional=True``
            pulls the parameters out of the networks to call them statelessly; rlteach's networks
            are always the plain modules passed in, so both values give the same loss.
        device: the device of the loss's own buffers (``entropy_coeff``, ``critic_coeff``,
            ``clip_value``, ``clip_epsilon_*``, ``beta``), as in TorchRL; the networks are not
            moved. ``None``: the default device.
    """

    @dataclass
    class _AcceptedKeys:
        """Every TensorDict key a PPO loss reads; rename with ``set_keys``."""

        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "state_value"
        sample_log_prob: NestedKey = "action_log_prob"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_value_estimator = ValueEstimators.GAE
    supported_value_estimators = (
        ValueEstimators.TD0,
        ValueEstimators.TD1,
        ValueEstimators.TDLambda,
        ValueEstimators.GAE,
        ValueEstimators.MAGAE,
        ValueEstimators.VTrace,
    )

    _schedulable_buffers = frozenset({"entropy_coeff", "critic_coeff", "clip_value"})

    def __init__(
        self,
        actor_network: nn.Module,
        critic_network: nn.Module | None = None,
        *,
        entropy_bonus: bool = True,
        samples_mc_entropy: int = 1,
        entropy_coeff: float | None = None,
        log_explained_variance: bool = True,
        critic_coeff: float | None = None,
        loss_critic_type: str = "smooth_l1",
        normalize_advantage: bool = False,
        gamma: float | None = None,
        separate_losses: bool = False,
        reduction: str | None = None,
        clip_value: float | None = None,
        functional: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        owner = type(self).__name__
        # ---- every check first: a refused call changes nothing
        self._refuse_gamma(gamma, estimator="gae")
        if actor_network is None:
            raise TypeError(f"{owner} needs an actor_network.")
        refuse_composite(owner, actor_network, entropy_coeff)  # TorchRL's multi-head actors
        if critic_coeff is None and critic_network is not None:
            critic_coeff = 1.0
        elif critic_coeff == 0:
            critic_coeff = None  # as TorchRL: a zero weight drops the critic loss entirely
        if critic_network is None and critic_coeff is not None:
            raise TypeError(
                f"{owner}: critic_coeff={critic_coeff} needs a critic_network; pass one, or "
                f"critic_coeff=None to train the actor alone on a given advantage."
            )
        reduction = self._check_options(reduction, loss_critic_type=loss_critic_type)
        entropy_coeff = 0.01 if entropy_coeff is None else entropy_coeff
        check_range("entropy_coeff", entropy_coeff)
        if critic_coeff is not None:
            check_range("critic_coeff", critic_coeff, 0.0)
        if isinstance(samples_mc_entropy, bool) or not isinstance(samples_mc_entropy, int):
            raise ValueError(f"samples_mc_entropy must be an int >= 1, got {samples_mc_entropy!r}.")
        check_range("samples_mc_entropy", samples_mc_entropy, 1)
        if isinstance(clip_value, bool):
            raise ValueError(
                f"{owner}: clip_value must be a float or None, got {clip_value}. (Only "
                f"ClipPPOLoss accepts clip_value=True, meaning 'use clip_epsilon'.)"
            )
        if clip_value is not None:
            check_range("clip_value", clip_value, 0.0, low_open=True)

        super().__init__()
        self._register_network("actor_network", actor_network)
        if critic_network is not None:
            self._register_network("critic_network", critic_network)
        else:
            self.critic_network = None
        self.entropy_bonus = entropy_bonus
        self.samples_mc_entropy = samples_mc_entropy
        self.log_explained_variance = log_explained_variance
        self.loss_critic_type = loss_critic_type
        self.normalize_advantage = normalize_advantage
        self.separate_losses = separate_losses
        self.reduction = reduction
        # Coefficients are buffers, as in TorchRL, so a schedule can change them in place.
        # device=: where the loss's own buffers live (TorchRL's meaning); the networks stay put
        self._buffer_device = None if device is None else torch.device(device)
        self.functional = functional  # accepted; rlteach's networks are always plain modules
        self.register_buffer(
            "entropy_coeff", torch.tensor(float(entropy_coeff), device=self._buffer_device)
        )
        self.register_buffer(
            "critic_coeff",
            None
            if critic_coeff is None
            else torch.tensor(float(critic_coeff), device=self._buffer_device),
        )
        self.register_buffer(
            "clip_value",
            None
            if clip_value is None
            else torch.tensor(float(clip_value), device=self._buffer_device),
        )
        # The action and log-prob keys follow the actor's sampling keys, as in TorchRL (e.g.
        # ("agents", "action_log_prob") for a multi-agent actor); set_keys still overrides them.
        sample_keys = getattr(actor_network, "dist_sample_keys", None)
        log_prob_keys = getattr(actor_network, "log_prob_keys", None)
        if sample_keys and log_prob_keys:
            self.set_keys(action=sample_keys[0], sample_log_prob=log_prob_keys[0])

    @property
    def out_keys(self) -> list[str]:
        explained = self.critic_coeff is not None and self.log_explained_variance
        return self._torchrl_out_keys(["kl_approx"], ["explained_variance"] if explained else [])

    def _torchrl_out_keys(self, after_objective=(), tail=()) -> list[str]:
        """TorchRL's ``out_keys``: the outputs a keyword call returns, in TorchRL's order (a
        subset of ``out_keys``, which lists everything ``forward`` writes)."""
        keys = ["loss_objective", *after_objective]
        if self.entropy_bonus:
            keys += ["entropy", "loss_entropy"]
        if self.critic_coeff is not None:
            keys.append("loss_critic")
            if self.clip_value is not None:
                keys.append("value_clip_fraction")
        return keys + list(tail)

    @property
    def _dispatch_out_keys(self) -> list[str]:
        return self._torchrl_out_keys()

    @property
    def in_keys(self) -> list[NestedKey]:
        keys = super().in_keys  # the actor's and critic's inputs
        keys += [unravel_key(("next", key)) for key in self.actor_network.in_keys]
        keys += [self.tensor_keys.action, self.tensor_keys.sample_log_prob]
        for name in ("reward", "done", "terminated"):
            keys.append(unravel_key(("next", getattr(self.tensor_keys, name))))
        return list(dict.fromkeys(keys))  # drop repeats, keep the order

    # ------------------------------------------------------------ shared pieces

    def _advantage(self, td: TensorDictBase) -> torch.Tensor:
        """Â from the batch, or from the value estimator (which also writes the value target)."""
        advantage = td.get(self.tensor_keys.advantage, None)
        if advantage is None:
            if self.critic_network is None:
                raise RuntimeError(
                    f"{type(self).__name__}: the batch has no {self.tensor_keys.advantage!r} "
                    f"and the loss has no critic_network to estimate it. Pass a critic, or "
                    f"compute the advantage beforehand (e.g. with rlteach.value.GAE)."
                )
            # The estimator runs the critic without gradient to its parameters.
            self.value_estimator(td)
        advantage = self._read_inputs(td, "advantage")["advantage"]  # float [*B, 1], finite
        self._check_critic_inputs(td)  # before anything changes (KLPEN's β, say)
        if self.normalize_advantage and advantage.numel() > 1:
            # (Â - mean) / max(std, 1e-6), the std with Bessel's correction
            advantage = (advantage - advantage.mean()) / advantage.std().clamp_min(
                _ADVANTAGE_STD_FLOOR
            )
        return advantage

    def _log_weight(self, td: TensorDictBase, old_log_prob: torch.Tensor, advantage):
        """(log r [*B, 1], current distribution π_θ(·|s), kl_approx [*B, 1]) -- (PPO-1)."""
        dist = self.actor_network.get_dist(td)
        action = td.get(self.tensor_keys.action)
        check_action(type(self).__name__, dist, action, key_str(self.tensor_keys.action))
        log_prob = dist.log_prob(action)
        self._check_ratio_shapes(log_prob, old_log_prob, advantage)  # nothing may broadcast
        log_weight = (log_prob - old_log_prob).unsqueeze(-1)  # (PPO-1) log r_t(θ)
        kl_approx = (old_log_prob - log_prob).unsqueeze(-1)  # k1 estimate of KL(π_old || π_θ)
        return log_weight, dist, kl_approx

    def _check_ratio_shapes(self, log_prob, old_log_prob, advantage) -> None:
        """One stored log π_old(a|s) per action, and an advantage of the ratio's shape [*B, 1]:
        either mismatch would broadcast into a wrong loss without an error."""
        owner = type(self).__name__
        if log_prob.shape != old_log_prob.shape:
            raise ValueError(
                f"{owner}: {key_str(self.tensor_keys.sample_log_prob)} has shape "
                f"{list(old_log_prob.shape)} but the policy's log-probability of the action has "
                f"shape {list(log_prob.shape)}; store one log pi_old(a|s) per action, as the "
                f"acting policy wrote it."
            )
        if (*log_prob.shape, 1) != tuple(advantage.shape):  # a [B] advantage: [B, B]
            raise ValueError(
                f"{owner}: the advantage has shape {list(advantage.shape)} but "
                f"the log-ratio has shape {[*log_prob.shape, 1]}; the advantage needs the "
                f"batch shape plus a trailing 1 (advantage.unsqueeze(-1))."
            )

    def _entropy(self, dist: D.Distribution) -> torch.Tensor:
        """H[π_θ(·|s)] as [*B, 1]: closed form if known, else -mean of log π over K draws."""
        if _has_analytic_entropy(dist):
            entropy = dist.entropy()
            if torch.isfinite(entropy).all():
                return entropy.unsqueeze(-1)
        if dist.has_rsample and hasattr(dist, "rsample_and_log_prob"):
            _, log_prob = dist.rsample_and_log_prob((self.samples_mc_entropy,))
        else:
            x = dist.rsample((self.samples_mc_entropy,)) if dist.has_rsample else dist.sample(
                (self.samples_mc_entropy,)
            )
            log_prob = dist.log_prob(x)
        return -log_prob.mean(0).unsqueeze(-1)

    def _critic_values(self, td: TensorDictBase) -> torch.Tensor:
        """V_φ(s) [*B, 1]; with ``separate_losses`` parameters shared with the actor are detached."""
        if not self.separate_losses:
            return self.critic_network(td).get(self.tensor_keys.value)
        actor_params = {id(p) for p in self.actor_network.parameters()}
        params = {
            name: p.detach() if id(p) in actor_params else p
            for name, p in self.critic_network.named_parameters()
        }
        out = torch.func.functional_call(self.critic_network, params, (td.detach(),))
        return out.get(self.tensor_keys.value)

    def _check_critic_inputs(self, td: TensorDictBase) -> None:
        """The critic loss's inputs are in the batch: V^targ, and V_old when values are clipped."""
        if self.critic_coeff is None:
            return
        owner, keys = type(self).__name__, self.tensor_keys
        if td.get(keys.value_target, None) is None:
            raise KeyError(
                f"{owner}: the critic loss needs {keys.value_target!r}. Give the batch the value "
                f"target (the estimators write it next to the advantage) or rename it with "
                f"set_keys(value_target=<your key>)."
            )
        if self.clip_value is not None and td.get(keys.value, None) is None:
            raise KeyError(
                f"{owner}: clip_value clips the new value around the old one, V_old, read from "
                f"{keys.value!r}, which the batch lacks. Store the critic's values when computing "
                f"the advantage (the estimators write them), rename the key with "
                f"set_keys(value=<your key>), or pass clip_value=None."
            )
        self._read_inputs(td, "value_target", *(("value",) if self.clip_value is not None else ()))

    def _loss_critic(self, td: TensorDictBase):
        """(c₁·ℓ(V, V^targ) [*B, 1], value clip fraction or None, explained variance or None)."""
        target = td.get(self.tensor_keys.value_target)  # present: see _check_critic_inputs
        old_value = td.get(self.tensor_keys.value) if self.clip_value is not None else None
        if self.separate_losses:
            target = target.detach()
        value = self._critic_values(td)
        loss = distance_loss(target, value, self.loss_critic_type)  # (PPO-6)
        clip_fraction = None
        if self.clip_value is not None:
            # V_clip = V_old + clip(V - V_old, -δ, δ); keep the more pessimistic (larger) loss
            delta = value - old_value
            delta_clipped = delta.clamp(-self.clip_value, self.clip_value)
            loss_clipped = distance_loss(target, old_value + delta_clipped, self.loss_critic_type)
            loss = torch.maximum(loss, loss_clipped)
            clip_fraction = (delta != delta_clipped).to(value.dtype).mean().detach()
        explained_variance = None
        if self.log_explained_variance:
            with torch.no_grad():
                resid = torch.var(target - value, correction=0, dim=0)
                total = torch.var(target, correction=0, dim=0)
                explained_variance = 1.0 - resid / (total + torch.finfo(target.dtype).eps)
        return self.critic_coeff * loss, clip_fraction, explained_variance

    def _read_batch(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, torch.Tensor]:
        """A shallow copy of the batch (the estimator writes into it) and log π_old, checked."""
        old_log_prob = self._read_inputs(tensordict, "sample_log_prob", "action")[
            "sample_log_prob"
        ]
        if old_log_prob.requires_grad:
            raise ValueError(
                f"{type(self).__name__}: {self.tensor_keys.sample_log_prob!r} requires grad; it "
                f"must be the behaviour policy's log-probability, stored without graph "
                f"(collect data under torch.no_grad())."
            )
        return tensordict.clone(False), old_log_prob

    def _finish(self, out: dict, dist: D.Distribution, td: TensorDictBase) -> TensorDict:
        """Add the entropy bonus and critic loss (PPO-7), then reduce every ``loss_*`` entry."""
        if self.entropy_bonus:
            entropy = self._entropy(dist)
            out["entropy"] = entropy.detach().mean()
            out["loss_entropy"] = -self.entropy_coeff * entropy  # (PPO-7) -c₂ H
        if self.critic_coeff is not None:
            loss_critic, value_clip_fraction, explained_variance = self._loss_critic(td)
            out["loss_critic"] = loss_critic  # (PPO-7) c₁ L^VF
            if value_clip_fraction is not None:
                out["value_clip_fraction"] = value_clip_fraction
            if explained_variance is not None:
                out["explained_variance"] = explained_variance
        return TensorDict(
            {
                name: self._reduce_loss(v).squeeze(-1) if name.startswith("loss_") else v
                for name, v in out.items()
            }
        )

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """The unclipped surrogate (PPO-2) plus entropy and critic terms; see the class doc."""
        td, old_log_prob = self._read_batch(tensordict)
        advantage = self._advantage(td)
        log_weight, dist, kl_approx = self._log_weight(td, old_log_prob, advantage)  # (PPO-1)
        surrogate = log_weight.exp() * advantage  # (PPO-2) r_t Â_t
        out = {"loss_objective": -surrogate, "kl_approx": kl_approx.detach().mean()}
        return self._finish(out, dist, td)


class ClipPPOLoss(PPOLoss):
    r"""PPO with the clipped surrogate objective (PPO-3), Schulman et al. (2017), eq. (7).

    ``clip_epsilon`` is ε (default 0.2), or a pair ``(ε_low, ε_high)`` clipping the ratio to
    ``[1 - ε_low, 1 + ε_high]`` (asymmetric "clip-higher", as in DAPO). ``clip_value=True``
    clips the value function with the same ε. Extra outputs (all detached, see module doc):
    ``clip_fraction``, ``ESS``, ``max_ratio``, ``mean_ratio``.

    Where the ratio is clipped *and* the clip binds (r > 1+ε with Â > 0, or r < 1−ε with
    Â < 0), the sample's surrogate is constant in θ: it carries no policy gradient.
    """

    _schedulable_buffers = PPOLoss._schedulable_buffers | {  # noqa: SLF001 (the parent's table)
        "clip_epsilon_low",
        "clip_epsilon_high",
    }

    def __init__(
        self,
        actor_network: nn.Module,
        critic_network: nn.Module | None = None,
        *,
        clip_epsilon: float | tuple[float, float] = 0.2,
        clip_value: bool | float | None = None,
        **kwargs,
    ) -> None:
        eps_low, eps_high = self._check_clip_epsilon(clip_epsilon)
        if isinstance(clip_value, bool):
            if clip_value and isinstance(clip_epsilon, (tuple, list)):
                raise ValueError(
                    "clip_value=True takes the value-clip threshold from clip_epsilon, which "
                    "is an asymmetric pair here; pass a float instead, e.g. clip_value=0.2."
                )
            clip_value = eps_high if clip_value else None
        super().__init__(actor_network, critic_network, clip_value=clip_value, **kwargs)
        self.register_buffer("clip_epsilon_low", torch.tensor(eps_low, device=self._buffer_device))
        self.register_buffer(
            "clip_epsilon_high", torch.tensor(eps_high, device=self._buffer_device)
        )

    @staticmethod
    def _check_clip_epsilon(clip_epsilon) -> tuple[float, float]:
        if isinstance(clip_epsilon, (tuple, list)):
            if len(clip_epsilon) != 2:
                raise ValueError(
                    f"clip_epsilon must be a float or a pair (eps_low, eps_high), got "
                    f"{clip_epsilon!r}."
                )
            eps_low, eps_high = clip_epsilon
        else:
            eps_low = eps_high = clip_epsilon
        # Stricter than TorchRL, which accepts a symmetric eps <= 0 silently.
        check_range("clip_epsilon (low)", eps_low, 0.0, 1.0, low_open=True, high_open=True)
        check_range("clip_epsilon (high)", eps_high, 0.0, low_open=True)
        return float(eps_low), float(eps_high)

    @property
    def clip_epsilon(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """ε as given: one tensor when symmetric, else the pair (ε_low, ε_high) of buffers."""
        if torch.equal(self.clip_epsilon_low, self.clip_epsilon_high):
            return self.clip_epsilon_high
        return self.clip_epsilon_low, self.clip_epsilon_high

    @property
    def out_keys(self) -> list[str]:
        keys = super().out_keys
        return keys[:1] + ["clip_fraction"] + keys[1:] + ["ESS", "max_ratio", "mean_ratio"]

    @property
    def _dispatch_out_keys(self) -> list[str]:
        tail = ["ESS", "kl_approx", "max_ratio", "mean_ratio"]
        return self._torchrl_out_keys(["clip_fraction"], tail)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """The clipped surrogate (PPO-3) plus entropy and critic terms."""
        td, old_log_prob = self._read_batch(tensordict)
        advantage = self._advantage(td)
        log_weight, dist, kl_approx = self._log_weight(td, old_log_prob, advantage)  # (PPO-1)

        clipped_surrogate, log_weight_clipped = ppo_clip_objective(  # (PPO-2), (PPO-3)
            log_weight, advantage, self.clip_epsilon_low, self.clip_epsilon_high
        )

        with torch.no_grad():
            clip_fraction = (log_weight_clipped != log_weight).to(log_weight.dtype).mean()
            # effective sample size of the importance weights, over the first batch dim
            lw = log_weight.squeeze(-1)
            ess = (2 * lw.logsumexp(0) - (2 * lw).logsumexp(0)).exp() / log_weight.shape[0]
            ratio = log_weight.exp()
        out = {
            "loss_objective": -clipped_surrogate,
            "clip_fraction": clip_fraction,
            "kl_approx": kl_approx.detach().mean(),
        }
        result = self._finish(out, dist, td)
        result["ESS"] = ess
        result["max_ratio"] = ratio.max()
        result["mean_ratio"] = ratio.mean()
        return result


class KLPENPPOLoss(PPOLoss):
    r"""PPO with an adaptive KL penalty (PPO-4, PPO-5), Schulman et al. (2017), section 4.

    The batch must hold the old policy's distribution parameters (``"logits"``, or ``"loc"``
    and ``"scale"``: whatever the actor's ``ProbabilisticTensorDictModule`` reads), because
    KL[π_old ‖ π_θ] is computed from the two distributions: in closed form when torch knows it
    or, for two tanh-Gaussians, as the KL of their Gaussians (a bijection keeps the KL, as TorchRL
    computes it for its TanhNormal); else by Monte Carlo with ``samples_mc_kl`` draws from π_old.

    After the loss is formed, β (a buffer, ``loss.beta``) is updated in place from the batch-mean
    KL d: ×``increment`` if d > 1.5·``dtarg``, ×``decrement`` if d < ``dtarg``/1.5 (PPO-5).
    ``reset()`` restores the initial β. Extra output: ``kl``, the detached per-sample KL
    ``[*B, 1]`` (not reduced, as in TorchRL).

    ``beta_update_in_graph``: TorchRL updates β with ``beta.data *= ...`` after it entered the
    graph, so its *gradient* of ``beta * KL`` uses the updated β while the loss *value* used the
    old one. ``False`` (default) follows the paper (both use the current β); ``True`` reproduces
    TorchRL's gradient.
    """

    _schedulable_buffers = PPOLoss._schedulable_buffers | {"beta"}  # noqa: SLF001 (parent's)

    def __init__(
        self,
        actor_network: nn.Module,
        critic_network: nn.Module | None = None,
        *,
        dtarg: float = 0.01,
        beta: float = 1.0,
        increment: float = 2,
        decrement: float = 0.5,
        samples_mc_kl: int = 1,
        beta_update_in_graph: bool = False,
        **kwargs,
    ) -> None:
        check_range("dtarg", dtarg, 0.0, low_open=True)
        check_range("beta", beta, 0.0)
        if not isinstance(increment, (int, float)) or increment < 1.0:
            raise ValueError(
                f"KLPENPPOLoss: increment must be >= 1 (it multiplies beta when the KL is too "
                f"large), got {increment!r}."
            )
        if not isinstance(decrement, (int, float)) or decrement > 1.0:
            raise ValueError(
                f"KLPENPPOLoss: decrement must be <= 1 (it multiplies beta when the KL is too "
                f"small), got {decrement!r}."
            )
        check_range("decrement", decrement, 0.0, low_open=True)
        if isinstance(samples_mc_kl, bool) or not isinstance(samples_mc_kl, int):
            raise ValueError(f"samples_mc_kl must be an int >= 1, got {samples_mc_kl!r}.")
        check_range("samples_mc_kl", samples_mc_kl, 1)
        super().__init__(actor_network, critic_network, **kwargs)
        self._dist_module = self._find_dist_module(actor_network)
        self.dtarg = dtarg
        self._beta_init = float(beta)
        self.register_buffer("beta", torch.tensor(float(beta), device=self._buffer_device))
        self.increment = increment
        self.decrement = decrement
        self.samples_mc_kl = samples_mc_kl
        self.beta_update_in_graph = beta_update_in_graph

    @staticmethod
    def _find_dist_module(actor: nn.Module) -> ProbabilisticTensorDictModule:
        heads = [m for m in actor.modules() if isinstance(m, ProbabilisticTensorDictModule)]
        if len(heads) != 1:
            raise ValueError(
                f"KLPENPPOLoss needs an actor with exactly one ProbabilisticTensorDictModule "
                f"(to rebuild π_old from the stored distribution parameters), found {len(heads)}."
            )
        return heads[0]

    @property
    def out_keys(self) -> list[str]:
        keys = super().out_keys
        return keys[:1] + ["kl"] + keys[1:]

    @property
    def _dispatch_out_keys(self) -> list[str]:
        return self._torchrl_out_keys(["kl"])

    @property
    def in_keys(self) -> list[NestedKey]:
        return list(dict.fromkeys(super().in_keys + list(self._dist_module.in_keys)))

    def _kl(self, old_dist: D.Distribution, dist: D.Distribution) -> torch.Tensor:
        """KL[π_old(·|s) ‖ π_θ(·|s)] as [*B]: closed form (tanh-Gaussians included, by (KL-1)),
        else the Monte Carlo mean_k log π_old(x_k) − log π_θ(x_k), x_k ~ π_old."""
        self._check_same_shapes(old_dist, dist)
        kl = _closed_form_kl(old_dist, dist)
        if kl is not None:
            return kl
        x = old_dist.sample((self.samples_mc_kl,))
        return (old_dist.log_prob(x) - dist.log_prob(x)).mean(0)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """The KL-penalised surrogate (PPO-4), then the β update (PPO-5)."""
        td, old_log_prob = self._read_batch(tensordict)
        old_dist = self._old_distribution(td)  # π_old from the stored parameters
        advantage = self._advantage(td)
        log_weight, dist, kl_approx = self._log_weight(td, old_log_prob, advantage)  # (PPO-1)
        kl = self._kl(old_dist, dist).unsqueeze(-1)
        with torch.no_grad():
            factor = ppo_beta_factor(kl.mean(), self.dtarg, self.increment, self.decrement)
        beta = self.beta.clone()
        if self.beta_update_in_graph:
            penalised = self._penalised_like_torchrl(log_weight, advantage, kl, beta, factor)
        else:
            penalised = ppo_kl_penalty_objective(log_weight, advantage, kl, beta)  # (PPO-4)

        out = {
            "loss_objective": -penalised,
            "kl": kl.detach(),
            "kl_approx": kl_approx.detach().mean(),
        }
        result = self._finish(out, dist, td)  # may still refuse the batch (no value_target, ...)
        self.beta.mul_(factor)  # (PPO-5) in place, once the whole loss has been formed
        return result

    def _check_same_shapes(self, old_dist: D.Distribution, dist: D.Distribution) -> None:
        """π_old, rebuilt from the stored parameters, has the current policy's shapes."""
        if (old_dist.batch_shape, old_dist.event_shape) != (dist.batch_shape, dist.event_shape):
            raise ValueError(
                f"KLPENPPOLoss: the stored distribution parameters "
                f"{[key_str(k) for k in self._dist_module.in_keys]} give a distribution of batch "
                f"shape {list(old_dist.batch_shape)} and event shape {list(old_dist.event_shape)}, "
                f"the current policy one of {list(dist.batch_shape)} and "
                f"{list(dist.event_shape)}; store the actor's outputs with their shapes unchanged."
            )

    def _old_distribution(self, td: TensorDictBase) -> D.Distribution:
        """π_old, rebuilt from the distribution parameters stored in the batch (checked)."""
        missing = [k for k in self._dist_module.in_keys if td.get(k, None) is None]
        if missing:
            raise KeyError(
                f"KLPENPPOLoss needs the old policy's distribution parameters {missing} in the "
                f"batch (store the actor's output when collecting) to compute KL[π_old ‖ π_θ]."
            )
        params = {key_str(k): td.get(k) for k in self._dist_module.in_keys}
        for where, value in params.items():
            if isinstance(value, torch.Tensor) and not value.is_floating_point():
                raise ValueError(
                    f"KLPENPPOLoss: the old policy's distribution parameter {where} has dtype "
                    f"{value.dtype}; store the actor's output as it was (floating point)."
                )
        check_finite("KLPENPPOLoss", **params)
        try:
            return self._dist_module.get_dist(td)
        except (RuntimeError, ValueError) as error:  # parameters that do not fit together
            shapes = {where: list(v.shape) for where, v in params.items()}
            raise ValueError(
                f"KLPENPPOLoss: the stored distribution parameters {shapes} do not make a "
                f"distribution ({error}); store the actor's outputs with their shapes unchanged."
            ) from error

    # ---------------------------------------------------------------- reproducing TorchRL

    @staticmethod
    def _penalised_like_torchrl(log_weight, advantage, kl, beta, factor) -> torch.Tensor:
        """``beta_update_in_graph=True``, TorchRL's quirk: the value of the penalty uses the old
        β, its gradient the updated one."""
        surrogate = log_weight.exp() * advantage  # (PPO-2) r_t Â_t
        penalty = beta * kl.detach() + (beta * factor) * (kl - kl.detach())
        return surrogate - penalty  # (PPO-4)

    def reset(self) -> None:
        """Restore β to its initial value (call it between training runs)."""
        self.beta.fill_(self._beta_init)
