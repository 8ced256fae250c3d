"""A live status line for waits longer than a moment (processes starting, messages arriving).

In Jupyter it is one output line updated in place (a display handle); in a terminal or script it
prints only the final line, so logs stay short.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Callable, Optional


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


async def wait_until(check: Callable[[], bool], *, timeout: float, what: str,
                     status: Optional[StatusLine] = None, every: float = 0.05) -> bool:
    """Await ``check()`` becoming true (at most ``timeout`` s), showing ``what`` and the seconds waited."""
    line = status or StatusLine(f"{what} ...")
    deadline = time.monotonic() + timeout
    last = -1.0
    while not check():
        if time.monotonic() > deadline:
            if status is None:
                line.done(f"{what}: gave up after {line.elapsed:.1f} s")
            return False
        if line.elapsed - last >= 0.25:
            last = line.elapsed
            line.update(f"{what} ... {line.elapsed:.1f} s")
        await asyncio.sleep(every)
    if status is None:  # our own line: say how it ended
        line.done(f"{what}: done after {line.elapsed:.1f} s")
    return True
