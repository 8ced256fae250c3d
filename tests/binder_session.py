"""The command the Binder test hands to ``binder/start``: run the notebooks as a session would.

Usage: ``binder/start python tests/binder_session.py NOTEBOOK...``. It executes each notebook with
nbclient (the engine behind nbconvert, which the Binder image has) and, while they run, counts the
readings that pass through the broker ``NATS_URL`` names (the session broker ``start`` launched).
It prints one JSON line: ``{"nats_url": ..., "notebooks": {path: "ok" | error}, "readings_seen": N,
"session_broker_alive": bool}`` (still alive after every notebook, the clean-up one included).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from urllib.parse import urlsplit

import nats
import nbformat
from nbclient import NotebookClient


def _folder(path: str) -> str:
    """The notebook's folder (its cells' working directory)."""
    return os.path.dirname(os.path.abspath(path))


async def main(paths: list) -> int:
    url = os.environ.get("NATS_URL", "")
    seen = {"n": 0}
    nc = None
    try:
        where = urlsplit(url)
        socket.create_connection((where.hostname, where.port), timeout=2).close()  # fail fast when dead
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=1, connect_timeout=2)

        async def count(msg) -> None:
            seen["n"] += 1

        await nc.subscribe("trash-level", cb=count)
    except (OSError, ValueError, TypeError) as e:  # a dead session broker is a case the test runs on purpose
        print(f"binder_session: no session broker at {url!r}: {e}", file=sys.stderr)
        nc = None
    results = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": _folder(path)}})
        try:
            await client.async_execute()
            results[path] = "ok"
        except Exception as e:
            results[path] = f"{type(e).__name__}: {str(e)[-2000:]}"
    alive = False
    if nc is not None:
        try:
            await nc.flush(timeout=2)
            alive = nc.is_connected
        except Exception:
            pass
        await nc.close()
    print(json.dumps({"nats_url": url, "notebooks": results, "readings_seen": seen["n"],
                      "session_broker_alive": alive}))
    return 0 if all(v == "ok" for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
