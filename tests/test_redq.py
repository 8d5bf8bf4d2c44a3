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
