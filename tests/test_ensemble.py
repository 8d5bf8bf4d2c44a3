"""Q-value ensembles: independent members, fused and looped paths agree, detached evaluation."""

from __future__ import annotations

import pytest
import torch
from tensordict.nn import TensorDictModule
from torch import nn

from rlteach.modules import (
    EnsembleLinear,
    EnsembleMLP,
    QValueEnsemble,
    make_qvalue_ensemble,
    make_state_action_value_network,
)

OBS, ACT = 3, 2


def members(n=3, seed=0):
    torch.manual_seed(seed)
    return [make_state_action_value_network(OBS, ACT, (8, 8)) for _ in range(n)]


def test_fused_equals_each_member_and_the_loop():
    nets = members()
    obs, act = torch.randn(5, OBS), torch.randn(5, ACT)
    expected = torch.stack([net.module(obs, act) for net in nets])
    fused, looped = QValueEnsemble(nets), QValueEnsemble(nets, fuse=False)
    assert fused.fused is not None and looped.members is not None
    torch.testing.assert_close(fused(obs, act), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(looped(obs, act), expected, atol=1e-6, rtol=0)
    # per-member inputs: member n reads slice n
    obs_n, act_n = torch.randn(3, 4, OBS), torch.randn(3, 4, ACT)
    expected_n = torch.stack(
        [net.module(o, a) for net, o, a in zip(nets, obs_n, act_n, strict=True)]
    )
    for ens in (fused, looped):
        torch.testing.assert_close(
            ens(obs_n, act_n, shared_inputs=False), expected_n, atol=1e-6, rtol=0
        )


def test_extra_batch_dims_are_kept():
    ens = QValueEnsemble(members(2))
    out = ens(torch.randn(4, 5, OBS), torch.randn(4, 5, ACT))
    assert out.shape == (2, 4, 5, 1)


def test_detached_evaluation_passes_gradient_to_inputs_not_parameters():
    for fuse in (True, False):
        ens = QValueEnsemble(members(2), fuse=fuse)
        act = torch.randn(5, ACT, requires_grad=True)
        ens(torch.randn(5, OBS), act, detach_params=True).sum().backward()
        assert act.grad is not None and act.grad.abs().sum() > 0
        assert all(p.grad is None for p in ens.parameters())


def test_single_network_is_copied_and_reinitialised_independently():
    template = members(1)[0]
    ens = make_qvalue_ensemble(template, 4, "test")
    first = ens.fused.layers[0].weight
    assert first.shape == (4, 8, OBS + ACT)
    # members differ from each other and from the template (independent initialisations)
    for i in range(4):
        assert not torch.allclose(first[i], template.module.layers[0].weight)
        for j in range(i):
            assert not torch.allclose(first[i], first[j])


def test_list_weights_are_copied_not_shared():
    nets = members(2)
    ens = make_qvalue_ensemble(nets, 2, "test")
    torch.testing.assert_close(ens.fused.layers[0].weight[1], nets[1].module.layers[0].weight)
    with torch.no_grad():
        ens.fused.layers[0].weight.add_(1.0)
    assert not torch.allclose(ens.fused.layers[0].weight[1], nets[1].module.layers[0].weight)


def test_ensemble_linear_init_matches_nn_linear_bounds():
    torch.manual_seed(0)
    layer = EnsembleLinear(50, 16, 4)
    bound = 1 / 16**0.5
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    # independent members: no two equal
    assert not torch.allclose(layer.weight[0], layer.weight[1])


def test_errors():
    nets = members(2)
    with pytest.raises(ValueError, match="num_qvalue_nets=3"):
        make_qvalue_ensemble(nets, 3, "SACLoss")
    with pytest.raises(ValueError, match="integer >= 1"):
        make_qvalue_ensemble(nets[0], 0, "SACLoss")
    with pytest.raises(ValueError, match="share parameters"):
        QValueEnsemble([nets[0], nets[0]])
    with pytest.raises(TypeError, match="TensorDictModule"):
        QValueEnsemble([nn.Linear(3, 1)])
    other = TensorDictModule(nets[1].module, in_keys=["obs", "action"], out_keys=["q"])
    with pytest.raises(ValueError, match="same keys"):
        QValueEnsemble([nets[0], other])
    with pytest.raises(ValueError, match="leading dim of 2"):
        EnsembleMLP(2, 5, 1, (4,))(torch.randn(3, 5), shared_inputs=False)
