"""Checks of notebook 08 (several subscribers): the student's subscription joins a queue group.

The check starts a broker of its own, connects a client for the student, and calls
``await join_queue_group(nc, subject, queue, received)``. Then it reads the server's view of that
connection (``/connz?subs=detail``: subject and queue group of each subscription), adds two members
of its own to the same group, publishes readings it numbered itself, and compares: the server's
delivery count for the student's subscription, what the student kept, and that the group as a whole
got every reading exactly once.
"""

from __future__ import annotations

from typing import Callable

from . import failed, passed
from ._answer import answer, graded, require_function
from ._live import poll, session
from ._truth import connection, subscriptions
from ...message import encode


@graded
async def check_queue_member(join_queue_group: Callable, queue: str = "reporters", published: int = 60,
                             others: int = 2, subject: str = "trash-level") -> None:
    """``await join_queue_group(nc, subject, queue, received)`` must subscribe ``nc`` to ``subject`` in
    queue group ``queue`` and append each message's ``data`` to ``received``."""
    name = require_function(join_queue_group, "join_queue_group")
    what = f"await {name}(nc, {subject!r}, {queue!r}, received)"
    async with session("check-members") as (broker, nc, helper):
        received: list = []
        await answer(join_queue_group, nc, subject, queue, received, what=what)
        record = await poll(lambda: subscriptions(connection(broker.monitor_url, nc.client_id)), timeout=3.0)
        _judge_subscription(record, what, subject, queue)
        counts = [0] * others

        def member(i: int):
            async def cb(msg) -> None:
                counts[i] += 1
            return cb

        for i in range(others):
            await helper.subscribe(subject, queue=queue, cb=member(i))
        await helper.flush()
        for seq in range(1, published + 1):
            await helper.publish(subject, encode(str(seq), float(seq % 100), seq))
        await helper.flush()
        await poll(lambda: len(received) + sum(counts) >= published, timeout=3.0)
        await poll(lambda: False, timeout=0.1)  # a duplicate would arrive now
        server = next((s for s in subscriptions(connection(broker.monitor_url, nc.client_id))
                       if s.get("subject") == subject), {})
        _judge_deliveries(received, counts, int(server.get("msgs", 0)), published, queue, what)


def _judge_subscription(subs: list, what: str, subject: str, queue: str) -> None:
    if not subs:
        raise failed(f"after {what} the server sees no subscription on your connection: "
                     "did you `await nc.subscribe(...)`?")
    mine = [s for s in subs if s.get("subject") == subject]
    if not mine:
        raise failed(f"your connection subscribed to {[s.get('subject') for s in subs]}, expected the "
                     f"subject it was given, {subject!r}")
    if len(mine) > 1:
        raise failed(f"your connection has {len(mine)} subscriptions on {subject!r}: subscribe once")
    group = mine[0].get("qgroup")
    if not group:
        raise failed(f"the server sees a plain subscription on {subject!r}, in no queue group: every "
                     f"member would get every reading. Pass queue={queue!r} to nc.subscribe")
    if group != queue:
        raise failed(f"the server sees your subscription in queue group {group!r}, expected the group it "
                     f"was given, {queue!r}")


def _judge_deliveries(received: list, counts: list, delivered: int, published: int, queue: str, what: str) -> None:
    if not isinstance(received, list):
        raise failed("the received list was replaced: append to the list you were given")
    wrong = [r for r in received if not isinstance(r, (bytes, bytearray))]
    if wrong:
        raise failed(f"received holds {type(wrong[0]).__name__} items, expected each message's payload "
                     "(bytes): append msg.data")
    if len(received) != delivered:
        raise failed(f"the server delivered {delivered} readings to your subscription, but received holds "
                     f"{len(received)}: append msg.data once per message, in the callback")
    total = len(received) + sum(counts)
    if total != published:
        raise failed(f"the queue group got {total} readings for {published} published (yours {len(received)}, "
                     f"the other members {counts}): each reading should reach exactly one member")
    if not 0 < len(received) < published:
        raise failed(f"your subscription got {len(received)} of {published}: in a group of {len(counts) + 1} "
                     "it should get a share")
    passed(f"the server delivered {delivered} of {published} readings to your subscription in queue group "
           f"{queue!r} and {sum(counts)} to the {len(counts)} other members: each reading exactly once")
