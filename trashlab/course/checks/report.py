"""Checks of notebook 04 (the report service): the student's subscriber that keeps the latest level
per can, and their responder that answers requests for one can.

Each runs on a private broker of the check's own, with readings and levels the check chose itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from typing import Callable, Optional

import nats.errors

from ...message import SUBJECT, encode
from . import _short, failed, passed
from ._answer import graded, require_function
from ._live import SETTLE, client, poll, private_broker, publish_to, student_subscribes

#: Where the student's responder listens (the same subject trashlab.ReportService answers on).
REQUEST_SUBJECT = "trash-report.level"


def _readings(rng: random.Random) -> "tuple[list, dict]":
    """Readings to publish (some cans twice, the later one differing) and each can's latest level."""
    cans = [str(c) for c in rng.sample(range(1, 1000), 3)]
    levels = [round(rng.uniform(1, 99), 2) for _ in range(5)]
    readings = [(cans[0], levels[0]), (cans[1], levels[1]), (cans[0], levels[2]), (cans[2], levels[3]),
                (cans[1], levels[4])]
    latest: dict = {}
    for can, level in readings:
        latest[can] = level
    return readings, latest


@graded
async def check_latest_levels(keep_latest: Callable, seed: Optional[int] = None) -> None:
    """``await keep_latest(nc, levels)`` subscribes to trash-level and keeps ``levels[can_id] = latest level`` (a float)."""
    name = require_function(keep_latest, "keep_latest")
    readings, expected = _readings(random.Random(seed))
    levels: dict = {}
    async with private_broker() as broker, client(broker.url, "your-report-service") as nc:
        sub = await student_subscribes(keep_latest, nc, levels, what=f"await {name}(nc, levels)")
        await publish_to(broker, [(SUBJECT, encode(can, level)) for can, level in readings], nc, sub)
        await poll(lambda: levels == expected, 0.5 if hasattr(sub, "pending_msgs") else SETTLE)
    shown = ", ".join(f"{c}→{v}" for c, v in readings)
    what = f"{name}(nc, levels) after the check published {shown} on {SUBJECT!r}"
    if not isinstance(levels, dict) or not levels:
        raise failed(f"{what}: levels is still {_short(levels)}: subscribe to {SUBJECT!r} and store each "
                     "reading in the dict you are given (levels[can_id] = level)")
    if levels == expected:
        return passed(f"{what}: levels = {levels}")
    keys = set(levels)
    if keys == {int(c) for c in expected}:
        raise failed(f"{what}: the keys are numbers {sorted(keys)}; can ids are strings ('{readings[0][0]}')")
    if keys != set(expected):
        raise failed(f"{what}: levels has cans {sorted(map(str, keys))}, expected {sorted(expected)}")
    if any(isinstance(v, str) for v in levels.values()):
        raise failed(f"{what}: levels holds strings ({_short(levels)}): the wire carries text, store "
                     "float(level)")
    first: dict = {}
    for can, level in readings:
        first.setdefault(can, level)
    if levels == first:
        raise failed(f"{what}: levels kept each can's first reading {levels}, expected the latest {expected}")
    raise failed(f"{what}: levels is {_short(levels)}, expected {expected}")


@graded
async def check_responder(serve_levels: Callable, seed: Optional[int] = None, timeout: float = 1.0) -> None:
    """``await serve_levels(nc, levels)`` answers requests on trash-report.level with that can's level from ``levels``.

    A request's data is a can id; the reply is ``{"can_id": "<id>", "level": <number>}``, or
    ``{"error": "..."}`` for a can not in ``levels``. The check changes ``levels`` between requests,
    so a constant or remembered answer fails.
    """
    name = require_function(serve_levels, "serve_levels")
    rng = random.Random(seed)
    cans = [str(c) for c in rng.sample(range(1, 1000), 3)]
    levels = {c: round(rng.uniform(1, 99), 2) for c in cans[:2]}
    unknown = cans[2]
    async with private_broker() as broker, client(broker.url, "your-report-service") as nc, \
            contextlib.AsyncExitStack() as stack:
        await student_subscribes(serve_levels, nc, levels, what=f"await {name}(nc, levels)")
        asker = await stack.enter_async_context(client(broker.url, "trashlab-check"))  # after the SUB

        async def ask(can: str) -> dict:
            what = f"request {can!r} on {REQUEST_SUBJECT!r}"
            try:
                msg = await asker.request(REQUEST_SUBJECT, can.encode(), timeout=timeout)
            except nats.errors.NoRespondersError:
                raise failed(f"{what}: no responders: nobody subscribes to {REQUEST_SUBJECT!r}") from None  # a ✘ line for the student; what went wrong is in it
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                hint = ("a can you do not know must get an error reply, not silence: "
                        "await msg.respond(json.dumps({\"error\": ...}).encode())") if can == unknown else \
                    "answer each request with await msg.respond(...)"
                raise failed(f"{what}: no reply within {timeout:g} s: {hint}") from None  # a ✘ line for the student; what went wrong is in it
            try:
                reply = json.loads(msg.data)
            except ValueError:
                raise failed(f"{what}: the reply {msg.data!r} is not JSON") from None  # a ✘ line for the student; what went wrong is in it
            if not isinstance(reply, dict):
                raise failed(f"{what}: the reply {msg.data!r} should be a JSON object")
            return reply

        async def expect(can: str, step: str) -> None:
            reply = await ask(can)
            what = f"request {can!r} on {REQUEST_SUBJECT!r} ({step})"
            if "error" in reply:
                raise failed(f"{what}: got an error {reply['error']!r}, but levels has {can!r}: {levels[can]}")
            if str(reply.get("can_id")) != can:
                raise failed(f"{what}: the reply {reply} is about can {reply.get('can_id')!r}, expected {can!r}")
            level = reply.get("level")
            if isinstance(level, bool) or not isinstance(level, (int, float)):
                raise failed(f"{what}: level {level!r} should be a JSON number, {levels[can]}")
            if abs(float(level) - levels[can]) > 1e-9:
                raise failed(f"{what}: answered level {level}, but levels[{can!r}] is {levels[can]} now: "
                             "look the can up in `levels` at each request")

        await expect(cans[0], "first question")
        await expect(cans[1], "another can")
        levels[cans[0]] = round(100 - levels[cans[0]], 2) if levels[cans[0]] != 50 else 75.5
        await expect(cans[0], "after its level changed")
        reply = await ask(unknown)
        if "error" not in reply:
            raise failed(f"request {unknown!r} (a can nobody reported): the reply {reply} should be "
                         "{\"error\": \"...\"}")
    return passed(f"{name}: right levels for {cans[0]} and {cans[1]}, fresh after a change, "
                  f"an error for unknown can {unknown}")
