"""The latest level per can: one value type and one store protocol, in memory or in JetStream KV.

The collector keeps the latest level per can for its dashboard, the report service for its answers;
both use :class:`MemoryLevels`. :class:`~trashlab.services.kvlevels.KVLevels` is the same store with the levels also
written to a JetStream key-value bucket, so they survive a restart.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Protocol, Tuple


class Level(NamedTuple):
    """A can's latest reading: its level, when it arrived (unix seconds) and how many readings it sent."""

    level: float
    updated_at: float
    readings: int

    def row(self, can_id: str) -> dict:
        """As a report row: ``{"can_id", "level", "updated_at", "readings"}``."""
        return {"can_id": can_id, "level": self.level, "updated_at": self.updated_at, "readings": self.readings}


class LevelStore(Protocol):
    """Where a report service keeps the latest level per can."""

    kind: str

    async def open(self, nc: Any) -> None: ...

    async def put(self, can_id: str, level: float, at: float) -> None: ...

    def get(self, can_id: str) -> Optional[Level]: ...

    def items(self) -> List[Tuple[str, Level]]: ...

    async def close(self) -> None: ...


class MemoryLevels:
    """Latest level per can, in this process's memory (lost when it stops)."""

    kind = "memory"

    def __init__(self) -> None:
        self._levels: Dict[str, Level] = {}

    def record(self, can_id: str, level: float, at: float, readings: int = 1) -> Optional[Level]:
        """Record the can's newest level (``readings`` readings since the last record, this one the newest);
        return its previous level (None for a new can)."""
        old = self._levels.get(can_id)
        self._levels[can_id] = Level(level, at, readings if old is None else old.readings + readings)
        return old

    async def open(self, nc: Any) -> None:
        """Nothing to open for memory."""

    async def put(self, can_id: str, level: float, at: float) -> None:
        """Record a reading."""
        self.record(can_id, level, at)

    def get(self, can_id: str) -> Optional[Level]:
        """The can's :class:`Level`, or None."""
        return self._levels.get(can_id)

    def items(self) -> List[Tuple[str, Level]]:
        """All ``(can_id, Level)`` pairs."""
        return list(self._levels.items())

    def clear(self) -> None:
        """Forget every level."""
        self._levels.clear()

    def __len__(self) -> int:
        return len(self._levels)

    async def close(self) -> None:
        """Nothing to close for memory."""
