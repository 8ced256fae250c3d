"""A paced test publisher: N msg/s of lab readings with seq numbers, optionally ~10 % malformed.

Run as a separate process (``python tests/flood.py URL --rate 10000 --seconds 30 --bad``) so that
the publisher and the subscribers under test do not share one CPU. Message ``i`` (1, 2, ...) is a
valid reading with ``"seq": i`` unless ``--bad`` and ``i % 10 == 0``: then it is the malformed
payload :func:`payload` picks, whose expected rejection kind is known in advance. Prints one JSON
line at the end: ``{"published": N, "seconds": S, "errors": E}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.dirname(__file__)))
from trashlab.message import SUBJECT, encode

ONE_MB = 1_000_000
_BIG = b'{"can_id":"7", "level":"5", "pad":"' + b"x" * (ONE_MB - 37) + b'"}'
assert len(_BIG) == ONE_MB

#: (expected kind, payload) for each malformed case; one in 1000 malformed messages is the 1 MB one.
MALFORMED = [
    ("not-json", b'{"can_id":"7", "level":'),
    ("not-object", b'[1, 2, 3]'),
    ("missing-field", b'{"can_id":"7"}'),
    ("bad-type", b'{"can_id":["7"], "level":"5"}'),
    ("out-of-range", b'{"can_id":"7", "level":"142.5"}'),
    ("not-finite", b'{"can_id":"7", "level":NaN}'),
    ("not-finite", b'{"can_id":"7", "level":"-Infinity"}'),
    ("not-utf8", b'{"can_id":"\xff\xfe", "level":"5"}'),
    ("too-deep", b"[" * 2000 + b"]" * 2000),
    ("too-deep", b'{"a":' * 1200 + b"1" + b"}" * 1200),
]


def payload(i: int, bad: bool) -> tuple[str | None, bytes]:
    """Message number ``i``: ``(None, reading)`` or ``(expected kind, malformed payload)``."""
    if bad and i % 10 == 0:
        j = i // 10
        if j % 1000 == 0:
            return "too-large", _BIG
        return MALFORMED[j % len(MALFORMED)]
    return None, encode(str(i % 1000), (i * 7.31) % 100, seq=i)


def expected(published: int, bad: bool) -> tuple[set, Counter]:
    """The valid seq numbers and the rejection kinds among messages 1..published."""
    valid, kinds = set(), Counter()
    for i in range(1, published + 1):
        kind, _ = payload(i, bad)
        if kind is None:
            valid.add(i)
        else:
            kinds[kind] += 1
    return valid, kinds


#: the most a subscriber may be behind on the server before the flood waits. Small enough that what the server
#: holds for a subscriber fits the loopback socket buffers: a subscriber whose process gets no CPU for 10 s then
#: leaves the server nothing blocked to write (a write blocked 10 s is a slow consumer too, "WriteDeadline of 10s
#: exceeded with 671 chunks of 4303209 total bytes", seen with 8 MB here when two CI runs shared 2 cores)
MAX_PENDING_BYTES = 1024 * 1024


def _most_pending(monitor: str) -> int:
    """The largest number of bytes the server holds for one connection, read from its /connz."""
    import urllib.request

    with urllib.request.urlopen(f"{monitor}/connz", timeout=5) as r:
        return max((c.get("pending_bytes", 0) for c in json.load(r).get("connections") or []), default=0)


async def flood(url: str, rate: int, seconds: float, bad: bool, subject: str, monitor: str | None = None) -> dict:
    """Publish ``rate`` readings a second for ``seconds`` s; with ``monitor``, never more than
    MAX_PENDING_BYTES ahead of the slowest subscriber (the server's own count, /connz), so a busy machine
    slows the flood down instead of making the server cut a subscriber off."""
    import nats

    errors = []

    async def on_error(e):
        errors.append(repr(e))

    nc = await nats.connect(url, name="flood", error_cb=on_error, pending_size=64 * 1024 * 1024,
                            max_reconnect_attempts=3)
    total = int(rate * seconds)
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    held = 0.0  # time spent waiting for subscribers: the pace restarts after it, no burst to catch up
    next_look = 0
    while i < total and loop.time() - start < seconds * 6:  # bounded even on a very slow machine
        if monitor is not None and i >= next_look:
            next_look = i + rate // 10
            waited = loop.time()
            await nc.flush(timeout=30)
            while await asyncio.to_thread(_most_pending, monitor) > MAX_PENDING_BYTES:
                await asyncio.sleep(0.05)  # polling another process's state: no event to await
            held += loop.time() - waited
        due = int((loop.time() - start - held) * rate) + 1
        if due - i > rate // 10:  # this process was not scheduled for a while: go on at the pace, no catch-up burst
            held += (due - i - rate // 10) / rate  # (a burst of seconds of readings would outrun the subscribers)
            due = i + rate // 10
        due = min(total, due)
        while i < due:
            i += 1
            await nc.publish(subject, payload(i, bad)[1])
        await asyncio.sleep(0.005)  # the pace of this publisher (a program under test, not synchronisation)
    await nc.flush(timeout=30)
    took = loop.time() - start
    await nc.close()
    return {"published": i, "seconds": round(took, 3), "errors": len(errors)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--rate", type=int, default=10000)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--bad", action="store_true")
    p.add_argument("--subject", default=SUBJECT)
    p.add_argument("--monitor", default=None, help="the server's monitoring URL: wait while a subscriber is far behind")
    a = p.parse_args()
    print(json.dumps(asyncio.run(flood(a.url, a.rate, a.seconds, a.bad, a.subject, a.monitor))), flush=True)


if __name__ == "__main__":
    main()
