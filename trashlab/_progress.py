"""A live status line for waits longer than a moment (processes starting, messages arriving), and the two waits.

Every "wait until something is true" goes through :func:`wait_until` (async code) or :func:`poll_until`
(the blocking API).

In Jupyter it is one output line updated in place (a display handle); in a terminal or script it
prints only the final line, so logs stay short. Every wait marks itself with :func:`waiting`, so a
cell interrupted during it can say what was interrupted (see :mod:`trashlab.notebook.kernel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import time
from typing import Awaitable, Callable, Iterator, Optional

#: what the running cell is waiting for right now: (description, started at)
_waits: "list[tuple[str, float]]" = []
#: the innermost wait an Interrupt ended in this cell: (description, seconds it had waited)
_interrupted: "Optional[tuple[str, float]]" = None


@contextlib.contextmanager
def waiting(what: str) -> Iterator[None]:
    """Mark a wait (``waiting for 100 readings``), so an Interrupt during it can say what it stopped."""
    global _interrupted
    entry = (what, time.monotonic())
    _waits.append(entry)
    try:
        yield
    except (KeyboardInterrupt, asyncio.CancelledError):
        if _interrupted is None:  # the innermost wait names it
            _interrupted = (what, time.monotonic() - entry[1])
        raise
    finally:
        if entry in _waits:
            _waits.remove(entry)


def interrupted_wait() -> "Optional[tuple[str, float]]":
    """What an Interrupt just ended: ``(description, seconds waited)`` of the innermost wait, or None; forgets it."""
    global _interrupted
    found, _interrupted = _interrupted, None
    if found is None and _waits:
        what, since = _waits[-1]
        found = (what, time.monotonic() - since)
    return found


def forget_interrupt() -> None:
    """A new cell runs: an earlier interrupt that user code caught is no news."""
    global _interrupted
    _interrupted = None


def _in_kernel() -> bool:
    ipython = sys.modules.get("IPython")  # never imported here: a script or child does not load IPython
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class StatusLine:
    """One line of text that a notebook cell updates in place: ``update()`` while waiting, ``done()`` at the end."""

    def __init__(self, text: str = "") -> None:
        self.started = time.monotonic()
        self.text = text
        self._handle = None
        if _in_kernel():
            from IPython.display import display

            self._handle = display(self._bundle(text), raw=True, display_id=True)

    @staticmethod
    def _bundle(text: str) -> dict:
        return {"text/plain": text}

    @property
    def elapsed(self) -> float:
        """Seconds since the line appeared."""
        return time.monotonic() - self.started

    def update(self, text: str) -> None:
        """Replace the line's text."""
        self.text = text
        if self._handle is not None:
            self._handle.update(self._bundle(text), raw=True)

    def done(self, text: str) -> None:
        """Show the final text (printed once outside Jupyter)."""
        if self._handle is not None:
            self.update(text)
        else:
            self.text = text
            print(text, flush=True)


async def wait_until(check: "Callable[[], bool | Awaitable[bool]]", *, timeout: float, what: str,
                     status: Optional[StatusLine] = None, every: float = 0.05,
                     why: Optional[Callable[[], str]] = None, show: bool = True,
                     show_after: float = 0.0) -> bool:
    """Await ``check()`` (a function, or a coroutine function) becoming true, at most ``timeout`` s.

    The one wait-with-progress of trashlab: a status line shows ``what`` and the seconds waited once the
    wait is longer than ``show_after`` s (never with ``show=False``; a quick wait then prints nothing);
    giving up says so on the line, with ``why()`` (the likely cause) when given; an Interrupt leaves
    "interrupted" on it. Returns False when it gave up.
    """
    line = status
    started = time.monotonic()
    last = -1.0

    def elapsed() -> float:
        return time.monotonic() - started

    with waiting(what):
        try:
            while True:
                done = check()
                if inspect.isawaitable(done):
                    done = await done
                if done:
                    break
                if elapsed() > timeout:
                    if status is None and show:
                        cause = why() if why is not None else ""
                        (line or StatusLine()).done(f"{what}: gave up after {elapsed():.1f} s"
                                                    + (f": {cause}" if cause else ""))
                    return False
                if line is None and show and elapsed() >= show_after:
                    line = StatusLine(f"{what} ...")
                if line is not None and elapsed() - last >= 0.25:
                    last = elapsed()
                    line.update(f"{what} ... {last:.1f} s")
                await asyncio.sleep(every)
        except (asyncio.CancelledError, KeyboardInterrupt):
            if line is not None:
                line.update(f"{what}: interrupted after {elapsed():.1f} s")
            raise
    if status is None and line is not None:  # our own line: say how it ended
        line.done(f"{what}: done after {elapsed():.1f} s")
    return True


def poll_until(check: Callable[[], bool], *, timeout: float, every: float = 0.05) -> bool:
    """The synchronous sibling of :func:`wait_until`, for the blocking API (``Broker.start()``, ``reload()``,
    ``Cluster.partition()``): call ``check()`` every ``every`` s until it is true (True) or ``timeout`` s
    passed (False). No status line: these waits are short, or their caller reports them."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True
