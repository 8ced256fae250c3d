"""The collector's fast path for the lab format and the running aggregates a dashboard reads."""

import time

import pandas as pd
import pytest

import trashlab
from conftest import eventually
from trashlab.services.collector import BINS

TRICKY = [
    b'{"can_id":"135", "level":"42.930236081376314"}', b'{"can_id":"1", "level":"100"}',
    b'{"can_id":"1", "level":"100.0000001"}', b'{"can_id":"1", "level":"0"}', b'{"can_id":"1", "level":"-0.0"}',
    b'{"can_id":"1", "level":"1.5e"}', b'{"can_id":"1", "level":"1..2"}', b'{"can_id":"1", "level":"1e1"}',
    b'{"can_id":"1", "level":"1e5"}', b'{"can_id":"1", "level":"nan"}', b'{"can_id":"1", "level":"inf"}',
    b'{"can_id":"007", "level":"5", "seq":7}', b'{"can_id":"1", "level":"5", "seq":007}',
    b'{"can_id":"1", "level":"5", "seq":0}', b'{"can_id":"1", "level":"5", "seq":-3}',
    b'{"can_id":"1", "level":"5", "seq":7.0}', b'{"can_id":"1", "level":"5", "can_id":"2"}',
    b'{"can_id":"' + b"9" * 64 + b'", "level":"5"}', b'{"can_id":"' + b"9" * 65 + b'", "level":"5"}',
    b'{"can_id":"1", "level":"5"} ', b'{"can_id":"1", "level":"5"}\n', b'{"can_id":" 1", "level":"5"}',
    b'{"can_id":"1", "level":"1_0"}', b'{"can_id":"1","level":"5"}', b'{"can_id":1, "level":5}',
]


@pytest.mark.parametrize("payload", TRICKY)
def test_fast_path_accepts_and_rejects_exactly_like_the_validator(payload):
    col = trashlab.Collector("nats://127.0.0.1:1")
    try:
        expected = trashlab.message.decode_fields(payload)
    except trashlab.errors.BadMessage as e:
        assert col.add(payload) is False
        assert col.reasons == {e.kind: 1} and col.rejected["reason"].iloc[0] == e.reason
    else:
        assert col.add(payload) is True
        frame = col.frame()
        seq = frame["seq"].iloc[-1]
        assert (frame["can_id"].iloc[-1], frame["level"].iloc[-1], None if pd.isna(seq) else int(seq)) == expected
        assert type(frame["can_id"].iloc[-1]) is str and frame["level"].dtype == "float64" and len(frame) == 1


def test_histograms_of_all_readings_and_of_the_latest_per_can():
    col = trashlab.Collector("nats://127.0.0.1:1")
    for can, level in [("1", 2.0), ("1", 97.0), ("2", 100.0), ("3", 50.0), ("x", 250.0)]:
        col.add(trashlab.message.encode(can, level) if level <= 100 else b'{"can_id":"x", "level":"250"}')
    edges, every = col.histogram()
    assert edges[0] == 0 and edges[-1] == 100 and len(edges) == BINS + 1
    assert sum(every) == 4 and every[0] == 1 and every[10] == 1 and every[-1] == 2  # 97 and 100
    _, latest = col.histogram(latest=True)
    assert sum(latest) == 3 and latest[0] == 0 and latest[-1] == 2  # can 1 moved from 2 % to 97 %
    assert col.fullest(2) == [("2", 100.0), ("1", 97.0)]
    col.clear()
    assert sum(col.histogram()[1]) == sum(col.histogram(latest=True)[1]) == 0 and col.fullest() == []


def test_rate_history_counts_readings_per_second():
    col = trashlab.Collector("nats://127.0.0.1:1")
    now = int(time.time())
    for t, n in [(now - 3, 5), (now - 1, 2), (now, 4)]:
        for _ in range(n):
            col.add(trashlab.message.encode("1", 5.0), received_at=t + 0.5)
    history = col.rate_history(10)
    assert len(history) == 10 and [s for s, _ in history] == sorted(s for s, _ in history)
    counts = dict(history)
    assert [counts[s] for s in range(now - 4, now + 1)] == [0, 5, 0, 2, 4]


async def test_a_burst_is_handled_in_batches_without_losing_or_misvalidating_any(shared_broker):
    from conftest import unique

    subject = unique("burst")
    col = await trashlab.Collector(shared_broker.url, subject).start()
    assert col._queue is not None  # this nats-py exposes its buffer: the batch path is in use
    nc = await trashlab.servers.connection.connect(shared_broker.url)
    for i in range(20000):
        await nc.publish(subject, trashlab.message.encode(str(i % 700), (i % 1000) / 10, i + 1))
    await nc.publish(subject, b"oops")
    await nc.flush()
    await nc.close()
    # (no stop() right away: the server may still be delivering, and unsubscribing ends delivery)
    assert await col.wait_for(20000, timeout=60) == 20000
    await eventually(lambda: col.rejected_count >= 1, "the malformed last message set aside",
                     seen=lambda: f"{col.count} kept, {col.rejected_count} rejected")
    await col.stop()
    assert col.count == 20000 and col.rejected_count == 1 and col.reasons == {"not-json": 1}
    assert sorted(col.frame()["seq"]) == list(range(1, 20001))
    assert sum(col.histogram()[1]) == 20000 and sum(col.histogram(latest=True)[1]) == col.cans == 700


async def test_a_mixed_burst_parsed_in_bulk_agrees_with_the_full_validator_row_by_row(shared_broker):
    """Valid, tricky and malformed payloads in one burst: the batch parser keeps exactly what decode_fields keeps."""
    from conftest import unique
    from flood import MALFORMED

    subject = unique("mixed")
    payloads = []
    for i in range(3000):
        payloads.append(trashlab.message.encode(str(i % 50), (i * 7.31) % 100, i if i % 3 else None))
        if i % 7 == 0:
            payloads.append(TRICKY[i % len(TRICKY)])
        if i % 11 == 0:
            payloads.append(MALFORMED[i % len(MALFORMED)][1])
    expected, kinds = [], {}
    for p in payloads:
        try:
            expected.append(trashlab.message.decode_fields(p))
        except trashlab.errors.BadMessage as e:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
    col = await trashlab.Collector(shared_broker.url, subject).start()
    nc = await trashlab.servers.connection.connect(shared_broker.url)
    for p in payloads:
        await nc.publish(subject, p)
    await nc.flush()
    await nc.close()
    await col.wait_for(len(expected), timeout=60)
    await col.stop()
    frame = col.frame()
    got = [(c, lv, None if pd.isna(s) else int(s)) for c, lv, s in zip(frame["can_id"], frame["level"], frame["seq"])]
    assert got == expected
    assert dict(col.reasons) == kinds and col.rejected_count == sum(kinds.values())
    assert col.rejected["kind"].value_counts().to_dict() == kinds
    assert sum(col.histogram()[1]) == len(expected)


def test_sequence_loss_skips_a_missing_seq_in_an_int64_column():
    """The README's call on a frame where one reading had no seq (pandas NA) must not raise."""
    col = trashlab.Collector("nats://127.0.0.1:1")
    for payload in (b'{"can_id":"1", "level":"5", "seq":1}', b'{"can_id":"1", "level":"5"}',
                    b'{"can_id":"1", "level":"5", "seq":3}'):
        col.add(payload)
    frame = col.frame()
    assert str(frame["seq"].dtype) == "Int64" and frame["seq"].isna().sum() == 1
    report = trashlab.services.collector.sequence_loss(frame["seq"], 4)
    assert report["received"] == 2 and report["lost"] == 2 and report["gaps"] == [(2, 2), (4, 4)]


def test_frames_share_nothing_a_student_can_break():
    """frame() hands out the collector's arrays without copying: writing to a frame must not reach them."""
    col = trashlab.Collector("nats://127.0.0.1:1", max_rows=3000)
    for i in range(2000):
        col.add(trashlab.message.encode(str(i % 7), i % 100, i + 1))
    first = col.frame()
    first.loc[0, "level"] = -1.0
    first["can_id"] = "x"
    level_view = col.frame()["level"]
    level_view.iloc[1] = 555.0
    del first
    for i in range(2000, 5000):  # grows the arrays, then keeps only the newest 3000
        col.add(trashlab.message.encode(str(i % 7), i % 100, i + 1))
    level_view.iloc[2] = 777.0
    again = col.frame()
    assert len(again) == 3000 and list(again["seq"]) == list(range(2001, 5001))
    assert again["level"].between(0, 100).all() and set(again["can_id"]) == {str(i) for i in range(7)}
    col.clear()
    assert col.frame().empty and len(level_view) == 2000 and level_view.iloc[1] == 555.0
