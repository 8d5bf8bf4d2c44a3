"""Networks and distributions: an MLP, the tanh-squashed Gaussian, and actor / critic builders.

Every builder returns a ``tensordict.nn`` module that reads and writes TorchRL's keys, so the very
same object can be handed to an rlteach loss or to a TorchRL loss.

=====================  ============================  ==========================================
builder                reads                         writes
=====================  ============================  ==========================================
categorical actor      ``"observation"``             ``"logits"``, ``"action"`` (int64, [*B]),
                                                     ``"action_log_prob"`` ([*B])
normal actor           ``"observation"``             ``"loc"``, ``"scale"``, ``"action"``
                                                     ([*B, A]), ``"action_log_prob"`` ([*B])
value network          ``"observation"``             ``"state_value"`` ([*B, 1])
Q-value network        ``"observation"``             ``"action_value"`` ([*B, n_actions])
greedy Q actor         ``"observation"``             ``"action_value"``, ``"action"``,
                                                     ``"chosen_action_value"`` ([*B, 1])
state-action value     ``"observation"``, ``"action"``  ``"state_action_value"`` ([*B, 1])
=====================  ============================  ==========================================

Actors sample (``InteractionType.RANDOM``) unless told otherwise; evaluate a deterministic policy
inside ``tensordict.nn.set_interaction_type(InteractionType.DETERMINISTIC)``, which makes
tensordict call the distribution's ``deterministic_sample`` (argmax of the logits for a
Categorical, the mean for a Normal, ``squash(loc)`` for a TanhNormal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictSequential,
)
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal, constraints

from rlteach._checks import check_range

__all__ = [
    "MLP",
    "TanhNormal",
    "IndependentNormal",
    "LocScaleHead",
    "GreedyAction",
    "ConcatMLP",
    "make_categorical_actor",
    "make_normal_actor",
    "make_value_network",
    "make_qvalue_network",
    "make_qvalue_actor",
    "make_state_action_value_network",
]


def _check_sizes(owner: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}.")


class MLP(nn.Module):
    """A multi-layer perceptron: Linear → activation → … → Linear (no activation on the output).

    ==================  =========================================================
    ``in_features``     size of the input's last dim
    ``out_features``    size of the output's last dim
    ``num_cells``       hidden widths, one entry per hidden layer (``()`` = linear)
    ``activation``      activation class inserted after each hidden Linear
    ==================  =========================================================

    Input ``[*B, in_features]`` → output ``[*B, out_features]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_cells: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.Tanh,
        activate_last_layer: bool = False,
    ) -> None:
        super().__init__()
        _check_sizes("MLP", in_features=in_features, out_features=out_features)
        for width in num_cells:
            _check_sizes("MLP", num_cells_entry=width)
        self.in_features = in_features
        self.out_features = out_features
        widths = [in_features, *num_cells, out_features]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(n_in, n_out))
            is_last = i == len(widths) - 2
            if not is_last or activate_last_layer:
                layers.append(activation())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"MLP expects inputs with last dim {self.in_features}, got shape {list(x.shape)}. "
                f"Build it with in_features={x.shape[-1]} or check the observation key."
            )
        return self.layers(x)


class ConcatMLP(MLP):
    """An MLP over the concatenation of several inputs, e.g. Q(s, a) = MLP([s, a])."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat(inputs, dim=-1))


# ----------------------------------------------------------------------------------------------
# The tanh-squashed Gaussian
# ----------------------------------------------------------------------------------------------


class TanhNormal(Distribution):
    r"""A Gaussian squashed by tanh into the box [low, high] (Haarnoja et al., 2018, appendix C).

    u ~ N(loc, scale²) and a = squash(u) = low + (high − low)·(tanh(u) + 1)/2. The density follows
    from the change of variables, with the numerically stable form of the tanh Jacobian:

    * (TN-1) a = mid + half·tanh(u),  mid = (high + low)/2,  half = (high − low)/2
    * (TN-2) u = atanh((a − mid)/half), with the argument clamped to ±(1 − ε)
    * (TN-3) log N(u; loc, scale) = −(u − loc)²/(2 scale²) − log scale − log √(2π)
    * (TN-4) log |da/du| = log half + log(1 − tanh²u) = log half + 2(log 2 − u − softplus(−2u))
    * (TN-5) log π(a) = Σ_event log N(u) − Σ_event log |da/du|

    ==============  ==============  =============================================
    symbol          shape           meaning
    ==============  ==============  =============================================
    ``loc``         [*B, A]         mean of the Gaussian before squashing
    ``scale``       [*B, A]         its standard deviation (> 0)
    ``low/high``    broadcastable   bounds of the action box
    sample          [*S, *B, A]     action in (low, high)
    ``log_prob``    [*S, *B]        summed over the ``event_dims`` last dims
    ==============  ==============  =============================================

    ε is ``torch.finfo(dtype).resolution`` (1e-6 in float32), as in TorchRL: tanh saturates to
    exactly ±1 in floating point for |u| ≳ 9, where atanh would return ±inf, so samples are
    clamped just inside the box and log_prob clamps before inverting. ``entropy`` and ``mean``
    have no closed form and raise: estimate the entropy by Monte Carlo,
    ``-dist.rsample_and_log_prob((N,))[1].mean(0)``. ``mode`` raises too, because squash(loc) is *not* the mode
    of this density (for a wide Gaussian the density piles up at the bounds); use
    ``deterministic_sample`` (= squash(loc)) for a deterministic action.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor | float,
        low: torch.Tensor | float = -1.0,
        high: torch.Tensor | float = 1.0,
        event_dims: int = 1,
        validate_args: bool | None = None,
    ) -> None:
        # a tensor loc stays on its device, whatever torch's default device is
        device = loc.device if isinstance(loc, torch.Tensor) else None
        loc = torch.as_tensor(loc, dtype=torch.get_default_dtype(), device=device)
        scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device)
        low = torch.as_tensor(low, dtype=loc.dtype, device=loc.device)
        high = torch.as_tensor(high, dtype=loc.dtype, device=loc.device)
        if not bool((high > low).all()):
            raise ValueError(
                f"TanhNormal needs high > low element-wise, got low={low.tolist()} and "
                f"high={high.tolist()}. Pass the action bounds of your environment."
            )
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        if not 0 <= event_dims <= self.loc.ndim:
            raise ValueError(
                f"TanhNormal: event_dims must be between 0 and loc.ndim={self.loc.ndim}, "
                f"got {event_dims}."
            )
        self.low, self.high = low, high
        self.event_dims = event_dims
        self._mid = (high + low) / 2
        self._half = (high - low) / 2
        self._eps = torch.finfo(self.loc.dtype).resolution
        cut = self.loc.ndim - event_dims
        super().__init__(
            batch_shape=self.loc.shape[:cut],
            event_shape=self.loc.shape[cut:],
            validate_args=validate_args,
        )

    # -- the squashing map and its inverse ---------------------------------------------------
    def _squash(self, u: torch.Tensor) -> torch.Tensor:
        # (TN-1) with tanh clamped to ±(1 − ε) so that (TN-2) can invert every sample
        lim = 1.0 - self._eps
        return self._mid + self._half * torch.tanh(u).clamp(-lim, lim)

    def _unsquash(self, a: torch.Tensor) -> torch.Tensor:
        # (TN-2) clamp first: an action on the bound (or rounded onto it) has u = ±inf
        lim = 1.0 - self._eps
        return torch.atanh(((a - self._mid) / self._half).clamp(-lim, lim))

    def _sum_event(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=tuple(range(-self.event_dims, 0))) if self.event_dims else x

    def log_prob_pre_tanh(self, u: torch.Tensor) -> torch.Tensor:
        # (TN-3) Gaussian log-density of the pre-squash value
        log_normal = (
            -((u - self.loc) ** 2) / (2 * self.scale**2)
            - self.scale.log()
            - math.log(math.sqrt(2 * math.pi))
        )
        # (TN-4) log|da/du|; 2(log 2 − u − softplus(−2u)) equals log(1 − tanh²u) without
        # cancellation when tanh(u) ≈ ±1
        log_det = self._half.log() + 2 * (math.log(2.0) - u - nn.functional.softplus(-2 * u))
        # (TN-5) change of variables, each term summed over the action dims
        return self._sum_event(log_normal) - self._sum_event(log_det)

    # -- the Distribution interface ------------------------------------------------------------
    def rsample(self, sample_shape: Sequence[int] = ()) -> torch.Tensor:
        """Reparameterised draw a = squash(loc + scale·ξ), ξ ~ N(0, I); gradients reach loc, scale."""
        shape = self._extended_shape(torch.Size(sample_shape))
        xi = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self._squash(self.loc + self.scale * xi)

    def sample(self, sample_shape: Sequence[int] = ()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log π(a) by (TN-2)–(TN-5); shape ``value.shape`` minus the event dims."""
        return self.log_prob_pre_tanh(self._unsquash(value))

    def rsample_and_log_prob(
        self, sample_shape: Sequence[int] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw an action and score the *same* pre-squash u, skipping the atanh round trip.

        Going back through atanh loses u once tanh has saturated (every u > 9 maps to the same
        float), which makes log_prob(rsample()) wrong far in the tails; this does not.
        """
        shape = self._extended_shape(torch.Size(sample_shape))
        xi = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        u = self.loc + self.scale * xi
        return self._squash(u), self.log_prob_pre_tanh(u)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        """squash(loc): the action a deterministic evaluation takes."""
        return self._squash(self.loc)

    @property
    def mode(self) -> torch.Tensor:
        raise NotImplementedError(
            "TanhNormal has no closed-form mode, and squash(loc) is not it. For a deterministic "
            "action use dist.deterministic_sample, or InteractionType.DETERMINISTIC in "
            "tensordict.nn.set_interaction_type."
        )

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError(
            "TanhNormal has no closed-form mean. Estimate it with "
            "dist.sample((N,)).mean(0) for a large N."
        )

    # entropy() is deliberately NOT overridden: torch's Distribution.entropy raises
    # NotImplementedError, and TorchRL's losses decide "closed form or Monte Carlo" by checking
    # whether the class overrides entropy. Overriding it just to raise a friendlier message would
    # make TorchRL's PPO call it instead of estimating -E[log π(a)] from samples.

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.interval(self.low, self.high), self.event_dims)


class IndependentNormal(Independent):
    """A diagonal Gaussian over the last dim: N(loc, diag(scale²)), log_prob summed over actions.

    ``loc`` and ``scale`` are [*B, A]; ``log_prob`` is [*B]. ``deterministic_sample`` is ``loc``.
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, event_dims: int = 1) -> None:
        super().__init__(Normal(loc, scale), event_dims)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.base_dist.loc


# ----------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------


class LocScaleHead(nn.Module):
    """Split a [*B, 2A] output into loc [*B, A] and a positive scale [*B, A].

    scale = softplus(x + b) + min_scale with b = log(e^(1 − min_scale) − 1), a "biased softplus"
    chosen so that a zero input gives scale = 1: a freshly initialised actor explores with unit
    noise instead of softplus(0) ≈ 0.69. This is TorchRL's default (``biased_softplus_1.0``).
    """

    def __init__(self, min_scale: float = 1e-4) -> None:
        super().__init__()
        check_range("min_scale", min_scale, 0.0, 1.0, low_open=True, high_open=True)
        self.min_scale = min_scale
        self.bias = math.log(math.expm1(1.0 - min_scale))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw_scale = x.chunk(2, dim=-1)
        scale = nn.functional.softplus(raw_scale + self.bias) + self.min_scale
        return loc, scale


class _StateIndependentScale(nn.Module):
    """loc from the network, scale = exp(log_std) from one learned vector shared by all states."""

    def __init__(self, action_dim: int) -> None:
        super().__init__()
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    def forward(self, loc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return loc, self.log_std.exp().expand_as(loc)


class GreedyAction(nn.Module):
    """a = argmax_a Q(s, a) and its value: action_value [*B, n] → action, chosen [*B, 1].

    ``action_space="categorical"`` (default) writes the action as an int64 index [*B];
    ``"one-hot"`` writes it as an int64 one-hot vector [*B, n] (TorchRL's two layouts).
    """

    def __init__(self, action_space: str = "categorical") -> None:
        super().__init__()
        action_space = action_space.replace("_", "-")
        if action_space not in ("categorical", "one-hot"):
            raise ValueError(
                f"GreedyAction: action_space must be 'categorical' or 'one-hot', got "
                f"{action_space!r}."
            )
        self.action_space = action_space

    def forward(self, action_value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = action_value.argmax(dim=-1)
        chosen = action_value.gather(-1, index.unsqueeze(-1))
        if self.action_space == "one-hot":
            return nn.functional.one_hot(index, action_value.shape[-1]), chosen
        return index, chosen


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------


def make_categorical_actor(
    obs_dim: int,
    n_actions: int,
    num_cells: Sequence[int] = (64, 64),
    activation: type[nn.Module] = nn.Tanh,
) -> ProbabilisticTensorDictSequential:
    """π(a|s) = Categorical(softmax(MLP(s))) for a discrete action space.

    Reads ``"observation"`` [*B, obs_dim]; writes ``"logits"`` [*B, n_actions], ``"action"``
    (int64 index, [*B]) and ``"action_log_prob"`` [*B].
    """
    _check_sizes("make_categorical_actor", obs_dim=obs_dim, n_actions=n_actions)
    net = TensorDictModule(
        MLP(obs_dim, n_actions, num_cells, activation),
        in_keys=["observation"],
        out_keys=["logits"],
    )
    head = ProbabilisticTensorDictModule(
        in_keys=["logits"],
        out_keys=["action"],
        distribution_class=Categorical,
        return_log_prob=True,
        default_interaction_type=InteractionType.RANDOM,
    )
    return ProbabilisticTensorDictSequential(net, head)


def make_normal_actor(
    obs_dim: int,
    action_dim: int,
    num_cells: Sequence[int] = (64, 64),
    activation: type[nn.Module] = nn.Tanh,
    *,
    tanh: bool = True,
    low: float | torch.Tensor = -1.0,
    high: float | torch.Tensor = 1.0,
    state_independent_scale: bool = False,
    min_scale: float = 1e-4,
    normalizer: nn.Module | None = None,
) -> ProbabilisticTensorDictSequential:
    """π(a|s) = TanhNormal(loc(s), scale(s), low, high) (or a plain diagonal Normal).

    The scale is state-dependent by default: the MLP outputs 2·action_dim numbers and
    :class:`LocScaleHead` maps the second half through a biased softplus (scale = 1 at zero
    input), as in SAC (Haarnoja et al., 2018). With ``state_independent_scale=True`` the MLP
    outputs loc only and scale = exp(log_std) is one learned vector, the PPO paper's choice
    (Schulman et al., 2017) for continuous control.

    Reads ``"observation"``; writes ``"loc"``, ``"scale"``, ``"action"`` [*B, action_dim] and
    ``"action_log_prob"`` [*B]. ``low``/``high`` are ignored when ``tanh=False``. A
    ``normalizer`` (e.g. :class:`~rlteach.modules.ObservationNormalizer`) is put in
    front of the MLP.
    """
    _check_sizes("make_normal_actor", obs_dim=obs_dim, action_dim=action_dim)
    front = [] if normalizer is None else [normalizer]
    if state_independent_scale:
        body = nn.Sequential(
            *front,
            MLP(obs_dim, action_dim, num_cells, activation),
            _StateIndependentScale(action_dim),
        )
    else:
        body = nn.Sequential(
            *front, MLP(obs_dim, 2 * action_dim, num_cells, activation), LocScaleHead(min_scale)
        )
    net = TensorDictModule(body, in_keys=["observation"], out_keys=["loc", "scale"])
    if tanh:
        dist_class, dist_kwargs = TanhNormal, {"low": low, "high": high}
    else:
        dist_class, dist_kwargs = IndependentNormal, {}
    head = ProbabilisticTensorDictModule(
        in_keys=["loc", "scale"],
        out_keys=["action"],
        distribution_class=dist_class,
        distribution_kwargs=dist_kwargs,
        return_log_prob=True,
        default_interaction_type=InteractionType.RANDOM,
    )
    return ProbabilisticTensorDictSequential(net, head)


def make_value_network(
    obs_dim: int,
    num_cells: Sequence[int] = (64, 64),
    activation: type[nn.Module] = nn.Tanh,
    *,
    normalizer: nn.Module | None = None,
) -> TensorDictModule:
    """V(s) = MLP(s): reads ``"observation"``, writes ``"state_value"`` [*B, 1] (with a
    ``normalizer`` in front of the MLP if one is given)."""
    _check_sizes("make_value_network", obs_dim=obs_dim)
    mlp = MLP(obs_dim, 1, num_cells, activation)
    return TensorDictModule(
        mlp if normalizer is None else nn.Sequential(normalizer, mlp),
        in_keys=["observation"],
        out_keys=["state_value"],
    )


def make_qvalue_network(
    obs_dim: int,
    n_actions: int,
    num_cells: Sequence[int] = (64, 64),
    activation: type[nn.Module] = nn.ReLU,
) -> TensorDictModule:
    """Q(s, ·) = MLP(s) for discrete actions: reads ``"observation"``, writes ``"action_value"``."""
    _check_sizes("make_qvalue_network", obs_dim=obs_dim, n_actions=n_actions)
    return TensorDictModule(
        MLP(obs_dim, n_actions, num_cells, activation),
        in_keys=["observation"],
        out_keys=["action_value"],
    )


def make_qvalue_actor(
    qvalue_network: TensorDictModule, action_space: str = "categorical"
) -> TensorDictSequential:
    """The greedy policy of a Q-network, in TorchRL's ``QValueActor`` layout.

    Runs ``qvalue_network`` then writes ``"action"`` = argmax Q (int64 index [*B], or a one-hot
    [*B, n] with ``action_space="one-hot"``) and ``"chosen_action_value"`` = max Q ([*B, 1]).
    The Q-network's parameters are shared, not copied. The returned module carries an
    ``action_space`` attribute, which ``rlteach.objectives.DQNLoss`` reads when it is not told
    the action space.
    """
    greedy = TensorDictModule(
        GreedyAction(action_space),
        in_keys=["action_value"],
        out_keys=["action", "chosen_action_value"],
    )
    actor = TensorDictSequential(qvalue_network, greedy)
    actor.action_space = greedy.module.action_space
    return actor


def make_state_action_value_network(
    obs_dim: int,
    action_dim: int,
    num_cells: Sequence[int] = (256, 256),
    activation: type[nn.Module] = nn.ReLU,
) -> TensorDictModule:
    """Q(s, a) = MLP([s, a]) for continuous actions: writes ``"state_action_value"`` [*B, 1]."""
    _check_sizes("make_state_action_value_network", obs_dim=obs_dim, action_dim=action_dim)
    return TensorDictModule(
        ConcatMLP(obs_dim + action_dim, 1, num_cells, activation),
        in_keys=["observation", "action"],
        out_keys=["state_action_value"],
    )
