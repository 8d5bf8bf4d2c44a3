"""Shared by the tests of rlteach.exercises: run a checker on a wrong answer, and a wrong answer."""

import pytest

from rlteach.exercises import ExerciseError


def message_of(checker, fn) -> str:
    """The checker's message for ``fn`` (it must raise ExerciseError)."""
    with pytest.raises(ExerciseError) as info:
        checker(fn, quiet=True)
    return str(info.value)


def negate(fn):
    """``fn`` with its result's sign flipped, the commonest slip."""
    return lambda *args: -fn(*args)
