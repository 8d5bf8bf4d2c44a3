"""Multi-agent recipes: registered with the bench, seeded runs reproduce, and the QMIX paper's
two-step result (QMIX finds return 8, VDN settles on 7) over five seeds."""

import pytest
import torch

from rlteach import bench
from rlteach.recipes import load_all

pytest.importorskip("mpe2")

SEEDS = range(5)


def test_registered_with_explicit_thresholds():
    load_all()
    entries = {name: bench.REGISTRY[name] for name in bench.REGISTRY}
    assert entries["qmix-twostep"].threshold == 8.0
    assert entries["vdn-twostep"].threshold == 7.0
    assert entries["mappo-spread"].threshold == entries["ippo-spread"].threshold == -22.3
    assert entries["mappo-spread"].env_id == "simple_spread_v3"


@pytest.fixture(scope="module")
def two_step_runs():
    from rlteach.recipes import qmix

    return {
        mixer: [
            qmix.train(seed, quick=True, progress=False, cfg=qmix.QMixConfig(mixer=mixer))
            for seed in SEEDS
        ]
        for mixer in ("qmix", "vdn")
    }


def test_qmix_finds_the_optimal_joint_policy(two_step_runs):
    """Rashid et al. (2018), Sec. 5: QMIX's greedy policy earns 8 on every seed."""
    assert [run.final_return for run in two_step_runs["qmix"]] == [8.0] * len(SEEDS)


def test_vdn_settles_on_the_suboptimal_policy(two_step_runs):
    """VDN's additive Q_tot values state 2B below 2A, so its greedy policy earns 7."""
    assert [run.final_return for run in two_step_runs["vdn"]] == [7.0] * len(SEEDS)


def test_learned_q_tot_tables(two_step_runs):
    """QMIX represents the payoffs (2A: 7s, 2B: [[0, 1], [1, 8]]) and state 1's values
    (γ·7 for A, γ·8 for B); VDN's least-squares sum misfits 2B towards [[-1.5, 2.5], [2.5, 6.5]]."""
    gamma = 0.99
    for run in two_step_runs["qmix"]:
        table = run.q_tot
        torch.testing.assert_close(table["2A"], torch.full((2, 2), 7.0), atol=0.3, rtol=0)
        torch.testing.assert_close(
            table["2B"], torch.tensor([[0.0, 1.0], [1.0, 8.0]]), atol=0.6, rtol=0
        )
        assert table["1"][1].min() > table["1"][0].max()  # B (to 2B) beats A (to 2A)
        assert abs(table["1"][0].mean() - gamma * 7) < 0.3
    for run in two_step_runs["vdn"]:
        table = run.q_tot
        assert table["2B"][1, 1] < 7.0  # the optimum is under-valued...
        assert table["1"][0].min() > table["1"][1].max()  # ...so A (to 2A) looks better


def test_two_step_run_reproduces(two_step_runs):
    from rlteach.recipes import qmix

    again = qmix.train(0, quick=True, progress=False)
    first = two_step_runs["qmix"][0]
    assert [(p.env_steps, p.mean_return) for p in again.curve] == [
        (p.env_steps, p.mean_return) for p in first.curve
    ]
    torch.testing.assert_close(again.q_tot["2B"], two_step_runs["qmix"][0].q_tot["2B"])


def test_simple_spread_references():
    """The two references the MAPPO threshold is built from, on the recipe's eval episodes."""
    from rlteach.envs_multiagent import (
        PettingZooParallelEnv,
        evaluate_team_return,
        make_simple_spread,
    )
    from rlteach.recipes import mappo

    env = PettingZooParallelEnv(make_simple_spread(), num_envs=32, seed=10_000)
    random = evaluate_team_return(None, env, deterministic=False, seed=10_000)
    heuristic = evaluate_team_return(mappo.nearest_landmark_policy, env, seed=10_000)
    assert random == pytest.approx(mappo.RANDOM_RETURN, abs=0.05)
    assert heuristic == pytest.approx(mappo.HEURISTIC_RETURN, abs=0.05)
    assert mappo.THRESHOLD == pytest.approx((random + heuristic) / 2, abs=0.05)


@pytest.mark.parametrize("algo", ["mappo", "ippo"])
def test_mappo_ippo_quick_mode_runs_and_reproduces(algo):
    from rlteach.recipes import mappo

    cfg = mappo.MAPPOConfig(centralised_critic=algo == "mappo", quick_frames=800)
    first = mappo.train(0, quick=True, progress=False, cfg=cfg)
    second = mappo.train(0, quick=True, progress=False, cfg=cfg)
    assert first.algo == algo and len(first.curve) == 1
    assert first.curve[0].env_steps == 800
    assert first.curve[0].mean_return == second.curve[0].mean_return
    assert -200 < first.curve[0].mean_return < 0
