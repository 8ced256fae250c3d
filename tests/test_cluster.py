"""Clusters of real nats-server processes: routes form, clients fail over, nothing is left behind."""

import asyncio
import os
import signal
import subprocess
import sys

import psutil
import pytest

import trashlab
import trashlab.servers.connection
from conftest import eventually, missing, record_seqs, unique


@pytest.fixture(scope="module")
def pair():
    """A 2-node cluster, like the lab's iot-msg + iot-msg2."""
    c = trashlab.Cluster(2, name=unique("c")).start()
    asyncio.run(c.wait_formed())
    yield c
    c.stop()


async def test_two_nodes_route_to_each_other(pair):
    names = list(pair.nodes)
    assert names == [pair.name, pair.name + "2"]
    assert len(pair.urls) == 2
    table = pair.routes()
    assert set(zip(table["node"], table["remote"])) == {(names[0], names[1]), (names[1], names[0])}
    # nats-server >= 2.10: 3 pooled routes per peer plus one for the system account
    summary = pair.route_summary()
    assert list(summary["pooled"]) == [3, 3] and list(summary["system account"]) == [1, 1]
    assert pair.formed()


async def test_route_url_is_the_labs_form(pair):
    first = pair.first
    assert first.route_url == f"nats-route://ruser:T0pS3cr3t@127.0.0.1:{first.cluster_port}"
    assert "my_cluster" in first.config_text and first.command[1:2] == ["--config"]


async def test_client_given_one_url_discovers_the_other(pair):
    nc = await trashlab.servers.connection.connect(pair.first.url)
    try:
        discovered = {u.port for u in nc.discovered_servers}
    finally:
        await nc.close()
    assert discovered == {pair.nodes[pair.name + "2"].port}


async def test_rerunning_the_cell_reuses_the_nodes(pair):
    pids = {n: b.pid for n, b in pair.nodes.items()}
    again = trashlab.Cluster(2, name=pair.name).start()
    assert {n: b.pid for n, b in again.nodes.items()} == pids


async def test_subscriber_continues_on_another_node_when_its_node_is_killed(pair):
    second = pair.nodes[pair.name + "2"]
    col = await trashlab.Collector(pair.first.url, subject="kill-test", name="kill-col").start()
    sim = await trashlab.Simulator(second.url, subject="kill-test", interval=0.005, sequence=True).start()
    try:
        assert await col.wait_for(50, timeout=10) >= 50
        assert pair.node_of(col.connected_url) == pair.name
        pair.kill()  # the first node, where the collector is
        before = col.count
        assert await col.wait_for(before + 100, timeout=10) >= before + 100
        assert pair.node_of(col.connected_url) == pair.name + "2"
    finally:
        await sim.stop()
        await col.stop()
        pair.first.restart()
        await pair.wait_formed()
    assert pair.first.running and pair.formed()


def check_core_drill(result, witness: list, witness_node: str) -> None:
    """A core drill against its witness (every reading that reached ``witness_node``, which survived):
    the drill counted what was published, the collector got each reading at most once and nothing the
    witness did not see, and what it lost was in flight around the kill, nothing after the reconnect."""
    published = result.published_seqs
    received = result.received_seqs
    summary = result.summary()
    assert published == list(range(1, result.published + 1)), \
        f"the simulator numbers its readings 1..{result.published}: {missing(range(1, result.published + 1), published)}"
    assert len(received) == len(set(received)), \
        f"core NATS delivers at most once, but the collector got {missing(set(received), received)} ({summary})"
    assert set(received) <= set(witness), \
        f"the collector got readings that never reached {witness_node}: {sorted(set(received) - set(witness))[:10]}"
    lost = sorted(set(published) - set(received))
    assert result.lost_seqs == lost and result.received == len(received), \
        f"the drill reports {result.lost} lost {result.lost_seqs[:10]}, the seqs say {len(lost)} lost {lost[:10]}"
    assert result.reconnect_s is not None and result.reconnect_s < 2, f"no failover within 2 s: {summary}"
    assert published[-1] in received, \
        f"the last reading ({published[-1]}) never reached the collector: it did not subscribe again ({summary})"
    sent_at = dict(zip(result.frame["seq"], result.frame["published_t"]))
    outside = [s for s in lost if not result.kill_at - 1.0 <= sent_at[s] <= result.reconnected_at + 1.0]
    assert not outside, (f"lost readings published more than 1 s away from the failover (kill at "
                         f"{result.kill_at:.3f} s, reconnected at {result.reconnected_at:.3f} s): "
                         f"{[(s, round(sent_at[s], 3)) for s in outside[:10]]}")
    arrivals = sorted(result.frame["received_at"].dropna())
    gap = max(b - a for a, b in zip(arrivals, arrivals[1:]))
    assert abs(gap - result.largest_gap_s) < 1e-6 and result.largest_gap_s < 2.0, \
        (f"largest gap between arrivals: {result.largest_gap_s:.3f} s reported, {gap:.3f} s on the timeline "
         f"(a failover that works stays well under 2 s: {summary})")


async def test_core_drill_loses_only_what_was_in_flight_and_each_reading_arrives_once(pair):
    subject = unique("drill")
    second = pair.nodes[pair.name + "2"]
    nc, witness = await record_seqs(second.url, subject)  # on the simulator's node, which stays up
    try:
        result = await trashlab.failover_drill(pair, rate=200, kill_after=1.0, run_after=1.0, subject=subject,
                                               progress=False)
        await eventually(lambda: len(witness) >= result.published,
                         f"the witness on {second.name} receiving the {result.published} readings published",
                         seen=lambda: missing(result.published_seqs, witness))
    finally:
        await nc.close()
    assert result.mode == "core" and result.killed == pair.name and result.moved_to == second.name, result.summary()
    assert witness == result.published_seqs, \
        f"what reached {second.name} vs what the drill says it published: {missing(result.published_seqs, witness)}"
    check_core_drill(result, witness, second.name)
    fig = result.plot()
    assert len(fig.axes) == 2
    assert any(line.get_label() == f"kill {pair.name}" for line in fig.axes[0].get_lines())
    assert pair.first.running  # restored for the next run
    table = trashlab.compare_drills(result)
    assert table.loc["core", "published"] == result.published


async def test_a_node_added_with_the_labs_literal_routes_url_joins(pair):
    port = pair.first.cluster_port
    name = unique("hand")
    node = trashlab.Broker(name, routes=[f"nats-route://ruser:T0pS3cr3t@127.0.0.1:{port}"]).start()
    try:
        await eventually(lambda: name in set(pair.routes()["remote"]), f"a route from the cluster to {name}",
                         seen=lambda: sorted(set(pair.routes()["remote"])))
    finally:
        node.stop()


async def test_wait_formed_is_bounded_and_says_why():
    c = trashlab.Cluster(1, name=unique("lone")).start()
    stray = trashlab.Broker(unique("stray")).start()  # not routed to anything
    c.nodes[stray.name] = stray
    try:
        with pytest.raises(trashlab.errors.ClusterNotFormed, match=f"has no route to {stray.name}"):
            await c.wait_formed(timeout=0.5, progress=False)
    finally:
        c.stop()
    assert not stray.running


async def test_three_nodes_and_one_more_at_runtime():
    with trashlab.Cluster(3, name=unique("tri")) as c:
        await c.wait_formed()
        assert len(c.urls) == 3
        node = c.add_node()
        assert node.name == c.name + "4"
        assert node.routes == [c.first.route_url]  # the lab's way: one route to a running node
        await c.wait_formed()
        table = c.routes()
        assert set(table.loc[table["node"] == node.name, "remote"]) == {c.name, c.name + "2", c.name + "3"}
        pids = [b.pid for b in c.nodes.values()]
    assert not any(psutil.pid_exists(p) for p in pids)


def test_bad_size_is_one_clear_line():
    with pytest.raises(trashlab.errors.BadArgument, match="size=0"):
        trashlab.Cluster(0)


def test_cli_cluster_prints_urls_and_stops_on_ctrl_c(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TRASHLAB_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-u", "-m", "trashlab", "cluster", "--size", "2", "--name",
                             unique("cli")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not (lines and lines[-1].startswith("servers:")) and len(lines) < 20:
            lines.append(proc.stdout.readline())  # node lines (and maybe "waiting for ..."), then servers:
        nodes = [ln for ln in lines if ln.split(":")[0].startswith("cli-")]
        assert len(nodes) == 2 and all(ln.split(": ")[1].startswith("nats://127.0.0.1:") for ln in nodes)
        assert lines[-1].startswith("servers: nats://127.0.0.1:") and lines[-1].count("nats://") == 2
        servers = [c for c in psutil.Process(proc.pid).children() if c.name() == "nats-server"]
        assert len(servers) == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        gone, alive = psutil.wait_procs(servers, timeout=5)
        assert not alive
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_drill_can_kill_the_simulators_node_instead(pair):
    subject = unique("drill")
    nc, witness = await record_seqs(pair.first.url, subject)  # beside the collector, on the node that stays up
    try:
        result = await trashlab.failover_drill(pair, kill="simulator", kill_after=0.5, run_after=0.5, subject=subject,
                                               progress=False)
        last = result.published_seqs[-1] if result.published_seqs else None
        await eventually(lambda: last in witness, f"the witness on {pair.first.name} receiving the last reading "
                         f"({last})", seen=lambda: missing(result.published_seqs, witness))
    finally:
        await nc.close()
    assert result.killed == pair.name + "2" and result.client == "simulator"
    assert result.moved_to == pair.name
    assert sorted(result.received_seqs) == sorted(witness), \
        f"the collector vs a witness on the same node: {missing(witness, result.received_seqs)}"
    check_core_drill(result, witness, pair.first.name)
    assert all(b.running for b in pair.nodes.values())


async def test_astart_leaves_the_event_loop_free_while_the_nodes_start(monkeypatch):
    """``await Cluster.astart()`` starts node after node without blocking the loop: a task running beside it
    sees the first node up while the cluster is still starting (a blocking start() never lets it run then).

    The second node is made to answer "not ready yet" three times: on a busy machine a node may be ready at
    the first look, and then nothing needs waiting for (CI once saw both nodes up at the task's first run)."""
    from trashlab.servers.broker import Broker

    c = trashlab.Cluster(2, name=unique("astart"))
    seen = []
    real, looks = Broker._poll_ready, {"second": 0}

    def second_node_slow(self, ports_dir):
        if self.name == c.name + "2" and looks["second"] < 3:
            looks["second"] += 1
            return False
        return real(self, ports_dir)

    monkeypatch.setattr(Broker, "_poll_ready", second_node_slow)

    async def look() -> None:
        while True:
            up = [b.name for b in trashlab.servers.broker.running_brokers() if b.name in (c.name, c.name + "2")]
            seen.append((up, list(c.nodes)))
            await asyncio.sleep(0.001)

    looking = asyncio.ensure_future(look())
    try:
        assert await c.astart() is c
        assert c.formed() and all(b.running for b in c.nodes.values())
    finally:
        looking.cancel()
        c.stop()
    midway = [s for s in seen if s[0] == [c.name] and not s[1]]
    assert midway, f"never saw the first node up with the cluster still starting; saw {seen[:3]} ... {seen[-3:]}"


async def test_waiting_for_a_subscription_to_reach_a_node_leaves_the_loop_free(pair, monkeypatch):
    """The failover drill waits until the other node knows of the collector's subscription by asking its
    /routez: from a thread, so the drill's loop (its publisher, its collector) runs meanwhile."""
    from types import SimpleNamespace
    from urllib.parse import urlsplit

    from holdproxy import HoldingProxy

    from trashlab.course import failover

    monkeypatch.setattr(failover, "MONITOR_TIMEOUT", 120.0, raising=False)  # no give-up in this test
    first, second = pair.nodes.values()
    real = urlsplit(second.monitor_url)
    proxy = HoldingProxy((real.hostname, real.port))
    subject = unique("interest")
    nc = await trashlab.servers.connection.connect(first.url)
    try:
        await nc.subscribe(subject)
        await nc.flush()
        node = SimpleNamespace(name=second.name, monitor_url=proxy.url)  # the second node, seen through a hanging link
        waiting = asyncio.ensure_future(failover._interest_reached(node, subject, timeout=60))
        deadline = asyncio.get_running_loop().time() + 30
        while not proxy.held.is_set():
            assert asyncio.get_running_loop().time() < deadline, "the drill never asked the node's /routez"
            await asyncio.sleep(0.02)
        assert not proxy.gave_up.is_set(), "the event loop was blocked until the HTTP request gave up"
        proxy.release.set()
        await asyncio.wait_for(waiting, 60)
    finally:
        proxy.close()
        await nc.close()
