"""The benchmark runner: registry, the solved-threshold arithmetic, and the files it writes."""

import json
import subprocess
import sys

import pytest
import torch

from rlteach import bench
from rlteach.recipes.base import EvalPoint, RunResult, Stopwatch


def fake_train(seed, quick=False, progress=False):
    """A deterministic 'recipe': seed s crosses 475 at step 1000·(s+1); seed 2 never does."""
    curve = []
    for k in range(1, 6):
        steps = 1000 * k
        solved = seed != 2 and steps >= 1000 * (seed + 1)
        curve.append(
            EvalPoint(env_steps=steps, seconds=0.5 * k, mean_return=500.0 if solved else 20.0 * k)
        )
    return RunResult(algo="fake", env_id="CartPole-v1", seed=seed, curve=curve)


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(bench, "REGISTRY", {})
    bench.register("fake-cartpole", "fake", "CartPole-v1", fake_train)
    return bench.REGISTRY


def test_summary_by_hand(registry):
    entry = registry["fake-cartpole"]
    runs = [fake_train(s) for s in range(4)]
    row = bench.summarize(entry, runs)
    # seeds 0, 1, 3 solve at steps 1000, 2000, 4000 (seconds 0.5, 1.0, 2.0); seed 2 never does.
    assert row["seeds_solved"] == 3
    assert row["median_steps_to_solve"] == 2000
    assert row["median_seconds_to_solve"] == 1.0
    # final returns: 500, 500, 100, 500
    assert row["final_return_mean"] == pytest.approx(400.0)


def test_run_bench_writes_reports(registry, tmp_path):
    rows = bench.run_bench(["fake-cartpole"], seeds=3, out_dir=tmp_path, progress=False)
    assert rows[0]["seeds_solved"] == 2
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["rows"] == rows
    assert len(report["runs"]["fake-cartpole"]) == 3
    assert RunResult.from_dict(report["runs"]["fake-cartpole"][1]) == fake_train(1)
    table = (tmp_path / "results.md").read_text()
    assert "| fake-cartpole | CartPole-v1 (≥ 475) | 2/3 | 1,500 | 0.8 |" in table
    assert (tmp_path / "fake-cartpole.png").stat().st_size > 1000


def test_unknown_entry_and_bad_seeds(registry, tmp_path):
    with pytest.raises(
        KeyError, match="Unknown bench entry nope; registered entries: fake-cartpole"
    ):
        bench.run_bench(["nope"], out_dir=tmp_path)
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        bench.run_bench(seeds=0, out_dir=tmp_path)


def test_skip_leaves_entries_out_and_is_recorded_in_the_command(registry, tmp_path):
    bench.register("other-cartpole", "other", "CartPole-v1", fake_train)
    rows = bench.run_bench(seeds=1, out_dir=tmp_path, progress=False, skip=["fake-cartpole"])
    assert [row["name"] for row in rows] == ["other-cartpole"]
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["command"] == "python -m rlteach bench --skip fake-cartpole --seeds 1"
    with pytest.raises(KeyError, match="--skip: unknown bench entry nope"):
        bench.run_bench(out_dir=tmp_path, skip=["nope"])
    with pytest.raises(KeyError, match="Nothing to run"):
        bench.run_bench(["fake-cartpole"], out_dir=tmp_path, skip=["fake-cartpole"])


def test_register_needs_a_threshold(registry):
    with pytest.raises(ValueError, match="No solved threshold is known for 'MountainCar-v0'"):
        bench.register("x", "x", "MountainCar-v0", fake_train)
    with pytest.raises(ValueError, match="already registered"):
        bench.register("fake-cartpole", "fake", "CartPole-v1", fake_train)


def test_train_must_return_a_curve(registry):
    entry = bench.register(
        "empty", "e", "CartPole-v1", lambda **kw: RunResult("e", "CartPole-v1", 0)
    )
    with pytest.raises(RuntimeError, match="at least one evaluation"):
        entry.run(0)


def test_stopwatch_excludes_paused_time():
    clock = Stopwatch()
    with clock.paused():
        frozen = clock.seconds
        sum(range(200_000))
        assert clock.seconds == frozen
    assert clock.seconds >= frozen


def test_cli_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "rlteach", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for word in ("bench", "list", "--estimators", "--losses", "examples:"):
        assert word in out


def test_loss_timing_covers_every_loss():
    pytest.importorskip("torchrl")
    from rlteach.bench_losses import losses_table, time_losses

    rows = time_losses(repeats=1, warmup=0, on_policy_batch=16, off_policy_batch=8,
                       multiagent_batch=(2, 4))  # fmt: skip
    timed = {row["loss"] for row in rows}
    assert timed == {
        "ReinforceLoss", "A2CLoss", "PPOLoss", "ClipPPOLoss", "KLPENPPOLoss", "DQNLoss",
        "DistributionalDQNLoss", "DDPGLoss", "TD3Loss", "SACLoss", "REDQLoss", "CrossQLoss",
        "MAPPOLoss", "IPPOLoss", "QMixerLoss",
    }  # fmt: skip
    for row in rows:
        assert row["rlteach_seconds"] > 0 and row["torchrl_seconds"] > 0
        assert row["ratio"] == pytest.approx(row["rlteach_seconds"] / row["torchrl_seconds"])
    assert losses_table(rows).count("\n") == len(rows) + 2


def test_loss_timing_times_the_same_computation_on_both_sides():
    """Each pair, built as it is timed, gives the same losses on the same batch and seed, so the
    two libraries are timed on the same work (TanhNormal's entropy is a one-sample estimate
    drawn in another order by each library, so KL-PEN's entropy term may differ)."""
    pytest.importorskip("torchrl")
    import warnings

    import torchrl.objectives as tr
    import torchrl.objectives.multiagent as trm

    from rlteach import bench_losses as _timing

    g = torch.Generator().manual_seed(0)
    cases = (
        _timing._on_policy_cases(tr, 32, g)
        + _timing._value_based_cases(tr, 16, g)
        + _timing._continuous_cases(tr, 16, g)
        + _timing._multiagent_cases(trm, (2, 4), g)
    )
    for name, build_ours, build_theirs, batch in cases:
        outs = []
        for build in (build_ours, build_theirs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loss = build()
            torch.manual_seed(5)
            out = loss(batch.clone(False))
            outs.append({k: out[k].sum() for k in out.keys() if k.startswith("loss")})
        assert outs[0].keys() == outs[1].keys(), name
        for key in outs[0]:
            if key == "loss_entropy" and "KLPEN" in name and "TanhNormal" in name:
                continue
            torch.testing.assert_close(outs[0][key], outs[1][key], atol=1e-5, rtol=1e-5,
                                       msg=f"{name}: {key}")  # fmt: skip


def test_cli_losses_writes_the_table(tmp_path, monkeypatch):
    pytest.importorskip("torchrl")
    import json

    from rlteach import __main__ as cli
    from rlteach import bench_losses as _timing

    real = _timing.time_losses
    monkeypatch.setattr(
        _timing,
        "time_losses",
        lambda progress=False: real(repeats=1, warmup=0, on_policy_batch=8, off_policy_batch=8,
                                    multiagent_batch=(2, 2), only=lambda n: "DQN" in n),
    )  # fmt: skip
    assert cli.main(["bench", "--losses", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "losses.json").read_text())
    assert "1 torch threads" in report["machine"]  # the threads the timing used
    assert report["command"].startswith("python -m rlteach bench --losses")
    assert [r["loss"] for r in report["rows"]] == ["DQNLoss", "DistributionalDQNLoss"]
    text = (tmp_path / "losses.md").read_text()
    assert text.startswith("Measured on ") and "| DQNLoss (double DQN)" in text
