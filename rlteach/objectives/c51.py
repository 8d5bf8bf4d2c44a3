r"""The distributional DQN (C51) loss, mirroring TorchRL 0.14's ``DistributionalDQNLoss``.

C51 (Bellemare et al., 2017, "A Distributional Perspective on Reinforcement Learning") learns the
whole distribution of the return on a fixed support z_1 < ... < z_N and projects the Bellman
target back onto it. The mathematics is in :mod:`rlteach.objectives.functional`
(:func:`c51_next_distribution`, :func:`project_distribution`, :func:`c51_cross_entropy`).

=====  ======================================================================================
Tag    Equation
=====  ======================================================================================
C51-1  a* = argmax_a Σ_i z_i p_i(s_{t+1}, a)                     (Bellemare 2017, Algorithm 1)
C51-2  T z_j = [r_t + γ (1 - term_t) z_j] clamped to [V_MIN, V_MAX]
C51-3  b_j = (T z_j - V_MIN) / Δz,   l = floor(b_j),   u = ceil(b_j)
C51-4  m_l += p_j(s_{t+1}, a*) (u - b_j),   m_u += p_j(s_{t+1}, a*) (b_j - l)
C51-5  loss = - Σ_i m_i log p_i(s_t, a_t)     (cross-entropy, the KL up to a constant)
=====  ======================================================================================

``term_t`` is ``("next", "terminated")`` (``("next", "done")`` when the batch has no
``terminated``): a time-limit truncation still bootstraps.

Where rlteach departs from TorchRL (and says so)
------------------------------------------------
* a* (C51-1) is picked with the **target** network by default, as Algorithm 1 of the paper (one
  set of parameters for the next state) and the usual C51 implementations do. TorchRL 0.14
  always picks it with the *online* network (a Double-DQN choice from Rainbow);
  ``double_dqn=True`` reproduces TorchRL exactly. Without a target network
  (``delay_value=False``) the two coincide.
* C51-4 as printed loses the mass of an atom that lands exactly on a support point (then
  l = u = b_j and both weights are 0). Both rlteach and TorchRL keep it; rlteach by giving the
  whole mass to l when l = u, TorchRL by moving l or u one step away. The results are identical.
* Batches of any shape [*B] (TorchRL only [B]).
* An action out of range, or a one-hot action that is not one-hot, is refused with an error
  (TorchRL computes on silently). ``double_dqn=True`` without a target network is refused by
  both, rlteach with an explanation.
"""

from __future__ import annotations

import dataclasses

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import nn

from rlteach._checks import check_gamma
from rlteach.modules.qvalue import check_action_space, check_support_matches
from rlteach.objectives._discrete import DOUBLE_NEEDS_TARGET, action_index
from rlteach.objectives.common import LossModule, resolve_value_type
from rlteach.objectives.functional import (
    c51_cross_entropy,
    c51_next_distribution,
    project_distribution,
)
from rlteach.value import ValueEstimators

__all__ = ["DistributionalDQNLoss", "project_distribution"]


MULTI_DISCRETE_C51 = (
    "{owner}: multi-discrete actions (action_space='mult_one_hot') are not supported. C51 "
    "learns the distribution of the return of one action; with K action dimensions it would "
    "need the distribution of a sum over blocks, which is not the sum of the blocks' "
    "categorical distributions, so rlteach does not define it. TorchRL 0.14 accepts the spec "
    "but its loss fails on such a batch (it reshapes K blocks' log-probabilities as one). Use "
    "DQNLoss(action_space='mult_one_hot'), or one categorical action over the joint choices."
)


class DistributionalDQNLoss(LossModule):
    r"""The C51 loss (Bellemare et al., 2017): cross-entropy to the projected Bellman target.

    ``value_network`` is a distributional actor
    (:class:`rlteach.modules.DistributionalQValueActor`, or TorchRL's class of the same name):
    it writes ``"action_value"`` = log p_i(s, a) [*B, n_atoms, n_actions] and the greedy
    ``"action"``, and holds its support as the buffer ``support`` and its layout in
    ``action_space``.

    The steps of ``forward`` (tags in the module docstring):

    1. log p(s_t, a_t) from the online network, the distribution of the action taken;
    2. a* = argmax_a Σ_i z_i p_i(s_{t+1}, a) (C51-1), with the target network (paper) or the
       online one (``double_dqn=True``, TorchRL);
    3. m = the projection of r + γ z under p(s_{t+1}, a*) from the target network (C51-2..4),
       see :func:`project_distribution`;
    4. loss = -Σ_i m_i log p_i(s_t, a_t) (C51-5), whose value is also written as ``td_error``.

    The keyword arguments have TorchRL 0.14's names (TorchRL requires ``gamma``).

    Keyword Args:
        gamma: the discount γ (a buffer, like TorchRL's). ``"steps_to_next_obs"`` in the
            batch, when present, makes it γ^n.
        delay_value: keep a target network (default ``True``).
        double_dqn: choose a* with the online network, as TorchRL 0.14 always does (default
            ``False``: the paper's choice, the target network). rlteach only.
        priority_key: deprecated; use ``set_keys(priority=...)``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        use_prioritized_weights: as in :class:`DQNLoss`.

    Output: ``TensorDict(loss=...)``, as TorchRL.

    Raises:
        ValueError: gamma outside [0, 1], a network without a ``support``, a support whose length
            is not the network's number of atoms, an action out of range, ``double_dqn=True``
            with ``delay_value=False``.
    """

    @dataclasses.dataclass
    class _AcceptedKeys:
        """Every key DistributionalDQNLoss reads or writes (TorchRL's names)."""

        action_value: NestedKey = "action_value"
        action: NestedKey = "action"
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        steps_to_next_obs: NestedKey = "steps_to_next_obs"
        priority_weight: NestedKey = "priority_weight"

    # TorchRL declares TD(0) and computes it inline; so does rlteach: no estimator object.
    default_value_estimator = ValueEstimators.TD0
    supported_value_estimators = (ValueEstimators.TD0,)
    out_keys = ("loss",)

    def __init__(
        self,
        value_network: nn.Module,
        *,
        gamma: float,
        delay_value: bool = True,
        double_dqn: bool = False,
        priority_key: NestedKey | None = None,
        reduction: str | None = None,
        use_prioritized_weights: str | bool = "auto",
    ) -> None:
        owner = type(self).__name__
        if double_dqn and not delay_value:
            raise ValueError(DOUBLE_NEEDS_TARGET.format(owner=owner))
        check_gamma(gamma)
        reduction = self._check_options(reduction)
        self._check_use_prioritized_weights(use_prioritized_weights)
        support = getattr(value_network, "support", None)
        if not isinstance(support, torch.Tensor):
            raise ValueError(
                f"{owner}: the value network has no 'support' tensor. Wrap the network in "
                f"rlteach.modules.DistributionalQValueActor(network, support=torch.linspace("
                f"v_min, v_max, n_atoms))."
            )
        action_space = getattr(value_network, "action_space", "categorical")
        if isinstance(action_space, str) and action_space.replace("-", "_") == "mult_one_hot":
            raise ValueError(MULTI_DISCRETE_C51.format(owner=owner))
        action_space = check_action_space(owner, action_space)

        super().__init__()
        self.register_buffer("gamma", torch.as_tensor(float(gamma)))
        self.delay_value = delay_value
        self.double_dqn = double_dqn
        self.action_space = action_space
        self.reduction = reduction
        self.use_prioritized_weights = use_prioritized_weights
        self._register_network("value_network", value_network, create_target=delay_value)
        self._set_deprecated_priority_key(priority_key)

    @property
    def support(self) -> torch.Tensor:
        """The atoms z_i, read from the value network (the target shares them)."""
        return self.value_network.support

    def make_value_estimator(self, value_type=None, **hyperparams) -> DistributionalDQNLoss:
        """Only TD(0) exists for C51 (as in TorchRL); its target is computed inside ``forward``."""
        kind = self._check_supported(
            ValueEstimators.TD0 if value_type is None else _kind(value_type)
        )
        if hyperparams:
            raise ValueError(
                f"{type(self).__name__} computes its TD(0) target itself; set gamma in the "
                f"constructor instead of passing {sorted(hyperparams)}."
            )
        self.value_type = kind
        return self

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """C51-1 ... C51-5 on a batch of any shape [*B]; writes ``td_error`` [*B, 1] into it."""
        keys = self.tensor_keys
        action, reward, terminated, weights = self._check_batch(tensordict)
        net, support, batch = self.value_network, self.support, tensordict.batch_size
        target_net = self.target_value_network if self.delay_value else net

        # 1. log p(s_t, a_t): the online distribution of the action taken
        log_p = net(tensordict.select(*net.in_keys, strict=False).copy()).get(keys.action_value)
        index = self._action_index(action, log_p)
        gather_index = index[..., None, None].expand(*batch, support.numel(), 1)
        log_p_taken = log_p.gather(-1, gather_index).squeeze(-1)  # [*B, n_atoms]

        with torch.no_grad():
            next_in = tensordict.get("next").select(*net.in_keys, strict=False)
            next_log_p_target = target_net(next_in.copy()).get(keys.action_value)
            # 2. (C51-1) a* = argmax_a Σ_i z_i p_i(s', a), chosen by the online net for TorchRL
            chooser = net(next_in.copy()).get(keys.action_value) if self.double_dqn else None
            next_probs = c51_next_distribution(next_log_p_target, support, chooser)

            # 3. (C51-2 ... C51-4) project r + γ(1 - term) z onto the support
            not_terminated = 1.0 - terminated.to(reward.dtype)
            steps = tensordict.get(keys.steps_to_next_obs, None)
            discount = self.gamma if steps is None else self.gamma ** steps.to(reward.dtype)
            m = project_distribution(
                next_probs.reshape(-1, support.numel()),
                reward.reshape(-1, 1),
                not_terminated.reshape(-1, 1),
                discount if steps is None else discount.reshape(-1, 1),
                support,
            ).reshape(*batch, support.numel())

        # 4. (C51-5) cross-entropy between the projected target and the online prediction
        loss = c51_cross_entropy(m, log_p_taken)  # [*B]
        out = TensorDict(loss=self._reduce_loss(loss, weights=weights))
        # written into the caller's batch only now, with every check passed and the loss formed
        tensordict.set(keys.priority, loss.detach().unsqueeze(-1))
        return out

    def _check_batch(self, tensordict: TensorDictBase):
        """Every check of the batch before any network runs: (action, reward, terminated,
        weights of prioritized replay or None), weighted exactly as :class:`DQNLoss` does."""
        owner, keys = type(self).__name__, self.tensor_keys
        inputs = self._read_inputs(tensordict, "action", next_names=("reward",))
        self._check_network_inputs(tensordict, self.value_network)
        weights = self._prioritized_weights(tensordict)
        present = tensordict.get("next").keys(True)
        flag = next((n for n in ("terminated", "done") if getattr(keys, n) in present), None)
        if flag is None:
            raise KeyError(
                f"{owner} needs ('next', {keys.terminated!r}) (or ('next', {keys.done!r})) in "
                f"its input; rename with set_keys(terminated=...)."
            )
        terminated = self._read_inputs(tensordict, next_names=(flag,))[f"next_{flag}"]  # checked
        return inputs["action"], inputs["next_reward"], terminated, weights

    def _action_index(self, action: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        """The taken action as an index [*B], after checking the support and the action."""
        owner = type(self).__name__
        check_support_matches(owner, self.support, log_p)
        batch, n_actions = log_p.shape[:-2], log_p.shape[-1]
        return action_index(owner, action, self.action_space, n_actions, batch)


def _kind(value_type) -> ValueEstimators:
    return resolve_value_type(value_type)
