"""Calling losses and estimators with keyword tensors, as TorchRL's ``dispatch`` allows (issue 22).

``loss(observation=..., action=..., next_reward=...)`` returns the ``out_keys`` entries as a
tuple, in TorchRL's order. Each case: the same networks and batch handed to rlteach and TorchRL
as keywords; the same names (``in_keys`` joined by "_"), the same output order, the same numbers
(1e-5), and the same numbers as the TensorDict call.
"""

from __future__ import annotations

import copy

import pytest
import torch
from pg_fixtures import make_batch, make_nets
from test_value_estimators import make_batch as estimator_batch
from test_value_estimators import value_net

import rlteach.value as V
from rlteach import objectives
from rlteach._dispatch import keyword_name

TO = pytest.importorskip("torchrl.objectives")
RV = pytest.importorskip("torchrl.objectives.value")
ATOL = 1e-5


def keywords(module, td):
    """Every input of ``module`` present in ``td``, as keyword tensors."""
    return {keyword_name(k): td.get(k) for k in module.in_keys if k in td.keys(True)}


def check(ours, theirs, td, seed=0):
    # the same keyword names (a loss's positional order follows its own in_keys, which may list
    # them in another order than TorchRL's: call losses by keyword)
    names = {keyword_name(k) for k in ours.in_keys}
    assert names == {keyword_name(k) for k in theirs.in_keys}
    out_keys = list(getattr(ours, "_dispatch_out_keys", None) or ours.out_keys)
    assert out_keys == list(theirs.out_keys)
    torch.manual_seed(seed)
    got = ours(**keywords(ours, td.clone()))
    torch.manual_seed(seed)
    ref = theirs(**keywords(theirs, td.clone()))
    got = got if isinstance(got, tuple) else (got,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    assert len(got) == len(ref) == len(out_keys)
    for key, a, b in zip(out_keys, got, ref, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0, msg=str(key))
    getattr(ours, "reset", lambda: None)()  # KLPEN: beta back to its initial value
    torch.manual_seed(seed)
    as_td = ours(td.clone())
    for key, a in zip(out_keys, got, strict=True):
        torch.testing.assert_close(a, as_td[key], atol=0, rtol=0, msg=str(key))


@pytest.mark.parametrize(
    "cls_name", ["PPOLoss", "ClipPPOLoss", "KLPENPPOLoss", "A2CLoss", "ReinforceLoss"]
)
def test_policy_gradient_losses(cls_name):
    """The advantage is not an input (TorchRL's in_keys): the loss's GAE computes it."""
    actor, critic = make_nets("categorical")
    ours = getattr(objectives, cls_name)(actor, critic)
    theirs = getattr(TO, cls_name)(copy.deepcopy(actor), copy.deepcopy(critic))
    td = make_batch("categorical", [5], precomputed=False)
    td["logits"] = torch.randn(5, 2, generator=torch.Generator().manual_seed(4))  # KLPEN's π_old
    check(ours, theirs, td)


def test_sac_loss():
    from test_sac import SPEC, batch, nets

    actor, qs, _ = nets()
    ours = objectives.SACLoss(actor, [copy.deepcopy(q) for q in qs], action_spec=SPEC)
    theirs = TO.SACLoss(copy.deepcopy(actor), [copy.deepcopy(q) for q in qs], action_spec=SPEC)
    check(ours, theirs, batch())


@pytest.mark.parametrize("name", ["GAE", "TD0Estimator", "TDLambdaEstimator"])
def test_estimators(name):
    kwargs = {"gamma": 0.9} if name == "TD0Estimator" else {"gamma": 0.9, "lmbda": 0.8}
    net = value_net()
    ours = getattr(V, name)(value_network=net, **kwargs)
    theirs = getattr(RV, name)(value_network=net, **kwargs)
    check(ours, theirs, estimator_batch((2,)))


def test_positional_tensors_fill_in_keys_in_order():
    net = value_net()
    ours = V.GAE(gamma=0.9, lmbda=0.8, value_network=net)
    td = estimator_batch((2,))
    by_keyword = ours(**keywords(ours, td.clone()))
    by_position = ours(*[td.get(k) for k in ours.in_keys])
    for a, b in zip(by_keyword, by_position, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_unknown_keyword_is_refused_with_the_accepted_names():
    actor, critic = make_nets("categorical")
    loss = objectives.ClipPPOLoss(actor, critic)
    td = make_batch("categorical", [5], precomputed=True)
    kw = keywords(loss, td)
    kw["obs"] = kw.pop("observation")
    with pytest.raises(TypeError, match=r"'obs' is not an input.*observation.*next_reward"):
        loss(**kw)
