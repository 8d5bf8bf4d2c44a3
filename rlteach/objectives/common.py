"""``LossModule``: the base class every rlteach loss stands on.

A loss reads a batch (a TensorDict), computes its ``loss_*`` terms and returns them in a new
TensorDict, exactly like TorchRL's ``torchrl.objectives.LossModule``. This base class supplies
the four things all losses share, and nothing else:

1. **Keys.** A nested ``_AcceptedKeys`` dataclass lists every TensorDict entry the loss reads
   or writes, with its default name. ``set_keys(reward="r")`` renames entries and passes the
   renames on to the value estimator.
2. **Networks and target networks.** ``_register_network(name, module, create_target=...)``
   stores the network as ``self.<name>`` and, if asked, a frozen deep copy as
   ``self.target_<name>``. The pair is recorded so that ``rlteach.updaters.SoftUpdate`` and
   ``HardUpdate`` can find it.
3. **The value estimator.** ``make_value_estimator(kind, **hyper)`` builds one of
   ``rlteach.value``'s estimators (TD(0), TD(1), TD(lambda), GAE, V-trace) with TorchRL's
   default hyper-parameters and the loss's key names.
4. **Input checks and reduction.** ``_read_inputs`` fetches every input up front and refuses
   missing keys and NaNs before anything is computed; ``_reduce_loss`` applies ``reduction``.

How rlteach differs from TorchRL here, and why
-----------------------------------------------
TorchRL makes every network *functional*: it pulls the parameters out into TensorDicts
(``loss.value_network_params``, ``loss.target_value_network_params``) and swaps them into a
stateless module at each call. That buys vmap over ensembles and torch.compile friendliness,
at the price of a layer a learner must see through. rlteach keeps networks as ordinary
modules you can call, print and step through in a debugger:

* ``loss.value_network`` *is* the network you passed in (not a copy): an optimiser built on
  ``loss.parameters()`` trains it.
* ``loss.target_value_network`` is a deep copy whose parameters have been turned into
  **buffers** (``requires_grad=False``). It is still a normal module you can call, it moves
  with ``loss.to(device)``, it is saved in ``loss.state_dict()``, and -- because buffers are
  not parameters -- ``loss.parameters()`` never hands it to the optimiser. This is also what
  TorchRL does with its target parameters (it stores them as buffers).
* An ensemble (e.g. the twin or ten Q-networks of TD3, SAC, REDQ) is a list of modules:
  ``_register_network("qvalue_network", [q1, q2], create_target=True)`` stores an
  ``nn.ModuleList`` and a frozen copy of it, member by member.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings

import torch
from tensordict import TensorDictBase, unravel_key
from tensordict.utils import NestedKey
from torch import nn

from rlteach._checks import (
    check_choice,
    check_finite,
    get_key,
    key_str,
)
from rlteach._dispatch import enable_keyword_calls
from rlteach._unmirrored import guard_constructor
from rlteach.modules.inputs import check_action_in_actor_bounds, check_network_inputs
from rlteach.objectives.utils import LOSS_FUNCTIONS, REDUCTIONS, _reduce, read_inputs
from rlteach.value import (
    GAE,
    MultiAgentGAE,
    TD0Estimator,
    TD1Estimator,
    TDLambdaEstimator,
    ValueEstimators,
    VTrace,
)

# Which class implements each kind of estimator.
_ESTIMATOR_CLASSES = {
    ValueEstimators.TD0: TD0Estimator,
    ValueEstimators.TD1: TD1Estimator,
    ValueEstimators.TDLambda: TDLambdaEstimator,
    ValueEstimators.GAE: GAE,
    ValueEstimators.VTrace: VTrace,
    ValueEstimators.MAGAE: MultiAgentGAE,
}

# The hyper-parameters a loss gives its estimator unless told otherwise: TorchRL 0.14's
# ``default_value_kwargs``. Note ``differentiable=True`` for every kind, although the
# estimator classes themselves default to ``False``: a loss lets gradients flow through the
# target unless the target network (a frozen copy) stops them.
_DEFAULT_VALUE_KWARGS = {
    ValueEstimators.TD0: {"gamma": 0.99, "differentiable": True},
    ValueEstimators.TD1: {"gamma": 0.99, "differentiable": True},
    ValueEstimators.TDLambda: {"gamma": 0.99, "lmbda": 0.95, "differentiable": True},
    ValueEstimators.GAE: {"gamma": 0.99, "lmbda": 0.95, "differentiable": True},
    ValueEstimators.VTrace: {"gamma": 0.99, "differentiable": True},
    ValueEstimators.MAGAE: {"gamma": 0.99, "lmbda": 0.95, "differentiable": True},
}

# Friendly names for configuration files and the command line (matched case-insensitively).
VALUE_ESTIMATOR_ALIASES = {
    "td0": ValueEstimators.TD0,
    "td1": ValueEstimators.TD1,
    "td_lambda": ValueEstimators.TDLambda,
    "tdlambda": ValueEstimators.TDLambda,
    "gae": ValueEstimators.GAE,
    "vtrace": ValueEstimators.VTrace,
    "v_trace": ValueEstimators.VTrace,
    "magae": ValueEstimators.MAGAE,
}


def resolve_value_type(value_type) -> ValueEstimators:
    """Turn a ``ValueEstimators`` member (rlteach's, or TorchRL's of the same name) or a string
    alias (``"gae"``, ``"TD0"``) into a member.

    Raises:
        ValueError: the name is not known; the message lists the accepted ones.
    """
    if isinstance(value_type, ValueEstimators) and value_type in _ESTIMATOR_CLASSES:
        return value_type
    # TorchRL's own enum (torchrl.objectives.ValueEstimators), member for member by name
    if type(value_type).__name__ == "ValueEstimators" and hasattr(value_type, "name"):
        value_type = getattr(ValueEstimators, value_type.name, value_type)
        if value_type in _ESTIMATOR_CLASSES:
            return value_type
    if isinstance(value_type, str) and value_type.lower() in VALUE_ESTIMATOR_ALIASES:
        return VALUE_ESTIMATOR_ALIASES[value_type.lower()]
    members = ", ".join(f"ValueEstimators.{m.name}" for m in _ESTIMATOR_CLASSES)
    aliases = ", ".join(repr(a) for a in VALUE_ESTIMATOR_ALIASES)
    raise ValueError(
        f"Unknown value estimator {value_type!r}: choose one of {members}, or a string alias "
        f"({aliases}; case does not matter)."
    )


def default_value_kwargs(value_type) -> dict:
    """The default hyper-parameters of an estimator kind, as TorchRL 0.14 sets them.

    >>> default_value_kwargs("td_lambda")
    {'gamma': 0.99, 'lmbda': 0.95, 'differentiable': True}
    """
    return dict(_DEFAULT_VALUE_KWARGS[resolve_value_type(value_type)])


def _is_nested_key(key) -> bool:
    """A TensorDict key is a string or a non-empty tuple of keys: "reward", ("next", "reward")."""
    if isinstance(key, str):
        return True
    return isinstance(key, tuple) and len(key) > 0 and all(_is_nested_key(k) for k in key)


def _next(key: NestedKey) -> NestedKey:
    """The entry ``key`` one step later: ``"reward"`` -> ``("next", "reward")``."""
    return unravel_key(("next", key))


def _frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters are buffers (no gradient, not optimised).

    Parameters shared between sub-modules stay shared in the copy, so weight tying survives.
    """
    target = copy.deepcopy(module)
    # id(copied parameter) -> (that parameter, kept alive so its id stays unique; its buffer)
    frozen: dict[int, tuple[nn.Parameter, torch.Tensor]] = {}
    for sub in target.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            if isinstance(param, nn.parameter.UninitializedParameter):
                raise ValueError(
                    f"Cannot copy a lazy module into a target network: parameter {name!r} is "
                    f"not initialised yet. Run one forward pass through the network before "
                    f"handing it to the loss."
                )
            if id(param) not in frozen:
                frozen[id(param)] = (param, param.detach())
            delattr(sub, name)
            sub.register_buffer(name, frozen[id(param)][1])
    return target


_FALSE_WORDS = ("0", "false", "f", "no", "n", "off")


def _rl_warnings() -> bool:
    """TorchRL's switch for its warnings: the ``RL_WARNINGS`` environment variable (on unless
    set to a false value such as ``0`` or ``False``)."""
    return os.environ.get("RL_WARNINGS", "1").strip().lower() not in _FALSE_WORDS


def _warn_if_no_updater(loss: LossModule, args) -> None:
    """Forward pre-hook: a loss with target networks and no updater attached warns, as TorchRL."""
    # TorchRL's attribute name, which its own updaters set on any loss: kept private as there
    if not all(loss._has_update_associated.values()) and _rl_warnings():  # noqa: SLF001
        warnings.warn(loss.TARGET_NET_WARNING, category=UserWarning, stacklevel=2)


class UnknownKeyNameError(KeyError, ValueError):
    """``set_keys`` was given a name the loss does not know.

    A ``ValueError``, as TorchRL's ``LossModule.set_keys`` raises, so code written for TorchRL
    catches it; also a ``KeyError``, as rlteach raised before.
    """


class UnsupportedEstimatorError(NotImplementedError, ValueError):
    """``make_value_estimator`` was asked for a kind this loss does not support.

    A ``NotImplementedError``, as TorchRL raises, and a ``ValueError``, as rlteach raised before.
    """


class LossModule(nn.Module):
    """Base class of every rlteach loss: keys, networks, target networks, value estimator.

    A subclass declares, as class attributes:

    ============================== =========================================================
    ``_AcceptedKeys``              dataclass: every key the loss reads or writes, with default
    ``default_value_estimator``    the ``ValueEstimators`` member built when none was asked for
                                   (``None`` for losses without one)
    ``supported_value_estimators`` the members ``make_value_estimator`` accepts
    ``out_keys``                   the names of the entries ``forward`` returns
    ============================== =========================================================

    and in ``__init__`` calls ``super().__init__()`` then ``_register_network`` for each
    network. A target network is used for bootstrapping like this::

        net = self.target_value_network if self.delay_value else self.value_network
        with torch.no_grad():
            next_value = net(next_td)

    Reference: the API is TorchRL's (``torchrl.objectives.LossModule``, version 0.14).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        guard_constructor(cls)  # TorchRL arguments rlteach leaves out are refused with the reason

    @dataclasses.dataclass
    class _AcceptedKeys:
        """Every TensorDict key the loss reads or writes; subclasses replace this."""

    default_value_estimator: ValueEstimators | None = None
    supported_value_estimators: tuple = ()
    out_keys: tuple = ()
    # Coefficient buffers a schedule may set from a plain number, ``loss.entropy_coeff = 0.003``
    # (TorchRL's ``_schedulable_buffers``); see ``__setattr__``.
    _schedulable_buffers: frozenset = frozenset()
    # Rewards, flags, values are exactly [*B, 1] and log-probabilities [*B]; multi-agent losses,
    # whose entries may carry an agent dim, set this to False (and check the agent dim themselves).
    _strict_input_shapes: bool = True
    # TorchRL's text, word for word: warned (UserWarning) at each forward of a loss whose target
    # networks have no updater (SoftUpdate / HardUpdate) attached; RL_WARNINGS=0 silences it.
    TARGET_NET_WARNING = (
        "No target network updater has been associated "
        "with this loss module, but target parameters have been found. "
        "While this is supported, it is expected that the target network "
        "updates will be manually performed. You can deactivate this warning "
        "by turning the RL_WARNINGS env variable to False."
    )

    # The key names a loss shares with its value estimator. ``set_keys`` and
    # ``make_value_estimator`` pass the loss's value for each of these names, when the loss has
    # it, to ``estimator.set_keys``. A loss whose name differs from the estimator's overrides
    # ``_value_estimator_keys`` (e.g. to send its "state_action_value" as the estimator's "value").
    _shared_estimator_keys = (
        "advantage",
        "value_target",
        "value",
        "reward",
        "done",
        "terminated",
        "sample_log_prob",
    )

    def __init__(self) -> None:
        super().__init__()
        self._tensor_keys = self._AcceptedKeys()
        self._target_names: dict[str, str] = {}  # network name -> target network name
        # network name -> whether an updater was attached to its target (set by the updaters)
        self._has_update_associated: dict[str, bool] = {}
        self.register_forward_pre_hook(_warn_if_no_updater)
        # TorchRL's keyword form, loss(observation=..., next_reward=...), returning the outputs
        # as a tuple: see rlteach._dispatch
        enable_keyword_calls(self)
        self.value_type = self.default_value_estimator
        # The estimator holds no trainable state of its own (its networks are this loss's
        # networks), so it is kept outside the module tree: swapping estimators never changes
        # loss.parameters() or the keys of loss.state_dict().
        object.__setattr__(self, "_value_estimator", None)

    def __setattr__(self, name: str, value) -> None:
        # A number assigned to a schedulable coefficient is copied into its buffer in place, as
        # TorchRL does: the buffer keeps its dtype and device, and anything holding it sees the
        # new value. Every other assignment is nn.Module's.
        buffers = self.__dict__.get("_buffers", {})
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and name in self._schedulable_buffers
            and buffers.get(name) is not None
        ):
            buffers[name].fill_(value)
            return
        self.__dict__.pop("_mutable_tensors", None)  # the module tree may change
        super().__setattr__(name, value)

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """``nn.Module.register_buffer``; a new buffer joins the state a refused call restores."""
        self.__dict__.pop("_mutable_tensors", None)
        super().register_buffer(name, tensor, persistent)

    # ------------------------------------------------------------------ keys

    @property
    def tensor_keys(self) -> _AcceptedKeys:
        """The current key names (an ``_AcceptedKeys`` instance); change them with ``set_keys``."""
        return self._tensor_keys

    def set_keys(self, **renames) -> LossModule:
        """Rename the TensorDict entries the loss reads or writes: ``set_keys(reward="r")``.

        ``None`` restores a name's default. Renames of keys the value estimator also uses
        (reward, done, terminated, value, advantage, value_target, ...) are passed on to it.
        Everything is validated before anything changes.

        Raises:
            UnknownKeyNameError: (a ``ValueError`` as in TorchRL, and a ``KeyError``) a name that
                is not in ``_AcceptedKeys``; the message lists those that are.
            ValueError: a new key that is not a string or a tuple of strings.
        """
        owner = type(self).__name__
        accepted = [field.name for field in dataclasses.fields(self._AcceptedKeys)]
        for name, key in renames.items():
            if name not in accepted:
                raise UnknownKeyNameError(
                    f"{owner}.set_keys: {name!r} is not a key name of this loss. Accepted "
                    f"names: {', '.join(accepted) or '(none)'}."
                )
            if key is not None and not _is_nested_key(key):
                raise ValueError(
                    f"{owner}.set_keys: the new key for {name!r} must be a string or a tuple "
                    f"of strings such as ('agents', 'reward'), got {key!r}."
                )
        defaults = self._AcceptedKeys()
        new_keys = dataclasses.replace(
            self._tensor_keys,
            **{
                name: getattr(defaults, name) if key is None else key
                for name, key in renames.items()
            },
        )
        # The estimator validates its own renames (and may refuse one); it goes first so that a
        # refusal leaves the loss's keys as they were.
        if self._value_estimator is not None:
            self._forward_value_estimator_keys(self._value_estimator, new_keys)
        self._tensor_keys = new_keys
        self._after_set_keys(set(renames))
        return self

    def _after_set_keys(self, renamed: set[str]) -> None:
        """Called by ``set_keys`` once ``renamed`` (names of ``_AcceptedKeys``) have new keys.

        For a loss that reads something under a key it is told later (SAC's action spec is read
        under the action key); nothing by default.
        """

    def _value_estimator_keys(self, keys: _AcceptedKeys) -> dict[str, NestedKey]:
        """``{estimator key name: this loss's key}`` for the names both share."""
        return {
            name: getattr(keys, name) for name in self._shared_estimator_keys if hasattr(keys, name)
        }

    def _forward_value_estimator_keys(self, estimator: nn.Module, keys: _AcceptedKeys) -> None:
        """Give ``estimator`` this loss's names (``keys``) for the keys they share.

        Only names whose key differs from the estimator's current one are sent, and only those
        the estimator knows (not every estimator reads log-probabilities, say).
        """
        current = estimator.tensor_keys
        renames = {
            name: key
            for name, key in self._value_estimator_keys(keys).items()
            if hasattr(current, name) and unravel_key(getattr(current, name)) != unravel_key(key)
        }
        if renames:
            estimator.set_keys(**renames)

    @property
    def in_keys(self) -> list[NestedKey]:
        """The entries ``forward`` reads. By default: every registered network's ``in_keys``.

        Subclasses extend this with the keys they read themselves (action, reward, ...).
        """
        keys: list[NestedKey] = []
        for name in self._network_names():
            network = getattr(self, name)
            members = network if isinstance(network, nn.ModuleList) else [network]  # ensembles
            for member in members:
                for key in getattr(member, "in_keys", []):
                    if key not in keys:
                        keys.append(key)
        return keys

    # ------------------------------------------------------- networks and targets

    def _register_network(
        self,
        name: str,
        module: nn.Module | list[nn.Module] | tuple[nn.Module, ...],
        *,
        create_target: bool = False,
    ) -> None:
        """Store ``module`` as ``self.<name>`` and, if asked, a frozen copy as ``self.target_<name>``.

        The network itself is stored, not copied: optimising ``loss.parameters()`` trains the
        very module the caller holds. The target is a deep copy with its parameters turned
        into buffers (``requires_grad=False``); only ``SoftUpdate`` / ``HardUpdate`` (or your own
        code) change it.

        Args:
            name: attribute name, e.g. ``"value_network"``, ``"qvalue_network"``.
            module: the network, or a list of networks for an ensemble (stored as a
                ``nn.ModuleList``; index it as ``self.<name>[i]``).
            create_target: also make the frozen copy ``self.target_<name>``.
        """
        if isinstance(module, (list, tuple)):
            module = nn.ModuleList(module)
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"{type(self).__name__}: network {name!r} must be a torch.nn.Module (or a list "
                f"of them), got {type(module).__name__}."
            )
        if name.startswith("target_"):
            raise ValueError(
                f"Network names may not start with 'target_' ({name!r}): that prefix is kept "
                f"for the frozen copies; register the source network and pass create_target=True."
            )
        if name in self._modules or hasattr(type(self), name):
            raise ValueError(f"{type(self).__name__} already has an attribute {name!r}.")
        target = _frozen_copy(module) if create_target else None  # may raise: nothing set yet
        setattr(self, name, module)
        self.__dict__.setdefault("_registered_networks", []).append(name)
        if target is not None:
            setattr(self, f"target_{name}", target)
            self._target_names[name] = f"target_{name}"
            self._has_update_associated[name] = False

    def _network_names(self) -> list[str]:
        """Names of the networks registered with ``_register_network`` (targets excluded)."""
        targets = set(self._target_names.values())
        return [name for name in self._modules if name not in targets]

    def target_network_pairs(self) -> list[tuple[str, nn.Module, nn.Module]]:
        """``[(name, network, target network), ...]`` for every network that has a target.

        This is what the target-network updaters iterate over.
        """
        return [
            (name, getattr(self, name), getattr(self, target))
            for name, target in self._target_names.items()
        ]

    # ------------------------------------------------------------ value estimator

    @property
    def value_estimator(self):
        """The estimator of returns and advantages, built with defaults on first use."""
        if self._value_estimator is None:
            if self.default_value_estimator is None:
                raise RuntimeError(f"{type(self).__name__} does not use a value estimator.")
            self.make_value_estimator(self.default_value_estimator)
        return self._value_estimator

    def make_value_estimator(self, value_type=None, **hyperparams) -> LossModule:
        """Build the value estimator the loss uses for its targets or advantages.

        Args:
            value_type: a ``rlteach.value.ValueEstimators`` member (TD0, TD1, TDLambda, GAE,
                VTrace, MAGAE; TorchRL's members are taken by name), a string alias (``"td0"``,
                ``"td1"``, ``"td_lambda"``, ``"gae"``, ``"vtrace"``, ``"magae"``; any case), an estimator instance (used as it is), or an estimator
                class (built with ``hyperparams``). ``None`` means
                ``self.default_value_estimator``.
            **hyperparams: override the defaults (``gamma=0.99``, ``lmbda=0.95``,
                ``differentiable=True``, like TorchRL's ``default_value_kwargs``) and any other
                constructor argument of the estimator (``average_gae``, ``value_network``, ...).
                If the loss has a ``gamma`` attribute it replaces the default gamma.

        The estimator's ``value_network`` (and ``actor_network`` for V-trace) defaults to the
        loss's networks, chosen by ``_estimator_networks``; the loss's key names are passed to
        the estimator's ``set_keys``. Returns ``self`` so calls chain.

        Raises:
            UnsupportedEstimatorError: a kind this loss does not support (a
                ``NotImplementedError`` as in TorchRL, and a ``ValueError``).
            ValueError: an unknown kind, a gamma or lambda outside [0, 1], or V-trace without an
                actor network.
        """
        if value_type is None:
            value_type = self.default_value_estimator
        if isinstance(value_type, nn.Module):  # a ready-made estimator
            estimator, kind = value_type, type(value_type)
        elif isinstance(value_type, type) and issubclass(value_type, nn.Module):
            estimator, kind = value_type(**hyperparams), value_type
        else:
            kind = self._check_supported(resolve_value_type(value_type))
            estimator = _ESTIMATOR_CLASSES[kind](**self._estimator_kwargs(kind, hyperparams))
        self._forward_value_estimator_keys(estimator, self.tensor_keys)
        # Only now, with the estimator built and wired, does the loss change.
        object.__setattr__(self, "_value_estimator", estimator)
        self.value_type = kind
        return self

    def _check_supported(self, kind: ValueEstimators) -> ValueEstimators:
        if kind not in self.supported_value_estimators:
            names = ", ".join(f"ValueEstimators.{m.name}" for m in self.supported_value_estimators)
            raise UnsupportedEstimatorError(
                f"{type(self).__name__} does not support the value estimator "
                f"ValueEstimators.{kind.name}. Supported: {names or '(none)'}."
            )
        return kind

    def _estimator_kwargs(self, kind: ValueEstimators, hyperparams: dict) -> dict:
        """Defaults, then the loss's gamma, then the caller's values; networks last.

        gamma and lmbda are range-checked by the estimator's constructor, before the loss keeps it.
        """
        kwargs = dict(_DEFAULT_VALUE_KWARGS[kind])
        if getattr(self, "gamma", None) is not None:
            kwargs["gamma"] = self.gamma
        kwargs.update(hyperparams)
        for arg, network in self._estimator_networks(kind).items():
            kwargs.setdefault(arg, network)
        if kind is ValueEstimators.VTrace and kwargs.get("actor_network") is None:
            raise ValueError(
                f"V-trace needs the current policy to compute importance ratios, but "
                f"{type(self).__name__} has no actor_network. Pass one: "
                f"make_value_estimator('vtrace', actor_network=<policy>)."
            )
        return kwargs

    def _estimator_networks(self, kind: ValueEstimators) -> dict[str, nn.Module | None]:
        """The networks handed to a new estimator; override to choose others (e.g. a target).

        Default, as in TorchRL: ``critic_network`` if the loss has one, else ``value_network``
        (else ``None``: the estimator then reads values already in the TensorDict); V-trace
        also gets ``actor_network``.
        """
        critic = self._modules.get("critic_network", self._modules.get("value_network"))
        networks = {"value_network": critic}
        if kind is ValueEstimators.VTrace:
            networks["actor_network"] = self._modules.get("actor_network")
        return networks

    # ------------------------------------------------------- inputs and reduction

    def _read_inputs(
        self,
        td: TensorDictBase,
        *names: str,
        next_names: tuple[str, ...] = (),
        check_nan: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Fetch the entries named in ``tensor_keys``, all checked before any work is done.

        ``names`` are read at the current step, ``next_names`` under ``"next"`` and returned
        as ``"next_<name>"``. A missing key raises ``KeyError`` naming it and the ``set_keys``
        call that renames it; a NaN or inf raises ``ValueError``.

        >>> x = self._read_inputs(td, "action", next_names=("reward", "terminated"))
        >>> x["next_reward"].shape
        """
        keys = {name: getattr(self.tensor_keys, name) for name in names}
        for name in next_names:
            keys[f"next_{name}"] = _next(getattr(self.tensor_keys, name))
        return read_inputs(
            td,
            keys,
            owner=type(self).__name__,
            check_nan=check_nan,
            # a multi-agent estimator (ValueEstimators.MAGAE) means entries with an agent dim
            strict_shapes=self._strict_input_shapes
            and not isinstance(self._value_estimator, MultiAgentGAE),
        )

    def _check_network_inputs(
        self, td: TensorDictBase, *networks: nn.Module, next_step: bool = True
    ) -> None:
        """Every entry the networks read from the batch: present, of the network's dtype and
        width, finite, and (with ``next_step``) present under ``"next"`` with the same shape.

        This is what keeps a NaN observation from flowing into a loss and a ``td_error`` that a
        prioritised buffer would then store. An ensemble (``nn.ModuleList``) is checked member
        by member. See ``rlteach.modules.inputs.check_network_inputs``.
        """
        owner = type(self).__name__
        checked = self.__dict__.get("_checked_batch") is td  # by __call__: presence is left
        for network in networks:
            members = network if isinstance(network, nn.ModuleList) else [network]
            for member in members:
                if checked:
                    for key in getattr(member, "in_keys", []):
                        get_key(td, key, owner=owner)
                        if next_step:
                            get_key(td, _next(key), owner=owner)
                else:
                    check_network_inputs(owner, td, member, next_step=next_step)

    # ------------------------------------------------ every call: checked, then committed
    # The rule of issue 21, enforced here rather than in each loss: a call first checks what
    # every network will read, and a call that raises leaves the loss as it found it.

    # Networks whose inputs every call reads (a missing entry is refused up front); the inputs
    # of the other networks are checked where present and left to the loss otherwise.
    _always_read_networks: tuple[str, ...] = ("actor_network",)

    def __call__(self, *args, **kwargs):
        batch = args[0] if args and isinstance(args[0], TensorDictBase) else None
        if batch is not None:
            self._check_network_batch(batch)
        saved = self._mutable_state()
        self.__dict__["_checked_batch"] = batch
        try:
            return super().__call__(*args, **kwargs)
        except BaseException:
            with torch.no_grad():
                for tensor, value in saved:
                    tensor.copy_(value)
            raise
        finally:
            self.__dict__["_checked_batch"] = None

    def _check_network_batch(self, td: TensorDictBase) -> None:
        """What every loss asks of a batch: not empty, and every network input readable (see
        ``rlteach.modules.inputs.check_network_inputs``; next-step inputs where present)."""
        owner = type(self).__name__
        if td.batch_size.numel() == 0:
            raise ValueError(
                f"{owner}: the batch is empty (batch size {list(td.batch_size)}); a loss needs "
                f"at least one sample. Check the collector or the replay buffer's sample size."
            )
        for name in self._network_names():
            network = getattr(self, name)
            members = network if isinstance(network, nn.ModuleList) else [network]
            for member in members:
                check_network_inputs(
                    owner,
                    td,
                    member,
                    required=name in self._always_read_networks,
                    next_step=None,
                )
        # stored actions inside the actor's bounds; the key is the loss's, else (DDPG, whose keys
        # name no action) what a deterministic actor writes
        actor = self._modules.get("actor_network")
        action_key = getattr(self.tensor_keys, "action", None)
        if action_key is None and actor is not None:
            action_key = next(iter(getattr(actor, "out_keys", [])), None)
        # a loss given bounded action spec checks the actions against it itself (SAC, TD3, ...)
        has_spec = any(getattr(self, b, None) is not None for b in ("action_low", "min_action"))
        if action_key is not None and actor is not None and not has_spec:
            action = td.get(action_key, None)
            check_action_in_actor_bounds(owner, actor, action, key_str(action_key))

    def _mutable_state(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(tensor, copy) of the state a call may change in place: every buffer (β, batch-norm
        running statistics, counters) and every parameter outside the networks (SAC's
        ``log_alpha``, clamped in place). Target networks are changed by the updaters only and
        the networks' weights by the optimiser only, so they are not copied.

        Which tensors those are is worked out once and kept until the module tree changes
        (an attribute set on the loss, ``.to()``, ``.double()``, ...)."""
        names = self.__dict__.get("_mutable_tensors")  # names, not tensors: .to() moves them
        if names is None:
            names = self.__dict__["_mutable_tensors"] = self._find_mutable_tensors()
        tensors = []
        for module_path, attrs in names.items():
            module = self.get_submodule(module_path)
            for attr in attrs:
                tensor = getattr(module, attr)
                tensors.append((tensor, tensor.detach().clone()))
        return tensors

    def _find_mutable_tensors(self) -> dict[str, list[str]]:
        """``{module path: [tensor names]}`` of what ``_mutable_state`` copies."""
        skip = set()
        for name in self.__dict__.get("_registered_networks", ()):
            skip.update(id(p) for p in getattr(self, name).parameters())
        for target in self._target_names.values():
            skip.update(id(t) for t in getattr(self, target).buffers())
        names: dict[str, list[str]] = {}
        for name, t in [*self.named_parameters(), *self.named_buffers()]:
            if id(t) not in skip:
                module_path, _, attr = name.rpartition(".")
                names.setdefault(module_path, []).append(attr)
        return names

    def _reduce_loss(
        self,
        loss: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Apply ``self.reduction`` ("none", "mean" or "sum"); see ``objectives.utils._reduce``.

        Unlike TorchRL, rlteach does not look for padding masks in the batch on its own: pass
        ``mask=`` explicitly where a loss needs one.
        """
        return _reduce(loss, self.reduction, mask=mask, weights=weights)

    # ------------------------------------------------------------------ argument checks
    # Written once here, so that a loss's constructor states its checks in a line each and its
    # forward reads like the paper's algorithm box.

    @classmethod
    def _refuse_gamma(cls, gamma, estimator: str = "td0") -> None:
        """TorchRL 0.14 losses take no ``gamma``: the discount belongs to the value estimator."""
        if gamma is not None:
            raise TypeError(
                f"{cls.__name__} takes no gamma argument (as in TorchRL 0.14): the discount "
                f"belongs to the value estimator. Use "
                f"loss.make_value_estimator({estimator!r}, gamma={gamma})."
            )

    @staticmethod
    def _check_options(reduction: str | None, **loss_functions: str | None) -> str:
        """Check the distance names given (``loss_function=``, ``loss_critic_type=``), then
        ``reduction``; returns the reduction (``None`` means ``"mean"``)."""
        for name, value in loss_functions.items():
            check_choice(name, value, LOSS_FUNCTIONS)
        reduction = "mean" if reduction is None else reduction
        check_choice("reduction", reduction, REDUCTIONS)
        return reduction

    @classmethod
    def _check_use_prioritized_weights(cls, use_prioritized_weights) -> None:
        if use_prioritized_weights not in (True, False, "auto"):
            raise ValueError(
                f"{cls.__name__}: use_prioritized_weights must be True, False or 'auto', got "
                f"{use_prioritized_weights!r}."
            )

    def _set_deprecated_priority_key(self, priority_key: NestedKey | None) -> None:
        """TorchRL's deprecated ``priority_key=`` argument: warn, then ``set_keys(priority=)``."""
        if priority_key is not None:
            warnings.warn(
                "priority_key is deprecated (as in TorchRL); use loss.set_keys(priority=...).",
                DeprecationWarning,
                stacklevel=3,
            )
            self.set_keys(priority=priority_key)

    def _prioritized_weights(self, tensordict: TensorDictBase) -> torch.Tensor | None:
        """Prioritized replay's importance weights as [*B], or None; checked before any work.

        Reads ``self.use_prioritized_weights`` (``True``, ``False`` or ``"auto"``: weigh by
        the ``priority_weight`` key when the batch has it) and ``tensor_keys.priority_weight``.
        """
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

    # ------------------------------------------------------------------ misc

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Compute the ``loss_*`` terms from a batch; every subclass implements this."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(tensordict).")

    def reset(self) -> None:
        """Reset any state kept between updates (e.g. an adaptive KL coefficient); none here."""

    def _apply(self, fn, *args, **kwargs):
        # ``loss.to(device)`` and friends must reach the estimator too, which sits outside the
        # module tree (see __init__).
        super()._apply(fn, *args, **kwargs)
        self.__dict__.pop("_mutable_tensors", None)  # buffers are new tensors now
        if self._value_estimator is not None:
            self._value_estimator._apply(fn, *args, **kwargs)  # noqa: SLF001 (torch's hook)
        return self
