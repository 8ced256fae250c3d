"""One lifecycle for the lab's NATS components (Simulator, Collector, ReportService, the drill's reader).

``await x.start()`` resolves ``servers`` once (:func:`~trashlab.servers.connection.resolve_servers`),
connects, sets the component up and returns at once while it works in the background;
``await x.stop()`` stops its background tasks (a cancellation nats-py swallows is repeated), delivers
what is buffered and closes. Every component counts slow-consumer events the same way, knows the
server it is connected to (``connected_url``), and works as ``async with``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any, Coroutine, Deque, List, Optional, Tuple, TypeVar

from .._aio import cancel
from ..errors import BadMessage
from ..servers.connection import Resolved, Servers, close_quietly, connect, resolve_servers, url_of
from ._named import forget, replace

if TYPE_CHECKING:
    from nats.aio.client import Client

log = logging.getLogger("trashlab")

#: How much of a rejected payload is kept for inspection (a 1 MB attack must not pile up in memory).
KEEP_PAYLOAD = 1024
REJECTED_COLUMNS = ["payload", "kind", "reason", "received_at"]

C = TypeVar("C", bound="NatsComponent")


class Rejects:
    """Payloads that are not valid readings: counted by kind, the newest kept (cut to 1 KiB) for a table."""

    def __init__(self, keep: int = 1000) -> None:
        self.count = 0
        self.reasons: "collections.Counter[str]" = collections.Counter()
        self._kept: Deque[Tuple[bytes, str, str, float]] = collections.deque(maxlen=keep)

    def add(self, data: Any, err: BadMessage, at: float) -> None:
        """Count one rejected payload and keep (the start of) it."""
        self.count += 1
        self.reasons[err.kind] += 1
        kept = data[:KEEP_PAYLOAD] if not isinstance(data, str) else data[:KEEP_PAYLOAD].encode()
        self._kept.append((bytes(kept), err.kind, err.reason, at))

    def clear(self) -> None:
        """Forget every rejected payload and count."""
        self.count = 0
        self.reasons.clear()
        self._kept.clear()

    def frame(self) -> Any:
        """The kept payloads: ``payload`` (bytes), ``kind``, ``reason``, ``received_at`` (UTC)."""
        import pandas as pd

        frame = pd.DataFrame(list(self._kept), columns=REJECTED_COLUMNS)
        frame["received_at"] = pd.to_datetime(frame["received_at"].astype("float64"), unit="s", utc=True)
        return frame


class RejectsReadings:
    """``rejected`` (a table), ``rejected_count`` and ``reasons`` of a component that validates readings."""

    _rejects: Rejects

    def _before_reading(self) -> None:
        """Bring the counts up to date (a collector parses what arrived in batches)."""

    @property
    def rejected_count(self) -> int:
        """Payloads set aside as not valid readings."""
        self._before_reading()
        return self._rejects.count

    @property
    def reasons(self) -> "collections.Counter[str]":
        """Rejected payloads counted by kind (``not-json``, ``missing-field`` ...)."""
        self._before_reading()
        return self._rejects.reasons

    @property
    def rejected(self) -> Any:
        """The newest payloads set aside (a DataFrame): ``payload`` (bytes), ``kind``, ``reason``, ``received_at``."""
        self._before_reading()
        return self._rejects.frame()


class NatsComponent:
    """Base of the components that talk to NATS: ``start()``, ``stop()``, ``running``, ``connected_url``."""

    #: what it is, for "started again" lines and the Interrupt summary (None: not one per name)
    kind: Optional[str] = None
    #: deliver buffered messages before closing (subscribers); a publisher only flushes
    drain_on_stop = True
    #: at most this long for stop() to flush and drain
    stop_timeout = 5.0

    def __init__(self, servers: "Servers | Resolved", name: str) -> None:
        self.servers = servers
        self.name = name
        self.resolved: Optional[Resolved] = servers if isinstance(servers, Resolved) else None
        self.slow_consumer_events = 0
        self.started_at: Optional[float] = None
        self.stopping = False
        self._nc: Optional[Client] = None
        self._tasks: List["asyncio.Task"] = []

    # ----- what subclasses fill in ----------------------------------------------------------
    async def _setup(self) -> None:
        """Subscribe, register, start background work: called once connected."""

    async def _teardown(self) -> None:
        """Stop what _setup started, before the connection closes."""

    # ----- the lifecycle ----------------------------------------------------------------------
    async def start(self: C) -> C:
        """Connect and start working in the background; returns at once (again: nothing happens)."""
        if self.running:
            return self
        self.resolved = resolve_servers(self.servers)  # bad URLs fail here, before any connection attempt
        await self._close()  # a finished run's connection (a simulator that published its count)
        if self.kind is not None:
            await replace(self.kind, self.name, self)  # a re-run cell: the earlier one of that name stops
        self.stopping = False
        try:
            self._nc = await connect(self.resolved, name=self.name, on_error=self._on_error)
            await self._setup()
        except BaseException:  # failed or interrupted half-way: nothing of it keeps running
            await self._shut_down()
            raise
        self.started_at = time.time()
        return self

    def _background(self, coro: Coroutine[Any, Any, Any], what: str) -> "asyncio.Task":
        """Run ``coro`` as a task of this component, cancelled by ``stop()``."""
        task = asyncio.get_running_loop().create_task(coro, name=f"trashlab-{self.name}-{what}")
        self._tasks.append(task)
        return task

    async def stop(self) -> None:
        """Stop the background work, deliver what is buffered, close the connection.

        Never raises because the server is gone: stopped is stopped. Returns None, like every
        component's ``stop()``: what happened is an attribute (``published``, ``received``).
        """
        await self._shut_down()

    async def _shut_down(self) -> None:
        """Cancel the background tasks, undo ``_setup`` (the part that ran), close; also for a start that
        failed or was interrupted half-way, so nothing of it keeps running."""
        self.stopping = True  # loops that nats-py might keep from seeing a cancellation check this
        for task in self._tasks:
            await cancel(task)
        self._tasks = []
        if self._nc is not None and not self._nc.is_closed:
            await self._teardown()
        await self._close()
        if self.kind is not None:
            forget(self.kind, self.name, self)

    async def _close(self) -> None:
        # a round trip first: everything the server routed to us before stop() is then in our buffer,
        # and drain() hands all of it to the callbacks before closing
        await close_quietly(self._nc, drain=self.drain_on_stop, timeout=self.stop_timeout)

    @property
    def _client(self) -> "Client":
        """The connection, for ``_setup`` and the background work (which run only once connected)."""
        if self._nc is None:
            raise RuntimeError(f"{self.name}: not connected (start() it first)")
        return self._nc

    @property
    def running(self) -> bool:
        """True while connected (and not stopped)."""
        return self._nc is not None and not self._nc.is_closed and not self.stopping

    @property
    def connected_url(self) -> Optional[str]:
        """``host:port`` of the server it is connected to right now (None while disconnected)."""
        return url_of(self._nc) if self._nc is not None else None

    def _per_second(self, n: int) -> float:
        """``n`` things per second since start (0 before it)."""
        if not self.started_at:
            return 0.0
        return n / max(1e-9, time.time() - self.started_at)

    def _on_error(self, err: Exception) -> bool:
        """nats-py's asynchronous errors: a slow-consumer event is counted (and warned about, rarely)."""
        from nats.errors import SlowConsumerError

        if not isinstance(err, SlowConsumerError):
            return False
        self.slow_consumer_events += 1
        n = self.slow_consumer_events
        if n in (1, 10, 100, 1000) or n % 10000 == 0:
            log.warning("trashlab [%s]: slow consumer, messages are being dropped by the client "
                        "(%d times so far): collect less (max_rows, a queue group) or publish slower", self.name, n)
        return True

    async def __aenter__(self: C) -> C:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
