"""Checkers for the exercises of the multi-agent chapters (14 and 15).

Each runs your function on small hand-made cases and compares it with rlteach's own code
(:class:`rlteach.value.MultiAgentGAE`, :class:`rlteach.modules.QMixer`,
:class:`rlteach.modules.VDNMixer` with :func:`rlteach.value.functional.td0_return_estimate`),
naming the chapter's known mistakes when your answer matches one of them:

======================================  ==========================================  ==========
checker                                 your function                               chapter
======================================  ==========================================  ==========
:func:`check_multiagent_gae`            ``fn(gamma, lmbda, state_value,             14
                                        next_state_value, reward, done,
                                        terminated) -> advantage``, one per agent
:func:`check_qmix_mixing`               ``fn(agent_qs, w1, b1, w2, b2) -> q_tot``   15
:func:`check_vdn_target`                ``fn(gamma, next_action_values, reward,     15
                                        done, terminated) -> y``
======================================  ==========================================  ==========

The agent dim comes just before the trailing feature dim, as everywhere in rlteach: per-agent
values are ``[*B, T, n, 1]``, team rewards and flags ``[*B, T, 1]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from tensordict import TensorDict

from rlteach.exercises.checks import ExerciseError, _Case, _first, _run
from rlteach.modules import QMixer, VDNMixer
from rlteach.value import MultiAgentGAE, broadcast_to_agents, generalized_advantage_estimate
from rlteach.value.functional import td0_return_estimate

__all__ = ["check_multiagent_gae", "check_qmix_mixing", "check_vdn_target"]


def _run_each(checker: str, fn: Callable, output: str, cases: list, picks: list, quiet: bool):
    """:func:`_run` case by case, so that each case can have its own shape diagnosis."""
    for case, pick in zip(cases, picks, strict=True):
        _run(checker, fn, output, [case], pick=pick, quiet=True)
    if not quiet:
        print(f"✓ {checker}: {len(cases)} cases agree with rlteach's reference.")


# --------------------------------------------------------------------- chapter 14: MAPPO / IPPO


def _magae(gamma, lmbda, state_value, next_state_value, reward, done, terminated, average=False):
    """rlteach's :class:`MultiAgentGAE` on plain tensors (team or per-agent reward and flags)."""
    batch = state_value.shape[:-2]  # [*B, T]
    td = TensorDict(
        {
            "agents": {"state_value": state_value},
            "next": {
                "agents": {"state_value": next_state_value},
                "reward": reward,
                "done": done,
                "terminated": terminated,
            },
        },
        batch_size=batch,
    )
    estimator = MultiAgentGAE(gamma=gamma, lmbda=lmbda, value_network=None, average_gae=average)
    estimator.set_keys(value=("agents", "state_value"))
    return estimator(td)["advantage"]


def _agent_rollouts(seed: int, batch: int, steps: int, agents: int, shared_value=False):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, steps, agents, 1)
    value = torch.randn(shape, generator=g)
    next_value = torch.randn(shape, generator=g)
    if shared_value:  # a centralised critic shared by all agents: one value for the team
        value = value[..., :1, :].expand(shape).clone()
        next_value = next_value[..., :1, :].expand(shape).clone()
    reward = torch.randn((batch, steps, 1), generator=g)
    terminated = torch.zeros((batch, steps, 1), dtype=torch.bool)
    truncated = torch.zeros_like(terminated)
    terminated[0, 1], truncated[1, 2], terminated[1, steps - 1] = True, True, True
    next_value[0, 1] += 5.0  # a large V(s') at the terminal state: it must not be used
    return value, next_value, reward, terminated | truncated, terminated


def _magae_mistakes(kw: dict) -> list:
    """Wrong variants of the multi-agent GAE, each computed by rlteach on altered inputs."""
    value, reward = kw["state_value"], kw["reward"]
    n = value.shape[-2]
    team = {k: broadcast_to_agents(kw[k], value) for k in ("reward", "done", "terminated")}
    mistakes = [
        (
            "the recursion ran along the agent dim: with values [*B, T, n, 1] time is dim -3, "
            "not -2 (generalized_advantage_estimate(..., time_dim=-3)); agents are independent "
            "GAE recursions, side by side",
            generalized_advantage_estimate(
                kw["gamma"], kw["lmbda"], value, kw["next_state_value"], **team, time_dim=-2
            )[0],
        ),
        (
            "the team reward was divided among the agents (r / n): in a cooperative task every "
            "agent receives the whole team reward, r^i_t = r_t (MAGAE-1)",
            _magae(**{**kw, "reward": reward / n}),
        ),
        (
            "the team reward was summed over the agents (n · r): it is one reward for the team, "
            "copied to each agent, r^i_t = r_t (MAGAE-1)",
            _magae(**{**kw, "reward": reward * n}),
        ),
        (
            "the agents' values were mixed (averaged over the agent dim): each agent's δ^i_t uses "
            "its own V^i, so keep the agent dim of state_value and next_state_value",
            _magae(
                **{
                    **kw,
                    "state_value": value.mean(-2, keepdim=True).expand_as(value),
                    "next_state_value": kw["next_state_value"]
                    .mean(-2, keepdim=True)
                    .expand_as(value),
                }
            ),
        ),
        (
            "a truncation (time limit) is treated as a termination: the bootstrap mask "
            "(1 − term_t) takes `terminated`, not `done`",
            _magae(**{**kw, "terminated": kw["done"]}),
        ),
        (
            "a terminal state is bootstrapped from: multiply γ V^i(s_{t+1}) by (1 − term_t)",
            _magae(**{**kw, "terminated": torch.zeros_like(kw["terminated"])}),
        ),
        (
            "the recursion runs on across a truncation: Â^i_{t+1} is cut where done is True, not "
            "only where terminated is",
            _magae(**{**kw, "done": kw["terminated"]}),
        ),
        (
            "the advantage was standardised per agent (MAGAE-3): the exercise asks for the raw "
            "GAE; MAPPOLoss standardises it later",
            _magae(**kw, average=True),
        ),
    ]
    batch = value.shape[:-3]
    if len(batch) == 1 and batch[0] == n:
        # reward[..., t, :] is [B, 1]: added to V[..., t, :, :] ([B, n, 1]) it lines up with the
        # agent dim, so agent i gets rollout i's reward (and flags) in every rollout.
        aligned = {
            k: kw[k][..., 0].T.unsqueeze(0).unsqueeze(-1).expand(value.shape).contiguous()
            for k in ("reward", "done", "terminated")
        }
        mistakes.insert(
            0,
            (
                "the team reward (and flags) were not broadcast along the agent dim: "
                "reward[..., t, :] has shape [B, 1], which lines up with the agent dim of "
                "V[..., t, :, :] ([B, n, 1]), so agent i received rollout i's reward. Insert the "
                "agent dim first: reward.unsqueeze(-2) is [*B, T, 1, 1] (MAGAE-1)",
                _magae(**{**kw, **aligned}),
            ),
        )
    return mistakes


def _broadcast_hint(fn: Callable) -> Callable:
    """Add a pointer to (MAGAE-1) to the error of a failed broadcast."""
    if not callable(fn):
        return fn

    @functools.wraps(fn)
    def wrapped(*args):
        try:
            return fn(*args)
        except RuntimeError as err:
            if "must match the size" not in str(err) and "broadcast" not in str(err):
                raise
            raise RuntimeError(
                f"{err} (is the team signal broadcast to the agents? reward [*B, T, 1] becomes "
                f"[*B, T, 1, 1] with reward.unsqueeze(-2), which lines up with the values "
                f"[*B, T, n, 1] (MAGAE-1))"
            ) from err

    return wrapped


def check_multiagent_gae(fn: Callable, quiet: bool = False) -> None:
    """Check a GAE for a team of agents with one value each and a team reward (chapter 14).

    ``fn(gamma, lmbda, state_value, next_state_value, reward, done, terminated)`` →
    ``advantage`` (or ``(advantage, value_target)``), with

    =======================================  ===============  ===============================
    argument                                 shape            meaning
    =======================================  ===============  ===============================
    ``state_value``, ``next_state_value``    [*B, T, n, 1]    V^i(s_t), V^i(s_{t+1}) per agent
    ``reward``                               [*B, T, 1]       the team reward r_{t+1}
    ``done``, ``terminated``                 [*B, T, 1]       team flags (``bool``)
    advantage (returned)                     [*B, T, n, 1]    Â^i_t, one per agent
    =======================================  ===============  ===============================

    The team signals are copied to every agent (MAGAE-1) and each agent runs the ordinary GAE
    recursion on its own values (MAGAE-2), with time at dim -3::

        δ^i_t = r_t + γ (1 − term_t) V^i(s_{t+1}) − V^i(s_t)
        Â^i_t = δ^i_t + γλ (1 − d_t) Â^i_{t+1}

    No standardisation. The reference is :class:`rlteach.value.MultiAgentGAE`. Example::

        def my_magae(gamma, lmbda, state_value, next_state_value, reward, done, terminated):
            team = lambda x: x.unsqueeze(-2).expand_as(state_value)
            return generalized_advantage_estimate(
                gamma, lmbda, state_value, next_state_value, team(reward), team(done),
                team(terminated), time_dim=-3)

        check_multiagent_gae(my_magae)
    """
    g = torch.Generator().manual_seed(0)  # chapter 14's "Broadcast by hand" rollout
    T, n = 5, 3
    ch14_done = torch.zeros(T, 1, dtype=torch.bool)
    ch14_done[2] = True
    ch14 = dict(
        gamma=0.9,
        lmbda=0.8,
        state_value=torch.randn(T, n, 1, generator=g),
        next_state_value=torch.randn(T, n, 1, generator=g),
        reward=torch.randn(T, 1, generator=g),
        done=ch14_done,
        terminated=ch14_done.clone(),
    )
    names = ("state_value", "next_state_value", "reward", "done", "terminated")
    inputs = [
        ("chapter 14's rollout [5, 3, 1], an episode end after step 3, γ = 0.9, λ = 0.8", ch14),
        (
            "two rollouts of two agents [2, 5, 2, 1], a termination and a truncation, "
            "γ = 0.99, λ = 0.95",
            dict(
                gamma=0.99, lmbda=0.95, **dict(zip(names, _agent_rollouts(1, 2, 5, 2), strict=True))
            ),
        ),
        (
            "a shared centralised critic (equal values), [2, 4, 3, 1], γ = 0.9, λ = 0.9",
            dict(
                gamma=0.9,
                lmbda=0.9,
                **dict(zip(names, _agent_rollouts(2, 2, 4, 3, shared_value=True), strict=True)),
            ),
        ),
    ]
    cases, picks = [], []
    for label, kw in inputs:
        expected = _magae(**kw)
        cases.append(
            _Case(
                label,
                tuple(kw.values()),
                expected,
                hint="δ^i_t = r_t + γ(1−term_t)V^i(s_{t+1}) − V^i(s_t), Â^i_t = δ^i_t + "
                "γλ(1−d_t)Â^i_{t+1}: the team reward and flags copied to each agent (MAGAE-1), "
                "one recursion per agent along time, dim -3 (MAGAE-2).",
                time_dim=-3,
                mistakes=_magae_mistakes(kw),
            )
        )
        picks.append(_agent_shape_pick(label, expected.shape, kw["reward"].shape))
    _run_each("check_multiagent_gae", _broadcast_hint(fn), "advantage", cases, picks, quiet)


def _agent_shape_pick(label: str, agent_shape: torch.Size, team_shape: torch.Size) -> Callable:
    def pick(result):
        got = _first(result)
        if isinstance(got, torch.Tensor) and got.shape == team_shape:
            raise ExerciseError(
                f"advantage (case '{label}') has the team's shape {list(team_shape)}; one "
                f"advantage per agent is expected, {list(agent_shape)}. Keep the agent dim: the "
                f"team reward and flags are copied to every agent (MAGAE-1, "
                f"reward.unsqueeze(-2).expand_as(state_value)), and the agents' values are not "
                f"averaged or summed away."
            )
        return got

    return pick


# ------------------------------------------------------------------------- chapter 15: QMIX / VDN


def _qmixer_reference(agent_qs, w1, b1, w2, b2) -> torch.Tensor:
    """rlteach's :class:`QMixer` with hypernetworks that output exactly ``w1, b1, w2, b2``.

    The state of sample b is the one-hot vector e_b, and each hypernetwork's weight matrix holds
    the wanted outputs as columns (bias 0), so hyper(e_b) is sample b's raw output. V(s) is
    Linear → ReLU → Linear: b2 = ReLU(b2) − ReLU(−b2) needs two hidden units, so E ≥ 2.
    """
    B, n, E = w1.shape
    mixer = QMixer(state_shape=(B,), mixing_embed_dim=E, n_agents=n)
    with torch.no_grad():
        for layer, raw in (
            (mixer.hyper_w_1, w1.reshape(B, n * E)),
            (mixer.hyper_b_1, b1),
            (mixer.hyper_w_final, w2.reshape(B, E)),
        ):
            layer.weight.copy_(raw.T)
            layer.bias.zero_()
        first, _, last = mixer.V
        first.weight.zero_()
        first.bias.zero_()
        first.weight[0], first.weight[1] = b2[:, 0], -b2[:, 0]
        last.weight.zero_()
        last.weight[0, 0], last.weight[0, 1] = 1.0, -1.0
        last.bias.zero_()
        return mixer(agent_qs, torch.eye(B))


def _mix(
    agent_qs,
    w1,
    b1,
    w2,
    b2,
    *,
    activation=torch.nn.functional.elu,
    abs_w1=True,
    abs_w2=True,
    abs_biases=False,
    b1_after=False,
    with_b2=True,
):
    """(QMIX-1)–(QMIX-4) written out, with switches for the known mistakes."""
    W1 = w1.abs() if abs_w1 else w1
    W2 = w2.abs() if abs_w2 else w2
    if abs_biases:
        b1, b2 = b1.abs(), b2.abs()
    pre = agent_qs.transpose(-2, -1) @ W1  # [B, 1, E]
    hidden = activation(pre) + b1.unsqueeze(-2) if b1_after else activation(pre + b1.unsqueeze(-2))
    q_tot = (hidden @ W2).squeeze(-1)  # [B, 1]
    return q_tot + b2 if with_b2 else q_tot


def check_qmix_mixing(fn: Callable, quiet: bool = False) -> None:
    """Check QMIX's monotonic mixing of the agents' utilities into Q_tot (chapter 15).

    ``fn(agent_qs, w1, b1, w2, b2)`` → ``q_tot``, given the hypernetworks' *raw* outputs for
    each sample's state (before any absolute value):

    ==============  ============  ===========================================================
    argument        shape         meaning
    ==============  ============  ===========================================================
    ``agent_qs``    [B, n, 1]     Q_a(τ^a, u^a), each agent's chosen utility
    ``w1``          [B, n, E]     hyper_w_1(s), raw
    ``b1``          [B, E]        hyper_b_1(s)
    ``w2``          [B, E, 1]     hyper_w_final(s), raw
    ``b2``          [B, 1]        V(s)
    q_tot           [B, 1]        returned: Q_tot
    ==============  ============  ===========================================================

    The mixing is rlteach's ``QMixer.mix``, (QMIX-1)–(QMIX-4)::

        h     = ELU(Qᵀ |W1| + b1)        # [B, 1, E]
        Q_tot = h |W2| + b2              # [B, 1]

    The absolute values on the weights (not the biases) and the increasing ELU make
    ∂Q_tot/∂Q_a ≥ 0 (QMIX-5). The reference is :class:`rlteach.modules.QMixer` with
    hypernetworks that output the given tensors. Example::

        def my_mixing(agent_qs, w1, b1, w2, b2):
            h = torch.nn.functional.elu(agent_qs.transpose(1, 2) @ w1.abs() + b1.unsqueeze(1))
            return (h @ w2.abs()).squeeze(1) + b2

        check_qmix_mixing(my_mixing)
    """

    def t(*rows):
        return torch.tensor(rows, dtype=torch.float32)

    hand = (  # B = 1, n = 2, E = 2: a negative pre-activation, negative raw weights and biases
        t([1.0], [-3.0]).unsqueeze(0),
        t([1.0, -2.0], [0.5, 1.0]).unsqueeze(0),
        t([1.0, -1.0]),
        t([-1.0], [2.0]).unsqueeze(0),
        t([-0.5]),
    )

    def random_inputs(seed, B, n, E, scale):
        g = torch.Generator().manual_seed(seed)
        return (
            scale * torch.randn(B, n, 1, generator=g),
            torch.randn(B, n, E, generator=g),
            torch.randn(B, E, generator=g),
            torch.randn(B, E, 1, generator=g),
            torch.randn(B, 1, generator=g),
        )

    inputs = [
        ("hand-made: one sample, two agents, E = 2", hand),
        ("a batch of 4, three agents, E = 4", random_inputs(0, 4, 3, 4, 1.0)),
        (
            "the two-step game's sizes, B = 4, two agents, E = 8, large utilities (ELU saturates)",
            random_inputs(1, 4, 2, 8, 5.0),
        ),
    ]
    relu = torch.nn.functional.relu
    cases = []
    for label, args in inputs:
        cases.append(
            _Case(
                label,
                args,
                _qmixer_reference(*args),
                hint="Q_tot = ELU(Qᵀ|W1| + b1)·|W2| + b2, (QMIX-1)–(QMIX-4): absolute values on "
                "the two weights, ELU after adding b1, the biases as they are.",
                mistakes=[
                    (
                        "no absolute value on the weights: with negative weights Q_tot can "
                        "decrease when an agent's utility grows, so (QMIX-5) fails; use |W1| "
                        "and |W2|",
                        _mix(*args, abs_w1=False, abs_w2=False),
                    ),
                    (
                        "W1 is used without its absolute value (QMIX-1)",
                        _mix(*args, abs_w1=False),
                    ),
                    (
                        "W2 is used without its absolute value (QMIX-3)",
                        _mix(*args, abs_w2=False),
                    ),
                    (
                        "ReLU instead of ELU (QMIX-2): ReLU's zero gradient below 0 cuts the "
                        "utilities off; QMIX uses ELU",
                        _mix(*args, activation=relu),
                    ),
                    (
                        "no activation between the two layers (QMIX-2): without the ELU the "
                        "mixer is linear in the utilities, a weighted VDN",
                        _mix(*args, activation=lambda x: x),
                    ),
                    (
                        "absolute values on the biases too: only the weights must be "
                        "non-negative; b1 and V(s) do not multiply a utility, so they stay free",
                        _mix(*args, abs_biases=True),
                    ),
                    (
                        "b1 is added after the ELU; it goes inside: ELU(Qᵀ|W1| + b1) (QMIX-2)",
                        _mix(*args, b1_after=True),
                    ),
                    (
                        "the final bias b2 = V(s) is missing (QMIX-4)",
                        _mix(*args, with_b2=False),
                    ),
                ],
            )
        )
    _run("check_qmix_mixing", fn, "q_tot", cases, quiet=quiet)


def _vdn_target(gamma, next_action_values, reward, done, terminated):
    """(QMIX-L2) with the VDN mixer: per-agent max, VDNMixer's sum, TD(0) with the term mask."""
    n = next_action_values.shape[-2]
    best = next_action_values.max(dim=-1, keepdim=True).values  # [B, n, 1]
    return td0_return_estimate(gamma, VDNMixer(n)(best), reward, terminated)


def check_vdn_target(fn: Callable, quiet: bool = False) -> None:
    """Check VDN's TD target from the target networks' next-step Q-values (chapter 15).

    ``fn(gamma, next_action_values, reward, done, terminated)`` → ``y``, with

    ========================  ============  =================================================
    argument                  shape         meaning
    ========================  ============  =================================================
    ``next_action_values``    [B, n, A]     Q^-_a(τ'^a, u) for every agent a and action u
    ``reward``                [B, 1]        the team reward
    ``done``, ``terminated``  [B, 1]        team flags (``bool``)
    y (returned)              [B, 1]        the target
    ========================  ============  =================================================

    (QMIX-L2) with the VDN mixer (VDN-1): each agent maximises its own utility, the mixer sums::

        y = r + γ (1 − term) Σ_a max_u Q^-_a(τ'^a, u)

    The reference is :class:`rlteach.modules.VDNMixer` and
    :func:`rlteach.value.functional.td0_return_estimate`. Example::

        def my_target(gamma, next_action_values, reward, done, terminated):
            best = next_action_values.max(-1).values.sum(-1, keepdim=True)
            return reward + gamma * (~terminated).float() * best

        check_vdn_target(my_target)
    """

    def flags(*values):
        return torch.tensor(values, dtype=torch.bool).unsqueeze(-1)

    hand_values = torch.tensor(  # step 1 of the two-step game, then step 2 (terminated)
        [[[6.9, 6.4], [3.5, 3.4]], [[1.0, 4.0], [2.0, -1.0]], [[0.5, 0.2], [-0.3, 0.1]]]
    )
    g = torch.Generator().manual_seed(3)
    inputs = [
        (
            "three transitions of two agents, two actions, γ = 0.99, the last one terminated",
            (
                0.99,
                hand_values,
                torch.tensor([[0.0], [0.0], [8.0]]),
                flags(0, 0, 1),
                flags(0, 0, 1),
            ),
        ),
        (
            "a batch of 4, three agents, four actions, γ = 0.9, a termination and a truncation",
            (
                0.9,
                torch.randn(4, 3, 4, generator=g),
                torch.randn(4, 1, generator=g),
                flags(0, 1, 1, 0),
                flags(0, 1, 0, 0),
            ),
        ),
    ]
    cases = []
    for label, args in inputs:
        gamma, q, reward, done, terminated = args
        not_term = (~terminated).float()
        cases.append(
            _Case(
                label,
                args,
                _vdn_target(*args),
                hint="y = r + γ(1 − term) Σ_a max_u Q^-_a(τ'^a, u): the max over each agent's "
                "actions (dim -1), then the sum over agents (VDN-1).",
                mistakes=[
                    (
                        "a truncation (time limit) is treated as a termination: the mask is "
                        "(1 − terminated), not (1 − done); a truncated step still bootstraps",
                        _vdn_target(gamma, q, reward, done, done),
                    ),
                    (
                        "a terminal state is bootstrapped from: multiply the next value by "
                        "(1 − terminated)",
                        _vdn_target(gamma, q, reward, done, torch.zeros_like(terminated)),
                    ),
                    (
                        "the mean over the agents instead of the sum: VDN's Q_tot is Σ_a Q_a (VDN-1)",
                        reward + gamma * not_term * q.max(-1).values.mean(-1, keepdim=True),
                    ),
                    (
                        "the utilities are summed over the actions; each agent takes the max "
                        "over its actions (dim -1)",
                        reward + gamma * not_term * q.sum(-1).sum(-1, keepdim=True),
                    ),
                    (
                        "only the best agent's value (a max over the agents too); VDN sums the "
                        "agents' maxima",
                        reward + gamma * not_term * q.amax(dim=(-2, -1)).unsqueeze(-1),
                    ),
                    (
                        "the max over the agents, then the sum over the actions: the dims are "
                        "swapped; the max is over each agent's actions (dim -1)",
                        reward + gamma * not_term * q.max(-2).values.sum(-1, keepdim=True),
                    ),
                ],
            )
        )
    _run("check_vdn_target", fn, "y", cases, quiet=quiet)
