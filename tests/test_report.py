"""The report service: latest level per can, answered over request/reply at any time."""

import json

import pytest

import trashlab
from conftest import eventually


@pytest.fixture
async def report(shared_broker):
    svc = await trashlab.ReportService(shared_broker.url).start()
    yield svc
    await svc.stop()


async def _publish(url, readings, subject="trash-level"):
    nc = await trashlab.servers.connection.connect(url)
    for can, level in readings:
        await nc.publish(subject, trashlab.message.encode(can, level))
    await nc.publish(subject, b"garbage")
    await nc.flush()
    await nc.close()


async def test_levels_one_can_and_stats(shared_broker, report):
    await _publish(shared_broker.url, [("135", 42.9), ("7", 10.0), ("135", 80.5)])
    await eventually(lambda: report.received >= 3, "the report service receiving the 3 readings",
                     seen=lambda: f"{report.received}")
    levels = await trashlab.query_levels(shared_broker.url)
    assert list(levels.columns) == ["can_id", "level", "updated_at", "readings"]
    assert dict(zip(levels["can_id"], levels["level"])) == {"7": 10.0, "135": 80.5}
    assert list(levels["can_id"]) == ["7", "135"]
    one = await trashlab.query_level("135", shared_broker.url)
    assert one["level"] == 80.5 and one["readings"] == 2
    stats = await trashlab.query_stats(shared_broker.url)
    assert stats["cans"] == 2 and stats["received"] == 3 and stats["rejected"] == 1 and stats["store"] == "memory"


async def test_unknown_can_is_a_clear_not_found(shared_broker, report):
    with pytest.raises(trashlab.errors.CanNotFound, match="no reading for can '99999'"):
        await trashlab.query_level("99999", shared_broker.url)


async def test_no_service_running_is_service_unavailable(broker):
    with pytest.raises(trashlab.errors.ServiceUnavailable, match="trashlab report"):
        await trashlab.query_levels(broker.url, timeout=0.5)


async def test_any_nats_client_can_ask(shared_broker, report):
    before = report.received
    await _publish(shared_broker.url, [("12", 33.0)])
    await eventually(lambda: report.received > before, "the report service receiving the reading",
                     seen=lambda: f"{report.received - before} new")
    nc = await trashlab.servers.connection.connect(shared_broker.url)
    reply = await nc.request("trash-report.level", b"12", timeout=2)
    await nc.close()
    assert json.loads(reply.data)["level"] == 33.0


async def test_discoverable_through_the_services_api(shared_broker, report):
    found = await trashlab.services.report.discover(shared_broker.url)
    assert "trash-report" in list(found["name"])
