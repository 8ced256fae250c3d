"""The broker's HTTP monitoring endpoints (port 8222 in the lab) as pandas tables."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pandas as pd

from ..errors import BadArgument, BrokerError

VARZ_FIELDS = ["server_name", "version", "host", "port", "http_port", "cluster", "connections",
               "total_connections", "routes", "subscriptions", "in_msgs", "out_msgs", "in_bytes",
               "out_bytes", "slow_consumers", "uptime", "mem", "cpu", "jetstream"]
CONNZ_FIELDS = ["cid", "name", "lang", "version", "ip", "port", "in_msgs", "out_msgs", "pending_bytes",
                "subscriptions", "subscriptions_list", "uptime"]
ROUTEZ_FIELDS = ["rid", "remote_id", "remote_name", "ip", "port", "solicited", "pooled", "in_msgs",
                 "out_msgs", "subscriptions", "uptime"]


def fetch(url: str, endpoint: str, timeout: float = 2.0) -> dict:
    """The raw JSON of ``<url>/<endpoint>``."""
    target = url.rstrip("/") + "/" + endpoint.lstrip("/")
    try:
        with urllib.request.urlopen(target, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError) as e:
        raise BrokerError(f"monitoring endpoint {target} is not answering ({getattr(e, 'reason', e)}): "
                          "is the broker running? Its monitor_url is printed by trashlab broker") from e


def monitor(url, endpoint: str = "varz") -> pd.DataFrame:
    """A table from /varz (one column), /connz (a row per client), /routez (a row per route) or /subsz."""
    base = getattr(url, "monitor_url", url)  # a Broker works too
    what = endpoint.strip("/").split("?")[0]
    if what == "varz":
        data = fetch(base, "varz")
        return pd.DataFrame({"value": pd.Series({k: _short(data.get(k)) for k in VARZ_FIELDS if k in data},
                                                dtype=object)})
    if what == "connz":
        data = fetch(base, "connz?subs=1")
        return pd.DataFrame([{k: _short(c.get(k)) for k in CONNZ_FIELDS} for c in data.get("connections") or []],
                            columns=CONNZ_FIELDS)
    if what == "routez":
        data = fetch(base, "routez?subs=1")
        rows = []
        for r in data.get("routes") or []:
            row = {k: _short(r.get(k)) for k in ROUTEZ_FIELDS}
            row["subscriptions"] = r.get("num_subscriptions", r.get("subscriptions"))
            rows.append(row)
        return pd.DataFrame(rows, columns=ROUTEZ_FIELDS)
    if what == "subsz":
        data = fetch(base, "subsz")
        return pd.DataFrame({"value": pd.Series({k: _short(v) for k, v in data.items()}, dtype=object)})
    raise BadArgument(f"unknown monitoring endpoint {endpoint!r}: use 'varz', 'connz', 'routez' or 'subsz'")


def _short(value):
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value)[:80]
    return value
