"""Reaching a broker by name: the local version of ``docker container run --net=iot-net alpine ping iot-msg``."""

from __future__ import annotations

from .._compat import server_info
from .._secrets import redact
from ..servers.connection import Resolved, Servers, connect, resolve_servers


async def ping(servers: Servers = "iot-msg", count: int = 3) -> dict:
    """Resolve ``servers`` (a broker name works), connect, and time ``count`` NATS PING/PONG round trips."""
    where = resolve_servers(servers)
    url = where.urls[0]
    nc = await connect(Resolved((url,), where.origin, where.fallback, where.fallback_name), name="trashlab-ping")
    try:
        rtts = [await nc.rtt() * 1000 for _ in range(max(1, count))]
        info = server_info(nc)
    finally:
        await nc.close()
    return {"name": redact(servers if isinstance(servers, str) else url), "resolves_to": redact(url),
            "server_name": info.get("server_name") or info.get("server_id"), "version": info.get("version"),
            "round_trips": len(rtts), "best_ms": round(min(rtts), 3)}
