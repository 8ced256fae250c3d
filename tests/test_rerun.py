"""Every cell safe to re-run, every stop quiet, every wait and message truthful: in a real kernel, as a student runs it."""

from __future__ import annotations

import shutil
import socket

import pytest

import trashlab
from conftest import unique
from kernels import Kernel, running_recorded

RERUNS = 3


@pytest.fixture(scope="module")
def kernel():
    """One kernel with a broker named iot-msg, for the whole module."""
    k = Kernel.start()
    try:
        k.ok("import asyncio, trashlab\nbroker = trashlab.Broker('iot-msg').start()")
        yield k
    finally:
        k.shutdown()
        shutil.rmtree(k.state, ignore_errors=True)


def connected(kernel: Kernel, name: str) -> int:
    """How many clients called ``name`` the broker sees connected now (its /connz)."""
    text = kernel.ok(f"print('connected:', (broker.connz()['name'] == {name!r}).sum() "
                     "if len(broker.connz()) else 0)").text
    return int(text.split("connected:")[1].split()[0])


def test_collector_and_dashboard_cells_run_three_times_leave_one_of_each(kernel):
    kernel.ok("sim = await trashlab.Simulator('iot-msg', interval=0.01).start()")
    for _ in range(RERUNS):
        kernel.ok("col = await trashlab.Collector('iot-msg').start()\nawait col.wait_for(5, timeout=10)")
        kernel.ok("dash = trashlab.LiveDashboard(col, renderer='image')\ndash")
    assert connected(kernel, "collector") == 1
    assert connected(kernel, "simulator") == 1
    # the replaced dashboards stop at their next refresh: wait (at most 15 s) until at most one runs
    text = kernel.ok("for _ in range(300):\n"
                     "    if sum(d.running for d in trashlab.LiveDashboard._running) <= 1:\n"
                     "        break\n"
                     "    await asyncio.sleep(0.05)\n"
                     "print('dashboards:', sum(d.running for d in trashlab.LiveDashboard._running))").text
    assert "dashboards: 1" in text
    kernel.ok("dash.stop()\nawait col.stop()\nawait sim.stop()")
    assert connected(kernel, "collector") == 0
    assert "dashboards: 0" in kernel.ok(
        "print('dashboards:', sum(d.running for d in trashlab.LiveDashboard._running))").text


def test_watcher_cell_run_three_times_then_stopped_leaves_the_table_empty(kernel):
    """02's watcher cell, run three times: its "the table is empty again" cell stays true."""
    for _ in range(RERUNS):
        kernel.ok("watcher = await trashlab.Collector('iot-msg', name='watcher').start()\nbroker.connz()")
    assert connected(kernel, "watcher") == 1
    kernel.ok("await watcher.stop()")
    assert connected(kernel, "watcher") == 0


def test_two_names_keep_two_clients(kernel):
    kernel.ok("a = await trashlab.Collector('iot-msg', name='a').start()\n"
              "b = await trashlab.Collector('iot-msg', name='b').start()")
    assert connected(kernel, "a") == 1 and connected(kernel, "b") == 1
    kernel.ok("await a.stop(); await b.stop()")


def test_delivery_table_shows_the_run_not_the_sum_of_runs(kernel):
    """08's cells: subscriber groups, then the simulation cell run three times."""
    for _ in range(RERUNS):
        kernel.ok("fans = await trashlab.start_subscribers(3, 'iot-msg', prefix='fan')\n"
                  "workers = await trashlab.start_subscribers(3, 'iot-msg', queue='reporters', prefix='worker')")
    assert connected(kernel, "fan-1") == 1 and connected(kernel, "worker-3") == 1
    for _ in range(RERUNS):
        text = kernel.ok("""
sim = await trashlab.Simulator("iot-msg", interval=0.002, count=300).start()
await sim.wait(timeout=20)
await trashlab.wait_total(fans, 3 * sim.published, since=sim)
await trashlab.wait_total(workers, sim.published, since=sim)
table = trashlab.delivery_table({"fan-out": fans, "queue group": workers}, sim)
print("fan shares", sorted(set(table[table.group == "fan-out"].share_of_published)))
print("queue total", table[table.group == "queue group"].received.sum(), "of", sim.published)
""").text
        assert "fan shares [1.0]" in text, text
        assert "queue total 300 of 300" in text, text
    kernel.ok("await trashlab.stop_subscribers()")
    assert connected(kernel, "fan-1") == 0


def test_add_node_cell_run_three_times_adds_one_node(kernel):
    text = kernel.ok("cluster = trashlab.Cluster(size=1, name='rerun-msg').start()\n" + "\n".join(
        ["second = cluster.add_node()"] * RERUNS) + "\nawait cluster.wait_formed()\nprint('nodes', sorted(cluster.nodes))"
    ).text
    assert "nodes ['rerun-msg', 'rerun-msg2']" in text
    kernel.ok("cluster.stop()")


def test_stop_never_raises_when_the_server_is_gone(kernel):
    reply = kernel.ok("""
lone = trashlab.Broker('lone').start()
sim = await trashlab.Simulator('lone', interval=0.01, name='lone-sim').start()
rep = await trashlab.ReportService('lone', name='lone-rep').start()
c = await trashlab.Collector('lone', name='lone-col').start()
await asyncio.sleep(0.3)  # the scenario, not synchronisation: traffic flows a moment, then the broker dies
lone.kill()
await asyncio.sleep(0.3)  # ... and the clients stop while disconnected, noticed or not: both must work
await sim.stop(); await rep.stop(); await c.stop()
print('stopped', sim.running, rep.running, c.running)
""")
    assert "stopped False False False" in reply.text
    news = [ln for ln in reply.text.splitlines() if ln.startswith("trashlab")]
    assert len(news) <= 3, f"more than one line per client: {news}"  # at most: lost the connection


def test_clean_up_works_whatever_ran_before(kernel):
    kernel.ok("c = await trashlab.Collector('iot-msg', name='left-over').start()\n"
              "s = await trashlab.Simulator('iot-msg', interval=0.05, name='left-sim').start()\n"
              "p = await trashlab.spawn_simulator('iot-msg', name='left-proc', interval=0.1)")
    first = kernel.ok("trashlab.stop_everything()")
    # not synchronisation: 1.5 s in which a wrongly stopped client would print connection news
    later = kernel.ok("await asyncio.sleep(1.5)\nprint('left', len(trashlab.process_table()), c.running, s.running)")
    assert "left 0 False False" in later.text
    for out in (first.text, later.text):
        assert "lost the connection" not in out and "disconnected" not in out, out
    kernel.ok("trashlab.stop_everything()")  # again, with nothing left
    assert not running_recorded(kernel.state)
    kernel.ok("broker = trashlab.Broker('iot-msg').start()")  # the module's other tests go on


def test_a_wait_that_gives_up_says_why_in_one_line(kernel):
    reply = kernel.ok("col = await trashlab.Collector('iot-msg', name='early').start()\n"
                      "await col.wait_for(10, timeout=1)\ncol.frame()")
    lines = [ln for ln in reply.text.splitlines() if "gave up" in ln]
    assert len(lines) == 1, reply
    assert "no simulator runs in this notebook" in lines[0]
    reply = kernel.ok("await trashlab.wait_total([col], 5, timeout=0.5)")
    assert "gave up after" in reply.text and "no simulator runs" in reply.text
    # a check run before its exercise cell says what to run, no library traceback
    reply = kernel.run("from trashlab import checks\nawait checks.check_client_names(None, broker)")
    (ename, evalue, lines), = reply.errors
    assert ename == "CheckFailed" and len(lines) == 1 and "has no answer yet" in evalue, reply
    kernel.ok("await col.stop()")


@pytest.mark.quick
@pytest.mark.parametrize("data", [None, "empty", "no columns", 5])
def test_checks_never_show_a_library_traceback_for_missing_data(data):
    import asyncio
    import inspect

    import pandas as pd
    from trashlab import checks

    value = {"empty": pd.DataFrame({"can_id": [], "level": [], "received_at": []}),
             "no columns": pd.DataFrame()}.get(data, data)
    answers = {"make_payload", "count_readings", "fraction_full", "ask_level", "gap_seconds", "client_names",
               "total_deliveries"}
    for name in [n for n in dir(checks) if n.startswith("check_")]:
        fn = getattr(checks, name)
        if inspect.iscoroutinefunction(fn):
            continue  # the live checks of 02-04 run the student's NATS code against a broker: test_course_checks
        params = [p for p in inspect.signature(fn).parameters.values() if p.default is inspect.Parameter.empty]
        args = [(lambda *a: 0) if p.name in answers else "the answer" if p.name == "what" else value for p in params]
        try:
            result = fn(*args)  # passing is fine (check_equal(5, 5, 5)); any error but a ✘ line is not
            if inspect.iscoroutine(result):  # the live checks of 05-08: the same, awaited
                asyncio.run(result)
        except trashlab.errors.CheckFailed as e:
            assert "\n" not in str(e).strip(), f"{name}: more than one line: {e}"


def test_a_spawned_simulator_that_fails_at_start_is_reported_as_failed(kernel):
    reply = kernel.run("await trashlab.spawn_simulator('iot-msg', name='huge', cans=10**400)", timeout=60)
    assert reply.status == "error", reply
    (ename, evalue, lines), = reply.errors
    assert ename == "ServiceFailed" and len(lines) == 1, reply
    assert "stopped publishing" in evalue and "too large" in evalue
    assert "Traceback" not in reply.text


def test_connection_news_lands_in_the_running_cell(kernel):
    creator = kernel.submit("col = await trashlab.Collector('iot-msg', name='newsy').start()")
    assert kernel.result(creator).status == "ok"
    # the broker stays down a second (the outage under test); then the cell waits for the reconnection's
    # news line (at most 20 s) instead of sleeping
    reply = kernel.ok("import logging\nnews = []\nheard = logging.Handler()\n"
                      "heard.emit = lambda record: news.append(record.getMessage())\n"
                      "logging.getLogger('trashlab').addHandler(heard)\n"
                      "broker.kill()\nawait asyncio.sleep(1)\nbroker.restart()\n"
                      "for _ in range(400):\n"
                      "    if any('newsy' in m and 'reconnected' in m for m in news):\n"
                      "        break\n"
                      "    await asyncio.sleep(0.05)\n"
                      "logging.getLogger('trashlab').removeHandler(heard)\n"
                      "print('back on', col.connected_url)")
    lost = [ln for ln in reply.text.splitlines() if "newsy" in ln and ("lost" in ln or "disconnected" in ln)]
    back = [ln for ln in reply.text.splitlines() if "newsy" in ln and "reconnected" in ln]
    assert len(lost) == 1 and len(back) == 1, reply.text
    assert "newsy" not in kernel.outputs_of(creator).text, "news went to the cell that created the client"
    # news is plain output (stdout), not a red stderr box that looks like an error
    on_stderr = [o["content"]["text"] for o in reply.outputs
                 if o["msg_type"] == "stream" and o["content"]["name"] == "stderr"]
    assert not any("newsy" in t for t in on_stderr), reply.explain(
        "connection news was written to stderr (Jupyter shows it in a red box)", "both lines on stdout")
    # a problem that is not news still goes to stderr
    warned = kernel.ok("logging.getLogger('trashlab').warning('trashlab: a real problem')")
    assert [o["content"]["name"] for o in warned.outputs if o["msg_type"] == "stream"] == ["stderr"], warned.explain(
        "a trashlab warning that is not news left stderr", "one stderr output")
    kernel.ok("await col.stop()")


@pytest.mark.quick
async def test_query_with_no_time_to_answer_is_a_clear_error():
    with pytest.raises(trashlab.errors.BadArgument, match="timeout=0"):
        await trashlab.query_levels("nats://127.0.0.1:4222", timeout=0)


async def test_clients_follow_a_broker_that_comes_back_on_another_port():
    """In-process clients and spawned processes follow a broker restarted under its name on a new port."""
    name = unique("moved")
    b = trashlab.Broker(name).start()
    col = await trashlab.Collector(name, name=unique("follow")).start()
    spawned = await trashlab.spawn_simulator(name, name=unique("follow-sim"), interval=0.02)
    old = b.port
    b.kill()
    squatter = socket.socket()  # someone else took the old port meanwhile
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the old connections' TIME_WAIT
    squatter.bind(("127.0.0.1", old))
    squatter.listen()
    b2 = trashlab.Broker(name)
    try:
        b2.start()
        assert b2.port != old
        before = col.count
        assert await col.wait_for(before + 5, timeout=15) >= before + 5, \
            "the collector never got readings from the spawned simulator at the broker's new port"
        assert col.connected_url == f"127.0.0.1:{b2.port}"
        assert spawned.alive and f"127.0.0.1:{b2.port}" in spawned.env["NATS_URL"]
    finally:
        squatter.close()
        spawned.stop()
        await col.stop()
        b2.stop()
