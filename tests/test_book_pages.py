"""The book's generated pages and settings, checked without building the book (seconds).

- The index of algorithms (``book/algorithms.yml``, rendered by ``book/_ext/rlteach_book.py``)
  names every registered recipe and every loss that ``rlteach.objectives`` exports.
- The benchmarks page is what ``scripts/benchmarks_page.py`` makes of the committed bench run.
- Maths is served from the build (no CDN) and every chapter gets launch and download buttons.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import benchmarks_page  # noqa: E402


def algorithms() -> dict:
    with open(ROOT / "book" / "algorithms.yml") as f:
        return yaml.safe_load(f)


def all_rows() -> list[dict]:
    data = algorithms()
    return [row for section in ("losses", "estimators", "updaters") for row in data[section]]


def config() -> dict:
    with open(ROOT / "_config.yml") as f:
        return yaml.safe_load(f)


def test_every_registered_recipe_is_in_the_index_of_algorithms():
    from rlteach.bench import REGISTRY
    from rlteach.recipes import load_all

    load_all()
    listed = {name for row in algorithms()["losses"] for name in row.get("recipes", [])}
    missing = sorted(set(REGISTRY) - listed)
    assert not missing, (
        f"recipes registered with the bench but absent from book/algorithms.yml: {missing}; add "
        "each to the `recipes:` list of its algorithm's row (the index of algorithms page)"
    )


def test_every_exported_loss_is_in_the_index_of_algorithms():
    objectives = importlib.import_module("rlteach.objectives")
    from rlteach.objectives.common import LossModule

    exported = {
        name
        for name in getattr(objectives, "__all__", dir(objectives))
        if isinstance(getattr(objectives, name, None), type)
        and issubclass(getattr(objectives, name), LossModule)
        and getattr(objectives, name) is not LossModule
    }
    assert exported, "rlteach.objectives exports no LossModule subclass"
    listed = {c.rsplit(".", 1)[-1] for row in all_rows() for c in row["classes"]}
    missing = sorted(exported - listed)
    assert not missing, (
        f"losses exported by rlteach.objectives but absent from book/algorithms.yml: {missing}; "
        "add a row (algorithm, chapter, classes, recipes, cite) for each"
    )


def test_index_of_algorithms_rows_are_well_formed():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M))
    for row in all_rows():
        assert re.fullmatch(r"notebooks/\d\d_\w+", row["chapter"]), row
        assert row["classes"] and all(c.startswith("rlteach.") for c in row["classes"]), row
        unknown = set(row.get("cite", [])) - keys
        assert not unknown, f"{row['algorithm']}: cite keys not in book/references.bib: {unknown}"


def test_index_of_algorithms_covers_the_books_algorithms():
    names = " ".join(row["algorithm"] for row in all_rows())
    for algo in [
        "REINFORCE", "A2C", "clipping", "KL", "DQN", "Double DQN", "C51", "DDPG", "TD3", "SAC",
        "REDQ", "CrossQ", "MAPPO", "IPPO", "QMIX", "VDN", "TD(0)", "TD(1)", "TD(λ)", "GAE",
        "V-trace", "Multi-agent GAE", "Hard target", "Soft (Polyak)",
    ]:  # fmt: skip
        assert algo in names, f"no row for {algo} in book/algorithms.yml"


def test_benchmarks_page_matches_the_committed_bench_run():
    page = ROOT / "book" / "benchmarks.md"
    expected = benchmarks_page.render(ROOT / "benchmarks", page)
    assert page.read_text() == expected, (
        "book/benchmarks.md is not what the committed bench run in benchmarks/ gives: run "
        "`python scripts/benchmarks_page.py` (or `make benchmarks` to measure again)"
    )


def test_committed_bench_run_has_machine_command_rows_and_curves():
    report = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    assert report["machine"] and report["command"].startswith("python -m rlteach bench")
    assert report["rows"], "benchmarks/results.json has no rows"
    for row in report["rows"]:
        png = ROOT / "benchmarks" / f"{row['name']}.png"
        assert png.is_file() and png.stat().st_size > 1000, f"no learning curve {png}"
        assert len(report["runs"][row["name"]]) == row["seeds"]


def test_benchmarks_page_lays_out_runs_measured_separately(tmp_path):
    """A run in a subfolder (not sb3*) counts as measured: its table follows the main one, with
    its own machine, command and notes, and its curves join the others."""
    import shutil

    report = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    main, extra = tmp_path / "bench", tmp_path / "bench" / "multiagent"
    extra.mkdir(parents=True)
    row = report["rows"][-1]  # moved from the main run into the separate one
    split = {**report, "rows": report["rows"][:-1]}
    (main / "results.json").write_text(json.dumps(split))
    (main / "results.md").write_text("| main table |")
    separate = {
        **report,
        "machine": "another machine",
        "command": "python -m rlteach bench --algo X",
        "rows": [row],
    }
    (extra / "results.json").write_text(json.dumps(separate))
    (extra / "results.md").write_text("| separate table |")
    (extra / "notes.md").write_text("Why it ran apart.")
    shutil.copy(ROOT / "benchmarks" / f"{row['name']}.png", extra)

    text = benchmarks_page.render(main, tmp_path / "page.md", compare_dirs=[])
    separately = text.index("## Results measured separately")
    assert text.index("| main table |") < separately < text.index("| separate table |")
    assert "- Command: `python -m rlteach bench --algo X`" in text[separately:]
    assert "Why it ran apart." in text[separately:]
    assert f"`{row['name']}`" not in text.split("## Results")[0]  # not listed as unmeasured
    assert f"### {row['name']}\n" in text.split("## Learning curves")[1]


def test_benchmarks_page_refuses_a_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="rlteach bench"):
        benchmarks_page.render(tmp_path, tmp_path / "page.md")


def test_maths_is_served_from_the_build_not_a_cdn():
    cfg = config()["sphinx"]
    assert "sphinx-mathjax-offline" in cfg["extra_extensions"]
    path = cfg["config"]["mathjax_path"]
    assert "://" not in path and not path.startswith("//"), f"mathjax_path {path} is remote"


def test_launch_buttons_come_from_one_repository_url():
    cfg = config()
    url = cfg["repository"]["url"]
    assert url.startswith("https://github.com/")
    buttons = cfg["launch_buttons"]
    assert buttons["binderhub_url"] and buttons["colab_url"]


def test_benchmarks_page_prefers_settings_read_from_rl_zoo3(tmp_path):
    """A comparison row measured with hand-transcribed SB3 settings gives way to a run of the same
    entry whose settings were read from rl-zoo3; a run with nothing left is not shown."""
    report = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps({**report, "rows": report["rows"][:2]}))
    first, second = report["rows"][0], report["rows"][1]

    def compare_run(folder, rows, zoo):
        folder.mkdir()
        rows = [
            {**row, "compare": {
                "seeds": 3, "seeds_solved": 3, "median_steps_to_solve": 1000,
                "median_seconds_to_solve": 1.0, "final_return_mean": 0.0, "final_return_std": 0.0,
                "steps_ratio": 1.0, "seconds_ratio": 1.0, "library": "Stable-Baselines3 X",
                "hyperparameters": f"from {folder.name}", **({"rl_zoo3": zoo} if zoo else {}),
            }}
            for row in rows
        ]  # fmt: skip
        run = {"machine": "m", "command": f"python -m rlteach bench {folder.name}", "rows": rows}
        (folder / "results.json").write_text(json.dumps(run))

    compare_run(tmp_path / "sb3", [first, second], None)
    compare_run(tmp_path / "sb3-old", [second], None)
    compare_run(tmp_path / "sb3-zoo", [second], "9.9.9")
    (tmp_path / "losses.json").write_text(
        json.dumps({"machine": "m", "command": "python -m rlteach bench --losses", "rows": [
            {"name": "DQNLoss, batch 8", "rlteach_seconds": 0.001, "torchrl_seconds": 0.002,
             "ratio": 0.5},
        ]})  # fmt: skip
    )
    text = benchmarks_page.render(tmp_path, tmp_path / "page.md", extra_dirs=[])
    section = text.split("## Beside Stable-Baselines3")[1]
    assert "bench sb3-old" not in section  # all its rows re-measured from the zoo
    assert section.count(f"| {second['name']} (") == 1 and "from sb3-zoo" in section
    assert section.count(f"| {first['name']} (") == 1 and "from sb3 |" in section
    assert f"left out here: `{second['name']}`" in section
    assert "read from rl-zoo3 9.9.9" in section
    assert "for the rows shown they equal rl-zoo3 9.9.9's entries" in section
    losses = text.split("## Losses beside TorchRL")[1]
    assert "- Command: `python -m rlteach bench --losses`" in losses
    assert "| DQNLoss, batch 8 | 1.00 | 2.00 | 0.50 |" in losses


def test_benchmarks_page_shows_the_committed_costs(tmp_path):
    """``bench --costs --out``'s costs.json becomes a section with its machine and tables."""
    import shutil

    main = tmp_path / "bench"
    main.mkdir()
    for name in ("results.json", "results.md"):
        shutil.copy(ROOT / "benchmarks" / name, main)
    text = benchmarks_page.render(main, tmp_path / "page.md", compare_dirs=[])
    assert "## What collecting and sampling cost" not in text
    report = {
        "machine": "test machine",
        "floor": [{"num_envs": 8, "rlteach_us_per_frame": 30.0, "floor_us_per_frame": 20.0,
                   "ratio": 1.5}],
        "fps": [{"num_envs": 64, "fps": 1000.0}],
        "buffer": [{"size": 1000, "sample_us": 50.0}],
    }  # fmt: skip
    (main / "costs.json").write_text(json.dumps(report))
    text = benchmarks_page.render(main, tmp_path / "page.md", compare_dirs=[])
    section = text.split("## What collecting and sampling cost")[1]
    assert "- Machine: test machine" in section and "| 8 | 30.0 | 20.0 | 1.50 |" in section
