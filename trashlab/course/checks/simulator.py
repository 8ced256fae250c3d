"""Checks of notebook 03 (the simulator): the student's publisher, and a wildcard subscription.

Each runs on a private broker of the check's own and judges only what that broker carried.
"""

from __future__ import annotations

import json
import re
import time
from typing import Callable, Sequence

from ...message import SUBJECT
from . import _short, failed, passed
from ._answer import answer, graded, require_function
from ._live import SETTLE, client, delivered, poll, private_broker, publish_to, student_subscribes

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


@graded
async def check_publish_readings(publish_readings: Callable, count: int = 5, interval: float = 0.1) -> None:
    """``await publish_readings(nc, count, interval)``: ``count`` readings on trash-level, sim.js's format, ``interval`` apart."""
    name = require_function(publish_readings, "publish_readings")
    arrived: list = []
    elsewhere: list = []
    what = f"await {name}(nc, {count}, {interval:g})"
    async with private_broker() as broker, client(broker.url, "trashlab-check") as watch:
        async def on_reading(msg) -> None:
            arrived.append((time.monotonic(), msg.data))

        async def on_any(msg) -> None:
            if msg.subject != SUBJECT:
                elsewhere.append(msg.subject)
        subs = [await watch.subscribe(SUBJECT, cb=on_reading), await watch.subscribe(">", cb=on_any)]
        await watch.flush()
        async with client(broker.url, "your-publisher") as nc:  # connected after the SUBs: see _live.client
            await answer(publish_readings, nc, count, interval, what=what, timeout=count * interval * 3 + 5)
            await delivered(nc, watch, subs)
        await poll(lambda: len(arrived) >= count, SETTLE)  # in case the student closed nc
    if not arrived:
        where = f" (it carried {len(elsewhere)} on {sorted(set(elsewhere))[:3]})" if elsewhere else ""
        raise failed(f"{what}: nothing arrived on {SUBJECT!r}{where}: publish on the lab's subject "
                     "with await nc.publish(\"trash-level\", payload)")
    if len(arrived) != count:
        raise failed(f"{what}: {len(arrived)} readings arrived, expected exactly {count}")
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
    return passed(f"{what}: {count} readings in sim.js's format, {span:.2f} s from first to last")


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
