"""Every use of another package's private internals, in one place.

Each function here reaches into something its package does not promise to keep (nats-py's
subscription buffer and server INFO, asyncio.Queue's item deque, ipympl's canvas frames, IPython's
traceback display, ipykernel's output target of a background task). A canary test for
each (``tests/test_compat.py``) fails loudly when that package changes, instead of trashlab
silently slowing down or showing 40-line tracebacks again.
"""

from __future__ import annotations

import asyncio
import collections
import io
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


def take_all(queue: "asyncio.Queue") -> list:
    """Everything in an asyncio.Queue at once, each item counted as done (``join()``, which nats-py's
    drain waits on, sees them handled): one list copy instead of a ``get_nowait`` + ``task_done`` each."""
    items = getattr(queue, "_queue", None)
    if isinstance(items, collections.deque) and isinstance(getattr(queue, "_unfinished_tasks", None), int):
        inner: Any = queue
        taken = list(items)
        items.clear()
        inner._unfinished_tasks -= len(taken)
        if inner._unfinished_tasks <= 0:
            inner._unfinished_tasks = 0
            inner._finished.set()
        inner._wakeup_next(inner._putters)
        return taken
    taken = []
    while queue.qsize():  # an asyncio without those internals: the public way
        taken.append(queue.get_nowait())
        queue.task_done()
    return taken


def deliver_directly(nc: Any, sub: Any, receive: Any) -> bool:
    """From now on hand ``sub``'s plain messages to ``receive(payload, subject_bytes)`` straight from nats-py's
    protocol parser, skipping the ``Msg`` object, its queue and the awaited callback (most of nats-py's cost
    per message). Messages with headers, and every other subscription, still go nats-py's way.

    nats-py's counters (``stats``, the subscription's received count) stay right. Returns False (nothing
    changed) when this nats-py does not route messages through ``Client._process_msg``.
    """
    original = getattr(nc, "_process_msg", None)
    sid = getattr(sub, "_id", None)
    stats = getattr(nc, "stats", None)
    if original is None or not isinstance(sid, int) or not isinstance(stats, dict) or sub._jsi or sub._future:
        return False

    async def process_msg(msg_sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        if msg_sid != sid or headers:
            return await original(msg_sid, subject, reply, data, headers)
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        sub._received += 1
        receive(data, subject)

    nc._process_msg = process_msg
    return True


def server_info(nc: Any) -> dict:
    """The INFO the server sent (server_name, version, auth_required ...); nats-py has no public accessor."""
    info = getattr(nc, "_server_info", None)
    return dict(info) if isinstance(info, dict) else {}


# ----- ipympl ----------------------------------------------------------------------------------
def ipympl_canvas(figure: Any) -> "tuple[Any, Any]":
    """An ipympl canvas widget and its manager for ``figure``, without pyplot (no figure piles up),
    with ipympl's header, toolbar and resize handle hidden."""
    from ipympl.backend_nbagg import FigureManager

    canvas = _diff_canvas_class()(figure)
    manager = FigureManager(canvas, 0)
    canvas.header_visible = False
    canvas.toolbar_visible = False
    canvas.resizable = False
    return canvas, manager


def png(rgba: Any) -> bytes:
    """PNG of an RGBA array, fast: zlib level 1 (a live frame is sent at once: time matters more than size)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="png", compress_level=1)
    return buf.getvalue()


_DIFF_CANVAS: Any = None


def _diff_canvas_class() -> Any:
    """ipympl's canvas widget, sending nothing when no pixel changed and encoding the changed ones fast.

    Replaces matplotlib webagg's ``get_diff_image`` (same protocol: a full frame, or a diff frame whose
    transparent pixels the front end keeps) and ipympl's ``send_binary`` (the picture kept for a
    notebook run without a front end), whose PNGs use zlib level 6: most of a dashboard refresh.
    """
    global _DIFF_CANVAS
    if _DIFF_CANVAS is not None:
        return _DIFF_CANVAS
    import numpy as np
    from ipympl.backend_nbagg import Canvas

    class DiffCanvas(Canvas):
        def get_diff_image(self) -> Optional[bytes]:
            this: Any = self  # (webagg's frame state has no type annotations)
            if not this._png_is_old:
                return None
            this._png_is_old = False
            pixels = np.asarray(self.get_renderer().buffer_rgba())
            buff = pixels.view(np.uint32).squeeze(2)
            if this._force_full or buff.shape != this._last_buff.shape or (pixels[:, :, 3] != 255).any():
                self.set_image_mode("full")
                output = buff
            else:
                changed = buff != this._last_buff
                if not changed.any():
                    return None  # the front end already shows exactly this
                self.set_image_mode("diff")
                output = np.where(changed, buff, 0)
            this._last_buff = buff.copy()
            this._force_full = False
            return png(output.view(np.uint8).reshape((*output.shape, 4)))

        def send_binary(self, data: bytes) -> None:
            if self.syncing_data_url:  # no front end (a headless run): keep a full picture for the notebook
                from base64 import b64encode

                last = self._last_buff
                self._data_url = b64encode(png(last.view(np.uint8).reshape((*last.shape, 4)))).decode("ascii")
            self.send({"data": '{"type": "binary"}'}, buffers=[data])

    _DIFF_CANVAS = DiffCanvas
    return DiffCanvas


# ----- IPython ---------------------------------------------------------------------------------
def show_traceback_lines(shell: Any, etype: type, evalue: BaseException, lines: "list[str]") -> None:
    """Show ``lines`` in place of a traceback (the display a ``set_custom_exc`` handler must call)."""
    shell._showtraceback(etype, evalue, lines)


def running_cell_code(frame: Any) -> bool:
    """True if ``frame`` (or a caller of it) is a cell's own code, run by IPython's ``InteractiveShell.run_code``.

    After a cell's code ends, ipykernel still runs its own code (the reply, the idle status) under the
    cell's SIGINT handler; a ``KeyboardInterrupt`` raised there is caught by ipykernel, which then never
    sends the cell's reply: JupyterLab shows the cell running forever.
    """
    while frame is not None:
        code = frame.f_code
        if code.co_name == "run_code" and code.co_filename.endswith("interactiveshell.py"):
            return True
        frame = frame.f_back
    return False


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
def guard_message_handlers(kernel: Any, handler: Any) -> bool:
    """Make ``handler`` the SIGINT handler while ipykernel handles a shell message, instead of
    ``signal.default_int_handler``.

    ipykernel's ``Kernel.pre_handler_hook`` sets ``default_int_handler`` for the whole handling of an
    ``execute_request`` (and ``post_handler_hook`` puts the previous one back). A cell that awaits runs
    under ipykernel's own cancelling handler, which is replaced by ``default_int_handler`` again the moment
    the cell's code ends: an Interrupt landing then, while ipykernel builds the reply, raises in ipykernel's
    code, which logs "KeyboardInterrupt caught in kernel" and never sends the reply (the cell runs forever
    in JupyterLab). Returns False when this ipykernel has no such hook.
    """
    if not callable(getattr(type(kernel), "pre_handler_hook", None)) or not hasattr(kernel, "post_handler_hook"):
        return False
    import signal

    def pre_handler_hook() -> None:
        kernel.saved_sigint_handler = signal.signal(signal.SIGINT, handler)

    kernel.pre_handler_hook = pre_handler_hook  # an instance attribute: ipykernel calls self.pre_handler_hook()
    return True


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
