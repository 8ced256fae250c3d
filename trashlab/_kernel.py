"""What trashlab does inside a Jupyter kernel so that pressing Interrupt, re-running and waiting read well.

- An interrupted cell (JupyterLab's ■: ``KeyboardInterrupt`` in a plain cell, ``CancelledError`` in a
  cell that awaits) shows one line: what was interrupted and what keeps running, not a traceback.
  The lab itself is untouched: the processes trashlab starts are outside the kernel's process group.
- trashlab's errors show as one line too (their message names the fix).
- Connection news (lost, reconnected) is written under the cell the student ran last, not under the
  cell that created the client long ago: background tasks inherit the output target of the cell that
  started them, so each line is re-targeted to the latest cell.

Private: uses IPython's ``set_custom_exc`` and ipykernel's per-context output target.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import time
from typing import Iterator, Optional

#: what the running cell is waiting for right now: (description, started at)
_waits: "list[tuple[str, float]]" = []
#: the innermost wait an Interrupt ended in this cell: (description, seconds it had waited)
_interrupted: Optional["tuple[str, float]"] = None
#: the message header of the cell run last (its output area is where the student looks)
_latest_cell: Optional[dict] = None


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


def _still_running() -> "list[str]":
    """Short names of what trashlab runs for this kernel: brokers, spawned processes, clients."""
    mods = sys.modules
    found = []
    broker = mods.get("trashlab.servers.broker")
    if broker is not None:
        found += [f"broker {b.name}" for b in broker.running_brokers()]
    spawn = mods.get("trashlab.services.spawn")
    if spawn is not None:
        found += [f"{p.role} process {p.name}" for p in spawn.spawned()]
    named = mods.get("trashlab.services._named")
    if named is not None:
        found += named.describe_running()
    return found


def interrupt_line(exc: BaseException) -> str:
    """The one line an interrupted cell shows: what was interrupted, what keeps running."""
    global _interrupted
    if _interrupted is not None:
        what, waited = _interrupted
        head = f"Interrupted: {what} (after {waited:.1f} s)"
    elif _waits:
        what, since = _waits[-1]
        head = f"Interrupted: {what} (after {time.monotonic() - since:.1f} s)"
    else:
        head = "Interrupted"
    _interrupted = None
    running = _still_running()
    tail = ("still running: " + ", ".join(running)) if running else "nothing trashlab started is running"
    return f"{head}; {tail}."


def _show(shell, etype, evalue, tb, tb_offset=None):
    if issubclass(etype, (KeyboardInterrupt, asyncio.CancelledError)):
        text = f"\x1b[0;33m■ {interrupt_line(evalue)}\x1b[0m"
    else:
        text = f"\x1b[0;31m{etype.__name__}\x1b[0m: {evalue}"
    stb = [text]
    shell._showtraceback(etype, evalue, stb)
    return stb


def _remember_cell(*_args) -> None:
    global _latest_cell, _interrupted
    _interrupted = None  # a new cell: an earlier, caught interrupt is no news
    header = getattr(sys.stderr, "parent_header", None)
    if header:
        _latest_cell = header


def write_news(text: str) -> None:
    """Write a line to stderr: in a kernel, under the cell run last (not the one whose task logs it)."""
    stream = sys.stderr
    target = getattr(stream, "_parent_header", None)
    if _latest_cell is not None and isinstance(target, contextvars.ContextVar):
        token = target.set(_latest_cell)
        try:
            stream.write(text)
            stream.flush()
        finally:
            target.reset(token)
        return
    stream.write(text)
    stream.flush()


def install() -> None:
    """In IPython/Jupyter: one-line errors and interrupts, news under the latest cell (no-op elsewhere)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return
    from .errors import TrashlabError

    shell.set_custom_exc((TrashlabError, KeyboardInterrupt, asyncio.CancelledError), _show)
    events = getattr(shell, "events", None)
    if events is not None and _remember_cell not in events.callbacks.get("pre_run_cell", []):
        events.register("pre_run_cell", _remember_cell)
    _remember_cell()  # the cell importing trashlab
