"""Value-based acting modules against TorchRL: greedy Q actor (both layouts), distributional
actor, epsilon-greedy schedule and exploration."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import InteractionType, TensorDictSequential, set_interaction_type

from rlteach.modules import (
    DistributionalQValueActor,
    EGreedyModule,
    make_distributional_qvalue_network,
    make_qvalue_actor,
    make_qvalue_network,
)

actors = pytest.importorskip("torchrl.modules.tensordict_module.actors")
exploration = pytest.importorskip("torchrl.modules.tensordict_module.exploration")

OBS, N_ACTIONS = 4, 3


def obs_batch(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(observation=torch.randn(n, OBS, generator=g), batch_size=[n])


@pytest.mark.parametrize("action_space", ["categorical", "one-hot"])
def test_greedy_actor_matches_torchrl_qvalue_module(action_space):
    torch.manual_seed(0)
    qnet = make_qvalue_network(OBS, N_ACTIONS, num_cells=(8,))
    ours = make_qvalue_actor(qnet, action_space)(obs_batch())
    theirs = actors.QValueModule(action_space=action_space)(
        qnet(obs_batch()).exclude("action", "chosen_action_value")
    )
    for key in ("action", "action_value", "chosen_action_value"):
        torch.testing.assert_close(ours[key], theirs[key], atol=0, rtol=0)
    assert ours["action"].dtype == torch.int64


@pytest.mark.parametrize("action_space", ["categorical", "one-hot"])
def test_distributional_actor_matches_torchrl(action_space):
    torch.manual_seed(0)
    support = torch.linspace(-3, 3, 7)
    net = make_distributional_qvalue_network(OBS, N_ACTIONS, 7, num_cells=(8,))
    ours = DistributionalQValueActor(net, support, action_space)
    theirs = actors.DistributionalQValueActor(net, support=support, action_space=action_space)
    out, out_t = ours(obs_batch()), theirs(obs_batch())
    torch.testing.assert_close(out["action_value"], out_t["action_value"])
    torch.testing.assert_close(out["action"], out_t["action"], atol=0, rtol=0)
    # log-probabilities: each action's atoms sum to one
    torch.testing.assert_close(out["action_value"].exp().sum(-2), torch.ones(20, N_ACTIONS))
    assert ours.support is dict(ours.named_buffers())["support"]


def test_egreedy_schedule_matches_torchrl():
    ours = EGreedyModule(N_ACTIONS, eps_init=1.0, eps_end=0.05, annealing_num_steps=100)
    spec = pytest.importorskip("torchrl.data").Categorical(N_ACTIONS)
    theirs = exploration.EGreedyModule(spec, eps_init=1.0, eps_end=0.05, annealing_num_steps=100)
    for frames in (1, 10, 39, 50, 7):
        ours.step(frames)
        theirs.step(frames)
        torch.testing.assert_close(ours.eps, theirs.eps, atol=0, rtol=0)
    assert float(ours.eps) == pytest.approx(0.05)
    # by hand: after 30 frames, eps = 1 - 30 * 0.95 / 100 = 0.715
    fresh = EGreedyModule(N_ACTIONS, 1.0, 0.05, 100)
    fresh.step(30)
    assert float(fresh.eps) == pytest.approx(0.715, abs=1e-6)


def test_egreedy_explores_at_rate_eps_and_not_in_evaluation():
    qnet = make_qvalue_network(OBS, N_ACTIONS, num_cells=(8,))
    egreedy = EGreedyModule(N_ACTIONS, eps_init=0.5, eps_end=0.5, seed=1)
    policy = TensorDictSequential(make_qvalue_actor(qnet), egreedy)
    td = obs_batch(4000)
    greedy = make_qvalue_actor(qnet)(td.clone())["action"]
    acted = policy(td.clone())["action"]
    # a random action equals the greedy one a third of the time: P(differ) = 0.5 * 2/3
    assert abs((acted != greedy).float().mean().item() - 1 / 3) < 0.03
    with set_interaction_type(InteractionType.DETERMINISTIC):
        torch.testing.assert_close(policy(td.clone())["action"], greedy)
    # seeded: the same seed explores identically
    again = TensorDictSequential(
        make_qvalue_actor(qnet), EGreedyModule(N_ACTIONS, 0.5, 0.5, seed=1)
    )
    torch.testing.assert_close(again(td.clone())["action"], acted)


def test_egreedy_one_hot_and_errors():
    qnet = make_qvalue_network(OBS, N_ACTIONS, num_cells=(8,))
    policy = TensorDictSequential(
        make_qvalue_actor(qnet, "one-hot"),
        EGreedyModule(N_ACTIONS, 1.0, 1.0, action_space="one-hot", seed=0),
    )
    action = policy(obs_batch(50))["action"]
    assert action.shape == (50, N_ACTIONS) and (action.sum(-1) == 1).all()
    with pytest.raises(ValueError, match="eps_end"):
        EGreedyModule(N_ACTIONS, eps_init=0.1, eps_end=0.5)
    with pytest.raises(ValueError, match="annealing_num_steps"):
        EGreedyModule(N_ACTIONS, annealing_num_steps=0)
