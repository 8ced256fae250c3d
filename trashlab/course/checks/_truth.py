"""The server's own view of the student's connection, for the live checks.

A live check never trusts what the student's code says about itself: it reads the monitoring port of
its own nats-server (``/connz?subs=detail&cid=N``) for what really happened on the student's
connection: its subscriptions and queue groups, how many messages it was sent, when the server
accepted it.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Optional

from ...errors import BrokerError
from ...servers.monitor import fetch


def connection(monitor_url: str, cid: Optional[int]) -> Optional[dict]:
    """The server's record of one open client connection (``/connz?subs=detail&cid=N``), or None."""
    if cid is None:
        return None
    try:
        conns = fetch(monitor_url, f"connz?subs=detail&cid={int(cid)}").get("connections") or []
    except (BrokerError, ValueError):  # the server is gone (a killed node), or answered half a page
        return None
    return conns[0] if conns else None


def subscriptions(record: Optional[dict]) -> "list[dict]":
    """The subscriptions of a /connz record: ``[{"subject", "qgroup", "msgs", ...}]``."""
    return list((record or {}).get("subscriptions_list_detail") or [])


def server_time(stamp: str) -> float:
    """An RFC 3339 time from /connz (``2026-11-30T03:11:51.40774297Z``) as seconds since 1970."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", stamp)
    if not m:
        raise ValueError(f"unexpected server time {stamp!r}")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    whole = _dt.datetime.fromisoformat(m.group(1) + zone).timestamp()
    return whole + (float("0." + m.group(2)) if m.group(2) else 0.0)
