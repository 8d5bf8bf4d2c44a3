"""The reproductions and cost tables of the benchmarks page (scripts/reproductions.py)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import reproductions  # noqa: E402

from rlteach.stored import T975, difference95, final_returns, interval95, stored_runs  # noqa: E402


def test_interval95_by_hand():
    mean, half = interval95([1.0, 2.0, 3.0])
    # sd = 1, t(0.975, 2) = 4.303, half = 4.303 / sqrt(3)
    assert mean == 2.0
    assert half == pytest.approx(4.303 / math.sqrt(3), rel=1e-12)
    assert math.isnan(interval95([5.0])[1])
    with pytest.raises(ValueError):
        interval95([])


def test_t_quantiles_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df, q in T975.items():
        assert q == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4), df


@pytest.mark.parametrize(
    "mean,half,ref,expected",
    [
        (100.0, 10.0, 105.0, "reproduced"),  # inside the interval
        (100.0, 10.0, 50.0, "reproduced"),  # rlteach better
        (100.0, 10.0, 111.0, "below"),  # the whole interval under the published mean
        (100.0, 10.0, None, "no reference"),
        (100.0, math.nan, 100.0, "reproduced"),
        (100.0, math.nan, 100.5, "below"),
    ],
)
def test_verdict(mean, half, ref, expected):
    assert reproductions.verdict(mean, half, ref) == expected


def test_no_verdict_below_three_seeds():
    assert reproductions.verdict(100.0, 1.0, 50.0, seeds=2) == "too few seeds (2)"
    assert reproductions.verdict(100.0, 1.0, 50.0, seeds=3) == "reproduced"


def _run(algo, task, seed, finals, cpu):
    steps = [5000 * (i + 1) for i in range(len(finals))]
    return {
        "algo": algo,
        "env_id": task,
        "seed": seed,
        "curve": [
            {"env_steps": s, "seconds": 60.0 * (i + 1), "mean_return": r}
            for i, (s, r) in enumerate(zip(steps, finals, strict=True))
        ],
        "cpu_seconds": cpu,
        "machine": "test cpu, 2 cores",
        "command": f"python -m rlteach train {algo} --env {task} --seed {seed}",
        "config": {"warmup_steps": 5000},
    }


def _store(tmp_path, runs):
    for run in runs:
        folder = tmp_path / f"{run['algo']}-{run['env_id']}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"seed{run['seed']}.json").write_text(json.dumps(run))


def test_tables_from_stored_runs(tmp_path):
    _store(
        tmp_path,
        [
            _run("sac", "Hopper-v5", 0, [10.0, 1000.0], [1.0, 21.0]),
            _run("sac", "Hopper-v5", 1, [10.0, 2000.0], [1.0, 31.0]),
            _run("sac", "Hopper-v5", 2, [10.0, 3000.0], [1.0, 41.0]),
        ],
    )
    runs = stored_runs(tmp_path)
    assert list(runs) == [("sac", "Hopper-v5")]
    assert final_returns(runs["sac", "Hopper-v5"]) == [1000.0, 2000.0, 3000.0]
    refs = [
        {"algo": "sac", "task": "Hopper-v5", "claim": "c", "value": 2500.0, "spread": 1.0,
         "seeds": 10, "source": "S"}
    ]  # fmt: skip
    table = reproductions.reproductions_table(runs, refs)
    half = 4.303 * 1000.0 / math.sqrt(3)
    assert f"2,000 ± {half:,.0f} (3)" in table
    assert "| reproduced |" in table and "2,500 ± 1 (10 seeds)" in table  # 3 seeds
    two = {k: v[:2] for k, v in runs.items()}
    assert "| too few seeds (2) |" in reproductions.reproductions_table(two, refs)
    # CPU ms per step: (21 - 1) s over the 5000 steps after the 5000-step warm-up, seed 0
    assert reproductions.cpu_ms_per_step(runs["sac", "Hopper-v5"][0], 5000) == 4.0
    cost = reproductions.cost_table(runs)
    assert "| sac | Hopper-v5 | 6.0 | 2.0 (2.0–2.0) |" in cost  # mean of 4, 6 and 8 ms
    refs[0]["value"] = None
    assert "| not found | S |" in reproductions.reproductions_table(runs, refs)


def test_section_is_empty_without_runs_and_links_the_figures(tmp_path):
    references = tmp_path / "references.json"
    references.write_text(json.dumps({"references": []}))
    page = tmp_path / "book" / "benchmarks.md"
    assert reproductions.section(tmp_path / "none", references, page, "H") == []
    store = tmp_path / "benchmarks" / "mujoco"
    _store(store, [_run("td3", "Hopper-v5", 0, [5.0, 7.0], [0.0, 1.0])])
    (store / "Hopper-v5.png").write_bytes(b"png")
    text = "\n".join(reproductions.section(store, references, page, "H"))
    assert "## H" in text and "no reference" in text
    assert "(../benchmarks/mujoco/Hopper-v5.png)" in text
    assert "`python -m rlteach train td3 --env Hopper-v5 --seed S`" in text


def test_difference95_by_hand():
    # a = (1, 2, 3): mean 2, var 1; b = (0, 0, 3): mean 1, var 3; se^2 = 1/3 + 1 = 4/3
    # Welch df = (4/3)^2 / ((1/3)^2 / 2 + 1^2 / 2) = (16/9) / (5/9) = 3.2 -> 3
    diff, half = difference95([1.0, 2.0, 3.0], [0.0, 0.0, 3.0])
    assert diff == 1.0
    assert half == pytest.approx(T975[3] * math.sqrt(4 / 3), rel=1e-12)
    assert math.isnan(difference95([1.0], [1.0, 2.0])[1])
    assert difference95([2.0, 2.0], [1.0, 1.0]) == (1.0, 0.0)


@pytest.mark.parametrize(
    "diff,half,seeds,expected",
    [
        (10.0, 5.0, (3, 3), "supported"),
        (-10.0, 5.0, (3, 3), "contradicted"),
        (3.0, 5.0, (3, 3), "not resolved"),
        (10.0, 5.0, (3, 2), "too few seeds (3 and 2)"),
    ],
)
def test_claim_verdict(diff, half, seeds, expected):
    assert reproductions.claim_verdict(diff, half, seeds) == expected


def test_claims_read_both_sides_and_ablations_are_keyed_by_label(tmp_path):
    plain = [_run("sac", "Hopper-v5", s, [0.0, r], [0.0, 1.0]) for s, r in enumerate([10, 20, 30])]
    ablated = [_run("sac", "Hopper-v5", s, [0.0, r], [0.0, 1.0]) for s, r in enumerate([1, 2, 3])]
    for run in ablated:
        run["variant"] = "cut"
    _store(tmp_path / "main", plain)
    for run in ablated:  # an ablation's folder carries its label (scale_runs.Entry.name)
        folder = tmp_path / "abl" / "sac-Hopper-v5--cut"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"seed{run['seed']}.json").write_text(json.dumps(run))
    assert list(stored_runs(tmp_path / "abl")) == [("sac--cut", "Hopper-v5")]
    claims = [
        {"claim": "X", "source": "P", "a": {"store": "main", "entry": "sac", "task": "Hopper-v5"},
         "b": {"store": "abl", "entry": "sac--cut", "task": "Hopper-v5"}},
        {"claim": "Y", "source": "P", "a": {"store": "main", "entry": "sac", "task": "Hopper-v5"},
         "b": {"store": "none", "entry": "sac", "task": "Hopper-v5"}},
    ]  # fmt: skip
    table = reproductions.claims_table(tmp_path, claims)
    diff, half = difference95([10.0, 20.0, 30.0], [1.0, 2.0, 3.0])
    assert f"| X | P | sac (main) | sac--cut (abl) | {diff:,.0f} ± {half:,.0f} (3, 3) |" in table
    assert "| Y |" not in table  # a side without runs gives no row
    assert reproductions.claims_table(tmp_path, claims[1:]) == ""
