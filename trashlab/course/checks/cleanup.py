"""Checks of notebook 06 (clean-up): the student stops a subscriber without losing what it holds.

The check starts a broker of its own, a client whose subscription handles each reading slowly, and
publishes readings until the server has delivered all of them to the client (most still waiting in
the client's queue). Then ``await shut_down(nc)``: every delivered reading must have been handled, and
the server must no longer list the connection.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from . import failed, passed
from ._answer import answer, graded, require_function
from ._live import poll, session
from ._truth import connection, subscriptions
from ...message import encode


@graded
async def check_shut_down(shut_down: Callable, published: int = 40, work: float = 0.01,
                          subject: str = "trash-level") -> None:
    """``await shut_down(nc)`` must leave ``nc`` closed with every delivered message handled (drain)."""
    name = require_function(shut_down, "shut_down")
    what = f"await {name}(nc)"
    async with session("check-publisher") as (broker, nc, pub):
        handled: list = []

        async def slow_handler(msg) -> None:
            await asyncio.sleep(work)  # e.g. writing the level to a database
            handled.append(msg.data)

        await nc.subscribe(subject, cb=slow_handler)
        await nc.flush()
        cid = nc.client_id
        # publish only once the server lists the subscription (a flush alone was seen to return earlier)
        await poll(lambda: subscriptions(connection(broker.monitor_url, cid)), timeout=2)
        for seq in range(1, published + 1):
            await pub.publish(subject, encode(str(seq), float(seq % 100)))
        await pub.flush()
        await poll(lambda: int((connection(broker.monitor_url, cid) or {}).get("out_msgs", 0)) >= published,
                   timeout=3)
        await nc.flush()  # everything delivered is now in the client, waiting for the handler
        waiting = published - len(handled)
        await answer(shut_down, nc, what=what, timeout=15)
        gone = await poll(lambda: connection(broker.monitor_url, cid) is None, timeout=1.0 if nc.is_closed else 0)
        still_listed = not gone
        _judge(len(handled), published, waiting, nc.is_closed, still_listed, what)


def _judge(handled: int, published: int, waiting: int, closed: bool, listed: bool, what: str) -> None:
    if closed and handled < published:
        raise failed(f"after {what} only {handled} of the {published} delivered readings were handled "
                     f"({waiting} were waiting in the client): close() drops them; drain() lets the "
                     "handler finish first, then closes")
    if not closed or listed:
        raise failed(f"after {what} the connection is still open (the server still lists it): "
                     "the clean-up must end with the connection closed (and awaited)")
    passed(f"{what}: all {published} delivered readings handled ({waiting} were still waiting when you "
           "started), then the connection closed")
