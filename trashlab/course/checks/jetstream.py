"""Checks of notebook 05b (JetStream, optional): a publish that waits for the stream's acknowledgement.

The check starts a JetStream server of its own with a stream on the subject, stores a few readings
there first (so sequence numbers do not start at 1), then calls ``await publish_acked(js, subject,
payload)`` with readings it chose. The truth is the stream itself: the message stored under the
sequence number the student returned must be exactly that reading, and the stream must hold each
reading once.
"""

from __future__ import annotations

from typing import Callable

from . import failed, passed
from ._answer import answer, graded, require_function
from ._live import client, private_broker, unique
from ...message import encode


@graded
async def check_publish_acked(publish_acked: Callable, subject: str = "trash-level", count: int = 4,
                              earlier: int = 3) -> None:
    """``await publish_acked(js, subject, payload)`` must publish to JetStream and return the stream
    sequence number from the acknowledgement (an int)."""
    name = require_function(publish_acked, "publish_acked")
    stream = unique("CHECK_").upper()
    async with private_broker(jetstream=True) as broker, client(broker.url, "student") as nc:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        for i in range(earlier):  # the stream is not empty: sequence numbers do not start at 1
            await js.publish(subject, encode(f"9{i}", 1.0 + i))
        for i in range(count):
            payload = encode(str(100 + i), 10.5 * (i + 1))
            what = f"await {name}(js, {subject!r}, {payload!r})"
            seq = await answer(publish_acked, js, subject, payload, what=what, timeout=5)
            await _judge_one(js, stream, seq, payload, what)
        info = await js.stream_info(stream)
        if info.state.messages != earlier + count:
            raise failed(f"the stream holds {info.state.messages} readings after {count} calls, expected "
                         f"{earlier + count}: publish each reading once")
    passed(f"{count} readings stored and acknowledged, sequence numbers {earlier + 1}-{earlier + count} "
           f"match the stream {stream}")


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
