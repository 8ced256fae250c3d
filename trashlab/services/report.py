"""The report service (the lab's ``rep.js``, grown up): latest level per can, answerable at any time.

It subscribes to ``trash-level`` and serves requests through the NATS services API
(``nats.micro``) as service ``trash-report``:

==========================  ==================  ===========================================
subject                     request payload     reply
==========================  ==================  ===========================================
``trash-report.levels``     (empty)             ``{"cans": [{"can_id", "level", ...}, ...]}``
``trash-report.level``      a can id, e.g. 135  ``{"can_id", "level", "updated_at", ...}``
``trash-report.stats``      (empty)             counts: cans, readings, rejected, store
==========================  ==================  ===========================================

Any NATS client can ask: ``nats req trash-report.level 135`` works as well as
:func:`query_levels`. Instances are discoverable with ``$SRV.PING.trash-report``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Callable, Optional

from nats import micro
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER
from nats.micro.service import NAME_REGEX, ServicePing, ServiceVerb, control_subject
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

if TYPE_CHECKING:
    from nats.micro.service import Service
    import pandas as pd

from .collector import can_order
from .._aio import quietly
from .levels import LevelStore, MemoryLevels
from .lifecycle import NatsComponent, Rejects, RejectsReadings
from ..servers.connection import Servers, check_subject, connect, describe, resolve_servers
from ..errors import BadArgument, BadMessage, CanNotFound, ServiceUnavailable
from ..servers.retry import NATS_ERRORS
from ..message import SUBJECT, decode_fields

log = logging.getLogger("trashlab")

SERVICE = "trash-report"
VERSION = "1.0.0"
LEVEL_COLUMNS = ["can_id", "level", "updated_at", "readings"]


class ReportService(RejectsReadings, NatsComponent):
    """Subscribes to ``trash-level``, keeps the latest level per can, answers ``trash-report`` requests.

    ``store=None`` (the default) keeps the levels in the JetStream bucket ``trash-levels`` when the server
    has JetStream (they survive a restart: see :mod:`trashlab.kvlevels`), else in memory;
    ``stats()["store"]`` says which.
    """

    kind = "report service"
    stop_timeout = 5.0
    #: the JetStream bucket of the levels when the server has JetStream (None: ``trash-levels``)
    bucket: Optional[str] = None

    def __init__(self, servers: Servers = None, subject: str = SUBJECT, *, name: str = SERVICE,
                 store=None, on_message: Optional[Callable[[bytes], None]] = None,
                 pending_msgs_limit: int = 512 * 1024) -> None:
        if not isinstance(name, str) or not NAME_REGEX.match(name):
            raise BadArgument(f"service name {name!r}: use letters, digits, '-' or '_'")
        super().__init__(servers, name)
        self.subject = check_subject(subject, wildcards=True)
        self._auto_store = store is None
        self.store: LevelStore = store if store is not None else MemoryLevels()
        self.on_message = on_message
        self.received = 0
        self._rejects = Rejects()
        self.pending_msgs_limit = pending_msgs_limit
        self._service: Optional[Service] = None

    async def _on_msg(self, msg) -> None:
        try:
            can_id, level, _ = decode_fields(msg.data)
        except BadMessage as e:
            self._rejects.add(msg.data, e, time.time())
            log.debug("trashlab [%s]: rejected %r: %s", self.name, msg.data[:80], e.reason)
            return
        self.received += 1
        await self.store.put(can_id, level, time.time())
        if self.on_message is not None:
            self.on_message(msg.data)

    # ----- request handlers ---------------------------------------------------------------
    async def _levels(self, req) -> None:
        rows = [v.row(c) for c, v in self.store.items()]
        await req.respond(json.dumps({"cans": rows}).encode())

    async def _level(self, req) -> None:
        can_id = req.data.decode("utf-8", "replace").strip().strip('"')
        value = self.store.get(can_id) if can_id else None
        if value is None:
            what = f"no reading for can {can_id!r} yet" if can_id else "no can id in the request"
            await req.respond_error("404", what)
            return
        await req.respond(json.dumps(value.row(can_id)).encode())

    async def _stats(self, req) -> None:
        await req.respond(json.dumps(self.stats()).encode())

    def stats(self) -> dict:
        """Counts: cans known, readings received and rejected, where levels are kept, uptime."""
        return {"service": self.name, "cans": len(self.store.items()), "received": self.received,
                "rejected": self.rejected_count, "reasons": dict(self.reasons),
                "slow_consumer_events": self.slow_consumer_events, "store": self.store.kind,
                "uptime_s": round(time.time() - self.started_at, 3) if self.started_at else 0.0}

    # ----- lifecycle ----------------------------------------------------------------------
    async def start(self) -> "ReportService":
        """Connect, subscribe and register the ``trash-report`` service; returns at once."""
        return await super().start()

    async def _setup(self) -> None:
        if self._auto_store:
            from .kvlevels import KVLevels, jetstream_available

            if await jetstream_available(self._client):
                self.store = KVLevels() if self.bucket is None else KVLevels(self.bucket)
            else:
                log.info("trashlab [%s]: no JetStream on this server: levels are kept in memory "
                         "(lost when the service stops)", self.name)
        try:
            await self.store.open(self._client)
        except NATS_ERRORS as e:
            if self.store.kind != MemoryLevels.kind and self._auto_store:
                log.warning("trashlab [%s]: JetStream bucket not usable (%s): keeping levels in memory",
                            self.name, describe(e))
                self.store = MemoryLevels()
            else:
                raise
        await self._client.subscribe(self.subject, cb=self._on_msg, pending_msgs_limit=self.pending_msgs_limit)
        self._service = await micro.add_service(
            self._client, name=self.name, version=VERSION,
            description="latest trash-can levels from the trash-level subject")
        group = self._service.add_group(name=self.name)
        await group.add_endpoint(name="levels", handler=self._levels)
        await group.add_endpoint(name="level", handler=self._level)
        await group.add_endpoint(name="stats", handler=self._stats)
        await self._client.flush()

    def levels(self) -> pd.DataFrame:
        """This instance's latest levels as a DataFrame (no request needed in-process)."""
        return _levels_frame([v.row(c) for c, v in self.store.items()])

    async def stop(self) -> None:
        """Deregister, write what the store still holds, finish in-flight messages and close; never raises
        because the server is gone."""
        await super().stop()

    async def _teardown(self) -> None:
        if self._service is not None:
            await quietly(self._service.stop())
            self._service = None
        try:  # also when the server went away: the store's own tasks stop either way
            await self.store.close()
        except Exception as e:  # blind: a clean-up path: stopping goes on whatever the store raises
            log.info("trashlab [%s]: closing the level store: %s", self.name, describe(e))

    def __repr__(self) -> str:
        return (f"<ReportService {self.name} {'running' if self.running else 'stopped'}: "
                f"{len(self.store.items())} cans, {self.received} readings, store={self.store.kind}>")


# ----- the client side ----------------------------------------------------------------------
def _levels_frame(rows: list) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=LEVEL_COLUMNS)
    if rows:
        order = {c: i for i, c in enumerate(can_order(frame["can_id"]))}
        frame = frame.sort_values("can_id", key=lambda s: s.map(order)).reset_index(drop=True)
    frame["level"] = frame["level"].astype("float64")
    frame["updated_at"] = pd.to_datetime(frame["updated_at"].astype("float64"), unit="s", utc=True)
    frame["readings"] = frame["readings"].astype("int64")
    return frame


async def _request(servers: Servers, subject: str, payload: bytes, timeout: float):
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise BadArgument(f"timeout={timeout!r}: give how many seconds to wait for the answer, a positive "
                          "number such as 2 (a reply needs a moment to come back)")
    where = resolve_servers(servers)
    nc = await connect(where, name="trashlab-query")
    try:
        return await nc.request(subject, payload, timeout=timeout)
    except (NoRespondersError, NatsTimeout, asyncio.TimeoutError) as e:
        service = subject.rsplit(".", 1)[0]
        raise ServiceUnavailable(
            f"no {service} service answered on {where}: start one with `trashlab report` "
            "or `await trashlab.ReportService().start()`", service=service) from e
    finally:
        await nc.close()


async def query_levels(servers: Servers = None, *, service: str = SERVICE, timeout: float = 2.0) -> pd.DataFrame:
    """Ask the report service for every can's latest level → DataFrame (can_id, level, updated_at, readings)."""
    msg = await _request(servers, f"{service}.levels", b"", timeout)
    return _levels_frame(json.loads(msg.data)["cans"])


async def query_level(can_id, servers: Servers = None, *, service: str = SERVICE, timeout: float = 2.0) -> dict:
    """Ask the report service for one can; raises :class:`CanNotFound` for an unknown id."""
    import pandas as pd

    can = str(can_id).strip()
    if not can:
        raise BadArgument("can id is empty: give one such as '135'")
    msg = await _request(servers, f"{service}.level", can.encode(), timeout)
    headers = msg.headers or {}
    if headers.get(ERROR_CODE_HEADER):
        raise CanNotFound(f"{headers.get(ERROR_HEADER, 'not found')}: ask for a can id the report service "
                          "lists (trashlab.query_levels() or `trashlab levels`)", can_id=can, service=service)
    row = json.loads(msg.data)
    row["updated_at"] = pd.Timestamp(row["updated_at"], unit="s", tz="UTC")
    return row


async def query_stats(servers: Servers = None, *, service: str = SERVICE, timeout: float = 2.0) -> dict:
    """Ask the report service for its counters."""
    msg = await _request(servers, f"{service}.stats", b"", timeout)
    return json.loads(msg.data)


async def discover(servers: Servers = None, *, service: str = SERVICE, wait: float = 0.5) -> pd.DataFrame:
    """Every running instance of a service that answers ``$SRV.PING.<service>`` within ``wait`` s."""
    import pandas as pd

    nc = await connect(servers, name="trashlab-discover")
    replies = []
    try:
        inbox = nc.new_inbox()
        async def collect(msg) -> None:
            replies.append(msg)

        sub = await nc.subscribe(inbox, cb=collect)
        await nc.publish(control_subject(ServiceVerb.PING, service), b"", reply=inbox)
        await nc.flush()
        await asyncio.sleep(wait)
        await sub.unsubscribe()
    finally:
        await nc.close()
    pings = [ServicePing.from_dict(json.loads(m.data)) for m in replies]
    return pd.DataFrame([{"name": p.name, "id": p.id, "version": p.version} for p in pings],
                        columns=["name", "id", "version"])

