"""A class of simulated students on a clustered class hub, with one hub node killed mid-class.

``await class_drill(300, nodes=3)`` starts a :class:`~trashlab.servers.hubcluster.ClassCluster`, then for every
student a real student :class:`~trashlab.Broker` joined the course's way (``classroom.join(line)``: the broker
is a leaf node of the hub in the student's account, its remote listing every node) and a sequence-numbered
:class:`~trashlab.Simulator` publishing ``trash-level`` on it, as the notebooks do. A *witness*, the
instructor subscribed to ``class.*.trash-level`` on a node that is not killed, counts what arrives. Once every student
is seen, the node with the most students is SIGKILLed (the witness listens on another one); the drill measures how long until every student is a leaf of a
surviving node again (what the class page's "online" column shows), then stops the simulators and compares,
per student, what the witness received with what was published. A hub that keeps readings (the default here, as
``classroom serve --keep-readings``) loses instead the node that leads the stream of kept readings, if it carries
students (they move, and the stream elects a new leader at once); the stream's readings are compared with what
was published too. Each node's CPU and memory come from its
/varz once a second. ``benchmarks/class_cluster.py`` prints it; ``tests/test_classroom_cluster.py`` asserts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Dict, List, Optional

import psutil

from .._aio import cancel, quietly
from .._progress import wait_until
from ..errors import BadArgument, BrokerError, BrokerTimeout
from ..servers.broker import Broker
from ..servers.classroom import CLASS_PREFIX, EXPORTED, INSTRUCTOR, _account, join
from ..servers.connection import connect
from ..servers import keptfeed
from ..servers.hubcluster import ClassCluster, fetch_nodes
from ..servers.monitor import fetch
from ..services.simulator import Simulator

log = logging.getLogger("trashlab")


@dataclass
class ClassDrillResult:
    """What a class drill measured; ``figures()`` is the flat summary the benchmark prints."""

    students: int
    nodes: int
    rate: float
    published: Dict[str, int] = field(default_factory=dict)
    received: Dict[str, int] = field(default_factory=dict)  #: distinct sequence numbers the witness saw
    duplicates: Dict[str, int] = field(default_factory=dict)
    gaps: Dict[str, List[List[int]]] = field(default_factory=dict)  #: runs of missing seqs [first, last]
    placement: Dict[str, str] = field(default_factory=dict)  #: student -> hub node their broker was a leaf of
    killed: Optional[str] = None
    moved: List[str] = field(default_factory=list)  #: students whose broker was on the killed node
    back_seconds: Dict[str, float] = field(default_factory=dict)  #: kill -> leaf of a surviving node again
    all_back_seconds: Optional[float] = None
    join_seconds: float = 0.0  #: starting every student broker until all are leaf nodes knowing the hub's interest
    node_cpu: Dict[str, List[float]] = field(default_factory=dict)  #: /varz cpu (% of one core), one a second
    node_rss: Dict[str, List[int]] = field(default_factory=dict)  #: /varz mem (bytes)
    student_brokers_rss: int = 0  #: every student broker's memory together (bytes)
    keep_readings: bool = False  #: the hub kept readings (each student broker's feed sent each until acknowledged)
    kept: Dict[str, int] = field(default_factory=dict)  #: distinct sequence numbers in the hub's stream, per student
    kept_duplicates: Dict[str, int] = field(default_factory=dict)
    kept_gaps: Dict[str, List[List[int]]] = field(default_factory=dict)
    stream_leader: Optional[str] = None  #: the node leading the kept readings' stream before the kill
    kept_resent: int = 0  #: tries of the students' feeds that were not acknowledged and were made again
    kept_dropped: int = 0  #: readings a feed gave up (beyond its memory, or refused by the stream)

    @property
    def kept_lost(self) -> Dict[str, int]:
        """Readings published but not in the hub's stream, per student (only those who lost some)."""
        if not self.keep_readings:
            return {}
        out = {s: self.published[s] - self.kept.get(s, 0) for s in self.published}
        return {s: n for s, n in out.items() if n}

    @property
    def lost(self) -> Dict[str, int]:
        """Readings published but never seen by the witness, per student (only those who lost some)."""
        out = {s: self.published[s] - self.received.get(s, 0) for s in self.published}
        return {s: n for s, n in out.items() if n}

    def figures(self) -> dict:
        """The flat summary: totals, losses split by whether the student's node was killed, times, CPU and memory."""
        moved = set(self.moved)
        lost = self.lost
        return {
            "students": self.students, "hub_nodes": self.nodes, "rate_per_student": self.rate,
            "published": sum(self.published.values()), "received": sum(self.received.values()),
            "lost_total": sum(lost.values()),
            "lost_students_on_killed_node": sum(n for s, n in lost.items() if s in moved),
            "lost_students_elsewhere": sum(n for s, n in lost.items() if s not in moved),
            "students_that_lost": len(lost), "duplicates": sum(self.duplicates.values()),
            **({"kept": sum(self.kept.values()), "kept_lost_total": sum(self.kept_lost.values()),
                "kept_duplicates": sum(self.kept_duplicates.values()), "kept_resent": self.kept_resent,
                "kept_dropped": self.kept_dropped, "stream_leader": self.stream_leader} if self.keep_readings else {}),
            "students_per_node": {n: list(self.placement.values()).count(n) for n in sorted(set(self.placement.values()))},
            "killed": self.killed, "moved": len(self.moved),
            "all_back_seconds": self.all_back_seconds,
            "back_seconds_median": _median(list(self.back_seconds.values())),
            "join_seconds": round(self.join_seconds, 1),
            "node_cpu_percent_mean": {n: _mean(v) for n, v in self.node_cpu.items()},
            "node_cpu_percent_max": {n: max(v, default=0.0) for n, v in self.node_cpu.items()},
            "node_rss_mib_max": {n: round(max(v, default=0) / 2**20, 1) for n, v in self.node_rss.items()},
            "student_brokers_rss_mib": round(self.student_brokers_rss / 2**20),
            "cores": psutil.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        }

    def to_json(self) -> str:
        """Everything measured, as JSON."""
        return json.dumps({**asdict(self), "figures": self.figures()}, indent=1)


def _mean(values: List[float]) -> float:
    return round(sum(values) / len(values), 1) if values else 0.0


def _median(values: List[float]) -> Optional[float]:
    return round(sorted(values)[len(values) // 2], 2) if values else None


def _runs(missing: List[int]) -> List[List[int]]:
    runs: List[List[int]] = []
    for seq in missing:
        if runs and runs[-1][1] == seq - 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return runs


async def class_drill(students: int = 300, nodes: int = 3, *, rate: float = 1.0, kill: bool = True,
                      warmup: int = 3, after: int = 3, timeout: float = 120.0, name: str = "drill-hub",
                      progress: bool = True, keep_readings: bool = True,
                      stage: Optional[Callable[[str, ClassCluster], Awaitable[None]]] = None) -> ClassDrillResult:
    """Run the class on a ``nodes``-node hub, kill the node with the most students once every student's
    ``warmup`` readings arrived, wait for every student to be back and ``after`` more readings each, then
    count (module docs). ``stage("joined" | "back", hub)`` is awaited when every student is a leaf node of
    the hub, and when every student is back after the kill (a test looks at the class page there).
    ``keep_readings`` (the default) runs the class as ``classroom serve --keep-readings`` does: every student
    broker sends each reading until the hub's stream has it; the readings in the stream are counted too.

    Every wait is on a condition (at most ``timeout`` s each); nothing is timed by sleeping.
    """
    if not isinstance(students, int) or not 1 <= students <= 1000:
        raise BadArgument(f"students={students!r}: give 1-1000, e.g. 300")
    if kill and nodes < 2:
        raise BadArgument("killing a node needs a hub of at least 2 nodes: nodes=3")
    if not 0 < rate <= 50:
        raise BadArgument(f"rate={rate!r}: readings per second per student, from 0.1 to 50")
    result = ClassDrillResult(students, nodes, rate, keep_readings=keep_readings)
    hub = ClassCluster(students, nodes, name=name, keep_readings=keep_readings)
    folder = Path(tempfile.mkdtemp(prefix="class-drill-"))
    brokers: Dict[str, Broker] = {}
    sims: Dict[str, Simulator] = {}
    seqs: Dict[str, List[int]] = {s: [] for s in hub.students}
    witness = sampler = None
    quiet = logging.getLogger("trashlab")
    level = quiet.level
    try:
        await hub.astart()
        result.nodes = len(hub.hubs)
        sampler = asyncio.get_running_loop().create_task(_sample(hub, result), name="trashlab-class-drill-varz")

        started = time.monotonic()
        quiet.setLevel(logging.ERROR)  # one "joined the class" line per student otherwise
        env = {k: os.environ.get(k) for k in ("TRASHLAB_CLASS_FILE", "NATS_URL")}
        try:
            for s in hub.students:
                os.environ["TRASHLAB_CLASS_FILE"] = str(folder / f"{s}.json")
                join(hub.join_line(s), check=False)
                brokers[s] = await Broker(f"{name}-{s}").astart()  # the course's Broker("iot-msg"), joined
        finally:
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            quiet.setLevel(level)
        accounts = {_account(s): s for s in hub.students}

        def leaf_nodes() -> Dict[str, str]:
            where = {}
            for n in hub.hubs:
                if n.running:
                    for lf in fetch_nodes([n.monitor_url], "leafz")[0][0]:
                        if lf.get("account") in accounts:
                            where[accounts[lf["account"]]] = n.name
            return where

        placed: Dict[str, str] = {}

        async def all_leafs() -> bool:
            placed.clear()
            placed.update(await asyncio.to_thread(leaf_nodes))
            return len(placed) == students

        await _wait(all_leafs, timeout, "every student broker a leaf node of the hub", progress,
                    lambda: f"{len(placed)} of {students}")
        result.placement = dict(placed)
        result.student_brokers_rss = sum(_rss(b.pid) for b in brokers.values())
        # the node with the most students is the one killed; the witness listens on another one
        load = {n.name: list(placed.values()).count(n.name) for n in hub.hubs}
        victim = max(hub.hubs, key=lambda n: load[n.name])
        if keep_readings:  # the worst case: the node that writes the kept readings too (a new leader is elected)
            leader = result.stream_leader = await _stream_leader(hub)
            victim = next((n for n in hub.hubs if n.name == leader and load[n.name]), victim)
        watcher = min((n for n in hub.hubs if n is not victim), key=lambda n: load[n.name], default=victim)
        witness = await connect(f"nats://{INSTRUCTOR}:{hub.instructor_password}@{watcher.client_host}:{watcher.port}",
                                name="witness")

        async def on_msg(msg) -> None:
            seqs[msg.subject.split(".")[1]].append(json.loads(msg.data)["seq"])

        await witness.subscribe(f"{CLASS_PREFIX}.*.{EXPORTED}", cb=on_msg, pending_msgs_limit=1_000_000)
        await witness.flush()
        # a leaf connection is up before the hub's interest in trash-level reaches the student's broker, and
        # until then the broker forwards nothing: each student broker must know that interest before it publishes
        ready: set = set()

        async def all_interested() -> bool:
            for s in [s for s in hub.students if s not in ready]:
                if await asyncio.to_thread(_knows_interest, brokers[s]):
                    ready.add(s)
            return len(ready) == students

        await _wait(all_interested, timeout, "every student broker knowing the hub's interest in its readings",
                    progress, lambda: f"{len(ready)} of {students}")
        result.join_seconds = time.monotonic() - started
        if stage is not None:
            await stage("joined", hub)

        for i, s in enumerate(hub.students):
            sims[s] = await Simulator(brokers[s].url, interval=1 / rate, sequence=True, seed=i, name=f"sim-{s}").start()
        await _wait(lambda: all(len(seqs[s]) >= warmup for s in hub.students), timeout,
                    f"the witness receiving {warmup} readings from every student", progress,
                    lambda: f"{sum(len(seqs[s]) >= warmup for s in hub.students)} of {students} students")

        if kill:
            result.killed = victim.name
            result.moved = [s for s, n in result.placement.items() if n == victim.name]
            killed_at = time.monotonic()
            victim.kill()
            back: Dict[str, float] = {}

            async def everyone_back() -> bool:
                where = await asyncio.to_thread(leaf_nodes)
                now = time.monotonic() - killed_at
                for s in result.moved:
                    if s not in back and where.get(s, victim.name) != victim.name:
                        back[s] = round(now, 2)
                return len(where) == students and len(back) == len(result.moved)

            await _wait(everyone_back, timeout, f"every student back on the hub after {victim.name} was killed",
                        progress, lambda: f"{len(back)} of {len(result.moved)} moved students back")
            result.back_seconds = back
            result.all_back_seconds = max(back.values(), default=0.0)
            if stage is not None:
                await stage("back", hub)

        marks = {s: sims[s].published for s in hub.students}
        await _wait(lambda: all(max(seqs[s], default=0) >= marks[s] + after for s in hub.students), timeout,
                    f"{after} more readings from every student after the kill", progress,
                    lambda: f"{sum(max(seqs[s], default=0) >= marks[s] + after for s in hub.students)} of {students}")
        for sim in sims.values():
            await sim.stop()  # flushes what it buffered
        result.published = {s: sims[s].published for s in hub.students}
        # the witness has everything once each student's last reading arrived (one broker, one leaf: in order)
        await _wait(lambda: all(max(seqs[s], default=0) >= result.published[s] for s in hub.students), timeout,
                    "the witness receiving every student's last reading", progress,
                    lambda: str({s: (max(seqs[s], default=0), result.published[s]) for s in hub.students
                                 if max(seqs[s], default=0) < result.published[s]}))
        _tally(seqs, result.published, result.received, result.duplicates, result.gaps)
        if keep_readings:
            await _count_kept(hub, brokers, result, timeout, progress)
        return result
    finally:
        await cancel(sampler)
        for sim in sims.values():
            await quietly(sim.stop())
        if witness is not None:
            await quietly(witness.close())
        for b in brokers.values():
            b.stop()
        hub.stop()
        shutil.rmtree(folder, ignore_errors=True)  # the students' class files


def _tally(seqs: Dict[str, List[int]], published: Dict[str, int], received: Dict[str, int],
           duplicates: Dict[str, int], gaps: Dict[str, List[List[int]]]) -> None:
    """Per student, the sequence numbers seen against 1..published: distinct ones, repeats, runs missing."""
    for s, seen in seqs.items():
        got = set(seen)
        received[s] = len(got)
        if len(seen) != len(got):
            duplicates[s] = len(seen) - len(got)
        missing = sorted(set(range(1, published[s] + 1)) - got)
        if missing:
            gaps[s] = _runs(missing)


async def _wait(check, timeout: float, what: str, progress: bool, seen) -> None:
    if not await wait_until(check, timeout=timeout, what=what, every=0.1, show=progress, show_after=2.0, why=seen):
        raise BrokerTimeout(f"class drill: not done after {timeout:g}s: {what} ({seen()})", timeout=timeout)


async def _stream_leader(hub: ClassCluster) -> Optional[str]:
    """The node that leads the stream of kept readings (the one it is written on first)."""
    nc = await connect(hub.kept_url, name="kept-leader")
    try:
        info = await nc.jetstream(timeout=10.0).stream_info(keptfeed.KEPT_STREAM)
        return info.cluster.leader if info.cluster else None
    finally:
        await quietly(nc.close())


async def _count_kept(hub: ClassCluster, brokers: Dict[str, Broker], result: ClassDrillResult, timeout: float,
                      progress: bool) -> None:
    """Once every student broker's feed has nothing waiting, read the hub's stream of kept readings whole."""
    feeds = {s: keptfeed.feed_of(b.name) for s, b in brokers.items()}
    missing_feed = [s for s, f in feeds.items() if f is None]
    if missing_feed:
        raise BrokerError(f"class drill: no kept feed for {len(missing_feed)} students ({missing_feed[:3]}): "
                          "were their brokers joined with keep=1?")
    await _wait(lambda: all(f.waiting == 0 and f.received >= result.published[s] for s, f in feeds.items() if f),
                timeout, "every student's feed acknowledged by the hub", progress,
                lambda: f"{sum(f.waiting for f in feeds.values() if f)} readings waiting")
    result.kept_resent = sum(f.resent for f in feeds.values() if f)
    result.kept_dropped = sum(f.dropped for f in feeds.values() if f)
    kept_seqs: Dict[str, List[int]] = {s: [] for s in hub.students}
    nc = await connect(hub.kept_url, name="kept-reader")
    try:
        js = nc.jetstream(timeout=10.0)
        state = (await js.stream_info(keptfeed.KEPT_STREAM)).state
        # message by message from the stream's leader: a consumer made now may be placed on the killed node
        # (a peer of the stream still) and its creation then never answers
        for seq in range(state.first_seq, state.last_seq + 1):
            msg = await js.get_msg(keptfeed.KEPT_STREAM, seq)
            kept_seqs[(msg.subject or "").split(".")[1]].append(json.loads(msg.data or b"{}")["seq"])
    finally:
        await quietly(nc.close())
    _tally(kept_seqs, result.published, result.kept, result.kept_duplicates, result.kept_gaps)


def _knows_interest(broker: Broker) -> bool:
    """True when the student broker's leaf connection to the hub carries the hub's interest in ``trash-level``."""
    try:
        leafs = fetch(broker.monitor_url, "leafz?subs=1").get("leafs") or []
    except BrokerError:
        return False
    return any(EXPORTED in (lf.get("subscriptions_list") or []) for lf in leafs)


def _rss(pid: Optional[int]) -> int:
    try:
        return psutil.Process(pid).memory_info().rss if pid else 0
    except psutil.Error:
        return 0


async def _sample(hub: ClassCluster, result: ClassDrillResult) -> None:
    """Each running node's /varz cpu and mem, once a second (a measurement, never a synchronisation)."""
    while True:
        for n in hub.hubs:
            if not n.running:
                continue
            try:
                varz = await asyncio.to_thread(fetch, n.monitor_url, "varz")
            except BrokerError:  # blind: a node being killed answers nothing; the next sample counts
                continue
            result.node_cpu.setdefault(n.name, []).append(float(varz.get("cpu") or 0.0))
            result.node_rss.setdefault(n.name, []).append(int(varz.get("mem") or 0))
        await asyncio.sleep(1.0)

