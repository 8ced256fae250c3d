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


# ----- counting, fractions, gaps -----------------------------------------------------------------
def test_gap(capsys):
    checks.check_gap(lambda f: f["received_at"].sort_values().diff().max().total_seconds(), READINGS)
    assert "= 3" in capsys.readouterr().out
    assert "total_seconds" in fails(checks.check_gap, lambda f: f["received_at"].diff().max(), READINGS)
    assert "expected 3" in fails(checks.check_gap, lambda f: 0.5, READINGS)
    assert "fewer than 2" in fails(checks.check_gap, lambda f: 0.0, READINGS.head(1))


def test_gap_on_a_drill_timeline_in_seconds_with_lost_readings(capsys):
    timeline = checks.example_timeline()
    assert checks.largest_gap(timeline) == pytest.approx(0.6)
    checks.check_gap(lambda t: t["received_at"].dropna().diff().max(), timeline)
    assert "= 0.6" in capsys.readouterr().out
    text = fails(checks.check_gap, lambda t: t["received_at"].diff().max(), timeline)
    assert "expected 0.6" in text  # NaN (a lost reading) is not a gap: drop them first


def test_total_deliveries(capsys):
    checks.check_total_deliveries(lambda n, p, q: p if q else n * p)
    assert "right for 2 cases" in capsys.readouterr().out
    text = fails(checks.check_total_deliveries, lambda n, p, q: n * p)
    assert "one queue group" in text and "expected 300" in text
