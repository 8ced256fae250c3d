"""One lifecycle for the NATS components: the same verbs, the same counters, against a real broker."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pandas as pd
import pytest

import trashlab
from conftest import eventually
from trashlab._progress import wait_until
from trashlab.servers.monitor import fetch
from trashlab.services.kvlevels import KVLevels
from trashlab.services.lifecycle import NatsComponent
from conftest import unique


@pytest.mark.parametrize("make", [
    lambda url: trashlab.Simulator(url, subject="life.a", interval=0.05),
    lambda url: trashlab.Collector(url, subject="life.a"),
    lambda url: trashlab.ReportService(url, subject="life.a", name="life-report"),
], ids=["simulator", "collector", "report"])
async def test_every_component_starts_once_reports_where_it_is_and_stops(shared_broker, make):
    comp = make(shared_broker.url)
    assert isinstance(comp, NatsComponent) and not comp.running and comp.connected_url is None
    assert await comp.start() is comp
    first = comp._nc
    assert await comp.start() is comp and comp._nc is first  # a second start is a no-op, not a 2nd connection
    assert comp.running and comp.connected_url == shared_broker.url.split("//")[1]
    assert comp.resolved is not None and comp.resolved.urls == (shared_broker.url,)
    await comp.stop()
    assert not comp.running and comp._nc.is_closed
    async with make(shared_broker.url) as again:
        assert again.running
    assert not again.running


async def test_rejected_is_a_table_and_rejected_count_a_number_on_every_reader(shared_broker):
    col = await trashlab.Collector(shared_broker.url, subject="life.b").start()
    rep = await trashlab.ReportService(shared_broker.url, subject="life.b", name="life-b").start()
    nc = await trashlab.servers.connection.connect(shared_broker.url)
    for payload in (b'{"can_id":"1", "level":"5"}', b"not json"):
        await nc.publish("life.b", payload)
    await nc.flush()
    await nc.close()
    await eventually(lambda: all(r.received + r.rejected_count >= 2 for r in (col, rep)),
                     "the collector and the report service each taking both messages",
                     seen=lambda: f"received/rejected: collector {col.received}/{col.rejected_count}, "
                                  f"report {rep.received}/{rep.rejected_count}")
    await rep.stop()
    assert await col.stop() is None  # what happened is an attribute (docs/architecture.md)
    for reader in (col, rep):
        assert reader.received == 1 and reader.rejected_count == 1 and dict(reader.reasons) == {"not-json": 1}
        assert isinstance(reader.rejected, pd.DataFrame) and list(reader.rejected["payload"]) == [b"not json"]
    assert col.count == col.received  # the old spelling stays
    assert rep.stats()["rejected"] == 1


async def test_stop_ends_a_publish_loop_even_if_a_cancellation_is_swallowed(shared_broker):
    class Stubborn(trashlab.Simulator):
        async def _publish(self, payload: bytes) -> None:
            try:
                await asyncio.sleep(0.01)  # a slow publish, where the cancellation lands (under test)
            except asyncio.CancelledError:
                pass  # what nats-py sometimes does: the cancellation turns into something else
            await super()._publish(payload)

    sim = await Stubborn(shared_broker.url, subject="life.c", interval=0).start()
    await eventually(lambda: sim.published > 0, "the stubborn simulator publishing")
    assert await asyncio.wait_for(sim.stop(), 10) is None
    assert not sim.running and sim.published > 0


# ----- a start that fails or is interrupted leaves nothing running ---------------------------------
async def _tasks_left(before: set, timeout: float = 10.0) -> "list[str]":
    """The tasks started since ``before`` that are still running after at most ``timeout`` s (a stopping
    task may need a moment to end), described by name and coroutine."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    deadline = loop.time() + timeout
    while True:
        left = [t for t in asyncio.all_tasks() if t not in before and t is not me and not t.done()]
        if not left or loop.time() > deadline:
            return [f"{t.get_name()} ({getattr(t.get_coro(), '__qualname__', t.get_coro())})" for t in left]
        await asyncio.sleep(0.05)


class _StoreThenStuck(KVLevels):
    """A real JetStream level store; once it is open (its tasks run), the start fails or waits forever."""

    def __init__(self, how: str) -> None:
        super().__init__(bucket=unique("life-kv"))
        self.how = how
        self.opened = asyncio.Event()

    async def open(self, nc) -> None:
        await super().open(nc)
        self.opened.set()
        if self.how == "fails":
            raise RuntimeError("the store's check failed after it opened")
        await asyncio.Event().wait()  # "interrupted": the test cancels the start here


@pytest.mark.parametrize("how", ["fails", "interrupted"])
async def test_a_start_that_fails_or_is_interrupted_leaves_no_task_running(how):
    with trashlab.Broker(unique("life-js"), jetstream=True) as b:
        before = set(asyncio.all_tasks())
        store = _StoreThenStuck(how)
        rep = trashlab.ReportService(b.url, subject="life.d", name=unique("life-rep"), store=store)
        starting = asyncio.ensure_future(rep.start())
        await asyncio.wait_for(store.opened.wait(), 30)
        assert store._tasks, "the store's own tasks run once it is open (what must not be left behind)"
        if how == "interrupted":
            starting.cancel()
        with pytest.raises((RuntimeError, asyncio.CancelledError)):
            await starting
        left = await _tasks_left(before)
        assert not left, f"the start {'failed' if how == 'fails' else 'was interrupted'}, yet these still run: {left}"
        assert not rep.running and rep._nc is not None and rep._nc.is_closed


async def test_starting_subscribers_interrupted_at_the_second_stops_the_first(broker):
    from holdproxy import HoldingProxy

    proxy = HoldingProxy(("127.0.0.1", broker.port), pass_first=1)  # the 2nd subscriber's server hangs
    prefix = unique("life-sub")
    before = set(asyncio.all_tasks())
    try:
        starting = asyncio.ensure_future(trashlab.start_subscribers(3, f"nats://127.0.0.1:{proxy.port}",
                                                                    prefix=prefix))
        deadline = asyncio.get_running_loop().time() + 30
        while not proxy.held.is_set():
            assert asyncio.get_running_loop().time() < deadline, "the second subscriber never tried to connect"
            await asyncio.sleep(0.02)
        starting.cancel()  # a held connection times out after 2 s: ConnectionFailed is a failed start too
        with pytest.raises((asyncio.CancelledError, trashlab.errors.ConnectionFailed)):
            await starting
        left = await _tasks_left(before)
        assert not left, f"start_subscribers was interrupted at the second, yet these still run: {left}"
        def connected() -> list:
            return [c.get("name") for c in fetch(broker.monitor_url, "connz").get("connections") or []]

        gone = await wait_until(lambda: f"{prefix}-1" not in connected(), timeout=10, what="the first to leave",
                                show=False)
        assert gone, f"the first subscriber is still connected: {connected()}"
    finally:
        proxy.close()


async def test_a_class_watch_interrupted_while_starting_stops_what_it_started(broker):
    from holdproxy import HoldingProxy

    from trashlab.notebook.classview import ClassWatch

    monitor = urlsplit(broker.monitor_url)
    proxy = HoldingProxy((monitor.hostname, monitor.port))  # its first look at who is online hangs
    before = set(asyncio.all_tasks())
    watch = ClassWatch(broker.url, proxy.url, ["s01"])
    try:
        starting = asyncio.ensure_future(watch.start())
        deadline = asyncio.get_running_loop().time() + 30
        while not proxy.held.is_set():
            assert asyncio.get_running_loop().time() < deadline, "the class watch never looked at the hub"
            await asyncio.sleep(0.02)
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        left = await _tasks_left(before)
        assert not left, f"the class watch was interrupted while starting, yet these still run: {left}"
        assert watch.report is not None and not watch.report.running
        assert watch._nc is not None and watch._nc.is_closed
    finally:
        proxy.close()
