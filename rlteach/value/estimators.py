r"""Value estimators as TensorDict modules: TD(0), TD(1), TD(λ), GAE and V-trace.

Each estimator reads a batch ``td`` of batch size ``[*B, T]`` (time last unless ``time_dim`` says
otherwise), gets :math:`V(s_t)` and :math:`V(s'_t)` from its value network (or from the batch when
``value_network=None``), calls the matching function of :mod:`rlteach.value.functional`, and writes
``"advantage"`` and ``"value_target"`` back into ``td``. Constructor arguments, defaults and key
names follow TorchRL 0.14 (``torchrl.objectives.value.advantages``); its engineering extras
(chunked or vmapped value calls) are accepted with no effect, ``shifted=True`` and functional
``params`` are left out (see :class:`ValueEstimatorBase`).

Keys read and written (rename any of them with ``set_keys``):

=============================  =========  ============================================
key (default)                  shape      role
=============================  =========  ============================================
``"state_value"``              [*B,T,1]   V(s_t), written when a value network is given
``("next", "state_value")``    [*B,T,1]   V(s'_t), idem
``("next", "reward")``         [*B,T,1]   r_t
``("next", "done")``           [*B,T,1]   d_t: the recursion stops after step t
``("next", "terminated")``     [*B,T,1]   nothing is bootstrapped after step t
``"steps_to_next_obs"``        [*B,T,1]   optional n of an n-step transition: γ becomes γ^n
``"action_log_prob"``          [*B,T,1]   log μ(a_t|s_t) of the behaviour policy (V-trace)
``"advantage"``                [*B,T,1]   output
``"value_target"``             [*B,T,1]   output: the regression target for V(s_t)
=============================  =========  ============================================

Two TorchRL behaviours kept on purpose (a reader meets them in production):

* the value network is run with its parameters *held out* (``requires_grad`` switched off for the
  call), so even with ``differentiable=True`` no gradient reaches the value network's parameters
  through the estimator; ``differentiable`` only decides whether autograd records at all.
* V(s'_t) computed by the value network is detached before it enters the recursion (and is
  stored detached); values read from the batch are used as given.
* forward's outputs, and V(s), V(s') from the network, are written only after every input check
  has passed, so a refused batch is left as it was.
* ``skip_existing=True`` keeps a V(s) or V(s') already in the batch instead of running the value
  network for it (``None``, the default, follows ``tensordict.nn.set_skip_existing``, off unless
  switched on). TorchRL needs both or neither; rlteach takes each that is there.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields
from enum import Enum

import torch
from tensordict import TensorDictBase
from tensordict.nn import (
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    set_interaction_type,
    skip_existing,
)
from tensordict.nn.probabilistic import interaction_type
from tensordict.utils import NestedKey, unravel_key

from rlteach._checks import (
    check_action,
    check_choice,
    check_gamma,
    check_lmbda,
    check_range,
    get_key,
    key_str,
)
from rlteach._dispatch import enable_keyword_calls
from rlteach._unmirrored import guard_constructor
from rlteach.modules.inputs import check_network_inputs
from rlteach.value.functional import (
    generalized_advantage_estimate,
    td0_return_estimate,
    td1_return_estimate,
    td_lambda_return_estimate,
    vec_generalized_advantage_estimate,
    vec_td_lambda_return_estimate,
    vtrace_advantage_estimate,
)

__all__ = [
    "ValueEstimators",
    "ValueEstimatorBase",
    "TD0Estimator",
    "TD1Estimator",
    "TDLambdaEstimator",
    "GAE",
    "VTrace",
]


class ValueEstimators(Enum):
    """The estimators a loss can switch to with ``make_value_estimator`` (TorchRL's names)."""

    TD0 = "Bootstrapped TD (1-step return)"
    TD1 = "TD(1) (infinity-step return)"
    TDLambda = "TD(lambda)"
    GAE = "Generalized advantage estimate"
    MAGAE = "Multi-agent generalized advantage estimate"  # rlteach.value.MultiAgentGAE
    VTrace = "V-trace"


@contextlib.contextmanager
def _held_out(network: torch.nn.Module):
    """Run ``network`` without recording gradients for its parameters (TorchRL's hold_out_net)."""
    params = list(network.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


def _standardize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """(x - mean) / max(std, eps) over the whole batch; std is the unbiased one, as in TorchRL.

    One element has no spread (its unbiased std is NaN, which TorchRL lets through): it is
    returned as it is, as PPO's ``normalize_advantage`` leaves a one-element advantage alone.
    """
    if x.numel() < 2:
        return x
    return (x - x.mean()) / x.std().clamp_min(eps)


def _check_time_dim_type(owner: str, time_dim) -> int | None:
    """``time_dim`` is ``None`` (time last, or the dim named "time") or an int index."""
    if time_dim is not None and (isinstance(time_dim, bool) or not isinstance(time_dim, int)):
        raise ValueError(
            f"{owner}: time_dim must be an int (the index of the time dim in the batch size) or "
            f"None, got {time_dim!r}."
        )
    return time_dim


class ValueEstimatorBase(torch.nn.Module):
    """Shared plumbing of every estimator: keys, value-network calls, time dim, gamma.

    Subclasses implement ``forward(tensordict)``; ``value_estimate`` returns the target alone.

    Every estimator also takes TorchRL 0.14's engineering options, so that TorchRL code runs:

    * ``deactivate_vmap``, ``value_chunk_size``, ``num_chunks`` (``num_chunk``),
      ``value_chunk_dim``: accepted, no effect. They change how TorchRL calls the value network
      (vmap or a loop, in chunks to save memory), never the numbers; rlteach calls it once on s
      and once on s'.
    * ``shifted=False``, ``shifted_budget=1``: accepted (TorchRL's defaults).
    * ``shifted=True``: refused (``NotImplementedError``). In TorchRL it fuses the two calls into
      one over T + budget steps and, past the budget of internal truncations, zeroes the last
      steps' advantages and writes a ``"shifted_valid"`` mask that its losses read; rlteach's
      losses read no masks.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        guard_constructor(cls)  # TorchRL arguments rlteach leaves out are refused with the reason

    @dataclass
    class _AcceptedKeys:
        """The TensorDict keys an estimator reads or writes; rename them with ``set_keys``.

        Attributes:
            advantage: where the advantage is written.
            value_target: where the value target is written.
            value: where V(s) is read (or written by the value network); V(s') is read at
                ``("next", value)``.
            reward, done, terminated: read under ``"next"``.
            steps_to_next_obs: optional number of steps of an n-step transition.
            sample_log_prob: log-probability of the taken action under the behaviour policy.
        """

        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        steps_to_next_obs: NestedKey = "steps_to_next_obs"
        sample_log_prob: NestedKey = "action_log_prob"

    default_keys = _AcceptedKeys

    def __init__(
        self,
        *,
        value_network: TensorDictModule | None,
        differentiable: bool = False,
        skip_existing: bool | None = None,
        device: torch.device | None = None,
        time_dim: int | None = None,
        shifted: bool = False,
        shifted_budget: int = 1,
        deactivate_vmap: bool = False,
        value_chunk_size: int | None = None,
        num_chunks: int | None = None,
        num_chunk: int | None = None,
        value_chunk_dim: int = 0,
    ):
        owner = type(self).__name__
        # TorchRL's engineering options. The chunking and vmap switches only change how TorchRL
        # calls the value network (memory, speed), never the numbers: accepted, no effect here.
        # shifted=True is refused: see ValueEstimatorBase's docstring.
        if shifted is not False:
            raise NotImplementedError(
                f"{owner}: shifted={shifted!r} is not mirrored by rlteach. In TorchRL 0.14 it "
                f"evaluates V(s) and V(s') in one fused value-network call over T + "
                f"shifted_budget steps; it is more than a speed-up: past the budget of internal "
                f"truncations it zeroes the advantages of the displaced last steps and writes a "
                f"'shifted_valid' mask that TorchRL's losses then use to mask the loss and to "
                f"standardise advantages. rlteach calls the value network on s and s' "
                f"separately (the numbers of shifted=False, TorchRL's default) and its losses "
                f"read no masks. Pass shifted=False (or leave it out)."
            )
        if shifted_budget != 1:
            raise ValueError(
                f"{owner}: shifted_budget={shifted_budget!r} only applies with shifted=True, "
                f"which rlteach does not mirror; leave it at 1."
            )
        del deactivate_vmap, value_chunk_size, num_chunks, num_chunk, value_chunk_dim
        super().__init__()
        # The loss owns the value network; the estimator only borrows it, so it is stored outside
        # the module's registry and its parameters are not counted twice (as TorchRL does).
        self.__dict__["value_network"] = value_network
        # A loss with a target critic (ReinforceLoss(delay_value=True)) sets this: V(s') is then
        # bootstrapped from the target network, V(s) still from value_network (TorchRL's
        # target_params). None: value_network for both.
        self.__dict__["target_value_network"] = None
        self.differentiable = differentiable
        # True: V(s) and V(s') already in the batch are used as they are, not recomputed by the
        # value network; None: follow tensordict.nn's global switch (set_skip_existing), as TorchRL
        self.skip_existing = skip_existing
        self._device = torch.device("cpu") if device is None else torch.device(device)
        self.time_dim = _check_time_dim_type(type(self).__name__, time_dim)
        self._tensor_keys = self._AcceptedKeys()
        # TorchRL's keyword form, estimator(observation=..., next_reward=...), returning
        # (advantage, value_target): see rlteach._dispatch
        enable_keyword_calls(self)

    def use_target_value_network(self, network: torch.nn.Module | None) -> None:
        """Bootstrap V(s') from ``network`` (a loss's target critic); ``None``: ``value_network``.

        Borrowed like ``value_network``: kept outside the module registry, so the estimator's
        ``parameters()`` and ``state_dict()`` do not change.
        """
        self.__dict__["target_value_network"] = network

    # -- keys --------------------------------------------------------------------------------

    @property
    def tensor_keys(self) -> _AcceptedKeys:
        return self._tensor_keys

    def set_keys(self, **renames: NestedKey) -> None:
        """Rename the keys this estimator reads or writes, e.g. ``set_keys(value="v")``."""
        accepted = [f.name for f in fields(self._AcceptedKeys)]
        for name, key in renames.items():
            if name not in accepted:
                raise KeyError(
                    f"{name!r} is not a key {type(self).__name__} knows; accepted names: "
                    f"{', '.join(accepted)}."
                )
            if not isinstance(key, (str, tuple)):
                raise ValueError(
                    f"set_keys({name}=...) needs a str or a tuple of str, got {key!r}."
                )
            out_keys = getattr(self.value_network, "out_keys", None)
            if name == "value" and out_keys is not None and unravel_key(key) not in out_keys:
                raise KeyError(
                    f"set_keys(value={key!r}): the value network writes {out_keys}, not {key!r}. "
                    f"Rename the network's out_key too, or pick one of its out_keys."
                )
        current = asdict(self._tensor_keys)
        current.update({name: unravel_key(key) for name, key in renames.items()})
        self._tensor_keys = self._AcceptedKeys(**current)

    @property
    def in_keys(self) -> list[NestedKey]:
        net_in = list(getattr(self.value_network, "in_keys", []))
        flags = [self.tensor_keys.reward, self.tensor_keys.done, self.tensor_keys.terminated]
        return (
            net_in
            + [unravel_key(("next", k)) for k in flags]
            + [unravel_key(("next", k)) for k in net_in]
        )

    @property
    def out_keys(self) -> list[NestedKey]:
        return [self.tensor_keys.advantage, self.tensor_keys.value_target]

    # -- helpers shared by the subclasses ----------------------------------------------------

    def _get(self, td: TensorDictBase, name: str, *, under_next: bool = False):
        """Read the entry ``set_keys`` knows as ``name`` (under "next" if asked), clearly."""
        key = getattr(self.tensor_keys, name)
        if under_next:
            key = unravel_key(("next", key))
        return get_key(td, key, owner=type(self).__name__, key_name=name)

    def _check_batch(self, td: TensorDictBase) -> None:
        if td.batch_dims < 1:
            raise ValueError(
                f"{type(self).__name__} needs a TensorDict with a time dim, batch size [*B, T]; "
                f"got batch size {list(td.batch_size)}."
            )
        if td.batch_size.numel() == 0:
            raise ValueError(
                f"{type(self).__name__}: the batch is empty (batch size {list(td.batch_size)}); "
                f"there is nothing to estimate. Collect at least one step per trajectory."
            )
        self._time_dim(td)  # the constructor's time_dim must name one of td's dims
        # what the networks will read (rlteach.modules.inputs.check_network_inputs): the value network's
        # inputs now and next, unless the values are stored and kept (skip_existing); the
        # actor's always
        owner = type(self).__name__
        if isinstance(self.value_network, torch.nn.Module):
            kept = self._skips_existing()
            value = self.tensor_keys.value
            now = not (kept and td.get(value, None) is not None)
            later = not (kept and td.get(unravel_key(("next", value)), None) is not None)
            check_network_inputs(
                owner, td, self.value_network, required=now, next_step=True if later else None
            )
        actor = getattr(self, "actor_network", None)
        if isinstance(actor, torch.nn.Module):
            check_network_inputs(owner, td, actor, required=True, next_step=None)

    # How many dims follow the batch dims: rewards and flags, values. One (the trailing feature
    # dim, [*B, T, 1]) for every single-agent estimator; MultiAgentGAE's values carry an agent
    # dim before it, and its team signals may too.
    _signal_trailing_dims: tuple[int, ...] = (1,)
    _value_trailing_dims: tuple[int, ...] = (1,)

    def _check_signal(self, td: TensorDictBase, name: str, x: torch.Tensor, trailing=None):
        """Refuse a reward, value or flag that would give a silently wrong estimate: the batch
        dims then the trailing dim(s) (``[*B, T, 1]``), floating point and finite (rewards,
        values) or bool (flags). Nothing is written before these checks pass."""
        owner = type(self).__name__
        batch = list(td.batch_size)
        trailing = self._signal_trailing_dims if trailing is None else trailing
        one_value = "value" not in name or x.ndim == td.batch_dims or x.shape[-1] == 1
        if (
            list(x.shape[: td.batch_dims]) != batch
            or x.ndim - td.batch_dims not in trailing
            or not one_value  # a value is one number per state (per agent): [..., 1]
        ):
            raise ValueError(
                f"{owner}: {name} has shape {list(x.shape)}; expected the batch size {batch} "
                f"followed by a trailing dim, e.g. {batch + [1] * trailing[0]} "
                f"(add a missing trailing dim with x.unsqueeze(-1))."
            )
        if name in ("done", "terminated"):
            if x.dtype != torch.bool:
                raise TypeError(
                    f"{owner}: {name} must be a bool tensor (True where the episode ended), "
                    f"got {x.dtype}; convert it with x.bool()."
                )
            return
        if not x.is_floating_point():
            raise TypeError(
                f"{owner}: {name} must be floating point, got {x.dtype}; convert it with x.float()."
            )
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            where = tuple(int(i) for i in (~finite).nonzero()[0])
            what = "NaN" if torch.isnan(x[where]) else "inf"
            raise ValueError(
                f"{owner}: {name} contains {what} at index {list(where)}; rewards and values "
                f"must be finite (check the environment or the value network)."
            )

    def _time_dim(self, td: TensorDictBase, time_dim: int | None = None) -> int:
        """Time dim of ``td`` as a non-negative index: argument, constructor, dim named 'time', last.

        An explicit ``time_dim`` must name one of the batch dims (``-batch_dims <= time_dim <
        batch_dims``); anything else is refused rather than wrapped around.
        """
        owner = type(self).__name__
        for candidate in (time_dim, self.time_dim):
            if candidate is not None:
                _check_time_dim_type(owner, candidate)
                if not -td.batch_dims <= candidate < td.batch_dims:
                    raise ValueError(
                        f"{owner}: time_dim={candidate} names no dim of a batch of size "
                        f"{list(td.batch_size)} (valid: {-td.batch_dims} ... {td.batch_dims - 1}). "
                        f"Pass the index of the time dim in the batch size, e.g. time_dim=-1 "
                        f"for [*B, T]."
                    )
                return candidate % td.batch_dims
        names = td.names if td._has_names() else []  # noqa: SLF001 (tensordict's: names unset)
        if "time" in names:
            return names.index("time")
        return td.batch_dims - 1

    def _gamma(self, td: TensorDictBase, reward: torch.Tensor) -> torch.Tensor:
        """γ, or γ^n per entry when the batch carries n-step transitions (steps_to_next_obs)."""
        gamma = self.gamma.to(reward.device)
        steps = td.get(self.tensor_keys.steps_to_next_obs, None)
        if steps is not None:
            gamma = gamma ** steps.view_as(reward)
        return gamma

    def _skips_existing(self) -> bool:
        """Whether values already in the batch are kept (``skip_existing``, else the global switch)."""
        return skip_existing() if self.skip_existing is None else bool(self.skip_existing)

    def _run_value_network(self, td: TensorDictBase, *, next_states: bool = False) -> torch.Tensor:
        """V at the states of ``td`` (the root, or the "next" sub-TensorDict if ``next_states``).

        With ``skip_existing`` a value already stored there is returned as it is, as TorchRL's
        value network (a ``TensorDictModule`` run under ``set_skip_existing``) would leave it.
        The next states' values come from ``target_value_network`` when one is set.
        """
        key = self.tensor_keys.value
        if self._skips_existing() and key in td.keys(include_nested=True):
            return td.get(key)
        net = self.value_network
        if next_states and self.target_value_network is not None:
            net = self.target_value_network
        with _held_out(net):
            return net(td.select(*net.in_keys, strict=False)).get(key)

    def _values(self, td: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """V(s_t) and V(s'_t): from the value network (V(s'_t) detached), or read from the batch.

        Nothing is written here: ``_store`` writes the values once every check has passed.
        """
        if self.value_network is None:
            value, next_value = self._get(td, "value"), self._get(td, "value", under_next=True)
        else:
            value = self._run_value_network(td)
            next_value = self._run_value_network(td.get("next"), next_states=True).detach()
        self._check_signal(td, "value", value, self._value_trailing_dims)
        self._check_signal(td, "next value", next_value, self._value_trailing_dims)
        return value, next_value

    def _store(self, td: TensorDictBase, value, next_value, **outputs) -> None:
        """Write the outputs (by key name) and, when a value network made them, V(s) and V(s')."""
        if self.value_network is not None:
            td.set(self.tensor_keys.value, value)
            td.set(unravel_key(("next", self.tensor_keys.value)), next_value)
        for name, tensor in outputs.items():
            td.set(getattr(self.tensor_keys, name), tensor)

    def _next_value(self, td: TensorDictBase) -> torch.Tensor:
        """V(s'_t) alone, for ``value_estimate`` called without ``next_value``."""
        if self.value_network is None:
            next_value = self._get(td, "value", under_next=True)
        else:
            next_value = self._run_value_network(td.get("next"), next_states=True)
        self._check_signal(td, "next value", next_value, self._value_trailing_dims)
        return next_value

    def _reward(self, td: TensorDictBase, *, average: bool = False, eps: float = 1e-5):
        """r_t, standardised over the batch when ``average``."""
        reward = self._get(td, "reward", under_next=True)
        self._check_signal(td, "reward", reward)
        return _standardize(reward, eps) if average else reward

    def _store_reward(self, td: TensorDictBase, reward: torch.Tensor) -> None:
        """Write standardised rewards back, as TorchRL does, for whatever reads them next."""
        if getattr(self, "average_rewards", False):
            td.set(unravel_key(("next", self.tensor_keys.reward)), reward)

    def _flags(self, td: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """(done, terminated); terminated defaults to done when the batch has no such entry."""
        done = self._get(td, "done", under_next=True)
        terminated = td.get(unravel_key(("next", self.tensor_keys.terminated)), None)
        terminated = done if terminated is None else terminated
        self._check_signal(td, "done", done)
        self._check_signal(td, "terminated", terminated)
        return done, terminated

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Write ``advantage`` and ``value_target`` into ``tensordict`` and return it."""
        self._check_batch(tensordict)
        with torch.set_grad_enabled(self.differentiable):
            value, next_value = self._values(tensordict)
            target = self.value_estimate(tensordict, next_value=next_value)
            self._store(
                tensordict, value, next_value, advantage=target - value, value_target=target
            )
        return tensordict

    def value_estimate(self, tensordict: TensorDictBase, **kwargs) -> torch.Tensor:
        """The value target alone."""
        raise NotImplementedError


class TD0Estimator(ValueEstimatorBase):
    r"""One-step TD target :math:`r_t + \gamma(1-\mathrm{term}_t)V(s'_t)` (Sutton & Barto 2018, §6.1).

    See :func:`rlteach.value.functional.td0_return_estimate`. ``average_rewards=True`` standardises
    the rewards over the batch first (and writes them back, as TorchRL does).
    """

    def __init__(
        self,
        *,
        gamma: float | torch.Tensor,
        value_network: TensorDictModule | None,
        average_rewards: bool = False,
        differentiable: bool = False,
        skip_existing: bool | None = None,
        device: torch.device | None = None,
        **torchrl_options,
    ):
        check_gamma(gamma)
        super().__init__(
            value_network=value_network,
            differentiable=differentiable,
            skip_existing=skip_existing,
            device=device,
            **torchrl_options,
        )
        self.register_buffer("gamma", torch.as_tensor(gamma, device=self._device).float())
        self.average_rewards = average_rewards

    def value_estimate(
        self, tensordict: TensorDictBase, target_params=None, next_value=None, **kwargs
    ) -> torch.Tensor:
        reward = self._reward(tensordict, average=self.average_rewards, eps=1e-5)
        gamma = self._gamma(tensordict, reward)
        if next_value is None:
            next_value = self._next_value(tensordict)
        _, terminated = self._flags(tensordict)
        target = td0_return_estimate(gamma, next_value, reward, terminated)
        self._store_reward(tensordict, reward)
        return target


class TD1Estimator(ValueEstimatorBase):
    r"""TD(1) target: the discounted return to the end of the trajectory (Sutton & Barto 2018, §3.3).

    Bootstraps from :math:`V(s'_t)` at a truncation and at the end of the batch; see
    :func:`rlteach.value.functional.td1_return_estimate`.
    """

    def __init__(
        self,
        *,
        gamma: float | torch.Tensor,
        value_network: TensorDictModule | None,
        average_rewards: bool = False,
        differentiable: bool = False,
        skip_existing: bool | None = None,
        device: torch.device | None = None,
        time_dim: int | None = None,
        **torchrl_options,
    ):
        check_gamma(gamma)
        super().__init__(
            value_network=value_network,
            differentiable=differentiable,
            skip_existing=skip_existing,
            device=device,
            time_dim=time_dim,
            **torchrl_options,
        )
        self.register_buffer("gamma", torch.as_tensor(gamma, device=self._device).float())
        self.average_rewards = average_rewards

    def value_estimate(
        self,
        tensordict: TensorDictBase,
        target_params=None,
        next_value=None,
        time_dim: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        time_dim = self._time_dim(tensordict, time_dim)
        reward = self._reward(tensordict, average=self.average_rewards, eps=1e-5)
        gamma = self._gamma(tensordict, reward)
        if next_value is None:
            next_value = self._next_value(tensordict)
        done, terminated = self._flags(tensordict)
        target = td1_return_estimate(gamma, next_value, reward, done, terminated, time_dim=time_dim)
        self._store_reward(tensordict, reward)
        return target


class TDLambdaEstimator(ValueEstimatorBase):
    r"""TD(λ) target, the λ-return (Sutton & Barto 2018, §12.1).

    See :func:`rlteach.value.functional.td_lambda_return_estimate`; ``vectorized=True`` (the
    default, as in TorchRL) uses the parallel-scan twin.
    """

    def __init__(
        self,
        *,
        gamma: float | torch.Tensor,
        lmbda: float | torch.Tensor,
        value_network: TensorDictModule | None,
        average_rewards: bool = False,
        differentiable: bool = False,
        vectorized: bool = True,
        skip_existing: bool | None = None,
        device: torch.device | None = None,
        time_dim: int | None = None,
        **torchrl_options,
    ):
        check_gamma(gamma)
        check_lmbda(lmbda)
        super().__init__(
            value_network=value_network,
            differentiable=differentiable,
            skip_existing=skip_existing,
            device=device,
            time_dim=time_dim,
            **torchrl_options,
        )
        self.register_buffer("gamma", torch.as_tensor(gamma, device=self._device).float())
        self.register_buffer("lmbda", torch.as_tensor(lmbda, device=self._device).float())
        self.average_rewards = average_rewards
        self.vectorized = vectorized

    def value_estimate(
        self,
        tensordict: TensorDictBase,
        target_params=None,
        next_value=None,
        time_dim: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        # TorchRL floors the reward std at 1e-4 here but at 1e-5 in TD(0) and TD(1).
        time_dim = self._time_dim(tensordict, time_dim)
        reward = self._reward(tensordict, average=self.average_rewards, eps=1e-4)
        gamma = self._gamma(tensordict, reward)
        if next_value is None:
            next_value = self._next_value(tensordict)
        done, terminated = self._flags(tensordict)
        estimate = vec_td_lambda_return_estimate if self.vectorized else td_lambda_return_estimate
        target = estimate(
            gamma, self.lmbda, next_value, reward, done, terminated, time_dim=time_dim
        )
        self._store_reward(tensordict, reward)
        return target


class GAE(ValueEstimatorBase):
    r"""Generalized advantage estimation (Schulman et al. 2016).

    See :func:`rlteach.value.functional.generalized_advantage_estimate`. ``average_gae=True``
    standardises the advantage over the batch (std floored at 1e-4); the value target is computed
    before that and is not affected. ``vectorized`` defaults to ``None``, which (as in TorchRL)
    means the loop; ``True`` uses the parallel-scan twin.
    """

    def __init__(
        self,
        *,
        gamma: float | torch.Tensor,
        lmbda: float | torch.Tensor,
        value_network: TensorDictModule | None,
        average_gae: bool = False,
        differentiable: bool = False,
        vectorized: bool | None = None,
        skip_existing: bool | None = None,
        device: torch.device | None = None,
        time_dim: int | None = None,
        **torchrl_options,
    ):
        check_gamma(gamma)
        check_lmbda(lmbda)
        super().__init__(
            value_network=value_network,
            differentiable=differentiable,
            skip_existing=skip_existing,
            device=device,
            time_dim=time_dim,
            **torchrl_options,
        )
        self.register_buffer("gamma", torch.as_tensor(gamma, device=self._device).float())
        self.register_buffer("lmbda", torch.as_tensor(lmbda, device=self._device).float())
        self.average_gae = average_gae
        self.vectorized = vectorized

    def _gae_inputs(self, td: TensorDictBase, time_dim: int):
        """(gamma, V(s), V(s'), reward, done, terminated), read from the batch and checked."""
        reward = self._reward(td)
        gamma = self._gamma(td, reward)
        value, next_value = self._values(td)
        done, terminated = self._flags(td)
        return gamma, value, next_value, reward, done, terminated

    def _standardize_advantage(self, advantage: torch.Tensor) -> torch.Tensor:
        """``average_gae``: (Â - mean) / max(std, 1e-4) over the whole batch."""
        return _standardize(advantage, 1e-4)

    def _advantage(self, td: TensorDictBase, time_dim: int | None):
        """(advantage, value_target, V(s), V(s')), the advantage not yet standardised."""
        time_dim = self._time_dim(td, time_dim)  # refused before the value network runs
        gamma, value, next_value, reward, done, terminated = self._gae_inputs(td, time_dim)
        estimate = (
            vec_generalized_advantage_estimate
            if self.vectorized
            else generalized_advantage_estimate
        )
        advantage, value_target = estimate(
            gamma,
            self.lmbda,
            value,
            next_value,
            reward,
            done,
            terminated,
            time_dim=time_dim,
        )
        return advantage, value_target, value, next_value

    def forward(self, tensordict: TensorDictBase, *, time_dim: int | None = None) -> TensorDictBase:
        """Write ``advantage`` (standardised if ``average_gae``) and ``value_target``."""
        self._check_batch(tensordict)
        with torch.set_grad_enabled(self.differentiable):
            advantage, value_target, value, next_value = self._advantage(tensordict, time_dim)
            if self.average_gae:
                advantage = self._standardize_advantage(advantage)
            self._store(
                tensordict, value, next_value, advantage=advantage, value_target=value_target
            )
        return tensordict

    def value_estimate(
        self,
        tensordict: TensorDictBase,
        params=None,
        target_params=None,
        time_dim: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """The GAE value target :math:`\\hat A_t + V(s_t)`, i.e. the TD(λ) return."""
        self._check_batch(tensordict)
        with torch.set_grad_enabled(self.differentiable):
            _, value_target, value, next_value = self._advantage(tensordict, time_dim)
            self._store(tensordict, value, next_value)
            return value_target


class VTrace(ValueEstimatorBase):
    r"""V-trace off-policy targets and advantages (Espeholt et al. 2018).

    See :func:`rlteach.value.functional.vtrace_advantage_estimate`. The behaviour policy's
    log μ(a_t|s_t) is read from ``"action_log_prob"``; the current policy's log π(a_t|s_t) is
    recomputed with ``actor_network`` (a ``ProbabilisticTensorDictSequential``).

    ``log_pi_of`` chooses which action π is evaluated at:

    * ``"taken_action"`` (default, the paper): the action stored in the batch, π(a_t|s_t).
    * ``"policy_sample"`` (TorchRL 0.14's behaviour): the action the current policy produces now
      under the active interaction type, by default its mode. That is not the action that was
      taken, so the importance ratio is not the paper's; use it only to reproduce TorchRL.
    """

    def __init__(
        self,
        *,
        gamma: float | torch.Tensor,
        actor_network: ProbabilisticTensorDictSequential,
        value_network: TensorDictModule | None,
        rho_thresh: float | torch.Tensor = 1.0,
        c_thresh: float | torch.Tensor = 1.0,
        average_adv: bool = False,
        differentiable: bool = False,
        skip_existing: bool | None = None,
        device: torch.device | None = None,
        time_dim: int | None = None,
        log_pi_of: str = "taken_action",
        **torchrl_options,
    ):
        check_gamma(gamma)
        if torch.as_tensor(gamma).numel() != 1:
            raise ValueError("VTrace: gamma must be a single number (one discount for all steps).")
        check_range("rho_thresh", rho_thresh, 0.0, None, low_open=True)
        check_range("c_thresh", c_thresh, 0.0, None, low_open=True)
        check_choice("log_pi_of", log_pi_of, ("taken_action", "policy_sample"))
        super().__init__(
            value_network=value_network,
            differentiable=differentiable,
            skip_existing=skip_existing,
            device=device,
            time_dim=time_dim,
            **torchrl_options,
        )
        self.register_buffer("gamma", torch.as_tensor(gamma, device=self._device).float())
        self.register_buffer("rho_thresh", torch.as_tensor(rho_thresh, device=self._device))
        self.register_buffer("c_thresh", torch.as_tensor(c_thresh, device=self._device))
        self.actor_network = actor_network
        self.average_adv = average_adv
        self.log_pi_of = log_pi_of

    @property
    def in_keys(self) -> list[NestedKey]:
        return super().in_keys + [self.tensor_keys.sample_log_prob]

    def _log_pi(self, td: TensorDictBase, like: torch.Tensor) -> torch.Tensor:
        """log π(a_t|s_t) under the current actor, without gradients to its parameters."""
        actor = self.actor_network
        inputs = td.select(*actor.in_keys, strict=False)
        with _held_out(actor):
            dist = actor.get_dist(inputs)
            action_key = actor.dist_sample_keys[0]
            if self.log_pi_of == "taken_action":
                action = get_key(td, action_key, owner="VTrace")
                check_action("VTrace", dist, action, key_str(action_key))
            else:
                mode = interaction_type() or actor.default_interaction_type
                with set_interaction_type(mode):
                    action = actor(inputs.clone(False)).get(action_key)
            return dist.log_prob(action).view_as(like)

    def forward(self, tensordict: TensorDictBase, *, time_dim: int | None = None) -> TensorDictBase:
        """Write the V-trace ``advantage`` and ``value_target`` (v_t) into ``tensordict``."""
        self._check_batch(tensordict)
        time_dim = self._time_dim(tensordict, time_dim)  # refused before any network runs
        with torch.set_grad_enabled(self.differentiable):
            reward = self._reward(tensordict)
            gamma = self._gamma(tensordict, reward)
            value, next_value = self._values(tensordict)
            log_mu = self._get(tensordict, "sample_log_prob")
            batch = list(tensordict.batch_size)
            if list(log_mu.shape) not in (batch, batch + [1]):
                raise ValueError(
                    f"VTrace: the behaviour log-probability {key_str(self.tensor_keys.sample_log_prob)}"
                    f" has shape {list(log_mu.shape)}; expected the batch size {batch} (or "
                    f"{batch + [1]}): one log pi(a|s) per step, summed over action dims."
                )
            self._check_signal(
                tensordict, "sample_log_prob", log_mu, trailing=(log_mu.ndim - len(batch),)
            )
            log_mu = log_mu.view_as(value)
            log_pi = self._log_pi(tensordict, value)
            done, terminated = self._flags(tensordict)
            advantage, value_target = vtrace_advantage_estimate(
                gamma,
                log_pi,
                log_mu,
                value,
                next_value,
                reward,
                done,
                terminated,
                rho_thresh=self.rho_thresh,
                c_thresh=self.c_thresh,
                time_dim=time_dim,
            )
            if self.average_adv:
                advantage = _standardize(advantage, 1e-5)
            self._store(
                tensordict, value, next_value, advantage=advantage, value_target=value_target
            )
        return tensordict

    def value_estimate(self, tensordict: TensorDictBase, time_dim: int | None = None, **kwargs):
        """The V-trace target v_t (TorchRL 0.14 does not implement this method for VTrace)."""
        return self.forward(tensordict.copy(), time_dim=time_dim).get(self.tensor_keys.value_target)
