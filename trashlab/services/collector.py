"""The collector: subscribes to ``trash-level`` and keeps every valid reading for pandas.

Bad payloads never stop it: each is counted by reason and kept aside in :attr:`Collector.rejected`.
Rows are stored as tuples in a deque (one append per message, no per-row DataFrame work);
:meth:`Collector.frame` builds the DataFrame when asked.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import re
import time
from typing import TYPE_CHECKING, Deque, List, Optional, Tuple

if TYPE_CHECKING:
    import pandas as pd
    from nats.aio.subscription import Subscription

from ..servers.connection import Servers, check_subject
from .._compat import pending_queue, release_pending
from ..errors import BadArgument, BadMessage
from ..message import SUBJECT, decode_fields
from .levels import MemoryLevels
from .lifecycle import KEEP_PAYLOAD, REJECTED_COLUMNS, NatsComponent, Rejects, RejectsReadings  # noqa: F401

log = logging.getLogger("trashlab")

COLUMNS = ["can_id", "level", "received_at", "subject", "seq"]

#: Level histogram bins kept while collecting: 0-5 %, 5-10 %, ... 95-100 % (100 % counts in the last one).
BINS = 20
#: Seconds of per-second message counts kept for :meth:`Collector.rate_history`.
RATE_HISTORY = 600

# The exact lab format (what Simulator and sim.js send): parsed without json.loads. Anything else,
# or anything this pattern lets through that is not a valid reading, goes the full validating way.
_LAB_FORMAT = re.compile(
    rb'\{"can_id":"([A-Za-z0-9]{1,64})", "level":"([0-9.][0-9.eE+-]{0,40})"(?:, "seq":(0|[1-9][0-9]{0,17}))?\}\Z').match


def _publishers_here() -> int:
    """Simulators running in this process or spawned from it (as far as this notebook can tell)."""
    import sys

    from ._named import running

    spawn = sys.modules.get("trashlab.services.spawn")
    return len(running("simulator")) + (len(spawn.spawned("simulator")) if spawn is not None else 0)


def can_order(ids) -> list:
    """Sort can ids numerically when they are numbers ("2" before "10"), else as text."""
    return sorted(ids, key=lambda c: (0, int(c), "") if c.isdigit() else (1, 0, c))


def _seq_number(value) -> Optional[int]:
    """A sequence number as int; None for a missing one (None, NaN, pandas' NA in an Int64 column)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def sequence_loss(seqs, published: Optional[int] = None) -> dict:
    """Loss report from the ``seq`` numbers received (1, 2, 3 ... as the simulator numbers them).

    Returns ``received`` (distinct numbers), ``expected`` (``published`` if given, else the highest
    number seen), ``lost`` (how many of 1..expected never arrived), ``duplicates``, and ``gaps``:
    the missing ranges as ``(first, last)`` pairs, at most 20 of them.
    """
    numbers = [n for n in map(_seq_number, seqs) if n is not None]
    seen = sorted(set(numbers))
    total = len(seen)
    expected = published if published is not None else (seen[-1] if seen else 0)
    gaps, prev = [], 0
    for s in seen:
        if s > prev + 1 and prev < expected:
            gaps.append((prev + 1, min(s - 1, expected)))
        prev = max(prev, s)
    if prev < expected:
        gaps.append((prev + 1, expected))
    lost = sum(b - a + 1 for a, b in gaps)
    return {"expected": expected, "received": total, "lost": lost,
            "duplicates": len(numbers) - total, "gaps": gaps[:20]}


class Collector(RejectsReadings, NatsComponent):
    """Subscribes in the background and collects readings; ``frame()`` gives a pandas DataFrame."""

    kind = "collector"
    stop_timeout = 10.0

    def __init__(self, servers: Servers = None, subject: str = SUBJECT, max_rows: Optional[int] = None, *,
                 queue: Optional[str] = None, name: str = "collector", keep_rejected: int = 1000,
                 pending_msgs_limit: int = 512 * 1024) -> None:
        if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
            raise BadArgument(f"max_rows={max_rows!r} must be a positive whole number, or None to keep every row")
        super().__init__(servers, name)
        self.subject = check_subject(subject, wildcards=True)
        self.max_rows = max_rows
        self.queue = queue
        self.pending_msgs_limit = pending_msgs_limit
        self._rows: Deque[tuple] = collections.deque(maxlen=max_rows)
        self._rejects = Rejects(keep_rejected)
        self._latest = MemoryLevels()
        # incremental aggregates for dashboards: a refresh costs the same at 1k and at 1M rows
        self._bins_all: List[int] = [0] * (BINS + 1)  # slot BINS holds level == 100.0
        self._bins_latest: List[int] = [0] * (BINS + 1)
        self._rate_sec = 0
        self._rate_now = 0
        self._rate_past: Deque[Tuple[int, int]] = collections.deque(maxlen=RATE_HISTORY)
        self.received = 0
        self._target = float("inf")
        self._reached: Optional[asyncio.Event] = None
        self._sub: Optional[Subscription] = None
        self._queue: Optional[asyncio.Queue] = None

    # ----- the hot path -------------------------------------------------------------------
    def add(self, data: bytes, subject: str = SUBJECT, received_at: Optional[float] = None) -> bool:
        """Record one payload as if it arrived; return True if it was a valid reading."""
        now = received_at if received_at is not None else time.time()
        fast = _LAB_FORMAT(data) if type(data) is bytes else None
        try:
            if fast is None:
                raise ValueError
            can, lvl, sq = fast.groups()
            level = float(lvl)
            if not 0.0 <= level <= 100.0:  # also false for NaN
                raise ValueError
            can_id = can.decode()
            seq = None if sq is None else int(sq)
        except ValueError:
            try:
                can_id, level, seq = decode_fields(data)
            except BadMessage as e:
                self._rejects.add(data, e, now)
                return False
        self._rows.append((can_id, level, now, subject, seq))
        latest = self._latest.record(can_id, level, now)
        b = int(level * 0.2)  # BINS / 100
        self._bins_all[b] += 1
        bins = self._bins_latest
        bins[b] += 1
        if latest is not None:
            bins[int(latest[0] * 0.2)] -= 1
        sec = int(now)
        if sec != self._rate_sec:
            self._roll_rate(sec)
        self._rate_now += 1
        self.received += 1
        if self.received >= self._target and self._reached is not None:
            self._reached.set()
        return True

    def _roll_rate(self, sec: int) -> None:
        if self._rate_sec:
            self._rate_past.append((self._rate_sec, self._rate_now))
        self._rate_sec, self._rate_now = sec, 0

    async def _on_msg(self, msg) -> None:
        self.add(msg.data, msg.subject)
        # Whatever else is already buffered is handled here in one go instead of one awaited
        # callback per message; drain() still waits for all of it (task_done per message).
        queue = self._queue
        if queue is None:
            return
        add, taken = self.add, 0
        try:
            while queue.qsize():
                m = queue.get_nowait()
                data = m.data
                taken += len(data)
                try:
                    add(data, m.subject)
                finally:
                    queue.task_done()
        finally:
            release_pending(self._sub, taken)

    # ----- lifecycle ----------------------------------------------------------------------
    async def start(self) -> "Collector":
        """Connect and subscribe; returns at once while messages keep arriving in the background."""
        return await super().start()

    async def _setup(self) -> None:
        self._sub = await self._client.subscribe(self.subject, queue=self.queue or "", cb=self._on_msg,
                                             pending_msgs_limit=self.pending_msgs_limit,
                                             pending_bytes_limit=256 * 1024 * 1024)
        self._queue = pending_queue(self._sub)  # nats-py's buffer of received messages, drained in batches by _on_msg
        await self._client.flush()  # the subscription is registered on the server when start() returns

    @property
    def count(self) -> int:
        """Valid readings received (the old spelling of :attr:`received`)."""
        return self.received

    async def wait_for(self, count: int, timeout: float = 10.0) -> int:
        """Wait until at least ``count`` valid readings arrived (at most ``timeout`` s); return the count.

        Giving up prints one line with the likely cause (e.g. no simulator is running).
        """
        from .._progress import waiting

        if self.count < count:
            what = f"collector {self.name!r} waiting for {count} readings"
            self._reached = asyncio.Event()
            self._target = count
            try:
                with waiting(what):
                    await asyncio.wait_for(self._reached.wait(), timeout)
            except asyncio.TimeoutError:
                print(f"{what}: gave up after {timeout:g} s: {self.stall_cause(count)}", flush=True)
            finally:
                self._target = float("inf")
        return self.count

    def stall_cause(self, count: Optional[int] = None) -> str:
        """Why fewer than ``count`` readings arrived, as far as this notebook can tell (one sentence)."""
        if not self.running:
            return "this collector is stopped: start it with `await col.start()`"
        if self.connected_url is None:
            return "it is not connected: its broker is down (it reconnects by itself once the broker runs again)"
        if self.count == 0:
            if not _publishers_here():
                return (f"nothing arrived on {self.subject!r} and no simulator runs in this notebook: start one "
                        "(`await trashlab.spawn_simulator(...)`), then run this cell again")
            return (f"nothing arrived on {self.subject!r}: does the simulator publish to this subject, "
                    "on the same broker?")
        return (f"{self.count} of {count if count is not None else '?'} readings arrived ({self.rate:.1f} per s): "
                "wait longer or ask for fewer")

    async def stop(self) -> int:
        """Deliver what is already buffered, unsubscribe and close; return ``received``."""
        await super().stop()
        self._sub = None
        self._queue = None
        return self.received

    def count_since(self, start: float) -> int:
        """Valid readings received at or after ``start`` (unix time), among the rows kept."""
        n = 0
        for row in reversed(self._rows):
            if row[2] < start:
                break
            n += 1
        return n

    def clear(self) -> None:
        """Forget everything collected so far (counters too)."""
        self._rows.clear()
        self._rejects.clear()
        self._latest.clear()
        self._bins_all[:] = self._bins_latest[:] = [0] * (BINS + 1)
        self._rate_past.clear()
        self._rate_sec = self._rate_now = 0
        self.received = 0

    # ----- what a student looks at ---------------------------------------------------------
    def loss(self, published: Optional[int] = None) -> dict:
        """What was lost, by ``seq`` numbers (simulator ``sequence=True``); see :func:`sequence_loss`."""
        return sequence_loss((row[4] for row in self._rows), published)


    def frame(self) -> pd.DataFrame:
        """All kept readings: ``can_id`` (str), ``level`` (float), ``received_at`` (UTC), ``subject``, ``seq``."""
        import pandas as pd

        rows = list(self._rows)
        if not rows:
            return pd.DataFrame({
                "can_id": pd.Series([], dtype=object), "level": pd.Series([], dtype="float64"),
                "received_at": pd.Series([], dtype="datetime64[ns, UTC]"),
                "subject": pd.Series([], dtype=object), "seq": pd.Series([], dtype="Int64")})
        can_id, level, received, subject, seq = zip(*rows)
        return pd.DataFrame({
            "can_id": pd.Series(can_id, dtype=object),
            "level": pd.Series(level, dtype="float64"),
            "received_at": pd.to_datetime(pd.Series(received, dtype="float64"), unit="s", utc=True),
            "subject": pd.Series(subject, dtype=object),
            "seq": pd.Series(seq, dtype="Int64"),
        })

    def latest(self) -> pd.DataFrame:
        """The latest level per can: ``can_id``, ``level``, ``received_at``, ``readings``."""
        import pandas as pd

        levels = dict(self._latest.items())
        ids = can_order(levels)
        values = [levels[c] for c in ids]
        return pd.DataFrame({
            "can_id": pd.Series(ids, dtype=object),
            "level": pd.Series([v[0] for v in values], dtype="float64"),
            "received_at": pd.to_datetime(pd.Series([v[1] for v in values], dtype="float64"), unit="s", utc=True),
            "readings": pd.Series([v[2] for v in values], dtype="int64"),
        })

    def histogram(self, latest: bool = False) -> Tuple[List[float], List[int]]:
        """Level histogram kept while collecting: ``(edges, counts)``; of every reading, or of the latest per can."""
        bins = self._bins_latest if latest else self._bins_all
        counts = bins[:BINS]
        counts[-1] += bins[BINS]
        return [i * 100.0 / BINS for i in range(BINS + 1)], counts

    def fullest(self, n: int = 10) -> List[Tuple[str, float]]:
        """The ``n`` fullest cans by their latest level, fullest first: ``[(can_id, level), ...]``."""
        return [(c, v[0]) for c, v in heapq.nlargest(n, self._latest.items(), key=lambda kv: kv[1][0])]

    def rate_history(self, seconds: int = 60) -> List[Tuple[int, int]]:
        """Readings per whole second for the last ``seconds`` s: ``[(unix_second, count), ...]``, oldest first.

        Seconds without any reading are included with 0; the current second is still filling.
        """
        now = int(time.time())
        counts = dict(self._rate_past)
        if self._rate_sec:
            counts[self._rate_sec] = self._rate_now
        return [(s, counts.get(s, 0)) for s in range(now - seconds + 1, now + 1)]

    @property
    def cans(self) -> int:
        """How many distinct cans reported."""
        return len(self._latest)

    @property
    def rate(self) -> float:
        """Valid readings per second since start."""
        return self._per_second(self.received)

    def __repr__(self) -> str:
        return (f"<Collector {self.subject} {'running' if self.running else 'stopped'}: "
                f"{self.received} readings, {self.rejected_count} rejected, {self.cans} cans>")
