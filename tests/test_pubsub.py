"""Simulator → broker → Collector: every valid reading kept, every bad one set aside with its reason."""

import time

import pytest

import trashlab
from conftest import eventually, unique


async def test_collector_receives_every_simulated_reading(shared_broker):
    subject = unique("trash")
    col = await trashlab.Collector(shared_broker.url, subject).start()
    sim = await trashlab.Simulator(shared_broker.url, subject, interval=0, count=5000, seed=1, sequence=True).start()
    await sim.wait(timeout=30)
    assert await col.wait_for(5000, timeout=10) == 5000
    await sim.stop()
    await col.stop()
    frame = col.frame()
    assert list(frame.columns) == ["can_id", "level", "received_at", "subject", "seq"]
    assert len(frame) == 5000 and sorted(frame["seq"]) == list(range(1, 5001))
    assert frame["level"].dtype == "float64" and frame["level"].between(0, 100).all()
    assert str(frame["received_at"].dtype) == "datetime64[ns, UTC]"
    assert frame["can_id"].map(type).eq(str).all()
    assert frame["can_id"].astype(int).between(0, 1000).all()
    assert col.rejected_count == 0


async def test_simulator_is_repeatable_with_a_seed(shared_broker):
    a = trashlab.Simulator(shared_broker.url, seed=42)
    b = trashlab.Simulator(shared_broker.url, seed=42)
    assert [a.reading() for _ in range(5)] == [b.reading() for _ in range(5)]


async def test_default_interval_is_the_labs_four_seconds(shared_broker):
    assert trashlab.Simulator(shared_broker.url).interval == 4.0


async def test_interval_paces_publishing(shared_broker):
    subject = unique("paced")
    col = await trashlab.Collector(shared_broker.url, subject).start()
    sent = []
    sim = await trashlab.Simulator(shared_broker.url, subject, interval=0.2, count=5, sequence=True,
                                   on_publish=lambda payload: sent.append(time.monotonic())).start()
    assert await sim.wait(timeout=30) == 5
    await eventually(lambda: col.count >= 5, "the 5 readings arriving", seen=lambda: f"{col.count} arrived")
    await sim.stop()
    await col.stop()
    assert sorted(col.frame()["seq"]) == [1, 2, 3, 4, 5], f"each reading once: {list(col.frame()['seq'])}"
    # the k-th reading is due 0.2 s * k after the first (a sleep never ends early; a late one only makes
    # the next due sooner, never earlier than its turn). 0.1 s of slack for the moment between reading the
    # clock and the first publish. Publishing without pacing would take milliseconds.
    since_first = [round(t - sent[0], 3) for t in sent]
    assert all(s >= 0.2 * k - 0.1 for k, s in enumerate(since_first)), \
        f"readings published faster than every 0.2 s: seconds since the first {since_first}"


BAD = [b"not json", b"[1]", b'{"can_id":"1"}', b'{"can_id":"1", "level":"x"}', b'{"can_id":"1", "level":"250"}',
       b'{"can_id":"1", "level":"NaN"}', b"\xff\xfe", b"[" * 3000 + b"]" * 3000,
       b'{"pad":"' + b"x" * (1024 * 1024 - 20) + b'"}']


async def test_bad_messages_are_counted_and_kept_aside_never_fatal(shared_broker):
    subject = unique("mixed")
    col = await trashlab.Collector(shared_broker.url, subject).start()
    nc = await trashlab.servers.connection.connect(shared_broker.url)
    good = 0
    for i in range(300):
        if i % 10 == 3:
            await nc.publish(subject, BAD[(i // 10) % len(BAD)])
        else:
            good += 1
            await nc.publish(subject, trashlab.message.encode(str(i), i / 3))
    await nc.flush()
    await nc.close()
    await eventually(lambda: col.count + col.rejected_count >= 300, "the 300 messages counted or set aside",
                     seen=lambda: f"{col.count} kept, {col.rejected_count} rejected")
    assert col.running
    await col.stop()
    assert col.count == good == 270
    assert col.rejected_count == 30
    rejected = col.rejected
    assert list(rejected.columns) == ["payload", "kind", "reason", "received_at"]
    assert len(rejected) == 30 and rejected["reason"].str.len().gt(0).all()
    assert set(col.reasons) == {"not-json", "not-object", "missing-field", "bad-type", "out-of-range",
                                "not-finite", "not-utf8", "too-deep", "too-large"}
    assert rejected["payload"].iloc[0] == b"not json"


async def test_max_rows_keeps_the_newest(shared_broker):
    subject = unique("cap")
    col = await trashlab.Collector(shared_broker.url, subject, max_rows=100).start()
    sim = await trashlab.Simulator(shared_broker.url, subject, interval=0, count=1000, sequence=True).start()
    await sim.wait(10)
    await col.wait_for(1000, 10)
    await col.stop()
    frame = col.frame()
    assert col.count == 1000 and len(frame) == 100
    assert list(frame["seq"]) == list(range(901, 1001))


async def test_latest_level_per_can(shared_broker):
    subject = unique("latest")
    col = await trashlab.Collector(shared_broker.url, subject).start()
    nc = await trashlab.servers.connection.connect(shared_broker.url)
    for can, level in [("10", 5), ("2", 7), ("10", 50.5), ("2", 8)]:
        await nc.publish(subject, trashlab.message.encode(can, level))
    await nc.flush()
    await nc.close()
    await col.wait_for(4, 5)
    await col.stop()
    latest = col.latest()
    assert list(latest["can_id"]) == ["2", "10"]
    assert list(latest["level"]) == [8.0, 50.5]
    assert list(latest["readings"]) == [2, 2]


async def test_empty_frame_has_the_columns_and_types():
    frame = trashlab.Collector("nats://127.0.0.1:1").frame()
    assert list(frame.columns) == ["can_id", "level", "received_at", "subject", "seq"] and frame.empty


async def test_servers_default_to_nats_url_then_our_broker(shared_broker, monkeypatch):
    monkeypatch.setenv("NATS_URL", shared_broker.url)
    assert trashlab.servers.connection.server_list() == [shared_broker.url]
    monkeypatch.delenv("NATS_URL")
    assert trashlab.servers.connection.server_list() == [trashlab.servers.broker.running_brokers()[-1].url]
    assert trashlab.servers.connection.server_list(f"nats:{shared_broker.name}:4222") == [shared_broker.url]  # the lab's form
    assert trashlab.servers.connection.server_list(shared_broker.name) == [shared_broker.url]  # a name, like Docker DNS


@pytest.mark.parametrize("kwargs, words", [
    (dict(servers="http://x:1"), "scheme"),
    (dict(servers="nats://host:99999"), "bad port"),
    (dict(subject="trash level"), "not valid"),
    (dict(subject="trash.>"), "are for subscribing"),
    (dict(interval=-1), "interval"),
    (dict(cans=0), "cans"),
    (dict(count=-3), "count"),
])
async def test_bad_arguments_name_the_fix(kwargs, words):
    with pytest.raises(trashlab.errors.BadArgument, match=words):
        sim = trashlab.Simulator(**{"servers": "nats://127.0.0.1:4222", **kwargs})
        await sim.start()


async def test_unreachable_server_is_one_line():
    with pytest.raises(trashlab.errors.ConnectionFailed) as err:
        await trashlab.Collector("nats://127.0.0.1:1").start()
    assert "connection refused" in str(err.value) and "\n" not in str(err.value)


async def test_disconnect_is_one_concise_log_line_not_a_traceback(capsys, caplog):
    caplog.set_level("WARNING", logger="trashlab")
    b = trashlab.Broker(unique("flaky")).start()
    col = await trashlab.Collector(b.url, name="watcher").start()
    b.kill()
    await eventually(lambda: col.connected_url is None, "the collector noticing its broker is gone")
    b.restart()
    def said() -> list:
        return [r.getMessage() for r in caplog.records if "watcher" in r.getMessage()]

    await eventually(lambda: col.connected_url is not None and any("reconnected" in ln for ln in said()),
                     "the collector reconnecting to the restarted broker, and saying so", seen=said)
    await col.stop()
    b.stop()
    err = capsys.readouterr().err
    assert "Traceback" not in err  # nats-py prints nothing of its own
    lines = said()
    assert any("lost the connection" in ln for ln in lines), err
    assert any("reconnected" in ln for ln in lines), err
    assert len(lines) <= 3, err
