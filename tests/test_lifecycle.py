"""One lifecycle for the NATS components: the same verbs, the same counters, against a real broker."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

import trashlab
from conftest import eventually
from trashlab.services.lifecycle import NatsComponent


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
