"""The chaos menu: one call per failure, each reversible, each visible on the FlowMap, each measurable.

=====================  =========================================  ==========================================
fault                  cause it                                   undo it
=====================  =========================================  ==========================================
kill a node            ``cluster.kill(name)`` (SIGKILL)           ``cluster.nodes[name].restart()``
lame-duck mode         ``cluster.lame_duck(name)``                ``cluster.nodes[name].restart()``
                       (``nats-server --signal ldm=<pid>``)       (after it left: 30 s at most)
slow consumer          ``await slow_consumer(url, ...)``          ``await sc.stop()``
message loss           ``target.drop_messages(subject, 30)``      ``target.stop_dropping()``
                       (a weighted subject mapping, reloaded)
network partition      ``cluster.partition(name)`` (routes       ``cluster.heal()``
                       removed by config reload)
JetStream step-down    ``await cluster.step_down(stream)``        (the stream has a new leader: nothing)
=====================  =========================================  ==========================================

Config changes go through :meth:`Broker.reload` (the server runs from one config file; the reload is
``nats-server --signal reload=<pid>``): no restart, clients stay connected.

Only what the servers do lives here. :func:`trashlab.chaos_drill` (:mod:`trashlab.course.chaos`), a layer
up, measures a fault like the failover drill, with the clients of the lab.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from typing import Any, Dict, List, Optional
from urllib.parse import unquote, urlsplit

from .._progress import poll_until, wait_until
from ..errors import BadArgument, BrokerError, BrokerTimeout
from .rawclient import login
from .retry import NATS_ERRORS

log = logging.getLogger("trashlab")

#: at most this long for one answer of a node's monitoring port (asked from a thread)
MONITOR_TIMEOUT = 2.0

_lame_ducks: Dict[int, float] = {}  # pid -> when it was put in lame-duck mode


def _nodes(target: Any) -> List[Any]:
    nodes = getattr(target, "nodes", None)
    return list(nodes.values()) if isinstance(nodes, dict) else [target]


def _running(target: Any) -> List[Any]:
    return [b for b in _nodes(target) if b.running]


# ----- lame-duck mode -----------------------------------------------------------------------------
def lame_duck(broker: Any) -> Any:
    """Put a node in lame-duck mode (``nats-server --signal ldm=<pid>``): it tells its clients to move,
    closes them one by one after a short grace period and exits when ``lame_duck_duration`` (30 s) ends."""
    if not broker.running:
        raise BrokerError(f"broker {broker.name} is not running: nothing to put in lame-duck mode", name=broker.name)
    os.kill(broker.pid, signal.SIGUSR2)  # what `nats-server --signal ldm=<pid>` sends
    _lame_ducks[broker.pid] = time.time()
    return broker


def in_lame_duck(broker: Any) -> bool:
    """True while ``broker``'s current process drains in lame-duck mode (the FlowMap draws it orange)."""
    return broker.running and broker.pid in _lame_ducks


# ----- message loss: a weighted subject mapping ------------------------------------------------------
def dropping(target: Any) -> Dict[str, float]:
    """Subjects losing messages now, with the percentage lost (first running node's config)."""
    nodes = _running(target)
    if not nodes:
        return {}
    return {s: 100.0 - sum(w for d, w in m if d == s) for s, m in getattr(nodes[0], "_mappings", {}).items()
            if sum(w for d, w in m if d == s) < 100}


def drop_messages(target: Any, subject: str, percent: float = 30.0) -> Any:
    """Lose ``percent`` % of the messages published to ``subject`` (on every node of a cluster).

    A subject mapping whose weights add up to less than 100 % drops the rest:
    ``mappings { "trash-level": [{destination: "trash-level", weight: 70%}] }``, applied by config reload.
    """
    if not isinstance(subject, str) or not subject or " " in subject:
        raise BadArgument(f"subject={subject!r}: give the subject to lose messages on, e.g. 'trash-level'")
    if not isinstance(percent, (int, float)) or not 0 < percent <= 100:
        raise BadArgument(f"percent={percent!r} must be more than 0 and at most 100, e.g. 30")
    keep = 100.0 - float(percent)
    for b in _running(target):
        b._mappings = dict(b._mappings)
        if keep > 0:
            b._mappings[subject] = [(subject, keep)]
        else:  # 100 % lost: map it somewhere nobody listens
            b._mappings[subject] = [(f"_trashlab.dropped.{subject}", 100.0)]
        b.reload()
    return target


def stop_dropping(target: Any, subject: Optional[str] = None) -> Any:
    """Undo :func:`drop_messages` (for ``subject``, or for every subject).

    nats-server 2.15 keeps a mapping that a reload removes, so the mapping becomes the identity at 100 %.
    """
    for b in _running(target):
        b._mappings = {s: ([(s, 100.0)] if subject in (None, s) else m) for s, m in b._mappings.items()}
        b.reload()
    return target


# ----- network partition: routes removed by config reload ----------------------------------------------
def _routes_of(cluster: Any, side: List[str]) -> List[str]:
    return [cluster._route_url(cluster.nodes[n].cluster_port) for n in side]


def partition(cluster: Any, *isolated: str, timeout: float = 10.0) -> Any:
    """Cut the routes between ``isolated`` nodes (default: the first) and the others; :func:`heal` joins them.

    Each side keeps only routes to its own side and every node reloads its config, so nobody retries
    the cut routes. Clients stay connected to their node: they only stop hearing the other side.
    """
    names = list(cluster.nodes)
    isolated = tuple(isolated) or (names[0],)
    unknown = [n for n in isolated if n not in cluster.nodes]
    if unknown:
        raise BadArgument(f"no node {unknown[0]!r} in cluster {cluster.name}: use one of {', '.join(names)}")
    rest = [n for n in names if n not in isolated]
    if not rest:
        raise BadArgument("a partition needs nodes on both sides: leave at least one node out")
    for side in (list(isolated), rest):
        for n in side:
            b = cluster.nodes[n]
            b._routes_now = _routes_of(cluster, side)
            if b.running:
                b.reload()
    _wait_routes(cluster, lambda a, peers: not (peers & set(rest if a in isolated else isolated)), timeout,
                 "the cut routes to close")
    return cluster


def heal(cluster: Any, timeout: float = 15.0) -> Any:
    """Give every node its routes back (config reload) and wait until the cluster is whole again."""
    for b in cluster.nodes.values():
        b._routes_now = None
        if b.running:
            b.reload()
    _wait_routes(cluster, lambda a, peers: peers >= {n for n, b in cluster.nodes.items() if b.running and n != a},
                 timeout, "the routes to come back")
    return cluster


def _wait_routes(cluster: Any, ok, timeout: float, what: str) -> None:
    from .monitor import fetch

    def good() -> bool:
        return all(ok(n, {r.get("remote_name") for r in fetch(b.monitor_url, "routez").get("routes") or []})
                   for n, b in cluster.nodes.items() if b.running)

    if not poll_until(good, timeout=timeout, every=0.05):
        raise BrokerTimeout(f"cluster {cluster.name}: waited {timeout:g}s for {what}: see cluster.routes()",
                            name=cluster.name, timeout=timeout)


# ----- JetStream leader step-down ---------------------------------------------------------------------
async def stream_leader(cluster: Any, stream: str) -> Optional[str]:
    """The node leading ``stream`` now (None while an election runs)."""
    from .connection import connect

    nc = await connect(cluster.urls, name="trashlab-chaos")
    try:
        return _leader(await nc.jetstream(timeout=2.0).stream_info(stream))
    except NATS_ERRORS:  # no leader this instant (an election), or no such stream
        return None
    finally:
        await nc.close()


def _leader(info: Any) -> Optional[str]:
    return info.cluster.leader if info.cluster else None


async def step_down(cluster: Any, stream: str, timeout: float = 15.0) -> dict:
    """Ask the leader of ``stream`` to step down; wait for the election. Returns old and new leader and the time."""
    from .connection import connect

    nc = await connect(cluster.urls, name="trashlab-chaos")
    try:
        js = nc.jetstream(timeout=2.0)
        try:
            before = _leader(await js.stream_info(stream))
        except NATS_ERRORS as e:
            raise BrokerError(f"no JetStream stream {stream!r} on cluster {cluster.name} ({e}): create it first",
                              name=cluster.name) from e
        t0 = time.monotonic()
        reply = await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5.0)
        answer = json.loads(reply.data or b"{}")
        if answer.get("error"):
            raise BrokerError(f"stream {stream} did not step down: {answer['error'].get('description')}",
                              name=cluster.name)
        now: Optional[str] = None

        async def elected() -> bool:
            nonlocal now
            try:
                now = _leader(await js.stream_info(stream))
            except NATS_ERRORS:  # asked the node that just stepped down, or mid-election: ask again
                now = None
            return bool(now) and now != before

        if not await wait_until(elected, timeout=timeout - (time.monotonic() - t0), every=0.02, show=False,
                                what=f"stream {stream} electing a new leader"):
            raise BrokerTimeout(f"stream {stream} had no new leader after {timeout:g}s", name=cluster.name,
                                timeout=timeout)
        return {"stream": stream, "old_leader": before, "new_leader": now, "election_s": time.monotonic() - t0}
    finally:
        await nc.close()


# ----- slow consumer --------------------------------------------------------------------------------
class SlowConsumer:
    """A subscriber that cannot keep up, seen from both ends.

    ``kind="client"``: a nats-py subscriber whose handler takes ``delay`` s per message and may hold
    only ``pending`` messages: nats-py drops the rest and says so (``.dropped``, the client's view).
    ``kind="server"``: a bare TCP client that subscribes and then stops reading; the server's buffer
    for it fills and after ``write_deadline`` the server cuts it off and counts a slow consumer
    (``/varz`` ``slow_consumers``, the server's view). ``burst`` bytes are published to fill it fast,
    and the broker's ``write_deadline`` is lowered to ``deadline`` (server default 10 s) by config
    reload while it runs; ``stop()``, or a start that fails, puts the earlier one back.

    On an :class:`~trashlab.AccountsBroker` or a :class:`~trashlab.ClassHub` it logs in as ``user``
    (default: the broker's first user, or the hub's first student); its publisher logs in as the same
    user, so both are in one account.
    """

    def __init__(self, broker: Any, subject: str = "trash-level", *, kind: str = "client", delay: float = 0.05,
                 pending: int = 20, burst: int = 8 << 20, deadline: str = "2s", user: Optional[str] = None) -> None:
        if kind not in ("client", "server"):
            raise BadArgument(f"kind={kind!r}: use 'client' (nats-py drops) or 'server' (the server cuts it off)")
        self.broker, self.subject, self.kind = broker, subject, kind
        self.delay, self.pending, self.burst, self.deadline = delay, pending, burst, deadline
        self.user = user
        self._lowered = False
        self._deadline_before: Optional[str] = None
        self.received = 0
        self.dropped = 0
        self.cut_off = False
        self._nc: Any = None
        self._sock: Optional[socket.socket] = None
        self._slow_before = 0

    def _server_slow(self) -> int:
        from .monitor import fetch

        return fetch(self.broker.monitor_url, "varz", timeout=MONITOR_TIMEOUT).get("slow_consumers", 0)

    @property
    def server_slow_consumers(self) -> int:
        """Slow consumers the server counted since this one started (its view; an HTTP request)."""
        return self._server_slow() - self._slow_before

    async def _counted(self) -> int:
        """:attr:`server_slow_consumers`, asked from a thread: never an HTTP wait on the event loop."""
        return await asyncio.to_thread(lambda: self.server_slow_consumers)

    @property
    def url(self) -> str:
        """The client URL it logs in with (with the credentials of ``user`` where the broker has accounts)."""
        url_for = getattr(self.broker, "url_for", None)  # AccountsBroker, ClassHub: one account per user
        return url_for(self.user) if url_for is not None else self.broker.url

    async def start(self) -> "SlowConsumer":
        """Subscribe (and for ``kind="server"``, stop reading and fill the server's buffer).

        A start that fails (the server refused the login, closed the connection, ...) or is interrupted
        leaves nothing behind: no socket, and the broker's write deadline as it was."""
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> "SlowConsumer":
        from nats.errors import SlowConsumerError

        from .connection import connect

        url = self.url  # a wrong user fails here, before anything changed
        self._slow_before = await asyncio.to_thread(self._server_slow)
        if self.kind == "client":
            def on_error(e: Exception) -> bool:
                if isinstance(e, SlowConsumerError):
                    self.dropped += 1
                    return True
                return False

            self._nc = await connect(url, name="slow-consumer", on_error=on_error)

            async def handle(msg) -> None:
                self.received += 1
                await asyncio.sleep(self.delay)  # the work it cannot do fast enough

            await self._nc.subscribe(self.subject, cb=handle, pending_msgs_limit=self.pending)
            return self
        b = self.broker
        if self.deadline and b._write_deadline != self.deadline:
            self._deadline_before = b._write_deadline
            b._write_deadline = self.deadline
            self._lowered = True
            await asyncio.to_thread(b.reload)
        parts = urlsplit(url)
        user, password = unquote(parts.username or "") or None, unquote(parts.password or "") or None
        token = user if password is None else None  # nats://TOKEN@host:port
        done = await asyncio.to_thread(login, parts.hostname or b.client_host, parts.port or b.port,
                                       name="slow-consumer", user=None if token else user, password=password,
                                       token=token, subscribe=self.subject,
                                       rcvbuf=4096)  # a tiny window: the server's writes stall
        if not done.accepted:
            done.sock.close()
            raise BrokerError(f"broker {b.name} did not let the slow consumer in "
                              f"({done.answer.decode(errors='replace')[:80] or 'connection closed'})", name=b.name)
        self._sock = done.sock  # from now on nobody reads it
        if self.burst:
            await self._fill(url)
        return self

    async def _fill(self, url: str) -> None:
        from .connection import connect

        nc = await connect(url, name="slow-consumer-burst")
        try:
            chunk = b"x" * 1024
            for i in range(self.burst // len(chunk)):
                await nc.publish(self.subject, chunk)
                if i % 256 == 0:
                    await nc.flush()
                    if await self._counted() > 0:
                        break
            await nc.flush()
        finally:
            await nc.close()

    async def wait_cut_off(self, timeout: float = 10.0) -> bool:
        """Wait until the server counted this one as a slow consumer (``kind="server"``)."""
        async def counted() -> bool:
            return await self._counted() > 0

        self.cut_off = await wait_until(counted, timeout=timeout, every=0.1, show=False,
                                        what=f"the server cutting off the slow consumer on {self.subject}")
        return self.cut_off

    async def stop(self) -> None:
        """Unsubscribe and disconnect."""
        if self._nc is not None:
            nc, self._nc = self._nc, None
            await nc.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._lowered:  # back to what it was (the server's default: None)
            self._lowered = False
            self.broker._write_deadline = self._deadline_before
            if self.broker.running:
                await asyncio.to_thread(self.broker.reload)

    def __repr__(self) -> str:
        return (f"<SlowConsumer {self.kind} on {self.subject}: received {self.received}, client dropped "
                f"{self.dropped}, server cut off {self.cut_off}>")


async def slow_consumer(broker: Any, subject: str = "trash-level", **options: Any) -> SlowConsumer:
    """Start a :class:`SlowConsumer` on ``broker`` (a Broker, or a Cluster's first node)."""
    if hasattr(broker, "nodes"):
        broker = next(b for b in broker.nodes.values() if b.running)
    return await SlowConsumer(broker, subject, **options).start()
