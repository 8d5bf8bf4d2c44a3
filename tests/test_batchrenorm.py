"""BatchRenorm1d: the (BRN-1)–(BRN-4) equations by hand, and TorchRL 0.14 agreement through warm-up."""

import pytest
import torch

from rlteach.modules import BatchRenorm1d


def _pair(**kwargs):
    """Our layer and TorchRL's with the same (random) affine parameters."""
    torchrl_models = pytest.importorskip("torchrl.modules")
    ours = BatchRenorm1d(4, **kwargs)
    theirs = torchrl_models.BatchRenorm1d(
        4, **{k: v for k, v in kwargs.items() if k != "grow_after_warmup"}
    )
    with torch.no_grad():
        ours.weight.copy_(torch.tensor([1.0, 0.5, 2.0, -1.0]))
        ours.bias.copy_(torch.tensor([0.0, 0.1, -0.3, 1.0]))
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    # shifting means and spreads, so that r and d leave 1 and 0 and the clips engage
    return [3 * torch.randn(16, 4, generator=g) * (1 + i) + i for i in range(n)]


@pytest.mark.parametrize("smooth", [False, True])
def test_matches_torchrl_in_train_and_eval_across_warmup(smooth):
    """Train mode through the warm-up and past it, outputs, gradients and buffers each call; eval
    mode in between. Beyond 2T calls (T + 1 when smooth) TorchRL's factor grows above 1 (tested
    below), so the comparison stops there."""
    warmup = 3
    calls = warmup + 1 if smooth else 2 * warmup
    ours, theirs = _pair(warmup_steps=warmup, smooth=smooth, max_r=1.5, max_d=0.5, momentum=0.3)
    for step, x in enumerate(_batches(calls)):
        ours.train(), theirs.train()
        xa = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        ya, yb = ours(xa), theirs(xb)
        torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5, msg=f"train output, call {step}")
        w = torch.linspace(-1, 1, ya.numel()).view_as(ya)
        (ya * w).sum().backward()
        (yb * w).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, atol=1e-5, rtol=1e-5)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(ours, name), getattr(theirs, name))
        ours.eval(), theirs.eval()
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_torchrl_growing_factor_behind_flag():
    """After 2T calls TorchRL doubles r - 1 and d; grow_after_warmup=True reproduces it, the
    default (the paper) keeps the factor at 1 and so differs there."""
    warmup = 2
    ours, theirs = _pair(warmup_steps=warmup, grow_after_warmup=True, max_r=1.5, max_d=0.5)
    paper, _ = _pair(warmup_steps=warmup, max_r=1.5, max_d=0.5)
    outs = []
    for x in _batches(3 * warmup):
        ya, yb, yp = ours(x), theirs(x), paper(x)
        torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
        outs.append((ya - yp).abs().max().item())
    assert max(outs[: 2 * warmup]) == 0.0
    assert min(outs[2 * warmup :]) > 1e-3


def test_hand_computed_warmup_is_batch_norm_then_renorm_uses_running_stats():
    layer = BatchRenorm1d(1, warmup_steps=1, momentum=0.5, eps=0.0 + 1e-12, max_r=10, max_d=10)
    x = torch.tensor([[1.0], [3.0]])  # mean 2, biased var 1, unbiased var 2
    y = layer(x)  # warm-up: plain batch norm
    torch.testing.assert_close(y, torch.tensor([[-1.0], [1.0]]))
    # (BRN-4): mu = 0 + 0.5 (2 - 0) = 1; v = 1 + 0.5 (2 - 1) = 1.5
    torch.testing.assert_close(layer.running_mean, torch.tensor([1.0]))
    torch.testing.assert_close(layer.running_var, torch.tensor([1.5]))
    # after the warm-up with inactive clips: (x - mu_B)/sigma_B * r + d = (x - mu)/sigma
    y = layer(x)
    expected = (x - 1.0) / 1.5**0.5
    torch.testing.assert_close(y, expected)
    # and eval mode gives the same map with the statistics updated by that call
    layer.eval()
    mu, v = 1.0 + 0.5 * (2 - 1.0), 1.5 + 0.5 * (2 - 1.5)
    torch.testing.assert_close(layer(x), (x - mu) / v**0.5)


def test_corrections_carry_no_gradient():
    """r and d are constants for backprop (BRN-2): the gradient w.r.t. x is batch norm's, times r."""
    layer = BatchRenorm1d(2, warmup_steps=0, max_r=100, max_d=100)
    with torch.no_grad():
        layer.running_var.fill_(4.0)
    x = torch.randn(8, 2, requires_grad=True)
    layer(x)[:, 0].sum().backward()
    # sum over the batch of a normalised feature is constant in x: gradient zero
    torch.testing.assert_close(x.grad, torch.zeros_like(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_features": 0}, "num_features"),
        ({"momentum": 0.0}, "momentum"),
        ({"max_r": 0.5}, "max_r"),
        ({"max_d": -1.0}, "max_d"),
        ({"warmup_steps": -1}, "warmup_steps"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"num_features": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        BatchRenorm1d(**kwargs)


def test_bad_inputs():
    layer = BatchRenorm1d(3)
    with pytest.raises(ValueError, match="features on dim 1"):
        layer(torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        layer(torch.randn(1, 3))
    layer.eval()
    assert layer(torch.randn(1, 3)).shape == (1, 3)  # acting on one observation is fine in eval
