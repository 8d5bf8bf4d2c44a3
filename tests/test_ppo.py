"""PPOLoss, ClipPPOLoss, KLPENPPOLoss: TorchRL parity, hand-computed cases, errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictSequential,
)
from torch import distributions as D
from torch import nn

from rlteach.modules import make_categorical_actor, make_normal_actor, make_value_network
from rlteach.objectives import ClipPPOLoss, KLPENPPOLoss, PPOLoss

torchrl_ppo = pytest.importorskip("torchrl.objectives.ppo")

OBS, ACT, N_ACTIONS = 3, 2, 4
TOL = 1e-5


def make_nets(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "categorical":
        actor = make_categorical_actor(OBS, N_ACTIONS, num_cells=(16,))
    elif kind == "torchrl_tanh":  # rlteach's network, TorchRL's TanhNormal head
        net, head = make_normal_actor(OBS, ACT, num_cells=(16,), tanh=True).module
        actor = ProbabilisticTensorDictSequential(
            net,
            ProbabilisticTensorDictModule(
                in_keys=list(head.in_keys),
                out_keys=["action"],
                distribution_class=pytest.importorskip("torchrl.modules").TanhNormal,
                return_log_prob=True,
            ),
        )
    else:
        actor = make_normal_actor(OBS, ACT, num_cells=(16,), tanh=(kind == "tanh"))
    critic = make_value_network(OBS, num_cells=(16,))
    return actor, critic


def make_batch(actor, batch_shape, seed: int = 1, with_advantage: bool = False):
    """A batch collected by a policy *near* the actor: log π_old and dist params perturbed."""
    torch.manual_seed(seed)
    td = TensorDict(
        {
            "observation": torch.randn(*batch_shape, OBS),
            "next": {
                "observation": torch.randn(*batch_shape, OBS),
                "reward": torch.randn(*batch_shape, 1),
                "done": torch.rand(*batch_shape, 1) < 0.2,
            },
        },
        batch_size=batch_shape,
    )
    td["next", "terminated"] = td["next", "done"] & (torch.rand(*batch_shape, 1) < 0.5)
    with torch.no_grad():
        actor(td)
    # make the old policy differ so ratios spread across the clip range
    td["action_log_prob"] = td["action_log_prob"] + 0.3 * torch.randn(batch_shape)
    for key in ("logits", "loc"):
        if key in td.keys():
            td[key] = td[key] + 0.2 * torch.randn_like(td[key])
    if with_advantage:
        td["state_value"] = torch.randn(*batch_shape, 1)  # else the estimator writes it
        td["advantage"] = torch.randn(*batch_shape, 1)
        td["value_target"] = torch.randn(*batch_shape, 1)
    return td


def run_both(cls_ours, cls_theirs, kind, batch_shape, kwargs, *, with_advantage=False, seed=7):
    """Same weights, same batch, same RNG seed before forward; return outputs and grads."""
    actor, critic = make_nets(kind)
    td = make_batch(actor, batch_shape, with_advantage=with_advantage)
    results = []
    for cls in (cls_ours, cls_theirs):
        a, c = copy.deepcopy(actor), copy.deepcopy(critic)
        loss = cls(a, c, **kwargs)
        torch.manual_seed(seed)
        out = loss(td.clone())
        total = sum(v.sum() for k, v in out.items() if k.startswith("loss_"))
        total.backward()
        grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                 for p in list(a.parameters()) + list(c.parameters())]
        results.append((out, grads, loss))
    return results


def assert_parity(ours, theirs, *, skip=()):
    out_o, grads_o, _ = ours
    out_t, grads_t, _ = theirs
    keys_o = set(out_o.keys())
    keys_t = set(out_t.keys())
    assert keys_o == keys_t, (keys_o, keys_t)
    for k in keys_t:
        if k in skip:
            continue
        a, b = out_o[k], out_t[k]
        assert a.shape == b.shape, (k, a.shape, b.shape)
        torch.testing.assert_close(a.detach(), b.detach(), atol=TOL, rtol=TOL, msg=k)
    for go, gt in zip(grads_o, grads_t, strict=True):
        torch.testing.assert_close(go, gt, atol=TOL, rtol=TOL)


# --------------------------------------------------------------------------- parity

CLIP_OPTIONS = [
    {},
    {"clip_epsilon": 0.1, "entropy_coeff": 0.05, "critic_coeff": 0.5, "loss_critic_type": "l2"},
    {"clip_epsilon": (0.1, 0.3), "loss_critic_type": "l1", "clip_value": 0.3},
    {"clip_value": True, "normalize_advantage": True},
    {"entropy_bonus": False, "critic_coeff": 0.0},
    {"separate_losses": True, "log_explained_variance": False},
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["categorical", "normal", "tanh"])
@pytest.mark.parametrize("batch_shape", [(16,), (4, 5)])
def test_clip_ppo_parity(kind, batch_shape, reduction):
    # The tanh-Gaussian has no closed-form entropy: both losses draw samples_mc_entropy
    # reparameterised samples from the same distribution class after the same manual_seed,
    # and nothing else consumes random numbers in forward, so the draws are identical.
    for i, options in enumerate(CLIP_OPTIONS):
        kwargs = dict(options, reduction=reduction)
        if kind == "tanh":
            kwargs["samples_mc_entropy"] = 3
        res = run_both(ClipPPOLoss, torchrl_ppo.ClipPPOLoss, kind, batch_shape, kwargs,
                       with_advantage=(i % 2 == 1))
        assert_parity(*res)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("kind", ["categorical", "normal"])
def test_ppo_parity(kind, reduction):
    for options in [
        {"entropy_coeff": 0.05, "critic_coeff": 0.5, "loss_critic_type": "l2"},
        {"clip_value": 0.2, "normalize_advantage": True},
    ]:
        for shape in [(16,), (4, 5)]:
            res = run_both(PPOLoss, torchrl_ppo.PPOLoss, kind, shape,
                           dict(options, reduction=reduction))
            assert_parity(*res)


@pytest.mark.parametrize("kind", ["categorical", "normal", "torchrl_tanh"])
@pytest.mark.parametrize("batch_shape", [(16,), (4, 5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_klpen_parity(kind, batch_shape, reduction):
    # Categorical and Normal have closed-form KLs, and so have tanh-Gaussians (a bijection keeps
    # KL). TorchRL resolves that for its own TanhNormal (a TransformedDistribution) only, so the
    # tanh case runs with TorchRL's head; rlteach's TanhNormal is tested against the closed form
    # in test_klpen_tanh_normal_kl_is_closed_form_and_seed_independent.
    # TorchRL's gradient uses the *updated* β (see KLPENPPOLoss doc): beta_update_in_graph=True.
    for dtarg in (1e-4, 10.0, 0.01):  # β goes up, down, and (at least once) somewhere
        kwargs = {"dtarg": dtarg, "beta": 0.7, "samples_mc_kl": 2, "reduction": reduction}
        if kind == "torchrl_tanh":
            kwargs["samples_mc_entropy"] = 2
        ours, theirs = run_both(
            lambda *a, **k: KLPENPPOLoss(*a, beta_update_in_graph=True, **k),
            torchrl_ppo.KLPENPPOLoss, kind, batch_shape, kwargs,
        )
        assert_parity(ours, theirs)
        torch.testing.assert_close(ours[2].beta, theirs[2].beta)


def test_klpen_default_gradient_uses_current_beta():
    """Paper semantics: value and gradient of −β·KL both use the β in force for this batch."""
    actor, critic = make_nets("categorical")
    td = make_batch(actor, (16,), with_advantage=True)
    grads = []
    for in_graph in (False, True):
        a = copy.deepcopy(actor)
        loss = KLPENPPOLoss(a, None, critic_coeff=None, dtarg=1e-6, beta=1.0,
                            entropy_bonus=False, beta_update_in_graph=in_graph)
        out = loss(td.clone())
        assert loss.beta.item() == 2.0  # went up in both
        out["loss_objective"].backward()
        grads.append([p.grad.clone() for p in a.parameters()])
    # the two gradients differ by exactly one extra β·∇KL (β_new − β_old = 1)
    a = copy.deepcopy(actor)
    ref = KLPENPPOLoss(a, None, critic_coeff=None, dtarg=1e-6, beta=1.0, entropy_bonus=False)
    old_dist = ref._dist_module.get_dist(td)
    kl = D.kl_divergence(old_dist, a.get_dist(td)).mean()
    kl.backward()
    for g_paper, g_trl, g_kl in zip(*grads, [p.grad for p in a.parameters()], strict=True):
        torch.testing.assert_close(g_trl - g_paper, g_kl, atol=1e-6, rtol=1e-5)


def test_parity_advantage_from_estimator_and_set_keys():
    actor, critic = make_nets("categorical")
    td = make_batch(actor, (4, 5))
    td.rename_key_("action_log_prob", "lp_old")
    outs = []
    for cls in (ClipPPOLoss, torchrl_ppo.ClipPPOLoss):
        loss = cls(copy.deepcopy(actor), copy.deepcopy(critic))
        loss.set_keys(sample_log_prob="lp_old")
        loss.make_value_estimator("gae" if cls is ClipPPOLoss else
                                  torchrl_ppo.ValueEstimators.GAE, gamma=0.9, lmbda=0.8)
        outs.append(loss(td.clone()))
    for k in outs[1].keys():
        torch.testing.assert_close(outs[0][k], outs[1][k], atol=TOL, rtol=TOL)
    assert "advantage" not in td.keys()  # the caller's batch is not written to


# --------------------------------------------------------------------------- hand-computed


class FixedLogProb(nn.Module):
    """Logits are a learnable per-sample table, so log π_θ(a_i) is set by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, obs):
        return self.logits.expand(obs.shape[0], -1) if self.logits.ndim == 1 else self.logits


def tabular_actor(logits):
    net = TensorDictModule(FixedLogProb(logits), in_keys=["observation"], out_keys=["logits"])
    head = ProbabilisticTensorDictModule(
        in_keys=["logits"], out_keys=["action"], distribution_class=D.Categorical,
        return_log_prob=True,
    )
    return ProbabilisticTensorDictSequential(net, head)


def test_clip_hand_computed_which_samples_carry_gradient():
    # Two actions; sample i takes action 0 with π_θ(0) = 0.5 (logits 0, 0) so log π = log 0.5.
    # Old log-probs set the ratios r = 0.5 / π_old: 1.1 (inside), 1.5 (above), 0.6 (below).
    ratios = torch.tensor([1.1, 1.5, 0.6, 1.5, 0.6, 1.1])
    adv = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0]).unsqueeze(-1)
    n = len(ratios)
    actor = tabular_actor(torch.zeros(n, 2))
    td = TensorDict(
        {
            "observation": torch.zeros(n, 1),
            "action": torch.zeros(n, dtype=torch.long),
            "action_log_prob": math.log(0.5) - ratios.log(),
            "advantage": adv,
        },
        batch_size=[n],
    )
    loss = ClipPPOLoss(actor, None, clip_epsilon=0.2, entropy_bonus=False, reduction="none")
    out = loss(td)
    # min(r A, clip(r, 0.8, 1.2) A):  A>0: 1.1, min(1.5,1.2)=1.2, 0.6 ; A<0: -1.5, -0.8, -1.1
    expected = -torch.tensor([1.1, 1.2, 0.6, -1.5, -0.8, -1.1])
    torch.testing.assert_close(out["loss_objective"], expected)
    # clipped log-ratios: every sample with r = 1.5 or 0.6 (4 of 6)
    torch.testing.assert_close(out["clip_fraction"], torch.tensor(4 / 6))
    out["loss_objective"].sum().backward()
    g = actor.module[0].module.logits.grad[:, 0]
    # zero exactly where the clip binds: (r=1.5, A>0) and (r=0.6, A<0)
    assert g[1] == 0 and g[4] == 0
    # elsewhere d(-r A)/d logit_0 = -A r (1 - π(0)) = -A r / 2
    for i in (0, 2, 3, 5):
        torch.testing.assert_close(g[i], -adv[i, 0] * ratios[i] * 0.5)


@pytest.mark.parametrize("dtarg, factor", [(0.001, 2.0), (10.0, 0.5), (None, 1.0)])
def test_klpen_beta_moves(dtarg, factor):
    # π_old = (0.5, 0.5), π_θ = softmax(1, 0): KL = sum π_old log(π_old/π_θ), by hand below
    p = torch.softmax(torch.tensor([1.0, 0.0]), -1)
    kl = (0.5 * (math.log(0.5) - p.log())).sum().item()
    if dtarg is None:
        dtarg = kl  # inside [dtarg/1.5, 1.5 dtarg]: β stays
    actor = tabular_actor(torch.tensor([1.0, 0.0]))
    td = TensorDict(
        {
            "observation": torch.zeros(3, 1),
            "action": torch.tensor([0, 1, 0]),
            "action_log_prob": torch.full((3,), math.log(0.5)),
            "logits": torch.zeros(3, 2),
            "advantage": torch.ones(3, 1),
        },
        batch_size=[3],
    )
    loss = KLPENPPOLoss(actor, None, dtarg=dtarg, beta=0.5, entropy_bonus=False)
    out = loss(td)
    torch.testing.assert_close(out["kl"], torch.full((3, 1), kl))
    ratio = (p / 0.5)[td["action"]]
    torch.testing.assert_close(out["loss_objective"], -(ratio - 0.5 * kl).mean())
    assert loss.beta.item() == pytest.approx(0.5 * factor)
    loss.reset()
    assert loss.beta.item() == 0.5


# --------------------------------------------------------------------------- errors


def test_missing_log_prob_names_key_and_set_keys():
    actor, critic = make_nets("categorical")
    td = make_batch(actor, (8,), with_advantage=True)
    del td["action_log_prob"]
    for loss in (ClipPPOLoss(actor, critic), KLPENPPOLoss(actor, critic)):
        before = [p.clone() for p in loss.parameters()] + [b.clone() for b in loss.buffers()]
        with pytest.raises(KeyError, match=r"action_log_prob.*set_keys\(sample_log_prob="):
            loss(td)
        after = list(loss.parameters()) + list(loss.buffers())
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_klpen_missing_dist_params_leaves_beta():
    actor, critic = make_nets("categorical")
    td = make_batch(actor, (8,), with_advantage=True)
    del td["logits"]
    loss = KLPENPPOLoss(actor, critic, dtarg=1e-8)
    with pytest.raises(KeyError, match="logits"):
        loss(td)
    assert loss.beta.item() == 1.0


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (ClipPPOLoss, {"clip_epsilon": 0.0}, "clip_epsilon"),
        (ClipPPOLoss, {"clip_epsilon": -0.1}, "clip_epsilon"),
        (ClipPPOLoss, {"clip_epsilon": (0.2, 0.0)}, "clip_epsilon"),
        (ClipPPOLoss, {"clip_epsilon": (0.2, 0.3), "clip_value": True}, "asymmetric"),
        (KLPENPPOLoss, {"increment": 0.9}, "increment must be >= 1"),
        (KLPENPPOLoss, {"decrement": 1.1}, "decrement must be <= 1"),
        (PPOLoss, {"loss_critic_type": "l3"}, "loss_critic_type 'l3'"),
        (ClipPPOLoss, {"reduction": "avg"}, "reduction"),
    ],
)
def test_bad_arguments(cls, kwargs, match):
    actor, critic = make_nets("categorical")
    before = [p.clone() for p in list(actor.parameters()) + list(critic.parameters())]
    with pytest.raises(ValueError, match=match):
        cls(actor, critic, **kwargs)
    after = list(actor.parameters()) + list(critic.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_no_critic_and_no_advantage_is_refused():
    actor, _ = make_nets("categorical")
    td = make_batch(actor, (8,))
    with pytest.raises(RuntimeError, match="no critic_network"):
        ClipPPOLoss(actor, None)(td)


def test_out_keys_match_forward():
    actor, critic = make_nets("categorical")
    td = make_batch(actor, (8,))
    for loss in (PPOLoss(actor, critic, clip_value=0.1), ClipPPOLoss(actor, critic),
                 KLPENPPOLoss(actor, critic, entropy_bonus=False)):
        assert set(loss.out_keys) == set(loss(td).keys())


@pytest.mark.parametrize("separate_losses", [False, True])
def test_shared_trunk_parity(separate_losses):
    """A trunk shared by actor and critic: separate_losses stops the critic's gradient to it."""
    torch.manual_seed(0)
    trunk = TensorDictModule(nn.Sequential(nn.Linear(OBS, 8), nn.Tanh()),
                             in_keys=["observation"], out_keys=["hidden"])
    actor = ProbabilisticTensorDictSequential(
        trunk,
        TensorDictModule(nn.Linear(8, N_ACTIONS), in_keys=["hidden"], out_keys=["logits"]),
        ProbabilisticTensorDictModule(in_keys=["logits"], out_keys=["action"],
                                      distribution_class=D.Categorical, return_log_prob=True),
    )
    critic = TensorDictSequential(
        trunk, TensorDictModule(nn.Linear(8, 1), in_keys=["hidden"], out_keys=["state_value"])
    )
    td = make_batch(actor, (12,), with_advantage=True)
    grads = []
    for cls in (ClipPPOLoss, torchrl_ppo.ClipPPOLoss):
        a, c = copy.deepcopy((actor, critic))
        loss = cls(a, c, separate_losses=separate_losses)
        loss(td.clone())["loss_critic"].backward()
        trunk_grad = a.module[0].module[0].weight.grad
        grads.append(torch.zeros(8, OBS) if trunk_grad is None else trunk_grad)
    torch.testing.assert_close(grads[0], grads[1], atol=TOL, rtol=TOL)
    assert (grads[0].abs().sum() == 0) == separate_losses


@pytest.mark.parametrize("n, advantage, expected", [
    (1, [3.0], [3.0]),  # a single element is left as it is
    (3, [2.0, 2.0, 2.0], [0.0, 0.0, 0.0]),  # std 0 floored at 1e-6: (A - mean) / 1e-6 = 0
    (3, [1.0, 2.0, 6.0], [-0.7559289, -0.3779645, 1.1338934]),  # unbiased std = sqrt(7)
])
def test_normalize_advantage_by_hand(n, advantage, expected):
    actor = tabular_actor(torch.zeros(2))
    td = TensorDict(
        {
            "observation": torch.zeros(n, 1),
            "action": torch.zeros(n, dtype=torch.long),
            "action_log_prob": torch.full((n,), math.log(0.5)),  # ratio 1
            "advantage": torch.tensor(advantage).unsqueeze(-1),
        },
        batch_size=[n],
    )
    loss = PPOLoss(actor, None, normalize_advantage=True, entropy_bonus=False, reduction="none")
    torch.testing.assert_close(loss(td)["loss_objective"], -torch.tensor(expected))


def test_in_keys_match_torchrl():
    actor, critic = make_nets("normal")
    for ours, theirs in ((ClipPPOLoss, torchrl_ppo.ClipPPOLoss),
                         (KLPENPPOLoss, torchrl_ppo.KLPENPPOLoss)):
        keys = ours(actor, critic).in_keys
        assert len(keys) == len(set(keys))
        assert set(keys) == set(theirs(actor, critic).in_keys)


def test_flat_advantage_is_refused():
    actor, critic = make_nets("categorical")
    td = make_batch(actor, (8,), with_advantage=True)
    td["advantage"] = td["advantage"].squeeze(-1)
    loss = KLPENPPOLoss(actor, critic, dtarg=1e-8)
    with pytest.raises(ValueError, match=r"unsqueeze\(-1\)"):
        loss(td)
    assert loss.beta.item() == 1.0


# ------------------------------------------------------------- KL of tanh-Gaussians (issue 22)


def _tanh_klpen_batch(seed=1):
    actor, critic = make_nets("tanh")
    td = make_batch(actor, (16,), seed=seed, with_advantage=True)
    td["scale"] = td["scale"] * 1.3  # π_old differs from π_θ in both loc and scale
    return actor, critic, td


def test_klpen_tanh_normal_kl_is_closed_form_and_seed_independent():
    """Issue 22: KL[π_old ‖ π_θ] of two tanh-Gaussians is their Gaussians' KL (a bijection keeps
    KL); it used to be a one-draw Monte Carlo estimate that changed with the seed."""
    actor, critic, td = _tanh_klpen_batch()
    kls = []
    for seed in (0, 1, 2):
        loss = KLPENPPOLoss(actor, critic, entropy_bonus=False)
        torch.manual_seed(seed)
        kls.append(loss(td.clone())["kl"])
    torch.testing.assert_close(kls[0], kls[1], rtol=0, atol=0)
    torch.testing.assert_close(kls[0], kls[2], rtol=0, atol=0)
    with torch.no_grad():
        new = actor(td.clone())
    old_normal = D.Independent(D.Normal(td["loc"], td["scale"]), 1)
    new_normal = D.Independent(D.Normal(new["loc"], new["scale"]), 1)
    # closed form of KL between diagonal Gaussians, by hand
    by_hand = (
        new["scale"].log() - td["scale"].log()
        + (td["scale"] ** 2 + (td["loc"] - new["loc"]) ** 2) / (2 * new["scale"] ** 2) - 0.5
    ).sum(-1, keepdim=True)
    torch.testing.assert_close(kls[0], by_hand, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(kls[0], D.kl_divergence(old_normal, new_normal).unsqueeze(-1))


def test_klpen_torchrl_tanh_normal_matches_torchrl():
    """With TorchRL's TanhNormal (a TransformedDistribution) both libraries use the closed form."""
    torchrl_modules = pytest.importorskip("torchrl.modules")
    actor, critic = make_nets("tanh")
    net, head = actor.module
    theirs_actor = ProbabilisticTensorDictSequential(
        net,
        ProbabilisticTensorDictModule(
            in_keys=list(head.in_keys),
            out_keys=["action"],
            distribution_class=torchrl_modules.TanhNormal,
            return_log_prob=True,
        ),
    )
    td = make_batch(theirs_actor, (16,), with_advantage=True)
    outs = []
    for cls in (KLPENPPOLoss, torchrl_ppo.KLPENPPOLoss):
        loss = cls(theirs_actor, critic, entropy_bonus=False, dtarg=10.0)
        outs.append(loss(td.clone()))
    torch.testing.assert_close(outs[0]["kl"], outs[1]["kl"], atol=TOL, rtol=TOL)
    torch.testing.assert_close(outs[0]["loss_objective"], outs[1]["loss_objective"])


@pytest.mark.parametrize("cls", [PPOLoss, ClipPPOLoss, KLPENPPOLoss])
def test_clip_value_without_state_value_names_the_key(cls):
    """Issue 22: clip_value needs V_old ("state_value") in the batch; without it the loss used to
    fail with TypeError (Tensor - NoneType). Now: a KeyError naming the key and set_keys, raised
    before anything changes (KLPEN's β included)."""
    actor, critic = make_nets("normal")
    td = make_batch(actor, (8,), with_advantage=True)
    del td["state_value"]
    loss = cls(actor, critic, clip_value=0.2, dtarg=1e-8) if cls is KLPENPPOLoss else cls(
        actor, critic, clip_value=0.2)
    before = [b.clone() for b in loss.buffers()]
    with pytest.raises(KeyError, match=r"'state_value'.*set_keys\(value="):
        loss(td)
    assert all(torch.equal(a, b) for a, b in zip(before, loss.buffers(), strict=True))


def test_schedulable_coefficients_assignable_from_a_float():
    """Issue 22: TorchRL lets a schedule write ``loss.entropy_coeff = 0.003`` (an in-place copy
    into the buffer, dtype and device kept); rlteach's buffers used to refuse a float."""
    actor, critic = make_nets("categorical")
    td = make_batch(actor, (8,), with_advantage=True)
    outs = []
    for cls in (ClipPPOLoss, torchrl_ppo.ClipPPOLoss):
        loss = cls(actor, critic, entropy_coeff=0.01, clip_epsilon=(0.2, 0.3))
        buffer = loss.entropy_coeff
        loss.entropy_coeff = 0.003
        loss.clip_epsilon_low = 0.1
        assert loss.entropy_coeff is buffer and loss.entropy_coeff.dtype == torch.float32
        torch.manual_seed(0)
        outs.append(loss(td.clone()))
    for key in ("loss_objective", "loss_entropy", "clip_fraction"):
        torch.testing.assert_close(outs[0][key], outs[1][key], atol=TOL, rtol=TOL, msg=key)
    klpen = KLPENPPOLoss(actor, critic)
    klpen.beta = 0.25
    assert isinstance(klpen.beta, torch.Tensor) and klpen.beta.item() == 0.25
