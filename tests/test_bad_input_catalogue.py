"""The bad-input catalogue (issue 21): every public loss and estimator, every input key, every fault.

The classes are discovered from ``rlteach.objectives.__all__`` and ``rlteach.value.__all__``; a
class without a fixture in ``FIXTURES`` fails ``test_every_public_class_has_a_fixture``, saying
to add one (a class may have several fixtures, ``Class[variant]``, one per way of calling it).
A fixture's batch is minimal: only what the class reads, so that every fault is a fault in data
the class uses.

Faults, for each input key: missing; trailing dim dropped; an extra trailing dim; time and
batch swapped; wrong dtype (int for float, float for discrete actions and for bool flags); NaN
and inf at a position hypothesis draws; discrete actions out of range (an index hypothesis
draws) and continuous actions outside the actor's support (a value hypothesis draws). Once per
fixture: an empty batch, a time dim of length 0 (and of length 1, valid), networks in float64
with float32 data. Each must raise rlteach's own error (KeyError, ValueError or TypeError whose
message names the class or its value estimator) and leave the module's whole ``state_dict``
and the caller's batch bit-identical. A few variations are valid input with a defined meaning
(``_optional``, time length 1): those must be accepted, with finite losses.

Where the checks live: ``LossModule.__call__`` (every network input, the actor's bounds, and
the rollback of in-place state on any error), ``ValueEstimatorBase._check_batch``, the loss
readers (``read_inputs``) and ``rlteach._checks.check_action`` for policy-gradient actions.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensordict import TensorDict

import rlteach.objectives as objectives
import rlteach.value as value
from rlteach.modules import (
    DistributionalQValueActor,
    make_categorical_actor,
    make_crossq_qvalue_network,
    make_deterministic_actor,
    make_distributional_qvalue_network,
    make_normal_actor,
    make_qvalue_actor,
    make_qvalue_network,
    make_state_action_value_network,
    make_value_network,
)

OBS, ACT, N, B, T = 3, 2, 4, 4, 3


# ------------------------------------------------------------------------------------ batches


def _transitions(shape, action, *, g):
    term = torch.zeros(*shape, 1, dtype=torch.bool)
    term.view(-1)[1] = True
    return TensorDict(
        {
            "observation": torch.randn(*shape, OBS, generator=g),
            "action": action,
            "next": {
                "observation": torch.randn(*shape, OBS, generator=g),
                "reward": torch.randn(*shape, 1, generator=g),
                "done": term.clone(),
                "terminated": term,
            },
        },
        list(shape),
    )


def _discrete(shape=(B,), seed=0):
    g = torch.Generator().manual_seed(seed)
    return _transitions(shape, torch.randint(N, shape, generator=g), g=g)


def _continuous(shape=(B,), seed=0):
    g = torch.Generator().manual_seed(seed)
    return _transitions(shape, torch.rand(*shape, ACT, generator=g) * 1.6 - 0.8, g=g)


def _pg(discrete=True, *, log_prob=True, advantage=True):
    """A policy-gradient batch. With ``advantage`` the loss reads no ``"next"`` entry (the
    estimator does not run), so the batch carries none: a fault there would be a fault in data
    nobody reads. Without it, the loss's estimator reads the next step (the ``[estimated]``
    fixtures)."""
    td = _discrete((B, T)) if discrete else _continuous((B, T))
    g = torch.Generator().manual_seed(3)
    if log_prob:
        td["action_log_prob"] = -1.0 + 0.1 * torch.randn(B, T, generator=g)
    if advantage:
        td["advantage"] = torch.randn(B, T, 1, generator=g)
        td["value_target"] = torch.randn(B, T, 1, generator=g)
        td = td.exclude("next")
    return td


def _values(td):
    g = torch.Generator().manual_seed(4)
    td["state_value"] = torch.randn(*td.batch_size, 1, generator=g)
    td["next", "state_value"] = torch.randn(*td.batch_size, 1, generator=g)
    return td.exclude("observation", ("next", "observation"), "action")


# ----------------------------------------------------------------------------------- fixtures
# name -> () -> (module, batch, {action key: number of actions (discrete), or the bound b of a
# continuous actor's support [-b, b]})


def _a2c(advantage=True):
    def build():
        torch.manual_seed(0)
        loss = objectives.A2CLoss(
            make_categorical_actor(OBS, N, (8,)), make_value_network(OBS, (8,))
        )
        return loss, _pg(log_prob=False, advantage=advantage), {"action": N}

    return build


def _ppo(cls, advantage=True, discrete=True, **kw):
    def build():
        torch.manual_seed(0)
        if discrete:
            actor, actions = make_categorical_actor(OBS, N, (8,)), {"action": N}
        else:
            actor, actions = make_normal_actor(OBS, ACT, (8,), low=-1.0, high=1.0), {"action": 1.0}
        loss = cls(actor, make_value_network(OBS, (8,)), **kw)
        td = _pg(discrete, advantage=advantage)
        if cls is objectives.KLPENPPOLoss:
            with torch.no_grad():
                params = actor[0](td.clone())  # the stored distribution parameters
                for key in actor[0].out_keys:
                    td[key] = params[key] + 0.1
        return loss, td, actions

    return build


def _reinforce(advantage=True):
    def build():
        torch.manual_seed(0)
        loss = objectives.ReinforceLoss(
            make_categorical_actor(OBS, N, (8,)), make_value_network(OBS, (8,))
        )
        return loss, _pg(log_prob=False, advantage=advantage), {"action": N}

    return build


def _dqn():
    torch.manual_seed(0)
    actor = make_qvalue_actor(make_qvalue_network(OBS, N, (8,)), "categorical")
    loss = objectives.DQNLoss(actor, delay_value=True)
    return loss, _discrete(), {"action": N}


def _c51():
    torch.manual_seed(0)
    net = make_distributional_qvalue_network(OBS, N, 11, num_cells=(8,))
    actor = DistributionalQValueActor(net, torch.linspace(-5.0, 5.0, 11), "categorical")
    loss = objectives.DistributionalDQNLoss(actor, gamma=0.9, delay_value=True)
    return loss, _discrete().exclude(("next", "done")), {"action": N}


def _ddpg():
    torch.manual_seed(0)
    actor = make_deterministic_actor(OBS, ACT, (8,), low=-1.0, high=1.0)
    loss = objectives.DDPGLoss(actor, make_state_action_value_network(OBS, ACT, (8,)))
    return loss, _continuous(), {"action": 1.0}


def _td3():
    torch.manual_seed(0)
    actor = make_deterministic_actor(OBS, ACT, (8,), low=-1.0, high=1.0)
    critic = make_state_action_value_network(OBS, ACT, (8,))
    return objectives.TD3Loss(actor, critic, bounds=(-1.0, 1.0)), _continuous(), {"action": 1.0}


def _sac():
    torch.manual_seed(0)
    actor = make_normal_actor(OBS, ACT, (8,), low=-1.0, high=1.0)
    critic = make_state_action_value_network(OBS, ACT, (8,))
    return objectives.SACLoss(actor, critic, action_spec=ACT), _continuous(), {"action": 1.0}


def _redq():
    torch.manual_seed(0)
    actor = make_normal_actor(OBS, ACT, (8,), low=-1.0, high=1.0)
    critics = [make_state_action_value_network(OBS, ACT, (8,)) for _ in range(3)]
    loss = objectives.REDQLoss(actor, critics, num_qvalue_nets=3, sub_sample_len=2, action_spec=ACT)
    return loss, _continuous(), {"action": 1.0}


def _crossq():
    torch.manual_seed(0)
    actor = make_normal_actor(OBS, ACT, (8,), low=-1.0, high=1.0)
    critics = [make_crossq_qvalue_network(OBS, ACT, (8,)) for _ in range(2)]
    return objectives.CrossQLoss(actor, critics, action_spec=ACT), _continuous(), {"action": 1.0}


def _qmixer():
    import test_qmixer as q

    loss = objectives.QMixerLoss(
        q.local_q_actor(), q.mixer("qmix"), delay_value=True, action_space="categorical"
    )
    td = q.batch(b=B)
    return loss, td, {("agents", "action"): q.N_ACTIONS}


def _mappo(cls):
    def build():
        import test_mappo as m

        actor, critic = m.networks()
        loss = cls(actor, critic)
        loss.set_keys(**m.KEYS)
        return loss, m.batch(False), {("agents", "action"): m.ACTS}

    return build


def _estimator(cls, **kw):
    def build():
        est = cls(gamma=0.9, value_network=None, **kw)
        return est, _values(_discrete((B, T))), {}

    return build


def _vtrace():
    torch.manual_seed(0)
    actor = make_categorical_actor(OBS, N, (8,))
    est = value.VTrace(gamma=0.9, actor_network=actor, value_network=None)
    td = _discrete((B, T))
    td["action_log_prob"] = -1.0 + 0.1 * torch.randn(B, T)
    g = torch.Generator().manual_seed(4)
    td["state_value"] = torch.randn(B, T, 1, generator=g)
    td["next", "state_value"] = torch.randn(B, T, 1, generator=g)
    return est, td.exclude(("next", "observation")), {"action": N}


def _magae():
    import test_mappo as m

    est = value.MultiAgentGAE(gamma=0.9, lmbda=0.9, value_network=None)
    g = torch.Generator().manual_seed(0)
    td = m.batch(False).exclude("agents", ("next", "agents"))
    td["agents", "state_value"] = torch.randn(m.B, m.T, m.N, 1, generator=g)
    td["next", "agents", "state_value"] = torch.randn(m.B, m.T, m.N, 1, generator=g)
    est.set_keys(value=("agents", "state_value"))
    return est, td, {}


FIXTURES = {
    "A2CLoss": _a2c(),
    "A2CLoss[estimated]": _a2c(advantage=False),
    "PPOLoss": _ppo(objectives.PPOLoss),
    "PPOLoss[estimated]": _ppo(objectives.PPOLoss, advantage=False),
    "PPOLoss[continuous]": _ppo(objectives.PPOLoss, discrete=False),
    "ClipPPOLoss": _ppo(objectives.ClipPPOLoss),
    "ClipPPOLoss[estimated]": _ppo(objectives.ClipPPOLoss, advantage=False),
    "KLPENPPOLoss": _ppo(objectives.KLPENPPOLoss, dtarg=1e-9),
    "KLPENPPOLoss[estimated]": _ppo(objectives.KLPENPPOLoss, advantage=False, dtarg=1e-9),
    "KLPENPPOLoss[continuous]": _ppo(objectives.KLPENPPOLoss, discrete=False, dtarg=1e-9),
    "ReinforceLoss": _reinforce(),
    "ReinforceLoss[estimated]": _reinforce(advantage=False),
    "DQNLoss": _dqn,
    "DistributionalDQNLoss": _c51,
    "DDPGLoss": _ddpg,
    "TD3Loss": _td3,
    "SACLoss": _sac,
    "REDQLoss": _redq,
    "CrossQLoss": _crossq,
    "QMixerLoss": _qmixer,
    "MAPPOLoss": _mappo(objectives.MAPPOLoss),
    "IPPOLoss": _mappo(objectives.IPPOLoss),
    "TD0Estimator": _estimator(value.TD0Estimator),
    "TD1Estimator": _estimator(value.TD1Estimator),
    "TDLambdaEstimator": _estimator(value.TDLambdaEstimator, lmbda=0.9),
    "GAE": _estimator(value.GAE, lmbda=0.9),
    "VTrace": _vtrace,
    "MultiAgentGAE": _magae,
}
"""name (the class, or ``Class[variant]`` for a second way of calling it) -> builder."""


def family(name: str) -> str:
    """The class a fixture name tests: ``"PPOLoss[estimated]"`` -> ``"PPOLoss"``."""
    return name.split("[")[0]


# Entries whose absence is valid input with a defined meaning, so "missing" must be accepted,
# not refused. ("next", "terminated"): absent, it defaults to ("next", "done"), as in TorchRL
# (the estimators' _flags; QMixerLoss and the [estimated] losses reach it through their
# estimator). "advantage" of a loss holding a batch with the next step: absent, the loss's
# estimator computes it (TorchRL's behaviour, the [estimated] fixtures' whole point).
OPTIONAL = {("next", "terminated"), "advantage", "value_target"}


# Who reads ("next", "terminated") through a value estimator, and so takes its default. The
# off-policy losses (DQN, DDPG, TD3, SAC, REDQ, CrossQ) read it themselves and require it: a
# clear KeyError, a stricter choice than TorchRL's, kept.
_TERMINATED_DEFAULTS = {"QMixerLoss", "MAPPOLoss", "IPPOLoss"}


def _optional(name: str, key, td) -> bool:
    if key == ("next", "terminated"):
        reads_through_estimator = (
            name.endswith("[estimated]")
            or family(name) in _TERMINATED_DEFAULTS
            or issubclass(getattr(value, family(name), type(None)), value.ValueEstimatorBase)
        )
        return reads_through_estimator and ("next", "done") in _leaves(td)
    if key in ("advantage", "value_target"):  # estimated when the next step is there
        return ("next", "reward") in _leaves(td)
    return False


def public_classes() -> list[str]:
    """Every concrete public loss and estimator: found, not listed by hand."""
    found = []
    for package, base in (
        (objectives, objectives.LossModule),
        (value, value.ValueEstimatorBase),
    ):
        for name in package.__all__:
            obj = getattr(package, name)
            if inspect.isclass(obj) and issubclass(obj, base) and obj is not base:
                found.append(name)
    return found


def test_every_public_class_has_a_fixture():
    missing = [name for name in public_classes() if name not in {family(n) for n in FIXTURES}]
    assert not missing, (
        f"{missing} have no fixture in tests/test_bad_input_catalogue.py: add a builder to "
        f"FIXTURES returning (module, minimal valid batch, {{action key: n_actions or bound}})."
    )


# ------------------------------------------------------------------------------------- faults


def _leaves(td):
    return [k for k in td.keys(True, True)]


def _with(td, key, tensor):
    """A copy of ``td`` with ``key`` replaced (batch sizes of nested groups are left alone)."""
    out = td.clone()
    parent = out.get(key[:-1]) if isinstance(key, tuple) and len(key) > 1 else out
    leaf = key[-1] if isinstance(key, tuple) else key
    parent._tensordict[leaf] = tensor  # bypass the batch-size check: a fault may break it
    return out


def _time_length(td, length):
    """The batch cut to ``length`` steps on its time dim (the last batch dim)."""
    return td[(*(slice(None),) * (td.batch_dims - 1), slice(0, length))]


def _swap(td, key):
    """``key`` with its first two batch dims (batch and time) swapped, the rest of td as it was."""
    return _with(td, key, td.get(key).transpose(0, 1))


def _double_networks(module, td):
    module.double()  # networks in float64, data left in float32
    return td


def faults(name):
    """(fault id, fault, expected) for every key of the class's fixture.

    A fault is a function td -> faulty td, or ("nonfinite" / "outside", key, value) for a value
    hypothesis places; a function of (module, td) where the fault is in the module. ``expected``
    is "refused" or "accepted" (valid input with a defined meaning: see OPTIONAL and the time
    length 1 below).
    """
    module, td, actions = FIXTURES[name]()
    out = [("empty batch", lambda td: td[tuple(slice(0, 0) for _ in td.batch_size)], "refused")]
    if td.batch_dims >= 2:  # [*B, T]: a time dim of length 0 or 1
        out.append(("time length 0", lambda td: _time_length(td, 0), "refused"))
        # one step per trajectory is a batch like any other: each estimator bootstraps from the
        # next value at once (TD(0) = TD(1) = TD(lambda) = GAE there), as in TorchRL
        out.append(("time length 1", lambda td: _time_length(td, 1), "accepted"))
    if any(p.is_floating_point() for p in module.parameters()):
        out.append(("float64 networks", ("module", _double_networks), "refused"))
    for key in _leaves(td):
        x = td.get(key)
        label = key if isinstance(key, str) else "/".join(key)
        missing = "accepted" if _optional(name, key, td) else "refused"
        out.append((f"{label}: missing", lambda td, k=key: td.exclude(k), missing))
        parent = td.get(key[:-1]) if isinstance(key, tuple) and len(key) > 1 else td
        if x.ndim > parent.batch_dims:
            out.append(
                (
                    f"{label}: trailing dim dropped",
                    lambda td, k=key: _with(td, k, td.get(k)[..., 0]),
                    "refused",
                )
            )
        out.append(
            (
                f"{label}: extra dim",
                lambda td, k=key: _with(td, k, td.get(k).unsqueeze(-1).expand(*td.get(k).shape, 2)),
                "refused",
            )
        )
        if parent.batch_dims >= 2 and parent.batch_size[0] != parent.batch_size[1]:
            out.append(
                (f"{label}: time and batch swapped", lambda td, k=key: _swap(td, k), "refused")
            )
        if x.is_floating_point():
            out.append(
                (
                    f"{label}: int dtype",
                    lambda td, k=key: _with(td, k, td.get(k).round().long()),
                    "refused",
                )
            )
            out.append((f"{label}: nan", ("nonfinite", key, float("nan")), "refused"))
            out.append((f"{label}: inf", ("nonfinite", key, float("inf")), "refused"))
            if isinstance(actions.get(key), float):  # continuous action, support [-bound, bound]
                out.append((f"{label}: outside support", ("outside", key, actions[key]), "refused"))
        elif x.dtype == torch.bool:
            out.append(
                (
                    f"{label}: float flag",
                    lambda td, k=key: _with(td, k, td.get(k).float()),
                    "refused",
                )
            )
        else:
            out.append(
                (
                    f"{label}: float action",
                    lambda td, k=key: _with(td, k, td.get(k).float()),
                    "refused",
                )
            )
            if isinstance(actions.get(key), int):
                out.append(
                    (
                        f"{label}: out of range",
                        ("range", key, actions[key]),
                        "refused",
                    )
                )
    return out


CASES = [
    (name, fault_id, fault, expected)
    for name in FIXTURES
    for fault_id, fault, expected in faults(name)
]

# Cases that still fail, one test id a line, run as xfail(run=False). Empty since issue 21's
# catalogue passed in full: a new line needs a reason in the commit that adds it.
KNOWN_GAPS = set((Path(__file__).with_name("bad_input_known_gaps.txt")).read_text().split("\n")) - {
    ""
}


def _param(name, fault_id, fault, expected):
    case_id = f"{name}-{fault_id}"
    marks = (
        [pytest.mark.xfail(run=False, reason="issue 21: known gap, not yet refused")]
        if case_id in KNOWN_GAPS
        else []
    )
    return pytest.param(name, fault_id, fault, expected, id=case_id, marks=marks)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _bits(t):
    return (
        t.dtype,
        tuple(t.shape),
        t.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes(),
    )


def _same_batch(td, original):
    keys = set(_leaves(td))
    return keys == set(_leaves(original)) and all(
        _bits(td.get(k)) == _bits(original.get(k)) for k in keys
    )


def check_refused(name, faulty_batch, module):
    """The call raises rlteach's own error and changes neither the module nor the batch."""
    state = _snapshot(module)
    original = faulty_batch.clone()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((KeyError, ValueError, TypeError)) as info:
            module(faulty_batch)
    message = str(info.value)
    # rlteach's error names the class refusing the call: the loss, or its value estimator
    estimator = getattr(module, "_value_estimator", None)
    owners = [name, type(module).__name__] + ([type(estimator).__name__] if estimator else [])
    assert any(owner in message for owner in owners), f"not rlteach's error: {message!r}"
    after = module.state_dict()
    assert state.keys() == after.keys()
    for k in state:
        assert _bits(state[k]) == _bits(after[k]), f"the refused call changed {k!r}"
    assert _same_batch(faulty_batch, original), "the refused call changed the caller's batch"


def test_fixtures_are_valid():
    """Each fixture's batch is accepted: the faults below are the only thing wrong."""
    for build in FIXTURES.values():
        module, td, _ = build()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module(td)


def check_accepted(faulty_batch, module):
    """Valid input with a defined meaning: the call succeeds and every loss is finite."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = module(faulty_batch)
    for key in _leaves(out):
        value = out.get(key)
        if key[0].startswith("loss") if isinstance(key, tuple) else key.startswith("loss"):
            assert torch.isfinite(value).all(), f"{key!r} is not finite"


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
@pytest.mark.parametrize(
    ("name", "fault_id", "fault", "expected"), [_param(*case) for case in CASES]
)
def test_bad_input_is_refused_and_changes_nothing(name, fault_id, fault, expected, data):
    module, td, _ = FIXTURES[name]()
    if isinstance(fault, tuple) and fault[0] == "module":
        faulty = fault[1](module, td)
    elif isinstance(fault, tuple):  # a value hypothesis places at a position it draws
        kind, key, bound = fault
        x = td.get(key).clone()
        index = data.draw(st.integers(0, x.numel() - 1), label="position")
        if kind == "nonfinite":
            bad = bound * data.draw(st.sampled_from([1.0, -1.0]), label="sign")
        elif kind == "outside":  # beyond the continuous actor's support [-bound, bound]
            bad = data.draw(st.floats(1.01, 100.0), label="factor") * bound
            bad *= data.draw(st.sampled_from([1.0, -1.0]), label="sign")
        else:  # "range": a discrete action index not in 0 ... n - 1
            bad = data.draw(st.sampled_from([bound, bound + 7, -1]), label="index")
        x.view(-1)[index] = bad
        faulty = _with(td, key, x)
    else:
        faulty = fault(td)
    if expected == "accepted":
        check_accepted(faulty, module)
    else:
        check_refused(family(name), faulty, module)


def _count_families():  # for the report: python tests/test_bad_input_catalogue.py
    from collections import Counter

    return Counter(family(name) for name, _, _, _ in CASES)


if __name__ == "__main__":
    print(dict(_count_families()), len(CASES))
