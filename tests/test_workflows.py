"""The GitHub workflows: valid against GitHub's schema, and running what the README documents.

- ``tests.yml`` runs the suite on Linux and macOS for each Python version pyproject.toml claims;
- ``book.yml`` builds the book and deploys it to GitHub Pages;
- ``release.yml`` builds, tries and publishes the package on a version tag.
The README's commands for a machine without ``make`` are the ones the workflows run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def run_lines(flow: dict) -> list[str]:
    """Every command line of every ``run:`` step of a workflow."""
    lines = []
    for job in flow["jobs"].values():
        for step in job.get("steps", []):
            lines += [ln.strip() for ln in step.get("run", "").splitlines() if ln.strip()]
    return lines


def uses(flow: dict) -> list[str]:
    return [s.get("uses", "") for job in flow["jobs"].values() for s in job.get("steps", [])]


def check_jsonschema() -> str:
    exe = Path(sys.executable).with_name("check-jsonschema")
    found = str(exe) if exe.exists() else shutil.which("check-jsonschema")
    if found is None:
        pytest.skip("check-jsonschema is in the dev extra: pip install -e '.[dev]'")
    return found


def test_workflows_are_valid_against_githubs_schema():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"tests.yml", "book.yml", "release.yml"}
    proc = subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.github-workflows", *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_refuses_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    step: []\n")
    proc = subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0


def claimed_python_versions() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [
        c.rsplit("::", 1)[1].strip()
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    minimum = re.search(r">=\s*(3\.\d+)", project["requires-python"]).group(1)
    assert found and found[0] == minimum, "classifiers must start at requires-python's minimum"
    return found


def test_tests_run_on_linux_and_macos_for_every_claimed_python():
    matrix = workflow("tests.yml")["jobs"]["test"]["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest"}
    assert [str(v) for v in matrix["python"]] == claimed_python_versions()


def test_book_is_built_and_deployed_to_pages():
    flow = workflow("book.yml")
    assert "actions/deploy-pages@v4" in uses(flow)
    assert "actions/upload-pages-artifact@v3" in uses(flow)
    assert flow["permissions"]["pages"] == "write" and flow["permissions"]["id-token"] == "write"


def test_release_publishes_on_a_version_tag_after_trying_the_wheel():
    flow = workflow("release.yml")
    assert flow[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    publish = flow["jobs"]["publish"]
    assert "try-the-wheel" in publish["needs"]
    assert any(u.startswith("pypa/gh-action-pypi-publish") for u in uses(flow))
    assert publish["permissions"]["id-token"] == "write"


def readme_commands_without_make() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Without make", 1)[1]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S).group(1)
    return [
        ln.strip()
        for ln in block.splitlines()
        if ln.strip() and not ln.strip().startswith("#") and "venv" not in ln
    ]


def test_workflows_run_the_readmes_commands_without_make():
    commands = readme_commands_without_make()
    assert "python -m pytest" in commands and "python scripts/test_any_cpu.py" in commands
    ran = set(run_lines(workflow("tests.yml"))) | set(run_lines(workflow("book.yml")))
    missing = [c for c in commands if c not in ran]
    assert not missing, f"README commands that no workflow runs: {missing}"


def test_makefile_runs_the_same_test_steps():
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "ruff check ." in target and "-m pytest" in target
    assert "scripts/test_any_cpu.py" in target
