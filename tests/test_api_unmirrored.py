"""The API reference's list of TorchRL arguments rlteach does not mirror is complete and exact.

book/api.md has a table (between ``unmirrored:start`` and ``unmirrored:end``) of, per class, the
TorchRL 0.14 constructor arguments the rlteach class does not accept. This test recomputes that
set from both libraries' signatures (an rlteach ``**kwargs`` passes on to its parent class, as the
PPO losses do) and requires the table to list exactly it (issue 22).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import rlteach.objectives as O
import rlteach.value as V

T = pytest.importorskip("torchrl.objectives")
TM = pytest.importorskip("torchrl.objectives.multiagent")
TV = pytest.importorskip("torchrl.objectives.value")

API = Path(__file__).resolve().parents[1] / "book" / "api.md"
ESTIMATORS = ["TD0Estimator", "TD1Estimator", "TDLambdaEstimator", "GAE", "VTrace", "MultiAgentGAE"]


def _named(params) -> set[str]:
    return {k for k, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {
        "self"
    }


def accepted(cls) -> set[str]:
    """Constructor arguments of ``cls``, following ``**kwargs`` up to the parents."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__:
            continue
        params = inspect.signature(klass.__init__).parameters
        names |= _named(params)
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return names


def pairs():
    for name in sorted(n for n in dir(O) if n.endswith("Loss")):
        theirs = getattr(T, name, None) or getattr(TM, name, None)
        if theirs is not None:
            yield name, getattr(O, name), theirs
    for name in ESTIMATORS:
        yield name, getattr(V, name), getattr(TV, name)


def listed() -> dict[str, set[str]]:
    text = API.read_text()
    table = text.split("<!-- unmirrored:start -->")[1].split("<!-- unmirrored:end -->")[0]
    out: dict[str, set[str]] = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        for cls in re.findall(r"`(\w+)`", cells[0]):
            out.setdefault(cls, set()).update(re.findall(r"`(\w+)`", cells[1]))
    return out


def test_the_table_lists_exactly_the_unmirrored_arguments():
    table = listed()
    for name, ours, theirs in pairs():
        missing = _named(inspect.signature(theirs.__init__).parameters) - accepted(ours)
        assert table.get(name, set()) == missing, name
    known = {name for name, _, _ in pairs()}
    assert set(table) <= known, set(table) - known


def test_the_api_page_shows_the_table_the_code_refuses_by():
    from rlteach._unmirrored import markdown_table

    text = API.read_text()
    table = text.split("<!-- unmirrored:start -->")[1].split("<!-- unmirrored:end -->")[0]
    assert table.strip() == markdown_table()


CASES = [
    (cls, argument)
    for row in __import__("rlteach._unmirrored", fromlist=["UNMIRRORED"]).UNMIRRORED
    for cls in row.classes
    for argument in row.arguments
]


@pytest.mark.parametrize("name,argument", CASES, ids=[f"{c}-{a}" for c, a in CASES])
def test_an_unmirrored_argument_is_refused_with_its_reason_before_anything_is_built(name, argument):
    from rlteach._unmirrored import UnmirroredArgumentError, _lookup

    cls = getattr(O, name, None) or getattr(V, name)
    row = _lookup([name], argument)
    # no network is given: the refusal must come before the constructor reads anything
    with pytest.raises(UnmirroredArgumentError) as info:
        cls(**{argument: object()})
    message = str(info.value)
    assert f"{name} does not take TorchRL's {argument}=" in message
    assert row.why.split(" ")[0].strip("`") in message and "Instead:" in message
    assert isinstance(info.value, TypeError)  # what Python raises for an unknown keyword


def test_a_subclass_of_an_rlteach_loss_refuses_them_too():
    from rlteach._unmirrored import UnmirroredArgumentError

    class MyPPO(O.ClipPPOLoss):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    with pytest.raises(
        UnmirroredArgumentError, match="MyPPO does not take TorchRL's advantage_norm"
    ):
        MyPPO(advantage_norm=True)
    # the wrapped constructor keeps its signature (inspect follows __wrapped__)
    assert "clip_epsilon" in inspect.signature(O.ClipPPOLoss.__init__).parameters


def test_a_subclass_that_takes_an_argument_its_parent_leaves_out_gets_it():
    class Taking(O.SACLoss):
        def __init__(self, *args, scalar_output_mode=None, **kwargs):
            self.mode = scalar_output_mode

    assert Taking(scalar_output_mode="exclude").mode == "exclude"
