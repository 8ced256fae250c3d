"""Several subscribers at once: fan-out (each gets every message) versus a queue group (each message
goes to one member) — the lab's optional "multiple subscribers" step."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import pandas as pd

from .collector import Collector
from ..servers.connection import Servers
from ..errors import BadArgument
from ..message import SUBJECT

_groups: "dict[str, list[Collector]]" = {}


async def start_subscribers(n: int, servers: Servers = None, *, queue: Optional[str] = None,
                            prefix: str = "sub", subject: str = SUBJECT) -> "list[Collector]":
    """Start ``n`` collectors named ``prefix-1`` ...; with ``queue`` they share the work as one group.

    Starting the same ``prefix`` again first stops the previous ones, so re-running a cell gives
    ``n`` subscribers, not ``2n``.
    """
    if not isinstance(n, int) or n < 1:
        raise BadArgument(f"n={n!r}: give how many subscribers to start, e.g. 3")
    for old in _groups.pop(prefix, []):
        await old.stop()
    group = []
    for i in range(1, n + 1):
        group.append(await Collector(servers, subject, queue=queue, name=f"{prefix}-{i}").start())
    _groups[prefix] = group
    return group


def total(collectors: Sequence[Collector]) -> int:
    """Messages received by a group of subscribers together."""
    return sum(c.count for c in collectors)


async def wait_total(collectors: Sequence[Collector], count: int, timeout: float = 10.0) -> int:
    """Wait until a group together received ``count`` messages (at most ``timeout`` s); return the total."""
    from .._progress import wait_until

    await wait_until(lambda: total(collectors) >= count, timeout=timeout, what=f"waiting for {count} messages")
    return total(collectors)


def delivery_table(groups: Mapping[str, Sequence[Collector]], published: int) -> pd.DataFrame:
    """Per subscriber: its group, what it received, and its share of what was published."""
    rows = []
    for label, members in groups.items():
        for c in members:
            rows.append({"group": label, "subscriber": c.name, "queue": c.queue or "(none)",
                         "received": c.count, "share_of_published": round(c.count / max(1, published), 2)})
    return pd.DataFrame(rows, columns=["group", "subscriber", "queue", "received", "share_of_published"])


async def stop_subscribers() -> int:
    """Stop every group started with :func:`start_subscribers`; return how many subscribers stopped."""
    stopped = 0
    for prefix in list(_groups):
        for c in _groups.pop(prefix):
            await c.stop()
            stopped += 1
    return stopped
