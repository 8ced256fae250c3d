"""What the live checks share: a private broker of their own, connections to it, bounded waits.

A check that grades NATS code must compare with an independent truth: what a broker really carried.
Each check starts a private nats-server for the duration of one call (nothing else publishes there,
so a simulator running in the notebook cannot blur the result, and killing a node hurts nobody),
hands the student's function a connection to it, and watches from a connection of its own.
Everything it starts is stopped, and its folder removed, before it returns.

A student's program (``sim.py``, ``rep.py``) runs the same way: as its own process
(:func:`~trashlab.services.programs.run_program`) with the private broker in its ``$NATS_URL``, killed when
the check ends; a crash becomes the ✘ line with its last stderr lines.

(Calling the student's function and keeping stderr clean: ``_answer``; the server's own view of a
connection, from its monitoring port: ``_truth``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from nats.aio.client import Client

from ...errors import BrokerError, CheckFailed
from ...servers.broker import Broker
from ...servers.connection import connect
from ...servers.monitor import fetch
from ...services.programs import Program, run_program
from . import _short, failed
from ._answer import answer

#: The longest a check waits for messages still on their way once the student's code has returned.
SETTLE = 3.0


class _CheckBroker(Broker):
    """A broker that stays private in a joined class too: what a check publishes is not a reading of the class."""

    _joins_class = False


@contextlib.asynccontextmanager
async def private_broker(jetstream: bool = False, trace: bool = False) -> AsyncIterator[Broker]:
    """A nats-server of the check's own (with JetStream, or its protocol trace, if asked), stopped when the check ends."""
    broker = _CheckBroker(unique("check-"), jetstream=jetstream, trace=trace)
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
    nats-server 2.15.1, a message published right after another client's subscription (its flush returned)
    by a connection that had been publishing for a while was not delivered 24 times in 500, while one
    opened just before the subscription never missed (the server's own /varz: in_msgs 1000, out_msgs 976;
    ``benchmarks/late_subscription.py``, docs/benchmarks.md). That would fail a right answer.
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


# ----- the student's programs ------------------------------------------------------------------------
#: Seconds a program may take to start and connect before the check says it never reached its broker.
CONNECT_WITHIN = 10.0
#: Seconds between a program's first subscription and its last one, at most (they come together at its start).
REST_WITHIN = 2.0
USE_NATS_URL = ("connect to the servers in os.environ[\"NATS_URL\"] (comma-separated), never to a fixed "
                "address or name")


def program_file(path: Any, default: str) -> Path:
    """The student's program file, or the ✘ line saying which cell writes it."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise failed(f"give the program's file name, e.g. {default!r}, not {_short(path)}")
    file = Path(path)
    if not file.is_file():
        raise failed(f"there is no {file} in {os.getcwd()} yet: run the exercise's %%writefile {file.name} cell, "
                     "then this one")
    return file


def clients_seen(monitor_url: str, own: str) -> int:
    """How many NATS clients other than the check's own (named ``own``) connected since the server started,
    closed ones included (``/connz?state=all``; a bare TCP probe sends no CONNECT, so it has no ``lang``)."""
    try:
        conns = fetch(monitor_url, "connz?state=all&limit=1000").get("connections") or []
    except (BrokerError, ValueError):
        return 0
    return sum(1 for c in conns if c.get("lang") and c.get("name") != own)


def crashed(program: Program, what: str) -> CheckFailed:
    """The ✘ line of a program that ended with an error: its last stderr lines."""
    if any("NotImplementedError" in line for line in program.stderr(3)):
        return failed(f"{program.path.name} is not written yet: replace `raise NotImplementedError()` with your "
                      "code, run that cell, then this one")
    return failed(f"{what} crashed (exit code {program.returncode}): {program.failure()}")


@contextlib.asynccontextmanager
async def student_program(file: Path, *args: Any, broker: Any) -> AsyncIterator[Program]:
    """The student's file running as its own process against ``broker`` (a Broker, or a Cluster: every node in
    its ``$NATS_URL``), killed at the end."""
    servers = broker if hasattr(broker, "urls") else broker.url
    program = run_program(file, *args, name=unique(f"check-{file.stem}-"), servers=servers)
    try:
        yield program
    finally:
        program.kill()


def others(monitor_url: str, own: str) -> "list[dict]":
    """The server's records of the open connections other than the check's own (named ``own``), with their
    subscriptions (``/connz?subs=detail``); none when the server does not answer (a killed node)."""
    try:
        conns = fetch(monitor_url, "connz?subs=detail&limit=1000").get("connections") or []
    except (BrokerError, ValueError):
        return []
    return [c for c in conns if c.get("name") != own]


def their_subjects(monitor_url: str, own: str) -> "set[str]":
    """The subjects the open connections other than the check's own (named ``own``) subscribe to."""
    return {sub.get("subject") for c in others(monitor_url, own) for sub in c.get("subscriptions_list_detail") or []}


async def node_showing(program: Program, nodes: "list[Any]", shows: Callable[[Any], bool], what: str,
                       subjects: str) -> Any:
    """The node of ``nodes`` whose ``/connz`` shows the program's subscriptions (``shows(node)``: the server's
    truth, not the program's word); ✘ when the program ended first or no node shows them in time."""
    victim = await poll(lambda: not program.alive or next((b for b in nodes if shows(b)), None), CONNECT_WITHIN,
                        every=0.1)
    if not program.alive:
        raise await ended(program, what, f" before it subscribed to {subjects}")
    if victim is None:
        raise failed(f"{what}: in {CONNECT_WITHIN:.0f} s no node of the cluster shows a subscription on {subjects}: "
                     f"{USE_NATS_URL}")
    return victim


async def killed_and_back(program: Program, victim: Any, survivor: Any, shows: Callable[[Any], bool], what: str,
                          subjects: str, within: float) -> None:
    """SIGKILL ``victim`` (``docker container kill``), then wait until ``shows(survivor)``: the program's
    subscriptions on the surviving node; ✘ when the program ended, or was not back within ``within`` s."""
    victim.kill()
    back = await poll(lambda: not program.alive or shows(survivor), within, every=0.1)
    if not program.alive:
        raise await ended(program, what, f" after the node it was on ({victim.name}) was killed")
    if not back:
        raise failed(f"{what}: {within:.0f} s after the node it was on was killed, the surviving node shows no "
                     f"subscription on {subjects} from it: give nats.connect every server of NATS_URL "
                     "(comma-separated) and keep reconnecting (the default)")


async def subscribed(program: Program, broker: Broker, subjects: "tuple[str, ...]", what: str, own: str) -> None:
    """Wait until the server shows a subscription on each of ``subjects`` by a connection not the check's own
    (named ``own``): the program is ready. ✘ when it ended first (a crash shows its stderr) or never got there."""
    started = time.monotonic()
    seen: "set[str]" = set()
    first: "list[float]" = []  # when its first subscription showed: a program subscribes to all within moments

    def ready() -> bool:
        nonlocal seen
        seen = their_subjects(broker.monitor_url, own)
        if seen and not first:
            first.append(time.monotonic())
        return (not program.alive or set(subjects) <= seen
                or bool(first) and time.monotonic() - first[0] > REST_WITHIN)

    await poll(ready, CONNECT_WITHIN, every=0.1)
    if not program.alive:
        raise await ended(program, what, f" before it subscribed to {', '.join(subjects)}")
    missing = sorted(set(subjects) - seen)
    if missing:
        if not clients_seen(broker.monitor_url, own):
            raise failed(f"{what}: in {time.monotonic() - started:.0f} s it never connected to the broker it was "
                         f"given: {USE_NATS_URL}")
        raise failed(f"{what}: after {time.monotonic() - started:.1f} s the server shows no subscription on "
                     f"{', '.join(missing)} (it subscribes to {sorted(seen) or 'nothing'})")


async def ended(program: Program, what: str, when: str = "") -> CheckFailed:
    """The ✘ line of a service program that is gone (or going): its crash, or that it ended on its own."""
    await program.wait(2)
    if program.returncode:
        return crashed(program, what)
    return failed(f"{what} ended (exit code {program.returncode}){when}: a service keeps running until it is "
                  "stopped")


def json_object(data: bytes, what: str) -> dict:
    """A reply's bytes as a JSON object, or the ✘ line saying what they are instead."""
    try:
        reply = json.loads(data)
    except ValueError:
        raise failed(f"{what}: the reply {data!r} is not JSON") from None  # a ✘ line for the student; what went wrong is in it
    if not isinstance(reply, dict):
        raise failed(f"{what}: the reply {data!r} should be a JSON object")
    return reply
