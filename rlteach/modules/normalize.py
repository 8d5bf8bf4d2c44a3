"""Running normalisation of observations and rewards, for PPO on MuJoCo.

Two of the "code-level optimisations" that continuous-control PPO depends on (Engstrom et al.
2020, *Implementation Matters in Deep Policy Gradients*; Huang et al. 2022, *The 37
Implementation Details of Proximal Policy Optimization*, details 6-9; Andrychowicz et al. 2021,
*What Matters in On-Policy RL*, where observation normalisation is one of the choices that
matter most):

* **observations** are standardised with a running mean and variance of every observation seen
  so far, then clipped to ``[-clip, clip]``:  ``ŝ = clip((s − μ) / sqrt(σ² + ε))``;
* **rewards** are divided by the running standard deviation of the *discounted return* (not of
  the reward), then clipped: ``r̂_t = clip(r_t / sqrt(Var[R] + ε))`` with
  ``R_t = γ R_{t−1} + r_t`` per environment, reset to 0 when its episode ends. Dividing by the
  return's scale keeps value targets near unit size whatever the task's reward scale; the mean
  is not subtracted, so the sign of every reward (and what the optimal policy is) is kept.

Both keep their statistics in buffers, so a checkpoint saves them and ``.to(device)`` moves
them. :class:`ObservationNormalizer` is a layer: the recipe puts the same instance in front of
the actor's and the critic's MLP, so that the policy the evaluation runs, the one that collected
the data and the one being updated all read observations through the same statistics.
:class:`RewardScaler` works on a collected batch, before the advantages are computed; the
episodes the collector records and the evaluation's returns stay in the task's own reward.

The statistics are kept in float64 (as Stable-Baselines3's ``VecNormalize`` keeps them in
NumPy's float64) so that a million updates do not drift; the normalised values are cast back to
the input's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Mean and (population) variance of every sample seen so far, merged batch by batch.

    ``update(x)`` folds in a batch of ``n`` samples (``x`` is ``[..., *shape]``; the leading
    dimensions are samples) with Chan, Golub & LeVeque's (1979) parallel formula: with
    ``δ = mean_b − mean`` and ``N = count + n``,
    ``mean ← mean + δ·n/N`` and ``var ← (var·count + var_b·n + δ²·count·n/N) / N``.
    It starts from ``mean = 0``, ``var = 1`` and a tiny ``count`` (``epsilon``), so the first
    batch sets the statistics almost entirely.
    """

    def __init__(self, shape: Sequence[int] = (), epsilon: float = 1e-4) -> None:
        super().__init__()
        shape = tuple(shape)
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(float(epsilon), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold the samples of ``x`` (shape ``[..., *shape]``) into the statistics."""
        shape = tuple(self.mean.shape)
        if tuple(x.shape[x.dim() - len(shape) :]) != shape:
            raise ValueError(
                f"RunningMeanStd.update: the samples must end in the statistics' shape "
                f"{list(shape)}, got a tensor of shape {list(x.shape)}."
            )
        samples = x.detach().reshape(-1, *shape).to(self.mean.device, torch.float64)
        n = samples.shape[0]
        if n == 0:
            return
        batch_mean = samples.mean(0)
        batch_var = samples.var(0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean.add_(delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)


class ObservationNormalizer(nn.Module):
    """``ŝ = clip((s − μ) / sqrt(σ² + ε), −clip, clip)`` with running statistics ``μ, σ²``.

    A layer for the front of an MLP (``make_normal_actor(..., normalizer=...)``). The forward
    pass never changes the statistics: the training loop calls :meth:`update` with the
    observations it collected, at a point where no policy is in the middle of being used.
    """

    def __init__(self, obs_dim: int, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        if not clip > 0:
            raise ValueError(f"ObservationNormalizer: clip must be positive, got {clip!r}.")
        self.stats = RunningMeanStd((obs_dim,))
        self.clip = float(clip)
        self.eps = float(eps)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        scaled = (obs - self.stats.mean) / torch.sqrt(self.stats.var + self.eps)
        return scaled.clamp(-self.clip, self.clip).to(obs.dtype)

    def update(self, obs: torch.Tensor) -> None:
        """Fold a batch of observations ``[..., obs_dim]`` into the running statistics."""
        self.stats.update(obs)

    def extra_repr(self) -> str:
        return f"obs_dim={self.stats.mean.shape[0]}, clip={self.clip}"


def find_normalizer(network: nn.Module) -> ObservationNormalizer | None:
    """The :class:`ObservationNormalizer` inside ``network`` (None if it has none)."""
    return next((m for m in network.modules() if isinstance(m, ObservationNormalizer)), None)


class RewardScaler(nn.Module):
    """Scale a batch's rewards by the running standard deviation of the discounted return.

    For each time step ``t`` of a batch ``[num_envs, T, 1]``, in order (the order
    Stable-Baselines3's ``VecNormalize`` uses at every environment step):

    1. ``R ← γ·R + r_t``  (one running return per environment);
    2. fold the ``num_envs`` values of ``R`` into the return's running variance;
    3. ``r̂_t = clip(r_t / sqrt(Var[R] + ε), −clip, clip)``;
    4. ``R ← 0`` where the episode ended at ``t`` (``done``: terminated or truncated).

    ``R`` carries over from one batch to the next, as episodes do.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        if not 0 <= gamma <= 1:
            raise ValueError(f"RewardScaler: gamma must lie in [0, 1], got {gamma!r}.")
        if not clip > 0:
            raise ValueError(f"RewardScaler: clip must be positive, got {clip!r}.")
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.eps = float(eps)
        self.stats = RunningMeanStd(())
        self.register_buffer("returns", torch.zeros(num_envs, dtype=torch.float64))

    @torch.no_grad()
    def forward(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """``reward`` and ``done``: ``[num_envs, T, 1]``; returns the scaled rewards, same shape
        and dtype. Updates the running return and its statistics."""
        if reward.shape != done.shape or reward.dim() != 3 or reward.shape[-1] != 1:
            raise ValueError(
                f"RewardScaler: reward and done must both be [num_envs, T, 1], got "
                f"{list(reward.shape)} and {list(done.shape)}."
            )
        if reward.shape[0] != self.returns.shape[0]:
            raise ValueError(
                f"RewardScaler: built for {self.returns.shape[0]} environments, got a batch of "
                f"{reward.shape[0]}."
            )
        scaled = torch.empty_like(reward)
        for t in range(reward.shape[1]):
            r = reward[:, t, 0].to(torch.float64)
            self.returns.mul_(self.gamma).add_(r)
            self.stats.update(self.returns)
            scale = torch.sqrt(self.stats.var + self.eps)
            scaled[:, t, 0] = (r / scale).clamp(-self.clip, self.clip).to(reward.dtype)
            self.returns.masked_fill_(done[:, t, 0], 0.0)
        return scaled

    def extra_repr(self) -> str:
        return f"num_envs={self.returns.shape[0]}, gamma={self.gamma}, clip={self.clip}"
