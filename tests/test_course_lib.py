"""What the notebooks rely on: accounts, processes like containers, clean-up, subscriber groups, ping, plots."""

from __future__ import annotations


import matplotlib
import pytest

import trashlab
from trashlab import plots

from conftest import eventually, unique

matplotlib.use("Agg")


async def test_accounts_isolate_trash_level():
    broker = await trashlab.AccountsBroker(unique("acct")).astart()
    try:
        iot = await trashlab.Collector(broker.url_for("report"), name="iot").start()
        office = await trashlab.Collector(broker.url_for("intern"), name="office").start()
        sim = await trashlab.Simulator(broker.url_for("gateway"), interval=0, count=200).start()
        await sim.wait(10)
        assert await iot.wait_for(200, timeout=15) == 200
        # a reading of the office's own account, published after the 200 were: once it is in, any of
        # the 200 that could reach the office would have (one server delivers to a connection in order)
        own = await trashlab.Simulator(broker.url_for("intern"), interval=0, count=1, name="office-own").start()
        await own.wait(10)
        await own.stop()
        assert await office.wait_for(1, timeout=15) == 1
        assert office.count == 1, f"the office account received {office.count - 1} of the gateway's readings"
        with pytest.raises(trashlab.errors.ConnectionFailed, match="refused the login"):
            await trashlab.Collector(broker.url, name="anonymous").start()
        await iot.stop(), await office.stop(), await sim.stop()
    finally:
        broker.stop()


def test_accounts_broker_rejects_unknown_users_and_empty_accounts():
    with pytest.raises(trashlab.errors.BadArgument):
        trashlab.AccountsBroker(unique("acct"), accounts={"IOT": {}})
    with pytest.raises(trashlab.errors.BadArgument, match="gateway"):
        trashlab.AccountsBroker(unique("acct")).account_of("nobody")


async def test_a_name_follows_a_broker_to_its_new_port():
    name = unique("moving")
    first = trashlab.Broker(name).start()
    old = trashlab.resolve(name)
    first.stop()
    second = trashlab.Broker(name).start()
    try:
        assert trashlab.resolve(name) == second.url != old
        col = await trashlab.Collector(name, name="by-name").start()
        assert col.connected_url == second.url.removeprefix("nats://")
        await col.stop()
    finally:
        second.stop()


async def test_spawned_processes_behave_like_containers(broker):
    rep = await trashlab.spawn_report(broker.name, name=unique("rep"))
    sim = await trashlab.spawn_simulator(broker.name, name=unique("sim"), interval=0.02)
    try:
        assert sim.tail(1)[0].startswith("publishing: {\"can_id\":")
        again = await trashlab.spawn_simulator(broker.name, name=sim.name, interval=0.02)
        assert again is sim  # re-running a cell does not start a second process
        rep.kill()
        before = sim.count
        watched = await trashlab.watch([sim, rep], seconds=0.5, every=0.1)
        assert watched["running"].tolist() == [True, False] and rep.returncode == -9, watched
        # the simulator does not care: it goes on publishing
        await eventually(lambda: sim.count > before, f"the simulator publishing past {before} after the kill",
                         seen=lambda: f"{sim.count}; its last lines {sim.tail(3)}")
        rep = await trashlab.spawn_report(broker.name, name=rep.name)
        stats: dict = {}

        async def counted() -> bool:
            stats.update(await trashlab.query_stats(broker.url))
            return stats["received"] > 0

        await eventually(counted, "the new report service receiving readings", seen=lambda: f"{stats}")
        table = trashlab.summary([sim, rep])
        assert table["running"].all() and (table["messages"] > 0).all()
    finally:
        trashlab.stop_spawned([sim, rep])
    assert not sim.alive and not rep.alive


async def test_spawn_fails_in_one_line_when_the_server_is_gone(broker):
    url = broker.url
    broker.stop()
    with pytest.raises(trashlab.errors.ServiceFailed, match="exited at start"):
        await trashlab.spawn_simulator(url, name=unique("sim"), timeout=20)


async def test_several_simulators_each_publish(broker):
    sims = await trashlab.spawn_simulators(2, broker.url, prefix=unique("many"), interval=0.02)
    try:
        assert [s.name.rsplit("-", 1)[1] for s in sims] == ["1", "2"]
        # a rate needs two messages (from the first to the last)
        await eventually(lambda: all(s.count > 1 for s in sims), "each simulator publishing twice",
                         seen=lambda: f"counts {[s.count for s in sims]}")
        assert all(s.rate > 0 for s in sims), [s.rate for s in sims]
    finally:
        trashlab.stop_spawned(sims)


async def test_process_table_and_stop_everything():
    broker = trashlab.Broker(unique("clean")).start()
    sim = await trashlab.spawn_simulator(broker.url, name=unique("sim"), interval=0.1)
    table = trashlab.process_table()
    assert {broker.pid, sim.pid} <= set(table["pid"])
    assert set(table[table["pid"] == sim.pid]["started_by"]) == {"this notebook"}
    stopped = trashlab.stop_everything()
    assert {broker.pid, sim.pid} <= set(stopped["pid"])
    assert trashlab.process_table().empty and not broker.running and not sim.alive


async def test_fan_out_versus_queue_group(broker):
    fans = await trashlab.start_subscribers(3, broker.url, prefix=unique("fan"))
    workers = await trashlab.start_subscribers(3, broker.url, queue="q", prefix=unique("worker"))
    again = await trashlab.start_subscribers(3, broker.url, queue="q", prefix=workers[0].name.rsplit("-", 1)[0])
    assert not workers[0].running  # the same prefix again replaces the group
    workers = again
    sim = await trashlab.Simulator(broker.url, interval=0, count=300).start()
    await sim.wait(10)
    assert await trashlab.wait_total(fans, 900) == 900
    assert await trashlab.wait_total(workers, 300) == 300
    table = trashlab.delivery_table({"fan-out": fans, "queue": workers}, 300)
    assert table[table.group == "fan-out"]["received"].tolist() == [300, 300, 300]
    assert table[table.group == "queue"]["received"].sum() == 300
    await trashlab.stop_subscribers()
    await sim.stop()


async def test_ping_by_name(broker):
    result = await trashlab.ping(broker.name)
    assert result["server_name"] == broker.name and result["resolves_to"] == broker.url
    assert result["best_ms"] > 0


def test_plots_leave_no_open_figure():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = plots.level_histogram([5.0, 15.0, 15.5, 99.0])
    assert sum(p.get_height() for p in fig.axes[0].patches) == 4
    import pandas as pd
    bar = plots.levels_bar(pd.DataFrame({"can_id": ["1", "2"], "level": [90.0, 10.0]}))
    assert [p.get_height() for p in bar.axes[0].patches] == [90.0, 10.0]
    counts = plots.counts_bar(pd.Series({"a": 3, "b": 5}), "t", expected=4)
    assert [p.get_height() for p in counts.axes[0].patches] == [3, 5]
    assert plt.get_fignums() == before


async def test_live_histogram_counts_what_arrived(broker, monkeypatch):
    col = await trashlab.Collector(broker.url).start()
    sim = await trashlab.Simulator(broker.url, interval=0.01).start()
    drawn_on = []
    real_figure = plots._figure
    monkeypatch.setattr(plots, "_figure", lambda *a: drawn_on.append(real_figure(*a)) or drawn_on[-1])
    await eventually(lambda: col.count > 0, "a first reading to draw", seen=lambda: col.stall_cause(1))
    assert await plots.live_histogram(col, seconds=0.5, every=0.1) is None
    await sim.stop()
    fig = drawn_on[0][0]
    drawn = sum(p.get_height() for p in fig.axes[0].patches)
    assert 0 < drawn <= col.count, f"drew {drawn} readings of {col.count} received"
    await col.stop()


def test_status_line_prints_only_the_result_outside_jupyter(capsys):
    line = trashlab._progress.StatusLine("starting")
    line.update("still starting")
    line.done("ready")
    assert capsys.readouterr().out == "ready\n"


def test_stop_everything_stops_a_cluster():
    """06-cleanup's promise: clusters (notebook 05) are stopped too."""
    cluster = trashlab.Cluster(2, name=unique("clu")).start()
    pids = {b.pid for b in trashlab.servers.broker.running_brokers()}
    assert len(pids) >= 2
    stopped = trashlab.stop_everything()
    assert pids <= set(stopped["pid"])
    assert not cluster.running and trashlab.process_table().empty
