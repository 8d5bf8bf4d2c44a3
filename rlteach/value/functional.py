r"""Return and advantage estimators as pure tensor functions: TD(0), TD(1), TD(λ), GAE, V-trace.

Each reference function is a plain loop, backward in time, that mirrors its recursion; the
equation tags in the docstrings, e.g. ``(GAE-2)``, appear again at the line that implements them.
Two vectorised twins (``vec_*``) solve the same recursions with a parallel scan and are tested
against the loops.

Names, argument order and shapes follow TorchRL 0.14 (``torchrl.objectives.value.functional``),
so the same call gives the same numbers. Where rlteach differs, it says so:

* bad input raises ``ValueError`` naming the problem (TorchRL raises ``RuntimeError`` for a shape
  mismatch and does not check gamma, lmbda or NaNs);
* ``done`` and ``terminated`` must be ``torch.bool`` tensors.

Shapes and symbols shared by every function:

=====================  ===============  ====================================================
symbol                 shape            meaning
=====================  ===============  ====================================================
``reward`` r_t         ``[*B, T, F]``   reward received after acting at step t
``state_value``        ``[*B, T, F]``   V(s_t)
``next_state_value``   ``[*B, T, F]``   V(s'_t), the value of the state reached at step t
``done`` d_t           ``[*B, T, F]``   the trajectory stops after step t (terminated or
                                        truncated): the recursion does not cross it
``terminated``         ``[*B, T, F]``   the episode really ended after step t: V(s'_t) is 0,
                                        nothing is bootstrapped
``gamma`` γ            scalar or data   discount factor in [0, 1]
``lmbda`` λ            scalar or data   trace decay in [0, 1]
=====================  ===============  ====================================================

Time is dim ``-2`` by default (``F`` is a trailing feature dim, usually 1); ``time_dim=`` moves it,
e.g. ``[B, T]`` tensors with ``time_dim=-1``. A non-negative ``time_dim`` counts from the first dim.
A step that is done but not terminated (a *truncation*, e.g. a time limit) cuts the recursion and
still bootstraps from V(s'_t). After the last step of the batch the recursion starts from
V(s'_{T-1}): the batch end is treated as a truncation.

References:
    Sutton & Barto (2018), *Reinforcement Learning: An Introduction*, 2nd ed., ch. 6, 7, 12.
    Schulman, Moritz, Levine, Jordan & Abbeel (2016), *High-Dimensional Continuous Control Using
    Generalized Advantage Estimation*, ICLR.
    Espeholt et al. (2018), *IMPALA: Scalable Distributed Deep-RL with Importance Weighted
    Actor-Learner Architectures*, ICML.
"""

from __future__ import annotations

import torch

from rlteach._checks import check_finite, check_gamma, check_lmbda, check_same_shape

__all__ = [
    "td0_return_estimate",
    "td0_advantage_estimate",
    "td1_return_estimate",
    "td1_advantage_estimate",
    "td_lambda_return_estimate",
    "td_lambda_advantage_estimate",
    "generalized_advantage_estimate",
    "vtrace_advantage_estimate",
    "reward2go",
    "vec_generalized_advantage_estimate",
    "vec_td_lambda_return_estimate",
    "vec_td_lambda_advantage_estimate",
    "vec_td1_return_estimate",
    "vec_td1_advantage_estimate",
    "RollingGammaNotVectorisedError",
]


class RollingGammaNotVectorisedError(NotImplementedError, ValueError):
    """``rolling_gamma=False`` asked of a vectorised TD(lambda) / TD(1).

    A ``NotImplementedError``, as TorchRL 0.14 raises, and a ``ValueError``, as rlteach raised
    before.
    """


# ---------------------------------------------------------------------------------------------
# Plumbing: input checks and moving the time axis to dim -2.
# ---------------------------------------------------------------------------------------------


def _check_inputs(owner: str, *, gamma=None, lmbda=None, **tensors) -> None:
    """Run every check before any computation: shapes, flag dtypes, gamma/lmbda ranges, NaNs."""
    check_same_shape(owner, **tensors)
    for name in ("done", "terminated"):
        flag = tensors.get(name)
        if flag is not None and flag.dtype != torch.bool:
            raise ValueError(
                f"{owner}: {name} must be a torch.bool tensor, got dtype {flag.dtype}. "
                f"Convert it with {name}.bool()."
            )
    done, terminated = tensors.get("done"), tensors.get("terminated")
    if done is not None and terminated is not None and (terminated & ~done).any():
        where = (terminated & ~done).nonzero()[0].tolist()
        raise ValueError(
            f"{owner}: a step is terminated but not done (first at index {where}). An episode that "
            f"terminates is over, so done must be terminated | truncated; build it that way."
        )
    if gamma is not None:
        check_gamma(gamma)
    if lmbda is not None:
        check_lmbda(lmbda)
    check_finite(owner, **tensors)
    if isinstance(gamma, torch.Tensor):
        check_finite(owner, gamma=gamma)


def _time_index(time_dim: int, ndim: int, owner: str) -> int:
    """The time axis as a negative index into a tensor with ``ndim`` dims."""
    index = time_dim - ndim if time_dim >= 0 else time_dim
    if not -ndim <= index < 0:
        raise ValueError(
            f"{owner}: time_dim={time_dim} does not fit tensors with {ndim} dims. Pass the dim "
            f"that indexes time, e.g. time_dim=-2 for [*B, T, F] or time_dim=-1 for [B, T]."
        )
    return index


def _move_time(owner: str, time_dim: int, data: list, extras: list):
    """Put the time axis at dim -2, where the loops index it.

    ``data`` are the [*B, T, F] inputs; ``extras`` are gamma-like arguments that are moved too
    when they are tensors with the data's number of dims. Returns the moved lists and ``undo``,
    which brings an output back to the caller's layout.
    """
    ndim = next(x.ndim for x in data if x is not None)
    if ndim < 2 and not (ndim == 1 and time_dim in (-1, 0)):
        raise ValueError(
            f"{owner}: inputs of shape [T] need time_dim=-1; otherwise add a trailing feature dim "
            f"with x.unsqueeze(-1) to get [*B, T, 1]."
        )
    index = _time_index(time_dim, ndim, owner)
    if ndim == 1:  # [T] -> [T, 1]

        def move(x):
            return x.unsqueeze(-1)

        def undo(y):
            return y.squeeze(-1)

    elif index == -2:

        def move(x):
            return x

        undo = move
    else:

        def move(x):
            return x.transpose(index, -2)

        undo = move

    data = [None if x is None else move(x) for x in data]
    extras = [
        move(x) if isinstance(x, torch.Tensor) and x.numel() > 1 and x.ndim == ndim else x
        for x in extras
    ]
    return data, extras, undo


def _like(x, ref: torch.Tensor) -> torch.Tensor:
    """``x`` (a float, a scalar tensor or a tensor of ref's shape) as a tensor of ref's shape."""
    x = torch.as_tensor(x, device=ref.device)
    if not x.is_floating_point():
        x = x.to(ref.dtype)
    try:
        return x.expand(ref.shape)
    except RuntimeError as err:
        raise ValueError(
            f"a gamma/lmbda/threshold tensor of shape {list(x.shape)} cannot be broadcast to the "
            f"data's shape {list(ref.shape)}; pass a scalar or a tensor of the data's shape."
        ) from err


def _is_per_step(x, ref: torch.Tensor) -> bool:
    """True when ``x`` carries one value per data entry (a 'time-sensitive' gamma or lambda)."""
    return isinstance(x, torch.Tensor) and x.shape == ref.shape


def _prepare(
    owner: str, time_dim: int, gamma, lmbda=None, *, extras=(), rolling_gamma=None, **data
):
    """The preamble every estimator shares, in one place.

    1. ``terminated`` defaults to ``done``;
    2. every check runs before any computation (:func:`_check_inputs`), and ``rolling_gamma=False``
       is refused unless gamma or lmbda has one value per step;
    3. the time axis moves to dim -2 (:func:`_move_time`), ``extras`` (thresholds) with it;
    4. gamma and lmbda become tensors of the data's shape.

    Returns ``(data, gamma, lmbda, extras, undo)``, ``data`` in the order of the keywords.
    """
    if "terminated" in data and data["terminated"] is None:
        data["terminated"] = data["done"]
    _check_inputs(owner, gamma=gamma, lmbda=lmbda, **data)
    reward = data["reward"]
    if rolling_gamma is False and not (_is_per_step(gamma, reward) or _is_per_step(lmbda, reward)):
        what = "gamma" if lmbda is None else "gamma or lmbda"
        raise ValueError(
            f"{owner}: rolling_gamma=False only makes sense with one {what} per step (a tensor "
            f"of shape {list(reward.shape)}); got {'a single gamma' if lmbda is None else 'single values'}."
        )
    moved, (gamma, lmbda, *extras), undo = _move_time(
        owner, time_dim, list(data.values()), [gamma, lmbda, *extras]
    )
    reward = moved[list(data).index("reward")]
    gamma = _like(gamma, reward)
    lmbda = None if lmbda is None else _like(lmbda, reward)
    return moved, gamma, lmbda, extras, undo


# ---------------------------------------------------------------------------------------------
# TD(0): the one-step return.
# ---------------------------------------------------------------------------------------------


def td0_return_estimate(
    gamma,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    terminated: torch.Tensor | None = None,
    *,
    done: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""One-step TD return (Sutton & Barto 2018, eq. 6.2).

    .. math::
        G^{(0)}_t = r_t + \gamma\,(1 - \mathrm{term}_t)\,V(s'_t)  \tag{TD0-1}

    Only ``terminated`` matters: a truncated step bootstraps like any other. ``done`` is the
    deprecated TorchRL name for the same argument, used when ``terminated`` is not given.
    All tensors are ``[*B, T, F]`` (any shape, as long as they agree). Returns ``[*B, T, F]``.
    """
    if terminated is None:
        terminated = done
    if terminated is None:
        raise ValueError("td0_return_estimate: pass terminated (a bool tensor like reward).")
    _check_inputs(
        "td0_return_estimate",
        gamma=gamma,
        next_state_value=next_state_value,
        reward=reward,
        terminated=terminated,
    )
    not_terminated = (~terminated).to(reward.dtype)
    return reward + gamma * not_terminated * next_state_value  # (TD0-1)


def td0_advantage_estimate(
    gamma,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""One-step TD advantage, the TD error (Sutton & Barto 2018, eq. 6.5).

    .. math::
        A^{(0)}_t = G^{(0)}_t - V(s_t) = r_t + \gamma(1-\mathrm{term}_t)V(s'_t) - V(s_t)
        \tag{TD0-2}

    ``terminated`` defaults to ``done``. All tensors ``[*B, T, F]``; returns ``[*B, T, F]``.
    """
    if terminated is None:
        terminated = done
    _check_inputs(
        "td0_advantage_estimate",
        gamma=gamma,
        state_value=state_value,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    return td0_return_estimate(gamma, next_state_value, reward, terminated) - state_value  # (TD0-2)


# ---------------------------------------------------------------------------------------------
# TD(1): the Monte-Carlo return, bootstrapped where a trajectory is cut short.
# ---------------------------------------------------------------------------------------------


def td1_return_estimate(
    gamma,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
    rolling_gamma: bool | None = None,
    *,
    time_dim: int = -2,
) -> torch.Tensor:
    r"""TD(1) return: discounted rewards to the end of the trajectory, bootstrapped at a truncation.

    Sutton & Barto (2018), eq. 3.8 (the return) and 7.1 (bootstrapping with V).

    .. math::
        G_t = r_t + \gamma_t\,(1-\mathrm{term}_t)\,
              \big[(1-d_t)\,G_{t+1} + d_t\,V(s'_t)\big]  \tag{TD1-1}

    .. math::
        G_T := V(s'_{T-1}) \quad\text{(the batch ends: bootstrap)}  \tag{TD1-2}

    So a termination adds nothing after :math:`r_t`, a truncation adds
    :math:`\gamma V(s'_t)`, and otherwise the return continues with :math:`G_{t+1}`.

    ``gamma`` may be a tensor of the data's shape, one discount per step. With
    ``rolling_gamma=True`` (default) the discount of step t multiplies what follows step t
    (:math:`\gamma_t\gamma_{t+1}\cdots`); with ``False`` every return :math:`G_k` uses its own
    :math:`\gamma_k` throughout (:math:`\gamma_k^n`).

    Note: for ``rolling_gamma=False`` TorchRL 0.14's loop starts from 0 instead of (TD1-2) and so
    does not bootstrap at the batch end; rlteach bootstraps, as TorchRL's own TD(λ) does.

    All tensors ``[*B, T, F]`` (time at ``time_dim``); returns the same shape.
    """
    # PLUMBING: inputs checked, time moved to axis -2, gamma and lambda as tensors
    (next_state_value, reward, done, terminated), gamma, _, _, undo = _prepare(
        "td1_return_estimate",
        time_dim,
        gamma,
        rolling_gamma=rolling_gamma,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    T = reward.shape[-2]
    not_terminated = (~terminated).to(reward.dtype)
    done_f = done.to(reward.dtype)

    returns = [None] * T
    if rolling_gamma is None or rolling_gamma:
        g = next_state_value[..., -1, :]  # (TD1-2)
        for t in reversed(range(T)):
            bootstrap = (1 - done_f[..., t, :]) * g + done_f[..., t, :] * next_state_value[
                ..., t, :
            ]
            g = (
                reward[..., t, :] + gamma[..., t, :] * not_terminated[..., t, :] * bootstrap
            )  # (TD1-1)
            returns[t] = g
    else:
        for k in range(T):
            gamma_k = gamma[..., k, :]
            g = next_state_value[..., -1, :]  # (TD1-2)
            for t in reversed(range(k, T)):
                bootstrap = (1 - done_f[..., t, :]) * g + done_f[..., t, :] * next_state_value[
                    ..., t, :
                ]
                g = reward[..., t, :] + gamma_k * not_terminated[..., t, :] * bootstrap  # (TD1-1)
            returns[k] = g
    return undo(torch.stack(returns, dim=-2))


def td1_advantage_estimate(
    gamma,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
    rolling_gamma: bool | None = None,
    time_dim: int = -2,
) -> torch.Tensor:
    r"""TD(1) advantage :math:`G_t - V(s_t)` with :math:`G_t` from :func:`td1_return_estimate`.

    All tensors ``[*B, T, F]`` (time at ``time_dim``); returns the same shape.
    """
    check_same_shape("td1_advantage_estimate", state_value=state_value, reward=reward)
    returns = td1_return_estimate(
        gamma, next_state_value, reward, done, terminated, rolling_gamma, time_dim=time_dim
    )
    return returns - state_value


# ---------------------------------------------------------------------------------------------
# TD(λ): the λ-return, an exponential average of n-step returns.
# ---------------------------------------------------------------------------------------------


def td_lambda_return_estimate(
    gamma,
    lmbda,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
    rolling_gamma: bool | None = None,
    *,
    time_dim: int = -2,
) -> torch.Tensor:
    r"""TD(λ) return in its recursive form (Sutton & Barto 2018, eq. 12.2 and 12.18).

    With :math:`\bar V_t = (1-\mathrm{term}_t)\,V(s'_t)` (nothing to bootstrap past a termination):

    .. math::
        G^\lambda_t = r_t + \gamma_t\big[(1-\lambda_t)\,\bar V_t + \lambda_t\,\hat G_{t+1}\big]
        \tag{TDL-1}

    .. math::
        \hat G_{t+1} = \begin{cases} \bar V_t & \text{if } d_t \text{ (the trajectory is cut)}\\
                       G^\lambda_{t+1} & \text{otherwise}\end{cases}  \tag{TDL-2}

    .. math::
        G^\lambda_T := \bar V_{T-1} \quad\text{(the batch ends: bootstrap)}  \tag{TDL-3}

    λ = 0 gives TD(0); λ = 1 gives TD(1). ``gamma`` and ``lmbda`` may be tensors of the data's
    shape; ``rolling_gamma`` as in :func:`td1_return_estimate` (``False`` needs a per-step gamma
    or lambda, and then :math:`G^\lambda_k` uses :math:`\gamma_k, \lambda_k` throughout).

    All tensors ``[*B, T, F]`` (time at ``time_dim``); returns the same shape.
    """
    # PLUMBING: inputs checked, time moved to axis -2, gamma and lambda as tensors
    (next_state_value, reward, done, terminated), gamma, lmbda, _, undo = _prepare(
        "td_lambda_return_estimate",
        time_dim,
        gamma,
        lmbda,
        rolling_gamma=rolling_gamma,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    T = reward.shape[-2]
    bootstrap_value = (~terminated).to(reward.dtype) * next_state_value  # V̄_t
    done_f = done.to(reward.dtype)

    returns = [None] * T
    if rolling_gamma is None or rolling_gamma:
        g = bootstrap_value[..., -1, :]  # (TDL-3)
        for t in reversed(range(T)):
            v_bar, d = bootstrap_value[..., t, :], done_f[..., t, :]
            g = (1 - d) * g + d * v_bar  # (TDL-2)
            lam = lmbda[..., t, :]
            g = reward[..., t, :] + gamma[..., t, :] * ((1 - lam) * v_bar + lam * g)  # (TDL-1)
            returns[t] = g
    else:
        for k in range(T):
            gamma_k, lam_k = gamma[..., k, :], lmbda[..., k, :]
            g = bootstrap_value[..., -1, :]  # (TDL-3)
            for t in reversed(range(k, T)):
                v_bar, d = bootstrap_value[..., t, :], done_f[..., t, :]
                g = (1 - d) * g + d * v_bar  # (TDL-2)
                g = reward[..., t, :] + gamma_k * ((1 - lam_k) * v_bar + lam_k * g)  # (TDL-1)
            returns[k] = g
    return undo(torch.stack(returns, dim=-2))


def td_lambda_advantage_estimate(
    gamma,
    lmbda,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
    rolling_gamma: bool | None = None,
    time_dim: int = -2,
) -> torch.Tensor:
    r"""TD(λ) advantage :math:`G^\lambda_t - V(s_t)` (see :func:`td_lambda_return_estimate`).

    All tensors ``[*B, T, F]`` (time at ``time_dim``); returns the same shape.
    """
    check_same_shape("td_lambda_advantage_estimate", state_value=state_value, reward=reward)
    returns = td_lambda_return_estimate(
        gamma, lmbda, next_state_value, reward, done, terminated, rolling_gamma, time_dim=time_dim
    )
    return returns - state_value


# ---------------------------------------------------------------------------------------------
# GAE: an exponentially weighted sum of TD errors.
# ---------------------------------------------------------------------------------------------


def generalized_advantage_estimate(
    gamma,
    lmbda,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
    *,
    time_dim: int = -2,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalized advantage estimate (Schulman et al. 2016, eq. 11 and 16).

    .. math::
        \delta_t = r_t + \gamma\,(1-\mathrm{term}_t)\,V(s'_t) - V(s_t)  \tag{GAE-1}

    .. math::
        \hat A_t = \delta_t + \gamma\lambda\,(1-d_t)\,\hat A_{t+1}, \qquad \hat A_T = 0
        \tag{GAE-2}

    .. math::
        \text{value\_target}_t = \hat A_t + V(s_t)  \tag{GAE-3}

    The value target equals the TD(λ) return of :func:`td_lambda_return_estimate`.

    All tensors ``[*B, T, F]`` (time at ``time_dim``). Returns ``(advantage, value_target)``,
    both of that shape.
    """
    # PLUMBING: inputs checked, time moved to axis -2, gamma and lambda as tensors
    (state_value, next_state_value, reward, done, terminated), gamma, lmbda, _, undo = _prepare(
        "generalized_advantage_estimate",
        time_dim,
        gamma,
        lmbda,
        state_value=state_value,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    not_terminated = (~terminated).to(reward.dtype)
    not_done = (~done).to(reward.dtype)

    delta = reward + gamma * not_terminated * next_state_value - state_value  # (GAE-1)
    T = reward.shape[-2]
    advantages = [None] * T
    advantage = torch.zeros_like(reward[..., 0, :])  # Â_T = 0
    for t in reversed(range(T)):
        trace = gamma[..., t, :] * lmbda[..., t, :] * not_done[..., t, :]
        advantage = delta[..., t, :] + trace * advantage  # (GAE-2)
        advantages[t] = advantage
    advantage = torch.stack(advantages, dim=-2)
    value_target = advantage + state_value  # (GAE-3)
    return undo(advantage), undo(value_target)


# ---------------------------------------------------------------------------------------------
# V-trace: off-policy n-step targets with truncated importance weights.
# ---------------------------------------------------------------------------------------------


def vtrace_advantage_estimate(
    gamma,
    log_pi: torch.Tensor,
    log_mu: torch.Tensor,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
    rho_thresh: float | torch.Tensor = 1.0,
    c_thresh: float | torch.Tensor = 1.0,
    time_dim: int = -2,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""V-trace targets and advantages (Espeholt et al. 2018, eq. 1 and section 4.2).

    ``log_pi`` is log π(a_t|s_t) under the **current** (target) policy being learned and
    ``log_mu`` is log π_b(a_t|s_t) under the **behaviour** policy π_b that collected the data
    (the book's notation; the paper and TorchRL's argument name call it μ). TorchRL 0.14's
    docstring says the reverse; its code uses them as here, and so do its estimator and this
    function: the ratio is π/π_b.

    .. math::
        \rho_t = \min\!\big(\bar\rho, \tfrac{\pi(a_t|s_t)}{\pi_{\mathrm b}(a_t|s_t)}\big),\quad
        c_t = \min\!\big(\bar c, \tfrac{\pi(a_t|s_t)}{\pi_{\mathrm b}(a_t|s_t)}\big)  \tag{VT-1}

    .. math::
        \delta_t = \rho_t\,\big(r_t + \gamma(1-\mathrm{term}_t)V(s'_t) - V(s_t)\big)  \tag{VT-2}

    .. math::
        v_t - V(s_t) = \delta_t + \gamma\,(1-d_t)\,c_t\,\big(v_{t+1} - V(s_{t+1})\big),
        \qquad v_T - V(s_T) = 0  \tag{VT-3}

    .. math::
        A_t = \rho_t\,\big(r_t + \gamma(1-\mathrm{term}_t)\,\tilde v_{t+1} - V(s_t)\big),\quad
        \tilde v_{t+1} = \begin{cases} V(s'_t) & d_t \text{ or } t = T-1\\ v_{t+1} & \text{else}
        \end{cases}  \tag{VT-4}

    ``terminated`` defaults to ``done``. ``rho_thresh`` is :math:`\bar\rho`, ``c_thresh`` is
    :math:`\bar c`. All tensors ``[*B, T, F]`` (time at ``time_dim``). Returns
    ``(advantage, value_target)`` where ``value_target`` is :math:`v_t`.
    """
    # PLUMBING: inputs checked, time moved to axis -2, gamma and lambda as tensors
    data, gamma, _, (rho_thresh, c_thresh), undo = _prepare(
        "vtrace_advantage_estimate",
        time_dim,
        gamma,
        extras=(rho_thresh, c_thresh),
        log_pi=log_pi,
        log_mu=log_mu,
        state_value=state_value,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    log_pi, log_mu, state_value, next_state_value, reward, done, terminated = data
    not_terminated = (~terminated).to(reward.dtype)
    not_done = (~done).to(reward.dtype)

    ratio = (log_pi - log_mu).exp()
    rho = torch.minimum(ratio, _like(rho_thresh, ratio))  # (VT-1)
    c = torch.minimum(ratio, _like(c_thresh, ratio))  # (VT-1)
    one_step = reward + gamma * not_terminated * next_state_value - state_value
    delta = rho * one_step  # (VT-2)

    T = reward.shape[-2]
    corrections = [None] * T
    correction = torch.zeros_like(reward[..., 0, :])  # v_T - V(s_T) = 0
    for t in reversed(range(T)):
        correction = (
            delta[..., t, :] + gamma[..., t, :] * not_done[..., t, :] * c[..., t, :] * correction
        )  # (VT-3)
        corrections[t] = correction
    vs = torch.stack(corrections, dim=-2) + state_value

    # (VT-4) v_{t+1} is the next entry along time, except where that entry is another trajectory.
    vs_next = torch.cat([vs[..., 1:, :], next_state_value[..., -1:, :]], dim=-2)
    vs_next = torch.where(done, next_state_value, vs_next)
    advantage = rho * (reward + gamma * not_terminated * vs_next - state_value)  # (VT-4)
    return undo(advantage), undo(vs)


# ---------------------------------------------------------------------------------------------
# Reward-to-go: the discounted return without bootstrapping.
# ---------------------------------------------------------------------------------------------


def reward2go(reward: torch.Tensor, done: torch.Tensor, gamma, *, time_dim: int = -2):
    r"""Discounted sum of future rewards within each trajectory, no bootstrapping (REINFORCE's G_t).

    Sutton & Barto (2018), eq. 3.8, as used by REINFORCE (Williams 1992).

    .. math::
        G_t = r_t + \gamma\,(1-d_t)\,G_{t+1}, \qquad G_T = 0  \tag{R2G-1}

    ``reward`` and ``done`` are ``[*B, T, F]`` (time at ``time_dim``); returns the same shape.
    Unlike TorchRL, which raises a ``ValueError`` only for a shape mismatch, gamma and NaNs are
    checked too.
    """
    # PLUMBING: inputs checked, time moved to axis -2, gamma and lambda as tensors
    (reward, done), gamma, _, _, undo = _prepare(
        "reward2go", time_dim, gamma, reward=reward, done=done
    )
    not_done = (~done).to(reward.dtype)
    T = reward.shape[-2]
    returns = [None] * T
    g = torch.zeros_like(reward[..., 0, :])
    for t in reversed(range(T)):
        g = reward[..., t, :] + gamma[..., t, :] * not_done[..., t, :] * g  # (R2G-1)
        returns[t] = g
    return undo(torch.stack(returns, dim=-2))


# ---------------------------------------------------------------------------------------------
# Vectorised twins: the same recursions solved by a parallel scan.
# ---------------------------------------------------------------------------------------------


def _backward_linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Solve :math:`x_t = b_t + a_t x_{t+1}` with :math:`x_T = 0`, time at dim -2.

    Recursive doubling (Hillis & Steele 1986): after the round with stride s, ``b_t`` holds the
    sum of the next 2s terms and ``a_t`` the product of the next 2s coefficients, so
    :math:`\lceil\log_2 T\rceil` whole-tensor rounds replace T Python steps.

    .. math::
        (a_t, b_t) \leftarrow (a_t\,a_{t+s},\; b_t + a_t\,b_{t+s})  \tag{SCAN-1}

    Entries with no partner (t + s >= T) already hold their final value: past T everything is 0.
    """
    T = b.shape[-2]
    stride = 1
    while stride < T:
        head_a, head_b = a[..., :-stride, :], b[..., :-stride, :]
        b = torch.cat(
            [head_b + head_a * b[..., stride:, :], b[..., -stride:, :]], dim=-2
        )  # (SCAN-1)
        a = torch.cat([head_a * a[..., stride:, :], a[..., -stride:, :]], dim=-2)  # (SCAN-1)
        stride *= 2
    return b


def vec_generalized_advantage_estimate(
    gamma,
    lmbda,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
    *,
    time_dim: int = -2,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""GAE by a parallel scan: same inputs and outputs as :func:`generalized_advantage_estimate`.

    (GAE-2) is the linear recursion :math:`x_t = b_t + a_t x_{t+1}` with :math:`b_t = \delta_t`
    and :math:`a_t = \gamma\lambda(1-d_t)`, solved by :func:`_backward_linear_scan`.
    """
    # PLUMBING: inputs checked, time moved to axis -2, gamma and lambda as tensors
    (state_value, next_state_value, reward, done, terminated), gamma, lmbda, _, undo = _prepare(
        "vec_generalized_advantage_estimate",
        time_dim,
        gamma,
        lmbda,
        state_value=state_value,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    delta = reward + gamma * (~terminated).to(reward.dtype) * next_state_value - state_value
    trace = gamma * lmbda * (~done).to(reward.dtype)
    advantage = _backward_linear_scan(trace, delta)  # (GAE-2)
    return undo(advantage), undo(advantage + state_value)  # (GAE-3)


def vec_td_lambda_return_estimate(
    gamma,
    lmbda,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
    rolling_gamma: bool | None = None,
    *,
    time_dim: int = -2,
) -> torch.Tensor:
    r"""TD(λ) return by a parallel scan: same as :func:`td_lambda_return_estimate` (rolling gamma).

    Marking the last step done makes (TDL-3) part of (TDL-2); then (TDL-1) reads
    :math:`G_t = b_t + a_t G_{t+1}` with
    :math:`b_t = r_t + \gamma_t \bar V_t\,(1 - \lambda_t(1-d_t))` and
    :math:`a_t = \gamma_t\lambda_t(1-d_t)`.
    ``rolling_gamma=False`` is refused as TorchRL 0.14 refuses it (``NotImplementedError``): the
    scan ties each gamma to one step. The loop version implements it.
    """
    if rolling_gamma is False:
        raise RollingGammaNotVectorisedError(
            "vec_td_lambda_return_estimate: rolling_gamma=False is only implemented by the loop "
            "version (TorchRL's vectorised TD(lambda) refuses it too); call "
            "td_lambda_return_estimate instead, or an estimator with vectorized=False."
        )
    # PLUMBING: inputs checked, time moved to axis -2, gamma and lambda as tensors
    (next_state_value, reward, done, terminated), gamma, lmbda, _, undo = _prepare(
        "vec_td_lambda_return_estimate",
        time_dim,
        gamma,
        lmbda,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    v_bar = (~terminated).to(reward.dtype) * next_state_value
    done = done.clone()
    done[..., -1, :] = True  # (TDL-3) folded into (TDL-2)
    not_done = (~done).to(reward.dtype)
    b = reward + gamma * v_bar * (1 - lmbda * not_done)
    a = gamma * lmbda * not_done
    return undo(_backward_linear_scan(a, b))  # (TDL-1)


def vec_td_lambda_advantage_estimate(
    gamma,
    lmbda,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
    rolling_gamma: bool | None = None,
    time_dim: int = -2,
) -> torch.Tensor:
    """TD(λ) advantage by a parallel scan; see :func:`vec_td_lambda_return_estimate`."""
    check_same_shape("vec_td_lambda_advantage_estimate", state_value=state_value, reward=reward)
    returns = vec_td_lambda_return_estimate(
        gamma, lmbda, next_state_value, reward, done, terminated, rolling_gamma, time_dim=time_dim
    )
    return returns - state_value


def vec_td1_return_estimate(
    gamma,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
    rolling_gamma: bool | None = None,
    time_dim: int = -2,
) -> torch.Tensor:
    """TD(1) return by a parallel scan: TD(λ) with λ = 1 (as TorchRL computes it)."""
    return vec_td_lambda_return_estimate(
        gamma, 1.0, next_state_value, reward, done, terminated, rolling_gamma, time_dim=time_dim
    )


def vec_td1_advantage_estimate(
    gamma,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor | None = None,
    rolling_gamma: bool | None = None,
    time_dim: int = -2,
) -> torch.Tensor:
    """TD(1) advantage by a parallel scan; see :func:`vec_td1_return_estimate`."""
    check_same_shape("vec_td1_advantage_estimate", state_value=state_value, reward=reward)
    returns = vec_td1_return_estimate(
        gamma, next_state_value, reward, done, terminated, rolling_gamma, time_dim=time_dim
    )
    return returns - state_value
