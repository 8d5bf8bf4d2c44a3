"""The shared input checks: each error names the problem and the fix."""

import pytest
import torch
from tensordict import TensorDict

from rlteach import _checks, quick_mode


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, torch.tensor(0.99)])
def test_gamma_in_range_passes(gamma):
    _checks.check_gamma(gamma)


@pytest.mark.parametrize("gamma", [-0.1, 1.5, float("nan"), torch.tensor([0.5, 1.2])])
def test_gamma_out_of_range(gamma):
    with pytest.raises(ValueError, match="gamma"):
        _checks.check_gamma(gamma)


def test_open_bounds_and_types():
    with pytest.raises(ValueError, match=r"0.0 < eps < 1.0, got 1.0"):
        _checks.check_range("eps", 1.0, 0.0, 1.0, low_open=True, high_open=True)
    with pytest.raises(ValueError, match="must be a real number"):
        _checks.check_range("clip_epsilon", "0.2", 0.0)
    with pytest.raises(ValueError, match="must be a real number"):
        _checks.check_range("x", True, 0.0)


def test_choice_lists_the_options():
    with pytest.raises(ValueError, match="Unknown loss_function 'l3': choose one of 'l1', 'l2'"):
        _checks.check_choice("loss_function", "l3", ["l1", "l2"])


def test_get_key_says_which_key_and_how_to_rename():
    td = TensorDict({"obs": torch.zeros(2, 3), "next": {"reward": torch.zeros(2, 1)}}, [2])
    assert _checks.get_key(td, ("next", "reward"), owner="GAE") is not None
    with pytest.raises(KeyError) as err:
        _checks.get_key(td, "state_value", owner="GAE", key_name="value")
    message = str(err.value)
    assert "'state_value'" in message and "GAE.set_keys(value=<your key>)" in message
    assert "('next', 'reward')" in message  # lists what is there


def test_same_shape_and_finite():
    a, b = torch.zeros(3, 1), torch.zeros(3)
    with pytest.raises(ValueError, match=r"reward\[3, 1\], done\[3\]"):
        _checks.check_same_shape("gae", reward=a, done=b)
    with pytest.raises(ValueError, match=r"reward contains NaN or inf \(first at index \[1, 0\]\)"):
        _checks.check_finite("gae", reward=torch.tensor([[0.0], [float("nan")]]))
    _checks.check_finite("gae", done=torch.tensor([True]))  # booleans are not checked


def test_quick_mode_reads_the_environment(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("0", False), ("", False), ("no", False)]:
        monkeypatch.setenv("RLTEACH_QUICK", value)
        assert quick_mode() is expected
    monkeypatch.delenv("RLTEACH_QUICK")
    assert quick_mode() is False
