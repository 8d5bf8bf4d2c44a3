"""TorchRL's engineering options of the value estimators, and ``rolling_gamma=False`` in the
vectorised TD(lambda) (issue 22).

* ``deactivate_vmap`` and value chunking are accepted and change nothing: rlteach gives TorchRL's
  numbers with them (tolerance 1e-5).
* ``shifted=True`` is refused with a message naming what TorchRL does with it; the last test shows
  why: on a batch with more internal truncations than its budget, TorchRL's advantages differ from
  those of ``shifted=False``.
* ``rolling_gamma=False`` in the vectorised TD(lambda): TorchRL raises ``NotImplementedError``;
  so does rlteach (its exception is also a ``ValueError``).
"""

import pytest
import torch
from test_value_estimators import make_batch, value_net

import rlteach.value as V
from rlteach.value import functional as F

RV = pytest.importorskip("torchrl.objectives.value")
RF = pytest.importorskip("torchrl.objectives.value.functional")

ATOL = 1e-5
ESTIMATORS = [
    ("TD0Estimator", {"gamma": 0.9}),
    ("TD1Estimator", {"gamma": 0.9}),
    ("TDLambdaEstimator", {"gamma": 0.9, "lmbda": 0.8}),
    ("GAE", {"gamma": 0.9, "lmbda": 0.8}),
]
OPTIONS = [
    {"deactivate_vmap": True},
    {"value_chunk_size": 4},
    {"num_chunks": 2},
    {"num_chunk": 2, "value_chunk_dim": 0},
    {"shifted": False, "shifted_budget": 1},
]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("name,kwargs", ESTIMATORS)
def test_performance_options_change_nothing(name, kwargs, options):
    net = value_net()
    ours = getattr(V, name)(value_network=net, **kwargs, **options)
    theirs = getattr(RV, name)(value_network=net, **kwargs, **options)
    td_ours, td_theirs = ours(make_batch((2,))), theirs(make_batch((2,)))
    for key in ("advantage", "value_target"):
        torch.testing.assert_close(td_ours[key], td_theirs[key], atol=ATOL, rtol=0)


def test_vtrace_takes_the_options_too():
    from test_value_estimators import actor_net

    est = V.VTrace(
        gamma=0.9, value_network=value_net(), actor_network=actor_net(), value_chunk_size=2
    )
    assert est(make_batch((2,)))["advantage"].shape == (2, 6, 1)


@pytest.mark.parametrize("name,kwargs", ESTIMATORS)
def test_shifted_true_is_refused_with_the_reason(name, kwargs):
    with pytest.raises(NotImplementedError, match=r"shifted=True is not mirrored.*shifted_valid"):
        getattr(V, name)(value_network=value_net(), shifted=True, **kwargs)
    with pytest.raises(ValueError, match="shifted_budget"):
        getattr(V, name)(value_network=value_net(), shifted_budget=2, **kwargs)


def test_why_shifted_is_refused():
    """TorchRL's shifted=True is not a pure speed-up: two internal truncations in a row, budget 1,
    and the displaced last step's advantage is zeroed and marked invalid."""
    td = make_batch((2,))
    td["next", "done"][:, 4] = True  # a second truncation (not terminated) in each row
    plain = RV.GAE(gamma=0.9, lmbda=0.8, value_network=value_net())(td.clone())
    fused = RV.GAE(gamma=0.9, lmbda=0.8, value_network=value_net(), shifted=True)(td.clone())
    assert not fused["shifted_valid"].all()
    assert not torch.allclose(plain["advantage"], fused["advantage"])
    ours = V.GAE(gamma=0.9, lmbda=0.8, value_network=value_net())(td.clone())
    torch.testing.assert_close(ours["advantage"], plain["advantage"], atol=ATOL, rtol=0)


def test_rolling_gamma_false_vectorised_is_refused_as_torchrl_does():
    g = torch.Generator().manual_seed(0)
    shape = (2, 5, 1)
    gamma = 0.9 + 0.05 * torch.rand(shape, generator=g)
    nv, r = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    done = torch.zeros(shape, dtype=torch.bool)
    args = (gamma, 0.8, nv, r, done, done.clone())
    with pytest.raises(NotImplementedError):
        RF.vec_td_lambda_return_estimate(*args, rolling_gamma=False)
    for ours in (F.vec_td_lambda_return_estimate, F.vec_td1_return_estimate):
        call_args = args if ours is F.vec_td_lambda_return_estimate else args[:1] + args[2:]
        with pytest.raises(NotImplementedError, match="loop"):
            ours(*call_args, rolling_gamma=False)
    with pytest.raises(ValueError):  # as rlteach raised before
        F.vec_td_lambda_return_estimate(*args, rolling_gamma=False)
    # the loop version computes it, as TorchRL's loop does
    torch.testing.assert_close(
        F.td_lambda_return_estimate(*args, rolling_gamma=False),
        RF.td_lambda_return_estimate(*args, rolling_gamma=False),
        atol=ATOL,
        rtol=0,
    )
