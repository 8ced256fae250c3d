"""Checks of notebook 04 (the report service): the student's ``rep.py`` (prints each report, keeps the latest
level per can, answers requests for one can, an error for an unknown can; one check per behaviour), and the
function versions of the subscriber and the responder.

Each runs on a private broker of the check's own, with readings and levels the check chose itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from typing import Any, Callable, Optional

import nats.errors

from ...message import SUBJECT, encode
from ...services.programs import Program
from . import _short, failed, passed
from ._answer import answer, graded, require_function
from ._live import (SETTLE, client, ended, poll, private_broker, program_file, publish_to, student_program,
                    student_subscribes, subscribed)
from ._live import json_object as _json_object

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
            return _json_object(msg.data, what)

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


# ----- rep.py: the student's report service as a program of its own ---------------------------------------
#: The connection name of the check's own publisher and asker (never taken for the student's program).
CHECKER = "trashlab-check"
#: How long a request to the student's program waits for its reply.
REPLY_WITHIN = 3.0


@contextlib.asynccontextmanager
async def _rep_running(path: Any, what: str, subjects: "tuple[str, ...]"):
    """A private broker, the student's rep.py running against it (subscribed to ``subjects``), and a connection
    of the check's own, connected after those subscriptions: ``(broker, program, nc)``."""
    file = program_file(path, "rep.py")
    async with private_broker() as broker, student_program(file, broker=broker) as program:
        await subscribed(program, broker, subjects, what, CHECKER)
        async with client(broker.url, CHECKER) as nc:
            yield broker, program, nc


async def _publish(nc, readings: "list[tuple[str, float]]") -> "list[str]":
    """Publish ``readings`` in the lab's format; once the server has them, the payloads as text."""
    payloads = [encode(can, level) for can, level in readings]
    for data in payloads:
        await nc.publish(SUBJECT, data)
    await nc.flush(timeout=2)
    return [p.decode() for p in payloads]


async def _ask(nc, program: Program, can: str, what: str) -> dict:
    """Request ``can`` on trash-report.level; the reply as a JSON object, or the ✘ line saying why not."""
    asked = f"{what}: request {can!r} on {REQUEST_SUBJECT!r}"
    try:
        msg = await nc.request(REQUEST_SUBJECT, can.encode(), timeout=REPLY_WITHIN)
    except nats.errors.NoRespondersError:
        if await program.wait(1) is not None:  # it subscribed, then ended: why, rather than the symptom
            raise await ended(program, what, " after it subscribed") from None  # a ✘ line for the student; what went wrong is in it
        raise failed(f"{asked}: no responders: nobody subscribes to {REQUEST_SUBJECT!r} any more") from None  # a ✘ line for the student; what went wrong is in it
    except (nats.errors.TimeoutError, asyncio.TimeoutError):
        if await program.wait(1) is not None:  # it ended while the request was on its way to it
            raise await ended(program, what, " after it subscribed") from None  # a ✘ line for the student; what went wrong is in it
        said = program.stderr(1)
        raise failed(f"{asked}: no reply within {REPLY_WITHIN:g} s: answer every request with "
                     "await msg.respond(...)" + (f" (its stderr: {program.failure(1)})" if said else "")) from None  # a ✘ line for the student; what went wrong is in it
    return _json_object(msg.data, asked)


async def _answers(nc, program: Program, can: str, level: float, what: str) -> None:
    """✔ once a request for ``can`` is answered with ``level`` (asked again for up to SETTLE s while the
    program may still be taking in the reading), else the ✘ line about its last reply."""
    deadline = asyncio.get_running_loop().time() + SETTLE
    while True:
        reply = await _ask(nc, program, can, what)
        got = reply.get("level")
        if (str(reply.get("can_id")) == can and not isinstance(got, bool) and isinstance(got, (int, float))
                and abs(float(got) - level) < 1e-9):
            return
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    asked = f"{what}: request {can!r} on {REQUEST_SUBJECT!r}"
    if "error" in reply:
        raise failed(f"{asked}: got the error {reply['error']!r}, but the check published a reading of can {can}")
    if str(reply.get("can_id")) != can:
        raise failed(f"{asked}: the reply {reply} is about can {reply.get('can_id')!r}, expected {can!r}")
    if isinstance(got, str):
        raise failed(f"{asked}: level {got!r} is a string; reply with the number (float(...)) of the latest reading")
    raise failed(f"{asked}: answered level {_short(got)}, but the latest reading of can {can} said {level}")


@graded
async def check_rep_reports(path: Any = "rep.py", seed: Optional[int] = None) -> None:
    """``python rep.py``: prints ``Received report: <payload>`` for each reading on trash-level, like rep.js."""
    readings, _ = _readings(random.Random(seed))
    what = f"python {path}"
    async with _rep_running(path, what, (SUBJECT,)) as (_, program, nc):
        texts = await _publish(nc, readings)
        want = [f"Received report: {t}" for t in texts]
        await poll(lambda: [ln for ln in program.stdout() if ln.startswith("Received")] == want or not program.alive,
                   SETTLE)
        printed = [ln for ln in program.stdout() if ln.strip()]
        if not program.alive:
            raise await ended(program, what, " after it subscribed")
    got = [ln for ln in printed if ln.startswith("Received")]
    if got == want:
        return passed(f"{what}: printed 'Received report: ...' for each of the {len(want)} readings, in order")
    shown = _short(printed[-3:], 160)
    raise failed(f"{what}: after {len(want)} readings on {SUBJECT!r} it printed {len(got)} 'Received report:' lines "
                 f"(its last lines: {shown}); expected e.g. {want[0]!r}: rep.js prints the payload as it came")


@graded
async def check_rep_levels(path: Any = "rep.py", seed: Optional[int] = None) -> None:
    """``python rep.py`` answers ``{"can_id": ..., "level": <number>}`` on trash-report.level with each can's latest level."""
    rng = random.Random(seed)
    readings, latest = _readings(rng)
    what = f"python {path}"
    async with _rep_running(path, what, (SUBJECT, REQUEST_SUBJECT)) as (_, program, nc):
        await _publish(nc, readings)
        for can, level in latest.items():
            await _answers(nc, program, can, level, f"{what} after {len(readings)} readings")
        can = readings[0][0]
        newer = round(100 - latest[can], 2) if latest[can] != 50 else 75.5
        await _publish(nc, [(can, newer)])
        await _answers(nc, program, can, newer, f"{what} after a newer reading of can {can} ({newer})")
    return passed(f"{what}: the latest level of each of {len(latest)} cans, fresh after a newer reading")


@graded
async def check_rep_unknown(path: Any = "rep.py", seed: Optional[int] = None) -> None:
    """``python rep.py`` answers a request for a can nobody reported with ``{"error": "..."}``, never silence."""
    rng = random.Random(seed)
    readings, latest = _readings(rng)
    unknown = str(rng.choice([c for c in range(1, 1000) if str(c) not in latest]))
    what = f"python {path}"
    async with _rep_running(path, what, (SUBJECT, REQUEST_SUBJECT)) as (_, program, nc):
        await _publish(nc, readings)
        reply = await _ask(nc, program, unknown, f"{what} (can {unknown} never reported)")
    if "error" not in reply:
        raise failed(f"{what}: request {unknown!r} (a can nobody reported): the reply {_short(reply)} should be "
                     "{\"error\": \"...\"}")
    return passed(f"{what}: an error reply for can {unknown}, which nobody reported: {_short(reply)}")


# ----- the asking side ---------------------------------------------------------------------------------------
#: What ``ask_level`` returns when nobody answers on the subject at all, and when the answer does not come in time.
NO_SERVICE = {"error": "no report service"}
TOO_LATE = {"error": "no answer in time"}


@graded
async def check_requester(ask_level: Callable, timeout: Optional[float] = None) -> None:
    """``await ask_level(nc, can_id, timeout)``: the reply as a dict, or NO_SERVICE / TOO_LATE, never later than ``timeout``."""
    name = require_function(ask_level, "ask_level")
    rng = random.Random()
    timeout = timeout if timeout is not None else round(rng.uniform(0.3, 0.6), 2)
    can, level = str(rng.randint(1, 999)), round(rng.uniform(1, 99), 2)
    async with private_broker() as broker:
        async def timed(step: str) -> "tuple[Any, float]":
            what = f"await {name}(nc, {can!r}, {timeout:g}) {step}"
            # a connection of its own for each question, made after the service subscribed (see _live.client)
            async with client(broker.url, "your-requester") as nc:
                started = asyncio.get_running_loop().time()
                got = await answer(ask_level, nc, can, timeout, what=what, timeout=timeout + 5)
                return got, asyncio.get_running_loop().time() - started

        got, took = await timed("with nobody subscribed to 'trash-report.level'")
        if got != NO_SERVICE:
            raise failed(f"{name} with nobody subscribed returned {_short(got)}, expected {NO_SERVICE}: the server "
                         "answers at once that there are no responders (nats.errors.NoRespondersError)")
        async with client(broker.url, CHECKER) as service:
            async def silent(msg) -> None:
                pass  # takes the request, never answers
            sub = await service.subscribe(REQUEST_SUBJECT, cb=silent)
            await service.flush()
            got, took = await timed("to a service that never answers")
            if got != TOO_LATE:
                raise failed(f"{name} to a service that never answers returned {_short(got)}, expected {TOO_LATE}: "
                             "the request gives up after `timeout` (nats.errors.TimeoutError)")
            if took > timeout + 1.0:
                raise failed(f"{name} to a service that never answers took {took:.1f} s with timeout={timeout:g}: "
                             "give the request the timeout you were given")
            await sub.unsubscribe()

            async def respond(msg) -> None:
                await msg.respond(json.dumps({"can_id": msg.data.decode(), "level": level}).encode())
            await service.subscribe(REQUEST_SUBJECT, cb=respond)
            await service.flush()
            got, took = await timed("to a service that answers")
        want = {"can_id": can, "level": level}
        if got != want:
            raise failed(f"{name} to a service that answers returned {_short(got)}, expected the reply as a dict, {want}"
                         " (json.loads of the reply's data)")
    return passed(f"{name}: {NO_SERVICE} with no service, {TOO_LATE} after {timeout:g} s of silence, "
                  "the reply otherwise")
