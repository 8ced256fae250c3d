"""The live checks of notebooks 05-08 against real nats-servers: the example solution passes, each
realistic mistake fails with one ✘ line that names the fix, and nothing the check starts outlives it.

These checks judge with the truth of their own broker (what they published, ``/connz`` of the student's
connection), never with what the student's code reports about itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time

import nats
import pytest

from trashlab import checks
from trashlab.errors import CheckFailed

from conftest import recorded_alive
from test_grading import KV_PY, READ_BATCH


async def fails(check, *args, **kwargs) -> str:
    """The ✘ line a failing live check shows."""
    with pytest.raises(CheckFailed) as info:
        await check(*args, **kwargs)
    text = str(info.value)
    assert text.startswith("✘ ") and "\n" not in text, text
    return text


@pytest.fixture(autouse=True)
def nothing_left_running():
    """What a check starts (recorded in this session's state folder) is stopped before it returns."""
    yield
    assert not recorded_alive(), f"a check left processes running: {recorded_alive()}"


# ----- 05: a client that records its outage -------------------------------------------------------
def recorder(*, down="time", up="time", **options):
    async def connect_recording(servers, events):
        async def disconnected():
            events.append(("disconnected", time.time() if down == "time" else down))

        async def reconnected():
            events.append(("reconnected", time.time() if up == "time" else up))
        cbs = {}
        if down is not None:
            cbs["disconnected_cb"] = disconnected
        if up is not None:
            cbs["reconnected_cb"] = reconnected
        return await nats.connect(servers=servers, **cbs, **options)
    return connect_recording


@pytest.mark.parametrize("give", ["all", "one"])
async def test_outage_recorder_passes_against_the_servers_truth(give, capsys):
    await checks.check_outage(recorder(), give)
    out = capsys.readouterr()
    assert "✔ your client recorded an outage of" in out.out and "after the kill" in out.out
    assert out.err == "", "nats-py's error tracebacks while the node was down must not reach stderr"


async def test_outage_recorder_mistakes():
    assert "coroutine that nobody awaited" in await fails(
        checks.check_outage, lambda servers, events: _no_await(servers))
    assert "not clock times" in await fails(checks.check_outage, recorder(down=1.0, up=2.0))
    assert "not clock times" in await fails(checks.check_outage, recorder(down=time.monotonic()))
    assert "reconnected_cb" in await fails(checks.check_outage, recorder(up=None))
    assert "did not come back" in await fails(checks.check_outage, recorder(allow_reconnect=False))


async def _no_await(servers):
    return nats.connect(servers=servers)


# ----- 05b: a publish the stream acknowledges ------------------------------------------------------
async def test_publish_acked_against_the_stream(capsys):
    async def acked(js, subject, payload):
        return (await js.publish(subject, payload)).seq

    async def the_ack(js, subject, payload):
        return await js.publish(subject, payload)

    async def counted_from_one(js, subject, payload):
        await js.publish(subject, payload)
        counted_from_one.n = getattr(counted_from_one, "n", 0) + 1
        return counted_from_one.n

    async def core_only(js, subject, payload):
        await js._nc.publish(subject, payload)
        return 0

    await checks.check_publish_acked(acked)
    assert "match the stream" in capsys.readouterr().out
    assert "return its .seq" in await fails(checks.check_publish_acked, the_ack)
    assert "the stream holds" in await fails(checks.check_publish_acked, counted_from_one)
    assert "holds nothing under 0" in await fails(checks.check_publish_acked, core_only)



# ----- 05b by hand: stream, publish with a message id, durable consumer, key-value bucket ---------------
async def make_stream(js, name, subjects):
    await js.add_stream(name=name, subjects=subjects)


async def publish_once(js, subject, payload, msg_id):
    return (await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})).seq


def defined(source: str) -> dict:
    """The names an answer cell's source defines (the reference answers live in test_grading)."""
    names: dict = {}
    exec(compile(source, "answer cell", "exec"), names)
    return names


def reader(durable=True, ack=True, fetch=None):
    """The reference read_batch of 05b, or one of its mistakes."""
    source = READ_BATCH
    if not durable:
        source = source.replace("durable=durable)", ")")
    if not ack:
        source = source.replace("await msg.ack()", "pass")
    if fetch:
        source = source.replace("psub.fetch(batch,", f"psub.fetch({fetch},")
    return defined(source)["read_batch"]


KV = defined(KV_PY)
open_levels, save_level, load_level, follow_levels = (KV[n] for n in ("open_levels", "save_level", "load_level",
                                                                       "follow_levels"))


async def test_stream_and_publish_with_message_ids_against_the_servers_state(capsys):
    async def no_subjects(js, name, subjects):
        await js.add_stream(name=name)

    async def no_id(js, subject, payload, msg_id):
        return (await js.publish(subject, payload)).seq

    async def own_count(js, subject, payload, msg_id):
        await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
        own_count.n = getattr(own_count, "n", 0) + 1
        return own_count.n

    await checks.check_make_stream(make_stream, subjects=["trash.north.level", "trash.*.alarm"])
    await checks.check_publish_once(publish_once)
    out = capsys.readouterr().out
    assert "and it stored a reading published on each" in out and "2 retries acknowledged as duplicates" in out, out
    assert "expected exactly" in await fails(checks.check_make_stream, no_subjects)
    assert "Nats-Msg-Id None" in await fails(checks.check_publish_once, no_id)
    assert "but the stream holds" in await fails(checks.check_publish_once, own_count)


async def test_durable_reader_against_the_consumers_state(capsys):
    await checks.check_read_acked(reader())
    await checks.check_replay(reader())
    out = capsys.readouterr().out
    assert "with all 3 acknowledged" in out and "went on at reading #3" in out, out
    assert "still waits for the acknowledgement of 3" in await fails(checks.check_read_acked, reader(ack=False))
    assert "an ephemeral consumer" in await fails(checks.check_read_acked, reader(durable=False))
    assert "expected the 3 stored next" in await fails(checks.check_read_acked, reader(fetch=10))
    assert "still waits for the acknowledgement" in await fails(checks.check_replay, reader(ack=False))


async def test_levels_in_a_bucket_through_a_restart_and_a_watch(capsys):
    async def wiped(js, bucket):
        with contextlib.suppress(Exception):
            await js.delete_key_value(bucket)
        return await js.create_key_value(bucket=bucket)

    async def as_json(kv, can_id, level):
        await kv.put(can_id, json.dumps({"level": level}).encode())

    async def once(kv, levels):
        for key in await kv.keys():
            levels[key] = float((await kv.get(key)).value)

    await checks.check_levels_kept(open_levels, save_level, load_level)
    await checks.check_follow_levels(open_levels, follow_levels)
    out = capsys.readouterr().out
    assert "None for a can never saved" in out and "then 4 puts by another client" in out, out
    assert "after a restart" in await fails(checks.check_levels_kept, wiped, save_level, load_level)
    assert "as text" in await fails(checks.check_levels_kept, open_levels, as_json, load_level)
    assert "keep watching" in await fails(checks.check_follow_levels, open_levels, once)


# ----- 06: drain before closing ---------------------------------------------------------------------
async def test_shut_down_with_drain_passes_and_close_loses_readings(capsys):
    async def drain(nc):
        await nc.drain()

    async def close(nc):
        await nc.close()

    async def no_await(nc):
        nc.drain()

    await checks.check_shut_down(drain)
    assert "✔" in capsys.readouterr().out
    assert "drain() lets the handler finish" in await fails(checks.check_shut_down, close)
    assert "still open" in await fails(checks.check_shut_down, no_await)


# ----- 07: the rate arriving on a subject --------------------------------------------------------------
# The answers below sleep as a student's answer does (counting for ``seconds``): the behaviour under test,
# not synchronisation.
async def measure(nc, subject, seconds):
    count = 0

    async def cb(msg):
        nonlocal count
        count += 1
    sub = await nc.subscribe(subject, cb=cb)
    await asyncio.sleep(seconds)
    await sub.unsubscribe()
    return count / seconds


async def test_rate_against_what_the_check_published(capsys):
    await checks.check_rate(measure, seconds=1.0)
    await checks.check_rate(measure, seconds=2.0)
    assert capsys.readouterr().out.count("✔") == 2

    async def count_only(nc, subject, seconds):
        return await measure(nc, subject, seconds) * seconds

    async def wrong_subject(nc, subject, seconds):
        return await measure(nc, "trash.level", seconds)

    async def constant(nc, subject, seconds):
        await asyncio.sleep(seconds)
        return 40.0

    async def subscribed_constant(nc, subject, seconds):
        await nc.subscribe(subject)
        await asyncio.sleep(seconds)
        return 40.0

    async def no_await(nc, subject, seconds):
        await nc.subscribe(subject)
        asyncio.sleep(seconds)
        return 0.0

    async def off_by_one(nc, subject, seconds):
        return await measure(nc, subject, seconds) + 1 / seconds

    assert "that is the count" in await fails(checks.check_rate, count_only, seconds=2.0)
    assert "one message off" in await fails(checks.check_rate, off_by_one)
    assert "saw no subscription" in await fails(checks.check_rate, wrong_subject)
    assert "saw no subscription" in await fails(checks.check_rate, constant, seconds=2.0)
    assert "expected 20" in await fails(checks.check_rate, subscribed_constant, seconds=2.0)
    assert "before its 1 s window ended" in await fails(checks.check_rate, no_await)


# ----- 08: a member of a queue group ---------------------------------------------------------------------
def joiner(queue_override="given", data=True, subject_override=None):
    async def join(nc, subject, queue, received):
        async def cb(msg):
            received.append(msg.data if data else msg)
        q = queue if queue_override == "given" else queue_override
        kwargs = {"queue": q} if q else {}
        return await nc.subscribe(subject_override or subject, cb=cb, **kwargs)
    return join


async def test_queue_member_read_from_the_servers_connz(capsys):
    await checks.check_queue_member(joiner())
    await checks.check_queue_member(joiner(), queue="workers-2", published=90)
    assert capsys.readouterr().out.count("each reading exactly once") == 2
    assert "in no queue group" in await fails(checks.check_queue_member, joiner(queue_override=None))
    assert "expected the group it was given" in await fails(checks.check_queue_member,
                                                             joiner(queue_override="reporters"), queue="other")
    assert "expected the subject" in await fails(checks.check_queue_member, joiner(subject_override="trash.level"))
    assert "append msg.data" in await fails(checks.check_queue_member, joiner(data=False))


async def test_a_log_line_on_stderr_during_a_check_goes_to_stdout(capsys):
    """A trashlab reconnect line (stderr) while a check runs must not reach stderr: nbgrader zeroes such a cell."""
    async def noisy(nc, subject, queue, received):
        print("trashlab [rep]: reconnected to 127.0.0.1:4222", file=sys.stderr)
        logging.getLogger("trashlab").warning("trashlab [rep]: a log line during the check")
        return await joiner()(nc, subject, queue, received)

    await checks.check_queue_member(noisy)
    out = capsys.readouterr()
    assert out.err == "" and "reconnected to 127.0.0.1:4222" in out.out and "a log line during the check" in out.out
