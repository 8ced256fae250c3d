"""Checks of notebook 07 (several simulators): the student measures the rate arriving on a subject.

The check starts a broker of its own, connects a client for the student and starts
``await receive_rate(nc, subject, seconds)``. Once the server shows the student's subscription, the
check publishes a number of readings it chose, all inside the window, and compares the rate returned
with that number (and with what the server says it delivered to the student's connection).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Callable

from . import failed, passed
from ._answer import answer, graded, require_function
from ._live import poll, session
from ._truth import connection, subscriptions
from ...message import encode


@graded
async def check_rate(receive_rate: Callable, seconds: float = 1.0, published: int = 40,
                     subject: str = "trash-level") -> None:
    """``await receive_rate(nc, subject, seconds)`` must subscribe, count for ``seconds`` and return
    messages per second (a number); the check publishes ``published`` readings inside the window."""
    name = require_function(receive_rate, "receive_rate")
    what = f"await {name}(nc, {subject!r}, {seconds:g})"
    async with session("check-publisher") as (broker, nc, pub):
        started = time.monotonic()
        task = asyncio.ensure_future(answer(receive_rate, nc, subject, seconds, what=what, timeout=seconds + 5))
        subs = await poll(lambda: task.done() or [s for s in subscriptions(connection(broker.monitor_url,
                                                                                      nc.client_id))
                                                  if s.get("subject") == subject],
                          timeout=seconds * 0.6)
        if subs and subs is not True:  # a burst, well inside the window even on a busy machine
            for seq in range(1, published + 1):
                await pub.publish(subject, encode(str(seq), float(seq % 100)))
            await pub.flush()
        got = await task
        took = time.monotonic() - started
        record = connection(broker.monitor_url, nc.client_id) or {}
        _judge(got, took, int(record.get("out_msgs", 0)), bool(subs and subs is not True),
               published, seconds, what)


def _judge(got, took: float, delivered: int, subscribed: bool, published: int, seconds: float, what: str) -> None:
    expected = published / seconds
    if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(float(got)):
        raise failed(f"{what} returned {got!r}, expected a number of messages per second such as {expected:g}")
    if took < seconds * 0.9:
        raise failed(f"{what} returned after {took:.2f} s, before its {seconds:g} s window ended: "
                     "`await asyncio.sleep(seconds)` while the subscription counts")
    if not subscribed:
        raise failed(f"during {what} the server saw no subscription on {what.split(',')[1].strip()} from "
                     "your connection: `await nc.subscribe(subject, cb=...)` first")
    if abs(float(got) * seconds - published) < 0.5:  # every reading counted (dividing by a measured time is fine)
        return passed(f"{what} = {float(got):g} msg/s; the check published {published} readings in your "
                      f"{seconds:g} s window and the server delivered {delivered} to your connection")
    if abs(float(got) - published) < 0.5 and abs(expected - published) >= 0.5:
        hint = "that is the count; divide by the seconds"
    elif abs(abs(float(got) * seconds - published) - 1) < 0.5:
        hint = "one message off: count once per message, in the callback"
    else:
        hint = "count every message your subscription receives, divide by the seconds"
    raise failed(f"{what} is {float(got):g}, expected {expected:g} msg/s: the check published {published} "
                 f"readings in your {seconds:g} s window (the server delivered {delivered} to you): {hint}")
