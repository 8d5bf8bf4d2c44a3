"""Checkers for the chapters' exercises: run your function, say precisely what is wrong.

Each ``check_*`` runs your function on a few small hand-made inputs, compares the result with
rlteach's reference implementation and either prints a short success line or
raises :class:`ExerciseError` naming the first problem it finds: the shape, a flipped sign, a
shift by one time step, or the value at a specific index, with a hint about the equation::

    from rlteach.exercises import check_gae

    def my_gae(gamma, lmbda, state_value, next_state_value, reward, done, terminated):
        ...

    check_gae(my_gae)   # ✓ check_gae: 3 cases agree with rlteach's reference.

:func:`check_close` is the comparison underneath, for any chapter's own exercise::

    check_close("loss", my_loss, 0.3681, hint="KL[π_old ‖ π], the old policy first")

======================================  ==========================================  ==========
checker                                 your function                               chapter
======================================  ==========================================  ==========
:func:`check_discounted_returns`        ``fn(reward, done, gamma) -> G``            01, 02
:func:`check_td_lambda`                 ``fn(gamma, lmbda, next_state_value,        01
                                        reward, done, terminated) -> G^λ``
:func:`check_gae`                       ``fn(gamma, lmbda, state_value,             01, 03
                                        next_state_value, reward, done,
                                        terminated) -> advantage``
:func:`check_reinforce_loss`            ``fn(log_prob, advantage) -> loss``         02
:func:`check_entropy`                   ``fn(probs) -> entropy``                    03
:func:`check_clip_objective`            ``fn(ratio, advantage, clip_epsilon)        04
                                        -> L^CLIP`` (per sample)
:func:`check_kl_categorical`            ``fn(p_old, p_new) -> KL[p_old ‖ p_new]``   05
======================================  ==========================================  ==========

Chapters 6-15 have their own checkers, one module per family, all importable from here:
:mod:`rlteach.exercises.value_based` (chapters 6-8: ``check_dqn_target``,
``check_double_dqn_target``, ``check_c51_projection``), :mod:`rlteach.exercises.continuous`
(chapters 9-13: ``check_soft_update``, ``check_target_smoothing``, ``check_td3_target``,
``check_tanh_normal_log_prob``, ``check_redq_target``, ``check_batch_renorm``) and
:mod:`rlteach.exercises.multiagent` (chapters 14-15: ``check_multiagent_gae``,
``check_qmix_mixing``, ``check_vdn_target``). Each module's page lists the signatures.

Tensors follow the book's conventions: per-step quantities are ``[*B, T, 1]`` (time, then a
trailing feature dim), flags are ``bool``.
"""

from rlteach.exercises import continuous, multiagent, value_based
from rlteach.exercises.checks import (
    ExerciseError,
    check_clip_objective,
    check_close,
    check_discounted_returns,
    check_entropy,
    check_gae,
    check_kl_categorical,
    check_reinforce_loss,
    check_td_lambda,
)
from rlteach.exercises.continuous import *  # noqa: F403 (chapters 9-13)
from rlteach.exercises.multiagent import *  # noqa: F403 (chapters 14-15)
from rlteach.exercises.value_based import *  # noqa: F403 (chapters 6-8)

__all__ = [
    "ExerciseError",
    "check_close",
    "check_discounted_returns",
    "check_td_lambda",
    "check_gae",
    "check_reinforce_loss",
    "check_entropy",
    "check_clip_objective",
    "check_kl_categorical",
] + value_based.__all__ + continuous.__all__ + multiagent.__all__
