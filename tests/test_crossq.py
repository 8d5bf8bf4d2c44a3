"""CrossQLoss: agreement with TorchRL 0.14 (outputs, gradients, batch statistics), the joint batch.

Randomness. CrossQ draws the next action a' ~ pi(.|s') for the target, then the actor's action
ã ~ pi(.|s). rlteach draws the same numbers in the same order, and both losses get the same actor
object (rlteach's TanhNormal), so seeding torch before each call makes the comparison exact by
construction (same seed, same order of draws). TorchRL scores a' by sample-then-log_prob (an
atanh round trip), rlteach by scoring the same Gaussian draw; they agree to float rounding away
from the saturated tails, which these small networks never reach.
"""

import copy

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl_nets import critics_reading, torchrl_tanh_actor

from rlteach.modules import (
    make_crossq_qvalue_network,
    make_normal_actor,
    make_state_action_value_network,
)
from rlteach.objectives import CrossQLoss

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:torchrl")

torchrl_objectives = pytest.importorskip("torchrl.objectives")
torchrl_data = pytest.importorskip("torchrl.data")

A, D, B = 2, 3, 8
TOL = {"atol": 1e-5, "rtol": 1e-5}


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(B, 1, dtype=torch.bool)
    terminated[2] = True
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


def _pair(num_qvalue_nets=2, warmup_steps=2, **kwargs):
    torch.manual_seed(0)
    actor = make_normal_actor(D, A, (16,), low=-2.0, high=2.0)
    critics = [
        make_crossq_qvalue_network(D, A, (16, 16), warmup_steps=warmup_steps, momentum=0.2)
        for _ in range(num_qvalue_nets)
    ]
    spec = torchrl_data.Bounded(-2 * torch.ones(A), 2 * torch.ones(A), (A,))
    kwargs = {"num_qvalue_nets": num_qvalue_nets, "action_spec": spec, **kwargs}
    theirs = torchrl_objectives.CrossQLoss(actor, critics, **kwargs)
    ours = CrossQLoss(actor, critics, **kwargs)
    return actor, ours, theirs


def _critic_tensors(ours, theirs, kind):
    """(name, ours, theirs) for every critic parameter (kind="param") or BRN buffer."""
    for i, member in enumerate(ours.qvalue_network.members):
        tensors = member.named_parameters() if kind == "param" else member.named_buffers()
        for name, tensor in tensors:
            key = ("module", *name.split("."))
            stacked = theirs.qvalue_network_params[key]  # [N, ...], member i at index i
            yield f"q{i}.{name}", tensor, (stacked, i)


CASES = [
    {},
    {"num_qvalue_nets": 3, "loss_function": "l2"},
    {"fixed_alpha": True, "alpha_init": 0.3},
    {"alpha_init": 5.0, "max_alpha": 2.0},  # clamped in place on first read
    {"reduction": "sum", "target_entropy": -0.7},
    {"warmup_steps": 0},  # renorm corrections from the first call
]


@pytest.mark.parametrize("kwargs", CASES, ids=[str(c) for c in CASES])
def test_matches_torchrl_outputs_gradients_and_statistics(kwargs):
    actor, ours, theirs = _pair(**kwargs)
    for call in range(4):  # through the warm-up of the critics' batch renormalisation
        td_ours, td_theirs = _batch(call), _batch(call)
        torch.manual_seed(10 + call)  # same seed, same order: a' then ã
        out_theirs = theirs(td_theirs)
        torch.manual_seed(10 + call)
        out_ours = ours(td_ours)
        assert set(out_ours.keys()) == set(out_theirs.keys())
        for key in out_theirs.keys():
            torch.testing.assert_close(out_ours[key], out_theirs[key], **TOL, msg=f"{key} {call}")
        torch.testing.assert_close(td_ours["td_error"], td_theirs["td_error"], **TOL)
        # the running statistics moved identically (joint batch, in training mode)
        for name, a, (b, i) in _critic_tensors(ours, theirs, "buffer"):
            torch.testing.assert_close(a, b[i], **TOL, msg=f"{name} after call {call}")
        assert ours.qvalue_network.training  # put back after the actor's eval-mode pass

    grads = {}
    for name, out, loss in (("ours", out_ours, ours), ("theirs", out_theirs, theirs)):
        actor.zero_grad()
        loss.zero_grad()
        sum(v for k, v in out.items() if k.startswith("loss_")).backward()
        g = {f"actor.{n}": p.grad.clone() for n, p in actor.named_parameters()}
        if loss.log_alpha.requires_grad:
            g["log_alpha"] = loss.log_alpha.grad.clone()
        grads[name] = g
    for name, a, (b, i) in _critic_tensors(ours, theirs, "param"):
        grads["ours"][name], grads["theirs"][name] = a.grad, b.grad[i]
    for key in grads["theirs"]:
        torch.testing.assert_close(grads["ours"][key], grads["theirs"][key], **TOL, msg=key)


def test_matches_torchrl_with_reduction_none():
    _, ours, theirs = _pair(reduction="none", scalar_output_mode="exclude")
    torch.manual_seed(1)
    out_theirs = theirs(_batch())
    torch.manual_seed(1)
    out_ours = ours(_batch())
    assert set(out_ours.keys()) == set(out_theirs.keys())
    assert out_ours["loss_qvalue"].shape == (B,)
    for key in out_theirs.keys():
        torch.testing.assert_close(out_ours[key], out_theirs[key], **TOL, msg=key)


def test_in_keys_match_torchrl():
    _, ours, theirs = _pair()
    assert set(ours.in_keys) == set(theirs.in_keys)


def test_no_target_network():
    _, ours, _ = _pair()
    assert ours.target_network_pairs() == []
    assert not any(name.startswith("target_") for name, _ in ours.named_modules())


def test_joint_batch_is_what_the_critics_normalise():
    """(CQ-1)-(CQ-2) by hand with one critic: the loss's TD error is |q - y| with q and q' from
    ONE call on [(s, a); (s', a')]. Evaluating (s, a) alone gives another q (other batch
    statistics), which is the inconsistency the joint batch removes."""
    torch.manual_seed(0)
    actor = make_normal_actor(D, A, (16,), low=-2.0, high=2.0)
    critic = make_crossq_qvalue_network(D, A, (16, 16), warmup_steps=0)
    loss = CrossQLoss(actor, [critic], num_qvalue_nets=1, action_spec=A)
    member = loss.qvalue_network.members[0]
    state = copy.deepcopy(member.state_dict())
    td = _batch()
    torch.manual_seed(3)
    loss(td)

    member.load_state_dict(state)  # replay the critic by hand from the same statistics
    torch.manual_seed(3)
    with torch.no_grad():
        dist = actor.get_dist(td["next"].select("observation"))
        a_next, logp_next = dist.rsample_and_log_prob()
        s_joint = torch.cat([td["observation"], td["next", "observation"]])
        q_joint = member(s_joint, torch.cat([td["action"], a_next])).squeeze(-1)
        q, q_next = q_joint[:B], q_joint[B:]
        not_term = (~td["next", "terminated"]).float().squeeze(-1)
        y = td["next", "reward"].squeeze(-1) + 0.99 * not_term * (q_next - 1.0 * logp_next)
        torch.testing.assert_close(td["td_error"], (q - y).abs(), **TOL)
        member.load_state_dict(state)
        q_alone = member(td["observation"], td["action"]).squeeze(-1)
    assert (q_alone - q).abs().max() > 1e-3


def test_without_batch_norm_joint_and_separate_agree():
    """With plain MLP critics the joint batch changes nothing: CrossQ is then SAC without targets."""
    torch.manual_seed(0)
    critic = make_state_action_value_network(D, A, (16,)).module
    td = _batch()
    x = torch.cat([td["observation"], td["next", "observation"]])
    a = torch.cat([td["action"], td["action"].flip(0)])
    torch.testing.assert_close(critic(x, a)[:B], critic(td["observation"], td["action"]))


def test_temperature_sign_and_auto_target_entropy():
    _, ours, _ = _pair(target_entropy="auto")
    assert ours.target_entropy.item() == -A
    _, meta = ours.actor_loss(_batch())
    loss = ours.alpha_loss(meta["log_prob"] * 0 + 5.0)  # log pi = 5 > -target: entropy too low
    loss.backward()
    assert ours.log_alpha.grad < 0  # gradient descent raises alpha


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"num_qvalue_nets": 0}, ValueError, "num_qvalue_nets"),
        ({"loss_function": "huber"}, ValueError, "loss_function"),
        ({"reduction": "avg"}, ValueError, "reduction"),
        ({"target_entropy": "max"}, ValueError, "target_entropy"),
        ({"alpha_init": 0.0}, ValueError, "alpha_init"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    actor = make_normal_actor(D, A, (8,))
    critic = make_crossq_qvalue_network(D, A, (8,))
    with pytest.raises(error, match=match):
        CrossQLoss(actor, critic, action_spec=A, **kwargs)


def test_bad_batches_are_refused_before_any_change():
    _, ours, _ = _pair()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    td = _batch()
    td["action"][0, 0] = -3.0
    with pytest.raises(ValueError, match="outside the action spec"):
        ours(td)
    with pytest.raises(KeyError, match="set_keys"):
        ours(_batch().exclude(("next", "terminated")))
    td = _batch()
    td["observation"][1, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        ours(td)
    for k, v in ours.state_dict().items():  # running statistics untouched
        torch.testing.assert_close(v, before[k])


def test_single_module_is_copied_into_independent_critics():
    actor = make_normal_actor(D, A, (8,))
    loss = CrossQLoss(actor, make_crossq_qvalue_network(D, A, (8,)), action_spec=A)
    w0, w1 = (m.layers[1].weight for m in loss.qvalue_network.members)
    assert not torch.equal(w0, w1)
    assert isinstance(loss.qvalue_network.members[0].layers[0], nn.Module)


def test_action_key_set_after_construction_matches_torchrl():
    """Issue 22: an actor writing "my_action" (its spec a Composite under that key), the key set
    afterwards with set_keys, TorchRL's order. Construction used to fail with KeyError: 'action'."""
    pytest.importorskip("torchrl.modules")
    torch.manual_seed(0)
    spec = torchrl_data.Bounded(-2 * torch.ones(A), 2 * torch.ones(A), (A,))
    actor = torchrl_tanh_actor(D, A, spec, action_key="my_action")
    critics = critics_reading("my_action", D, A, n=2)
    theirs = torchrl_objectives.CrossQLoss(actor, critics)
    theirs.set_keys(action="my_action")
    ours = CrossQLoss(actor, critics)
    ours.set_keys(action="my_action")
    assert ours.target_entropy.item() == theirs.target_entropy.item() == -A
    td = _batch().rename_key_("action", "my_action")
    torch.manual_seed(3)
    out_theirs = theirs(td.clone())
    torch.manual_seed(3)
    out_ours = ours(td.clone())
    for key in out_theirs.keys():
        torch.testing.assert_close(out_ours[key], out_theirs[key], **TOL, msg=key)


def _joint_and_separate(critic_factory):
    from rlteach.recipes.crossq import SeparateBatchesCrossQLoss

    torch.manual_seed(0)
    actor = make_normal_actor(D, A, (16,), low=-2.0, high=2.0)
    critics = [critic_factory() for _ in range(2)]
    joint = CrossQLoss(actor, critics, num_qvalue_nets=2, action_spec=A)
    separate = SeparateBatchesCrossQLoss(actor, critics, num_qvalue_nets=2, action_spec=A)
    separate.load_state_dict(joint.state_dict())
    for loss in (joint, separate):
        loss.make_value_estimator("td0", gamma=0.99)
    results = []
    for loss in (joint, separate):
        torch.manual_seed(5)  # the same a' ~ pi(.|s') for both
        value, meta = loss.qvalue_loss(_batch())
        grads = torch.autograd.grad(value, list(loss.qvalue_network.parameters()))
        results.append((value, meta["td_error"], grads, loss))
    return results


def test_separate_batches_ablation_equals_the_joint_pass_without_batch_norm():
    """The ablation only changes which statistics batch normalisation reads: with plain MLP
    critics the separate passes give CrossQ's loss, TD errors and gradients exactly."""
    (v1, e1, g1, _), (v2, e2, g2, _) = _joint_and_separate(
        lambda: make_state_action_value_network(D, A, (16,))
    )
    torch.testing.assert_close(v1, v2, **TOL)
    torch.testing.assert_close(e1, e2, **TOL)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_separate_batches_ablation_normalises_each_half_with_its_own_statistics():
    """With batch renormalisation the two losses differ, and the ablation's TD error is the one
    computed by hand from a pass over (s', a') alone and one over (s, a) alone."""
    (v1, _, _, _), (v2, e2, _, loss) = _joint_and_separate(
        lambda: make_crossq_qvalue_network(D, A, (16, 16), warmup_steps=0)
    )
    assert (v1 - v2).abs() > 1e-4
    # by hand, from the same initial networks (same seed, same construction order)
    torch.manual_seed(0)
    actor = make_normal_actor(D, A, (16,), low=-2.0, high=2.0)
    critics = [make_crossq_qvalue_network(D, A, (16, 16), warmup_steps=0) for _ in range(2)]
    td = _batch()
    torch.manual_seed(5)
    with torch.no_grad():
        a_next, logp = actor.get_dist(td["next"].select("observation")).rsample_and_log_prob()
        q_next = torch.stack([c(td["next", "observation"], a_next).squeeze(-1) for c in critics])
        q = torch.stack([c(td["observation"], td["action"]).squeeze(-1) for c in critics])
    alpha = loss.temperature.alpha
    not_term = (~td["next", "terminated"]).float().squeeze(-1)
    y = td["next", "reward"].squeeze(-1) + 0.99 * not_term * (q_next.min(0)[0] - alpha * logp)
    torch.testing.assert_close(e2, (q - y).abs().max(0)[0], **TOL)
