r"""The objectives' mathematics as pure tensor functions, as :mod:`rlteach.value.functional` is
for the estimators.

Each function is one step of a paper's algorithm box: no networks, no TensorDicts, no keys, no
checks (the ``LossModule`` classes check their inputs before calling). The losses call these
functions; the chapters render them; the exercise checkers compare with them. The equation tags
are those of each loss module's docstring.

=================================  ==================================================  =========
function                           what                                                tags
=================================  ==================================================  =========
:func:`ppo_clip_objective`         PPO's clipped surrogate, per sample                  PPO-2, 3
:func:`ppo_kl_penalty_objective`   PPO's KL-penalised surrogate                        PPO-4
:func:`ppo_beta_factor`            the adaptive β's update                             PPO-5
:func:`policy_gradient_objective`  REINFORCE / A2C score-function objective             A2C-1
:func:`action_value_of`            Q(s, a) of the taken action from Q(s, ·)             DQN-1
:func:`dqn_next_value`             max_a' Q'(s', a'), or Double DQN's evaluation        DQN-2, 3
:func:`td_target`                  r + γ (1 - term) v'                                  TD0-1
:func:`c51_next_distribution`      p(s', a*) with a* greedy under the mean              C51-1
:func:`project_distribution`       the projection of r + γ z onto the support           C51-2..4
:func:`c51_cross_entropy`          -Σ m log p                                           C51-5
:func:`td3_target_action`          target-policy smoothing                              TD3-1
:func:`clipped_double_q`           min over the critics (or the first)                  TD3-2
:func:`soft_state_value`           min_i Q_i(s', a') - α log π(a'∣s')                   SAC-1
:func:`sac_actor_objective`        α log π(ã∣s) - min_i Q_i(s, ã)                       SAC-3
:func:`temperature_loss`           -log α (log π + H̄)                                   SAC-4
:func:`redq_soft_target_value`     the soft value from a random subset of critics       REDQ-2
:func:`crossq_split_joint`         the joint batch's halves: Q(s, a) and the target     CQ-1, 2
=================================  ==================================================  =========

References:
    Mnih et al. (2015), *Human-level control through deep reinforcement learning*, Nature.
    van Hasselt, Guez & Silver (2016), *Deep Reinforcement Learning with Double Q-learning*, AAAI.
    Bellemare, Dabney & Munos (2017), *A Distributional Perspective on Reinforcement Learning*.
    Williams (1992), *Simple statistical gradient-following algorithms ...*, Machine Learning.
    Schulman et al. (2017), *Proximal Policy Optimization Algorithms*, arXiv:1707.06347.
    Lillicrap et al. (2016), *Continuous control with deep reinforcement learning*, ICLR.
    Fujimoto, van Hoof & Meger (2018), *Addressing Function Approximation Error in Actor-Critic
    Methods*, ICML.
    Haarnoja et al. (2018b), *Soft Actor-Critic Algorithms and Applications*, arXiv:1812.05905.
    Chen, Wang, Zhou & Ross (2021), *Randomized Ensembled Double Q-Learning*, ICLR.
    Bhatt et al. (2024), *CrossQ: Batch Normalization in Deep Reinforcement Learning*, ICLR.
"""

from __future__ import annotations

import torch

__all__ = [
    "ppo_clip_objective",
    "ppo_kl_penalty_objective",
    "ppo_beta_factor",
    "policy_gradient_objective",
    "action_value_of",
    "dqn_next_value",
    "td_target",
    "c51_next_distribution",
    "project_distribution",
    "c51_cross_entropy",
    "td3_target_action",
    "clipped_double_q",
    "soft_state_value",
    "sac_actor_objective",
    "temperature_loss",
    "redq_soft_target_value",
    "crossq_split_joint",
]


# ---------------------------------------------------------------------------------------------
# Policy gradients: REINFORCE / A2C and PPO.
# ---------------------------------------------------------------------------------------------


def policy_gradient_objective(log_prob: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    r"""The score-function loss -log π(a_t∣s_t) Â_t (Williams 1992; Mnih et al. 2016, A2C-1).

    ===============  ==========  ==================================================
    ``log_prob``     [*B, T, 1]  log π_θ(a_t∣s_t), differentiable in θ
    ``advantage``    [*B, T, 1]  Â_t, a constant for the policy gradient
    returns          [*B, T, 1]  the per-sample loss; its gradient is -∇log π Â
    ===============  ==========  ==================================================
    """
    return -(log_prob * advantage)  # (A2C-1) = (REINFORCE-2)


def ppo_clip_objective(
    log_weight: torch.Tensor, advantage: torch.Tensor, clip_low: float, clip_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""PPO's clipped surrogate min(r Â, clip(r, 1-ε_low, 1+ε_high) Â) (Schulman et al. 2017, eq. 7).

    The clip is done on log r: log(1-ε) <= log r <= log(1+ε), as TorchRL does.

    ==============  ==========  ==================================================
    ``log_weight``  [*B, 1]     log r_t(θ) = log π_θ(a_t∣s_t) - log π_old(a_t∣s_t)
    ``advantage``   [*B, 1]     Â_t
    ``clip_*``      []          ε_low, ε_high as tensors (both ε in the paper)
    returns         [*B, 1] x2  the surrogate to maximise, and log r after clipping
    ==============  ==========  ==================================================
    """
    surrogate = log_weight.exp() * advantage  # (PPO-2) r_t Â_t
    low, high = torch.log1p(-clip_low), torch.log1p(clip_high)  # (PPO-3) log(1 ∓ ε)
    log_weight_clipped = log_weight.clamp(low, high)  # (PPO-3) clip(r, 1-ε, 1+ε)
    surrogate_clipped = log_weight_clipped.exp() * advantage  # (PPO-3)
    return torch.minimum(surrogate, surrogate_clipped), log_weight_clipped  # (PPO-3) min


def ppo_kl_penalty_objective(
    log_weight: torch.Tensor, advantage: torch.Tensor, kl: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    r"""PPO's KL-penalised surrogate r Â - β KL (Schulman et al. 2017, eq. 8).

    ==============  ==========  ==================================================
    ``log_weight``  [*B, 1]     log r_t(θ)
    ``advantage``   [*B, 1]     Â_t
    ``kl``          [*B, 1]     KL[π_old(·∣s_t) ‖ π_θ(·∣s_t)]
    ``beta``        []          β, the penalty coefficient
    returns         [*B, 1]     the penalised surrogate, to maximise
    ==============  ==========  ==================================================
    """
    return log_weight.exp() * advantage - beta * kl  # (PPO-2) r_t Â_t, (PPO-4) - β KL


def ppo_beta_factor(kl_mean: torch.Tensor, dtarg: float, increment: float, decrement: float):
    r"""The factor β is multiplied by after an update (Schulman et al. 2017, section 4; PPO-5).

    ``kl_mean`` is the batch's mean KL; ``dtarg`` the target KL_targ. Returns a float.
    """
    if kl_mean > 1.5 * dtarg:  # (PPO-5) policy moved too far: stronger penalty
        return increment
    if kl_mean < dtarg / 1.5:  # (PPO-5) policy barely moved: weaker penalty
        return decrement
    return 1.0


# ---------------------------------------------------------------------------------------------
# Value-based: DQN, Double DQN, C51.
# ---------------------------------------------------------------------------------------------


def action_value_of(action_value: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    r"""Q(s_t, a_t) [*B] from Q(s_t, ·) [*B, n_actions] and the action index a_t [*B] (DQN-1)."""
    return action_value.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # (DQN-1)


def dqn_next_value(
    next_action_value_target: torch.Tensor, next_action_value_online: torch.Tensor | None = None
) -> torch.Tensor:
    r"""The value of the next state that DQN bootstraps from, [*B, 1].

    .. math::
        \max_{a'} Q_{θ^-}(s', a')  \tag{DQN-2}

        Q_{θ^-}(s', \arg\max_{a'} Q_θ(s', a'))  \tag{DQN-3}

    ==============================  ===============  ======================================
    ``next_action_value_target``    [*B, n_actions]  Q_θ⁻(s_{t+1}, ·), the target network
    ``next_action_value_online``    [*B, n_actions]  Q_θ(s_{t+1}, ·) for Double DQN, or None
    returns                         [*B, 1]          the bootstrap value, no gradient needed
    ==============================  ===============  ======================================

    For (DQN-2), :class:`~rlteach.objectives.DQNLoss` reads the same number from the greedy
    actor's ``chosen_action_value`` (as TorchRL does), which a masked actor may restrict.
    """
    if next_action_value_online is None:
        return next_action_value_target.max(-1, keepdim=True).values  # (DQN-2)
    next_action = next_action_value_online.argmax(-1, keepdim=True)  # (DQN-3) choose with θ
    return next_action_value_target.gather(-1, next_action)  # (DQN-3) evaluate with θ'


def td_target(
    reward: torch.Tensor, terminated: torch.Tensor, gamma, next_value: torch.Tensor
) -> torch.Tensor:
    r"""The one-step target y = r + γ (1 - term) v' of DQN-2/3, DDPG-1, TD3-2, SAC-1, ...

    The losses hand ``next_value`` to their value estimator (TD(0) by default, which computes
    exactly this, :func:`rlteach.value.functional.td0_return_estimate`); TD(1) and TD(λ) chain
    the same step along time.

    ===============  =======  =================================================
    ``reward``       [*B, 1]  r_t
    ``terminated``   [*B, 1]  term_t (bool): a true end of the task, not a time limit
    ``gamma``        scalar   γ
    ``next_value``   [*B, 1]  the bootstrap value v' of s_{t+1}
    ===============  =======  =================================================
    """
    return reward + gamma * (~terminated).to(reward.dtype) * next_value  # (TD0-1)


def c51_next_distribution(
    next_log_p_target: torch.Tensor,
    support: torch.Tensor,
    next_log_p_online: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""p(s', a*) with a* = argmax_a Σ_i z_i p_i(s', a) (Bellemare et al. 2017, Algorithm 1, C51-1).

    ========================  ==========================  =====================================
    ``next_log_p_target``     [*B, n_atoms, n_actions]    log p_i(s', a) of the target network
    ``support``               [n_atoms]                   z_1 < ... < z_N
    ``next_log_p_online``     [*B, n_atoms, n_actions]    the online network's, to choose
                                                          (TorchRL's choice); None: the target's
    returns                   [*B, n_atoms]               the target network's p(s', ·), chosen action
    ========================  ==========================  =====================================
    """
    log_p_choose = next_log_p_target if next_log_p_online is None else next_log_p_online
    q_next = (log_p_choose.exp() * support.unsqueeze(-1)).sum(-2)  # (C51-1) Σ_i z_i p_i
    best = q_next.argmax(-1)[..., None, None].expand(*q_next.shape[:-1], support.numel(), 1)
    return next_log_p_target.exp().gather(-1, best).squeeze(-1)  # (C51-1) p(s', a*)


def project_distribution(
    next_probs: torch.Tensor,
    reward: torch.Tensor,
    not_terminated: torch.Tensor,
    discount: torch.Tensor | float,
    support: torch.Tensor,
) -> torch.Tensor:
    r"""Project the shifted and shrunk distribution r + γ z onto the fixed support (C51-2...C51-4).

    This is the loop body of Algorithm 1 of Bellemare et al. (2017), written for a batch. Each
    atom z_j carries probability p_j; after the Bellman update it sits at T z_j, which in
    general falls between two support points z_l and z_u. Its mass is split between them in
    proportion to closeness (linear interpolation), which keeps the mean and the total mass.

    ==================  ==============  =============================================
    symbol              shape           meaning
    ==================  ==============  =============================================
    ``next_probs``      [N, n_atoms]    p_j(s_{t+1}, a*), each row sums to 1
    ``reward``          [N, 1]          r_t
    ``not_terminated``  [N, 1]          1 - term_t (0 after a true terminal state)
    ``discount``        scalar / [N,1]  γ (or γ^n for n-step transitions)
    ``support``         [n_atoms]       z_1 < ... < z_N, evenly spaced by Δz
    returns             [N, n_atoms]    m, the target distribution on the support
    ==================  ==============  =============================================

    When T z_j lands exactly on a support point, b_j is a whole number and l = u = b_j: the two
    weights of C51-4, (u - b_j) and (b_j - l), are both 0 and the printed algorithm drops the
    atom's mass. Here the whole mass goes to z_l in that case, so every row of m sums to 1.
    """
    n_atoms = support.numel()
    v_min, v_max = support[0], support[-1]
    delta_z = (v_max - v_min) / (n_atoms - 1)

    # (C51-2) the Bellman update of every atom, clamped to the support's range
    tz = reward + not_terminated * discount * support  # [N, n_atoms]
    tz = tz.clamp(min=v_min, max=v_max)
    # (C51-3) fractional position on the support and its two neighbours
    b = (tz - v_min) / delta_z
    lower, upper = b.floor(), b.ceil()
    on_point = lower == upper  # T z_j fell exactly on z_l: keep its mass (the l = u fix)
    weight_lower = next_probs * (upper - b + on_point.to(b.dtype))
    weight_upper = next_probs * (b - lower)
    # (C51-4) scatter-add the two shares (several atoms may land next to the same point)
    m = torch.zeros_like(next_probs)
    m.scatter_add_(-1, lower.long().clamp(0, n_atoms - 1), weight_lower)
    m.scatter_add_(-1, upper.long().clamp(0, n_atoms - 1), weight_upper)
    return m


def c51_cross_entropy(target_probs: torch.Tensor, log_p_taken: torch.Tensor) -> torch.Tensor:
    r"""-Σ_i m_i log p_i(s_t, a_t) [*B], the KL to the projected target up to a constant (C51-5).

    ==================  ==============  =============================================
    ``target_probs``    [*B, n_atoms]   m, the projected target (no gradient)
    ``log_p_taken``     [*B, n_atoms]   log p_i(s_t, a_t) of the online network
    ==================  ==============  =============================================
    """
    return -(target_probs * log_p_taken).sum(-1)  # (C51-5)


# ---------------------------------------------------------------------------------------------
# Deterministic actor-critic: DDPG and TD3.
# ---------------------------------------------------------------------------------------------


def td3_target_action(
    next_action: torch.Tensor,
    standard_normal: torch.Tensor,
    policy_noise: float,
    noise_clip: float,
    low,
    high,
) -> torch.Tensor:
    r"""Target-policy smoothing: clip(μ'(s') + clip(σ ξ, -c, c), a_low, a_high) (Fujimoto 2018).

    ===================  =======  ====================================================
    ``next_action``      [*B, A]  μ_θ'(s_{t+1}), the target actor's action
    ``standard_normal``  [*B, A]  ξ ~ N(0, 1), drawn by the caller (an order of draws
                                  that TorchRL fixes)
    ``policy_noise``     scalar   σ
    ``noise_clip``       scalar   c
    ``low``, ``high``    [A]      the action bounds
    ===================  =======  ====================================================
    """
    noise = (standard_normal * policy_noise).clamp(-noise_clip, noise_clip)  # (TD3-1) clip(σξ)
    return (next_action + noise).clamp(low, high)  # (TD3-1) a' kept in the action box


def clipped_double_q(next_q: torch.Tensor, clipped: bool = True) -> torch.Tensor:
    r"""min_i Q'_i(s', a') over the critics' dim 0 (TD3-2), or Q'_1 when ``clipped`` is False.

    ``next_q`` is [N, *B] for N critics; returns [*B].
    """
    return next_q.min(0).values if clipped else next_q[0]  # (TD3-2)


# ---------------------------------------------------------------------------------------------
# Soft actor-critic: SAC, REDQ, CrossQ.
# ---------------------------------------------------------------------------------------------


def soft_state_value(
    next_q: torch.Tensor, next_log_prob: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    r"""The soft value min_i Q'_i(s', a') - α log π(a'∣s'), a' ~ π(·∣s') (Haarnoja 2018b, SAC-1).

    ===================  ===========  ==================================================
    ``next_q``           [N, *B, 1]   Q'_i(s_{t+1}, a') of the N (target) critics
    ``next_log_prob``    [*B]         log π(a'∣s_{t+1})
    ``alpha``            []           α, the temperature (detached)
    returns              [*B, 1]      V(s_{t+1}), to bootstrap from
    ===================  ===========  ==================================================
    """
    return (next_q - alpha * next_log_prob.unsqueeze(-1)).min(0).values  # (SAC-1)


def sac_actor_objective(
    q: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    r"""α log π(ã∣s) - min_i Q_i(s, ã), ã = tanh(ν + σ ξ) reparameterised (Haarnoja 2018b, SAC-3).

    =============  ===========  ====================================================
    ``q``          [N, *B]      Q_i(s, ã), the critics' parameters detached
    ``log_prob``   [*B]         log π(ã∣s), differentiable through ã
    ``alpha``      []           α (detached)
    returns        [*B]         the per-sample actor loss
    =============  ===========  ====================================================
    """
    return alpha * log_prob - q.min(0).values  # (SAC-3)


def temperature_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: torch.Tensor
) -> torch.Tensor:
    r"""-log α (log π(ã∣s) + H̄), per sample (Haarnoja 2018b, section 5; SAC-4).

    Its gradient in log α is H - H̄ with H ≈ -log π: descent raises α while the policy's
    entropy is below the target H̄. ``log_prob`` [*B] is detached here; returns [*B].
    """
    return -log_alpha * (log_prob.detach() + target_entropy)  # (SAC-4)


def redq_soft_target_value(
    next_q_subset: torch.Tensor, next_log_prob: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    r"""min over a random subset M of the critics of Q'_i(s', a') - α log π(a'∣s') (Chen 2021).

    ===================  ===========  ====================================================
    ``next_q_subset``    [M, *B]      Q'_i(s_{t+1}, a') for the M critics drawn (REDQ-1)
    ``next_log_prob``    [*B]         log π(a'∣s_{t+1})
    ``alpha``            []           α
    returns              [*B]         the soft value of s_{t+1} (REDQ-2)
    ===================  ===========  ====================================================
    """
    return (next_q_subset - alpha * next_log_prob.detach()).min(0)[0]  # (REDQ-2)


def crossq_split_joint(
    q_joint: torch.Tensor, next_log_prob: torch.Tensor, alpha: torch.Tensor, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""CrossQ's joint batch [(s, a); (s', a')] cut into Q(s, a) and the soft value of s'.

    Both halves went through the critics in *one* batch (CQ-1), so batch normalisation saw the
    statistics of both; there is no target network (Bhatt et al. 2024).

    ===================  ===========  ====================================================
    ``q_joint``          [N, 2B]      Q_i over the joint batch, the first B rows are (s, a)
    ``next_log_prob``    [B]          log π(a'∣s')
    ``alpha``            []           α
    returns              [N, B], [B]  Q_i(s, a), and min_i Q_i(s', a') - α log π (detached)
    ===================  ===========  ====================================================
    """
    q, q_next = q_joint[:, :batch], q_joint[:, batch:]  # (CQ-1) the two halves
    next_value = (q_next.min(0)[0] - alpha * next_log_prob).detach()  # (CQ-2)
    return q, next_value
