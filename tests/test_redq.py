"""REDQLoss: agreement with TorchRL 0.14 (outputs and gradients), the split losses, bad input.

Randomness. REDQ draws twice per forward: the critic subset (``torch.randperm``) and the actions
at s and s' (one Gaussian draw of shape [2, B, A]). rlteach draws the same numbers in the same
order, and both losses are handed the *same* actor object (whose distribution is rlteach's
TanhNormal), so seeding torch's global generator before each call makes the comparison exact by
construction (same seed, same order of draws). The split-loss test uses a test double for the
sampler instead, because ``qvalue_loss``/``actor_loss`` draw different shapes than ``forward``.
"""

import pytest
import torch
from tensordict import TensorDict
from torchrl_nets import critics_reading, torchrl_tanh_actor

from rlteach.modules import make_normal_actor, make_state_action_value_network
from rlteach.objectives import REDQLoss

pytestmark = pytest.mark.filterwarnings("ignore:No target network updater")

torchrl_objectives = pytest.importorskip("torchrl.objectives")
torchrl_data = pytest.importorskip("torchrl.data")

A, D, B, N = 2, 3, 6, 4
TOL = {"atol": 1e-5, "rtol": 1e-5}


def _batch(seed=0, terminated_rows=(1,)):
    g = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(B, 1, dtype=torch.bool)
    terminated[list(terminated_rows)] = True
    return TensorDict(
        {
            "observation": torch.randn(B, D, generator=g),
            "action": torch.rand(B, A, generator=g) * 4 - 2,
            ("next", "observation"): torch.randn(B, D, generator=g),
            ("next", "reward"): torch.randn(B, 1, generator=g),
            ("next", "done"): terminated.clone(),
            ("next", "terminated"): terminated,
        },
        [B],
    )


def _spec():
    return torchrl_data.Bounded(-2 * torch.ones(A), 2 * torch.ones(A), (A,))


def _theirs_key(i, name):
    """TorchRL's stacked parameters of Linear i (the MLP interleaves activations: 0, 2, 4)."""
    return ("module", "layers", str(2 * i), name)


def _pair(**kwargs):
    torch.manual_seed(0)
    actor = make_normal_actor(D, A, (16,), low=-2.0, high=2.0)
    critics = [make_state_action_value_network(D, A, (16, 16)) for _ in range(N)]
    kwargs = {"num_qvalue_nets": N, "action_spec": _spec(), **kwargs}
    theirs = torchrl_objectives.REDQLoss(actor, critics, **kwargs)
    ours = REDQLoss(actor, critics, **kwargs)
    layers = ours.qvalue_network.fused.layers
    # move the online critics away from the targets (identically in both), so that a loss
    # reading the wrong copy would show
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            for name in ("weight", "bias"):
                noise = 0.1 * torch.randn(getattr(layer, name).shape, generator=g)
                getattr(layer, name).add_(noise)
                theirs.qvalue_network_params[_theirs_key(i, name)].data.add_(noise)
    return actor, ours, theirs


def _grads(actor, ours, theirs, out_ours, out_theirs):
    """Gradients of the summed losses, ours then theirs, for actor, critics and log alpha."""
    grads = {}
    for name, out, loss in (("ours", out_ours, ours), ("theirs", out_theirs, theirs)):
        actor.zero_grad()
        loss.zero_grad()
        total = sum(v.sum() for k, v in out.items() if k.startswith("loss_"))
        total.backward()
        g = {f"actor.{n}": p.grad.clone() for n, p in actor.named_parameters()}
        if loss.log_alpha.requires_grad:
            g["log_alpha"] = loss.log_alpha.grad.clone()
        for i in range(3):
            for pname in ("weight", "bias"):
                if name == "ours":
                    p = getattr(ours.qvalue_network.fused.layers[i], pname)
                else:
                    p = theirs.qvalue_network_params[_theirs_key(i, pname)]
                g[f"q{i}.{pname}"] = p.grad.clone()
        grads[name] = g
    return grads["ours"], grads["theirs"]


CASES = [
    {},
    {"sub_sample_len": 3},
    {"delay_qvalue": False},
    {"fixed_alpha": True, "alpha_init": 0.5},
    {"loss_function": "l2", "target_entropy": -0.5},
    {"reduction": "sum"},
    {"alpha_init": 20.0},  # above max_alpha: clamped value, straight-through gradient
    {"alpha_init": 0.3, "min_alpha": 0.01, "max_alpha": 2.0, "loss_function": "l1"},
]


@pytest.mark.parametrize("kwargs", CASES, ids=[str(c) for c in CASES])
def test_matches_torchrl_outputs_and_gradients(kwargs):
    actor, ours, theirs = _pair(**kwargs)
    td_ours, td_theirs = _batch(), _batch()
    torch.manual_seed(7)  # same seed, same order of draws: subset, then one [2, B, A] sample
    out_theirs = theirs(td_theirs)
    torch.manual_seed(7)
    out_ours = ours(td_ours)
    assert set(out_ours.keys()) == set(out_theirs.keys()) == set(REDQLoss.out_keys)
    for key in out_theirs.keys():
        torch.testing.assert_close(out_ours[key], out_theirs[key], **TOL, msg=key)
    torch.testing.assert_close(td_ours["td_error"], td_theirs["td_error"], **TOL)
    g_ours, g_theirs = _grads(actor, ours, theirs, out_ours, out_theirs)
    assert g_ours.keys() == g_theirs.keys()
    for key in g_theirs:
        torch.testing.assert_close(g_ours[key], g_theirs[key], **TOL, msg=key)


def test_matches_torchrl_with_reduction_none():
    actor, ours, theirs = _pair(reduction="none", scalar_output_mode="exclude")
    torch.manual_seed(3)
    out_theirs = theirs(_batch())
    torch.manual_seed(3)
    out_ours = ours(_batch())
    assert set(out_ours.keys()) == set(out_theirs.keys())
    assert out_ours["loss_qvalue"].shape == (N, B) and out_ours["loss_alpha"].shape == (2, B)
    for key in out_theirs.keys():
        torch.testing.assert_close(out_ours[key], out_theirs[key], **TOL, msg=key)


def test_in_keys_match_torchrl():
    _, ours, theirs = _pair()
    assert set(ours.in_keys) == set(theirs.in_keys)


def test_subset_draw_order_matters():
    """A different seed draws another subset or other actions: the comparison above can fail."""
    _, ours, theirs = _pair()
    torch.manual_seed(7)
    a = theirs(_batch())["target_value"]
    torch.manual_seed(8)
    b = ours(_batch())["target_value"]
    assert (a - b).abs().max() > 1e-3


class _FixedSampler:
    """Test double for the policy sample: a deterministic action and log-prob per observation.

    The action still depends on the actor's loc (so the actor gets a gradient); no random
    number is drawn, so forward and the split losses see identical actions.
    """

    def __init__(self, loss):
        self.loss = loss

    def __call__(self, actor_td):
        dist = self.loss.actor_network.get_dist(actor_td)
        action = dist.deterministic_sample
        log_prob = -actor_td["observation"].pow(2).sum(-1) + dist.loc.sum(-1)
        return action, log_prob


def test_split_losses_equal_forward_with_a_fixed_sampler():
    actor, ours, _ = _pair()
    ours._policy_sample = _FixedSampler(ours)
    td = _batch()
    torch.manual_seed(5)
    out = ours(td)
    torch.manual_seed(5)  # the subset is the first draw in both
    loss_q, meta = ours.qvalue_loss(td)
    loss_actor, loss_alpha, meta_actor = ours.actor_loss(td)
    torch.testing.assert_close(loss_q, out["loss_qvalue"])
    torch.testing.assert_close(meta["target_value"], out["target_value"])
    torch.testing.assert_close(loss_actor, out["loss_actor"])
    torch.testing.assert_close(meta_actor["log_prob"], out["action_log_prob_actor"])
    # the split temperature loss averages the current states only (the paper), forward both
    expected = -ours.alpha * (meta_actor["log_prob"] + ours.target_entropy)
    torch.testing.assert_close(loss_alpha, expected.mean())


def test_temperature_moves_towards_the_target_entropy():
    """(REDQ-5): log pi + target_entropy > 0 (entropy too low) makes the gradient step raise alpha."""
    _, ours, _ = _pair(target_entropy=10.0)  # far above any reachable entropy of 2 dims
    _, _, meta = ours.actor_loss(_batch())
    loss = ours._alpha_loss(meta["log_prob"]).mean()
    loss.backward()
    assert ours.log_alpha.grad < 0  # descent increases log alpha
    torch.testing.assert_close(ours.log_alpha.grad, -(meta["log_prob"] + 10.0).mean() * ours.alpha)


def test_target_entropy_auto_is_minus_action_dim():
    _, ours, _ = _pair()
    assert ours.target_entropy.item() == -A


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (
            {"sub_sample_len": N + 1},
            ValueError,
            "sub_sample_len=5 is larger than num_qvalue_nets=4",
        ),
        ({"sub_sample_len": 0}, ValueError, "sub_sample_len must be an integer >= 1"),
        ({"num_qvalue_nets": 1, "sub_sample_len": 1}, ValueError, "num_qvalue_nets must be"),
        ({"gamma": 0.9}, TypeError, "make_value_estimator"),
        ({"loss_function": "huber"}, ValueError, "loss_function"),
        ({"min_alpha": 2.0, "max_alpha": 1.0}, ValueError, "max_alpha"),
        ({"target_entropy": "max"}, ValueError, "target_entropy"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    actor = make_normal_actor(D, A, (8,))
    critic = make_state_action_value_network(D, A, (8,))
    kwargs = {"num_qvalue_nets": N, "action_spec": A, **kwargs}
    with pytest.raises(error, match=match):
        REDQLoss(actor, critic, **kwargs)


def test_target_entropy_auto_needs_the_action_dim():
    actor = make_normal_actor(D, A, (8,))
    with pytest.raises(ValueError, match="action dimension is unknown"):
        REDQLoss(actor, make_state_action_value_network(D, A, (8,)), num_qvalue_nets=N)


def test_bad_batches_are_refused_before_any_change():
    _, ours, _ = _pair()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    td = _batch()
    td["action"][2, 1] = 2.5  # outside the spec's [-2, 2]
    with pytest.raises(ValueError, match="outside the action spec"):
        ours(td)
    assert "td_error" not in td.keys()
    td = _batch().exclude(("next", "reward"))
    with pytest.raises(KeyError, match="set_keys"):
        ours(td)
    td = _batch()
    td["next", "observation"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ours(td)
    for k, v in ours.state_dict().items():
        torch.testing.assert_close(v, before[k])


class _PlainCritic(torch.nn.Module):
    """Not an rlteach MLP, so the ensemble keeps a list and loops (the unfused path)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(D + A, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
        )

    def forward(self, observation, action):
        return self.net(torch.cat([observation, action], -1))


def test_matches_torchrl_with_looped_critics():
    from tensordict.nn import TensorDictModule

    torch.manual_seed(0)
    actor = make_normal_actor(D, A, (16,), low=-2.0, high=2.0)
    critics = [
        TensorDictModule(_PlainCritic(), ["observation", "action"], ["state_action_value"])
        for _ in range(N)
    ]
    kwargs = {"num_qvalue_nets": N, "sub_sample_len": 3, "action_spec": _spec()}
    theirs = torchrl_objectives.REDQLoss(actor, critics, **kwargs)
    ours = REDQLoss(actor, critics, **kwargs)
    assert ours.qvalue_network.fused is None
    torch.manual_seed(2)
    out_theirs = theirs(_batch())
    torch.manual_seed(2)
    out_ours = ours(_batch())
    for key in out_theirs.keys():
        torch.testing.assert_close(out_ours[key], out_theirs[key], **TOL, msg=key)
    grads = {}
    for name, out in (("ours", out_ours), ("theirs", out_theirs)):
        actor.zero_grad()
        (out["loss_actor"] + out["loss_qvalue"]).backward()
        grads[name] = [p.grad.clone() for p in actor.parameters()]
    for a, b in zip(grads["ours"], grads["theirs"], strict=True):
        torch.testing.assert_close(a, b, **TOL)


def _time_batch(seed=0, T=3):
    """A [B, T] batch (time last), with one terminated step."""
    g = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(B, T, 1, dtype=torch.bool)
    terminated[1, -1] = True
    return TensorDict(
        {
            "observation": torch.randn(B, T, D, generator=g),
            "action": torch.rand(B, T, A, generator=g) * 4 - 2,
            ("next", "observation"): torch.randn(B, T, D, generator=g),
            ("next", "reward"): torch.randn(B, T, 1, generator=g),
            ("next", "done"): terminated.clone(),
            ("next", "terminated"): terminated,
        },
        [B, T],
    )


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_time_dimension_matches_torchrl_fused(reduction):
    """Issue 22: a [B, T] batch used to fail (log-probs reshaped to [2, B*T]; baddbmm on 4D)."""
    kwargs = {"reduction": reduction}
    if reduction == "none":
        kwargs["scalar_output_mode"] = "exclude"
    _, ours, theirs = _pair(**kwargs)
    assert ours.qvalue_network.fused is not None
    torch.manual_seed(4)
    out_theirs = theirs(_time_batch())
    torch.manual_seed(4)
    out_ours = ours(_time_batch())
    assert set(out_ours.keys()) == set(out_theirs.keys())
    for key in out_theirs.keys():
        assert out_ours[key].shape == out_theirs[key].shape, key
        torch.testing.assert_close(out_ours[key], out_theirs[key], **TOL, msg=key)


def test_time_dimension_matches_torchrl_with_torchrl_networks():
    """Issue 22: the same [B, T] batch with TorchRL's own actor and critic modules."""
    torchrl_modules = pytest.importorskip("torchrl.modules")

    torch.manual_seed(0)
    actor = torchrl_tanh_actor(D, A, _spec())
    critic = torchrl_modules.ValueOperator(_PlainCritic(), in_keys=["observation", "action"])
    critics = [critic] + [
        torchrl_modules.ValueOperator(_PlainCritic(), in_keys=["observation", "action"])
        for _ in range(N - 1)
    ]
    kwargs = {"num_qvalue_nets": N, "sub_sample_len": 2, "action_spec": _spec()}
    theirs = torchrl_objectives.REDQLoss(actor, critics, **kwargs)
    ours = REDQLoss(actor, critics, **kwargs)
    torch.manual_seed(6)
    out_theirs = theirs(_time_batch(seed=1))
    torch.manual_seed(6)
    out_ours = ours(_time_batch(seed=1))
    for key in out_theirs.keys():
        assert out_ours[key].shape == out_theirs[key].shape, key
        torch.testing.assert_close(out_ours[key], out_theirs[key], **TOL, msg=key)


def test_action_key_set_after_construction_matches_torchrl():
    """Issue 22: an actor writing "my_action" (its spec a Composite under that key), the key set
    afterwards with set_keys, TorchRL's order. Construction used to fail with KeyError: 'action'."""
    pytest.importorskip("torchrl.modules")
    torch.manual_seed(0)
    actor = torchrl_tanh_actor(D, A, _spec(), action_key="my_action")
    critics = critics_reading("my_action", D, A, n=N)
    theirs = torchrl_objectives.REDQLoss(actor, critics, num_qvalue_nets=N)
    theirs.set_keys(action="my_action")
    ours = REDQLoss(actor, critics, num_qvalue_nets=N)
    ours.set_keys(action="my_action")
    assert ours.target_entropy.item() == theirs.target_entropy.item() == -A
    td = _batch().rename_key_("action", "my_action")
    torch.manual_seed(3)
    out_theirs = theirs(td.clone())
    torch.manual_seed(3)
    out_ours = ours(td.clone())
    for key in out_theirs.keys():
        torch.testing.assert_close(out_ours[key], out_theirs[key], **TOL, msg=key)


# --------------------------------------------------------------------------------------------
# REDQ with N = M = 2 against SAC (version 2, two critics): the exact correspondence that
# chapter 12 states. Both losses get the same actor, the same two critics (online and target),
# the same batch and the same random draws; the draws are aligned by construction (same seed,
# same shapes, same order), so every relation below is exact up to float rounding.
#
#   target y          equal
#   loss_qvalue       SAC = N x REDQ with reduction "mean" (SAC sums the critics, REDQ averages),
#                     equal with reduction "sum"; the critics' gradients likewise
#   loss_actor        REDQ = SAC - 1/2 mean_b |Q_1(s, a~) - Q_2(s, a~)| (mean of two minus their
#                     minimum), and the actor's gradients differ by the gradient of that term:
#                     equal only where the two critics agree
#   loss_alpha        SAC: -log(alpha) m, REDQ: -alpha m with m = mean(log pi + H_bar); the
#                     gradient in log(alpha) is alpha times SAC's (equal at alpha = 1)
# --------------------------------------------------------------------------------------------

REL = {"atol": 1e-6, "rtol": 1e-5}  # float32 sums of a few dozen terms of order 1


def _redq_and_sac(alpha_init=0.5, reduction=None, identical_critics=False, seed=0):
    from rlteach.objectives import SACLoss

    torch.manual_seed(seed)
    actor = make_normal_actor(D, A, (16,), low=-2.0, high=2.0)
    critics = [make_state_action_value_network(D, A, (16, 16)) for _ in range(2)]
    if identical_critics:
        critics[1].load_state_dict(critics[0].state_dict())
    common = {"loss_function": "l2", "action_spec": A, "alpha_init": alpha_init}
    if reduction is not None:
        common["reduction"] = reduction
    redq = REDQLoss(actor, critics, num_qvalue_nets=2, sub_sample_len=2, **common)
    sac = SACLoss(actor, critics, num_qvalue_nets=2, **common)
    # move the online critics away from their targets, the same noise in both losses
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for (name_r, p_r), (name_s, p_s) in zip(
            redq.qvalue_network.named_parameters(), sac.qvalue_network.named_parameters(),
            strict=True,
        ):
            assert name_r == name_s
            noise = 0.1 * torch.randn(p_r.shape, generator=g)
            if identical_critics:  # the same noise for both members of the stack
                noise = noise[:1].expand_as(noise)
            p_r.add_(noise)
            p_s.add_(noise)
    for lm in (redq, sac):
        lm.make_value_estimator("td0", gamma=0.9)
    return actor, redq, sac


def _run_both(actor, redq, sac, td, seed=7):
    """REDQ's split losses and SAC's forward on the same draws; gradients of each loss."""
    grads = {}
    torch.manual_seed(seed)
    loss_q_r, meta_q = redq.qvalue_loss(td.clone())  # draws: subset, a' [B, A]
    loss_pi_r, loss_a_r, meta_pi = redq.actor_loss(td.clone())  # draws: a~ [B, A]
    torch.manual_seed(seed)
    torch.randperm(2)  # SAC draws no subset: spend the same draw so that a' and a~ match
    td_sac = td.clone()
    out_s = sac(td_sac)  # draws: a' [B, A], then a~ [B, A]
    pairs = {
        "qvalue": (loss_q_r, out_s["loss_qvalue"], redq.qvalue_network, sac.qvalue_network),
        "actor": (loss_pi_r, out_s["loss_actor"], actor, actor),
        "alpha": (loss_a_r, out_s["loss_alpha"], redq.temperature, sac.temperature),
    }
    for name, (l_r, l_s, m_r, m_s) in pairs.items():
        g_r = torch.autograd.grad(l_r.sum(), list(m_r.parameters()), retain_graph=True)
        g_s = torch.autograd.grad(l_s.sum(), list(m_s.parameters()), retain_graph=True)
        grads[name] = (g_r, g_s)
    return {"q": loss_q_r, "pi": loss_pi_r, "alpha": loss_a_r, **meta_q, **meta_pi}, out_s, td_sac, grads


def test_redq_n2_m2_target_equals_sac_and_critic_loss_is_half_of_sacs():
    actor, redq, sac = _redq_and_sac()
    r, s, td_sac, grads = _run_both(actor, redq, sac, _batch())
    # the same target: REDQ writes max_i (Q_i - y)^2, SAC max_i |Q_i - y|, on the same Q_i
    torch.testing.assert_close(r["td_error"], td_sac["td_error"] ** 2, **REL)
    # SAC sums the two critics' losses, REDQ averages them: a factor N = 2, value and gradient
    torch.testing.assert_close(s["loss_qvalue"], 2 * r["q"], **REL)
    for g_r, g_s in zip(*grads["qvalue"], strict=True):
        torch.testing.assert_close(g_s, 2 * g_r, **REL)


def test_redq_n2_m2_critic_loss_equals_sacs_with_reduction_sum():
    actor, redq, sac = _redq_and_sac(reduction="sum")
    r, s, _, grads = _run_both(actor, redq, sac, _batch())
    torch.testing.assert_close(s["loss_qvalue"], r["q"], **REL)
    for g_r, g_s in zip(*grads["qvalue"], strict=True):
        torch.testing.assert_close(g_s, g_r, **REL)


def test_redq_n2_actor_loss_is_sacs_minus_half_the_critics_disagreement():
    from rlteach.objectives._actions import rsample_and_log_prob

    actor, redq, sac = _redq_and_sac()
    td = _batch()
    r, s, _, grads = _run_both(actor, redq, sac, td, seed=7)
    # the same a~ again (third draw after the seed), now to measure the critics' disagreement
    torch.manual_seed(7)
    torch.randperm(2)
    rsample_and_log_prob(actor, td.get("next").select("observation"))  # a'
    a_tilde, _ = rsample_and_log_prob(actor, td.select("observation"))  # a~, with gradient
    q = redq.qvalue_network(td["observation"], a_tilde, detach_params=True).squeeze(-1)  # [2, B]
    half_gap = 0.5 * (q[0] - q[1]).abs().mean()  # mean of two minus their minimum
    assert half_gap > 1e-3  # the critics disagree, so the relation is not 0 = 0
    torch.testing.assert_close(r["pi"], s["loss_actor"] - half_gap, **REL)
    g_gap = torch.autograd.grad(half_gap, list(actor.parameters()), allow_unused=True)
    g_r, g_s = grads["actor"]
    differs = False
    for gr, gs, gg in zip(g_r, g_s, g_gap, strict=True):
        gg = torch.zeros_like(gr) if gg is None else gg
        torch.testing.assert_close(gr, gs - gg, **REL)
        differs |= bool((gr - gs).abs().max() > 1e-4)
    assert differs  # the actor's gradients are not SAC's


def test_redq_n2_actor_loss_and_gradient_equal_sacs_when_the_critics_agree():
    actor, redq, sac = _redq_and_sac(identical_critics=True)
    r, s, _, grads = _run_both(actor, redq, sac, _batch())
    torch.testing.assert_close(r["pi"], s["loss_actor"], **REL)
    for g_r, g_s in zip(*grads["actor"], strict=True):
        torch.testing.assert_close(g_r, g_s, **REL)


@pytest.mark.parametrize("alpha_init", [0.5, 1.0, 2.0])
def test_redq_temperature_gradient_is_alpha_times_sacs(alpha_init):
    actor, redq, sac = _redq_and_sac(alpha_init=alpha_init)
    r, s, _, grads = _run_both(actor, redq, sac, _batch())
    m = (r["log_prob"] + redq.target_entropy).mean()  # the same a~ in both losses
    torch.testing.assert_close(s["entropy"], -r["log_prob"].mean(), **REL)
    alpha = torch.tensor(alpha_init)
    torch.testing.assert_close(s["loss_alpha"], -alpha.log() * m, **REL)
    torch.testing.assert_close(r["alpha"], -alpha * m, **REL)
    ((g_r,), (g_s,)) = grads["alpha"]
    torch.testing.assert_close(g_s, -m, **REL)
    torch.testing.assert_close(g_r, alpha * g_s, **REL)
    if alpha_init == 1.0:
        torch.testing.assert_close(g_r, g_s, **REL)


def test_redq_clamps_alpha_where_sac_does_not():
    """Below min_alpha (0.1 by default) REDQ's alpha is the bound, SAC's is alpha_init."""
    _, redq, sac = _redq_and_sac(alpha_init=0.05)
    torch.testing.assert_close(redq.alpha, torch.tensor(0.1))
    torch.testing.assert_close(sac.temperature.alpha, torch.tensor(0.05))
