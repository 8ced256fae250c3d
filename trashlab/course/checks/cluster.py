"""Checks of notebook 05 (clustering): a client that records its own outage when a node dies.

The check starts a cluster of two nodes of its own, gives the student's function the servers and an
empty list, SIGKILLs the node the client is on, and compares what the client recorded with the truth:
the moment of the kill (the check's own clock) and the moment the surviving server accepted the
client again (``start`` of its connection in that server's ``/connz``).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from . import failed, passed
from ._answer import answer, graded, require_function
from ._live import poll, unique
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
