"""JetStream on a 3-node cluster: the drill loses nothing; the report service's levels survive restarts."""

import asyncio
import json
import os

import pytest

from nats.js.errors import NoKeysError

import trashlab
from trashlab.servers.processes import ManagedProcess, python_command
from conftest import eventually, missing, record_seqs, unique


@pytest.fixture(scope="module")
def js_cluster():
    c = trashlab.Cluster(3, name=unique("js"), jetstream=True).start()
    asyncio.run(c.wait_formed(timeout=30, progress=False))
    yield c
    c.stop()


async def test_jetstream_drill_loses_nothing_and_delivers_each_seq_once(js_cluster):
    subject = unique("drill")
    publishers_node = list(js_cluster.nodes.values())[-1]  # the drill's simulator publishes here; it stays up
    nc, witness = await record_seqs(publishers_node.url, subject)  # every publish attempt, retries included
    try:
        result = await trashlab.failover_drill(js_cluster, jetstream=True, rate=200, kill_after=1.0, run_after=1.0,
                                               subject=subject, progress=False)
        await eventually(lambda: set(result.published_seqs) <= set(witness),
                         f"the witness on {publishers_node.name} seeing the {result.published} readings published",
                         seen=lambda: missing(result.published_seqs, set(witness)))
    finally:
        await nc.close()
    summary = result.summary()
    assert result.mode == "jetstream" and result.killed == js_cluster.first.name, summary
    published = result.published_seqs
    assert published == list(range(1, result.published + 1)), \
        f"each reading acknowledged once, in order: {missing(range(1, result.published + 1), published)}"
    assert set(witness) == set(published), \
        f"readings sent but never acknowledged (the publisher gave up): {sorted(set(witness) - set(published))[:10]}"
    assert sorted(result.received_seqs) == published, \
        f"every acknowledged reading delivered exactly once: {missing(published, result.received_seqs)} ({summary})"
    assert result.lost == 0 and result.received == result.published, summary
    assert result.frame["received_at"].notna().all()
    # the kill happened while readings flowed: some were published after the collector was back
    assert result.reconnected_at is not None, f"the collector never moved to another node: {summary}"
    after = int((result.frame["published_t"] > result.reconnected_at).sum())
    assert after > 0, f"nothing was published after the collector reconnected: the drill did not cross the kill ({summary})"
    assert js_cluster.first.running  # restored
    assert set(result.leaders) == {"stream", "consumer"}


async def test_the_flow_maps_wiretap_stays_small_during_a_jetstream_drill(js_cluster):
    """Every JetStream ack and every reply has a subject of its own (``$JS.ACK.<stream>.<consumer>.<seqs>``,
    ``_INBOX.<id>``): the flow map's wiretap counts them by group, so the table it walks at every refresh
    does not grow with each message of a drill."""
    from trashlab.notebook.flowmap import MAX_SUBJECTS

    fm = trashlab.FlowMap(js_cluster, refresh=0.3).start()
    sizes: list = []

    async def watch() -> None:
        while True:
            if fm._tap is not None:
                sizes.append(len(fm._tap.counts))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while fm._tap is None or fm.refreshes < 1:
            assert asyncio.get_running_loop().time() < deadline, "the flow map's wiretap never connected"
            await asyncio.sleep(0.05)
        result = await trashlab.failover_drill(js_cluster, jetstream=True, rate=200, kill_after=1.0, run_after=1.0,
                                               progress=False)
        counts = dict(fm._tap.counts) if fm._tap is not None else {}
    finally:
        watcher.cancel()
        fm.stop()
    # one $JS.ACK subject per message read: before the wiretap grouped them, >40 messages meant >40 entries
    assert result.published > 40, f"too few messages for the test to mean anything: {result}"
    assert sizes, "the wiretap was never seen connected"
    keys = sorted(counts)
    assert max(sizes) <= 20, (f"the wiretap's table grew to {max(sizes)} subjects during a drill of "
                              f"{result.published} messages (bound: internal subjects by group); at the end: {keys[:30]}")
    assert counts.get("$JS.> (JetStream API)", 0) > 0, f"the JetStream acks were not counted: {counts}"
    assert max(sizes) <= MAX_SUBJECTS


async def test_the_drill_reader_retries_only_what_means_try_again(js_cluster):
    """The drill's JetStream reader asks again (after a pause that grows) only for errors that mean "not
    now" (no leader yet, reconnecting); its connection closed under it is not one: it stops, and says so,
    instead of asking again every few milliseconds until the drill ends."""
    from nats.errors import ConnectionClosedError

    from trashlab.course.failover import _DurableReader, _drop_stream, _make_stream

    subject = unique("reader")
    await _make_stream(js_cluster.urls[0], subject, 1)
    reader = await _DurableReader(js_cluster.urls[0], subject, trashlab.Collector(js_cluster.urls[0])).start()
    try:
        pulling = reader._tasks[0]
        await reader._nc.close()
        await asyncio.wait({pulling}, timeout=30)
        assert pulling.done(), "the reader kept asking a closed connection"
        assert isinstance(pulling.exception(), ConnectionClosedError), pulling.exception()
    finally:
        await reader.stop()
        await _drop_stream(js_cluster.urls)


async def test_jetstream_drill_needs_three_nodes():
    with trashlab.Cluster(2, name=unique("js2")) as c:
        with pytest.raises(trashlab.errors.BadArgument, match="jetstream=True"):
            await trashlab.failover_drill(c, jetstream=True, progress=False)


async def _publish(url, readings):
    nc = await trashlab.servers.connection.connect(url)
    for can, level in readings:
        await nc.publish("trash-level", trashlab.message.encode(can, level))
    await nc.flush()
    await nc.close()


async def _bucket_levels(url):
    nc = await trashlab.servers.connection.connect(url)
    try:
        kv = await nc.jetstream().key_value("trash-levels")
        status = await kv.status()
        out = {}
        try:
            keys = await kv.keys()
        except NoKeysError:  # the report service has not written its first level yet
            keys = []
        for key in keys:
            doc = json.loads((await kv.get(key)).value)
            out[doc["can_id"]] = doc["level"]
        return out, status.stream_info.config.num_replicas
    finally:
        await nc.close()


async def _ask_until_answered(url, timeout=15.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await trashlab.query_levels(url, timeout=0.5)
        except trashlab.errors.ServiceUnavailable:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_report_service_process_restart_answers_with_previous_levels(js_cluster, tmp_path):
    url = js_cluster.first.url
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    first = ManagedProcess(python_command("report", "--servers", url, "-q"), kind="report", name="rep1", env=env)
    try:
        await _ask_until_answered(url)
        readings = [("135", 42.5), ("7", 10.0), ("135", 80.25), ("ab c", 5.0)]  # "ab c" is no plain KV key
        await _publish(js_cluster.urls[1], readings)
        expected = {"135": 80.25, "7": 10.0, "ab c": 5.0}
        for _ in range(100):
            stored, replicas = await _bucket_levels(url)
            if stored == expected:
                break
            await asyncio.sleep(0.05)
        assert stored == expected and replicas == 3  # replicated across the cluster
        stats = await trashlab.query_stats(url)
        assert stats["store"] == "jetstream-kv"
    finally:
        first.kill()  # SIGKILL: no goodbye, no final write
    second = ManagedProcess(python_command("report", "--servers", js_cluster.urls[2], "-q"), kind="report",
                            name="rep2", env=env)
    try:
        levels = await _ask_until_answered(url)  # its very first answer already has the old levels
        assert dict(zip(levels["can_id"], levels["level"])) == expected
        assert int(levels.loc[levels["can_id"] == "135", "readings"].iloc[0]) == 2
        # a second instance, in this process, on another node, answers the same
        other = await trashlab.ReportService(js_cluster.urls[1], name="trash-report-b").start()
        try:
            assert other.stats()["store"] == "jetstream-kv"
            assert dict(zip(other.levels()["can_id"], other.levels()["level"])) == expected
            one = await trashlab.query_level("7", url, service="trash-report-b")
            assert one["level"] == 10.0
        finally:
            await other.stop()
    finally:
        second.stop()


async def test_without_jetstream_levels_are_in_memory_and_it_says_so(broker):
    svc = await trashlab.ReportService(broker.url).start()
    try:
        assert svc.stats()["store"] == "memory"
        assert "store=memory" in repr(svc)
    finally:
        await svc.stop()
