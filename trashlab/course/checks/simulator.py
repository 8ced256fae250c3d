"""Checks of notebooks 03 and 07: the student's ``sim.py`` program (one copy, then several at once), a wildcard subscription.

Each runs on a private broker of the check's own and judges only what that broker carried.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from typing import Any, AsyncIterator, Callable, Sequence

from ...message import SUBJECT
from ...servers.monitor import fetch
from . import _short, failed, passed
from ._answer import answer, graded, require_function
from ._live import (CONNECT_WITHIN, SETTLE, USE_NATS_URL, client, clients_seen, crashed, delivered, poll,
                    private_broker, program_file, publish_to, student_program, student_subscribes)

#: sim.js's bytes: ``{"can_id":"135", "level":"42.930236081376314"}`` (no space after ``:``, one after ``,``).
WIRE = re.compile(rb'^\{"can_id":"(\d{1,4})", "level":"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"\}$')


def _format_problem(data: bytes) -> str:
    """Why ``data`` is not in the lab's wire format (one phrase)."""
    try:
        obj = json.loads(data)
    except ValueError:
        return f"{data!r} is not JSON"
    if not isinstance(obj, dict) or set(obj) != {"can_id", "level"}:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        return f"{data!r} has fields {keys}, expected exactly can_id and level"
    bad = [k for k, v in obj.items() if not isinstance(v, str)]
    if bad:
        return (f"{data!r}: in the lab's format both values are JSON strings (\"{bad[0]}\":\"...\"), "
                f"not {type(obj[bad[0]]).__name__}")
    return f"{data!r} is not byte for byte sim.js's format: '{{\"can_id\":\"135\", \"level\":\"42.93\"}}'"


def _judge(arrived: "list[tuple[float, bytes]]", elsewhere: "list[str]", count: int, interval: float,
           what: str, fewer: str = "") -> float:
    """✘ unless ``arrived`` (arrival time, bytes) is ``count`` readings in sim.js's format, ``interval`` s apart;
    the seconds from first to last. ``fewer`` is the hint when fewer than ``count`` arrived."""
    if not arrived:
        where = f" (it carried {len(elsewhere)} on {sorted(set(elsewhere))[:3]})" if elsewhere else ""
        raise failed(f"{what}: nothing arrived on {SUBJECT!r}{where}: publish on the lab's subject "
                     "with await nc.publish(\"trash-level\", payload)")
    if len(arrived) != count:
        raise failed(f"{what}: {len(arrived)} readings arrived, expected exactly {count}"
                     + (fewer if len(arrived) < count else ""))
    ids, levels = [], []
    for _, data in arrived:
        m = WIRE.match(data)
        if not m:
            raise failed(f"{what}: {_format_problem(data)}")
        ids.append(int(m.group(1)))
        levels.append(float(m.group(2)))
    if not all(0 <= i <= 1000 for i in ids):
        raise failed(f"{what}: can ids {ids}: sim.js picks whole numbers from 0 to 1000")
    if not all(0.0 <= v <= 100.0 for v in levels):
        raise failed(f"{what}: levels {_short(levels)}: a level is a percentage, from 0 to 100")
    if count >= 3 and (len(set(levels)) == 1 or len(set(ids)) == 1):
        raise failed(f"{what}: every reading is the same ({arrived[0][1]!r}): pick a random can and level "
                     "each time (random.randint(0, 1000), random.random() * 100)")
    span = arrived[-1][0] - arrived[0][0]
    want = interval * (count - 1)
    if span < 0.5 * want:
        raise failed(f"{what}: the {count} readings arrived within {span:.2f} s, expected about {want:.2f} s: "
                     "wait `interval` between them with await asyncio.sleep(interval) (time.sleep blocks "
                     "the loop, so nothing is sent until the end)")
    if span > 3 * want + 1.0:
        raise failed(f"{what}: the readings took {span:.2f} s, expected about {want:.2f} s "
                     f"(one every {interval:g} s)")
    return span


#: The connection name of the check's own subscriber.
WATCHER = "trashlab-check"


@contextlib.asynccontextmanager
async def _watched() -> AsyncIterator[tuple]:
    """A private broker and the check's own subscriber to it: ``(broker, watch, subs, arrived, elsewhere)``,
    ``arrived`` filling with ``(arrival time, bytes)`` of each reading on trash-level, ``elsewhere`` with the
    subjects of anything else."""
    arrived: "list[tuple[float, bytes]]" = []
    elsewhere: "list[str]" = []
    async with private_broker() as broker, client(broker.url, WATCHER) as watch:
        async def on_reading(msg) -> None:
            arrived.append((time.monotonic(), msg.data))

        async def on_any(msg) -> None:
            if msg.subject != SUBJECT:
                elsewhere.append(msg.subject)
        subs = [await watch.subscribe(SUBJECT, cb=on_reading), await watch.subscribe(">", cb=on_any)]
        await watch.flush()
        yield broker, watch, subs, arrived, elsewhere


@graded
async def check_publish_readings(publish_readings: Callable, count: int = 5, interval: float = 0.1) -> None:
    """``await publish_readings(nc, count, interval)``: ``count`` readings on trash-level, sim.js's format, ``interval`` apart."""
    name = require_function(publish_readings, "publish_readings")
    what = f"await {name}(nc, {count}, {interval:g})"
    async with _watched() as (broker, watch, subs, arrived, elsewhere):
        async with client(broker.url, "your-publisher") as nc:  # connected after the SUBs: see _live.client
            await answer(publish_readings, nc, count, interval, what=what, timeout=count * interval * 3 + 5)
            await delivered(nc, watch, subs)
        await poll(lambda: len(arrived) >= count, SETTLE)  # in case the student closed nc
    span = _judge(arrived, elsewhere, count, interval, what)
    return passed(f"{what}: {count} readings in sim.js's format, {span:.2f} s from first to last")


@graded
async def check_sim_program(path: Any = "sim.py", interval: float = 0.2, count: int = 5) -> None:
    """``python sim.py INTERVAL COUNT`` with the broker in ``$NATS_URL``: ``count`` readings, sim.js's format, then it ends."""
    file = program_file(path, "sim.py")
    what = f"python {file.name} {interval:g} {count}"
    limit = count * interval * 2 + 10  # a busy machine starts a Python process in a few seconds
    async with _watched() as (broker, watch, subs, arrived, elsewhere):
        async with student_program(file, f"{interval:g}", count, broker=broker) as program:
            started = time.monotonic()
            await poll(lambda: not program.alive or arrived, min(limit, CONNECT_WITHIN))
            if program.alive and not arrived and not clients_seen(broker.monitor_url, WATCHER):
                raise failed(f"{what}: still running after {time.monotonic() - started:.0f} s, and it never "
                             "connected to the broker it was given: " + USE_NATS_URL)
            await poll(lambda: not program.alive or len(arrived) > count, limit - (time.monotonic() - started))
            connected = clients_seen(broker.monitor_url, WATCHER) > 0
            if program.alive:
                raise failed(f"{what}: {len(arrived)} readings arrived and it was still running after "
                             f"{time.monotonic() - started:.0f} s"
                             + (": it should stop after COUNT readings (the second argument)"
                                if len(arrived) > count else
                                ": after COUNT readings it should drain the connection and end"))
            await program.wait(2)
            await delivered(None, watch, subs)  # what the server took from the program before it ended is here
    if program.returncode != 0:
        raise crashed(program, what)
    if not arrived and not elsewhere and not connected:
        raise failed(f"{what}: it never connected to the broker it was given: " + USE_NATS_URL)
    span = _judge(arrived, elsewhere, count, interval, what,
                  fewer=": the last ones were still in nats-py's buffer when the program ended; drain the "
                        "connection (await nc.drain()) before it ends")
    return passed(f"{what}: {count} readings in sim.js's format, {span:.2f} s from first to last, then it ended")


def _printed(program: Any) -> "list[str]":
    """The payloads a sim.py printed, one per ``publishing: ...`` line."""
    return [line.split("publishing: ", 1)[1] for line in program.stdout() if line.startswith("publishing: ")]


@graded
async def check_sim_copies(path: Any = "sim.py", copies: int = 3, interval: float = 0.05, count: int = 6) -> None:
    """``copies`` + 1 runs of ``python sim.py INTERVAL COUNT SEED`` at once on one broker (seeds chosen now, the
    last repeating the first): the broker's ``in_msgs`` is the sum of what each printed, a seed fixes the readings."""
    file = program_file(path, "sim.py")
    seeds = random.sample(range(1, 100_000), copies)
    seeds.append(seeds[0])
    what = f"{len(seeds)} copies of python {file.name} {interval:g} {count} SEED at once (seeds {seeds})"
    limit = count * interval * 2 + 15  # several Python processes start on a busy machine
    async with _watched() as (broker, watch, subs, arrived, elsewhere):
        before = int(fetch(broker.monitor_url, "varz").get("in_msgs", 0))
        async with contextlib.AsyncExitStack() as stack:
            programs = [await stack.enter_async_context(student_program(file, f"{interval:g}", count, seed,
                                                                        broker=broker)) for seed in seeds]
            started = time.monotonic()
            await poll(lambda: not any(p.alive for p in programs), limit)
            if any(p.alive for p in programs):
                raise failed(f"{what}: still running after {time.monotonic() - started:.0f} s, "
                             f"{len(arrived)} readings arrived: each copy should end after COUNT readings")
            for program in programs:
                await program.wait(2)
            await delivered(None, watch, subs)
        saw = int(fetch(broker.monitor_url, "varz").get("in_msgs", 0)) - before
    for program in programs:
        if program.returncode != 0:
            raise crashed(program, what)
    printed = [_printed(p) for p in programs]
    if any(len(lines) != count for lines in printed):
        raise failed(f"{what}: the copies printed {[len(lines) for lines in printed]} `publishing:` lines, "
                     f"expected {count} each")
    total = sum(map(len, printed))
    if saw != total or len(arrived) != total:
        raise failed(f"{what}: the copies printed {total} readings, the broker took in {saw} and delivered "
                     f"{len(arrived)} on {SUBJECT!r}: every printed reading must be published, and only those")
    for _, data in arrived:
        if not WIRE.match(data):
            raise failed(f"{what}: {_format_problem(data)}")
    if sorted(d.decode(errors="replace") for _, d in arrived) != sorted(sum(printed, [])):
        raise failed(f"{what}: the readings on {SUBJECT!r} are not the ones the copies printed: print "
                     "exactly the payload you publish")
    if count >= 3 and any(len(set(lines)) == 1 for lines in printed):
        raise failed(f"{what}: a copy printed the same reading {count} times ({printed[0][0]}): seed once, "
                     "before the loop, not before each reading")
    if printed[0] != printed[-1]:
        raise failed(f"{what}: the two copies with seed {seeds[0]} published different readings "
                     f"({printed[0][0]} and {printed[-1][0]} first): seed the random generator with "
                     "the third argument, before the first reading")
    if len({tuple(lines) for lines in printed[:-1]}) != copies:
        raise failed(f"{what}: copies with different seeds published the same readings: "
                     "seed with the number given, not a constant")
    return passed(f"{what}: the broker took in {saw} readings = {' + '.join(str(len(p)) for p in printed)} "
                  f"printed by the copies; the same seed gave the same readings")


#: Subjects of the wildcard exercise: those to catch, those to leave alone.
CATCH = ("trash.north.level", "trash.south.level")
MISS = ("trash.north.alarm",)


@graded
async def check_wildcard(watch_levels: Callable, catch: Sequence[str] = CATCH, miss: Sequence[str] = MISS) -> None:
    """``await watch_levels(nc, seen)`` subscribes so that the subjects in ``catch`` land in ``seen``, those in ``miss`` not."""
    name = require_function(watch_levels, "watch_levels")
    seen: list = []
    async with private_broker() as broker, client(broker.url, "your-subscriber") as nc:
        sub = await student_subscribes(watch_levels, nc, seen, what=f"await {name}(nc, seen)")
        await publish_to(broker, [(s, b'{"can_id":"7", "level":"50.0"}') for s in list(catch) + list(miss)], nc, sub)
        await poll(lambda: len(seen) >= len(catch), 0.5)
    what = f"{name}(nc, seen) then messages on {', '.join(list(catch) + list(miss))}"
    got = [s.decode() if isinstance(s, (bytes, bytearray)) else s for s in seen]
    if any(not isinstance(s, str) for s in got):
        raise failed(f"{what}: seen holds {_short(seen)}; append each message's subject (msg.subject)")
    wrong = sorted(set(got) & set(miss))
    lost = sorted(set(catch) - set(got))
    if wrong:
        raise failed(f"{what}: caught {wrong}, which is not a level reading: `*` stands for exactly one "
                     "token, `>` for all the rest; keep fixed the tokens that tell a level reading apart")
    if lost:
        raise failed(f"{what}: missed {lost} (seen: {sorted(got)}): a wildcard stands for one token of "
                     "the subject; which token differs between districts?")
    if sorted(got) != sorted(catch):
        raise failed(f"{what}: seen is {sorted(got)}, expected each of {sorted(catch)} once")
    return passed(f"{what}: caught {len(catch)}, left {len(miss)} alone")
