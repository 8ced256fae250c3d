"""Exercise checks: each prints ✔ when an answer is right, or raises :class:`CheckFailed` with a ✘ line.

Graded test cells call these, and so can students while they work. A check never hangs (every
wait is bounded), never shows a traceback wall (in Jupyter a failed check is one red line), and
always says what was expected. Answers are usually functions the student writes, so a check can
call them on the notebook's data and tell apart "not written yet", "raised an error" and "wrong".

    from trashlab import checks
    checks.check_wire_format(make_payload)             # ✔ make_payload("135", 42.5) -> b'{"can_id":"135", ...}'
    checks.check_count(count_readings, frame, "135")   # ✘ count_readings(frame, '135') is 3, expected 4: ...

Under nbgrader a test cell earns its points when it ends without an error; anything it writes to
stderr, or a value it leaves as the cell's result, would count too, so checks print ✔ to stdout and
return nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from typing import Any, Callable, Optional, Sequence

import pandas as pd

from ...errors import CanNotFound, CheckFailed, ServiceUnavailable
from ...message import encode

#: The stub nbgrader puts where a solution was removed raises this exception type.
_TODO = NotImplementedError


def passed(text: str) -> None:
    """Print a ✔ line (and return nothing: a value left in a graded cell would be read as partial credit)."""
    print(f"✔ {text}")


def failed(text: str) -> CheckFailed:
    """The exception a failed check raises: its message is the ✘ line (what was wrong, what to do)."""
    return CheckFailed(f"✘ {text}")


def _short(value: Any, limit: int = 70) -> str:
    if isinstance(value, (pd.DataFrame, pd.Series)):  # one line, not the table's printout
        return f"a {type(value).__name__} of {len(value)} rows"
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _call_text(name: str, args: tuple) -> str:
    shown = ", ".join("frame" if isinstance(a, pd.DataFrame) else _short(a, 30) for a in args)
    return f"{name}({shown})"


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", "your function")


def _require_callable(fn: Any, what: str) -> None:
    if fn is None or fn is Ellipsis:
        raise failed(f"{what} has no answer yet: write it in the exercise cell, run that cell, then this one")
    if not callable(fn):
        raise failed(f"{what} should be a function (def ...), got {_short(fn)}")


def call(fn: Callable, *args: Any) -> Any:
    """Call a student's function; turn "not written yet" and any exception into a ✘ that says so."""
    _require_callable(fn, _name(fn))
    text = _call_text(_name(fn), args)
    try:
        return fn(*args)
    except _TODO:
        raise failed(f"{_name(fn)} is not written yet: replace `raise NotImplementedError()` "
                     "with your code, run that cell, then this one") from None
    except CheckFailed:
        raise
    except Exception as e:  # the student's bug: report it in one line
        raise failed(f"{text} raised {type(e).__name__}: {e}") from None


async def acall(fn: Callable, *args: Any, timeout: float = 5.0) -> Any:
    """Like :func:`call` for an ``async def`` function, waiting at most ``timeout`` seconds."""
    _require_callable(fn, _name(fn))
    text = _call_text(_name(fn), args)
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await asyncio.wait_for(result, timeout)
        return result
    except _TODO:
        raise failed(f"{_name(fn)} is not written yet: replace `raise NotImplementedError()` "
                     "with your code, run that cell, then this one") from None
    except asyncio.TimeoutError:
        raise failed(f"{text} did not finish within {timeout:g} s: is the broker running, "
                     "and does every request have a timeout?") from None
    except CheckFailed:
        raise
    except Exception as e:
        raise failed(f"{text} raised {type(e).__name__}: {e}") from None


def need_data(data: Any, columns: Sequence[str], what: str, run: str) -> pd.DataFrame:
    """``data`` as a DataFrame with ``columns``, or the ✘ line saying which cells to run first
    (a check never shows a library traceback because the notebook's data is missing or empty)."""
    if data is None or data is Ellipsis:
        raise failed(f"there is no {what} yet: {run}")
    if not isinstance(data, pd.DataFrame):
        raise failed(f"the {what} should be a DataFrame, got {_short(data)}: {run}")
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise failed(f"the {what} has no column {', '.join(missing)} (columns: {', '.join(map(str, data.columns))}): "
                     f"{run}")
    return data


def _equal(actual: Any, expected: Any) -> bool:
    """``actual == expected`` for any values, tables included (never 'truth value is ambiguous')."""
    if isinstance(actual, (pd.DataFrame, pd.Series)) or isinstance(expected, (pd.DataFrame, pd.Series)):
        return type(actual) is type(expected) and actual.equals(expected)
    try:
        return bool(actual == expected)
    except (TypeError, ValueError):
        return False


# ----- generic comparisons --------------------------------------------------------------------
def check_equal(actual: Any, expected: Any, what: str, hint: str = "") -> None:
    """✔ if ``actual == expected``, else ✘ showing both (and the hint)."""
    if actual is None or actual is Ellipsis:
        raise failed(f"{what} has no answer yet: write it in the exercise cell and run it")
    if isinstance(actual, bool) != isinstance(expected, bool):
        raise failed(f"{what} is {_short(actual)}, expected {_short(expected)}" + (f": {hint}" if hint else ""))
    if _equal(actual, expected):
        return passed(f"{what} = {_short(actual)}")
    raise failed(f"{what} is {_short(actual)}, expected {_short(expected)}" + (f": {hint}" if hint else ""))


def check_close(actual: Any, expected: float, what: str, tol: float = 1e-6, hint: str = "") -> None:
    """✔ if ``actual`` is a number within ``tol`` of ``expected``, else ✘ showing both."""
    if actual is None or actual is Ellipsis:
        raise failed(f"{what} has no answer yet: write it in the exercise cell and run it")
    try:
        number = float(actual)
    except (TypeError, ValueError):
        raise failed(f"{what} should be a number, got {_short(actual)}") from None
    if isinstance(actual, bool) or not math.isfinite(number):
        raise failed(f"{what} should be a finite number, got {_short(actual)}")
    if abs(number - expected) <= tol:
        return passed(f"{what} = {number:.6g}")
    raise failed(f"{what} is {number:.6g}, expected {expected:.6g} (± {tol:g})" + (f": {hint}" if hint else ""))


# ----- the course's exercises ---------------------------------------------------------------------
def check_wire_format(make_payload: Callable, can_id: str = "135", level: float = 42.930236081376314) -> None:
    """``make_payload(can_id, level)`` must return the lab's exact bytes: both values as JSON strings."""
    expected = encode(can_id, level)
    got = call(make_payload, can_id, level)
    what = _call_text(_name(make_payload), (can_id, level))
    if isinstance(got, str):
        raise failed(f"{what} returned a str; NATS sends bytes: add .encode() (expected {expected!r})")
    if not isinstance(got, (bytes, bytearray)):
        raise failed(f"{what} returned {_short(got)}, expected bytes such as {expected!r}")
    got = bytes(got)
    if got == expected:
        return passed(f"{what} -> {got.decode()}")
    try:
        obj = json.loads(got)
    except ValueError:
        raise failed(f"{what} returned {got!r}, which is not JSON; expected {expected!r}") from None
    if not isinstance(obj, dict) or set(obj) != {"can_id", "level"}:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise failed(f"{what} has fields {keys}, expected exactly can_id and level: {expected!r}")
    if not all(isinstance(v, str) for v in obj.values()):
        raise failed(f"{what} returned {got!r}: in the lab's format both values are JSON strings, "
                     f"e.g. \"level\":\"{level!r}\" (expected {expected!r})")
    raise failed(f"{what} returned {got!r}, expected exactly {expected!r} (same order, `, ` between fields, "
                 "the full float repr)")


_RUN_COLLECTOR = "run the collector cells first (a simulator must be publishing), then this one"


def check_count(count_readings: Callable, frame: pd.DataFrame, can_id: Optional[str] = None) -> None:
    """``count_readings(frame, can_id)`` must be the number of rows of ``frame`` for that can
    (``can_id`` left out: the can of the frame's last reading)."""
    need_data(frame, ["can_id"], "readings table", _RUN_COLLECTOR)
    if can_id is None:
        if frame.empty:
            raise failed(f"the readings table is empty: {_RUN_COLLECTOR}")
        can_id = str(frame["can_id"].iloc[-1])
    expected = int((frame["can_id"].astype(str) == str(can_id)).sum())
    got = call(count_readings, frame, can_id)
    what = _call_text(_name(count_readings), (frame, can_id))
    if isinstance(got, (pd.DataFrame, pd.Series)):
        raise failed(f"{what} returned a {type(got).__name__}; return one whole number (expected {expected})")
    return check_equal(got, expected, what,
                       "count the rows whose can_id equals it (can ids are strings: '135', not 135)")


def latest_levels(frame: pd.DataFrame) -> pd.Series:
    """The latest level of each can in a collector frame (indexed by can_id)."""
    ordered = frame.sort_values("received_at", kind="stable") if "received_at" in frame else frame
    return ordered.groupby("can_id")["level"].last()


def check_fraction_full(fraction_full: Callable, frame: pd.DataFrame, threshold: float = 80.0) -> None:
    """``fraction_full(frame, threshold)``: the fraction of cans whose latest level is above ``threshold``."""
    need_data(frame, ["can_id", "level"], "readings table", _RUN_COLLECTOR)
    latest = latest_levels(frame)
    if latest.empty:
        raise failed("the frame has no readings yet: run the collector cells first, then this one")
    expected = float((latest > threshold).mean())
    got = call(fraction_full, frame, threshold)
    what = _call_text(_name(fraction_full), (frame, threshold))
    try:
        number = float(got)
    except (TypeError, ValueError):
        raise failed(f"{what} returned {_short(got)}, expected one number between 0 and 1") from None
    if abs(number - expected) <= 1e-9:
        return passed(f"{what} = {number:.3f} ({int((latest > threshold).sum())} of {len(latest)} cans)")
    readings = float((frame["level"] > threshold).mean())
    if abs(number - readings) <= 1e-9 and abs(readings - expected) > 1e-9:
        hint = "that is the fraction of readings; the question is about cans (each can's latest level)"
    elif abs(number - 100 * expected) <= 1e-6:
        hint = "that is a percentage; return a fraction between 0 and 1"
    else:
        hint = "take each can's latest level, then the share of cans above the threshold"
    raise failed(f"{what} is {number:.6g}, expected {expected:.6g}: {hint}")


async def check_level_reply(ask_level: Callable, can_id: str, servers: Any = None, timeout: float = 5.0) -> None:
    """``await ask_level(can_id)`` must return the report service's reply for that can (a dict)."""
    from ...services.report import query_level

    got = await acall(ask_level, can_id, timeout=timeout)
    what = f"await {_call_text(_name(ask_level), (can_id,))}"
    if not isinstance(got, dict) or "level" not in got or "can_id" not in got:
        raise failed(f"{what} returned {_short(got)}, expected the service's reply: a dict with "
                     "can_id, level, updated_at and readings (trashlab.query_level gives one)")
    if str(got["can_id"]) != str(can_id):
        raise failed(f"{what} answered for can {got['can_id']!r}, expected can {str(can_id)!r}")
    try:
        fresh = await asyncio.wait_for(query_level(can_id, servers, timeout=min(2.0, timeout)), timeout)
    except (ServiceUnavailable, CanNotFound, asyncio.TimeoutError) as e:
        raise failed(f"could not ask the report service myself ({e}): run the cells that start it") from None
    if not 0.0 <= float(got["level"]) <= 100.0:
        raise failed(f"{what} has level {got['level']!r}, expected a number between 0 and 100")
    if int(got.get("readings", 0)) > int(fresh["readings"]):
        raise failed(f"{what} claims {got['readings']} readings, the service has only {fresh['readings']}")
    return passed(f"{what}: can {got['can_id']} at {float(got['level']):.1f} % "
                  f"({got.get('readings', '?')} readings)")


def largest_gap(frame: pd.DataFrame) -> float:
    """The longest silence between two consecutive arrivals (``received_at``: datetimes or seconds), in seconds."""
    times = frame["received_at"].dropna().sort_values()
    if len(times) < 2:
        return 0.0
    gaps = times.diff().dropna()
    if pd.api.types.is_timedelta64_dtype(gaps):
        gaps = gaps.dt.total_seconds()
    return float(gaps.max())


def example_timeline() -> pd.DataFrame:
    """A tiny failover timeline: one row per sequence number, ``received_at`` in seconds, NaN when lost."""
    return pd.DataFrame({"seq": [1, 2, 3, 4, 5, 6],
                         "received_at": [10.0, 10.1, float("nan"), 10.7, 10.8, float("nan")]})


def example_frame() -> pd.DataFrame:
    """A tiny collector frame where the share of readings above 80 % differs from the share of cans."""
    rows = [("1", 95.0, 0.0), ("2", 85.0, 0.5), ("1", 20.0, 1.0), ("3", 81.0, 1.5), ("1", 90.0, 2.0),
            ("4", 10.0, 2.5), ("2", 60.0, 3.0)]
    return pd.DataFrame({"can_id": [r[0] for r in rows], "level": [r[1] for r in rows],
                         "received_at": pd.to_datetime([r[2] for r in rows], unit="s", utc=True)})


def check_gap(gap_seconds: Callable, frame: pd.DataFrame, tol: float = 1e-6) -> None:
    """``gap_seconds(frame)``: the longest silence between consecutive arrivals (``received_at``), in seconds."""
    need_data(frame, ["received_at"], "timeline", "run the failover cells first, then this one")
    if frame["received_at"].notna().sum() < 2:
        raise failed("the timeline has fewer than 2 arrivals: run the failover cells first, then this one")
    expected = largest_gap(frame)
    got = call(gap_seconds, frame)
    what = _call_text(_name(gap_seconds), (frame,))
    if isinstance(got, pd.Timedelta):
        raise failed(f"{what} returned a Timedelta ({got}); return seconds as a float: .total_seconds()")
    return check_close(got, expected, what, tol,
                       "sort the arrival times (drop the lost ones), take the differences between "
                       "neighbours, keep the largest")


def check_client_names(client_names: Callable, broker: Any) -> None:
    """``client_names(broker)``: the sorted names of the clients connected now (from the monitoring port)."""
    if not callable(getattr(broker, "connz", None)) or not getattr(broker, "running", False):
        raise failed(f"{_short(broker)} is not a running broker: run the cell that starts it "
                     "(broker = trashlab.Broker(\"iot-msg\").start()), then this one")
    got = call(client_names, broker)
    expected = sorted(str(n) for n in broker.connz()["name"])
    what = _call_text(_name(client_names), ("broker",)).replace("'broker'", "broker")
    if isinstance(got, (pd.DataFrame, pd.Series)):
        raise failed(f"{what} returned a {type(got).__name__}; return a list of names, e.g. {expected}")
    if not isinstance(got, (list, tuple)):
        raise failed(f"{what} returned {_short(got)}, expected a list of names such as {expected}")
    return check_equal([str(n) for n in got], expected, what,
                       "take the name column of broker.connz(), sorted")


def subscribers_total(subscribers: int, published: int, queue: bool) -> int:
    """How many deliveries ``published`` messages make to ``subscribers`` subscribers (one queue group or fan-out)."""
    if subscribers < 1:
        return 0
    return published if queue else subscribers * published


def check_total_deliveries(total_deliveries: Callable,
                           cases: Sequence = ((3, 300, False), (3, 300, True))) -> None:
    """``total_deliveries(subscribers, published, queue)`` for each case: fan-out multiplies, a queue group shares."""
    for args in cases:
        expected = subscribers_total(*args)
        got = call(total_deliveries, *args)
        if isinstance(got, bool) or not isinstance(got, (int, float)) or got != expected:
            kind = "one queue group" if args[2] else "fan-out (plain subscriptions)"
            raise failed(f"{_call_text(_name(total_deliveries), args)} is {_short(got)}, expected {expected}: "
                         f"{args[0]} subscribers in {kind}, {args[1]} messages published")
    return passed(f"{_name(total_deliveries)} is right for {len(cases)} cases")
