"""The live checks of notebooks 02-04 against real nats-servers: right answers pass, realistic wrong ones fail.

(The same mistakes are graded under real nbgrader in test_grading.py; here each is one quick call.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time

import nats
import pytest

from trashlab import checks
from trashlab.errors import CheckFailed


async def fails(coro) -> str:
    with pytest.raises(CheckFailed) as info:
        await coro
    text = str(info.value)
    assert text.startswith("✘ ") and "\n" not in text, text
    return text


# ----- 02: a first client --------------------------------------------------------------------------
async def hello_right(url, subject, text):
    nc = await nats.connect(url, name="student")
    sub = await nc.subscribe(subject)
    await nc.publish(subject, text.encode())
    msg = await sub.next_msg(timeout=2)
    await nc.close()
    return msg.data.decode()


async def hello_no_subscribe(url, subject, text):
    nc = await nats.connect(url)
    await nc.publish(subject, text.encode())
    await nc.close()
    return text


async def hello_wrong_subject(url, subject, text):
    nc = await nats.connect(url)
    sub = await nc.subscribe("greetings")
    await nc.publish("greetings", text.encode())
    msg = await sub.next_msg(timeout=2)
    await nc.close()
    return msg.data.decode()


async def hello_bytes(url, subject, text):
    nc = await nats.connect(url)
    sub = await nc.subscribe(subject)
    await nc.publish(subject, text.encode())
    msg = await sub.next_msg(timeout=2)
    await nc.close()
    return msg.data


async def hello_left_open(url, subject, text):
    nc = await nats.connect(url)
    sub = await nc.subscribe(subject)
    await nc.publish(subject, text.encode())
    msg = await sub.next_msg(timeout=2)
    hello_left_open.nc = nc
    return msg.data.decode()


async def hello_publish_first(url, subject, text):
    nc = await nats.connect(url)
    await nc.publish(subject, text.encode())
    sub = await nc.subscribe(subject)
    msg = await sub.next_msg(timeout=1)
    await nc.close()
    return msg.data.decode()


async def test_hello(capsys):
    """The check starts a traced broker of its own: no broker of the notebook is needed."""
    await checks.check_hello(hello_right)
    assert "SUB, PUB and MSG seen by the broker" in capsys.readouterr().out
    assert "never subscribed" in await fails(checks.check_hello(hello_no_subscribe))
    assert "never saw a message" in await fails(checks.check_hello(hello_wrong_subject))
    assert "decode" in await fails(checks.check_hello(hello_bytes))
    assert "still open" in await fails(checks.check_hello(hello_left_open))
    await hello_left_open.nc.close()

    async def constant(url, subject, text):
        return "hello"
    assert "never saw a message" in await fails(checks.check_hello(constant))

    async def publish_not_awaited(url, subject, text):
        nc = await nats.connect(url)
        sub = await nc.subscribe(subject)
        nc.publish(subject, text.encode())
        msg = await sub.next_msg(timeout=0.5)
        await nc.close()
        return msg.data.decode()
    with pytest.warns(RuntimeWarning):  # nats-py's TimeoutError is an asyncio one: still not a hang of ours
        text = await fails(checks.check_hello(publish_not_awaited))
    assert "raised TimeoutError" in text and "did not finish" not in text

    def not_async(url, subject, text):
        return text
    assert "should be an `async def`" in await fails(checks.check_hello(not_async))


async def test_hello_published_before_subscribing_is_told_by_its_order():
    text = await fails(checks.check_hello(hello_publish_first))
    assert "published before it subscribed" in text and "subscribe first, then publish" in text, text
    assert "raised TimeoutError" not in text


async def test_a_broker_passed_the_old_way_is_ignored_even_when_stopped(broker, capsys):
    """02 after Run All: the notebook's broker is stopped; the check still judges on a broker of its own."""
    broker.stop()
    with pytest.warns(FutureWarning, match="ignored"):
        await checks.check_hello(hello_right, broker)
    with pytest.warns(FutureWarning, match="ignored"):
        await checks.check_client_names(lambda b: sorted(b.connz()["name"]), broker)
    assert capsys.readouterr().out.count("✔") == 2


async def test_a_check_before_its_answer_cell_says_which_cell_to_run():
    text = await fails(checks.check_hello(None))
    assert "has no answer yet" in text and "async def hello_nats" in text, text
    text = await fails(checks.check_client_names(None))
    assert "`def client_names(...)`" in text, text


async def test_client_names(capsys):
    await checks.check_client_names(lambda b: sorted(b.connz()["name"]))
    out = capsys.readouterr().out
    assert "check-" in out and "watcher-" in out
    assert "connected" in await fails(checks.check_client_names(lambda b: ["watcher"]))
    assert "sorted" in await fails(checks.check_client_names(lambda b: sorted(b.connz()["name"], reverse=True)))
    assert "expected a list" in await fails(checks.check_client_names(lambda b: b.connz()["name"]))


async def test_an_exception_in_a_handler_is_shown_with_its_type(broker, caplog):
    """A KeyError inside a subscription's callback: one log line naming it (it was "trashlab [name]: 'can'")."""
    from trashlab.servers.connection import connect

    nc = await connect(broker.url, name="your-report-service")
    got = []

    async def handler(msg):
        got.append(msg)
        json.loads(msg.data)["can"]
    await nc.subscribe("trash-level", cb=handler)
    with caplog.at_level(logging.WARNING, logger="trashlab"):
        await nc.publish("trash-level", b'{"can_id": "1", "level": "2.5"}')
        await nc.flush()
        deadline = time.monotonic() + 5
        while not any("KeyError" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if "your-report-service" in r.getMessage()]
    assert lines == ["trashlab [your-report-service]: a message handler raised KeyError: 'can'"], (got, lines)
    await nc.close()


# ----- 03: the publisher and a wildcard ------------------------------------------------------------
def payload(can_id, level) -> bytes:
    return ('{"can_id":"%s", "level":"%r"}' % (can_id, level)).encode()


# The answers below sleep as a student's publisher does (``interval`` between readings): the behaviour
# under test, not synchronisation.
async def publish_right(nc, count, interval):
    for i in range(count):
        await nc.publish("trash-level", payload(random.randint(0, 1000), random.random() * 100))
        if i < count - 1:
            await asyncio.sleep(interval)


async def test_publish_readings(capsys):
    await checks.check_publish_readings(publish_right)
    assert "5 readings in sim.js's format" in capsys.readouterr().out

    async def off_by_one(nc, count, interval):
        await publish_right(nc, count + 1, interval)

    async def numbers(nc, count, interval):
        for _ in range(count):
            await nc.publish("trash-level", json.dumps({"can_id": 7, "level": 50.5}).encode())
            await asyncio.sleep(interval)

    async def constant(nc, count, interval):
        for _ in range(count):
            await nc.publish("trash-level", payload(7, 50.5))
            await asyncio.sleep(interval)

    async def no_await(nc, count, interval):
        for _ in range(count):
            nc.publish("trash-level", payload(7, random.random() * 100))
            await asyncio.sleep(interval)

    async def wrong_subject(nc, count, interval):
        for _ in range(count):
            await nc.publish("trash.level", payload(random.randint(0, 1000), random.random() * 100))
            await asyncio.sleep(interval)

    async def blocking(nc, count, interval):
        for _ in range(count):
            await nc.publish("trash-level", payload(random.randint(0, 1000), random.random() * 100))
            time.sleep(interval)  # noqa: ASYNC251 (the mistake under test)

    async def too_high(nc, count, interval):
        for _ in range(count):
            await nc.publish("trash-level", payload(random.randint(0, 1000), random.random() * 1000))
            await asyncio.sleep(interval)

    assert "expected exactly 5" in await fails(checks.check_publish_readings(off_by_one))
    assert "JSON strings" in await fails(checks.check_publish_readings(numbers))
    assert "same" in await fails(checks.check_publish_readings(constant))
    with pytest.warns(RuntimeWarning):
        assert "nothing arrived" in await fails(checks.check_publish_readings(no_await))
        import gc
        gc.collect()
    assert "trash.level" in await fails(checks.check_publish_readings(wrong_subject))
    assert "time.sleep blocks" in await fails(checks.check_publish_readings(blocking))
    assert "percentage" in await fails(checks.check_publish_readings(too_high))


#: sim.py as a student writes it (03): argv, NATS_URL, sim.js's bytes, drain; BODY is replaced by the variants
SIM_PY = """import asyncio, os, random, sys
import nats

async def main():
    interval, count = float(sys.argv[1]), int(sys.argv[2])
    nc = await nats.connect(servers=os.environ["NATS_URL"].split(","))
    for i in range(count):
        payload = '{"can_id":"%d", "level":"%r"}' % (random.randint(0, 1000), random.random() * 100)
        print("publishing: " + payload)
        await nc.publish("trash-level", payload.encode())
        if i < count - 1:
            await asyncio.sleep(interval)
    await nc.drain()

asyncio.run(main())
"""


async def test_sim_program(tmp_path, monkeypatch, capsys):
    """The check runs the student's file as its own process and judges what its private broker received."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sim.py").write_text(SIM_PY)
    await checks.check_sim_program("sim.py", interval=0.05, count=6)
    assert "python sim.py 0.05 6: 6 readings in sim.js's format" in capsys.readouterr().out

    def variant(old: str, new: str) -> str:
        assert old in SIM_PY
        (tmp_path / "sim.py").write_text(SIM_PY.replace(old, new))
        return "sim.py"

    crash = variant("print(\"publishing: \" + payload)", "print({'can_id': 1}['can'])")
    assert "crashed (exit code 1)" in (why := await fails(checks.check_sim_program(crash, 0.05, 3))), why
    assert why.endswith("KeyError: 'can'"), why
    todo = variant("asyncio.run(main())", "raise NotImplementedError()")
    assert "sim.py is not written yet" in await fails(checks.check_sim_program(todo, 0.05, 3))
    forever = variant("for i in range(count):", "while True:\n        i = 0")
    assert "it should stop after COUNT readings" in await fails(checks.check_sim_program(forever, 0.05, 3))
    spaced = variant("\'{\"can_id\":\"%d\", \"level\":\"%r\"}\'", "\'{\"can_id\": \"%d\", \"level\": \"%r\"}\'")
    assert "not byte for byte" in await fails(checks.check_sim_program(spaced, 0.05, 3))
    assert "there is no missing.py" in await fails(checks.check_sim_program("missing.py", 0.05, 3))


async def test_rep_program(tmp_path, monkeypatch, capsys):
    """rep.py's three checks, each judging one behaviour: a mistake in one fails only that one."""
    from test_grading import REP_PY

    monkeypatch.chdir(tmp_path)
    right = REP_PY.split("\n", 1)[1]
    (tmp_path / "rep.py").write_text(right)
    await checks.check_rep_reports("rep.py", seed=3)
    await checks.check_rep_levels("rep.py", seed=3)
    await checks.check_rep_unknown("rep.py", seed=3)
    out = capsys.readouterr().out
    assert out.count("✔ python rep.py") == 3, out
    keyerror = right.replace('        if can_id in levels:\n            answer = {"can_id": can_id, "level": levels[can_id]}\n'
                             '        else:\n            answer = {"error": f"unknown can {can_id}"}\n',
                             '        answer = {"can_id": can_id, "level": levels[can_id]}\n')
    (tmp_path / "rep.py").write_text(keyerror)
    why = await fails(checks.check_rep_unknown("rep.py", seed=3))
    assert "no reply within" in why and "KeyError" in why, why  # the cause, from the program's stderr
    await checks.check_rep_levels("rep.py", seed=3)  # the other behaviours still earn their points
    (tmp_path / "rep.py").write_text(right.replace('float(reading["level"])', 'reading["level"]'))
    assert "is a string" in await fails(checks.check_rep_levels("rep.py", seed=3))
    (tmp_path / "rep.py").write_text(right.replace("    await asyncio.Event().wait()\n", ""))
    assert "a service keeps running" in await fails(checks.check_rep_unknown("rep.py", seed=3))
    # ends while the check's request is on its way to it (subscribed, not answering): what a loaded machine
    # made of the line above once (CI said "no reply within 1 s"); the student must still hear why
    (tmp_path / "rep.py").write_text("import time\n" + right.replace("    await asyncio.Event().wait()\n",
                                                                     "    await nc.flush()\n    time.sleep(1)\n"))
    assert "a service keeps running" in await fails(checks.check_rep_unknown("rep.py", seed=3))


async def test_requester(capsys):
    """ask_level tells no service from no answer in time, within the timeout it was given."""
    async def right(nc, can_id, timeout):
        try:
            msg = await nc.request("trash-report.level", can_id.encode(), timeout=timeout)
        except nats.errors.NoRespondersError:
            return {"error": "no report service"}
        except nats.errors.TimeoutError:
            return {"error": "no answer in time"}
        return json.loads(msg.data)

    async def one_for_both(nc, can_id, timeout):
        try:
            msg = await nc.request("trash-report.level", can_id.encode(), timeout=timeout)
        except Exception:
            return {"error": "no answer in time"}
        return json.loads(msg.data)

    async def own_timeout(nc, can_id, timeout):
        return await right(nc, can_id, 3.0)

    await checks.check_requester(right)
    assert "with no service" in capsys.readouterr().out
    assert "no responders" in await fails(checks.check_requester(one_for_both))
    assert "took 3.0 s with timeout=0.4" in await fails(checks.check_requester(own_timeout, timeout=0.4))


async def test_wildcard(capsys):
    async def right(nc, seen):
        async def cb(msg):
            seen.append(msg.subject)
        return await nc.subscribe("trash.*.level", cb=cb)

    def watching(pattern):
        async def answer(nc, seen):
            async def cb(msg):
                seen.append(msg.subject)
            return await nc.subscribe(pattern, cb=cb)
        return answer

    await checks.check_wildcard(right)
    await checks.check_wildcard(right, ["trash.east.level"], ["trash.north.level.raw", "trash.level"])
    assert "caught 2" in capsys.readouterr().out
    assert "not a level reading" in await fails(checks.check_wildcard(watching("trash.>")))
    assert "not a level reading" in await fails(checks.check_wildcard(watching("trash.north.*")))
    assert "missed" in await fails(checks.check_wildcard(watching("trash.north.level")))
    assert "missed" in await fails(checks.check_wildcard(watching("trash.*.level"), ["trash.north.level.x"], []))

    async def data_not_subject(nc, seen):
        async def cb(msg):
            seen.append(msg.data)
        return await nc.subscribe("trash.*.level", cb=cb)
    assert "caught" not in await fails(checks.check_wildcard(data_not_subject))

    async def subscribe_not_awaited(nc, seen):
        async def cb(msg):
            seen.append(msg.subject)
        return nc.subscribe("trash.*.level", cb=cb)
    assert "Client.subscribe(...)" in await fails(checks.check_wildcard(subscribe_not_awaited))
    assert "no answer yet" in await fails(checks.check_wildcard(None))


# ----- 04: keep the latest level, answer requests --------------------------------------------------
async def keep_right(nc, levels):
    async def on_reading(msg):
        reading = json.loads(msg.data)
        levels[reading["can_id"]] = float(reading["level"])
    return await nc.subscribe("trash-level", cb=on_reading)


async def test_latest_levels(capsys):
    await checks.check_latest_levels(keep_right)
    assert "levels = {" in capsys.readouterr().out

    async def first_only(nc, levels):
        async def cb(msg):
            r = json.loads(msg.data)
            levels.setdefault(r["can_id"], float(r["level"]))
        await nc.subscribe("trash-level", cb=cb)

    async def strings(nc, levels):
        async def cb(msg):
            r = json.loads(msg.data)
            levels[r["can_id"]] = r["level"]
        await nc.subscribe("trash-level", cb=cb)

    async def int_keys(nc, levels):
        async def cb(msg):
            r = json.loads(msg.data)
            levels[int(r["can_id"])] = float(r["level"])
        await nc.subscribe("trash-level", cb=cb)

    async def wrong_subject(nc, levels):
        async def cb(msg):
            r = json.loads(msg.data)
            levels[r["can_id"]] = float(r["level"])
        await nc.subscribe("trash.level", cb=cb)

    assert "first reading" in await fails(checks.check_latest_levels(first_only))
    assert "float(level)" in await fails(checks.check_latest_levels(strings))
    assert "strings" in await fails(checks.check_latest_levels(int_keys))
    assert "still {}" in await fails(checks.check_latest_levels(wrong_subject))


async def serve_right(nc, levels):
    async def on_request(msg):
        can_id = msg.data.decode()
        if can_id in levels:
            reply = {"can_id": can_id, "level": levels[can_id]}
        else:
            reply = {"error": f"unknown can {can_id}"}
        await msg.respond(json.dumps(reply).encode())
    return await nc.subscribe("trash-report.level", cb=on_request)


async def test_responder(capsys):
    await checks.check_responder(serve_right)
    assert "an error for unknown can" in capsys.readouterr().out

    async def constant(nc, levels):
        async def cb(msg):
            await msg.respond(json.dumps({"can_id": msg.data.decode(), "level": 50}).encode())
        await nc.subscribe("trash-report.level", cb=cb)

    async def snapshot(nc, levels):
        frozen = dict(levels)

        async def cb(msg):
            c = msg.data.decode()
            await msg.respond(json.dumps({"can_id": c, "level": frozen.get(c)} if c in frozen
                                         else {"error": "unknown"}).encode())
        await nc.subscribe("trash-report.level", cb=cb)

    async def silent_on_unknown(nc, levels):
        async def cb(msg):
            c = msg.data.decode()
            if c in levels:
                await msg.respond(json.dumps({"can_id": c, "level": levels[c]}).encode())
        await nc.subscribe("trash-report.level", cb=cb)

    async def never_answers(nc, levels):
        async def cb(msg):
            pass
        await nc.subscribe("trash-report.level", cb=cb)

    async def wrong_subject(nc, levels):
        async def cb(msg):
            await msg.respond(b"{}")
        await nc.subscribe("trash-report.levels", cb=cb)

    async def string_level(nc, levels):
        async def cb(msg):
            c = msg.data.decode()
            await msg.respond(json.dumps({"can_id": c, "level": str(levels.get(c))}).encode())
        await nc.subscribe("trash-report.level", cb=cb)

    assert "but levels" in await fails(checks.check_responder(constant, timeout=0.5))
    assert "after its level changed" in await fails(checks.check_responder(snapshot, timeout=0.5))
    assert "not silence" in await fails(checks.check_responder(silent_on_unknown, timeout=0.5))
    assert "no reply" in await fails(checks.check_responder(never_answers, timeout=0.5))
    assert "no responders" in await fails(checks.check_responder(wrong_subject, timeout=0.5))
    assert "JSON number" in await fails(checks.check_responder(string_level, timeout=0.5))


# ----- every check: log lines cannot zero a right answer ---------------------------------------------
async def test_trashlab_log_lines_during_a_check_go_to_stdout(capsys):
    logger = logging.getLogger("trashlab")
    before = (logger.handlers[:], logger.propagate)

    async def noisy(nc, levels):
        logger.warning("trashlab [x]: reconnected (a log line during the check)")
        print("Traceback (most recent call last):\n  File x\nnats.errors.Error: from a client without error_cb",
              file=sys.stderr)
        return await keep_right(nc, levels)

    await checks.check_latest_levels(noisy)
    out, err = capsys.readouterr()
    assert "a log line during the check" in out and "a log line during the check" not in err
    assert err == "" and "nats.errors.Error: from a client without error_cb" in out and "File x" not in out
    assert (logger.handlers, logger.propagate) == before, "the check must put trashlab's logging back"


async def test_a_hanging_answer_fails_within_the_timeout():
    async def hangs(nc, levels):
        await asyncio.sleep(3600)  # the hanging answer under test

    started = time.monotonic()
    text = await fails(checks.check_latest_levels(hangs))
    assert "did not finish" in text and time.monotonic() - started < 15


def test_no_reference_solution_in_the_package():
    for gone in ("latest_levels", "check_wire_format", "check_level_reply", "check_count",
                 "check_fraction_full", "example_frame"):
        assert not hasattr(checks, gone), gone
