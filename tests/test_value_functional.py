"""rlteach.value.functional: hand-computed cases, identities, TorchRL parity, twins, errors.

The hand-computed trajectory below is the worked example of the value-estimation chapter.
"""

import math

import pytest
import torch

from rlteach.value import functional as F

R = pytest.importorskip("torchrl.objectives.value.functional")

ATOL = 1e-5


# ---------------------------------------------------------------------------------------------
# A 4-step trajectory worked out by hand.
#
#   t               0     1            2     3
#   reward r_t      1     2            3     4
#   V(s_t)          0.5   1.0          2.0   1.5
#   V(s'_t)         1.0   4.0          1.5   8.0
#   done            .     truncated    .     terminated
#
# Step 1 is cut by a time limit: the episode did not end, s'_1 (value 4.0) is a real state that
# was never acted from, and the next row (t=2) starts a new trajectory. Step 3 terminates: its
# next value 8.0 must be ignored. Where the trajectory continues, V(s'_t) = V(s_{t+1}).
# gamma = 0.5, lambda = 0.5.
# ---------------------------------------------------------------------------------------------

GAMMA, LMBDA = 0.5, 0.5


def hand_trajectory():
    col = lambda xs: torch.tensor(xs, dtype=torch.float32).unsqueeze(-1)  # noqa: E731  [T] -> [T, 1]
    reward = col([1.0, 2.0, 3.0, 4.0])
    value = col([0.5, 1.0, 2.0, 1.5])
    next_value = col([1.0, 4.0, 1.5, 8.0])
    done = torch.tensor([False, True, False, True]).unsqueeze(-1)
    terminated = torch.tensor([False, False, False, True]).unsqueeze(-1)
    return reward, value, next_value, done, terminated


def test_hand_td0():
    r, v, nv, done, term = hand_trajectory()
    # G_t = r_t + 0.5 (1 - term_t) V(s'_t):
    #   1 + 0.5*1.0 = 1.5,  2 + 0.5*4.0 = 4.0,  3 + 0.5*1.5 = 3.75,  4 + 0 = 4.0 (terminated)
    expected = torch.tensor([1.5, 4.0, 3.75, 4.0]).unsqueeze(-1)
    torch.testing.assert_close(F.td0_return_estimate(GAMMA, nv, r, term), expected)
    torch.testing.assert_close(F.td0_advantage_estimate(GAMMA, v, nv, r, done, term), expected - v)


def test_hand_td1():
    r, v, nv, done, term = hand_trajectory()
    # Backward: G_3 = 4 (terminated, nothing after)
    #           G_2 = 3 + 0.5*G_3 = 5.0
    #           G_1 = 2 + 0.5*V(s'_1) = 2 + 2 = 4.0 (truncated: bootstrap, do not use G_2)
    #           G_0 = 1 + 0.5*G_1 = 3.0
    expected = torch.tensor([3.0, 4.0, 5.0, 4.0]).unsqueeze(-1)
    torch.testing.assert_close(F.td1_return_estimate(GAMMA, nv, r, done, term), expected)
    torch.testing.assert_close(F.vec_td1_return_estimate(GAMMA, nv, r, done, term), expected)


def test_hand_gae_and_td_lambda():
    r, v, nv, done, term = hand_trajectory()
    # (GAE-1) delta_t = TD(0) return - V(s_t) = [1.5-0.5, 4.0-1.0, 3.75-2.0, 4.0-1.5]
    #                                        = [1.0, 3.0, 1.75, 2.5]
    # (GAE-2) gamma*lambda = 0.25:
    #   A_3 = 2.5
    #   A_2 = 1.75 + 0.25*2.5 = 2.375
    #   A_1 = 3.0                       (done: the trace stops)
    #   A_0 = 1.0 + 0.25*3.0 = 1.75
    # (GAE-3) target = A + V = [2.25, 4.0, 4.375, 4.0]
    advantage = torch.tensor([1.75, 3.0, 2.375, 2.5]).unsqueeze(-1)
    target = torch.tensor([2.25, 4.0, 4.375, 4.0]).unsqueeze(-1)
    adv, vt = F.generalized_advantage_estimate(GAMMA, LMBDA, v, nv, r, done, term)
    torch.testing.assert_close(adv, advantage)
    torch.testing.assert_close(vt, target)
    # TD(lambda) by its own recursion, (TDL-1..3), V̄ = (1-term) V(s') = [1.0, 4.0, 1.5, 0]:
    #   t=3: done -> Ĝ = V̄_3 = 0;      G_3 = 4 + 0.5*(0.5*0   + 0.5*0)   = 4.0
    #   t=2: Ĝ = G_3 = 4;              G_2 = 3 + 0.5*(0.5*1.5 + 0.5*4.0) = 4.375
    #   t=1: done -> Ĝ = V̄_1 = 4;      G_1 = 2 + 0.5*(0.5*4.0 + 0.5*4.0) = 4.0
    #   t=0: Ĝ = G_1 = 4;              G_0 = 1 + 0.5*(0.5*1.0 + 0.5*4.0) = 2.25
    # the same numbers as the GAE target, as they must be on consistent data.
    torch.testing.assert_close(F.td_lambda_return_estimate(GAMMA, LMBDA, nv, r, done, term), target)
    torch.testing.assert_close(
        F.vec_td_lambda_return_estimate(GAMMA, LMBDA, nv, r, done, term), target
    )


def test_hand_reward2go():
    r, _, _, done, _ = hand_trajectory()
    # No bootstrapping at all: G_3 = 4, G_2 = 3 + 0.5*4 = 5, G_1 = 2 (done), G_0 = 1 + 0.5*2 = 2
    expected = torch.tensor([2.0, 2.0, 5.0, 4.0]).unsqueeze(-1)
    torch.testing.assert_close(F.reward2go(r, done, GAMMA), expected)


def test_hand_vtrace_off_policy():
    r, v, nv, done, term = hand_trajectory()
    # pi/mu = [2, 0.5, 1, 0.25]; with rho_bar = c_bar = 1: rho = c = [1, 0.5, 1, 0.25]  (VT-1)
    ratio = torch.tensor([2.0, 0.5, 1.0, 0.25]).unsqueeze(-1)
    log_mu = torch.full_like(ratio, -1.0)
    log_pi = log_mu + ratio.log()
    # (VT-2) delta = rho * (TD(0) return - V) = [1*1.0, 0.5*3.0, 1*1.75, 0.25*2.5]
    #                                         = [1.0, 1.5, 1.75, 0.625]
    # (VT-3) v - V:  t=3: 0.625
    #               t=2: 1.75 + 0.5*c_2*0.625 = 1.75 + 0.3125 = 2.0625
    #               t=1: 1.5                      (done: no correction flows back)
    #               t=0: 1.0 + 0.5*c_0*1.5 = 1.75
    #        v = (v - V) + V = [2.25, 2.5, 4.0625, 2.125]
    # (VT-4) next target: t=0 -> v_1 = 2.5; t=1 (done) -> V(s'_1) = 4; t=2 -> v_3 = 2.125;
    #        t=3 (terminated) -> multiplied by 0.
    #   A_0 = 1    * (1 + 0.5*2.5   - 0.5) = 1.75
    #   A_1 = 0.5  * (2 + 0.5*4.0   - 1.0) = 1.5
    #   A_2 = 1    * (3 + 0.5*2.125 - 2.0) = 2.0625
    #   A_3 = 0.25 * (4 + 0         - 1.5) = 0.625
    adv, vs = F.vtrace_advantage_estimate(GAMMA, log_pi, log_mu, v, nv, r, done, term)
    torch.testing.assert_close(vs, torch.tensor([2.25, 2.5, 4.0625, 2.125]).unsqueeze(-1))
    torch.testing.assert_close(adv, torch.tensor([1.75, 1.5, 2.0625, 0.625]).unsqueeze(-1))
    adv_t, vs_t = R.vtrace_advantage_estimate(GAMMA, log_pi, log_mu, v, nv, r, done, term)
    torch.testing.assert_close(vs, vs_t)
    torch.testing.assert_close(adv, adv_t)


def test_hand_values_agree_with_torchrl():
    r, v, nv, done, term = hand_trajectory()
    torch.testing.assert_close(
        F.td1_return_estimate(GAMMA, nv, r, done, term),
        R.td1_return_estimate(GAMMA, nv, r, done, term),
    )
    for ours, theirs in zip(
        F.generalized_advantage_estimate(GAMMA, LMBDA, v, nv, r, done, term),
        R.generalized_advantage_estimate(GAMMA, LMBDA, v, nv, r, done, term),
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs)


# ---------------------------------------------------------------------------------------------
# Random data with every kind of step end, for parity and identities.
# ---------------------------------------------------------------------------------------------

T = 8


def flags_for(shape, seed):
    """done/terminated of ``shape`` [*B, T, 1]: a truncation that is not a termination, a
    termination in the middle, a termination at the last step, a row running off the batch end,
    and random ends."""
    g = torch.Generator().manual_seed(seed)
    done = torch.zeros(shape, dtype=torch.bool)
    terminated = torch.zeros(shape, dtype=torch.bool)
    rows_done = done.view(-1, shape[-2])
    rows_term = terminated.view(-1, shape[-2])
    for i in range(rows_done.shape[0]):
        kind = i % 4
        if kind == 0:  # truncation at 2, termination at the last step
            rows_done[i, 2] = True
            rows_done[i, -1] = rows_term[i, -1] = True
        elif kind == 1:  # termination at 3, truncation at 5, the batch ends mid-trajectory
            rows_done[i, 3] = rows_term[i, 3] = True
            rows_done[i, 5] = True
        elif kind == 2:  # random ends, half of them terminations
            ends = torch.rand(shape[-2], generator=g) < 0.3
            rows_done[i] = ends
            rows_term[i] = ends & (torch.rand(shape[-2], generator=g) < 0.5)
        # kind 3: no end at all
    if rows_done.shape[0] == 1:  # a single row gets both a truncation and a termination
        rows_done[0, 2] = True
        rows_done[0, 5] = rows_term[0, 5] = True
    return done, terminated


def make_data(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    reward = torch.randn(shape, generator=g)
    value = torch.randn(shape, generator=g)
    next_value = torch.randn(shape, generator=g)
    done, terminated = flags_for(shape, seed)
    return reward, value, next_value, done, terminated


SHAPES = [(T, 1), (3, T, 1), (2, 3, T, 1)]
GAMMA_LMBDA = [(0.0, 0.5), (0.5, 0.0), (0.9, 1.0), (1.0, 0.9), (0.99, 0.95), (1.0, 1.0)]


def assert_close(ours, theirs):
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("gamma,lmbda", GAMMA_LMBDA)
class TestParity:
    """Every loop function against TorchRL 0.14 on the same inputs, atol 1e-5 (float32)."""

    def test_td0(self, shape, gamma, lmbda):
        r, v, nv, done, term = make_data(shape)
        assert_close(
            F.td0_return_estimate(gamma, nv, r, term), R.td0_return_estimate(gamma, nv, r, term)
        )
        assert_close(
            F.td0_advantage_estimate(gamma, v, nv, r, done, term),
            R.td0_advantage_estimate(gamma, v, nv, r, done, term),
        )

    def test_td1(self, shape, gamma, lmbda):
        r, v, nv, done, term = make_data(shape)
        assert_close(
            F.td1_return_estimate(gamma, nv, r, done, term),
            R.td1_return_estimate(gamma, nv, r, done, term),
        )
        assert_close(
            F.td1_advantage_estimate(gamma, v, nv, r, done, term),
            R.td1_advantage_estimate(gamma, v, nv, r, done, term),
        )

    def test_td_lambda(self, shape, gamma, lmbda):
        r, v, nv, done, term = make_data(shape)
        assert_close(
            F.td_lambda_return_estimate(gamma, lmbda, nv, r, done, term),
            R.td_lambda_return_estimate(gamma, lmbda, nv, r, done, term),
        )
        assert_close(
            F.td_lambda_advantage_estimate(gamma, lmbda, v, nv, r, done, term),
            R.td_lambda_advantage_estimate(gamma, lmbda, v, nv, r, done, term),
        )

    def test_gae(self, shape, gamma, lmbda):
        r, v, nv, done, term = make_data(shape)
        ours = F.generalized_advantage_estimate(gamma, lmbda, v, nv, r, done, term)
        theirs = R.generalized_advantage_estimate(gamma, lmbda, v, nv, r, done, term)
        assert_close(ours[0], theirs[0])
        assert_close(ours[1], theirs[1])

    def test_vectorised_twins(self, shape, gamma, lmbda):
        r, v, nv, done, term = make_data(shape)
        # TorchRL's vectorised versions crash when gamma*lambda == 0 (an empty geometric filter),
        # so for those its loop versions are the oracle.
        vec_ok = gamma * lmbda > 0
        gae = R.vec_generalized_advantage_estimate if vec_ok else R.generalized_advantage_estimate
        tdl = R.vec_td_lambda_return_estimate if vec_ok else R.td_lambda_return_estimate
        ours = F.vec_generalized_advantage_estimate(gamma, lmbda, v, nv, r, done, term)
        theirs = gae(gamma, lmbda, v, nv, r, done, term)
        assert_close(ours[0], theirs[0])
        assert_close(ours[1], theirs[1])
        assert_close(
            F.vec_td_lambda_return_estimate(gamma, lmbda, nv, r, done, term),
            tdl(gamma, lmbda, nv, r, done, term),
        )
        assert_close(
            F.vec_td_lambda_advantage_estimate(gamma, lmbda, v, nv, r, done, term),
            tdl(gamma, lmbda, nv, r, done, term) - v,
        )
        td1 = R.vec_td1_return_estimate if gamma > 0 else R.td1_return_estimate
        assert_close(
            F.vec_td1_return_estimate(gamma, nv, r, done, term), td1(gamma, nv, r, done, term)
        )
        assert_close(
            F.vec_td1_advantage_estimate(gamma, v, nv, r, done, term),
            td1(gamma, nv, r, done, term) - v,
        )

    @pytest.mark.parametrize("thresh", [(1.0, 1.0), (0.7, 2.0)])
    def test_vtrace(self, shape, gamma, lmbda, thresh):
        r, v, nv, done, term = make_data(shape)
        g = torch.Generator().manual_seed(1)
        log_pi, log_mu = 0.5 * torch.randn(2, *shape, generator=g)
        rho, c = thresh
        ours = F.vtrace_advantage_estimate(gamma, log_pi, log_mu, v, nv, r, done, term, rho, c)
        theirs = R.vtrace_advantage_estimate(gamma, log_pi, log_mu, v, nv, r, done, term, rho, c)
        assert_close(ours[0], theirs[0])
        assert_close(ours[1], theirs[1])

    def test_reward2go(self, shape, gamma, lmbda):
        r, _, _, done, _ = make_data(shape)
        ours = F.reward2go(r, done, gamma)
        if gamma == 0:  # TorchRL's reward2go crashes at gamma=0; the answer is the reward itself
            assert_close(ours, r)
        else:
            assert_close(ours, R.reward2go(r, done, gamma))


@pytest.mark.parametrize("time_dim", [-1, 1])
def test_parity_time_dim_last(time_dim):
    """[B, T] tensors with time at the last dim (time_dim=-1, or 1 counted from the front)."""
    r, v, nv, done, term = (x.squeeze(-1) for x in make_data((3, T, 1)))
    kw = {"time_dim": time_dim}
    for ours, theirs in [
        (
            F.generalized_advantage_estimate(0.9, 0.8, v, nv, r, done, term, **kw),
            R.generalized_advantage_estimate(0.9, 0.8, v, nv, r, done, term, **kw),
        ),
        (
            F.vec_generalized_advantage_estimate(0.9, 0.8, v, nv, r, done, term, **kw),
            R.vec_generalized_advantage_estimate(0.9, 0.8, v, nv, r, done, term, **kw),
        ),
        (
            F.vtrace_advantage_estimate(0.9, v, nv, v, nv, r, done, term, **kw),
            R.vtrace_advantage_estimate(0.9, v, nv, v, nv, r, done, term, **kw),
        ),
    ]:
        assert ours[0].shape == (3, T)
        assert_close(ours[0], theirs[0])
        assert_close(ours[1], theirs[1])
    pairs = [
        (
            F.td1_return_estimate(0.9, nv, r, done, term, **kw),
            R.td1_return_estimate(0.9, nv, r, done, term, **kw),
        ),
        (
            F.td_lambda_return_estimate(0.9, 0.8, nv, r, done, term, **kw),
            R.td_lambda_return_estimate(0.9, 0.8, nv, r, done, term, **kw),
        ),
        (
            F.vec_td_lambda_return_estimate(0.9, 0.8, nv, r, done, term, **kw),
            R.vec_td_lambda_return_estimate(0.9, 0.8, nv, r, done, term, **kw),
        ),
        (F.reward2go(r, done, 0.9, **kw), R.reward2go(r, done, 0.9, **kw)),
    ]
    for ours, theirs in pairs:
        assert ours.shape == (3, T)
        assert_close(ours, theirs)


def test_parity_one_dim_trajectory():
    """A bare [T] trajectory with time_dim=-1 comes back as [T]."""
    r, v, nv, done, term = (x.view(-1) for x in make_data((T, 1)))
    ours = F.td_lambda_return_estimate(0.9, 0.8, nv, r, done, term, time_dim=-1)
    theirs = R.td_lambda_return_estimate(0.9, 0.8, nv, r, done, term, time_dim=-1)
    assert ours.shape == (T,)
    assert_close(ours, theirs)


def test_parity_time_first():
    """[T, B, 1] data with time_dim=0."""
    r, v, nv, done, term = (x.transpose(0, 1) for x in make_data((3, T, 1)))
    ours = F.generalized_advantage_estimate(0.9, 0.8, v, nv, r, done, term, time_dim=0)
    theirs = R.generalized_advantage_estimate(0.9, 0.8, v, nv, r, done, term, time_dim=0)
    assert_close(ours[0], theirs[0])
    assert_close(ours[1], theirs[1])


def test_parity_tensor_gamma():
    """gamma and lambda as tensors: a 0-dim tensor, and one value per step (e.g. gamma**n)."""
    r, v, nv, done, term = make_data((3, T, 1))
    g = torch.Generator().manual_seed(2)
    gamma_t = 0.5 + 0.5 * torch.rand(3, T, 1, generator=g)
    lmbda_t = torch.rand(3, T, 1, generator=g)
    scalar = torch.tensor(0.9)
    assert_close(
        F.td_lambda_return_estimate(scalar, torch.tensor(0.7), nv, r, done, term),
        R.td_lambda_return_estimate(scalar, torch.tensor(0.7), nv, r, done, term),
    )
    assert_close(
        F.td_lambda_return_estimate(gamma_t, lmbda_t, nv, r, done, term),
        R.td_lambda_return_estimate(gamma_t, lmbda_t, nv, r, done, term),
    )
    assert_close(
        F.vec_td_lambda_return_estimate(gamma_t, 0.7, nv, r, done, term),
        R.vec_td_lambda_return_estimate(gamma_t, 0.7, nv, r, done, term),
    )
    assert_close(
        F.td1_return_estimate(gamma_t, nv, r, done, term),
        R.td1_return_estimate(gamma_t, nv, r, done, term),
    )
    for ours, theirs in zip(
        F.generalized_advantage_estimate(gamma_t, lmbda_t, v, nv, r, done, term),
        R.vec_generalized_advantage_estimate(gamma_t, lmbda_t, v, nv, r, done, term),
        strict=True,
    ):
        assert_close(ours, theirs)


def test_parity_rolling_gamma_false():
    """rolling_gamma=False: every return G_k keeps its own gamma_k (and lambda_k) throughout."""
    r, v, nv, done, term = make_data((3, T, 1))
    g = torch.Generator().manual_seed(3)
    gamma_t = 0.5 + 0.5 * torch.rand(3, T, 1, generator=g)
    lmbda_t = torch.rand(3, T, 1, generator=g)
    assert_close(
        F.td_lambda_return_estimate(gamma_t, lmbda_t, nv, r, done, term, rolling_gamma=False),
        R.td_lambda_return_estimate(gamma_t, lmbda_t, nv, r, done, term, rolling_gamma=False),
    )
    # TD(1) is TD(lambda=1). TorchRL's own td1 loop with rolling_gamma=False forgets to bootstrap
    # at the batch end; rlteach does bootstrap, like TorchRL's TD(lambda=1).
    ours = F.td1_return_estimate(gamma_t, nv, r, done, term, rolling_gamma=False)
    assert_close(
        ours, R.td_lambda_return_estimate(gamma_t, 1.0, nv, r, done, term, rolling_gamma=False)
    )
    theirs_td1 = R.td1_return_estimate(gamma_t, nv, r, done, term, rolling_gamma=False)
    # steps with no done from t to the batch end: their return runs off the end of the batch
    running_off_end = done.flip(-2).cumsum(-2).flip(-2) == 0
    assert running_off_end.any()
    assert not torch.allclose(ours[running_off_end], theirs_td1[running_off_end])
    assert_close(ours[~running_off_end], theirs_td1[~running_off_end])


# ---------------------------------------------------------------------------------------------
# Identities that teach.
# ---------------------------------------------------------------------------------------------


def consistent_data(shape, seed=0):
    """Random data where V(s'_t) = V(s_{t+1}) whenever step t does not end the trajectory, as in
    data collected from an environment (the state reached is the next state acted from)."""
    r, v, nv, done, term = make_data(shape, seed)
    nv = torch.where(done[..., :-1, :], nv[..., :-1, :], v[..., 1:, :])
    nv = torch.cat([nv, torch.randn_like(v[..., -1:, :])], dim=-2)
    return r, v, nv, done, term


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.99, 1.0])
def test_td_lambda_zero_is_td0(gamma):
    r, v, nv, done, term = make_data((3, T, 1))
    assert_close(
        F.td_lambda_return_estimate(gamma, 0.0, nv, r, done, term),
        F.td0_return_estimate(gamma, nv, r, term),
    )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.99, 1.0])
def test_td_lambda_one_is_td1(gamma):
    r, v, nv, done, term = make_data((3, T, 1))
    assert_close(
        F.td_lambda_return_estimate(gamma, 1.0, nv, r, done, term),
        F.td1_return_estimate(gamma, nv, r, done, term),
    )


@pytest.mark.parametrize("gamma,lmbda", GAMMA_LMBDA)
def test_gae_plus_value_is_td_lambda_on_consistent_data(gamma, lmbda):
    r, v, nv, done, term = consistent_data((2, 3, T, 1))
    advantage, _ = F.generalized_advantage_estimate(gamma, lmbda, v, nv, r, done, term)
    assert_close(advantage + v, F.td_lambda_return_estimate(gamma, lmbda, nv, r, done, term))


def test_gae_and_td_lambda_differ_when_next_values_are_inconsistent():
    """GAE's trace subtracts V(s_{t+1}) where TD(lambda) uses V(s'_t): the identity needs both
    to be the same number. With unrelated values they differ (here by a clear margin)."""
    r, v, nv, done, term = make_data((3, T, 1))
    advantage, _ = F.generalized_advantage_estimate(0.9, 0.8, v, nv, r, done, term)
    gap = (advantage + v - F.td_lambda_return_estimate(0.9, 0.8, nv, r, done, term)).abs().max()
    assert gap > 0.1


@pytest.mark.parametrize("thresh", [1.0, 5.0])
@pytest.mark.parametrize("gamma", [0.5, 0.99, 1.0])
def test_vtrace_on_policy_is_td1(thresh, gamma):
    """On-policy (pi = mu, every ratio 1) with rho_bar, c_bar >= 1: the V-trace target is the TD(1)
    return and its advantage the TD(1) advantage, exactly when V(s'_t) = V(s_{t+1}) inside a
    trajectory (TorchRL's done handling cuts the correction at every done, like TD(1))."""
    r, v, nv, done, term = consistent_data((2, 3, T, 1))
    log_p = torch.randn_like(r)
    adv, vs = F.vtrace_advantage_estimate(gamma, log_p, log_p, v, nv, r, done, term, thresh, thresh)
    assert_close(vs, F.td1_return_estimate(gamma, nv, r, done, term))
    assert_close(adv, F.td1_advantage_estimate(gamma, v, nv, r, done, term))
    # With inconsistent next values, (VT-3) corrects with V(s_{t+1}) and the identity breaks.
    r, v, nv, done, term = make_data((2, 3, T, 1))
    _, vs = F.vtrace_advantage_estimate(gamma, log_p, log_p, v, nv, r, done, term, thresh, thresh)
    assert not torch.allclose(vs, F.td1_return_estimate(gamma, nv, r, done, term), atol=1e-3)


def test_gae_gradient_is_the_discounted_trace():
    """dA_0/dr_t = (gamma*lambda)^t up to the first done, then 0: each reward reaches back only
    inside its trajectory."""
    gamma, lmbda = 0.9, 0.8
    r, v, nv, done, term = make_data((T, 1))
    done[:] = False
    term[:] = False
    done[4] = True
    r.requires_grad_(True)
    advantage, _ = F.generalized_advantage_estimate(gamma, lmbda, v, nv, r, done, term)
    (grad,) = torch.autograd.grad(advantage[0, 0], r)
    expected = torch.tensor([(gamma * lmbda) ** t if t <= 4 else 0.0 for t in range(T)])
    assert_close(grad.squeeze(-1), expected)
    # the vectorised twin and TorchRL give the same gradient
    for fn in (F.vec_generalized_advantage_estimate, R.generalized_advantage_estimate):
        (g2,) = torch.autograd.grad(fn(gamma, lmbda, v, nv, r, done, term)[0][0, 0], r)
        assert_close(g2, grad)


# ---------------------------------------------------------------------------------------------
# Loop and vectorised twin agree on long random data.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma,lmbda", [(0.99, 0.95), (1.0, 1.0), (0.9, 0.0), (0.0, 0.7)])
def test_loop_and_scan_twin_agree(gamma, lmbda):
    g = torch.Generator().manual_seed(4)
    shape = (4, 200, 1)
    r, v, nv = (0.1 * torch.randn(shape, generator=g) for _ in range(3))
    done = torch.rand(shape, generator=g) < 0.05
    term = done & (torch.rand(shape, generator=g) < 0.5)
    for loop, vec in zip(
        F.generalized_advantage_estimate(gamma, lmbda, v, nv, r, done, term),
        F.vec_generalized_advantage_estimate(gamma, lmbda, v, nv, r, done, term),
        strict=True,
    ):
        assert_close(vec, loop)
    assert_close(
        F.vec_td_lambda_return_estimate(gamma, lmbda, nv, r, done, term),
        F.td_lambda_return_estimate(gamma, lmbda, nv, r, done, term),
    )
    assert_close(
        F.vec_td1_return_estimate(gamma, nv, r, done, term),
        F.td1_return_estimate(gamma, nv, r, done, term),
    )
    gamma_t = gamma * torch.rand(shape, generator=g)
    assert_close(
        F.vec_td_lambda_return_estimate(gamma_t, lmbda, nv, r, done, term),
        F.td_lambda_return_estimate(gamma_t, lmbda, nv, r, done, term),
    )


@pytest.mark.parametrize("T_", [1, 2, 3, 5, 8, 13])
def test_scan_handles_every_length(T_):
    """The doubling scan must be right for lengths that are not powers of two."""
    g = torch.Generator().manual_seed(T_)
    a = torch.rand(2, T_, 1, generator=g)
    b = torch.randn(2, T_, 1, generator=g)
    x, expected = torch.zeros(2, 1), []
    for t in reversed(range(T_)):
        x = b[:, t] + a[:, t] * x
        expected.insert(0, x)
    assert_close(F._backward_linear_scan(a, b), torch.stack(expected, dim=-2))


# ---------------------------------------------------------------------------------------------
# Clear errors.
# ---------------------------------------------------------------------------------------------


def test_shape_mismatch_names_each_shape():
    r, v, nv, done, term = make_data((3, T, 1))
    with pytest.raises(ValueError, match=r"reward\[3, 8\].*unsqueeze"):
        F.generalized_advantage_estimate(0.9, 0.9, v, nv, r.squeeze(-1), done, term)
    with pytest.raises(ValueError, match=r"next_state_value\[3, 7, 1\]"):
        F.td_lambda_return_estimate(0.9, 0.9, nv[:, 1:], r, done, term)


def test_gamma_out_of_range():
    r, v, nv, done, term = make_data((T, 1))
    with pytest.raises(ValueError, match=r"gamma must satisfy 0.0 <= gamma <= 1.0, got 1.5"):
        F.td1_return_estimate(1.5, nv, r, done, term)
    with pytest.raises(ValueError, match=r"gamma must satisfy"):
        F.td_lambda_return_estimate(torch.full_like(r, -0.2), 0.9, nv, r, done, term)


def test_lmbda_out_of_range():
    r, v, nv, done, term = make_data((T, 1))
    with pytest.raises(ValueError, match=r"lmbda must satisfy 0.0 <= lmbda <= 1.0, got -0.1"):
        F.generalized_advantage_estimate(0.9, -0.1, v, nv, r, done, term)


def test_nan_reward():
    r, v, nv, done, term = make_data((T, 1))
    r[3] = math.nan
    with pytest.raises(ValueError, match=r"reward contains NaN or inf \(first at index \[3, 0\]\)"):
        F.generalized_advantage_estimate(0.9, 0.9, v, nv, r, done, term)
    with pytest.raises(ValueError, match=r"reward contains NaN"):
        F.vtrace_advantage_estimate(0.9, v, v, v, nv, r, done, term)


def test_flags_must_be_bool():
    r, v, nv, done, term = make_data((T, 1))
    with pytest.raises(ValueError, match=r"done must be a torch.bool tensor.*done.bool\(\)"):
        F.td_lambda_return_estimate(0.9, 0.9, nv, r, done.float(), term)


def test_bad_time_dim_and_rolling_gamma():
    r, v, nv, done, term = make_data((3, T, 1))
    with pytest.raises(ValueError, match=r"time_dim=5 does not fit tensors with 3 dims"):
        F.td_lambda_return_estimate(0.9, 0.9, nv, r, done, term, time_dim=5)
    with pytest.raises(ValueError, match=r"rolling_gamma=False only makes sense"):
        F.td1_return_estimate(0.9, nv, r, done, term, rolling_gamma=False)
    with pytest.raises(ValueError, match=r"need time_dim=-1"):
        F.generalized_advantage_estimate(
            0.9, 0.9, v.view(-1), nv.view(-1), r.view(-1), done.view(-1), term.view(-1)
        )


def test_inputs_untouched_by_a_failed_call():
    r, v, nv, done, term = make_data((T, 1))
    before = r.clone()
    with pytest.raises(ValueError):
        F.reward2go(r, done, 2.0)
    assert torch.equal(r, before)


# ---------------------------------------------------------------------------------------------
# Timing helper and the no-torchrl-at-run-time rule.
# ---------------------------------------------------------------------------------------------


def test_time_estimators_rows():
    from rlteach.value._timing import time_estimators

    rows = time_estimators(T=32, B=2, repeats=1)
    names = [row["name"] for row in rows]
    assert names[:2] == ["rlteach loop GAE", "rlteach scan GAE (vectorised)"]
    assert "torchrl vectorised GAE" in names
    assert all(row["seconds"] > 0 for row in rows)
    reference = next(row for row in rows if row["name"] == "torchrl vectorised GAE")
    assert reference["ratio_vs_torchrl"] == 1.0


def test_rlteach_value_does_not_import_torchrl():
    import subprocess
    import sys

    code = "import sys, rlteach.value; print('torchrl' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "fn",
    [F.td1_return_estimate, lambda *a: F.td_lambda_return_estimate(0.9, *a)],
    ids=["td1", "td_lambda"],
)
def test_terminated_without_done_is_refused(fn):
    # TorchRL silently gives different TD(1) numbers from its loop and its TD(λ=1) on such data;
    # an episode that terminates is over, so rlteach refuses the inconsistency instead.
    next_value, reward = torch.zeros(3, 1), torch.ones(3, 1)
    done = torch.tensor([[False], [False], [True]])
    terminated = torch.tensor([[False], [True], [True]])
    with pytest.raises(ValueError, match=r"terminated but not done \(first at index \[1, 0\]\)"):
        fn(0.5, next_value, reward, done, terminated)
