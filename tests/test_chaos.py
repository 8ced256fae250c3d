"""The chaos menu against real nats-server processes: each fault happens for real, is measured, and is undone."""

from __future__ import annotations

import asyncio

import nats
import pytest

import trashlab
import trashlab.servers.chaos
from conftest import unique


@pytest.fixture(scope="module")
def pair():
    """A 2-node cluster for the module; every test undoes its fault."""
    c = trashlab.Cluster(2, name=unique("chaos")).start()
    yield c
    c.stop()


async def count_on(url: str, subject: str) -> tuple:
    nc = await nats.connect(url, name="chaos-test")
    got = []

    async def keep(msg) -> None:
        got.append(msg)

    await nc.subscribe(subject, cb=keep)
    await nc.flush()
    return nc, got


async def publish(url: str, subject: str, n: int) -> None:
    nc = await nats.connect(url)
    for i in range(n):
        await nc.publish(subject, str(i).encode())
    await nc.flush()
    await nc.close()


async def test_drop_messages_loses_about_the_share_then_stops(broker):
    nc, got = await count_on(broker.url, "loss.test")
    try:
        broker.drop_messages("loss.test", 40)
        assert '"loss.test": [{destination: "loss.test", weight: 60%}]' in broker.config_text
        assert trashlab.servers.chaos.dropping(broker) == {"loss.test": 40.0}
        await publish(broker.url, "loss.test", 2000)
        await asyncio.sleep(0.3)
        lost = 2000 - len(got)
        assert 500 < lost < 1100, f"about 40 % of 2000 should be lost, lost {lost}"
        broker.stop_dropping()
        assert '"loss.test": [{destination: "loss.test", weight: 100%}]' in broker.config_text
        assert trashlab.servers.chaos.dropping(broker) == {}
        got.clear()
        await publish(broker.url, "loss.test", 500)
        await asyncio.sleep(0.3)
        assert len(got) == 500
        print(f"drop 40 %: {lost} of 2000 lost; after stop_dropping 500 of 500 arrived")
    finally:
        await nc.close()


async def test_reload_keeps_clients_connected(broker):
    nc, got = await count_on(broker.url, "reload.test")
    try:
        broker.drop_messages("other", 10)
        await publish(broker.url, "reload.test", 10)
        await asyncio.sleep(0.2)
        assert len(got) == 10 and nc.is_connected and nc.stats["reconnects"] == 0
    finally:
        await nc.close()
        broker.stop_dropping()


async def test_partition_cuts_the_routes_and_heal_joins_them(pair):
    first, second = pair.nodes.values()
    await pair.wait_formed()
    nc, got = await count_on(second.url, "part.test")
    try:
        await asyncio.sleep(0.3)  # the subscription reaches the first node through the route
        await publish(first.url, "part.test", 50)
        await asyncio.sleep(0.3)
        assert len(got) == 50
        pair.partition(first.name)
        assert pair.routes().empty, "no route may be left between the two sides"
        assert not pair.formed()
        got.clear()
        await publish(first.url, "part.test", 50)
        await asyncio.sleep(0.3)
        assert got == [], "across a partition nothing arrives"
        assert nc.is_connected  # clients stay on their node: they only stop hearing the other side
        pair.heal()
        await pair.wait_formed()
        await asyncio.sleep(0.3)
        await publish(first.url, "part.test", 50)
        await asyncio.sleep(0.3)
        assert len(got) == 50
    finally:
        await nc.close()
        pair.heal()


async def test_slow_consumer_client_side_drops(broker):
    sc = await trashlab.slow_consumer(broker, "slow.client", kind="client", delay=0.05, pending=10)
    try:
        await publish(broker.url, "slow.client", 500)
        await asyncio.sleep(0.5)
        assert sc.dropped > 0, "nats-py must report the messages it dropped"
        assert sc.received < 500
        print(f"client view: {sc}")
    finally:
        await sc.stop()


async def test_slow_consumer_server_cuts_it_off(broker):
    sc = await trashlab.slow_consumer(broker, "slow.server", kind="server")
    try:
        assert await sc.wait_cut_off(15), "the server must count a slow consumer and cut it off"
        assert sc.server_slow_consumers >= 1
        names = list(broker.connz()["name"])
        assert "slow-consumer" not in names
        print(f"server view: slow_consumers +{sc.server_slow_consumers}")
        assert 'write_deadline: "2s"' in broker.config_text
    finally:
        await sc.stop()
    assert "write_deadline" not in broker.config_text  # the server's default again


async def test_lame_duck_compared_with_a_kill(pair):
    kill = await trashlab.chaos_drill(pair, "kill", progress=False)
    duck = await trashlab.chaos_drill(pair, "lame_duck", progress=False)
    print(kill.summary())
    print(duck.summary())
    for r in (kill, duck):
        assert r.reconnect_s is not None, f"{r.mode}: the collector must move to the other node"
        assert r.moved_to != r.killed
        assert r.published > 100
    assert all(b.running for b in pair.nodes.values())  # undone: the node is back
    await pair.wait_formed()


async def quiet(e: Exception) -> None:
    pass


async def test_lame_duck_tells_clients_first(pair):
    told = asyncio.Event()

    async def ldm() -> None:
        told.set()

    nc = await nats.connect(pair.first.url, lame_duck_mode_cb=ldm, error_cb=quiet,
                            reconnect_time_wait=0.2)
    try:
        pair.lame_duck()
        await asyncio.wait_for(told.wait(), 5)
        for _ in range(100):  # after the 1 s grace period the server closes it; it moves to the other node
            if nc.is_connected and nc.connected_url.port != pair.first.port:
                break
            await asyncio.sleep(0.1)
        assert nc.connected_url.port != pair.first.port
        for _ in range(350):  # its clients gone, the lame duck leaves (at the latest when the 30 s end)
            if not pair.first.running:
                break
            await asyncio.sleep(0.1)
        assert not pair.first.running, "a lame duck exits by itself"
    finally:
        await nc.close()
        pair.first.kill()
        pair.restart()
        await pair.wait_formed()


async def test_drop_drill_measures_the_loss(pair):
    r = await trashlab.chaos_drill(pair, "drop", percent=50, run_after=1.0, progress=False)
    print(r.summary())
    assert r.lost > 0
    assert trashlab.servers.chaos.dropping(pair) == {}


async def test_step_down_keeps_the_stream_accepting():
    c = trashlab.Cluster(3, name=unique("chaosjs"), jetstream=True).start()
    try:
        r = await trashlab.chaos_drill(c, "step_down", progress=False)
        print(r.summary(), r.extra)
        assert r.extra["new_leader"] != r.extra["old_leader"]
        assert r.lost == 0, "acknowledged publishing loses nothing across an election"
        assert r.published > 100
    finally:
        c.stop()


async def test_partition_drill_loses_what_was_published_across_it(pair):
    r = await trashlab.chaos_drill(pair, "partition", run_after=1.0, progress=False)
    print(r.summary())
    assert r.lost > 50, "a second across a partition loses its messages (core NATS)"
    assert r.largest_gap_s > 0.5
    assert pair.formed()  # healed


async def test_an_interrupted_drill_leaves_no_fault_behind(pair):
    """A student presses Interrupt during the drill: the partition is healed all the same."""
    drill = asyncio.ensure_future(trashlab.chaos_drill(pair, "partition", run_after=5.0, progress=False))
    for _ in range(100):
        await asyncio.sleep(0.1)
        if any(b._routes_now is not None for b in pair.nodes.values()) and not pair.formed():
            break  # cut: the drill reloaded the configs and the routes are gone (under load that takes a moment)
    assert not pair.formed()
    drill.cancel()
    with pytest.raises(asyncio.CancelledError):
        await drill
    assert pair.formed() and all(b._routes_now is None for b in pair.nodes.values())


@pytest.mark.parametrize("kind", ["accounts", "class hub"])
async def test_a_server_side_slow_consumer_logs_in_where_the_broker_has_accounts(kind):
    """Without credentials an AccountsBroker or a ClassHub refuses the bare client: it logs in as the
    broker's first user (a hub's first student), and its publisher logs in to the same account."""
    from trashlab.servers.classroom import ClassHub

    b = trashlab.AccountsBroker(unique("slowacc")) if kind == "accounts" else ClassHub(2, name=unique("slowhub"))
    with b.start():
        sc = await asyncio.wait_for(trashlab.slow_consumer(b, "slow.acc", kind="server"), 60)
        try:
            assert await sc.wait_cut_off(15), f"the {kind} broker must count a slow consumer and cut it off: {sc}"
        finally:
            await sc.stop()
        assert "write_deadline" not in b.config_text


async def test_a_refused_slow_consumer_says_so_and_puts_the_write_deadline_back(broker):
    """A server that answers the login with -ERR and closes the socket (here: a control line longer
    than it allows): start() raises at once, closes its socket and restores the lowered deadline."""
    sc = trashlab.SlowConsumer(broker, "s" * 5000, kind="server")
    with pytest.raises(trashlab.BrokerError, match="did not let the slow consumer in") as caught:
        await asyncio.wait_for(sc.start(), 30)
    assert "write_deadline" not in broker.config_text, "a failed start left the broker's write deadline lowered"
    assert sc._sock is None
    assert caught.value.name == broker.name


class _SlowMonitor(trashlab.Broker):
    """A real broker whose monitoring port is reached through a proxy that can hang."""

    proxy = None

    @property
    def monitor_url(self) -> str:
        return self.proxy.url if self.proxy is not None else super().monitor_url


async def test_a_slow_consumer_never_waits_for_http_on_the_event_loop(monkeypatch):
    """Its HTTP requests (the server's slow-consumer count) run in a thread: while one hangs, the loop
    runs (a notebook's other cells, its dashboard). On the loop, the request would block it until it gave up."""
    from urllib.parse import urlsplit

    from holdproxy import HoldingProxy

    monkeypatch.setattr(trashlab.servers.chaos, "MONITOR_TIMEOUT", 120.0, raising=False)  # no give-up in this test

    with _SlowMonitor(unique("slowmon")).start() as b:
        real = urlsplit(b.monitor_url)
        b.proxy = HoldingProxy((real.hostname, real.port))
        try:
            starting = asyncio.ensure_future(trashlab.SlowConsumer(b, "slow.mon", kind="client").start())
            deadline = asyncio.get_running_loop().time() + 30
            while not b.proxy.held.is_set():
                assert asyncio.get_running_loop().time() < deadline, "the slow consumer never asked /varz"
                await asyncio.sleep(0.02)
            assert not b.proxy.gave_up.is_set(), "the event loop was blocked until the HTTP request gave up"
            b.proxy.release.set()
            sc = await asyncio.wait_for(starting, 30)
            await sc.stop()
        finally:
            b.proxy.close()
