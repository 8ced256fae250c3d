"""The collector: subscribes to ``trash-level`` and keeps every valid reading for pandas.

Bad payloads never stop it: each is counted by reason and kept aside in :attr:`Collector.rejected`.

How it stays cheap per message: it only keeps the payload bytes, with one arrival time per batch
(per socket read). After the first message they come straight from nats-py's protocol parser, with
no ``Msg`` object, queue or awaited callback in between (:func:`trashlab._compat.deliver_directly`;
a subclass that overrides ``_on_msg`` keeps the callback, fed in batches from nats-py's buffer).
They are parsed in bulk every :data:`PARSE_EVERY` payloads and whenever anything asks (``frame()``,
``count``, a dashboard refresh, ``wait_for``): one regular-expression pass over the joined batch
for the lab's exact format, the full validator (:func:`trashlab.message.decode_fields`) for every other
payload. Valid readings go into growable numpy columns that are only ever appended to, and
:meth:`Collector.frame` wraps them in a DataFrame without copying (pandas' copy-on-write keeps a
frame a student writes to apart from them). The running aggregates a dashboard reads are updated
from each parsed batch.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import logging
import re
import time
from typing import TYPE_CHECKING, List, Optional, Tuple

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from nats.aio.subscription import Subscription

from .. import _hooks
from ..servers.connection import Servers, check_subject
from .._compat import deliver_directly, pending_queue, release_pending, take_all
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
#: Payloads kept unparsed at most: then they are parsed as one batch, even if nothing asked yet
#: (bounds the memory of raw bytes and the work left for the next ``frame()``).
PARSE_EVERY = 16384

# The exact lab format (what Simulator and sim.js send): parsed without json.loads. Anything else,
# or anything this pattern lets through that is not a valid reading, goes the full validating way.
_LAB_FORMAT = re.compile(
    rb'\{"can_id":"([A-Za-z0-9]{1,64})", "level":"([0-9.][0-9.eE+-]{0,40})"(?:, "seq":(0|[1-9][0-9]{0,17}))?\}\Z').match
# The same format for a batch: the payloads joined by newlines (none of them holding one) and decoded
# as latin-1 (one character per byte, never fails); one match per line, with empty groups for a line
# that is not the lab format.
_LAB_LINES = re.compile(
    r'^(?:\{"can_id":"([A-Za-z0-9]{1,64})", "level":"([0-9.][0-9.eE+-]{0,40})"(?:, "seq":(0|[1-9][0-9]{0,17}))?\}|.*)$',
    re.MULTILINE).findall
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def _publishers_here() -> int:
    """Simulators running in this process or spawned from it (as far as this notebook can tell)."""
    return len(_hooks.running("simulator"))


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


class _Columns:
    """The kept readings as growable numpy columns; only appended to, trimmed to the newest ``max_rows``."""

    def __init__(self, max_rows: Optional[int]) -> None:
        self.max_rows = max_rows
        self.first = self.n = 0  # rows [first, n) of the arrays are kept
        self._allocate(0)

    def _allocate(self, extra: int) -> None:
        live = self.n - self.first
        cap = max(1024, 2 * (live + extra))
        old = getattr(self, "arrays", None)
        self.arrays = {"can_id": np.empty(cap, dtype=object), "level": np.empty(cap, dtype=np.float64),
                       "received_at": np.empty(cap, dtype=np.int64), "subject": np.empty(cap, dtype=object),
                       "seq": np.zeros(cap, dtype=np.int64), "missing": np.ones(cap, dtype=bool)}
        self._anchors: Optional[dict] = None  # built by frame()
        if old is not None:
            for key, array in self.arrays.items():
                array[:live] = old[key][self.first:self.n]
        self.first, self.n, self.cap = 0, live, cap

    def append(self, chunk: dict, k: int) -> None:
        if self.max_rows is not None and k > self.max_rows:
            chunk = {key: value if isinstance(value, str) else value[k - self.max_rows:] for key, value in chunk.items()}
            k = self.max_rows
        if self.n + k > self.cap:
            self._allocate(k)
        a, b = self.n, self.n + k
        for key, array in self.arrays.items():
            array[a:b] = chunk[key]
        self.n = b
        if self.max_rows is not None and b - self.first > self.max_rows:
            self.first = b - self.max_rows

    def __len__(self) -> int:
        return self.n - self.first

    def column(self, key: str) -> np.ndarray:
        """A view of one column's kept rows (never handed out: callers copy)."""
        return self.arrays[key][self.first:self.n]

    def frame(self) -> "pd.DataFrame":
        """The kept rows as a DataFrame that shares the arrays (nothing is copied, whatever the size).

        Safe because the arrays are only appended to (rows already handed out are never written
        again) and because one pandas Series over each whole array stays alive beside them: under
        pandas' copy-on-write a frame that is written to copies the column first, never writing
        through to the collector.
        """
        import pandas as pd

        if self._anchors is None:
            arrays = self.arrays
            self._anchors = {
                "can_id": pd.Series(arrays["can_id"], dtype=object, copy=False),
                "level": pd.Series(arrays["level"], copy=False),
                "received_at": pd.Series(_utc(arrays["received_at"]), copy=False),
                "subject": pd.Series(arrays["subject"], dtype=object, copy=False),
                "seq": pd.Series(pd.arrays.IntegerArray(arrays["seq"], arrays["missing"]), copy=False)}
        frame = pd.DataFrame({key: series.iloc[self.first:self.n].reset_index(drop=True)
                              for key, series in self._anchors.items()}, copy=False)
        return frame if _copy_on_write(pd) else frame.copy()  # pandas 2 without copy-on-write writes through


def _copy_on_write(pd) -> bool:
    """True when pandas copies a shared column before writing to it (always from pandas 3 on)."""
    return int(pd.__version__.split(".")[0]) >= 3 or bool(getattr(pd.options.mode, "copy_on_write", False) is True)


def _utc(ns: np.ndarray):
    """Nanoseconds since 1970 as a UTC datetime array sharing ``ns`` (a copy where pandas offers no way)."""
    import pandas as pd

    dtype = pd.DatetimeTZDtype("ns", "UTC")
    try:
        return pd.arrays.DatetimeArray._simple_new(ns.view("M8[ns]"), dtype=dtype)
    except (AttributeError, TypeError):  # another pandas: the public (copying) way
        return pd.array(ns.view("M8[ns]"), dtype=dtype)


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
        self._keep_rejected = keep_rejected
        self._target = float("inf")
        self._reached: Optional[asyncio.Event] = None
        self._sub: Optional[Subscription] = None
        self._queue: Optional[asyncio.Queue] = None
        self._reset()

    def _reset(self) -> None:
        # payloads received but not parsed yet: bytes, (end index, arrival ns) per batch, subjects if they vary
        self._raw: List[bytes] = []
        self._marks: List[Tuple[int, int]] = []
        self._raw_subjects: Optional[List[str]] = [] if _has_wildcard(self.subject) else None
        self._chunk_open, self._chunk_time = False, 0
        self._cols = _Columns(self.max_rows)
        self._rejects = Rejects(self._keep_rejected)
        self._latest = MemoryLevels()
        # incremental aggregates for dashboards: a refresh costs the same at 1k and at 1M rows
        self._bins_all = np.zeros(BINS + 1, dtype=np.int64)  # slot BINS holds level == 100.0
        self._bins_latest: List[int] = [0] * (BINS + 1)
        self._rate: dict = {}
        self._count = 0

    # ----- the hot path: keep the bytes ------------------------------------------------------
    async def _on_msg(self, msg) -> None:
        self._take(msg)
        if type(self)._on_msg is Collector._on_msg and self._queue is not None and self._sub is not None:
            # from now on the payloads come straight from nats-py's parser (a subclass that does its
            # own work per message keeps this callback); nothing is left in nats-py's buffer here
            if deliver_directly(self._nc, self._sub, self._receive):
                self._queue = None

    def _receive(self, data: bytes, subject: bytes) -> None:
        """One payload straight from nats-py's protocol parser (see :func:`trashlab._compat.deliver_directly`)."""
        raw = self._raw
        if not self._chunk_open:  # the first of what one socket read brought: one arrival time for them all
            self._chunk_open = True
            self._chunk_time = time.time_ns()
            asyncio.get_running_loop().call_soon(self._close_chunk)
        raw.append(data)
        if self._raw_subjects is not None:
            self._raw_subjects.append(subject.decode())
        if len(raw) >= PARSE_EVERY or self._count + len(raw) >= self._target:
            self._close_chunk()
            self._sync()
            if self._count >= self._target and self._reached is not None:
                self._reached.set()

    def _close_chunk(self) -> None:
        if self._chunk_open:
            self._chunk_open = False
            self._marks.append((len(self._raw), self._chunk_time))

    def _take(self, msg) -> None:
        """One message from the subscription callback, and whatever nats-py has buffered behind it."""
        self._close_chunk()
        raw = self._raw
        raw.append(msg.data)
        subjects = self._raw_subjects
        if subjects is not None:
            subjects.append(msg.subject)
        # Whatever else is already buffered is taken here in one go instead of one awaited
        # callback per message; drain() still waits for all of it (one task_done per message).
        queue = self._queue
        if queue is not None and queue.qsize():
            msgs = take_all(queue)
            datas = [m.data for m in msgs]
            release_pending(self._sub, sum(map(len, datas)))
            raw += datas
            if subjects is not None:
                subjects += [m.subject for m in msgs]
        self._marks.append((len(raw), time.time_ns()))
        if len(raw) >= PARSE_EVERY or self._count + len(raw) >= self._target:  # (enough may have arrived)
            self._sync()
            if self._count >= self._target and self._reached is not None:
                self._reached.set()

    def add(self, data: bytes, subject: str = SUBJECT, received_at: Optional[float] = None) -> bool:
        """Record one payload as if it arrived; return True if it was a valid reading."""
        self._sync()
        before = self._count
        now = time.time_ns() if received_at is None else int(received_at * 1e9)
        self._parse([data], [(1, now)], [subject])
        return self._count > before

    # ----- parsing in bulk --------------------------------------------------------------------
    def _sync(self) -> None:
        """Parse every payload received since the last call (what each reader of the data calls first)."""
        if not self._raw:
            return
        self._close_chunk()
        raw, marks, subjects = self._raw, self._marks, self._raw_subjects
        self._raw, self._marks = [], []
        if subjects is not None:
            self._raw_subjects = []
        self._parse(raw, marks, subjects or self.subject)

    def _parse(self, raw: list, marks: list, subjects) -> None:
        n = len(raw)
        lines = None
        try:
            joined = b"\n".join(raw)
        except TypeError:  # add() of a str or of something else: each one on its own
            joined = None
        if joined is not None and joined.count(b"\n") == n - 1:
            lines = _LAB_LINES(joined.decode("latin-1"))
            if len(lines) != n:
                lines = None
        if lines is None:
            lines = [_lab_groups(d) for d in raw]
        cans = [x[0] for x in lines]
        texts = [x[1] for x in lines]
        seq_texts = [x[2] for x in lines]
        check = set()  # rows the full validator decides about
        if "" in cans:
            check = {i for i, c in enumerate(cans) if not c}
            for i in check:
                texts[i] = "0"
        try:
            levels = np.fromiter(map(float, texts), np.float64, n)
        except ValueError:  # "1..2" and the like: the validator gives the reason
            levels = np.zeros(n)
            for i, text in enumerate(texts):
                try:
                    levels[i] = float(text)
                except ValueError:
                    check.add(i)
        outside = ~((levels >= 0.0) & (levels <= 100.0))  # inf from "1e999" too
        if outside.any():
            check.update(np.flatnonzero(outside).tolist())
        seqs = np.zeros(n, dtype=np.int64)
        missing = np.ones(n, dtype=bool)
        if any(seq_texts):
            for i, text in enumerate(seq_texts):
                if text:
                    seqs[i], missing[i] = int(text), False
        ends = np.fromiter((e for e, _ in marks), np.intp, len(marks))
        sizes = ends.copy()
        sizes[1:] -= ends[:-1]  # payloads per batch
        times = np.repeat(np.fromiter((t for _, t in marks), np.int64, len(marks)), sizes)
        keep = None
        for i in sorted(check):
            try:
                can_id, level, seq = decode_fields(raw[i])
                if seq is not None and not _INT64[0] <= seq <= _INT64[1]:
                    raise BadMessage(f"seq {seq} does not fit a 64-bit whole number", "bad-value")
            except BadMessage as e:
                if keep is None:
                    keep = np.ones(n, dtype=bool)
                keep[i] = False
                self._reject(raw[i], e, times[i])
                continue
            cans[i], levels[i] = can_id, level
            if seq is not None:
                seqs[i], missing[i] = seq, False
        subject_column = subjects
        if keep is not None:
            cans = list(itertools.compress(cans, keep))
            levels, times, seqs, missing = levels[keep], times[keep], seqs[keep], missing[keep]
            if not isinstance(subjects, str):
                subject_column = list(itertools.compress(subjects, keep))
        if cans:
            self._append(cans, levels, times, seqs, missing, subject_column)

    def _reject(self, data, e: BadMessage, at_ns: int) -> None:
        self._rejects.add(data, e, int(at_ns) / 1e9)

    def _append(self, cans: list, levels: np.ndarray, times: np.ndarray, seqs: np.ndarray,
                missing: np.ndarray, subjects) -> None:
        """Add parsed valid readings to the columns and to the running aggregates."""
        k = len(cans)
        self._bins_all += np.bincount((levels * (BINS / 100)).astype(np.intp), minlength=BINS + 1)
        last = dict(zip(cans, range(k)))  # each can's last reading in this batch
        counts = collections.Counter(cans) if len(last) < k else None
        where = np.fromiter(last.values(), np.intp, len(last))
        latest, bins = self._latest, self._bins_latest
        for can, level, t in zip(last, levels[where].tolist(), (times[where] / 1e9).tolist()):
            old = latest.record(can, level, t, 1 if counts is None else counts[can])
            if old is not None:
                bins[int(old.level * 0.2)] -= 1
            bins[int(level * 0.2)] += 1
        seconds, per_second = np.unique(times // 1_000_000_000, return_counts=True)
        rate = self._rate
        for sec, c in zip(seconds.tolist(), per_second.tolist()):
            rate[sec] = rate.get(sec, 0) + c
        if len(rate) > 2 * RATE_HISTORY:
            for sec in sorted(rate)[:-RATE_HISTORY]:
                del rate[sec]
        self._cols.append({"can_id": cans, "level": levels, "received_at": times, "subject": subjects,
                           "seq": seqs, "missing": missing}, k)
        self._count += k

    # ----- counters (each one parses what is pending first) --------------------------------------
    @property
    def count(self) -> int:
        """Valid readings received so far."""
        self._sync()
        return self._count

    @property
    def received(self) -> int:
        """Valid readings received so far (the same as :attr:`count`)."""
        return self.count

    def _before_reading(self) -> None:
        self._sync()

    # ----- lifecycle ----------------------------------------------------------------------
    async def start(self) -> "Collector":
        """Connect and subscribe; returns at once while messages keep arriving in the background."""
        return await super().start()

    async def _setup(self) -> None:
        nc = self._client
        self._sub = await nc.subscribe(self.subject, queue=self.queue or "", cb=self._on_msg,
                                       pending_msgs_limit=self.pending_msgs_limit,
                                       pending_bytes_limit=256 * 1024 * 1024)
        self._queue = pending_queue(self._sub)  # nats-py's buffer of received messages, drained in batches by _on_msg
        await nc.flush()  # the subscription is registered on the server when start() returns

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

    async def stop(self) -> None:
        """Deliver what is already buffered, unsubscribe and close (``received`` says how many arrived).
        Never raises because the server is gone."""
        await super().stop()
        self._sub = None
        self._queue = None

    def count_since(self, start: float) -> int:
        """Valid readings received at or after ``start`` (unix time), among the rows kept."""
        self._sync()
        times = self._cols.column("received_at")
        older = np.flatnonzero(times < int(start * 1e9))  # the newest rows back to the first older one
        return int(len(times) - (older[-1] + 1 if older.size else 0))

    def clear(self) -> None:
        """Forget everything collected so far (counters too)."""
        self._reset()

    # ----- what a student looks at ---------------------------------------------------------
    def loss(self, published: Optional[int] = None) -> dict:
        """What was lost, by ``seq`` numbers (simulator ``sequence=True``); see :func:`sequence_loss`."""
        self._sync()
        cols = self._cols
        return sequence_loss(cols.column("seq")[~cols.column("missing")].tolist(), published)

    def frame(self) -> pd.DataFrame:
        """All kept readings: ``can_id`` (str), ``level`` (float), ``received_at`` (UTC), ``subject``, ``seq``."""
        self._sync()
        return self._cols.frame()

    def latest(self) -> pd.DataFrame:
        """The latest level per can: ``can_id``, ``level``, ``received_at``, ``readings``."""
        import pandas as pd

        self._sync()
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
        self._sync()
        bins = list(self._bins_latest) if latest else self._bins_all.tolist()
        counts = bins[:BINS]
        counts[-1] += bins[BINS]
        return [i * 100.0 / BINS for i in range(BINS + 1)], counts

    def fullest(self, n: int = 10) -> List[Tuple[str, float]]:
        """The ``n`` fullest cans by their latest level, fullest first: ``[(can_id, level), ...]``."""
        self._sync()
        return [(c, v[0]) for c, v in heapq.nlargest(n, self._latest.items(), key=lambda kv: kv[1][0])]

    def rate_history(self, seconds: int = 60) -> List[Tuple[int, int]]:
        """Readings per whole second for the last ``seconds`` s: ``[(unix_second, count), ...]``, oldest first.

        Seconds without any reading are included with 0; the current second is still filling.
        """
        self._sync()
        now = int(time.time())
        counts = self._rate
        return [(s, counts.get(s, 0)) for s in range(now - seconds + 1, now + 1)]

    @property
    def cans(self) -> int:
        """How many distinct cans reported."""
        self._sync()
        return len(self._latest)

    @property
    def rate(self) -> float:
        """Valid readings per second since start."""
        return self._per_second(self.count)

    def __repr__(self) -> str:
        return (f"<Collector {self.subject} {'running' if self.running else 'stopped'}: "
                f"{self.count} readings, {self.rejected_count} rejected, {self.cans} cans>")


def _has_wildcard(subject: str) -> bool:
    return any(token in ("*", ">") for token in subject.split("."))


def _lab_groups(data) -> tuple:
    """``(can_id, level, seq)`` texts of one payload in the lab format, or empty texts for any other."""
    fast = _LAB_FORMAT(data) if type(data) is bytes else None
    if fast is None:
        return "", "", ""
    return tuple("" if g is None else g.decode() for g in fast.groups())

