"""One running client per kind and name, so that re-running a notebook cell never leaks one.

``await Collector(url).start()`` in a cell run three times would leave two forgotten collectors
subscribed (each with its connection, its memory, its dashboard). As brokers and spawned processes
already do, a client started under a name that is already running *replaces* that one: the old one
is stopped first. To keep two at once, give them two names.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import _hooks
from .._aio import run
from ..servers.connection import hush_all

log = logging.getLogger("trashlab")

#: (kind, name) -> the running client of that kind and name
_live: "dict[tuple[str, str], Any]" = {}
#: stop tasks a synchronous clean-up scheduled, until they are done
_stopping: set = set()


async def replace(kind: str, name: str, new: Any) -> None:
    """Stop the running ``kind`` called ``name`` (if another object than ``new``); register ``new``."""
    old = _live.get((kind, name))
    _live[(kind, name)] = new
    if old is None or old is new:
        return
    if getattr(old, "running", False):
        log.warning("trashlab: %s %r started again: the earlier one stops (give another name= to keep both)",
                    kind, name)
    try:  # also one whose start was interrupted half-way (connected, not yet subscribed)
        await old.stop()
    except Exception as e:  # blind: a clean-up path: the old one's server may be gone; it is stopped anyway
        log.info("trashlab: stopping the earlier %s %r: %s", kind, name, e)


def forget(kind: str, name: str, obj: Any) -> None:
    """Drop ``obj`` from the registry (when it stops)."""
    if _live.get((kind, name)) is obj:
        del _live[(kind, name)]


def running() -> "list[_hooks.Running]":
    """The running clients, for :func:`trashlab._hooks.running` (an interrupted cell's summary, ...)."""
    return [_hooks.Running(kind, name, f"{kind} {name!r}") for (kind, name), c in list(_live.items())
            if getattr(c, "running", False)]


def stop_clients() -> int:
    """Stop every running client of this process (a clean-up); return how many.

    The clients are stopped by tasks on the running event loop (a clean-up cell is synchronous), after
    their connection news was silenced: their servers are about to go. (The live views reading from
    them were stopped before: :func:`trashlab._hooks.cleanup` runs the views' stage first.)
    """
    import asyncio

    hush_all()
    clients = [c for c in list(_live.values()) if getattr(c, "running", False)]
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        for client in clients:
            task = loop.create_task(_stop_quietly(client), name="trashlab-cleanup")
            _stopping.add(task)  # asyncio keeps only a weak reference to a task
            task.add_done_callback(_stopping.discard)
    elif clients:  # a script driving its clients with trashlab.run(): stop them on that loop now
        async def stop_all() -> None:
            for client in clients:
                await _stop_quietly(client)

        run(stop_all())
    return len(clients)


async def _stop_quietly(client: Any) -> None:
    try:
        await client.stop()
    except Exception as e:  # blind: a clean-up path: the next client is stopped whatever this one raised
        log.info("trashlab: stopping %r: %s", client, e)


_hooks.on_running("clients", running)
_hooks.on_cleanup("clients", "named clients", stop_clients)
