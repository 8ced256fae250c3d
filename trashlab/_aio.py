"""Running async code from a script *and* from a notebook cell.

In Jupyter the kernel's event loop is already running, so ``asyncio.run()`` fails there
(nats.py issue #155). Top-level ``await`` is the primary style in notebooks; :func:`run` is for code
written as a script. Inside a running loop it uses ``nest-asyncio2`` (the maintained fork of the
archived ``nest_asyncio``, the one ipykernel 7 uses). Outside one it keeps a single loop for the
whole script, so a simulator started by one ``run()`` call keeps publishing during the next.
Never ``time.sleep`` in a cell: background tasks get no time while a cell blocks.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Optional, TypeVar

T = TypeVar("T")
_loop: Optional[asyncio.AbstractEventLoop] = None


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine to completion from a script or a notebook cell; return its result."""
    global _loop
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        import nest_asyncio2

        nest_asyncio2.apply(running)
        return running.run_until_complete(coro)
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
    return _loop.run_until_complete(coro)


async def quietly(step: Awaitable[object]) -> None:
    """Await a clean-up step whose failure changes nothing (the thing is going away anyway)."""
    try:
        await step
    except Exception:  # blind: a clean-up step whose failure changes nothing (see the docstring)
        pass


async def cancel(task: Optional["asyncio.Task"], timeout: float = 5.0) -> None:
    """Cancel a background task and wait until it has finished (its errors are not re-raised).

    nats-py sometimes turns a cancellation into its own timeout error; a task that swallowed one
    is cancelled again, for at most ``timeout`` seconds.
    """
    if task is None:
        return
    deadline = asyncio.get_running_loop().time() + timeout
    while not task.done() and asyncio.get_running_loop().time() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log "exception was never retrieved"
