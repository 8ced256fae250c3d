"""What the live checks share: a private broker of their own, connections to it, bounded waits.

A check that grades NATS code must compare with an independent truth: what a broker really carried.
Each check starts a private nats-server for the duration of one call (nothing else publishes there,
so a simulator running in the notebook cannot blur the result, and killing a node hurts nobody),
hands the student's function a connection to it, and watches from a connection of its own.
Everything it starts is stopped, and its folder removed, before it returns.

(Calling the student's function and keeping stderr clean: ``_answer``; the server's own view of a
connection, from its monitoring port: ``_truth``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from typing import Any, AsyncIterator, Callable

from nats.aio.client import Client

from ...servers.broker import Broker
from ...servers.connection import connect
from . import failed
from ._answer import answer

#: The longest a check waits for messages still on their way once the student's code has returned.
SETTLE = 3.0


class _CheckBroker(Broker):
    """A broker that stays private in a joined class too: what a check publishes is not a reading of the class."""

    _joins_class = False


@contextlib.asynccontextmanager
async def private_broker(jetstream: bool = False) -> AsyncIterator[Broker]:
    """A nats-server of the check's own (with JetStream if asked), stopped when the check ends."""
    broker = _CheckBroker(unique("check-"), jetstream=jetstream)
    await broker.astart()
    try:
        yield broker
    finally:
        broker.stop(timeout=2)
        shutil.rmtree(broker._tmpdir(), ignore_errors=True)  # a check runs often: leave no folder per run


@contextlib.asynccontextmanager
async def client(url: str, name: str) -> AsyncIterator[Client]:
    """A connection for the check (or handed to the student's function), closed at the end.

    Connect the side that publishes only after the other side's subscription is in place: with
    nats-server 2.15.1, a connection opened before a subscription sometimes (about 1 in 25 here) had
    its first matching message dropped (server in_msgs 5, out_msgs 4), which would fail a right answer.
    """
    nc = await connect(url, name=name, max_reconnect_attempts=0, connect_timeout=2)
    try:
        yield nc
    finally:
        if not nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2)


async def poll(condition: Callable[[], Any], timeout: float, every: float = 0.02) -> Any:
    """Await ``condition()`` returning something truthy (checked at least once); return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(every)


def unique(prefix: str) -> str:
    """A fresh name, e.g. a subject no earlier run can have used."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def delivered(publisher, receiver, subs=()) -> None:
    """Wait until what ``publisher`` sent has reached ``receiver`` and its subscriptions' callbacks ran.

    A flush is a PING whose PONG comes back after everything sent before it: once the publisher's
    flush returns, the server has queued every message for the receiver; once the receiver's returns,
    its client has read them; then the subscriptions' queues empty as their callbacks run.
    """
    for nc in (publisher, receiver):
        if nc is not None and nc.is_connected:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)
    queues = [s for s in subs if hasattr(s, "pending_msgs")]
    await poll(lambda: all(s.pending_msgs == 0 for s in queues), SETTLE)
    await asyncio.sleep(0.05)  # the last callback taken off its queue finishes


@contextlib.asynccontextmanager
async def session(other: str) -> AsyncIterator["tuple[Broker, Client, Client]"]:
    """A private broker, the connection handed to the student's code (named ``student``) and one of the
    check's own (named ``other``); all closed and stopped after."""
    async with private_broker() as broker, client(broker.url, "student") as nc, client(broker.url, other) as own:
        yield broker, nc, own


async def student_subscribes(fn: Callable, nc: Client, *args: Any, what: str, timeout: float = 5.0) -> Any:
    """``await fn(nc, *args)``, whose job is to subscribe on ``nc``; return what it returned (its
    subscription, if it returns one) once the server has the SUB. ✘ if it closed the connection."""
    sub = await answer(fn, nc, *args, what=what, timeout=timeout)
    if nc.is_closed:
        raise failed(f"{what} closed the connection: keep it open, the subscription lives on it")
    await nc.flush(timeout=2)
    return sub


async def publish_to(broker: Broker, messages: "list[tuple[str, bytes]]", nc: Client, sub: Any) -> None:
    """Publish ``(subject, data)`` messages from a connection of the check's own, connected only now (see
    :func:`client`), and wait until they reached ``nc`` and ``sub``'s callback ran for each."""
    async with client(broker.url, "trashlab-check") as pub:
        for subject, data in messages:
            await pub.publish(subject, data)
        await delivered(pub, nc, [sub])
