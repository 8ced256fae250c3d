"""A class that keeps readings (``classroom serve --keep-readings``): every reading a student's broker takes is
in the hub's stream once, also what was published while the hub was down; nobody keeps a reading in another's
name; no password in the feed's repr, nothing on stderr. The 3-node case with a node killed is in
test_classroom_cluster.py."""

from __future__ import annotations

import json

import nats
import nats.errors
import pytest

from trashlab.servers import keptfeed
from trashlab.servers.broker import Broker
from trashlab.servers.classroom import ClassHub, join, parse_join_line, read_class
from conftest import eventually, unique


async def _publish(url: str, seqs) -> None:
    nc = await nats.connect(url)
    try:
        for seq in seqs:
            await nc.publish("trash-level", json.dumps({"can_id": "135", "level": "42.5", "seq": seq}).encode())
        await nc.flush()
    finally:
        await nc.close()


async def _kept(hub: ClassHub) -> "dict[str, list]":
    """Every reading in the hub's stream: student -> their seqs in stream order."""
    nc = await nats.connect(hub.kept_url)
    try:
        js = nc.jetstream()
        got: dict = {}
        info = await js.stream_info(keptfeed.KEPT_STREAM)
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(keptfeed.KEPT_STREAM, seq)
            got.setdefault(msg.subject.split(".")[1], []).append(json.loads(msg.data)["seq"])
        return got
    finally:
        await nc.close()


async def test_readings_published_while_the_hub_is_down_are_kept_once_it_is_back(class_file, tmp_path, capfd):
    hub = await ClassHub(["s01", "s02"], name=unique("keep"), store_dir=str(tmp_path / "js"), keep_readings=True).astart()
    broker = None
    try:
        line = hub.join_line("s01")
        assert line.endswith("&keep=1") and parse_join_line(line).keep
        join(line)
        broker = await Broker(unique("s01")).astart()
        feed = keptfeed.feed_of(broker.name)
        assert feed is not None and feed.ready.is_set()
        await _publish(broker.url, range(1, 11))
        await eventually(lambda: feed.kept == 10, "the first 10 readings kept", seen=feed.counts)
        nc = await nats.connect(broker.url)
        await nc.publish("trash-level", b"x" * (keptfeed.MAX_READING + 1))  # refused by the stream: counted, not retried
        await nc.close()
        await eventually(lambda: feed.dropped == 1 and feed.waiting == 0, "the oversized reading dropped",
                         seen=feed.counts)
        hub.stop()
        await _publish(broker.url, range(11, 21))  # the hub is down: the feed holds them
        await eventually(lambda: feed.received == 21, "the broker's feed taking the readings", seen=feed.counts)
        assert feed.waiting >= 1, feed.counts()
        await hub.astart()  # the same ports, the same store
        await _publish(broker.url, range(21, 31))
        await eventually(lambda: feed.waiting == 0 and feed.kept == 30, "every reading acknowledged",
                         seen=feed.counts, timeout=30)
        kept = await _kept(hub)
        assert kept == {"s01": list(range(1, 31))}, kept  # all of them, once each, in order
        password = hub.seats["s01"]
        assert password not in repr(feed) and password not in repr(parse_join_line(line))
    finally:
        if broker is not None:
            broker.stop()
        hub.stop()
    assert keptfeed.feed_of(broker.name) is None  # stopped with its broker
    out, err = capfd.readouterr()
    assert "kept" not in err, err  # the feed's thread says nothing on stderr (nbgrader marks a cell that does)


async def test_a_student_cannot_keep_readings_in_anothers_name(class_file):
    hub = await ClassHub(["s01", "s02"], name=unique("keep"), keep_readings=True).astart()
    try:
        nc = await nats.connect(hub.student_url("s01", host="127.0.0.1"))
        try:
            with pytest.raises(nats.errors.NoRespondersError):
                await nc.request(keptfeed.kept_subject("s02"), b'{"seq": 1}', timeout=2)
            ack = json.loads((await nc.request(keptfeed.KEPT_IMPORT, b'{"seq": 1}', timeout=5)).data)
            assert ack.get("stream") == keptfeed.KEPT_STREAM, ack
            with pytest.raises(nats.errors.Error):  # the stream's API is not the student's
                await nc.jetstream(timeout=2).stream_info(keptfeed.KEPT_STREAM)
        finally:
            await nc.close()
        assert await _kept(hub) == {"s01": [1]}
    finally:
        hub.stop()


def test_serve_keep_readings_is_remembered_and_its_lines_say_keep(tmp_path):
    from test_classroom_cluster import _serve

    folder = tmp_path / "class"
    proc, out = _serve(folder, unique("keep"), "--keep-readings")
    try:
        info = read_class(folder)
        assert info["kept_url"].startswith("nats://kept:")
        assert all(ln.rstrip().endswith("&keep=1") for ln in (folder / "roster.txt").read_text().splitlines()
                   if ln.startswith("s0")), (folder / "roster.txt").read_text()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    proc, out = _serve(folder, unique("keep"))  # served again without the flag: the class still keeps readings
    try:
        assert (folder / "students" / "s01.txt").read_text().rstrip().endswith("&keep=1")
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
