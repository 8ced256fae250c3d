"""What trashlab sets up inside a Jupyter kernel (and only there): log lines in the running cell,
trashlab errors shown as one red line instead of a traceback, and an interrupted cell shown as one line.

- Interrupt (JupyterLab's ■: ``KeyboardInterrupt`` in a plain cell, ``CancelledError`` in one that
  awaits) shows what was interrupted and what keeps running; the lab itself is untouched (the processes
  trashlab starts are outside the kernel's process group, see :mod:`trashlab.servers.processes`).
- Connection news (lost, reconnected) comes from background tasks, which ipykernel would show under
  the cell that created the client, long ago; it is written under the cell run last instead, on stdout
  (plain output: it is news, not an error); trashlab's other warnings stay on stderr.

``import trashlab`` does nothing here. The first public name a cell uses (``trashlab.Broker``,
``trashlab.checks`` ...) calls :func:`setup_kernel` once, and only when IPython is already loaded (a
kernel, an IPython shell); calling it again changes nothing. A plain script or a spawned ``trashlab sim``
never imports IPython and gets the standard library's logging (warnings on stderr, nothing configured).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Optional

from .. import _hooks
from .._compat import (cell_header, guard_message_handlers, importing, running_cell_code, show_traceback_lines,
                       write_under)
from .._progress import forget_interrupt, interrupted_wait
from ..errors import TrashlabError

log = logging.getLogger("trashlab")


#: the message header of the cell run last (its output area is where the student looks)
_latest_cell: Optional[dict] = None


class _CellStderr(logging.StreamHandler):
    """Writes under the cell run last (in Jupyter): news (a line logged with ``extra=NEWS``: lost,
    reconnected, joined) to ``sys.stdout`` as plain output, anything else to ``sys.stderr`` (a red box)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout if getattr(record, "news", False) else sys.stderr
            write_under(stream, _latest_cell, self.format(record) + self.terminator)
        except Exception:  # blind: logging's own rule: a handler reports its failure with handleError
            self.handleError(record)


def _still_running() -> "list[str]":
    """Short names of what trashlab runs for this kernel: brokers, spawned processes, clients."""
    return [r.text for r in _hooks.running()]  # what was imported registered there; the rest runs nothing


def interrupt_line() -> str:
    """The one line an interrupted cell shows: what was interrupted, what keeps running."""
    stopped = interrupted_wait()
    head = f"Interrupted: {stopped[0]} (after {stopped[1]:.1f} s)" if stopped else "Interrupted"
    running = _still_running()
    return head + ("; still running: " + ", ".join(running) if running else "; nothing trashlab started is running") + "."


def _short(shell: Any, etype: type, evalue: BaseException, tb: Any, tb_offset: Optional[int] = None) -> list:
    if issubclass(etype, (KeyboardInterrupt, asyncio.CancelledError)):
        lines = [f"\x1b[0;33m■ {interrupt_line()}\x1b[0m"]
    else:
        lines = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {evalue}"]
    show_traceback_lines(shell, etype, evalue, lines)
    return lines


#: an Interrupt is held back at most this long while an import runs (then it lands anyway)
IMPORT_GRACE = 10.0


def _hold_interrupts_during_imports() -> None:
    """Wrap the cell's SIGINT handler: an Interrupt that arrives in the middle of an ``import`` is
    delivered again when the import is over, so ■ never leaves numpy or matplotlib half imported; one
    that arrives when the cell's own code has ended is dropped (the cell is done: a KeyboardInterrupt
    in ipykernel's code would cost the cell its reply, and JupyterLab would show it running forever).

    ipykernel sets the handler for each cell (``KeyboardInterrupt`` for a plain cell, a cancellation
    for one that awaits) and puts its own back afterwards, which drops this wrapper too.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    inner = signal.getsignal(signal.SIGINT)
    if not callable(inner) or getattr(inner, "_trashlab", False):
        return
    first: "list[float]" = []

    def again() -> None:  # only while the same cell runs (its handler is still this one)
        if signal.getsignal(signal.SIGINT) is hold_during_imports:
            os.kill(os.getpid(), signal.SIGINT)

    def hold_during_imports(signum: int, frame: Any) -> None:
        if importing(frame):
            first.append(first[0] if first else time.monotonic())
            if time.monotonic() - first[0] < IMPORT_GRACE:
                threading.Timer(0.05, again).start()  # the same Interrupt, once the import is over
                return
        first.clear()
        if inner in (signal.default_int_handler, _outside_cells) and not running_cell_code(frame):
            return  # a plain cell whose code is over: nothing left to interrupt
        inner(signum, frame)

    hold_during_imports._trashlab = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, hold_during_imports)


def _outside_cells(signum: int, frame: Any) -> None:
    """SIGINT while ipykernel handles a message: a KeyboardInterrupt in a plain cell's own code, and
    nothing at all in ipykernel's code around it (there it would cost the cell its reply)."""
    if running_cell_code(frame):
        signal.default_int_handler(signum, frame)


def _remember_cell(*_args: Any) -> None:
    global _latest_cell
    forget_interrupt()
    header = cell_header(sys.stderr)
    if header is not None:
        _latest_cell = header
    _hold_interrupts_during_imports()


def setup_kernel(shell: Any = None) -> bool:
    """In IPython/Jupyter: trashlab's log lines go to the cell run last, its errors and interrupts show as one line.

    Called for you the first time a cell uses a public ``trashlab.<name>`` while IPython is running; call
    it yourself to set up earlier (idempotent). Returns False (and changes nothing) outside IPython.
    """
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    if not any(isinstance(h, _CellStderr) for h in log.handlers):
        log.addHandler(_CellStderr())
        log.setLevel(logging.WARNING)
        log.propagate = False  # one line in the cell, not a second copy through the root logger
    shell.set_custom_exc((TrashlabError, KeyboardInterrupt, asyncio.CancelledError), _short)
    kernel = getattr(shell, "kernel", None)
    if kernel is not None and threading.current_thread() is threading.main_thread():
        guard_message_handlers(kernel, _outside_cells)
    events = getattr(shell, "events", None)
    if events is not None and _remember_cell not in events.callbacks.get("pre_run_cell", []):
        events.register("pre_run_cell", _remember_cell)
    _remember_cell()  # the cell importing trashlab
    return True
