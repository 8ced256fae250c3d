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

:func:`chaos_drill` measures a fault like the failover drill: sequence-numbered readings from a
simulator on one node to a collector on another, the fault in the middle, then the loss, the largest
gap between arrivals and how long the collector took to reconnect (a :class:`FailoverResult`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from ..errors import BadArgument, BrokerError

if TYPE_CHECKING:
    from ..services.lifecycle import NatsComponent

log = logging.getLogger("trashlab")

FAULTS = ("kill", "lame_duck", "drop", "partition", "step_down")
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
        raise BrokerError(f"broker {broker.name} is not running: nothing to put in lame-duck mode")
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

    deadline = time.monotonic() + timeout
    while True:
        good = True
        for n, b in cluster.nodes.items():
            if not b.running:
                continue
            peers = {r.get("remote_name") for r in fetch(b.monitor_url, "routez").get("routes") or []}
            good = good and ok(n, peers)
        if good:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"cluster {cluster.name}: waited {timeout:g}s for {what}: see cluster.routes()")
        time.sleep(0.05)


# ----- JetStream leader step-down ---------------------------------------------------------------------
async def stream_leader(cluster: Any, stream: str) -> Optional[str]:
    """The node leading ``stream`` now (None while an election runs)."""
    from .connection import connect

    nc = await connect(cluster.urls, name="trashlab-chaos")
    try:
        return _leader(await nc.jetstream(timeout=2.0).stream_info(stream))
    except Exception:
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
        except Exception as e:
            raise BrokerError(f"no JetStream stream {stream!r} on cluster {cluster.name} ({e}): create it first") from None
        t0 = time.monotonic()
        reply = await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5.0)
        answer = json.loads(reply.data or b"{}")
        if answer.get("error"):
            raise BrokerError(f"stream {stream} did not step down: {answer['error'].get('description')}")
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            try:
                now = _leader(await js.stream_info(stream))
            except Exception:
                now = None
            if now and now != before:
                return {"stream": stream, "old_leader": before, "new_leader": now,
                        "election_s": time.monotonic() - t0}
            await asyncio.sleep(0.02)
        raise BrokerError(f"stream {stream} had no new leader after {timeout:g}s")
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
    reload while it runs.
    """

    def __init__(self, broker: Any, subject: str = "trash-level", *, kind: str = "client", delay: float = 0.05,
                 pending: int = 20, burst: int = 8 << 20, deadline: str = "2s") -> None:
        if kind not in ("client", "server"):
            raise BadArgument(f"kind={kind!r}: use 'client' (nats-py drops) or 'server' (the server cuts it off)")
        self.broker, self.subject, self.kind = broker, subject, kind
        self.delay, self.pending, self.burst, self.deadline = delay, pending, burst, deadline
        self._lowered = False
        self.received = 0
        self.dropped = 0
        self.cut_off = False
        self._nc: Any = None
        self._sock: Optional[socket.socket] = None
        self._slow_before = 0

    def _server_slow(self) -> int:
        from .monitor import fetch

        return fetch(self.broker.monitor_url, "varz").get("slow_consumers", 0)

    @property
    def server_slow_consumers(self) -> int:
        """Slow consumers the server counted since this one started (its view)."""
        return self._server_slow() - self._slow_before

    async def start(self) -> "SlowConsumer":
        """Subscribe (and for ``kind="server"``, stop reading and fill the server's buffer)."""
        from nats.errors import SlowConsumerError

        from .connection import connect

        self._slow_before = self._server_slow()
        if self.kind == "client":
            def on_error(e: Exception) -> bool:
                if isinstance(e, SlowConsumerError):
                    self.dropped += 1
                    return True
                return False

            self._nc = await connect(self.broker.url, name="slow-consumer", on_error=on_error)

            async def handle(msg) -> None:
                self.received += 1
                await asyncio.sleep(self.delay)  # the work it cannot do fast enough

            await self._nc.subscribe(self.subject, cb=handle, pending_msgs_limit=self.pending)
            return self
        if self.deadline and self.broker._write_deadline != self.deadline:
            self.broker._write_deadline = self.deadline
            await asyncio.to_thread(self.broker.reload)
            self._lowered = True
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window: the server's writes stall
        sock.connect((self.broker.client_host, self.broker.port))
        sock.settimeout(5)
        sock.recv(4096)  # INFO
        connect_opts = {"verbose": False, "pedantic": False, "name": "slow-consumer", "lang": "raw-tcp",
                        "version": "0"}
        if self.broker.user is not None:
            connect_opts.update(user=self.broker.user, **{"pass": self.broker.password})
        elif self.broker.token is not None:
            connect_opts["auth_token"] = self.broker.token
        sock.sendall(f"CONNECT {json.dumps(connect_opts)}\r\nSUB {self.subject} 1\r\nPING\r\n".encode())
        buf = b""
        while b"PONG" not in buf:
            buf += sock.recv(4096)
        self._sock = sock  # from now on nobody reads it
        if self.burst:
            await self._fill()
        return self

    async def _fill(self) -> None:
        from .connection import connect

        nc = await connect(self.broker.url, name="slow-consumer-burst")
        try:
            chunk = b"x" * 1024
            for i in range(self.burst // len(chunk)):
                await nc.publish(self.subject, chunk)
                if i % 256 == 0:
                    await nc.flush()
                    if self.server_slow_consumers > 0:
                        break
            await nc.flush()
        finally:
            await nc.close()

    async def wait_cut_off(self, timeout: float = 10.0) -> bool:
        """Wait until the server counted this one as a slow consumer (``kind="server"``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server_slow_consumers > 0:
                self.cut_off = True
                return True
            await asyncio.sleep(0.1)
        return False

    async def stop(self) -> None:
        """Unsubscribe and disconnect."""
        if self._nc is not None:
            nc, self._nc = self._nc, None
            await nc.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._lowered:  # back to the server's default
            self._lowered = False
            self.broker._write_deadline = None
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


# ----- measuring a fault like the failover drill ----------------------------------------------------------
async def _undo(fault: str, cluster: Any, subject: str) -> None:
    """Undo a config-reload fault (a kill or lame duck is undone by the restart after the drill)."""
    if fault == "drop":
        await asyncio.to_thread(stop_dropping, cluster, subject)
    elif fault == "partition":
        await asyncio.to_thread(heal, cluster)


async def chaos_drill(cluster: Any, fault: str = "lame_duck", *, rate: float = 200.0, fault_after: float = 1.5,
                      run_after: float = 1.5, percent: float = 30.0, subject: str = "trash-level.chaos",
                      progress: bool = True):
    """Cause ``fault`` while sequence-numbered readings flow from one node to a collector on another; undo it.

    ``fault``: ``"kill"``, ``"lame_duck"``, ``"drop"`` (``percent`` % lost), ``"partition"``, ``"step_down"``
    (JetStream: needs ``Cluster(3, jetstream=True)``). Returns a :class:`~trashlab.course.failover.FailoverResult`:
    published, received, lost, largest gap between arrivals, reconnect time of the collector.
    """
    from .._progress import wait_until
    from ..course.failover import (_AckedSimulator, _DurableReader, _interest_reached, _make_stream, _result,
                                   STREAM, end_drill, track_connection)
    from ..services.collector import Collector
    from ..services.simulator import Simulator

    if fault not in FAULTS:
        raise BadArgument(f"fault={fault!r}: use one of {', '.join(FAULTS)}")
    await cluster.wait_formed(progress=progress)
    running = _running(cluster)
    if len(running) < 2:
        raise BadArgument("a chaos drill needs at least 2 running nodes: Cluster(size=2).start()")
    jetstream = fault == "step_down"
    if jetstream and (not cluster.jetstream or len(running) < 3):
        raise BadArgument("a step-down drill needs Cluster(size=3, jetstream=True)")
    victim, other = running[0], running[-1]
    published_at: List[float] = []
    col = Collector(victim.url, subject=subject, name="chaos-collector")
    reader = None
    watched: NatsComponent = col  # whose connection is watched: the collector, or the durable reader feeding it
    if jetstream:
        await _make_stream(victim.url, subject, replicas=3)
        reader = watched = await _DurableReader(victim.url, subject, col).start()
    else:
        await col.start()
        await _interest_reached(other, subject)
    sim_cls = _AckedSimulator if jetstream else Simulator
    sim = sim_cls(other.url, subject=subject, interval=1.0 / rate, sequence=True, seed=7, name="chaos-simulator",
                  on_publish=lambda payload: published_at.append(time.time()))
    path: List[tuple] = []
    sampler = track_connection(watched, path)
    t0 = time.time()
    extra: Dict[str, Any] = {}
    faulted = undone = False
    try:
        await sim.start()
        await asyncio.sleep(fault_after)
        fault_at = time.time()
        was_on = watched.connected_url
        if progress:
            print(f"chaos drill: {fault} ({victim.name}) while {rate:g} readings/s flow ...", flush=True)
        faulted = True  # from here on the finally below undoes it, even when interrupted
        if fault == "kill":
            victim.kill()
        elif fault == "lame_duck":
            lame_duck(victim)
        elif fault == "drop":
            await asyncio.to_thread(drop_messages, cluster, subject, percent)
        elif fault == "partition":
            await asyncio.to_thread(partition, cluster, victim.name)
        elif fault == "step_down":
            extra = await step_down(cluster, STREAM)
        if fault in ("kill", "lame_duck"):  # wait until the collector moved (lame duck: up to 30 s)
            await wait_until(lambda: watched.connected_url not in (None, was_on), timeout=40, every=0.01,
                             what=f"the collector leaving {victim.name}", show=progress, show_after=2.0)
        await asyncio.sleep(run_after)
        await _undo(fault, cluster, subject)
        undone = True
        await sim.stop()
        published = sim.published
        await asyncio.sleep(0.5 if not jetstream else 3.0)
    finally:
        if faulted and not undone:  # interrupted (or failed) mid-drill: the fault never outlives the drill
            await _undo(fault, cluster, subject)
        await end_drill(sampler, [sim, reader, col], cluster.urls if jetstream else None)
        if faulted and fault in ("kill", "lame_duck"):
            if victim.running:  # lame duck: still draining; end it now
                victim.kill()
            victim.restart()
            await cluster.wait_formed(progress=progress)
    result = _result(fault, victim, cluster, col, published, published_at, reader.duplicates if reader else 0,
                     path, t0, fault_at, rate, {}, "collector")
    result.action = {"kill": "killed", "lame_duck": "put in lame-duck mode", "drop": f"dropped {percent:g} % on",
                     "partition": "cut off", "step_down": "stepped the stream leader down, collector on"}[fault]
    result.extra = extra
    return result
