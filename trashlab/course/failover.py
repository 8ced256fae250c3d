"""The failover drill (lab section 5, measured): kill a node while readings flow, count what arrives.

A simulator publishes sequence-numbered readings (``"seq"`` added to the lab's payload) to one node;
a collector given only the first node's URL receives them; the first node is SIGKILLed
(``docker container kill iot-msg``) in the middle. The result says how long the collector took to
reconnect to another node, the largest gap between two arrivals, and which sequence numbers never
arrived.

* Core NATS is at-most-once: a message is delivered to whoever is subscribed *at that instant*.
  The few readings that were in flight to the dead node, or published while the collector was
  reconnecting, are gone. That is the truth, not a bug.
* With ``jetstream=True`` the readings go into a stream over the same subject, replicated on 3 nodes;
  the publisher waits for the stream's acknowledgement (and retries, with a message id so a retry is
  never stored twice) and the collector reads from a durable consumer, acknowledging each reading.
  Nothing is lost: every sequence number arrives exactly once, a little later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Awaitable, Callable, List, Optional, Union

import nats.errors
import pandas as pd

from .._aio import cancel
from .._progress import wait_until, waiting
from ..servers.chaos import in_lame_duck
from ..servers.cluster import Cluster
from ..services.collector import Collector
from ..servers.connection import connect
from ..errors import BadArgument, BrokerError, BrokerTimeout, ConnectionFailed
from ..message import SUBJECT
from ..servers.monitor import fetch
from ..servers.retry import NATS_ERRORS, TRY_AGAIN, Backoff
from ..services.lifecycle import NatsComponent
from ..services.simulator import Simulator

log = logging.getLogger("trashlab")

STREAM = "TRASH_DRILL"
DURABLE = "drill-collector"
#: seconds between two looks at a node's /routez while waiting for a subscription to reach it
INTEREST_POLL = 0.05
#: at most this long for one answer of a node's monitoring port (asked from a thread)
MONITOR_TIMEOUT = 1.0
COMPARE_COLUMNS = ["mode", "killed", "published", "received", "lost", "duplicates", "reconnect_ms",
                   "largest_gap_ms", "lost_seqs", "leaders on killed node"]


@dataclass
class FailoverResult:
    """What a failover drill measured; ``.plot()`` draws the timeline, ``.row()`` one line of a table."""

    mode: str
    killed: str
    published: int
    received: int
    lost_seqs: List[int]
    duplicates: int
    reconnect_s: Optional[float]
    largest_gap_s: float
    moved_from: Optional[str]
    moved_to: Optional[str]
    kill_at: float
    reconnected_at: Optional[float]
    rate: float
    frame: pd.DataFrame = field(repr=False)
    leaders: dict = field(default_factory=dict)
    client: str = "collector"  # whose connection died with the node: "collector" or "simulator"
    action: str = "killed"  # what was done to the node (the chaos drills do other things than kill)
    extra: dict = field(default_factory=dict)  # what a fault measured besides (a step-down: old and new leader)
    #: the seq of each reading the simulator published (JetStream: the stream acknowledged), in order
    published_seqs: List[int] = field(default_factory=list, repr=False)
    #: the seq of each reading the collector received, in arrival order, a redelivery as often as it came
    received_seqs: List[int] = field(default_factory=list, repr=False)

    @property
    def lost(self) -> int:
        """How many sequence numbers never arrived."""
        return len(self.lost_seqs)

    def row(self) -> dict:
        """The headline numbers as one table row."""
        shown = self.lost_seqs[:8]
        return {"mode": self.mode, "killed": self.killed, "published": self.published,
                "received": self.received, "lost": self.lost, "duplicates": self.duplicates,
                "reconnect_ms": None if self.reconnect_s is None else round(self.reconnect_s * 1000, 1),
                "largest_gap_ms": round(self.largest_gap_s * 1000, 1),
                "lost_seqs": ", ".join(map(str, shown)) + (" ..." if self.lost > len(shown) else ""),
                "leaders on killed node": ", ".join(w for w, n in self.leaders.items() if n == self.killed)
                if self.leaders else "-"}

    def summary(self) -> str:
        """One sentence with the numbers."""
        rc = ("did not reconnect" if self.action == "killed" else "stayed connected") if self.reconnect_s is None else \
            f"reconnected to {self.moved_to} {self.reconnect_s * 1000:.0f} ms after the {'kill' if self.action == 'killed' else 'fault'}"
        return (f"{self.mode}: {self.action} {self.killed}; the {self.client} {rc}; largest gap between arrivals "
                f"{self.largest_gap_s * 1000:.0f} ms; {self.published} published, {self.received} received, "
                f"{self.lost} lost" + (f" (seq {', '.join(map(str, self.lost_seqs[:8]))})" if self.lost else "")
                + (f"; {self.duplicates} redeliveries dropped as duplicates" if self.duplicates else "")
                + self._leader_note())

    def _leader_note(self) -> str:
        on_victim = [what for what, node in self.leaders.items() if node == self.killed]
        if not self.leaders:
            return ""
        if not on_victim:
            return f"; no JetStream leader was on {self.killed}"
        return (f"; the {' and '.join(on_victim)} leader was on {self.killed}, so the survivors first had to "
                "elect a new one (Raft: seconds, not milliseconds)")

    def __str__(self) -> str:
        return self.summary()

    def plot(self, ax=None, zoom: bool = True):
        """Timeline: sequence number against arrival time, the kill marked, lost readings in red."""
        if ax is None:
            fig = _new_figure((11, 3.6))
            axes = fig.subplots(1, 2, width_ratios=[2, 1]) if zoom else [fig.subplots()]
        else:
            fig, axes = ax.figure, [ax]
        for i, a in enumerate(axes):
            self._draw(a, legend=(i == 0))
        if zoom and len(axes) > 1:
            end = self.reconnected_at if self.reconnected_at is not None else self.kill_at
            span = max(0.15, end - self.kill_at, self.largest_gap_s)
            lo, hi = self.kill_at - 0.4 * span, self.kill_at + 1.6 * span
            axes[1].set_xlim(lo, hi)
            seen = self.frame[(self.frame["t"] >= lo) & (self.frame["t"] <= hi)]
            if not seen.empty:
                axes[1].set_ylim(seen["seq"].min() - 1, seen["seq"].max() + 1)
            axes[1].set_title("zoom on the kill")
        return fig

    def _draw(self, ax, legend: bool) -> None:
        got = self.frame[self.frame["received_at"].notna()]
        miss = self.frame[self.frame["received_at"].isna()]
        ax.plot(got["t"], got["seq"], ".", ms=3, color="tab:blue", label="received (arrival time)")
        if not miss.empty:
            ax.plot(miss["published_t"], miss["seq"], "x", ms=7, color="tab:red",
                    label=f"lost ({len(miss)}, at publish time)")
        ax.axvline(self.kill_at, color="tab:red", ls="--", lw=1.2, label=f"kill {self.killed}")
        if self.reconnected_at is not None:
            ax.axvspan(self.kill_at, max(self.reconnected_at, self.kill_at + 1e-3), color="tab:orange",
                       alpha=0.3, label=f"{self.client} reconnecting")
        ax.set_xlabel("seconds since the simulator started")
        ax.set_ylabel("seq")
        ax.set_title(f"{self.mode}: {self.published} published, {self.received} received, {self.lost} lost")
        if legend:
            ax.legend(loc="upper left", fontsize=8)


def _new_figure(figsize: tuple):
    """A figure made through pyplot (so Jupyter draws it when a cell returns it), closed at once.

    Closed, it is not drawn a second time at the end of the cell, and re-running cells never piles
    figures up in pyplot.
    """
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig


def compare_drills(*results: FailoverResult) -> pd.DataFrame:
    """Drill results side by side, one row each (core NATS vs JetStream)."""
    return pd.DataFrame([r.row() for r in results], columns=COMPARE_COLUMNS).set_index("mode")


def plot_timelines(*results: FailoverResult):
    """One figure with the timeline of each result, stacked (same layout as ``result.plot()``)."""
    fig = _new_figure((11, 3.4 * len(results)))
    grid = fig.subplots(len(results), 1, squeeze=False)
    for r, row in zip(results, grid):
        r._draw(row[0], legend=True)
    return fig


# ----- the JetStream side ---------------------------------------------------------------------
class _AckedSimulator(Simulator):
    """The simulator, publishing through JetStream: waits for the stream's ack, retries until stored."""

    def __init__(self, *args, give_up: float = 30.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.give_up = give_up
        self.retries = 0
        self._run_id = uuid.uuid4().hex[:8]
        self._in_flight = False  # a reading sent and not acknowledged yet
        self._finishing = False

    async def finish(self, timeout: float = 5.0) -> None:
        """Publish nothing new, let the reading in flight get its ack (at most ``timeout`` s), then stop.

        A plain ``stop()`` cancels the wait for the last ack: that reading was sent (maybe stored, maybe
        delivered) but is not counted as published, and the drill's books would not add up."""
        self._finishing = True
        await wait_until(lambda: not self._in_flight, timeout=timeout, every=0.01, show=False,
                         what="the drill's last reading being acknowledged")
        await self.stop()

    async def _publish(self, payload: bytes) -> None:
        assert self._nc is not None, "publishing before start()"
        if self._finishing:
            return
        self._in_flight = True
        try:
            await self._publish_acked(payload)
        finally:
            self._in_flight = False

    async def _publish_acked(self, payload: bytes) -> None:
        assert self._nc is not None, "publishing before start()"
        js = self._nc.jetstream(timeout=1.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.give_up
        msg_id = f"{self._run_id}-{self.published + 1}"  # the stream drops a retry it already stored
        backoff = Backoff(first=0.01, longest=0.05)  # about the old 20 ms while a leader is elected, never a spin
        while True:
            if self.stopping:  # nats-py may swallow a cancellation inside publish: stop for sure
                raise asyncio.CancelledError
            try:
                await js.publish(self.subject, payload, timeout=0.5, headers={"Nats-Msg-Id": msg_id})
                break
            except asyncio.CancelledError:
                raise
            except TRY_AGAIN:  # no stream leader yet, node gone, ack lost: try again
                if loop.time() > deadline:
                    self.dropped += 1
                    return
                self.retries += 1
                await backoff.pause()
        self.published += 1
        if self.on_publish is not None:
            self.on_publish(payload)


class _DurableReader(NatsComponent):
    """Pulls from the drill's durable consumer into a Collector, acking each reading, dropping redeliveries."""

    drain_on_stop = False  # what is not acked is redelivered to the next reader; nothing to hand over
    stop_timeout = 2.0  # the node may be the one the drill killed

    def __init__(self, url: str, subject: str, collector: Collector) -> None:
        super().__init__(url, "drill-collector")
        self.subject, self.collector = subject, collector
        self.duplicates = 0
        self._seen: set = set()

    async def leaders(self) -> dict:
        """Which node leads the drill's stream and its consumer right now."""
        assert self._nc is not None, "start() first"
        js = self._nc.jetstream(timeout=2.0)
        try:
            stream = await js.stream_info(STREAM)
            consumer = await js.consumer_info(STREAM, DURABLE)
        except NATS_ERRORS:  # not known this instant (an election running): the drill goes on without
            return {}
        return {"stream": stream.cluster.leader if stream.cluster else None,
                "consumer": consumer.cluster.leader if consumer.cluster else None}

    async def _setup(self) -> None:
        js = self._client.jetstream(timeout=2.0)
        self._psub = await js.pull_subscribe(self.subject, durable=DURABLE, stream=STREAM)
        self._background(self._run(), "pull")

    async def _run(self) -> None:
        backoff = Backoff(first=0.005, longest=0.2)  # asking a node that is not there yet: a little later
        while not self.stopping:
            try:
                msgs = await self._psub.fetch(200, timeout=0.2)
            except nats.errors.TimeoutError:  # nothing new within the 0.2 s fetch: ask again at once
                continue
            except TRY_AGAIN:  # no consumer leader yet, reconnecting: ask again after a pause that grows
                await backoff.pause()
                continue
            except NATS_ERRORS as e:  # anything else is not "try again": say so, the drill counts the rest as lost
                log.warning("trashlab [%s]: stopped reading the drill's stream: %s", self.name, e)
                raise
            backoff.reset()
            for m in msgs:
                stream_seq = m.metadata.sequence.stream
                if stream_seq in self._seen:
                    self.duplicates += 1  # delivered again because its ack was lost with the node
                else:
                    self._seen.add(stream_seq)
                    self.collector.add(m.data, m.subject)
                try:
                    await m.ack()
                except NATS_ERRORS:  # lost with its node: delivered again, then counted as a duplicate
                    pass



#: JetStream's "no suitable peers for placement" (err_code 10005). A node restarted a moment ago (the drill before
#: restores its victim) has its routes and answers /healthz, yet the meta leader places nothing on it for a while:
#: it forgets a node's statistics when the node's route comes back and waits for new ones (nats-server sends them
#: 0.25, 0.5, 1, 2, 4 ... s after its start).
NO_PEERS_FOR_PLACEMENT = 10005
#: how long the drill waits for JetStream to be able to place its stream on every node
PLACEMENT_TIMEOUT = 15.0


async def _make_stream(url: str, subject: str, replicas: int, progress: bool = True) -> None:
    """The drill's stream (``replicas`` copies) and its durable consumer, fresh; waits while a node just restarted
    cannot hold a copy yet (see :data:`NO_PEERS_FOR_PLACEMENT`)."""
    from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
    from nats.js.errors import APIError, NotFoundError

    nc = await connect(url, name="drill-setup")
    try:
        js = nc.jetstream(timeout=5.0)
        try:
            await js.delete_stream(STREAM)  # a fresh stream each drill: numbering from 1, no backlog
        except NotFoundError:
            pass
        config = StreamConfig(name=STREAM, subjects=[subject], num_replicas=replicas, duplicate_window=120.0)
        refused: List[str] = []

        async def placed() -> bool:
            try:
                await js.add_stream(config)
            except APIError as e:
                if e.err_code != NO_PEERS_FOR_PLACEMENT:
                    raise
                refused[:] = [e.description or str(e)]
                return False
            return True

        try:
            ok = await wait_until(placed, timeout=PLACEMENT_TIMEOUT, every=0.1, show=progress, show_after=1.0,
                                  what=f"waiting for JetStream to place the drill's stream on {replicas} nodes "
                                       "(a node restarted a moment ago counts once it reported to the leader)")
        except NATS_ERRORS as e:
            raise BrokerError(f"cannot create the drill's stream over {subject!r} ({e}): another stream may "
                              "already capture that subject; delete it or pass subject='trash-level.drill'") from e
        if not ok:
            raise BrokerError(f"JetStream could not place the drill's stream on {replicas} nodes within "
                              f"{PLACEMENT_TIMEOUT:g}s ({refused[0] if refused else 'no answer'}): is every node "
                              "running? cluster.status() shows them; await cluster.wait_formed()")
        await js.add_consumer(STREAM, ConsumerConfig(durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT,
                                                     ack_wait=2.0, max_ack_pending=10000))
    finally:
        await nc.close()


async def _drop_stream(urls: List[str]) -> None:
    try:
        nc = await connect(urls, name="drill-cleanup")
    except ConnectionFailed:  # every node is gone: so is the stream
        return
    try:
        await nc.jetstream(timeout=5.0).delete_stream(STREAM)
    except NATS_ERRORS:  # a clean-up path: gone already, or no leader to ask; the next drill deletes it first
        pass
    finally:
        await nc.close()


# ----- the drill --------------------------------------------------------------------------------
async def end_drill(sampler: "asyncio.Task", clients: "List[Optional[NatsComponent]]",
                    stream_on: Optional[List[str]]) -> None:
    """A drill's clean-up: stop sampling, stop its clients, drop its stream (when it made one on those servers)."""
    await cancel(sampler)
    for client in clients:
        if client is not None:
            await client.stop()
    if stream_on is not None:
        await _drop_stream(stream_on)


def track_connection(client: NatsComponent, path: List[tuple]) -> "asyncio.Task":
    """Sample ``client.connected_url`` every millisecond into ``path`` as ``(time, host:port)`` at each change:
    when it left a node and where it went. Cancel the task to stop."""
    async def sample() -> None:
        last: object = object()
        while True:
            now = client.connected_url
            if now != last:
                path.append((time.time(), now))
                last = now
            await asyncio.sleep(0.001)

    return asyncio.get_running_loop().create_task(sample(), name=f"trashlab-track-{client.name}")


async def _interest_reached(node, subject: str, timeout: float = 5.0) -> None:
    """Wait until ``node`` knows (through its routes) that someone subscribes to ``subject``."""
    def routes() -> list:
        return fetch(node.monitor_url, "routez?subs=1", timeout=MONITOR_TIMEOUT).get("routes") or []

    async def known() -> bool:  # an HTTP request: in a thread, never on the drill's loop
        return any(subject in (r.get("subscriptions_list") or []) for r in await asyncio.to_thread(routes))

    if not await wait_until(known, timeout=timeout, what=f"{node.name} learning of the collector's subscription",
                            every=INTEREST_POLL, show_after=1.0):
        raise BrokerTimeout(f"node {node.name} never learnt of the collector's subscription within {timeout:g}s: "
                            "is the cluster formed? Try await cluster.wait_formed()", name=node.name, timeout=timeout)


async def failover_drill(cluster: Optional[Cluster] = None, *, jetstream: bool = False, rate: float = 200.0,
                         kill_after: float = 1.5, run_after: float = 1.5, kill: str = "collector",
                         subject: str = SUBJECT, restore: bool = True, progress: bool = True) -> FailoverResult:
    """Kill a node while sequence-numbered readings flow; measure reconnect time, gaps and losses.

    ``cluster``: a running :class:`Cluster` (default: a throw-away one, 2 nodes, 3 with JetStream).
    ``kill``: ``"collector"`` kills the first node, the one the collector was given (the lab's
    experiment); ``"simulator"`` kills the node the simulator publishes to instead.
    The killed node is restarted afterwards (``restore=True``) so the drill can run again.
    """
    if not isinstance(rate, (int, float)) or not 1 <= rate <= 5000:
        raise BadArgument(f"rate={rate!r} must be between 1 and 5000 readings per second, e.g. 200")
    if kill not in ("collector", "simulator"):
        raise BadArgument(f"kill={kill!r}: use 'collector' (kill the collector's node) or 'simulator'")
    if kill_after <= 0 or run_after <= 0:
        raise BadArgument("kill_after and run_after must be positive numbers of seconds, e.g. 1.5")
    own = cluster is None
    if cluster is None:
        cluster = Cluster(3 if jetstream else 2, name="drill-js" if jetstream else "drill", jetstream=jetstream)
        cluster.start()
    try:
        await cluster.wait_formed(progress=progress)
        running = [b for b in cluster.nodes.values() if b.running]
        if len(running) < 2:
            raise BadArgument("a failover drill needs at least 2 running nodes: Cluster(size=2).start()")
        if jetstream and not cluster.jetstream:
            raise BadArgument("this cluster runs without JetStream: use Cluster(size=3, jetstream=True)")
        if jetstream and len(running) < 3:
            raise BadArgument("a JetStream drill needs 3 running nodes: with 2, losing one leaves no majority "
                              "to elect a stream leader. Use Cluster(size=3, jetstream=True)")
        first = running[0]
        other = running[-1]
        victim = first if kill == "collector" else other
        mode = "jetstream" if jetstream else "core"

        async def kill_it() -> None:
            victim.kill()

        fault = _Fault(mode, "killed", kill_it, ask_leaders=True,
                       announce=f"{mode} drill: {rate:g} readings/s to {other.name}, collector on {first.name}; "
                                f"killing {victim.name} in {kill_after:g}s ...")
        with waiting(f"the {'JetStream' if jetstream else 'core'} failover drill"):
            return await _drill(cluster, first, other, victim, fault, jetstream=jetstream, rate=float(rate),
                                fault_after=kill_after, run_after=run_after, subject=subject, progress=progress,
                                restore=restore and not own)
    finally:
        if own:
            cluster.stop()


@dataclass
class _Fault:
    """What a drill does to the cluster in its middle; one harness (:func:`_drill`) runs the failover
    drill (a kill) and every chaos drill (:func:`trashlab.chaos_drill`)."""

    mode: str  # the result's mode: "core", "jetstream", "lame_duck", "drop", ...
    action: str  # what was done to the node, in the result's summary: "killed", "put in lame-duck mode", ...
    cause: Callable[[], Awaitable[Optional[dict]]]  # do it; may return numbers for the result's .extra
    announce: str  # printed when readings flow, before the fault (progress=True)
    undo: Optional[Callable[[], Awaitable[None]]] = None  # a config-reload fault: undone after run_after, or on any exit
    moves_clients: bool = True  # clients of the victim must move: wait for that (and for readings accepted again)
    move_timeout: float = 20.0
    stops_node: bool = True  # the victim stops (a kill, a lame duck): restarted afterwards when restore=True
    ask_leaders: bool = False  # note which node led the JetStream stream and consumer just before


async def _drill(cluster: Cluster, first, other, victim, fault: _Fault, *, jetstream: bool, rate: float,
                 fault_after: float, run_after: float, subject: str, progress: bool, restore: bool,
                 label: str = "drill") -> FailoverResult:
    """Readings from a simulator on ``other`` to a collector on ``first``; ``fault`` after ``fault_after`` s;
    ``run_after`` s more; the fault undone, the victim restarted (``restore``), the readings counted."""
    published_at: List[float] = []
    published_seqs: List[int] = []

    def on_publish(payload: bytes) -> None:
        published_at.append(time.time())
        published_seqs.append(int(json.loads(payload)["seq"]))

    sim_cls = _AckedSimulator if jetstream else Simulator
    col = Collector(first.url, subject=subject, name=f"{label}-collector")
    reader = None
    watched: Union[_DurableReader, Collector]
    if jetstream:
        await _make_stream(first.url, subject, replicas=min(3, len(cluster.urls)), progress=progress)
        reader = await _DurableReader(first.url, subject, col).start()
        watched = reader
    else:
        await col.start()
        await _interest_reached(other, subject)
        watched = col
    sim = sim_cls(other.url, subject=subject, interval=1.0 / rate, sequence=True, seed=7, name=f"{label}-simulator",
                  on_publish=on_publish)
    # the connection of the client on the victim, sampled every millisecond: when it left and where it went
    path: List[tuple] = []
    target = sim if victim is not first else watched
    sampler = track_connection(target, path)
    t0 = time.time()
    extra: Optional[dict] = None
    faulted = undone = False
    try:
        await sim.start()
        if progress:
            print(fault.announce, flush=True)
        await asyncio.sleep(fault_after)
        leaders = await reader.leaders() if reader is not None and fault.ask_leaders else {}
        fault_at = time.time()
        at_fault, was_on = sim.published, target.connected_url
        faulted = True  # from here on the finally below undoes it, also when interrupted
        extra = await fault.cause()
        if fault.moves_clients:
            await _recovered(lambda: sim.published > at_fault + 1 and target.connected_url not in (None, was_on),
                             victim.name, progress, fault.move_timeout)
        await asyncio.sleep(run_after)
        if fault.undo is not None:
            await fault.undo()
        undone = True
        await (sim.finish() if isinstance(sim, _AckedSimulator) else sim.stop())
        published = sim.published
        await _settle(col, published, jetstream, progress)
    finally:
        if faulted and not undone and fault.undo is not None:  # the fault never outlives the drill
            await fault.undo()
        await end_drill(sampler, [sim, reader, col], cluster.urls if jetstream else None)
        if restore and faulted and fault.stops_node:
            if in_lame_duck(victim):  # still draining: end it now
                victim.kill()
            if not victim.running:
                victim.restart()
                await cluster.wait_formed(progress=progress)
    result = _result(fault.mode, victim, cluster, col, published, published_at, reader.duplicates if reader else 0,
                     path, t0, fault_at, rate, leaders, "simulator" if target is sim else "collector",
                     published_seqs=published_seqs)
    result.action, result.extra = fault.action, extra or {}
    return result


async def _recovered(check, victim: str, progress: bool, timeout: float) -> None:
    """Wait until the collector is connected elsewhere and readings are accepted again (at most ``timeout`` s)."""
    await wait_until(check, timeout=timeout, every=0.01, show=progress, show_after=1.0,
                     what=f"{victim} is gone: waiting for the cluster to recover (a new JetStream leader is "
                          "elected after a few seconds of silence)")


async def _settle(col: Collector, published: int, jetstream: bool, progress: bool) -> None:
    """Wait for the last readings to arrive: core NATS until the last one published did (they travel in
    order, so the ones before it are in too), at most 5 s; JetStream until all did, at most 15 s."""
    if not jetstream:
        await wait_until(lambda: published in set(col.frame()["seq"].dropna().astype(int)), timeout=5, every=0.02,
                         show=progress, show_after=2.0, what=f"waiting for reading {published} to arrive")
        return

    def delivered() -> bool:
        return len(set(col.frame()["seq"].dropna().astype(int)) & set(range(1, published + 1))) >= published

    await wait_until(delivered, timeout=15, every=0.1, show=progress, show_after=2.0,
                     what=f"waiting for the durable consumer to deliver all {published} readings")


def _result(mode, victim, cluster, col, published, published_at, duplicates, path, t0, kill_at, rate, leaders,
            client, published_seqs: Optional[List[int]] = None):
    frame = col.frame()
    frame = frame[frame["seq"].notna()]
    received_seqs = [int(s) for s in frame["seq"]]
    epoch = (frame["received_at"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    arrivals = epoch.groupby(frame["seq"].astype("int64")).min()
    seqs = pd.Series(range(1, published + 1), name="seq")
    received_at = seqs.map(arrivals)
    table = pd.DataFrame({"seq": seqs, "published_t": [p - t0 for p in published_at[:published]],
                          "received_at": received_at.astype("float64")})
    table["t"] = table["received_at"] - t0
    lost = [int(s) for s in table.loc[table["received_at"].isna(), "seq"]]
    times = table["received_at"].dropna().sort_values()
    gap = float(times.diff().max()) if len(times) > 1 else 0.0
    before = next((node for at, node in reversed(path) if at < kill_at and node), None)
    after = next(((at, node) for at, node in path if at >= kill_at and node and node != before), None)
    reconnect = None if after is None else after[0] - kill_at
    return FailoverResult(
        mode=mode, killed=victim.name, published=published, received=int(table["received_at"].notna().sum()),
        lost_seqs=lost, duplicates=duplicates, reconnect_s=reconnect, largest_gap_s=gap if gap == gap else 0.0,
        moved_from=cluster.node_of(before), moved_to=cluster.node_of(after[1]) if after else None,
        kill_at=kill_at - t0, reconnected_at=None if after is None else after[0] - t0, rate=rate, frame=table,
        leaders=leaders, client=client,
        published_seqs=list(range(1, published + 1)) if published_seqs is None else list(published_seqs),
        received_seqs=received_seqs)
