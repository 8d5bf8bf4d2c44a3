r"""Batch renormalisation (Ioffe, 2017), the normalisation layer CrossQ puts in its critic.

Batch normalisation (Ioffe & Szegedy, 2015) normalises each feature with the statistics of the
current minibatch during training and with running averages at test time. The two disagree
when minibatches are small or not identically distributed, and the network is evaluated in a
regime it never trained in. Batch *re*normalisation keeps the training output a function of the
running statistics by correcting the batch-normalised value with two factors that the gradient
does not see:

.. math::

    \sigma_B = \sqrt{\operatorname{Var}_B[x] + \epsilon}, \qquad
    \sigma = \sqrt{v + \epsilon}                                          \qquad \text{(BRN-1)}

    r = \operatorname{clip}_{[1/r_{\max},\, r_{\max}]}\!\Big(\frac{\sigma_B}{\sigma}\Big), \qquad
    d = \operatorname{clip}_{[-d_{\max},\, d_{\max}]}\!\Big(\frac{\mu_B - \mu}{\sigma}\Big)
    \quad \text{(no gradient through } r, d\text{)}                        \qquad \text{(BRN-2)}

    \hat x = \frac{x - \mu_B}{\sigma_B}\, r + d, \qquad y = \gamma \hat x + \beta
                                                                           \qquad \text{(BRN-3)}

    \mu \leftarrow \mu + m(\mu_B - \mu), \qquad
    v \leftarrow v + m\big(\tfrac{n}{n-1}\operatorname{Var}_B[x] - v\big)  \qquad \text{(BRN-4)}

where :math:`\mu_B, \operatorname{Var}_B` are the batch mean and (biased) variance of a feature,
:math:`\mu, v` the running mean and variance, :math:`m` the momentum and :math:`n` the batch size.
If the clips are inactive, :math:`\hat x = (x - \mu)/\sigma` exactly: the same map as at test time
(eval mode computes :math:`(x - \mu)/\sigma` directly), while the gradient still flows through
:math:`\mu_B, \sigma_B` as in batch norm. During the first ``warmup_steps`` training calls the
running statistics are not trusted yet and the layer is plain batch norm (:math:`r = 1, d = 0`);
the paper relaxes :math:`r_{\max}, d_{\max}` gradually instead, ``smooth=True`` ramps
:math:`r, d` in linearly.

===============  ============  ==============================================================
symbol           shape         meaning
===============  ============  ==============================================================
x, y             [B, F, *]     input and output; features on dim 1 (as ``nn.BatchNorm1d``)
running_mean μ   [F]           buffer, starts at 0
running_var v    [F]           buffer, starts at 1 (unbiased variance, as ``nn.BatchNorm1d``)
weight γ         [F]           learned scale, starts at 1
bias β           [F]           learned shift, starts at 0
===============  ============  ==============================================================

Arguments, defaults and numbers follow TorchRL 0.14's ``torchrl.modules.BatchRenorm1d``; where it
departs from the paper, see ``grow_after_warmup``. The paper keeps a moving average of the
standard deviation; like TorchRL, ``nn.BatchNorm1d`` and the CrossQ code, this layer averages the
variance (BRN-4). For inputs with more than two dims, n counts every position a feature was
averaged over (``B·L`` for ``[B, F, L]``), where TorchRL uses ``B``; for ``[B, F]`` they agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule
from torch import nn

from rlteach._checks import check_range

__all__ = ["BatchRenorm1d", "BatchRenormMLP", "make_crossq_qvalue_network"]


class BatchRenorm1d(nn.Module):
    """Batch renormalisation over dim 1 of a ``[B, F]`` (or ``[B, F, *]``) input.

    Args:
        num_features: F, the size of dim 1.
        momentum: m in (BRN-4), how fast the running statistics follow the batches (0.01).
        eps: ε in (BRN-1), added to every variance before the square root (1e-5).
        max_r: r_max in (BRN-2), r is clipped to [1/r_max, r_max] (3.0).
        max_d: d_max in (BRN-2), d is clipped to [-d_max, d_max] (5.0).
        warmup_steps: training calls during which the layer is plain batch norm (10,000).
            ``0`` turns the corrections on from the first call.
        smooth: ramp r and d in linearly over the warm-up (``r = 1 + (r - 1) t / T``,
            ``d = d t / T``) instead of switching them on at ``t = T``.
        grow_after_warmup: reproduce TorchRL 0.14 exactly after the warm-up. TorchRL multiplies
            ``r - 1`` and ``d`` by ``t // T`` (or ``t / T`` when smooth) and never caps that
            factor (its ``clamp_max`` is not in place), so after ``2T`` calls the corrections are
            doubled, after ``3T`` tripled, and so on. The paper's factor stays at 1, which is
            the default here. Both agree for the first ``2T`` calls (the first ``T + 1`` when
            smooth).

    Raises:
        ValueError: a non-positive ``num_features``, ``eps``, a ``momentum`` outside (0, 1],
            ``max_r < 1``, ``max_d < 0`` or a negative ``warmup_steps``.
    """

    def __init__(
        self,
        num_features: int,
        *,
        momentum: float = 0.01,
        eps: float = 1e-5,
        max_r: float = 3.0,
        max_d: float = 5.0,
        warmup_steps: int = 10000,
        smooth: bool = False,
        grow_after_warmup: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(
                f"BatchRenorm1d: num_features must be a positive integer, got {num_features!r}."
            )
        check_range("momentum", momentum, 0.0, 1.0, low_open=True)
        check_range("eps", eps, 0.0, low_open=True)
        check_range("max_r", max_r, 1.0)
        check_range("max_d", max_d, 0.0)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(
                f"BatchRenorm1d: warmup_steps must be an integer >= 0, got {warmup_steps!r}."
            )
        self.num_features = num_features
        self.momentum = momentum
        self.eps = eps
        self.max_r = max_r
        self.max_d = max_d
        self.warmup_steps = warmup_steps
        self.smooth = smooth
        self.grow_after_warmup = grow_after_warmup
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.int64))
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def _warmup_factor(self) -> torch.Tensor | float:
        """0 during the warm-up, then 1 (or TorchRL's growing factor, see the class docstring)."""
        if self.warmup_steps == 0:
            return 1.0
        t = self.num_batches_tracked
        factor = t / self.warmup_steps if self.smooth else t // self.warmup_steps
        return factor if self.grow_after_warmup else factor.clamp(max=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchRenorm1d expects an input [B, {self.num_features}] (or [B, "
                f"{self.num_features}, *]) with the features on dim 1, got shape "
                f"{list(x.shape)}."
            )
        if self.training and x.shape[0] < 2:
            raise ValueError(
                "BatchRenorm1d needs at least 2 samples per batch in training mode (the batch "
                "variance of one sample is 0 and its unbiased version undefined); call "
                ".eval() to act on single observations."
            )
        shape = [1, self.num_features] + [1] * (x.dim() - 2)  # broadcast [F] over [B, F, *]
        sigma = (self.running_var + self.eps).sqrt()  # (BRN-1) running σ
        if not self.training:
            # eval: y = γ (x − μ)/σ + β, folded into one scale and one shift per feature
            scale = self.weight / sigma
            shift = self.bias - scale * self.running_mean
            return torch.addcmul(shift.view(shape), x, scale.view(shape))

        dims = [i for i in range(x.dim()) if i != 1]
        mu_b = x.mean(dims)
        centred = x - mu_b.view(shape)
        var_b = centred.pow(2).mean(dims)  # biased batch variance (one pass, no torch.var)
        sigma_b = (var_b + self.eps).sqrt()  # (BRN-1) batch σ_B
        # (BRN-2) corrections from the batch to the running statistics, without gradient
        r = (sigma_b.detach() / sigma).clamp(1 / self.max_r, self.max_r)
        d = ((mu_b.detach() - self.running_mean) / sigma).clamp(-self.max_d, self.max_d)
        factor = self._warmup_factor()  # 0 during the warm-up: plain batch norm
        r = 1.0 + (r - 1.0) * factor
        d = d * factor
        # (BRN-3) y = γ((x − μ_B)/σ_B · r + d) + β. The per-feature factors are combined first
        # ([F] vectors), so the batch is touched by one multiply-add: y = centred·scale + shift
        scale = self.weight * r / sigma_b
        shift = self.weight * d + self.bias
        y = torch.addcmul(shift.view(shape), centred, scale.view(shape))
        # (BRN-4) running statistics, after they were used; n/(n-1) makes the variance unbiased
        with torch.no_grad():
            n = x.numel() // self.num_features
            self.running_mean += self.momentum * (mu_b - self.running_mean)
            self.running_var += self.momentum * (var_b * n / (n - 1) - self.running_var)
            self.num_batches_tracked += 1
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, momentum={self.momentum}, eps={self.eps}, max_r={self.max_r}, "
            f"max_d={self.max_d}, warmup_steps={self.warmup_steps}, smooth={self.smooth}"
        )


class BatchRenormMLP(nn.Module):
    """An MLP with batch renormalisation on its input and after every hidden activation.

    The layout of CrossQ's critic (Bhatt et al., 2024, appendix; the authors' code):
    ``BRN → Linear → act → BRN → … → Linear → act → BRN → Linear``. Several inputs are
    concatenated on their last dim first, so Q(s, a) = BatchRenormMLP(s, a).
    ``renorm_kwargs`` go to every :class:`BatchRenorm1d` (momentum, warmup_steps, ...).
    Input ``[B, in_features]`` → output ``[B, out_features]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_cells: Sequence[int] = (256, 256),
        activation: type[nn.Module] = nn.ReLU,
        **renorm_kwargs,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        layers: list[nn.Module] = [BatchRenorm1d(in_features, **renorm_kwargs)]
        width = in_features
        for cells in num_cells:
            layers += [nn.Linear(width, cells), activation(), BatchRenorm1d(cells, **renorm_kwargs)]
            width = cells
        layers.append(nn.Linear(width, out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = torch.cat(inputs, dim=-1) if len(inputs) > 1 else inputs[0]
        return self.layers(x)


def make_crossq_qvalue_network(
    obs_dim: int,
    action_dim: int,
    num_cells: Sequence[int] = (256, 256),
    activation: type[nn.Module] = nn.ReLU,
    **renorm_kwargs,
) -> TensorDictModule:
    """CrossQ's critic Q(s, a) = BatchRenormMLP([s, a]): writes ``"state_action_value"`` [B, 1].

    Reads ``"observation"`` and ``"action"``. In training mode it normalises with the statistics
    of the batch it is given, which is why :class:`~rlteach.objectives.CrossQLoss` feeds it the
    current and next pairs as one batch; in eval mode it uses its running statistics.
    """
    return TensorDictModule(
        BatchRenormMLP(obs_dim + action_dim, 1, num_cells, activation, **renorm_kwargs),
        in_keys=["observation", "action"],
        out_keys=["state_action_value"],
    )
