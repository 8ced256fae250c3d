"""trashlab.checks: what a student sees when running an exercise's check cell (✔, or ✘ saying what to fix)."""

from __future__ import annotations

import asyncio
import time

import pandas as pd
import pytest

import trashlab
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


# ----- wire format ---------------------------------------------------------------------------------
def test_right_payload_prints_a_tick(capsys):
    checks.check_wire_format(lambda c, lvl: trashlab.encode(c, lvl))
    out = capsys.readouterr().out
    assert out.startswith("✔ ") and '{"can_id":"135", "level":"42.930236081376314"}' in out


def test_numbers_instead_of_strings_are_named():
    text = fails(checks.check_wire_format, lambda c, lvl: ('{"can_id":%s, "level":%r}' % (c, lvl)).encode())
    assert "both values are JSON strings" in text and "expected" in text


def test_str_instead_of_bytes_says_encode():
    assert ".encode()" in fails(checks.check_wire_format, lambda c, lvl: trashlab.encode(c, lvl).decode())


def test_json_dumps_spacing_shows_the_exact_expected_bytes():
    import json
    text = fails(checks.check_wire_format, lambda c, lvl: json.dumps({"can_id": c, "level": repr(lvl)}).encode())
    assert 'expected exactly b\'{"can_id":"135", "level":"42.930236081376314"}\'' in text


def test_unwritten_answer_says_what_to_replace():
    text = fails(checks.check_wire_format, not_written)
    assert "not written yet" in text and "raise NotImplementedError()" in text


def test_a_bug_in_the_answer_is_one_line_with_the_call():
    text = fails(checks.check_count, lambda f, c: f["can"], READINGS, "1")
    assert "raised KeyError" in text and "(frame, '1')" in text


def test_missing_answer_is_not_a_crash():
    assert "no answer yet" in fails(checks.check_count, None, READINGS, "1")
    assert "should be a function" in fails(checks.check_count, 3, READINGS, "1")


# ----- counting, fractions, gaps -----------------------------------------------------------------
def test_count(capsys):
    checks.check_count(lambda f, c: int((f["can_id"] == c).sum()), READINGS, "1")
    assert "= 2" in capsys.readouterr().out
    text = fails(checks.check_count, lambda f, c: len(f), READINGS, "1")
    assert "returned" not in text and "is 5, expected 2" in text
    assert "expected 2" in fails(checks.check_count, lambda f, c: int((f["can_id"] == int(c)).sum()), READINGS, "1")


def test_count_rejects_a_bool_for_a_number():
    assert "expected 1" in fails(checks.check_count, lambda f, c: True, READINGS, "3")


def test_fraction_full_uses_each_cans_latest_level(capsys):
    def right(f, threshold):
        return float((f.sort_values("received_at").groupby("can_id")["level"].last() > threshold).mean())

    checks.check_fraction_full(right, READINGS, 80)
    assert "1 of 3 cans" in capsys.readouterr().out
    readings = fails(checks.check_fraction_full, lambda f, t: float((f["level"] > t).mean()), READINGS, 80)
    assert "fraction of readings" in readings
    percent = fails(checks.check_fraction_full, lambda f, t: 100 * right(f, t), READINGS, 80)
    assert "percentage" in percent


def test_gap(capsys):
    checks.check_gap(lambda f: f["received_at"].sort_values().diff().max().total_seconds(), READINGS)
    assert "= 3" in capsys.readouterr().out
    assert "total_seconds" in fails(checks.check_gap, lambda f: f["received_at"].diff().max(), READINGS)
    assert "expected 3" in fails(checks.check_gap, lambda f: 0.5, READINGS)
    assert "fewer than 2" in fails(checks.check_gap, lambda f: 0.0, READINGS.head(1))


# ----- asking the report service: bounded waits ------------------------------------------------------
async def test_a_hanging_answer_fails_within_the_timeout():
    async def hangs(can_id):
        await asyncio.sleep(3600)

    started = time.monotonic()
    with pytest.raises(CheckFailed) as info:
        await checks.check_level_reply(hangs, "1", timeout=0.5)
    assert time.monotonic() - started < 5
    assert "did not finish within 0.5 s" in str(info.value)


async def test_level_reply_against_a_real_report_service(broker, capsys):
    report = await trashlab.ReportService(broker.url).start()
    sim = await trashlab.Simulator(broker.url, interval=0, cans=3, count=50, seed=3).start()
    try:
        await sim.wait(timeout=10)
        levels = await trashlab.query_levels(broker.url)
        can = levels["can_id"].iloc[0]

        async def ask(can_id):
            return await trashlab.query_level(can_id, broker.url)

        await checks.check_level_reply(ask, can, broker.url)
        assert f"can {can} at" in capsys.readouterr().out
        with pytest.raises(CheckFailed, match="answered for can"):
            await checks.check_level_reply(lambda c: ask(levels["can_id"].iloc[1]), can, broker.url)
        with pytest.raises(CheckFailed, match="expected the service's reply"):
            await checks.check_level_reply(lambda c: trashlab.query_levels(broker.url), can, broker.url)
    finally:
        await sim.stop()
        await report.stop()


async def test_level_reply_without_a_service_is_a_cross_not_a_hang(broker):
    async def ask(can_id):
        return {"can_id": can_id, "level": 50.0, "readings": 1}

    started = time.monotonic()
    with pytest.raises(CheckFailed, match="run the cells that start it"):
        await checks.check_level_reply(ask, "1", broker.url, timeout=1.0)
    assert time.monotonic() - started < 5


def test_gap_on_a_drill_timeline_in_seconds_with_lost_readings(capsys):
    timeline = checks.example_timeline()
    assert checks.largest_gap(timeline) == pytest.approx(0.6)
    checks.check_gap(lambda t: t["received_at"].dropna().diff().max(), timeline)
    assert "= 0.6" in capsys.readouterr().out
    text = fails(checks.check_gap, lambda t: t["received_at"].diff().max(), timeline)
    assert "expected 0.6" in text  # NaN (a lost reading) is not a gap: drop them first


def test_fraction_full_example_frame_tells_readings_from_cans():
    frame = checks.example_frame()
    assert "fraction of readings" in fails(checks.check_fraction_full, lambda f, t: float((f["level"] > t).mean()),
                                           frame, 80)


def test_total_deliveries(capsys):
    checks.check_total_deliveries(lambda n, p, q: p if q else n * p)
    assert "right for 2 cases" in capsys.readouterr().out
    text = fails(checks.check_total_deliveries, lambda n, p, q: n * p)
    assert "one queue group" in text and "expected 300" in text


def test_client_names_against_a_real_broker(broker, capsys):
    async def scenario():
        col = await trashlab.Collector(broker.url, name="watcher").start()
        try:
            checks.check_client_names(lambda b: sorted(b.connz()["name"]), broker)
            assert "['watcher']" in capsys.readouterr().out
            assert "expected ['watcher']" in fails(checks.check_client_names, lambda b: list(b.connz()["cid"]), broker)
            assert "return a list" in fails(checks.check_client_names, lambda b: b.connz()["name"], broker)
        finally:
            await col.stop()

    trashlab.run(scenario())
