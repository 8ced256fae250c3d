"""What the live checks share: a private broker of their own, bounded waits, log lines kept off stderr.

A check that grades NATS code must compare with an independent truth: what a broker really carried.
Each check starts a private nats-server for the duration of one call (nothing else publishes there,
so a simulator running in the notebook cannot blur the result), hands the student's function a
connection to it, and watches from a connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import shutil
import sys
import time
import uuid
from typing import Any, AsyncIterator, Callable

from ...servers.broker import Broker
from ...servers.connection import connect

#: The longest a check waits for messages still on their way once the student's code has returned.
SETTLE = 3.0


class _StdoutHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stdout)


@contextlib.contextmanager
def _logs_to_stdout():
    """trashlab's log lines go to stdout meanwhile: under nbgrader, anything on stderr zeroes a test cell."""
    logger = logging.getLogger("trashlab")
    saved = logger.handlers[:], logger.propagate
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers, logger.propagate = [handler], False
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved


def graded(fn: Callable) -> Callable:
    """Decorator for a check (sync or async): a trashlab log line while it runs cannot cost the points."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args, **kwargs):
            with _logs_to_stdout():
                return await fn(*args, **kwargs)
        return run_async

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with _logs_to_stdout():
            return fn(*args, **kwargs)
    return run


class _CheckBroker(Broker):
    """A broker that stays private in a joined class too: what a check publishes is not a reading of the class."""

    _joins_class = False


@contextlib.asynccontextmanager
async def private_broker(trace: bool = False) -> AsyncIterator[Broker]:
    """A nats-server of the check's own, stopped when the check ends."""
    broker = _CheckBroker(f"check-{uuid.uuid4().hex[:8]}", trace=trace)
    await broker.astart()
    try:
        yield broker
    finally:
        broker.stop(timeout=2)
        shutil.rmtree(broker._tmpdir(), ignore_errors=True)  # a check runs often: leave no folder per run


@contextlib.asynccontextmanager
async def client(url: str, name: str):
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
