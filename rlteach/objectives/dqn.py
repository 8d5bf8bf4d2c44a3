r"""DQN and distributional DQN (C51) losses, mirroring TorchRL 0.14's ``DQNLoss`` and
``DistributionalDQNLoss``.

DQN (Mnih et al., 2015, "Human-level control through deep reinforcement learning") regresses
Q(s, a) on a bootstrapped target read from a frozen copy of the network; Double DQN (van Hasselt
et al., 2016) picks the next action with the online network and evaluates it with the target
one; C51 (Bellemare et al., 2017, "A Distributional Perspective on Reinforcement Learning")
learns the whole distribution of the return on a fixed support and projects the Bellman target
back onto it.

=====  ======================================================================================
Tag    Equation
=====  ======================================================================================
DQN-1  Q(s_t, a_t), the online network's value of the action taken
DQN-2  y_t = r_t + γ (1 - term_t) max_a' Q_θ'(s_{t+1}, a')                (Mnih et al. 2015)
DQN-3  y_t = r_t + γ (1 - term_t) Q_θ'(s_{t+1}, argmax_a' Q_θ(s_{t+1}, a'))  (van Hasselt 2016)
DQN-4  loss = mean_t dist(Q(s_t, a_t), y_t), dist in {l2, l1, smooth_l1}
C51-1  a* = argmax_a Σ_i z_i p_i(s_{t+1}, a)                     (Bellemare 2017, Algorithm 1)
C51-2  T z_j = [r_t + γ (1 - term_t) z_j] clamped to [V_MIN, V_MAX]
C51-3  b_j = (T z_j - V_MIN) / Δz,   l = floor(b_j),   u = ceil(b_j)
C51-4  m_l += p_j(s_{t+1}, a*) (u - b_j),   m_u += p_j(s_{t+1}, a*) (b_j - l)
C51-5  loss = - Σ_i m_i log p_i(s_t, a_t)     (cross-entropy, the KL up to a constant)
=====  ======================================================================================

``term_t`` is ``("next", "terminated")``: only a true end of the task stops the bootstrap. A
time-limit truncation (``("next", "truncated")``, which also sets ``done``) still bootstraps,
because the state after it has a value; reading ``done`` instead would teach the network that
the time limit is a cliff.

Where rlteach departs from TorchRL (and says so)
------------------------------------------------
* ``DistributionalDQNLoss`` picks the next action a* (C51-1) with the **target** network by
  default, as Algorithm 1 of the paper (one set of parameters for the next state) and the usual
  C51 implementations do. TorchRL 0.14 always picks it with the *online* network (a Double-DQN
  choice from Rainbow); ``double_dqn=True`` reproduces TorchRL exactly. Without a target network
  (``delay_value=False``) the two coincide.
* C51-4 as printed loses the mass of an atom that lands exactly on a support point (then
  l = u = b_j and both weights are 0). Both rlteach and TorchRL keep it; rlteach by giving the
  whole mass to l when l = u, TorchRL by moving l or u one step away. The results are identical.
* ``DistributionalDQNLoss`` accepts batches of any shape [*B] (TorchRL only [B]).
* An action out of range, or a one-hot action that is not one-hot, is refused with an error
  (TorchRL computes on silently). ``double_dqn=True`` without a target network is refused by
  both, rlteach with an explanation.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import nn

from rlteach._checks import check_choice, check_finite, check_gamma
from rlteach.modules.qvalue import check_action_space, check_support_matches
from rlteach.objectives.common import LossModule, resolve_value_type
from rlteach.objectives.utils import LOSS_FUNCTIONS, REDUCTIONS, distance_loss
from rlteach.value import ValueEstimators

__all__ = ["DQNLoss", "DistributionalDQNLoss", "project_distribution"]

_DOUBLE_NEEDS_TARGET = (
    "{owner}: double_dqn=True requires delay_value=True. Double DQN decouples choosing the next "
    "action (online network θ) from evaluating it (target network θ'); without a target "
    "network both would be θ and the 'double' estimate would be the ordinary max, so the "
    "option would silently do nothing. Keep delay_value=True (the default), or set "
    "double_dqn=False."
)


def _resolve_loss_options(owner: str, reduction: str | None, use_prioritized_weights) -> str:
    reduction = "mean" if reduction is None else reduction
    check_choice("reduction", reduction, REDUCTIONS)
    if use_prioritized_weights not in (True, False, "auto"):
        raise ValueError(
            f"{owner}: use_prioritized_weights must be True, False or 'auto', got "
            f"{use_prioritized_weights!r}."
        )
    return reduction


def _action_index(owner: str, action: torch.Tensor, action_space: str, n_actions: int, batch):
    """The taken action as an int64 index [*B], after checking it is a valid action.

    ``categorical`` actions are indices of shape [*B] or [*B, 1]; ``one-hot`` actions are
    [*B, n_actions] vectors with a single 1.
    """
    if action_space == "categorical":
        if action.is_floating_point() and not bool((action == action.round()).all()):
            raise ValueError(f"{owner}: categorical actions must be whole numbers, got {action}.")
        index = action.long()
        if tuple(index.shape) == (*batch, 1):
            index = index.squeeze(-1)
        if tuple(index.shape) != tuple(batch):
            raise ValueError(
                f"{owner}: categorical actions must have shape {[*batch]} or {[*batch, 1]} "
                f"(batch {list(batch)}), got {list(action.shape)}. For one-hot actions build "
                f"the loss with action_space='one-hot'."
            )
        if index.numel() and (index.min() < 0 or index.max() >= n_actions):
            raise ValueError(
                f"{owner}: actions must lie in [0, {n_actions - 1}] (the network has "
                f"{n_actions} action values), got values from {int(index.min())} to "
                f"{int(index.max())}."
            )
        return index
    if tuple(action.shape) != (*batch, n_actions):
        raise ValueError(
            f"{owner}: one-hot actions must have shape {[*batch, n_actions]}, got "
            f"{list(action.shape)}. For integer indices build the loss with "
            f"action_space='categorical'."
        )
    is_binary = bool(((action == 0) | (action == 1)).all())
    if not is_binary or not bool((action.sum(-1) == 1).all()):
        raise ValueError(
            f"{owner}: a one-hot action must hold exactly one 1 and zeros elsewhere in its "
            f"last dim; some rows of the action do not."
        )
    return action.argmax(-1)


def _infer_action_space(action: torch.Tensor, batch, n_actions: int) -> str:
    """Categorical when the action is [*B] or [*B, 1]; one-hot when it is [*B, n_actions > 1]."""
    extra = tuple(action.shape[len(batch) :])
    if extra in ((), (1,)):
        return "categorical"
    if extra == (n_actions,):
        return "one-hot"
    raise ValueError(
        f"The action has shape {list(action.shape)} for batch {list(batch)}: neither an index "
        f"([*B] or [*B, 1]) nor a one-hot vector ([*B, {n_actions}]). Pass action_space= to "
        f"the loss."
    )


def _priority_weights(self: LossModule, tensordict: TensorDictBase) -> torch.Tensor | None:
    """Prioritized replay's importance weights as [*B], or None; checked before any work."""
    owner, keys = type(self).__name__, self.tensor_keys
    if self.use_prioritized_weights not in (True, "auto"):
        return None
    weights = tensordict.get(keys.priority_weight, None)
    if weights is None:
        if self.use_prioritized_weights is True:
            raise KeyError(
                f"{owner}: use_prioritized_weights=True but the batch has no "
                f"{keys.priority_weight!r}; rename it with set_keys(priority_weight=...)."
            )
        return None
    batch = tensordict.batch_size
    if not weights.is_floating_point() or weights.numel() != batch.numel():
        raise ValueError(
            f"{owner}: {keys.priority_weight!r} must hold one floating-point weight per "
            f"sample ([*B] or [*B, 1] for a batch of size {list(batch)}), got dtype "
            f"{weights.dtype} and shape {list(weights.shape)}."
        )
    if weights.shape not in (batch, (*batch, 1)):
        raise ValueError(
            f"{owner}: {keys.priority_weight!r} has shape {list(weights.shape)}; expected "
            f"{list(batch)} or {list(batch) + [1]}."
        )
    check_finite(owner, **{f"{keys.priority_weight!r}": weights})
    if (weights < 0).any():
        raise ValueError(f"{owner}: {keys.priority_weight!r} holds a negative weight.")
    return weights.reshape(batch)


class DQNLoss(LossModule):
    r"""The DQN loss (Mnih et al., 2015), with the Double DQN target (van Hasselt et al., 2016).

    ``value_network`` is a greedy Q actor (:func:`rlteach.modules.make_qvalue_actor`, or
    TorchRL's ``QValueActor``): it reads the observation and writes ``"action_value"``
    [*B, n_actions], the greedy ``"action"`` and ``"chosen_action_value"`` [*B, 1].

    ==============  ==============  ==================================================
    symbol          shape           meaning
    ==============  ==============  ==================================================
    Q(s_t, ·)       [*B, n_act]     online action values (key ``action_value``)
    a_t             [*B] / one-hot  the action taken (key ``action``)
    r_t, term_t     [*B, 1]         ("next", "reward"), ("next", "terminated")
    y_t             [*B]            the regression target, DQN-2 or DQN-3 (no gradient)
    ``td_error``    [*B, 1]         (Q(s_t, a_t) - y_t)^2, written into the input batch for
                                    prioritized replay (TorchRL's ``priority`` key)
    ==============  ==============  ==================================================

    The keyword arguments have TorchRL 0.14's names and defaults.

    Keyword Args:
        loss_function: ``"l2"`` (default), ``"l1"`` or ``"smooth_l1"`` (the Huber loss of the
            DQN paper).
        delay_value: keep a target network θ' (default ``True``); update it with
            ``rlteach.updaters.HardUpdate`` or ``SoftUpdate``. With ``False`` the target is
            computed from the online network, without gradient.
        double_dqn: use DQN-3 instead of DQN-2 (needs ``delay_value=True``).
        gamma: not accepted here (as in TorchRL): set it with
            ``loss.make_value_estimator(gamma=...)`` (default 0.99).
        action_space: ``"one-hot"`` or ``"categorical"``. ``None``: the network's
            ``action_space`` attribute if it has one, else read from the action's shape at each
            call (TorchRL falls back to one-hot with a warning instead).
        priority_key: deprecated in TorchRL; use ``set_keys(priority=...)``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        use_prioritized_weights: ``"auto"`` (default) weighs the per-sample losses by
            ``"priority_weight"`` when the batch has it; ``True`` / ``False`` force it.

    Output: ``TensorDict(loss=...)``, the only entry TorchRL returns for this loss (it logs
    nothing else); the target is built by the value estimator (TD(0) by default; TD(1) and
    TD(λ) are supported as in TorchRL).

    Raises:
        ValueError: ``double_dqn=True`` with ``delay_value=False``, an unknown
            ``loss_function`` / ``reduction`` / ``action_space``, a ``gamma`` argument, or at
            call time an action out of range.
    """

    @dataclasses.dataclass
    class _AcceptedKeys:
        """Every key DQNLoss reads or writes (TorchRL's names).

        Attributes:
            advantage, value_target: used by the value estimator.
            value: the estimator's value key, the greedy ``"chosen_action_value"``.
            action_value: Q(s, ·) written by the network.
            action: the action taken.
            priority: where the per-sample TD error is written (``"td_error"``).
            reward, done, terminated: read under ``"next"``.
            priority_weight: importance weights of prioritized replay.
        """

        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "chosen_action_value"
        action_value: NestedKey = "action_value"
        action: NestedKey = "action"
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        priority_weight: NestedKey = "priority_weight"

    default_value_estimator = ValueEstimators.TD0
    supported_value_estimators = (
        ValueEstimators.TD0,
        ValueEstimators.TD1,
        ValueEstimators.TDLambda,
    )
    out_keys = ("loss",)

    _schedulable_buffers = frozenset({"gamma"})

    def __init__(
        self,
        value_network: nn.Module,
        *,
        loss_function: str | None = "l2",
        delay_value: bool = True,
        double_dqn: bool = False,
        gamma: float | None = None,
        action_space: str | None = None,
        priority_key: NestedKey | None = None,
        reduction: str | None = None,
        use_prioritized_weights: str | bool = "auto",
    ) -> None:
        owner = type(self).__name__
        # every check first: a refused configuration builds nothing
        if double_dqn and not delay_value:
            raise ValueError(_DOUBLE_NEEDS_TARGET.format(owner=owner))
        if gamma is not None:
            raise TypeError(
                f"{owner} takes no gamma argument (as in TorchRL 0.14): the discount belongs to "
                f"the value estimator. Use loss.make_value_estimator(gamma={gamma})."
            )
        check_choice("loss_function", loss_function, LOSS_FUNCTIONS)
        reduction = _resolve_loss_options(owner, reduction, use_prioritized_weights)
        if action_space is None:
            action_space = getattr(value_network, "action_space", None)
            if action_space is not None and not isinstance(action_space, str):
                action_space = None  # a TorchRL spec object: fall back to inferring
        if action_space is not None:
            action_space = check_action_space(owner, action_space)
        if not isinstance(value_network, TensorDictModule) and not hasattr(
            value_network, "in_keys"
        ):
            raise TypeError(
                f"{owner}: value_network must be a TensorDict module reading the observation "
                f"and writing 'action_value' and 'chosen_action_value' (e.g. "
                f"rlteach.modules.make_qvalue_actor(make_qvalue_network(...))), got "
                f"{type(value_network).__name__}."
            )

        super().__init__()
        self.delay_value = delay_value
        self.double_dqn = double_dqn
        self.loss_function = loss_function
        self.action_space = action_space
        self.reduction = reduction
        self.use_prioritized_weights = use_prioritized_weights
        self._register_network("value_network", value_network, create_target=delay_value)
        if priority_key is not None:
            warnings.warn(
                "priority_key is deprecated (as in TorchRL); use loss.set_keys(priority=...).",
                DeprecationWarning,
                stacklevel=2,
            )
            self.set_keys(priority=priority_key)

    # ------------------------------------------------------------------ keys, estimator

    @property
    def in_keys(self) -> list[NestedKey]:
        """Action, next reward / done / terminated, and the network's inputs now and next."""
        keys = self.tensor_keys
        net_in = list(self.value_network.in_keys)
        wanted = [
            keys.action,
            ("next", keys.reward),
            ("next", keys.done),
            ("next", keys.terminated),
            *net_in,
            *[("next", k) for k in net_in],
        ]
        out: list[NestedKey] = []
        for key in wanted:
            if key not in out:
                out.append(key)
        return out

    def _estimator_networks(self, kind):
        # The estimator bootstraps from the target network when there is one (TorchRL swaps
        # the target parameters into the value network for this call).
        net = self.target_value_network if self.delay_value else self.value_network
        return {"value_network": net}

    # ------------------------------------------------------------------ the loss

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        """Compute DQN-1 ... DQN-4 on a batch from the replay buffer; write ``td_error`` into it."""
        owner = type(self).__name__
        keys = self.tensor_keys
        inputs = self._read_inputs(tensordict, "action", next_names=("reward", "terminated"))
        self._check_network_inputs(tensordict, self.value_network)
        weights = _priority_weights(self, tensordict)
        net = self.value_network
        batch = tensordict.batch_size

        # (DQN-1) Q(s_t, ·) from the online network (a copy of the batch: inputs stay as given)
        current = net(tensordict.select(*net.in_keys, strict=False).copy())
        q_all = current.get(keys.action_value)
        n_actions = q_all.shape[-1]
        action_space = self.action_space or _infer_action_space(inputs["action"], batch, n_actions)
        index = _action_index(owner, inputs["action"], action_space, n_actions, batch)
        q_taken = q_all.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # [*B]

        # The value of the next state, never differentiated
        with torch.no_grad():
            next_in = tensordict.get("next").select(*net.in_keys, strict=False)
            if self.double_dqn:
                # (DQN-3) choose a' with θ, evaluate it with θ'
                next_index = net(next_in.copy()).get(keys.action_value).argmax(-1, keepdim=True)
                next_q_target = self.target_value_network(next_in.copy()).get(keys.action_value)
                next_value = next_q_target.gather(-1, next_index)  # [*B, 1]
            else:
                # (DQN-2) max_a' Q_θ'(s', a'): the greedy actor's chosen_action_value
                target_net = self.target_value_network if self.delay_value else net
                next_value = target_net(next_in.copy()).get(keys.value)  # [*B, 1]

        # y_t = r_t + γ (1 - term_t) next_value for TD(0); TD(1), TD(λ) chain along time
        target = self.value_estimator.value_estimate(tensordict, next_value=next_value)
        target = target.squeeze(-1).detach()

        # (DQN-4) the regression, and the TD error prioritized replay sorts by
        loss = distance_loss(q_taken, target, self.loss_function)
        out = TensorDict(loss=self._reduce_loss(loss, weights=weights))
        # written into the caller's batch only now, with every check passed and the loss formed
        tensordict.set(keys.priority, (q_taken - target).detach().pow(2).unsqueeze(-1))
        return out



def project_distribution(
    next_probs: torch.Tensor,
    reward: torch.Tensor,
    not_terminated: torch.Tensor,
    discount: torch.Tensor | float,
    support: torch.Tensor,
) -> torch.Tensor:
    r"""Project the shifted and shrunk distribution r + γ z onto the fixed support (C51-2...C51-4).

    This is the loop body of Algorithm 1 of Bellemare et al. (2017), written for a batch. Each
    atom z_j carries probability p_j; after the Bellman update it sits at T z_j, which in
    general falls between two support points z_l and z_u. Its mass is split between them in
    proportion to closeness (linear interpolation), which keeps the mean and the total mass.

    ==================  ==============  =============================================
    symbol              shape           meaning
    ==================  ==============  =============================================
    ``next_probs``      [N, n_atoms]    p_j(s_{t+1}, a*), each row sums to 1
    ``reward``          [N, 1]          r_t
    ``not_terminated``  [N, 1]          1 - term_t (0 after a true terminal state)
    ``discount``        scalar / [N,1]  γ (or γ^n for n-step transitions)
    ``support``         [n_atoms]       z_1 < ... < z_N, evenly spaced by Δz
    returns             [N, n_atoms]    m, the target distribution on the support
    ==================  ==============  =============================================

    When T z_j lands exactly on a support point, b_j is a whole number and l = u = b_j: the two
    weights of C51-4, (u - b_j) and (b_j - l), are both 0 and the printed algorithm drops the
    atom's mass. Here the whole mass goes to z_l in that case, so every row of m sums to 1.
    """
    n_atoms = support.numel()
    v_min, v_max = support[0], support[-1]
    delta_z = (v_max - v_min) / (n_atoms - 1)

    # (C51-2) the Bellman update of every atom, clamped to the support's range
    tz = reward + not_terminated * discount * support  # [N, n_atoms]
    tz = tz.clamp(min=v_min, max=v_max)
    # (C51-3) fractional position on the support and its two neighbours
    b = (tz - v_min) / delta_z
    lower, upper = b.floor(), b.ceil()
    on_point = lower == upper  # T z_j fell exactly on z_l: keep its mass (the l = u fix)
    weight_lower = next_probs * (upper - b + on_point.to(b.dtype))
    weight_upper = next_probs * (b - lower)
    # (C51-4) scatter-add the two shares (several atoms may land next to the same point)
    m = torch.zeros_like(next_probs)
    m.scatter_add_(-1, lower.long().clamp(0, n_atoms - 1), weight_lower)
    m.scatter_add_(-1, upper.long().clamp(0, n_atoms - 1), weight_upper)
    return m


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
            raise ValueError(_DOUBLE_NEEDS_TARGET.format(owner=owner))
        check_gamma(gamma)
        reduction = _resolve_loss_options(owner, reduction, use_prioritized_weights)
        support = getattr(value_network, "support", None)
        if not isinstance(support, torch.Tensor):
            raise ValueError(
                f"{owner}: the value network has no 'support' tensor. Wrap the network in "
                f"rlteach.modules.DistributionalQValueActor(network, support=torch.linspace("
                f"v_min, v_max, n_atoms))."
            )
        action_space = check_action_space(
            owner, getattr(value_network, "action_space", "categorical")
        )

        super().__init__()
        self.register_buffer("gamma", torch.as_tensor(float(gamma)))
        self.delay_value = delay_value
        self.double_dqn = double_dqn
        self.action_space = action_space
        self.reduction = reduction
        self.use_prioritized_weights = use_prioritized_weights
        self._register_network("value_network", value_network, create_target=delay_value)
        if priority_key is not None:
            warnings.warn(
                "priority_key is deprecated (as in TorchRL); use loss.set_keys(priority=...).",
                DeprecationWarning,
                stacklevel=2,
            )
            self.set_keys(priority=priority_key)

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
        owner = type(self).__name__
        keys = self.tensor_keys
        inputs = self._read_inputs(tensordict, "action", next_names=("reward",))
        self._check_network_inputs(tensordict, self.value_network)
        weights = _priority_weights(self, tensordict)
        terminated = tensordict.get(
            ("next", keys.terminated), tensordict.get(("next", keys.done), None)
        )
        if terminated is None:
            raise KeyError(
                f"{owner} needs ('next', {keys.terminated!r}) (or ('next', {keys.done!r})) in "
                f"its input; rename with set_keys(terminated=...)."
            )
        net = self.value_network
        support = self.support
        batch = tensordict.batch_size

        # 1. log p(s_t, a_t): the online distribution of the action taken
        log_p = net(tensordict.select(*net.in_keys, strict=False).copy()).get(keys.action_value)
        check_support_matches(owner, support, log_p)
        n_actions = log_p.shape[-1]
        index = _action_index(owner, inputs["action"], self.action_space, n_actions, batch)
        gather_index = index[..., None, None].expand(*batch, support.numel(), 1)
        log_p_taken = log_p.gather(-1, gather_index).squeeze(-1)  # [*B, n_atoms]

        with torch.no_grad():
            next_in = tensordict.get("next").select(*net.in_keys, strict=False)
            target_net = self.target_value_network if self.delay_value else net
            next_log_p_target = target_net(next_in.copy()).get(keys.action_value)
            # 2. (C51-1) a* = argmax_a Σ_i z_i p_i(s', a)
            chooser = net(next_in.copy()).get(keys.action_value) if self.double_dqn else None
            log_p_choose = next_log_p_target if chooser is None else chooser
            q_next = (log_p_choose.exp() * support.unsqueeze(-1)).sum(-2)  # [*B, n_actions]
            best = q_next.argmax(-1)[..., None, None].expand(*batch, support.numel(), 1)
            next_probs = next_log_p_target.exp().gather(-1, best).squeeze(-1)  # [*B, n_atoms]

            # 3. (C51-2 ... C51-4) project r + γ(1 - term) z onto the support
            reward = inputs["next_reward"]
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
        loss = -(m * log_p_taken).sum(-1)  # [*B]
        out = TensorDict(loss=self._reduce_loss(loss, weights=weights))
        # written into the caller's batch only now, with every check passed and the loss formed
        tensordict.set(keys.priority, loss.detach().unsqueeze(-1))
        return out


def _kind(value_type) -> ValueEstimators:
    return resolve_value_type(value_type)
