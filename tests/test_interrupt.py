"""Pressing Interrupt (■) stops the cell, never the lab; a crashed or shut-down kernel still takes the lab with it.

Real kernels: jupyter_client's interrupt (what JupyterLab's kernel manager does) and a real jupyter_server's
``POST /api/kernels/<id>/interrupt`` (what the ■ button calls). Both SIGINT the kernel's whole process group.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil
import pytest

import trashlab
from conftest import unique
from kernels import JupyterServer, Kernel, running_recorded, wait_gone

SETUP = """
import asyncio, time
import trashlab
broker = trashlab.Broker("iot-msg").start()
sim = await trashlab.spawn_simulator("iot-msg", interval=0.05)
col = await trashlab.Collector("iot-msg").start()
await col.wait_for(3, timeout=10)
print("set up", col.count >= 3)
"""

NEXT_CELL_WORKS = """
before = col.count
await col.wait_for(before + 3, timeout=10)
print("next cell:", col.count >= before + 3, col.connected_url == broker.url.split("//")[1])
"""


@pytest.fixture(scope="module")
def lab():
    """One kernel with a broker, a spawned simulator and a collector, for the whole module."""
    k = Kernel.start()
    try:
        assert "set up True" in k.ok(SETUP).text
        yield k
    finally:
        k.shutdown()
        shutil.rmtree(k.state, ignore_errors=True)


def interrupt_during(kernel: Kernel, code: str, interrupt=None) -> "object":
    """Run ``code`` (which prints ``go`` first), press Interrupt once it waits, return the cell's reply."""
    msg_id = kernel.submit("print('go', flush=True)\n" + code)
    kernel.wait_output(msg_id, "go")
    time.sleep(0.5)  # well inside the wait
    (interrupt or kernel.interrupt)()
    return kernel.result(msg_id, timeout=30)


def assert_one_line(reply, *expected: str) -> str:
    """The interrupted cell shows one line (no traceback) naming what was stopped and what still runs."""
    want = ("status 'error' and one line, no traceback: '■ Interrupted: ...; still running: ...'"
            + (f" containing {', '.join(map(repr, expected))}" if expected else ""))
    errors = reply.errors
    assert reply.status == "error" and len(errors) == 1 and "Traceback" not in reply.text, \
        reply.explain("the interrupted cell did not end with one error and no traceback", want)
    ename, _, lines = errors[0]
    assert ename in ("KeyboardInterrupt", "CancelledError"), reply.explain(f"the cell ended with {ename}", want)
    assert len(lines) == 1 and "\n" not in lines[0].strip(), reply.explain(f"more than one line: {lines}", want)
    missing = [text for text in expected if text not in lines[0]]
    assert not missing, reply.explain(f"the line misses {missing}", want)
    return lines[0]


def assert_next_cell_works(kernel: Kernel, timeout: float = 60) -> None:
    """The next cell a student runs sees readings arrive through the same broker."""
    reply = kernel.ok(NEXT_CELL_WORKS, timeout)
    assert "next cell: True True" in reply.text, \
        reply.explain("the next cell after ■ did not see the lab working", "'next cell: True True' (readings arrive, "
                      "the collector still on the broker)")


def assert_lab_unchanged(state: str, before: dict, why: str) -> None:
    """The processes of the lab recorded in ``state`` are the same (name and pid) as ``before``."""
    now = running_recorded(state)
    assert now == before, (f"{why}: the lab's processes changed: gone {sorted(set(before) - set(now))}, "
                           f"new {sorted(set(now) - set(before))}, restarted "
                           f"{sorted(n for n in set(before) & set(now) if before[n] != now[n])}")


@pytest.mark.parametrize("code, what", [
    ("time.sleep(30)", "Interrupted"),
    ("await asyncio.sleep(30)", "Interrupted"),
    ("await col.wait_for(10**9, timeout=60)", "Interrupted: collector 'collector' waiting for 1000000000 readings"),
    ("await trashlab.watch([sim], seconds=60)", "Interrupted: watching sim for 60 s"),
])
def test_interrupt_stops_the_cell_not_the_lab(lab, code, what):
    before = running_recorded(lab.state)
    assert {"nats-server:iot-msg", "simulator:sim"} <= set(before)
    reply = interrupt_during(lab, code)
    assert_one_line(reply, what, "still running: broker iot-msg", "simulator process sim", "collector 'collector'")
    time.sleep(0.5)
    assert_lab_unchanged(lab.state, before, f"■ during {code!r}")
    assert_next_cell_works(lab)


def test_interrupted_failover_drill_leaves_the_cluster_running(lab):
    lab.ok("cluster = trashlab.Cluster(2, name='drill-me').start()\nawait cluster.wait_formed()")
    nodes = {k: v for k, v in running_recorded(lab.state).items() if "drill-me" in k}
    assert len(nodes) == 2
    reply = interrupt_during(lab, "await trashlab.failover_drill(cluster, kill_after=30)")
    assert_one_line(reply, "Interrupted: the core failover drill", "broker drill-me", "broker drill-me2")
    assert "drill-collector" not in reply.errors[0][2][0], "the drill's own clients were not stopped"
    assert {k: v for k, v in running_recorded(lab.state).items() if "drill-me" in k} == nodes
    text = lab.ok("await cluster.wait_formed()\nprint('formed', cluster.formed(), len(cluster.urls))\n"
                  "cluster.stop()").text
    assert "formed True 2" in text
    assert_next_cell_works(lab)


def test_clients_reconnect_when_the_broker_comes_back(lab):
    """Re-running the broker cell after the broker died: the collector (and the spawned simulator) resume."""
    text = lab.ok("""
port = broker.port
broker.kill()
await asyncio.sleep(0.3)
broker = trashlab.Broker("iot-msg").start()
print("same port", broker.port == port)
""").text
    assert "same port True" in text, "the broker did not come back where its clients look for it"
    assert_next_cell_works(lab, timeout=30)


def test_interrupt_through_jupyter_servers_rest_endpoint():
    server = JupyterServer(state=tempfile.mkdtemp(prefix="trashlab-test-state-"))
    try:
        kernel_id, kernel = server.start_kernel()
        assert "set up True" in kernel.ok(SETUP).text
        before = running_recorded(server.state)
        assert len(before) == 2
        reply = interrupt_during(kernel, "await asyncio.sleep(30)", lambda: server.interrupt(kernel_id))
        assert_one_line(reply, "Interrupted", "still running: broker iot-msg")
        time.sleep(0.5)
        assert_lab_unchanged(server.state, before, "■ through the REST endpoint")
        assert_next_cell_works(kernel)
        kernel.client.stop_channels()
        server.request("DELETE", f"/api/kernels/{kernel_id}")  # JupyterLab's "Shut Down Kernel"
        assert not wait_gone(before.values()), "a shut-down kernel left its lab running"
    finally:
        server.stop()
        shutil.rmtree(server.state, ignore_errors=True)


@pytest.mark.parametrize("how", ["crash", "shutdown"])
def test_a_dead_kernel_still_takes_the_lab_with_it(how):
    """Children are outside the kernel's process group, yet a SIGKILLed or shut-down kernel leaves none."""
    k = Kernel.start()
    try:
        k.ok(SETUP)
        pids = running_recorded(k.state)
        assert len(pids) == 2
        kernel_group = psutil.Process(k.pid).pid
        for pid in pids.values():  # the reason Interrupt no longer reaches them
            assert os.getpgid(pid) != kernel_group
        folder = k.ok("js = trashlab.Broker('js-store', jetstream=True).start()\nprint(js.store_dir)").text.strip()
        pids = running_recorded(k.state)
        assert len(pids) == 3 and os.path.isdir(folder)
        if how == "crash":
            k.kill()
        else:
            k.shutdown()
        assert not wait_gone(pids.values()), f"the lab outlived its {how}ed kernel"
        if how == "crash":  # the next start anywhere removes the dead kernel's temp folders (JetStream store too)
            trashlab.Broker(unique("next")).start().stop()
        top = Path(folder).parent
        assert top.name.startswith("trashlab-js-store-") and not top.exists(), f"{top} left behind by the {how}"
    finally:
        k.shutdown()
        shutil.rmtree(k.state, ignore_errors=True)


def test_a_broker_start_interrupted_leaves_no_half_started_server(monkeypatch):
    """■ while Broker.start() waits for nats-server to get ready: the half-started server goes too."""
    started = []
    real_launch = trashlab.Broker._launch

    def launch(self):
        ports_dir = real_launch(self)
        started.append(self._run.proc.pid)
        return ports_dir

    def interrupted(self, ports_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(trashlab.Broker, "_launch", launch)
    monkeypatch.setattr(trashlab.Broker, "_poll_ready", interrupted)
    broker = trashlab.Broker(unique("halfway"))
    with pytest.raises(KeyboardInterrupt):
        broker.start()
    assert started and not wait_gone(started), "an interrupted start left its nats-server running"
    assert not broker.running


def test_interrupt_during_an_import_waits_for_the_import(lab, tmp_path):
    """■ while a package imports (numpy, matplotlib on first use) must not leave it half imported."""
    (tmp_path / "slow_canary.py").write_text("import time\ntime.sleep(1.5)\nDONE = True\n")
    lab.ok(f"import sys\nsys.path.insert(0, {str(tmp_path)!r})")
    reply = interrupt_during(lab, "import slow_canary\ntime.sleep(30)")
    assert_one_line(reply, "Interrupted")
    assert "complete True" in lab.ok("print('complete', sys.modules['slow_canary'].DONE)").text
    assert_next_cell_works(lab)


def test_an_interrupt_after_the_cells_code_ended_is_dropped(lab):
    """■ landing when a plain cell's own code is over (held back by an import at the end of the cell, or
    pressed as it finishes) must not raise in ipykernel's code: ipykernel would catch it and never send the
    cell's reply, and JupyterLab would show the cell running forever."""
    handler = "import signal, sys\nh = signal.getsignal(signal.SIGINT)  # what a plain cell runs under\n"
    # in the cell's own code it interrupts ...
    assert_one_line(lab.run(handler + "h(signal.SIGINT, sys._getframe())", timeout=30), "Interrupted")
    # ... where no cell code runs (ipykernel's own code has no cell frame) it does nothing
    reply = lab.run(handler + "h(signal.SIGINT, None)\nprint('replied')", timeout=30)
    assert reply.status == "ok" and "replied" in reply.text, \
        reply.explain("an Interrupt outside the cell's code was not dropped", "status 'ok' and 'replied'")
    assert_next_cell_works(lab)


def _handler_after_the_cell(k: Kernel, code: str) -> str:
    """The SIGINT handler in force after the cell's code ended, while ipykernel builds the reply (user
    expressions are evaluated exactly there)."""
    msg_id = k.client.execute(code, allow_stdin=False,
                              user_expressions={"h": "getattr(__import__('signal').getsignal(2), '__name__', '?')"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = k.client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            expr = reply["content"]["user_expressions"]["h"]
            assert expr["status"] == "ok", expr
            return expr["data"]["text/plain"].strip("'")
    raise AssertionError(f"no reply to {code!r} within 60 s")


@pytest.mark.parametrize("cell", ["x = 1", "import asyncio\nawait asyncio.sleep(0)"], ids=["plain", "awaiting"])
def test_an_interrupt_after_the_cells_code_never_lands_in_ipykernel(cell):
    """ipykernel puts ``signal.default_int_handler`` back as soon as an awaiting cell's code ends, until its
    reply is sent: ■ in that moment raised in ipykernel, which logs "KeyboardInterrupt caught in kernel"
    and never sends the reply (CI: a 04 cell "did not finish within 60 s" after ■). With trashlab imported,
    SIGINT there is trashlab's guard, which drops it."""
    k = Kernel.start()
    try:
        k.ok("import trashlab\ntrashlab.Broker")  # the first public name a cell uses sets the kernel up
        handler = _handler_after_the_cell(k, cell)
        assert handler in ("_outside_cells", "hold_during_imports"), (
            f"after a {cell!r} cell ended, SIGINT goes to {handler!r}: an Interrupt there raises in ipykernel's "
            "own code and the cell's reply is lost")
        assert k.ok("print('still answering')").text.strip() == "still answering"
    finally:
        k.shutdown()


SLOW_KERNEL_SETUP = """
import sys, time
class _Slow:  # the import of trashlab's kernel set-up takes 3 s, so ■ surely lands inside it
    def find_spec(self, name, path=None, target=None):
        if name == "trashlab.notebook.kernel":
            print("importing the set-up", flush=True)
            time.sleep(3)
        return None
sys.meta_path.insert(0, _Slow())
import trashlab
"""


def test_an_interrupt_while_the_kernel_set_up_is_imported_shows_one_line():
    """The first public name a cell uses imports the kernel set-up (log lines, one-line errors); ■ during
    that import showed a plain KeyboardInterrupt traceback (CI: 02's first cell). It is held until the
    set-up is in place, then shown as the one ■ line."""
    k = Kernel.start()
    try:
        k.ok(SLOW_KERNEL_SETUP)
        msg_id = k.submit("trashlab.Broker")
        k.wait_output(msg_id, "importing the set-up")
        k.interrupt()
        reply = k.result(msg_id, timeout=60)
        assert reply.status == "error" and "Traceback" not in reply.text and "Interrupted" in reply.text, \
            reply.explain("■ during the set-up's import", "one line: '■ Interrupted: ...'")
        assert k.ok("print(trashlab.Broker.__name__)").text.strip() == "Broker"
    finally:
        k.shutdown()
