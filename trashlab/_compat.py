"""Every use of another package's private internals, in one place.

Each function here reaches into something its package does not promise to keep (nats-py's
subscription buffer and server INFO, ipympl's canvas, IPython's traceback display, ipykernel's output
target of a background task). A canary test for
each (``tests/test_compat.py``) fails loudly when that package changes, instead of trashlab
silently slowing down or showing 40-line tracebacks again.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional


# ----- nats-py ---------------------------------------------------------------------------------
def pending_queue(sub: Any) -> Optional["asyncio.Queue"]:
    """nats-py's buffer of messages received for ``sub`` and not yet handed to its callback.

    The collector empties it in one go instead of one awaited callback per message; None when this
    nats-py keeps it elsewhere (the collector then takes messages one by one, as nats-py hands them).
    """
    queue = getattr(sub, "_pending_queue", None)
    return queue if isinstance(queue, asyncio.Queue) and isinstance(getattr(sub, "_pending_size", None), int) else None


def release_pending(sub: Any, nbytes: int) -> None:
    """Tell nats-py that ``nbytes`` of payload taken from :func:`pending_queue` are handled (its slow-consumer
    accounting counts bytes in the buffer)."""
    sub._pending_size -= nbytes


def server_info(nc: Any) -> dict:
    """The INFO the server sent (server_name, version, auth_required ...); nats-py has no public accessor."""
    info = getattr(nc, "_server_info", None)
    return dict(info) if isinstance(info, dict) else {}


# ----- ipympl ----------------------------------------------------------------------------------
def ipympl_canvas(figure: Any) -> "tuple[Any, Any]":
    """An ipympl canvas widget and its manager for ``figure``, without pyplot (no figure piles up),
    with ipympl's header, toolbar and resize handle hidden."""
    from ipympl.backend_nbagg import Canvas, FigureManager

    canvas = Canvas(figure)
    manager = FigureManager(canvas, 0)
    canvas.header_visible = False
    canvas.toolbar_visible = False
    canvas.resizable = False
    return canvas, manager


# ----- IPython ---------------------------------------------------------------------------------
def show_traceback_lines(shell: Any, etype: type, evalue: BaseException, lines: "list[str]") -> None:
    """Show ``lines`` in place of a traceback (the display a ``set_custom_exc`` handler must call)."""
    shell._showtraceback(etype, evalue, lines)


# ----- ipykernel -------------------------------------------------------------------------------
def cell_header(stream: Any) -> Optional[dict]:
    """The message header that output written to ``stream`` (ipykernel's stdout/stderr) goes under now."""
    header = getattr(stream, "parent_header", None)
    return header if isinstance(header, dict) and header else None


def write_under(stream: Any, header: Optional[dict], text: str) -> None:
    """Write ``text`` to ipykernel's ``stream`` as output of the cell with ``header``.

    ipykernel 7 keeps the target cell in a context variable, so output from an asyncio task lands under
    the cell that *created* the task; this sets it for one write. Elsewhere it is a plain write.
    """
    import contextvars

    target = getattr(stream, "_parent_header", None)
    if header is None or not isinstance(target, contextvars.ContextVar):
        stream.write(text)
        stream.flush()
        return
    token = target.set(header)
    try:
        stream.write(text)
        stream.flush()
    finally:
        target.reset(token)


# ----- CPython ---------------------------------------------------------------------------------
def importing(frame: Any) -> bool:
    """True if ``frame`` (or a caller of it) is inside an ``import`` being executed.

    CPython runs module bodies from ``importlib._bootstrap``, whose frames carry that frozen module's
    file name. A KeyboardInterrupt raised there leaves a package half imported (numpy, matplotlib:
    ``module 'numpy' has no attribute ...`` until the kernel restarts), so an Interrupt waits for it.
    """
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
