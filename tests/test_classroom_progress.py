"""Live progress on the class page, and the page's memory: a joined student's real exercise checks reach the
instructor through the student's own broker (a leaf node of the hub), nobody can speak for another student,
nothing is sent outside a class, and what the page knows survives a page reload and a hub restart."""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import time
import urllib.request

import pytest

import trashlab
from trashlab.course.checks import simulator
from trashlab.errors import CheckFailed
from trashlab.notebook.classview import ClassWatch
from trashlab.servers import progress
from trashlab.servers.classroom import ClassHub, join, leave, parse_join_line
from conftest import eventually, unique


EXERCISE = "03/publish_readings"


async def _publish_readings(nc, count: int, interval: float) -> None:
    """A right answer to notebook 03's exercise."""
    for _ in range(count):
        await nc.publish("trash-level", b'{"can_id":"%d", "level":"%.2f"}' % (random.randint(0, 1000), random.random() * 100))
        await asyncio.sleep(interval)


def _leafs(hub) -> list:
    return json.load(urllib.request.urlopen(hub.monitor_url + "/leafz", timeout=2))["leafs"] or []


async def _watch(hub) -> ClassWatch:
    return await ClassWatch(hub.instructor_url, hub.monitor_url, hub.students).start()


async def _joined_broker(hub, student: str) -> trashlab.Broker:
    """The course's path: join with the roster line, start the notebook's Broker, wait until it is the hub's leaf."""
    join(hub.join_line(student, host="127.0.0.1"))
    local = trashlab.Broker(unique("iot-msg")).start()
    await eventually(lambda: any(lf.get("account") == student.upper() for lf in _leafs(hub)),
                     f"{student}'s broker becoming a leaf of the hub", seen=lambda: f"{_leafs(hub)}")
    return local


async def test_a_joined_student_s_checks_reach_the_class_page_and_a_reloaded_page(class_file, capfd):
    """Two ✘ and a ✔ of notebook 03's real check, run in a joined student's process with their broker a leaf of
    the hub, appear on the class page as s01's progress; the checks write nothing to stderr; a page opened
    afterwards (a reload) shows the same progress and the class report's levels from the hub's JetStream."""
    hub = ClassHub(["s01", "s02"], name=unique("hub"), jetstream=True).start()
    watch = reloaded = local = sim = None
    try:
        watch = await _watch(hub)
        assert watch.jetstream, "the hub has JetStream: the page keeps its progress in a stream"
        local = await _joined_broker(hub, "s01")
        capfd.readouterr()
        sent = progress.sent
        for _ in range(2):
            with pytest.raises(CheckFailed, match="no answer yet"):
                await simulator.check_publish_readings(None)
        await simulator.check_publish_readings(_publish_readings)
        started = time.monotonic()
        await eventually(lambda: watch.progress["s01"].get(EXERCISE, [None, 0])[1] == 3,
                         f"s01's three checks of {EXERCISE} on the class page",
                         seen=lambda: f"{watch.progress}, sent {progress.sent - sent}")
        print(f"the last check reached the page {time.monotonic() - started:.3f} s after it ended")
        assert watch.progress["s01"][EXERCISE][:2] == [True, 3] and watch.progress["s02"] == {}, watch.progress
        await eventually(lambda: progress.sent - sent == 3, "the sender counting its 3 messages",
                         seen=lambda: f"{progress.sent - sent}")
        out, err = capfd.readouterr()
        assert err == "", f"a check wrote to stderr (nbgrader would give it no points): {err[-500:]}"
        assert "✔" in out
        # readings through the same leaf: the class report keeps them in the hub's bucket
        sim = await trashlab.Simulator(local.url, interval=0.01, count=20, name="s01-sim").start()
        await sim.wait(timeout=10)
        await eventually(lambda: watch.report is not None and len(watch.report.store.items()) >= 1,
                         "the class report storing s01's cans", seen=lambda: f"{watch.received} readings")
        await eventually(lambda: watch.report.store.kind == "jetstream-kv" and not watch.report.store._dirty,
                         "the class report writing its levels to the bucket")
        cans = dict(watch.report.store.items())
        await watch.stop()
        reloaded = await _watch(hub)  # the page reloaded: a new kernel, a new watch
        assert reloaded.progress["s01"][EXERCISE][:2] == [True, 3], reloaded.progress
        assert set(dict(reloaded.report.store.items())) == set(cans), "the class report forgot levels on reload"
        assert reloaded.rows()[0]["cans"] == len({k for k in cans if k.startswith("s01/")})
        key = next(iter(cans))
        row = await reloaded.ask("s01", key.split("/", 1)[1])
        assert row["level"] == pytest.approx(cans[key].level)
    finally:
        if sim is not None:
            await sim.stop()
        for w in (watch, reloaded):
            if w is not None:
                await w.stop()
        if local is not None:
            local.stop()
        leave()
        hub.stop()


@pytest.mark.parametrize("jetstream", [True, False], ids=["stream", "no-jetstream"])
async def test_no_student_can_speak_for_another_and_bad_progress_is_dropped(class_file, jetstream):
    """s02 publishes progress naming s01's subjects, markup, an unknown shape and a huge message: the page shows
    nothing for s01, only s02's one well-formed message as s02's, and counts the rest as rejected (the huge
    one never reaches a page through the stream, which refuses it; without JetStream the page drops it)."""
    hub = ClassHub(["s01", "s02"], name=unique("hub"), jetstream=jetstream).start()
    watch = None
    try:
        watch = await _watch(hub)
        s02 = await trashlab.servers.connection.connect(hub.student_url("s02", host="127.0.0.1"), name="s02")
        for subject in ("class.s01.trash-progress", "s01.trash-progress", "trash-progress.s01"):
            await s02.publish(subject, progress.payload(EXERCISE, True, 1))
        bad = [json.dumps({"exercise": "<script>alert(1)</script>", "ok": True, "attempt": 1}).encode(),
               json.dumps({"exercise": EXERCISE, "ok": "yes", "attempt": 1}).encode(),
               b"not json", b'{"exercise": "03/x", "ok": true, "pad": "' + b"x" * 2000 + b'"}']
        for data in bad:
            await s02.publish(progress.PROGRESS, data)
        await s02.publish(progress.PROGRESS, progress.payload("05/outage", False, 1))
        await s02.flush()
        assert watch.jetstream == jetstream
        rejected = 3 if jetstream else 4
        await eventually(lambda: "05/outage" in watch.progress["s02"] and watch.progress_rejected == rejected,
                         f"s02's good message and {rejected} rejected ones",
                         seen=lambda: f"{watch.progress}, rejected {watch.progress_rejected}")
        assert watch.progress["s01"] == {}, f"s02 wrote s01's progress: {watch.progress['s01']}"
        assert list(watch.progress["s02"]) == ["05/outage"]
        await s02.close()
    finally:
        if watch is not None:
            await watch.stop()
        hub.stop()


def test_progress_is_nothing_outside_a_class_and_never_waits_for_the_hub(class_file, tmp_path):
    """Not joined: a check's ✔/✘ goes nowhere. Joined to a hub that accepts but never answers: the report is
    queued and the call returns at once (the background sender gives up later)."""
    leave()
    queued, attempts = progress._queue.qsize(), progress._attempts[EXERCISE]
    progress.report_check(EXERCISE, True)
    assert progress._queue.qsize() == queued and progress._attempts[EXERCISE] == attempts, "sent outside a class"
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never says INFO
    try:
        port = silent.getsockname()[1]
        seat = parse_join_line(f"nats://s01:pw@127.0.0.1:{port}?leaf={port}")
        class_file.write_text(json.dumps({"student": seat.student, "client_url": seat.client_url,
                                          "leaf_url": seat.leaf_url}))
        progress.report_check("not an exercise id", False)
        assert "not an exercise id" not in progress._attempts, "an id that is not an exercise is not sent"
        sent = progress.sent
        progress.report_check(EXERCISE, False)  # returns without waiting for the silent "hub"
        assert progress._attempts[EXERCISE] == attempts + 1 and progress.sent == sent
    finally:
        silent.close()



async def test_a_page_nobody_watches_pauses_and_resumes_when_a_browser_returns(monkeypatch):
    """Under Voilà the page's kernel asks the server how many browsers it has: none for ``idle`` seconds, and the
    page stops its NATS clients (no class-report responder left) and its redrawing; one again, and it watches again."""
    from trashlab.notebook import classview

    browsers, asked = [0], [0]

    def connections(url: str) -> int:
        asked[0] += 1  # once per refresh of the page's loop
        return browsers[0]

    monkeypatch.setattr(classview, "_connections", connections)
    hub = ClassHub(["s01"], name=unique("hub")).start()
    view = None

    def responders() -> int:
        conns = trashlab.servers.monitor.fetch(hub.monitor_url, "connz?auth=1").get("connections") or []
        return sum(1 for c in conns if c.get("name") == "class-report")

    try:
        view = classview.ClassView(ClassWatch(hub.instructor_url, hub.monitor_url, hub.students), refresh=0.05)
        view.page_url, view.idle = "http://127.0.0.1:1", 0.3
        await view.start()
        await eventually(lambda: view.paused and not view.watch.running and responders() == 0,
                         "the page pausing with no browser", seen=lambda: f"paused {view.paused}, {responders()} responders")
        drawn = view.header.value
        view.watch._online["s01"] = 1  # what the page would show, if it still drew
        since = asked[0]
        await eventually(lambda: asked[0] >= since + 3, "three more turns of the page's loop")
        assert view.header.value == drawn, "a paused page still redraws (the kernel never turns idle)"
        browsers[0] = 1
        await eventually(lambda: not view.paused and view.watch.running and responders() == 1,
                         "the page watching again once a browser is back",
                         seen=lambda: f"paused {view.paused}, {responders()} responders")
    finally:
        if view is not None:
            await view.stop()
        hub.stop()


async def test_a_class_of_300_is_drawn_as_30_group_lines_naming_who_to_look_at():
    """300 students do not fit a projector a line each: the page draws at most 30 lines (groups of 10 in roster
    order) with each group's online count, msg/s and readings, who to look at (offline, or online and silent), and per
    exercise how many passed, fail, and are stuck. Students connect to the hub with their own logins: s001–s004
    publish readings (s005 is online and silent), s001 passes an exercise, s002 fails it three times (stuck)."""
    import nats

    from trashlab.notebook import classview

    hub = ClassHub(300, name=unique("hub")).start()
    students: list = []
    view = None
    try:
        view = classview.ClassView(ClassWatch(hub.instructor_url, hub.monitor_url, hub.students), refresh=0.05)
        await view.start()
        for s in ("s001", "s002", "s003", "s004", "s005"):
            students.append(await nats.connect(hub.student_url(s, host="127.0.0.1"), name=s))
        for nc in students[:4]:
            for i in range(3):
                await nc.publish("trash-level", b'{"can_id":"%d", "level":"50.00"}' % i)
        await students[0].publish(progress.PROGRESS, progress.payload(EXERCISE, True, 1))
        for attempt in (1, 2, 3):
            await students[1].publish(progress.PROGRESS, progress.payload(EXERCISE, False, attempt))
        for nc in students:
            await nc.flush()
        await eventually(lambda: view.watch.received == 12 and "data-stuck='1'" in view.students.value,
                         "the page counting 12 readings and s002 stuck",
                         seen=lambda: f"{view.watch.received} readings; {view.watch.progress.get('s002')}")
        await eventually(lambda: "data-online='5'" in view.students.value, "the first group's 5 online students")
        table = view.students.value
        lines = re.findall(r"<tr class='group' data-label='([^']+)' data-online='(\d+)' data-size='(\d+)'>", table)
        assert len(lines) == 30 and lines[0] == ("s001–s010", "5", "10") and lines[-1][0] == "s291–s300", lines[:2]
        assert all(online == "0" for _, online, _ in lines[1:])
        first = table.split("<tr class='group'")[1]
        assert "0 msg/s s005" in first and "&#9675; s008" in first and "+2" in first, first  # 4 names shown, 2 more
        assert "data-passed='1' data-failing='1' data-stuck='1'" in first and ">1✔ 1✘<" in first, first
        assert "<tr class='student'" not in table
    finally:
        for nc in students:
            await nc.close()
        if view is not None:
            await view.stop()
        hub.stop()
