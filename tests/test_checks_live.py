"""The live checks of notebooks 05-08 against real nats-servers: the example solution passes, each
realistic mistake fails with one ✘ line that names the fix, and nothing the check starts outlives it.

These checks judge with the truth of their own broker (what they published, ``/connz`` of the student's
connection), never with what the student's code reports about itself.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import nats
import pytest

from trashlab import checks
from trashlab.errors import CheckFailed

from conftest import recorded_alive


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


# ----- 08: copies of the student's rep.py as one queue group ----------------------------------------------
async def test_rep_queue_copies_judged_by_the_servers_connz_and_every_reply(tmp_path, monkeypatch, capsys):
    """N copies of rep.py (N, group and names drawn by the check): the right program passes both checks; a
    mistake in the group fails only the group check, a mistake in the replies only the answers check."""
    from test_grading import REP_QUEUE_PY

    monkeypatch.chdir(tmp_path)
    right = REP_QUEUE_PY.split("\n", 1)[1]

    def write(text: str) -> str:
        (tmp_path / "rep.py").write_text(text)
        return "rep.py"

    write(right)
    await checks.check_rep_queue("rep.py")
    await checks.check_rep_queue_answers("rep.py", copies=3)
    out = capsys.readouterr().out
    assert "each got exactly one reply" in out and "each naming the copy that answered" in out, out
    # the other right design: every copy takes every reading (fan-out), the requests stay in the group
    write(right.replace('"trash-level", queue=group, ', '"trash-level", '))
    await checks.check_rep_queue("rep.py", copies=2)
    await checks.check_rep_queue_answers("rep.py", copies=2)

    plain = write(right.replace("queue=group, ", ""))
    why = await fails(checks.check_rep_queue, plain, copies=3)
    assert "in no queue group" in why and "one request got 3 replies" in why, why
    await checks.check_rep_queue_answers(plain, copies=2)  # the replies themselves are right
    fixed = write(right.replace("queue=group", "queue='reporters'"))
    why = await fails(checks.check_rep_queue, fixed)
    assert "in queue group 'reporters'" in why and "sys.argv[1]" in why, why
    assert "in queue group 'reporters'" in await fails(checks.check_rep_queue, fixed, group="reporters-2")
    constant = write(right.replace('"level": levels[can_id], ', '"level": 50.0, '))
    await checks.check_rep_queue(constant, copies=2)
    assert "says level 50.0" in await fails(checks.check_rep_queue_answers, constant)
    named = write(right.replace('"copy": copy}\n        else', '"copy": "rep-1"}\n        else'))
    assert "says copy 'rep-1'" in await fails(checks.check_rep_queue_answers, named, copies=2)
    silent = write(right.replace('            answer = {"error": f"unknown can {can_id}", "copy": copy}\n',
                                 "            return\n"))
    assert "got no reply" in await fails(checks.check_rep_queue, silent, copies=2)
    crash = write(right.replace("group, copy = sys.argv[1], sys.argv[2]", "group, copy = sys.argv[1], sys.argv[3]"))
    why = await fails(checks.check_rep_queue, crash, copies=2)
    assert "crashed" in why and "IndexError" in why, why
    todo = write(right.replace("asyncio.run(main())", "raise NotImplementedError()"))
    assert "rep.py is not written yet" in await fails(checks.check_rep_queue_answers, todo, copies=2)
