"""Checks of notebook 05 (clustering): a client that records its own outage when a node dies, and the student's
``rep.py`` that keeps receiving while the node it is on is killed.

The check starts a cluster of two nodes of its own, gives the student's function the servers and an
empty list, SIGKILLs the node the client is on, and compares what the client recorded with the truth:
the moment of the kill (the check's own clock) and the moment the surviving server accepted the
client again (``start`` of its connection in that server's ``/connz``).
"""

from __future__ import annotations

import random
import re
import time
from typing import Any, Callable, Optional

from ...message import SUBJECT, encode
from ...services.programs import Program
from . import failed, passed
from ._answer import answer, graded, require_function
from ._live import (SETTLE, client, ended, killed_and_back, node_showing, poll, program_file,
                    student_program, their_subjects, unique)
from ._truth import connection, server_time

#: How late a callback may fire after the event it reports (seconds; generous for a busy machine).
LATE = 3.0
#: Clock rounding between the server's timestamps and ours (same machine, same clock).
EARLY = 0.05


def _events(events: Any) -> "list[tuple[str, float]]":
    if not isinstance(events, list):
        raise failed(f"the events list was replaced by a {type(events).__name__}: append to the list you "
                     "were given (events.append((\"disconnected\", time.time())))")
    out = []
    for item in events:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise failed(f"events holds {item!r}: each entry should be a pair such as "
                         "(\"disconnected\", time.time())")
        when = item[1]
        if isinstance(when, bool) or not isinstance(when, (int, float)):
            raise failed(f"events holds {tuple(item)!r}: the time should be a number of seconds, time.time()")
        out.append((item[0], float(when)))
    return out


@graded
async def check_outage(connect_recording: Callable, give: str = "all", timeout: float = 8.0) -> None:
    """``await connect_recording(servers, events)`` must return a connected nats-py client that appends
    ``("disconnected", time.time())`` and ``("reconnected", time.time())`` to ``events``; checked by
    killing the node it is on (``give="one"``: only the first node's URL is given)."""
    from ...servers.cluster import Cluster

    name = require_function(connect_recording, "connect_recording")
    cluster = Cluster(size=2, name=unique("check-")).start()
    nc = None
    try:
        await cluster.wait_formed(timeout=15, progress=False)
        nodes = list(cluster.nodes.values())
        servers = [nodes[0].url] if give == "one" else [b.url for b in nodes]
        events: list = []
        what = f"await {name}({'[first node]' if give == 'one' else '[both nodes]'}, events)"
        nc = await answer(connect_recording, servers, events, what=what, timeout=timeout)
        await _judge(nc, events, cluster, what)
    finally:
        if nc is not None and hasattr(nc, "close") and not getattr(nc, "is_closed", True):
            try:
                await nc.close()
            except Exception:  # blind: the student's object, closed on a clean-up path that must go on
                pass
        cluster.stop()


async def _judge(nc: Any, events: list, cluster: Any, what: str) -> None:
    from nats.aio.client import Client

    if not isinstance(nc, Client):
        raise failed(f"{what} returned {type(nc).__name__}, expected the connected client "
                     "(what `await nats.connect(...)` returns)")
    if not nc.is_connected:
        raise failed(f"{what} returned a client that is not connected: return it right after connecting")
    early = _events(events)
    if early:
        raise failed(f"before anything happened, events already holds {early[:2]}: append only from the "
                     "disconnected_cb / reconnected_cb callbacks")
    port = nc.connected_url.port if nc.connected_url else None
    victim = next((b for b in cluster.nodes.values() if b.port == port), None)
    if victim is None or connection(victim.monitor_url, nc.client_id) is None:
        raise failed(f"{what} is not connected to the servers it was given: connect with servers=servers")
    survivor = next(b for b in cluster.nodes.values() if b is not victim)
    # the kill (docker container kill): the truth starts here
    killed_at = time.time()
    victim.kill()
    back = await poll(lambda: nc.is_closed or (
        connection(survivor.monitor_url, nc.client_id)
        if nc.is_connected and nc.connected_url and nc.connected_url.port == survivor.port else None), timeout=8)
    back = None if back is True else back
    await poll(lambda: any(e[0] == "reconnected" for e in _events(events)), timeout=LATE)
    recorded = _events(events)
    if back is None:
        state = "closed" if nc.is_closed else "still reconnecting"
        raise failed(f"after {victim.name} was killed your client did not come back on {survivor.name} within "
                     f"8 s (it is {state}): keep reconnecting (the default) and give it the servers; "
                     "nats-py learns the other node from the server's INFO")
    back_at = server_time(back["start"])
    downs = [t for kind, t in recorded if kind == "disconnected"]
    ups = [t for kind, t in recorded if kind == "reconnected"]
    truth = f"the server accepted your client again {1000 * (back_at - killed_at):.0f} ms after the kill"
    if not downs:
        raise failed(f"events is {recorded[:3]}: no (\"disconnected\", time) was recorded, yet {truth}: "
                     "pass disconnected_cb= to nats.connect")
    if not ups:
        raise failed(f"events is {recorded[:3]}: no (\"reconnected\", time) was recorded, yet {truth}: "
                     "pass reconnected_cb= to nats.connect")
    down, up = downs[0], ups[0]
    if abs(down) < 1e9 or abs(up) < 1e9:
        raise failed(f"the times {down:.3f} and {up:.3f} are not clock times: use time.time() (seconds since "
                     "1970, the clock the servers' /connz uses), not time.monotonic() or a constant")
    if not killed_at - EARLY <= down <= back_at + EARLY:
        raise failed(f"\"disconnected\" was recorded {1000 * (down - killed_at):+.0f} ms from the kill, expected "
                     f"between the kill and the reconnection ({truth}): record time.time() inside the callback")
    if not back_at - EARLY <= up <= back_at + LATE:
        raise failed(f"\"reconnected\" was recorded {1000 * (up - killed_at):+.0f} ms from the kill, but {truth}: "
                     "record time.time() inside reconnected_cb")
    gap = up - down
    passed(f"your client recorded an outage of {1000 * gap:.0f} ms (kill of {victim.name} -> back on "
           f"{survivor.name}); {truth}")


# ----- rep.py through a node's death ------------------------------------------------------------------------
#: The connection name of the check's own publisher (never taken for the student's program).
CHECKER = "trashlab-check"
#: The lines rep.py prints about its connection: at the start, from disconnected_cb, from reconnected_cb.
CONNECTED = re.compile(r"^Connected to \S*:(\d+)\s*$")
DISCONNECTED = re.compile(r"^Disconnected\b")
RECONNECTED = re.compile(r"^Reconnected to \S*:(\d+)\s*$")
#: How long the program may take to come back on the surviving node (seconds).
BACK_WITHIN = 8.0


def _ports(program: Program, pattern: "re.Pattern[str]") -> "list[int]":
    """The ports in the program's stdout lines that match ``pattern`` (its first group)."""
    return [int(m.group(1)) for m in map(pattern.match, program.stdout()) if m]


async def _printed(program: Program, nc: Any, rng: random.Random, what: str, when: str) -> int:
    """Publish 5 readings; ✔ (their count) once the program printed each as ``Received report: ...``."""
    payloads = [encode(str(rng.randint(0, 1000)), rng.random() * 100) for _ in range(5)]
    for data in payloads:
        await nc.publish(SUBJECT, data)
    await nc.flush(timeout=2)
    want = [f"Received report: {p.decode()}" for p in payloads]
    await poll(lambda: not program.alive or set(want) <= set(program.stdout()), SETTLE)
    if not program.alive:
        raise await ended(program, what, when)
    missing = [w for w in want if w not in program.stdout()]
    if missing:
        raise failed(f"{what}: {len(missing)} of the {len(want)} readings published {when} were not printed "
                     f"(e.g. {missing[0]!r} is missing): print every reading as 'Received report: ' + its payload")
    return len(want)


@graded
async def check_rep_failover(path: Any = "rep.py", seed: Optional[int] = None) -> None:
    """``python rep.py`` with both nodes of a cluster in ``$NATS_URL`` prints ``Connected to HOST:PORT``, then
    ``Disconnected`` and ``Reconnected to HOST:PORT`` when its node is killed, and keeps printing the readings."""
    from ...servers.cluster import Cluster

    file = program_file(path, "rep.py")
    what = f"python {path}"
    rng = random.Random(seed)
    cluster = Cluster(size=2, name=unique("check-")).start()
    try:
        await cluster.wait_formed(timeout=15, progress=False)
        async with student_program(file, broker=cluster) as program:
            await _failover(program, cluster, what, rng)
    finally:
        cluster.stop()


async def _failover(program: Program, cluster: Any, what: str, rng: random.Random) -> None:
    nodes = list(cluster.nodes.values())

    victim = await node_showing(program, nodes, lambda b: SUBJECT in their_subjects(b.monitor_url, CHECKER), what,
                                SUBJECT)
    survivor = next(b for b in nodes if b is not victim)
    async with client(survivor.url, CHECKER) as nc:
        await _printed(program, nc, rng, what, "before any node was killed")
        if _ports(program, CONNECTED) != [victim.port]:
            raise failed(f"{what}: its output has no line 'Connected to HOST:PORT' naming the node it is on (port "
                         f"{victim.port}); print it once connected, from nc.connected_url")
        # docker container kill: the server's truth is where its subscription shows next
        await killed_and_back(program, victim, survivor, lambda b: SUBJECT in their_subjects(b.monitor_url, CHECKER),
                              what, SUBJECT, BACK_WITHIN)
        count = await _printed(program, nc, rng, what, f"after {victim.name} was killed")
        await poll(lambda: _ports(program, RECONNECTED), SETTLE)
    lines = program.stdout()
    downs = [i for i, line in enumerate(lines) if DISCONNECTED.match(line)]
    ups = [i for i, line in enumerate(lines) if RECONNECTED.match(line)]
    if not downs:
        raise failed(f"{what}: it came back on the surviving node, but printed no line starting with 'Disconnected': "
                     "pass disconnected_cb= to nats.connect, an async def that prints it")
    if not ups:
        raise failed(f"{what}: it came back on the surviving node, but printed no line 'Reconnected to HOST:PORT': "
                     "pass reconnected_cb= to nats.connect, an async def that prints it (from nc.connected_url)")
    if _ports(program, RECONNECTED)[0] != survivor.port or ups[0] < downs[0]:
        raise failed(f"{what}: it printed {lines[ups[0]]!r}, but after the kill it is on port {survivor.port}, "
                     "after its 'Disconnected' line: print nc.connected_url inside reconnected_cb")
    passed(f"{what}: 'Disconnected' when {victim.name} was killed, 'Reconnected to' {survivor.name}'s port, and "
           f"every one of the {count} readings published after the kill printed")
