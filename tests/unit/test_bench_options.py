"""The recover benchmark's options: a bad ``--changes`` is a clear error before any server starts."""

from __future__ import annotations

import pytest

from bench.recover import DEFAULT_CHANGES, QUICK_CHANGES, _changes


def test_the_number_of_changes_comes_from_the_options():
    assert _changes([]) == DEFAULT_CHANGES
    assert _changes(["--quick"]) == QUICK_CHANGES
    assert _changes(["--quick", "--changes", "7"]) == 7


@pytest.mark.parametrize("argv", [["--changes"], ["--changes", "many"], ["--changes", "0"], ["--changes", "-3"]])
def test_a_bad_number_of_changes_is_refused_with_a_reason(argv):
    with pytest.raises(SystemExit) as refused:
        _changes(argv)
    assert "--changes" in str(refused.value)
