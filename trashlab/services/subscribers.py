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
    group: "list[Collector]" = []
    try:
        for i in range(1, n + 1):
            member = Collector(servers, subject, queue=queue, name=f"{prefix}-{i}")
            await member.start()
            group.append(member)
    except BaseException:  # one did not start, or the cell was interrupted: the others stop too
        for member in group:
            await member.stop()
        raise
    _groups[prefix] = group
    return group


def _since(run) -> Optional[float]:
    """The time a run started: a Simulator's start, a number (unix time), or None (everything)."""
    if run is None or isinstance(run, (int, float)):
        return run
    started = getattr(run, "started_at", None)
    if started is None:
        raise BadArgument(f"since={run!r}: give the Simulator of the run (started) or a unix time")
    return started


def total(collectors: Sequence[Collector], since=None) -> int:
    """Messages received by a group of subscribers together (``since``: only those of that run)."""
    start = _since(since)
    return sum(c.count if start is None else c.count_since(start) for c in collectors)


async def wait_total(collectors: Sequence[Collector], count: int, timeout: float = 10.0, *, since=None) -> int:
    """Wait until a group together received ``count`` messages (at most ``timeout`` s); return the total.

    ``since=sim`` counts only what arrived since that simulator started, so a re-run cell waits for its
    own run's messages, not for the sum of all runs.
    """
    from .._progress import wait_until

    def why() -> str:
        got = total(collectors, since)
        if collectors and got == 0:
            return collectors[0].stall_cause(count)
        return f"{got} of {count} arrived: wait longer, or check how many the simulator published"

    await wait_until(lambda: total(collectors, since) >= count, timeout=timeout,
                     what=f"waiting for {count} messages", why=why)
    return total(collectors, since)


def delivery_table(groups: Mapping[str, Sequence[Collector]], published) -> pd.DataFrame:
    """Per subscriber: its group, what it received, and its share of what was published.

    ``published``: the Simulator of the run (its ``published`` count, and only what each subscriber
    received since it started: a re-run cell shows that run, not the sum of all runs), or a number.
    """
    if isinstance(published, (int, float)) and not isinstance(published, bool):
        start, count = None, int(published)
    else:
        start, count = _since(published), int(getattr(published, "published", 0))
    rows = []
    for label, members in groups.items():
        for c in members:
            got = c.count if start is None else c.count_since(start)
            rows.append({"group": label, "subscriber": c.name, "queue": c.queue or "(none)",
                         "received": got, "share_of_published": round(got / max(1, count), 2)})
    return pd.DataFrame(rows, columns=["group", "subscriber", "queue", "received", "share_of_published"])


async def stop_subscribers() -> int:
    """Stop every group started with :func:`start_subscribers`; return how many subscribers stopped."""
    stopped = 0
    for prefix in list(_groups):
        for c in _groups.pop(prefix):
            await c.stop()
            stopped += 1
    return stopped
