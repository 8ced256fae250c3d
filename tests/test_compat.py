"""Canaries: each private internal trashlab/_compat.py reaches into still exists in the installed package.

When one fails, the package changed: fix trashlab/_compat.py (and only it), do not loosen the test.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import trashlab
from conftest import eventually
from trashlab import _compat


async def test_nats_py_subscription_buffer_is_still_where_the_collector_drains_it(shared_broker):
    nc = await trashlab.servers.connection.connect(shared_broker.url)
    try:
        async def ignore(msg) -> None:
            pass

        sub = await nc.subscribe("compat.canary", cb=ignore)
        queue = _compat.pending_queue(sub)
        assert queue is not None, "nats-py moved Subscription._pending_queue/_pending_size"
        before = sub.pending_bytes
        _compat.release_pending(sub, 0)
        assert sub.pending_bytes == before  # the private counter is the one pending_bytes reports
        assert hasattr(sub, "_pending_size") and sub.pending_bytes == sub._pending_size
    finally:
        await nc.close()


async def test_nats_py_parser_still_hands_each_message_to_process_msg(shared_broker):
    """The collector's direct delivery replaces Client._process_msg on its own connection."""
    nc = await trashlab.servers.connection.connect(shared_broker.url)
    try:
        queued, direct = [], []

        async def keep(msg) -> None:
            queued.append(msg.data)

        sub = await nc.subscribe("compat.direct", cb=keep)
        other = await nc.subscribe("compat.other", cb=keep)
        assert _compat.deliver_directly(nc, sub, lambda data, subject: direct.append((data, subject)))
        await nc.publish("compat.direct", b"one")
        await nc.publish("compat.other", b"two")
        await nc.publish("compat.direct", b"three", headers={"X": "1"})  # with headers: nats-py's way
        await nc.flush()
        await eventually(lambda: len(direct) + len(queued) >= 3, "the 3 messages delivered, directly or queued",
                         seen=lambda: f"direct {direct}, queued {queued}")
        assert direct == [(b"one", b"compat.direct")], "nats-py no longer calls Client._process_msg per MSG"
        assert sorted(queued) == [b"three", b"two"] and sub._received == 2 and other is not None
        assert nc.stats["in_msgs"] == 3
    finally:
        await nc.close()


async def test_nats_py_still_keeps_the_server_info(shared_broker):
    nc = await trashlab.servers.connection.connect(shared_broker.url)
    try:
        info = _compat.server_info(nc)
        assert info.get("server_name") == shared_broker.name, "nats-py moved Client._server_info"
        assert "version" in info and "max_payload" in info
    finally:
        await nc.close()


async def test_asyncio_queue_still_lets_the_collector_take_everything_at_once():
    import asyncio

    queue: asyncio.Queue = asyncio.Queue()
    for i in range(4):
        queue.put_nowait(i)
    first = await queue.get()  # as nats-py hands the first message to the callback
    assert _compat.take_all(queue) == [1, 2, 3] and queue.qsize() == 0
    assert not queue._finished.is_set(), "the first item is not done yet: join() must still wait"
    queue.task_done()
    await asyncio.wait_for(queue.join(), 1)  # every taken item counts as done
    assert first == 0 and _compat.take_all(queue) == []


def test_ipympl_canvas_sends_full_then_diff_frames_and_nothing_when_unchanged():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1), dpi=50)
    canvas, manager = _compat.ipympl_canvas(fig)
    try:
        sent = []
        canvas.send = lambda content, buffers=None: sent.append(buffers[0] if buffers else content)
        for name in ("_png_is_old", "_force_full", "_last_buff", "syncing_data_url", "_image_mode"):
            assert hasattr(canvas, name), f"ipympl/matplotlib webagg moved Canvas.{name}"
        canvas.draw()  # full frame
        canvas.blit()  # nothing changed: nothing sent
        fig.patch.set_facecolor("red")
        canvas.draw()  # only the changed pixels
        frames = [x for x in sent if isinstance(x, bytes)]
        assert len(frames) == 2 and all(f.startswith(b"\x89PNG") for f in frames)
        assert canvas._image_mode == "diff" and canvas._data_url  # the headless picture is kept too
    finally:
        manager.destroy()


def test_ipympl_canvas_still_takes_a_figure_and_hides_its_chrome():
    from matplotlib.figure import Figure

    canvas, manager = _compat.ipympl_canvas(Figure())
    assert (canvas.header_visible, canvas.toolbar_visible, canvas.resizable) == (False, False, False)
    assert callable(canvas.blit) and callable(manager.destroy)
    manager.destroy()


def test_ipython_still_shows_a_custom_traceback_through_showtraceback():
    from IPython.core.interactiveshell import InteractiveShell

    assert callable(getattr(InteractiveShell, "_showtraceback", None)), "IPython removed _showtraceback"
    shell = InteractiveShell.instance()
    try:
        assert trashlab.notebook.kernel.setup_kernel(shell) is True
        result = shell.run_cell("import trashlab; raise trashlab.errors.BadArgument('one line please')")
        assert isinstance(result.error_in_exec, trashlab.errors.BadArgument)
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()


def test_import_trashlab_has_no_side_effects_in_a_plain_script():
    """No IPython import, no handler that stops propagation; a warning still reaches stderr (logging's default)."""
    script = textwrap.dedent("""
        import logging, sys
        import trashlab
        log = logging.getLogger("trashlab")
        assert "IPython" not in sys.modules, "import trashlab imported IPython"
        assert log.handlers == [] and log.propagate, (log.handlers, log.propagate)
        trashlab.Simulator, trashlab.Collector, trashlab.servers.connection.connect   # the lazy names a child uses
        assert "IPython" not in sys.modules, "loading the services imported IPython"
        log.warning("a warning line")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "a warning line"


def test_a_spawned_child_never_imports_ipython():
    script = textwrap.dedent("""
        import sys, runpy
        sys.argv = ["trashlab", "sim", "--servers", "nats://127.0.0.1:1", "--count", "1"]
        try:
            runpy.run_module("trashlab", run_name="__main__")
        except SystemExit:
            pass
        print("IPython" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


def test_ipykernel_still_targets_a_write_through_a_context_variable():
    """write_under() sets ipykernel's per-context output target for one write (news under the latest cell)."""
    import zmq
    from ipykernel.iostream import IOPubThread, OutStream
    from jupyter_client.session import Session

    ctx = zmq.Context()
    socket = ctx.socket(zmq.PUB)
    socket.bind("inproc://trashlab-canary")
    thread = IOPubThread(socket)  # not started: nothing is sent, only the target is looked at
    try:
        stream = OutStream(Session(), thread, "stderr", watchfd=False)
        stream.set_parent({"header": {"msg_id": "created-the-task"}})
        assert _compat.cell_header(stream) == {"msg_id": "created-the-task"}
        seen = []
        stream.write = lambda text: seen.append((text, stream.parent_header))  # what write() reads
        _compat.write_under(stream, {"msg_id": "latest-cell"}, "news\n")
        assert seen == [("news\n", {"msg_id": "latest-cell"})], "ipykernel moved OutStream._parent_header"
        assert stream.parent_header == {"msg_id": "created-the-task"}  # only for that write
    finally:
        ctx.destroy(linger=0)  # also the sockets IOPubThread opened


def test_ipython_still_runs_a_cells_code_from_run_code():
    """An Interrupt after a cell's code ended is dropped: trashlab tells the cell's code from ipykernel's own
    by IPython's ``InteractiveShell.run_code`` on the call stack."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_cell("import sys\nfrom trashlab import _compat\nINSIDE = _compat.running_cell_code(sys._getframe())")
        assert shell.user_ns.get("INSIDE") is True, "IPython no longer runs a cell's code from InteractiveShell.run_code"
    finally:
        InteractiveShell.clear_instance()
    assert not _compat.running_cell_code(sys._getframe())


def test_cpython_still_runs_imports_from_frozen_importlib(tmp_path, monkeypatch):
    """An Interrupt is held back while an import runs: trashlab recognises that from the call stack."""
    (tmp_path / "trashlab_canary_module.py").write_text(
        "import sys\nfrom trashlab import _compat\nINSIDE = _compat.importing(sys._getframe())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import trashlab_canary_module

    assert trashlab_canary_module.INSIDE, "CPython no longer runs module bodies from <frozen importlib._bootstrap>"
    assert not _compat.importing(sys._getframe())


def test_ipykernel_still_sets_default_int_handler_around_each_message_and_restores_a_saved_one():
    """trashlab.notebook.kernel replaces Kernel.pre_handler_hook per kernel (_compat.guard_message_handlers):
    it relies on the hook choosing the handler and post_handler_hook restoring ``saved_sigint_handler``."""
    import inspect

    from ipykernel.kernelbase import Kernel

    assert "default_int_handler" in inspect.getsource(Kernel.pre_handler_hook)
    assert "saved_sigint_handler" in inspect.getsource(Kernel.post_handler_hook)
    assert "self.pre_handler_hook()" in inspect.getsource(Kernel.dispatch_shell)
