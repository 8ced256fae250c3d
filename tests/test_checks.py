"""trashlab.checks: what a student sees when running an exercise's check cell (✔, or ✘ saying what to fix)."""

from __future__ import annotations


import pandas as pd
import pytest

from trashlab import checks
from trashlab.errors import CheckFailed


def frame(rows) -> pd.DataFrame:
    """A collector-like frame from (can_id, level, seconds) rows."""
    return pd.DataFrame({
        "can_id": [r[0] for r in rows],
        "level": [float(r[1]) for r in rows],
        "received_at": pd.to_datetime([r[2] for r in rows], unit="s", utc=True),
    })


READINGS = frame([("1", 90, 0.0), ("2", 85, 0.5), ("1", 10, 1.0), ("3", 50, 1.2), ("2", 95, 4.2)])


def fails(fn, *args, **kwargs) -> str:
    """The ✘ line a failing check shows."""
    with pytest.raises(CheckFailed) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert text.startswith("✘ "), text
    assert "\n" not in text, "a check's message is one line"
    return text


def not_written(*args):
    # YOUR CODE HERE
    raise NotImplementedError()


def test_unwritten_answer_says_what_to_replace():
    text = fails(checks.call, not_written, READINGS, "1")
    assert "not written yet" in text and "raise NotImplementedError()" in text


def test_a_bug_in_the_answer_is_one_line_with_the_call():
    def count_readings(f, c):
        return f["can"]
    text = fails(checks.call, count_readings, READINGS, "1")
    assert "raised KeyError" in text and "count_readings(frame, '1')" in text


def test_missing_answer_is_not_a_crash():
    assert "no answer yet" in fails(checks.call, None, READINGS, "1")
    assert "should be a function" in fails(checks.call, 3, READINGS, "1")


def test_an_async_def_where_a_plain_function_is_expected_says_so():
    async def count_readings(f, c):
        return len(f)
    assert "plain `def`" in fails(checks.call, count_readings, READINGS, "1")
