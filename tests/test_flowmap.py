"""trashlab.FlowMap against real servers: what the map says about fan-out, queue groups, a killed node,
a client leaving and a JetStream stream; the still SVG; one map per target; the kernel's cost per refresh."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

import trashlab
from conftest import eventually, unique


def clients(fm) -> dict:
    return {c["name"]: c for c in fm.data["snapshot"]["clients"]}


def texts(fm) -> list:
    return [it["text"] for it in fm.data["picture"]["items"] if it["kind"] == "text"]


async def wait_for(check, timeout: float = 10.0) -> None:
    """Wait for what the map should show (the condition's source line is in the traceback)."""
    await eventually(check, "the map showing it", timeout)


@pytest.fixture
async def pair():
    c = trashlab.Cluster(2, name=unique("fm")).start()
    await c.wait_formed()
    yield c
    c.stop()


async def test_fan_out_queue_group_kill_and_leave(pair):
    first, second = pair.nodes.values()
    sim = await trashlab.Simulator(second.url, interval=0.01, name="sim").start()
    fan = [await trashlab.Collector(first.url, name="fan-a").start(),
           await trashlab.Collector(second.url, name="fan-b").start()]
    await trashlab.start_subscribers(2, first.url, queue="workers", prefix="worker")
    fm = trashlab.FlowMap(pair, refresh=0.3).start()
    try:
        await wait_for(lambda: fm.refreshes > 3 and clients(fm).get("fan-a", {}).get("out", 0) > 20)
        seen = clients(fm)
        assert {"sim", "fan-a", "fan-b", "worker-1", "worker-2"} <= set(seen)
        assert "trashlab-flowmap" not in seen  # the wiretap is not drawn
        assert seen["sim"]["lang"] == "python3"
        # fan-out: each plain subscriber gets every message; the queue group splits them
        rate = fm.data["snapshot"]["subjects"]["trash-level"]
        assert rate > 0, fm.data["snapshot"]["subjects"]  # rates compared with each other below, never with a clock
        fan_rates = [seen[n]["subs"][0]["rate"] for n in ("fan-a", "fan-b")]
        worker_rates = [seen[n]["subs"][0]["rate"] for n in ("worker-1", "worker-2")]
        assert all(r > 0.6 * rate for r in fan_rates), (fan_rates, rate)
        assert all(0 < r < 0.9 * rate for r in worker_rates), (worker_rates, rate)
        assert any(t.startswith("queue group 'workers'") for t in texts(fm))
        assert any(it["id"].startswith("p:") for it in fm.data["picture"]["items"]), "sim -> subject arrow"
        # a client leaving disappears
        await fan[1].stop()
        await wait_for(lambda: "fan-b" not in clients(fm))
        # a node killed turns red and its clients move to the survivor
        pair.kill(first.name)
        await wait_for(lambda: not fm.data["snapshot"]["servers"][0]["up"]
                       and all(c["server"] == second.name for c in clients(fm).values())
                       and {"fan-a", "worker-1", "worker-2"} <= set(clients(fm)))
        assert clients(fm)["fan-a"]["moved_from"] == first.name  # said on the map for a few seconds
        assert any(t.startswith(f"on {second.name} (was on {first.name})") for t in texts(fm))
        box = next(it for it in fm.data["picture"]["items"] if it["id"] == f"srv:{first.name}")
        assert box["stroke"] == trashlab.notebook.flowmap.DOWN and "down" in box["cls"]
        assert f"● {first.name}  DOWN" in texts(fm)
        svg = fm.svg()
        assert svg.startswith("<svg") and f"{first.name}  DOWN" in svg and "fan-a (python3)" in svg
        print(f"kernel cost per refresh {fm.last_kernel_seconds * 1000:.2f} ms, "
              f"poll (worker thread) {fm.last_poll_seconds * 1000:.1f} ms, {fm.refreshes} refreshes")
    finally:
        fm.stop()
        await trashlab.stop_subscribers()
        for c in fan:
            await c.stop()
        await sim.stop()
    assert not fm.running


async def test_stream_and_replicas_and_one_map_per_target():
    c = trashlab.Cluster(3, name=unique("fmjs"), jetstream=True).start()
    nc = None
    try:
        await c.wait_formed()
        nc = await nats.connect(c.urls[0], name="student")
        await nc.jetstream().add_stream(name="LEVELS", subjects=["levels.>"], num_replicas=3)
        await nc.jetstream().publish("levels.can1", b"42")
        old = trashlab.FlowMap(c, refresh=0.3).start()
        fm = trashlab.FlowMap(c, refresh=0.3).start()  # a re-run cell: the old map stops polling
        assert not old.running and fm.running
        again = trashlab.Cluster(3, name=c.name, jetstream=True)  # a re-run `cluster = ...` cell: same nodes
        assert again.nodes is c.nodes
        replacement = trashlab.FlowMap(again, refresh=0.3).start()
        assert replacement.running and not fm.running
        fm = replacement
        await wait_for(lambda: fm.data.get("snapshot", {}).get("streams"))
        st = fm.data["snapshot"]["streams"][0]
        assert st["name"] == "LEVELS" and st["messages"] == 1
        assert len({st["leader"], *st["replicas"]}) == 3
        assert any("JetStream stream LEVELS" in t and "R3" in t for t in texts(fm))
        assert "student" in clients(fm)
        moved = await c.step_down("LEVELS")  # the chaos menu's leader step-down: the ★ moves
        await wait_for(lambda: fm.data["snapshot"]["streams"][0]["leader"] == moved["new_leader"])
        assert any(f"★{moved['new_leader']}" in t for t in texts(fm))
        fm.pause()
        n = fm.refreshes
        await asyncio.sleep(1.0)  # not synchronisation: three refresh periods in which a paused map must not draw
        assert fm.refreshes == n and fm.paused, f"{fm.refreshes - n} refreshes while paused"
        fm.resume()
        await wait_for(lambda: fm.refreshes > n)

        def wiretaps() -> int:
            return sum(list(node.connz()["name"]).count("trashlab-flowmap") for node in c.nodes.values())

        assert wiretaps() == 1
        fm.stop()
        assert not fm.running
        await wait_for(lambda: wiretaps() == 0)  # stopped: its wiretap connection is closed too
    finally:
        if nc is not None:
            await nc.close()
        c.stop()


def test_wrong_target_is_one_line():
    with pytest.raises(trashlab.errors.BadArgument, match="FlowMap needs a trashlab.Broker or trashlab.Cluster"):
        trashlab.FlowMap(4222)
    with pytest.raises(trashlab.errors.BadArgument, match="no broker or cluster named 'nats://127.0.0.1:4222'"):
        trashlab.FlowMap("nats://127.0.0.1:4222")


def test_a_name_works_like_the_object(pair, broker):
    assert trashlab.FlowMap(pair.name).target is pair  # the cluster, not only its first node
    assert trashlab.FlowMap(broker.name).target is broker


async def quiet(e: Exception) -> None:
    pass


async def test_the_chaos_menu_shows_on_the_map(pair):
    first, second = pair.nodes.values()
    nc = await nats.connect(second.url, name="listener")
    await nc.subscribe("trash-level")
    await nc.flush()
    fm = trashlab.FlowMap(pair, wiretap=False)

    def shown() -> list:
        fm.data = {"picture": fm.layout(fm.snapshot())}
        return texts(fm)

    try:
        pair.drop_messages("trash-level", 30)
        assert any(t.startswith("trash-level") and "losing 30 %" in t for t in shown())
        pair.stop_dropping()
        assert not any("losing" in t for t in shown())
        pair.partition(first.name)
        assert "no route: partitioned" in shown()
        pair.heal()
        await pair.wait_formed()
        assert "no route: partitioned" not in shown()
        stayer = await nats.connect(first.url, name="stayer", error_cb=quiet)  # a lame duck with no client leaves at once
        pair.lame_duck(first.name)
        assert f"● {first.name}  LAME DUCK" in shown()  # draining: its clients are told to move
    finally:
        await nc.close()
        if "stayer" in locals():
            await stayer.close()
        first.kill()
        first.restart()
    assert f"● {first.name}  up" in shown()  # a new process: no longer a lame duck


def test_an_executed_notebook_keeps_a_still_picture(tmp_path):
    """Run in a real kernel (nbclient, no browser): the map's output carries a still SVG for front ends
    without widgets, and after ``fm.stop()`` the output is the SVG of its last state."""
    import os
    import sys

    import nbformat
    from nbclient import NotebookClient

    from sessions import ipc_kernel_manager

    name = unique("fmnb")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (
        f"import asyncio, trashlab\nbroker = trashlab.Broker({name!r}).start()\n"
        "col = await trashlab.Collector(broker.url, name='collector').start()",
        f"fm = trashlab.FlowMap({name!r}, refresh=0.2)\nfm",
        "await asyncio.sleep(1.5)\nprint(f'kernel ms per refresh: {fm.last_kernel_seconds * 1000:.2f}, refreshes {fm.refreshes}')",
        "fm.stop()\nawait col.stop()\nbroker.stop()")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent.parent),
                                                                    os.environ.get("PYTHONPATH")]))}
    env.pop("NATS_URL", None)
    client = NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.km = ipc_kernel_manager()
    client.execute(env=env)
    shown = nb.cells[1].outputs[0]["data"]
    assert "text/html" in shown and "<svg" in shown["text/html"] and "collector (python3)" in shown["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in shown, "stopped: the widget gave way to the still SVG"
    print(nb.cells[2].outputs[0]["text"].strip(), sys.version.split()[0])


async def test_a_slow_consumer_cut_off_shows_on_the_server(broker):
    fm = trashlab.FlowMap(broker, wiretap=False)
    sc = await trashlab.servers.chaos.slow_consumer(broker, "slow.map", kind="server")
    try:
        assert await sc.wait_cut_off(15)
        pic = fm.layout(fm.snapshot())
        detail = next(it["text"] for it in pic["items"] if it["id"] == f"srvd:{broker.name}")
        assert "slow 1" in detail
        assert "slow-consumer" not in {c["name"] for c in fm.snapshot()["clients"]}  # cut off: gone
    finally:
        await sc.stop()


async def test_an_accounts_broker_is_mapped_without_the_wiretap():
    b = trashlab.AccountsBroker(unique("fmacct")).start()
    nc = await nats.connect(b.url_for("gateway"), name="gateway")
    try:
        await nc.subscribe("trash-level")
        fm = trashlab.FlowMap(b, refresh=0.2).start()
        await wait_for(lambda: fm.refreshes > 4)
        assert "gateway" in clients(fm)
        assert fm._tap is None  # the wiretap has no account to log in to: no publish arrows, no crash
        fm.stop()
    finally:
        await nc.close()
        b.stop()


async def test_stop_everything_stops_the_map(broker):
    fm = trashlab.FlowMap(broker, refresh=0.2, wiretap=False).start()
    await wait_for(lambda: fm.refreshes > 1)
    trashlab.stop_everything(everywhere=False)
    assert not fm.running


def _report_connection(cid: int, delivered: int) -> dict:
    """A report service's connection as /connz?subs=detail shows it: ``trash-level``, three nats.micro
    endpoints (queue group ``q``) and the service's discovery subscriptions."""
    subs = [{"subject": "trash-level", "qgroup": "", "sid": "1", "msgs": delivered}]
    subs += [{"subject": f"trash-report.{e}", "qgroup": "q", "sid": f"e{e}", "msgs": delivered // 10}
             for e in ("levels", "level", "stats")]
    subs += [{"subject": f"$SRV.{verb}{tail}", "qgroup": "", "sid": f"{verb}{tail}", "msgs": 0}
             for verb in ("PING", "INFO", "STATS") for tail in ("", ".trash-report", f".trash-report.id{cid}")]
    return {"cid": cid, "name": "trash-report", "lang": "python3", "in_msgs": 0, "out_msgs": delivered,
            "pending_bytes": 0, "subscriptions_list_detail": subs}


def _sample(broker, delivered: int, in_msgs: int) -> dict:
    """One poll's answers from ``broker``, as :meth:`FlowMap._poll` returns them."""
    return {broker.name: {"up": True, "varz": {"in_msgs": in_msgs, "out_msgs": in_msgs}, "routez": {},
                          "connz": {"connections": [_report_connection(7, delivered), _report_connection(8, delivered)]}}}


def test_a_service_is_one_box_with_its_endpoints_and_rates_wait_for_two_samples(broker):
    """Fed samples (no servers polled, no clock): two instances of the report service are one box named
    as the service, its endpoints inside and no queue group; the first frame shows no rate, the second
    the rate between the two samples, a third too soon after keeps it."""
    fm = trashlab.FlowMap(broker, wiretap=False)
    first = fm.snapshot(_sample(broker, delivered=1000, in_msgs=5000), now=100.0)
    assert [s["in"] for s in first["servers"]] == [None], first["servers"]
    assert {c["service"] for c in first["clients"]} == {"trash-report"}
    pic = fm.layout(first)
    shown = [it["text"] for it in pic["items"] if it["kind"] == "text"]
    assert not any(t.startswith("queue group") for t in shown), shown
    services = [it for it in pic["items"] if it.get("cls") == "service"]
    assert [it["id"] for it in services] == ["svc:trash-report"], services
    assert "trash-report (python3) · service" in shown and "on %s · 2 instances" % broker.name in shown, shown
    assert {"endpoint trash-report.levels", "endpoint trash-report.level", "endpoint trash-report.stats",
            "listens to trash-level"} <= set(shown), shown
    assert not any("trash-report (python3)" == t for t in shown), "no client box besides the service's"
    detail = next(t for t in shown if t.startswith("2 clients"))
    assert "in …" in detail and "out …" in detail, detail  # one sample: no rate yet, never a made-up one
    rates = [it["text"] for it in pic["items"] if it["id"].startswith("e:") and it["id"].endswith(":r")]
    assert rates and set(rates) == {"…"}, rates

    second = fm.snapshot(_sample(broker, delivered=1200, in_msgs=5400), now=102.0)  # 2 s later
    assert second["servers"][0]["in"] == 200.0, second["servers"]
    svc = fm.services(second)[0]
    assert [c["key"] for c in svc["instances"]] == [f"{broker.name}:7", f"{broker.name}:8"]
    by_subject = {e["subject"]: e for e in svc["endpoints"]}
    assert by_subject["trash-level"]["rate"] == 200.0 and not by_subject["trash-level"]["endpoint"]  # 100/s each
    assert by_subject["trash-report.level"]["rate"] == 20.0 and by_subject["trash-report.level"]["endpoint"]

    too_soon = fm.snapshot(_sample(broker, delivered=1300, in_msgs=5410), now=102.01)  # 10 ms: measures nothing
    assert too_soon["servers"][0]["in"] == 200.0, too_soon["servers"]
    later = fm.snapshot(_sample(broker, delivered=1300, in_msgs=5600), now=103.0)
    assert later["servers"][0]["in"] == 200.0, "1 s after the second sample, not after the one too soon"


async def test_a_running_report_service_is_drawn_once(broker):
    rep = await trashlab.ReportService(broker.url).start()
    try:
        fm = trashlab.FlowMap(broker, wiretap=False)
        pic = fm.layout(fm.snapshot())
        ids = [it["id"] for it in pic["items"]]
        shown = [it["text"] for it in pic["items"] if it["kind"] == "text"]
        assert "svc:trash-report" in ids and not any(i.startswith("q:") for i in ids), ids
        assert {"endpoint trash-report.levels", "endpoint trash-report.level", "endpoint trash-report.stats"} <= set(shown), shown
    finally:
        await rep.stop()
