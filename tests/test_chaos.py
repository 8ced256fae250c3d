"""The chaos menu against real nats-server processes: each fault happens for real, is measured, and is undone."""

from __future__ import annotations

import asyncio

import nats
import pytest

import trashlab
import trashlab.errors
import trashlab.servers.chaos
from conftest import eventually, has_interest, missing, unique


@pytest.fixture(scope="module")
def pair():
    """A 2-node cluster for the module; every test undoes its fault."""
    c = trashlab.Cluster(2, name=unique("chaos")).start()
    yield c
    c.stop()


class Inbox:
    """A plain subscriber on one node: the payloads that arrived on ``subject``, in order, and the end
    markers that arrived on ``subject.end``. Messages from one publisher reach one subscriber in order,
    so once a batch's end marker is in, every message of the batch that will ever arrive did."""

    def __init__(self, subject: str) -> None:
        self.subject, self.got, self.ends = subject, [], []
        self.nc = None

    async def start(self, url: str) -> "Inbox":
        self.nc = await nats.connect(url, name="chaos-test")

        async def keep(msg) -> None:
            (self.ends if msg.subject.endswith(".end") else self.got).append(msg.data.decode())

        await self.nc.subscribe(self.subject, cb=keep)
        await self.nc.subscribe(self.subject + ".end", cb=keep)
        await self.nc.flush()
        return self

    async def settled(self, batch: str) -> list:
        """Wait for the end marker of ``batch``; return the payloads of that batch that arrived."""
        await eventually(lambda: batch in self.ends, f"the end marker of batch {batch!r} on {self.subject}",
                         seen=lambda: f"markers {self.ends}, {len(self.got)} messages")
        return [p for p in self.got if p.startswith(batch + "-")]


async def publish(url: str, subject: str, n: int, batch: str) -> None:
    """``n`` messages ``batch-0`` ... on ``subject``, then the batch's end marker on ``subject.end``."""
    nc = await nats.connect(url)
    for i in range(n):
        await nc.publish(subject, f"{batch}-{i}".encode())
    await nc.publish(subject + ".end", batch.encode())
    await nc.flush()
    await nc.close()


def check_drill(r) -> None:
    """What any drill measured holds together: each reading arrived at most once and only readings that
    were published; what it calls lost is what was published and never arrived."""
    published, received = r.published_seqs, r.received_seqs
    assert len(received) == len(set(received)), f"{r.mode}: readings arrived twice: {missing(set(received), received)}"
    assert set(received) <= set(published), \
        f"{r.mode}: readings arrived that were never published: {sorted(set(received) - set(published))[:10]}"
    assert r.lost_seqs == sorted(set(published) - set(received)), \
        f"{r.mode}: the drill says lost {r.lost_seqs[:10]}, the seqs say {sorted(set(published) - set(received))[:10]}"


async def test_drop_messages_loses_about_the_share_then_stops(broker):
    inbox = await Inbox("loss.test").start(broker.url)
    try:
        broker.drop_messages("loss.test", 40)
        assert '"loss.test": [{destination: "loss.test", weight: 60%}]' in broker.config_text
        assert trashlab.servers.chaos.dropping(broker) == {"loss.test": 40.0}
        await publish(broker.url, "loss.test", 2000, "dropping")
        lost = 2000 - len(await inbox.settled("dropping"))
        # 40 % of 2000 at random: 800 on average, standard deviation 22; 500 and 1100 are 13 deviations away
        assert 500 < lost < 1100, f"about 40 % of 2000 should be lost, lost {lost}"
        broker.stop_dropping()
        assert '"loss.test": [{destination: "loss.test", weight: 100%}]' in broker.config_text
        assert trashlab.servers.chaos.dropping(broker) == {}
        await publish(broker.url, "loss.test", 500, "after")
        after = await inbox.settled("after")
        assert after == [f"after-{i}" for i in range(500)], \
            f"after stop_dropping every message arrives, in order: {missing([f'after-{i}' for i in range(500)], after)}"
        print(f"drop 40 %: {lost} of 2000 lost; after stop_dropping 500 of 500 arrived")
    finally:
        await inbox.nc.close()


async def test_reload_keeps_clients_connected(broker):
    inbox = await Inbox("reload.test").start(broker.url)
    nc = inbox.nc
    try:
        broker.drop_messages("other", 10)
        await publish(broker.url, "reload.test", 10, "reload")
        got = await inbox.settled("reload")
        assert got == [f"reload-{i}" for i in range(10)], f"a reload loses nothing: {got}"
        assert nc.is_connected and nc.stats["reconnects"] == 0, f"the client reconnected: {nc.stats}"
    finally:
        await nc.close()
        broker.stop_dropping()


async def test_partition_cuts_the_routes_and_heal_joins_them(pair):
    first, second = pair.nodes.values()
    await pair.wait_formed()
    inbox = await Inbox("part.test").start(second.url)
    nc = inbox.nc
    try:
        await has_interest(first, "part.test")  # the subscription reached the first node through the route
        await has_interest(first, "part.test.end")
        await publish(first.url, "part.test", 50, "before")
        before = await inbox.settled("before")
        assert len(before) == 50, f"before the partition: {missing([f'before-{i}' for i in range(50)], before)}"
        pair.partition(first.name)
        assert pair.routes().empty, "no route may be left between the two sides"
        assert not pair.formed()
        await publish(first.url, "part.test", 50, "across")  # no interest on the first node: dropped there
        assert nc.is_connected  # clients stay on their node: they only stop hearing the other side
        pair.heal()
        await pair.wait_formed()
        await has_interest(first, "part.test")
        await has_interest(first, "part.test.end")
        await publish(first.url, "part.test", 50, "healed")
        healed = await inbox.settled("healed")
        assert len(healed) == 50, f"after healing: {missing([f'healed-{i}' for i in range(50)], healed)}"
        across = [p for p in inbox.got if p.startswith("across-")]
        assert across == [] and "across" not in inbox.ends, \
            f"across a partition nothing arrives, not even later: {len(across)} did, e.g. {across[:5]}"
    finally:
        await nc.close()
        pair.heal()


async def test_slow_consumer_client_side_drops(broker):
    sc = await trashlab.servers.chaos.slow_consumer(broker, "slow.client", kind="client", delay=0.05, pending=10)
    try:
        await has_interest(broker, "slow.client")
        await publish(broker.url, "slow.client", 500, "slow")
        await eventually(lambda: sc.received + sc.dropped == 500, "each of the 500 messages handled or dropped",
                         seen=lambda: f"{sc.received} handled, {sc.dropped} dropped")
        assert sc.dropped > 0 and sc.received < 500, f"nats-py must report the messages it dropped: {sc}"
        print(f"client view: {sc}")
    finally:
        await sc.stop()


async def test_slow_consumer_server_cuts_it_off(broker):
    sc = await trashlab.servers.chaos.slow_consumer(broker, "slow.server", kind="server")
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
        check_drill(r)
        resumed = r.frame[(r.frame["published_t"] > r.reconnected_at) & r.frame["received_at"].notna()]
        assert len(resumed), f"{r.mode}: no reading published after the collector moved arrived: {r.summary()}"
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
        # after the 1 s grace period the server closes it; it moves to the other node
        await eventually(lambda: nc.is_connected and nc.connected_url.port != pair.first.port,
                         "the client moving off the lame duck", seen=lambda: f"connected to {nc.connected_url}")
        # its clients gone, the lame duck leaves (at the latest when its 30 s end)
        await eventually(lambda: not pair.first.running, "the lame duck exiting by itself", timeout=40)
    finally:
        await nc.close()
        pair.first.kill()
        pair.restart()
        await pair.wait_formed()


async def test_drop_drill_measures_the_loss(pair):
    r = await trashlab.chaos_drill(pair, "drop", percent=50, run_after=1.0, progress=False)
    print(r.summary())
    check_drill(r)
    assert r.lost > 0, f"half of the readings should be dropped: {r.summary()}"
    assert trashlab.servers.chaos.dropping(pair) == {}


async def test_step_down_keeps_the_stream_accepting():
    c = trashlab.Cluster(3, name=unique("chaosjs"), jetstream=True).start()
    try:
        r = await trashlab.chaos_drill(c, "step_down", progress=False)
        print(r.summary(), r.extra)
        assert r.extra["new_leader"] != r.extra["old_leader"]
        check_drill(r)
        assert sorted(r.received_seqs) == r.published_seqs, \
            f"acknowledged publishing loses nothing across an election: {missing(r.published_seqs, r.received_seqs)}"
    finally:
        c.stop()


async def test_partition_drill_loses_what_was_published_across_it(pair):
    r = await trashlab.chaos_drill(pair, "partition", run_after=1.0, progress=False)
    print(r.summary())
    check_drill(r)
    assert r.lost > 0, f"a second across a partition loses its messages (core NATS): {r.summary()}"
    sent_at = dict(zip(r.frame["seq"], r.frame["published_t"]))
    early = [s for s in r.lost_seqs if sent_at[s] < r.kill_at - 1.0]
    assert not early, f"readings published more than 1 s before the cut were lost: {early[:10]} ({r.summary()})"
    assert max(r.received_seqs) > max(r.lost_seqs), f"nothing arrived after the heal: {r.summary()}"
    # nothing arrives while the partition lasts (run_after=1.0 s at least): the gap spans it
    assert r.largest_gap_s > 0.5, f"largest gap between arrivals {r.largest_gap_s:.3f} s: {r.summary()}"
    assert pair.formed()  # healed


async def test_an_interrupted_drill_leaves_no_fault_behind(pair):
    """A student presses Interrupt during the drill: the partition is healed all the same."""
    drill = asyncio.ensure_future(trashlab.chaos_drill(pair, "partition", run_after=5.0, progress=False))
    # cut: the drill reloaded the configs and the routes are gone (under load that takes a moment)
    await eventually(lambda: any(b._routes_now is not None for b in pair.nodes.values()) and not pair.formed(),
                     "the drill cutting the routes", seen=lambda: f"routes:\n{pair.routes()}")
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
        sc = await asyncio.wait_for(trashlab.servers.chaos.slow_consumer(b, "slow.acc", kind="server"), 60)
        try:
            assert await sc.wait_cut_off(15), f"the {kind} broker must count a slow consumer and cut it off: {sc}"
        finally:
            await sc.stop()
        assert "write_deadline" not in b.config_text


async def test_a_refused_slow_consumer_says_so_and_puts_the_write_deadline_back(broker):
    """A server that answers the login with -ERR and closes the socket (here: a control line longer
    than it allows): start() raises at once, closes its socket and restores the lowered deadline."""
    sc = trashlab.servers.chaos.SlowConsumer(broker, "s" * 5000, kind="server")
    with pytest.raises(trashlab.errors.BrokerError, match="did not let the slow consumer in") as caught:
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
            starting = asyncio.ensure_future(trashlab.servers.chaos.SlowConsumer(b, "slow.mon", kind="client").start())
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
