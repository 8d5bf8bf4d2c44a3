"""Packaging stays coherent: conda users and pip users get the same dependencies."""

import re
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    return {_normalise(r) for r in reqs}


def environment_requirements() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml must have exactly one pip: section"
    reqs = {_normalise(r) for r in pip_lists[0]}
    # The CPU wheel pin and the editable install of the package itself are set-up steps,
    # not dependencies.
    return reqs - {"torch==2.13.0", "-e."}


def test_environment_yml_matches_pyproject():
    missing = pyproject_requirements() - environment_requirements()
    extra = environment_requirements() - pyproject_requirements()
    assert not missing, f"environment.yml lacks {sorted(missing)} (listed in pyproject.toml)"
    assert not extra, f"environment.yml lists {sorted(extra)} that pyproject.toml does not"


def test_environment_pins_cpu_torch_first():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_list[0] == "torch==2.13.0"
    assert "python=3.11" in env["dependencies"]


def test_package_never_imports_torchrl():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "rlteach").rglob("*.py")
        if re.search(r"^\s*(import torchrl|from torchrl)", p.read_text(), re.MULTILINE)
        # the timing benchmarks import TorchRL inside a function
        and p.name not in ("_timing.py", "bench_losses.py")
    ]
    assert not offenders, f"rlteach must not import torchrl at run time: {offenders}"


def test_makefile_installs_cpu_torch_before_the_project():
    text = (ROOT / "Makefile").read_text()
    assert text.index("torch==2.13.0") < text.index('-e ".[dev]"')


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make book" in readme
    assert re.search(r"^make test$", ci, re.MULTILINE)
