"""Checks of notebook 05b (JetStream, optional): JetStream written by hand with plain nats-py.

Each check starts a JetStream server of its own (names, counts and values drawn at run time), calls the
student's functions there, and judges with the server's own state, read through the JetStream API from a
connection of the check's: the stream's config and messages (``stream_info``, ``get_msg``: the stored
``Nats-Msg-Id`` header), the consumer's delivered / acknowledged sequence numbers (``consumer_info``), the
key-value bucket's values. Never with what the student's code says about itself.

- :func:`check_make_stream`: a stream with the name and subjects given;
- :func:`check_publish_once`: a publish that waits for the acknowledgement, with a message id, so a retry is
  stored once;
- :func:`check_read_acked` and :func:`check_replay`: a durable pull consumer that fetches and acknowledges,
  and goes on where it stopped after a restart;
- :func:`check_levels_kept` and :func:`check_follow_levels`: the report service's levels in a key-value bucket
  (put, get, watch), through a restart;
- :func:`check_publish_acked`: the earlier exercise (a publish returning the acknowledgement's sequence number),
  kept for notebooks handed out before.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any, AsyncIterator, Callable, Optional

from . import _short, failed, passed
from ._answer import answer, graded, require_function
from ._live import client, poll, private_broker, unique
from ...message import encode


@contextlib.asynccontextmanager
async def _stream(subject: str, earlier: int = 0, user: str = "student") -> AsyncIterator[tuple]:
    """A private JetStream server with a stream of the check's own on ``subject`` that already holds ``earlier``
    readings (so sequence numbers do not start at 1): ``(broker, js, stream)``, ``js`` on a connection named ``user``."""
    stream = unique("CHECK_").upper()
    async with private_broker(jetstream=True) as broker, client(broker.url, user) as nc:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        for i in range(earlier):
            await js.publish(subject, encode(f"9{i}", 1.0 + i))
        yield broker, js, stream


@graded
async def check_publish_acked(publish_acked: Callable, subject: str = "trash-level", count: int = 4,
                              earlier: int = 3) -> None:
    """``await publish_acked(js, subject, payload)`` must publish to JetStream and return the stream
    sequence number from the acknowledgement (an int)."""
    name = require_function(publish_acked, "publish_acked")
    async with _stream(subject, earlier) as (_, js, stream):
        for i in range(count):
            payload = encode(str(100 + i), 10.5 * (i + 1))
            what = f"await {name}(js, {subject!r}, {payload!r})"
            seq = await answer(publish_acked, js, subject, payload, what=what, timeout=5)
            await _judge_one(js, stream, seq, payload, what)
        await _holds(js, stream, earlier + count, f"{count} calls")
    passed(f"{count} readings stored and acknowledged, sequence numbers {earlier + 1}-{earlier + count} "
           f"match the stream {stream}")


async def _holds(js, stream: str, expected: int, after: str) -> None:
    """✘ unless the server says the stream holds ``expected`` messages."""
    held = (await js.stream_info(stream)).state.messages
    if held != expected:
        raise failed(f"the stream holds {held} readings after {after}, expected {expected}: store each reading once")


async def _judge_one(js, stream: str, seq, payload: bytes, what: str) -> None:
    from nats.js.errors import APIError

    if isinstance(seq, bool) or not isinstance(seq, int):
        hint = " (the acknowledgement itself: return its .seq)" if hasattr(seq, "seq") else ""
        raise failed(f"{what} returned {seq!r}{hint}, expected the sequence number (an int) from the "
                     "acknowledgement of `await js.publish(...)`")
    try:
        stored = await js.get_msg(stream, seq) if seq > 0 else None
    except APIError:  # no message under that number
        stored = None
    if stored is None or stored.data != payload:
        found = "nothing" if stored is None else repr(stored.data)
        raise failed(f"{what} returned {seq}, but the stream holds {found} under {seq}: return the seq of "
                     "the acknowledgement for this very publish")


# ----- 05b by hand: a stream, a publish with a message id, a durable consumer, a key-value bucket ------------
#: Seconds the server may take to show an acknowledgement the student's code sent (acks are fire-and-forget).
ACKS_SETTLE = 3.0


def _names(count: int, prefix: str) -> "list[str]":
    return [unique(prefix) for _ in range(count)]


async def _stream_info(js, stream: str, what: str):
    """The server's own info about ``stream``, or the ✘ line naming the streams it does have."""
    from nats.js.errors import NotFoundError

    try:
        return await js.stream_info(stream)
    except NotFoundError:
        names = [s.config.name for s in await js.streams_info()]
        raise failed(f"after {what} the server has no stream named {stream!r} (its streams: {names or 'none'}): "
                     "create it under the name you were given") from None  # a ✘ line for the student: the server said "not found"


@graded
async def check_make_stream(make_stream: Callable, name: Optional[str] = None,
                            subjects: "Optional[list[str]]" = None) -> None:
    """``await make_stream(js, name, subjects)`` must create a stream called ``name`` that captures exactly
    ``subjects``; the check reads the stream's config from the server (names drawn at run time)."""
    fn = require_function(make_stream, "make_stream")
    name = name or unique("LEVELS_").upper()
    subjects = list(subjects or [unique("trash-level-")])
    what = f"await {fn}(js, {name!r}, {subjects!r})"
    async with private_broker(jetstream=True) as broker, client(broker.url, "student") as nc, \
            client(broker.url, "trashlab-check") as own:
        await answer(make_stream, nc.jetstream(), name, list(subjects), what=what, timeout=5)
        js = own.jetstream()
        info = await _stream_info(js, name, what)
        if sorted(info.config.subjects or []) != sorted(subjects):
            raise failed(f"{what} made the stream {name} capture {info.config.subjects}, expected exactly "
                         f"{subjects}: pass the subjects you were given")
        for i, subject in enumerate(subjects):  # the stream really stores what is published there
            await js.publish(subject, encode(str(i), 50.0))
        stored = (await js.stream_info(name)).state.messages
        if stored != len(subjects):
            raise failed(f"the stream {name} stored {stored} of {len(subjects)} readings the check published on "
                         f"{subjects}")
    passed(f"the server has the stream {name} on {subjects}, and it stored a reading published on each")


@graded
async def check_publish_once(publish_once: Callable, count: int = 4, retries: int = 2, earlier: int = 3,
                             subject: Optional[str] = None) -> None:
    """``await publish_once(js, subject, payload, msg_id)`` must publish to JetStream with the message id in
    the ``Nats-Msg-Id`` header and return the acknowledgement's sequence number; a retry with the same id is
    stored once and acknowledged with the first sequence number. The truth is the check's own stream."""
    fn = require_function(publish_once, "publish_once")
    subject = subject or unique("trash-level.")
    async with _stream(subject, earlier) as (_, js, stream):
        sent: "list[tuple[bytes, str, int]]" = []
        for i in range(count):
            payload, msg_id = encode(str(100 + i), 10.5 * (i + 1)), unique("reading-")
            what = f"await {fn}(js, {subject!r}, {payload!r}, {msg_id!r})"
            seq = await answer(publish_once, js, subject, payload, msg_id, what=what, timeout=5)
            await _judge_one(js, stream, seq, payload, what)
            stored = await js.get_msg(stream, seq)
            got_id = (stored.headers or {}).get("Nats-Msg-Id")
            if got_id != msg_id:
                raise failed(f"the stream holds the reading of {what} with Nats-Msg-Id {got_id!r}, expected "
                             f"{msg_id!r}: send the message id as the header Nats-Msg-Id")
            sent.append((payload, msg_id, seq))
        for payload, msg_id, seq in sent[:retries]:  # a publisher that got no ack sends the same reading again
            what = f"await {fn}(js, {subject!r}, {payload!r}, {msg_id!r}) again (a retry)"
            again = await answer(publish_once, js, subject, payload, msg_id, what=what, timeout=5)
            if again != seq:
                raise failed(f"{what} returned {again!r}; the server acknowledges a duplicate with the sequence "
                             f"number it stored the first one under, {seq}")
        await _holds(js, stream, earlier + count, f"{count} readings and {retries} retries")
    passed(f"{count} readings stored once each with their Nats-Msg-Id, {retries} retries acknowledged as "
           f"duplicates (the stream {stream} holds {earlier + count})")


async def _consumer(js, stream: str, durable: str, what: str):
    """The server's info about the consumer ``durable``, or the ✘ line naming the consumers it has."""
    from nats.js.errors import NotFoundError

    try:
        return await js.consumer_info(stream, durable)
    except NotFoundError:
        names = [c.name for c in await js.consumers_info(stream)]
        raise failed(f"after {what} the stream has no consumer named {durable!r} (its consumers: {names or 'none'}; "
                     "an ephemeral consumer gets a random name and is forgotten): give the durable name") from None  # a ✘ line for the student: the server said "not found"


async def _acked(js, stream: str, durable: str, upto: int, what: str) -> None:
    """Wait until the server shows the consumer ``durable`` acknowledged up to stream sequence ``upto``."""
    info = None
    deadline = time.monotonic() + ACKS_SETTLE
    while True:
        info = await _consumer(js, stream, durable, what)
        done = info.ack_floor.stream_seq >= upto and not info.num_ack_pending
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    if info.delivered.stream_seq > upto:
        raise failed(f"after {what} the server delivered readings up to #{info.delivered.stream_seq}, expected "
                     f"{upto}: fetch the batch you were asked for, no more")
    if info.num_ack_pending or info.ack_floor.stream_seq < upto:
        raise failed(f"after {what} the server still waits for the acknowledgement of {info.num_ack_pending} "
                     f"readings (acknowledged up to #{info.ack_floor.stream_seq} of {upto}): acknowledge each "
                     "message, or the server delivers it again")


def _readings(got: Any, expected: "list[bytes]", what: str, before: "list[bytes] | tuple" = ()) -> None:
    if not isinstance(got, list) or not all(isinstance(g, bytes) for g in got):
        raise failed(f"{what} returned {_short(got)}, expected a list of the readings' payloads (bytes, msg.data)")
    if got != expected:
        first = expected[0] if expected else None
        if got and got[0] in before:
            raise failed(f"{what} returned {len(got)} readings starting with {got[0]!r}, read before the restart: "
                         "a durable consumer goes on where it stopped, an ephemeral one starts again")
        raise failed(f"{what} returned {len(got)} readings {_short(got, 90)}, expected the {len(expected)} "
                     f"stored next, in order, starting with {first!r}")


@graded
async def check_read_acked(read_batch: Callable, batch: int = 3, stored: int = 5) -> None:
    """``await read_batch(js, subject, durable, batch)`` must fetch ``batch`` readings through the durable pull
    consumer ``durable``, acknowledge each and return their payloads; the check reads the consumer's state
    (delivered, acknowledged) from the server."""
    fn = require_function(read_batch, "read_batch")
    subject, durable = unique("trash-level."), unique("reader-")
    what = f"await {fn}(js, {subject!r}, {durable!r}, {batch})"
    async with _stream(subject, user="trashlab-check") as (broker, js, stream):
        payloads = [encode(str(200 + i), 3.5 * (i + 1)) for i in range(stored)]
        for p in payloads:
            await js.publish(subject, p)
        async with client(broker.url, "student") as nc:
            got = await answer(read_batch, nc.jetstream(), subject, durable, batch, what=what, timeout=10)
            await nc.flush(timeout=2)
        _readings(got, payloads[:batch], what)
        await _acked(js, stream, durable, batch, what)
        info = await _consumer(js, stream, durable, what)
        if not info.config.durable_name:
            raise failed(f"the consumer {durable} is not durable: pass the durable name when you create it")
    passed(f"{what} returned the first {batch} of {stored} readings; the server shows the durable consumer "
           f"{durable} with all {batch} acknowledged")


@graded
async def check_replay(read_batch: Callable, first: int = 2, missed: int = 3, rest: int = 2) -> None:
    """The reader stops and starts again: ``read_batch`` on a new connection with the same durable name must
    return exactly what was stored since (nothing read before, nothing skipped), as the server's consumer
    state confirms."""
    fn = require_function(read_batch, "read_batch")
    subject, durable = unique("trash-level."), unique("reader-")
    async with _stream(subject, user="trashlab-check") as (broker, js, stream):
        payloads = [encode(str(300 + i), 2.5 * (i + 1)) for i in range(first + rest + missed)]
        for p in payloads[:first + rest]:
            await js.publish(subject, p)
        what = f"await {fn}(js, {subject!r}, {durable!r}, {first})"
        async with client(broker.url, "student") as nc:  # the reader's first run, then its process stops
            got = await answer(read_batch, nc.jetstream(), subject, durable, first, what=what, timeout=10)
            await nc.flush(timeout=2)
        _readings(got, payloads[:first], what)
        await _acked(js, stream, durable, first, what)
        for p in payloads[first + rest:]:  # published while the reader is down
            await js.publish(subject, p)
        after = rest + missed
        what = f"after a restart, await {fn}(js, {subject!r}, {durable!r}, {after}) on a new connection"
        async with client(broker.url, "student") as nc:
            got = await answer(read_batch, nc.jetstream(), subject, durable, after, what=what, timeout=10)
            await nc.flush(timeout=2)
        _readings(got, payloads[first:], what, payloads[:first])
        await _acked(js, stream, durable, len(payloads), what)
        info = await _consumer(js, stream, durable, what)
    passed(f"after the restart the durable consumer {durable} went on at reading #{first + 1}: the {after} "
           f"readings stored since, {missed} of them published while it was down; the server shows all "
           f"{info.ack_floor.stream_seq} acknowledged, {info.num_redelivered} redelivered")


# ----- the key-value bucket: the report service's levels through a restart -------------------------------------
async def _bucket(js, bucket: str, what: str):
    from nats.js.errors import BucketNotFoundError, NotFoundError

    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        raise failed(f"after {what} the server has no key-value bucket {bucket!r}: create it under the name you "
                     "were given") from None  # a ✘ line for the student: the server said "not found"


async def _value(kv, key: str):
    from nats.js.errors import KeyNotFoundError

    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    return entry.value


def _level_text(stored: Any, can: str, level: float, what: str) -> None:
    try:
        ok = stored is not None and float(stored.decode()) == level
    except (ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise failed(f"after {what} the bucket holds {stored!r} under the key {can!r}, expected the level "
                     f"{level!r} as text, e.g. {str(level).encode()!r}")


@graded
async def check_levels_kept(open_levels: Callable, save_level: Callable, load_level: Callable,
                            cans: int = 4, readings: int = 10) -> None:
    """The report service keeps its levels in a bucket: ``kv = await open_levels(js, bucket)`` creates or opens
    it, ``await save_level(kv, can_id, level)`` puts a level, ``await load_level(kv, can_id)`` gets one back (a
    float, ``None`` for a can never saved). The check reads the bucket itself, restarts the service (a new
    connection opens the same bucket) and asks again."""
    for f, n in ((open_levels, "open_levels"), (save_level, "save_level"), (load_level, "load_level")):
        require_function(f, n)
    bucket = unique("levels-")
    rng = random.Random()
    ids = [str(rng.randint(1000, 9999)) for _ in range(cans)]
    latest: "dict[str, float]" = {}
    async with private_broker(jetstream=True) as broker, client(broker.url, "trashlab-check") as own:
        async with client(broker.url, "student") as nc:  # the report service's first run
            kv = await answer(open_levels, nc.jetstream(), bucket, what=f"await open_levels(js, {bucket!r})",
                              timeout=5)
            for i in range(readings):
                can, level = ids[i % cans], round(rng.uniform(0, 100), 2)
                await answer(save_level, kv, can, level, what=f"await save_level(kv, {can!r}, {level!r})", timeout=5)
                latest[can] = level
            await nc.flush(timeout=2)
        what = f"{readings} calls of save_level"
        mine = await _bucket(own.jetstream(), bucket, f"await open_levels(js, {bucket!r})")
        for can, level in latest.items():  # the server's own view of the bucket
            _level_text(await _value(mine, can), can, level, what)
        async with client(broker.url, "student") as nc:  # the report service's process started again
            what = f"after a restart, await open_levels(js, {bucket!r}) on a new connection"
            kv = await answer(open_levels, nc.jetstream(), bucket, what=what, timeout=5)
            for can, level in latest.items():
                got = await answer(load_level, kv, can, what=f"{what}, then await load_level(kv, {can!r})", timeout=5)
                if isinstance(got, bool) or not isinstance(got, (int, float)) or float(got) != level:
                    raise failed(f"{what}, await load_level(kv, {can!r}) returned {_short(got)}, expected "
                                 f"{level!r} (a float): the level saved last, read back from the bucket")
            unknown = unique("no-such-can-")
            got = await answer(load_level, kv, unknown, what=f"await load_level(kv, {unknown!r})", timeout=5)
            if got is not None:
                raise failed(f"await load_level(kv, {unknown!r}) returned {_short(got)} for a can never saved, "
                             "expected None")
    passed(f"the bucket {bucket} held the latest level of each of {cans} cans after {readings} readings; after a "
           "restart load_level read each back, and None for a can never saved")


@graded
async def check_follow_levels(open_levels: Callable, follow_levels: Callable, before: int = 3,
                              updates: int = 4) -> None:
    """``await follow_levels(kv, levels)`` runs until stopped, keeping ``levels`` (a dict can_id -> float)
    equal to the bucket: first the values already there, then every put (by anyone) as it happens."""
    for f, n in ((open_levels, "open_levels"), (follow_levels, "follow_levels")):
        require_function(f, n)
    bucket = unique("levels-")
    rng = random.Random()
    ids = [str(rng.randint(1000, 9999)) for _ in range(before + 1)]
    async with private_broker(jetstream=True) as broker, client(broker.url, "trashlab-check") as own, \
            client(broker.url, "student") as nc:
        kv = await answer(open_levels, nc.jetstream(), bucket, what=f"await open_levels(js, {bucket!r})", timeout=5)
        mine = await _bucket(own.jetstream(), bucket, f"await open_levels(js, {bucket!r})")
        truth: "dict[str, float]" = {}
        for can in ids[:before]:  # already in the bucket when the watch starts
            truth[can] = round(rng.uniform(0, 100), 2)
            await mine.put(can, str(truth[can]).encode())
        levels: "dict[str, float]" = {}
        what = "await follow_levels(kv, levels)"
        task = asyncio.ensure_future(answer(follow_levels, kv, levels, what=what, timeout=3600))
        try:
            await _same_levels(levels, truth, task, what, "the values already in the bucket")
            for i in range(updates):  # another instance puts new levels
                can = ids[i % len(ids)]
                truth[can] = round(rng.uniform(0, 100), 2)
                await mine.put(can, str(truth[can]).encode())
            await _same_levels(levels, truth, task, what, f"{updates} puts made after it started")
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    passed(f"{what} followed the bucket {bucket}: the {before} levels already there, then {updates} puts by "
           "another client")


async def _same_levels(levels: dict, truth: dict, task: "asyncio.Future", what: str, which: str) -> None:
    def same() -> bool:
        return task.done() or levels == truth

    await poll(same, ACKS_SETTLE)
    if task.done():
        task.result()  # its ✘ line, when it raised
        raise failed(f"{what} returned; it should keep watching the bucket until it is stopped "
                     "(an `async for` over the watcher)")
    if levels != truth:
        raise failed(f"after {which}, levels is {_short(levels, 90)}, expected {_short(truth, 90)} (from the "
                     "bucket): put each entry's key and float(value) into levels")

