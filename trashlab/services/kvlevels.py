"""Levels that survive restarts: the report service's latest level per can in a JetStream key-value bucket.

The lab promises a report service the rest of the application can ask "at any time". Kept in memory,
its levels vanish when its process dies. In a JetStream bucket (``trash-levels``, one key per can,
replicated on up to 3 nodes of a cluster) a restarted instance, or a second one, answers at once.

Writes go behind the hot path: a reading updates the local copy at once and the bucket a moment
later (the latest level per can wins, older unsent ones are skipped). Updates written by another
instance arrive through a watch on the bucket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from typing import TYPE_CHECKING, Any, Optional

from .._aio import cancel, quietly
from .levels import Level, MemoryLevels
from ..servers.retry import NATS_ERRORS

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

log = logging.getLogger("trashlab")

BUCKET = "trash-levels"
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def key_of(can_id: str) -> str:
    """The bucket key for a can id (ids with characters a key cannot hold are base64-encoded)."""
    if _PLAIN_KEY.match(can_id) and not can_id.startswith("b64_"):
        return can_id
    return "b64_" + base64.urlsafe_b64encode(can_id.encode()).decode().rstrip("=")


async def jetstream_available(nc, timeout: float = 1.0) -> bool:
    """True when the server the client is connected to has JetStream enabled."""
    try:
        await nc.jsm(timeout=timeout).account_info()
    except NATS_ERRORS:  # no responders (JetStream is off), or an API error (not enabled for this account)
        return False
    return True


class KVLevels(MemoryLevels):
    """Latest level per can in the JetStream key-value bucket ``trash-levels`` (a local copy answers reads)."""

    kind = "jetstream-kv"

    def __init__(self, bucket: str = BUCKET, replicas: Optional[int] = None) -> None:
        super().__init__()
        self.bucket = bucket
        self.replicas = replicas
        self._dirty: "dict[str, Level]" = {}
        self._wake: Optional[asyncio.Event] = None
        self._kv: Optional[KeyValue] = None
        self._watcher: Optional[KeyValue.KeyWatcher] = None
        self._tasks: list = []
        self._nc: Any = None

    async def open(self, nc) -> None:
        """Create (or find) the bucket and load every level it holds before returning."""
        from nats.js.errors import BucketNotFoundError, NotFoundError

        self._nc = nc
        js = nc.jetstream(timeout=5.0)
        # 3 copies on a cluster of 3 or more nodes, fewer on smaller ones; a single server keeps 1
        known = len({(u.hostname, u.port) for u in nc.servers})
        replicas = self.replicas or max(1, min(3, known))
        try:
            self._kv = await js.key_value(self.bucket)
        except (BucketNotFoundError, NotFoundError):
            try:
                self._kv = await js.create_key_value(bucket=self.bucket, history=1, replicas=replicas,
                                                     description="latest trash level per can (trashlab)")
            except NATS_ERRORS:  # created by another instance meanwhile, or fewer nodes than asked
                try:
                    self._kv = await js.key_value(self.bucket)
                except (BucketNotFoundError, NotFoundError):
                    self._kv = await js.create_key_value(bucket=self.bucket, history=1, replicas=1)
        self._watcher = await self._kv.watchall()
        while True:  # the bucket's current values first, then None
            entry = await self._watcher.updates(timeout=10.0)
            if entry is None:
                break
            self._apply(entry)
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow(), name="trashlab-kv-follow"),
                       loop.create_task(self._write_behind(), name="trashlab-kv-write")]

    def _apply(self, entry) -> None:
        if not getattr(entry, "value", None):  # deletes, and the watcher's stop marker
            return
        try:
            doc = json.loads(entry.value)
            can_id, value = doc["can_id"], Level(float(doc["level"]), float(doc["updated_at"]), int(doc["readings"]))
        except (ValueError, KeyError, TypeError):
            return
        old = self._levels.get(can_id)
        if old is None or value.updated_at >= old.updated_at:
            self._levels[can_id] = value

    async def _follow(self) -> None:
        """Keep the local copy current with what other instances write."""
        assert self._watcher is not None, "open() starts this task"
        while True:
            try:
                entry = await self._watcher.updates(timeout=3600)
            except asyncio.CancelledError:
                raise
            except NATS_ERRORS:  # the node went away or the watch timed out: watch on
                await asyncio.sleep(0.2)
                continue
            if entry is not None:
                self._apply(entry)

    async def _write_behind(self) -> None:
        assert self._wake is not None, "open() starts this task"
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        assert self._kv is not None, "only called once open"
        while self._dirty:
            can_id = next(iter(self._dirty))
            value = self._dirty.pop(can_id)
            doc = value.row(can_id)
            try:
                await self._kv.put(key_of(can_id), json.dumps(doc).encode())
            except asyncio.CancelledError:
                self._dirty.setdefault(can_id, value)
                raise
            except NATS_ERRORS as e:  # a node went away mid-write: keep it for the next try
                self._dirty.setdefault(can_id, value)
                log.debug("trashlab: level of can %s not stored yet (%s), retrying", can_id, e)
                await asyncio.sleep(0.2)

    async def put(self, can_id: str, level: float, at: float) -> None:
        """Record a reading: locally at once, in the bucket a moment later."""
        self.record(can_id, level, at)
        self._dirty[can_id] = self._levels[can_id]
        if self._wake is not None:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Levels received but not yet written to the bucket."""
        return len(self._dirty)

    async def close(self, timeout: float = 3.0) -> None:
        """Write what is still pending (at most ``timeout`` s, and only while connected: a server that
        went away keeps the levels it had), then stop watching and writing."""
        if self._kv is not None and self._dirty and self._nc is not None and self._nc.is_connected:
            try:
                await asyncio.wait_for(self._flush(), timeout)
            except NATS_ERRORS:  # too slow, or the server is gone: say how many are lost
                log.warning("trashlab: %d levels were not stored in %s before closing", len(self._dirty),
                            self.bucket)
        for task in self._tasks:
            await cancel(task)
        self._tasks = []
        if self._watcher is not None:
            await quietly(self._watcher.stop())
            self._watcher = None
