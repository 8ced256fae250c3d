"""Classroom mode against real nats-servers: isolation between students, the instructor's view of
everyone, joining as a leaf node (plain and over WebSocket), refused credentials, no password in logs."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import urllib.request
import uuid

import pytest

import trashlab
from trashlab._progress import wait_until
from trashlab.servers.classroom import (ClassHub, _check_login, class_subject, join, joined, leaf_remote, leave,
                                        leaf_user, parse_join_line, read_class)
from trashlab.servers.monitor import fetch
from trashlab.servers.progress import PROGRESS, payload
from trashlab.notebook.classview import ClassWatch
from conftest import eventually, unique


@pytest.fixture(scope="module")
def hub():
    """A class of three students, with a WebSocket listener."""
    h = ClassHub(["s01", "s02", "s03"], name=unique("hub"), websocket_port=0).start()
    yield h
    h.stop()


async def _listen(url: str, subject: str, name: str):
    got = []
    nc = await trashlab.servers.connection.connect(url, name=name)

    async def cb(msg):
        got.append((msg.subject, msg.data))

    await nc.subscribe(subject, cb=cb)
    await nc.flush()
    return nc, got


async def _caught_up(nc, got: list, subject: str) -> None:
    """Wait until this listener has everything published to it before now: it publishes a marker to
    itself and waits for it (a server delivers to one connection in order, and a publish that was
    flushed was routed before its PONG), then drops the marker from ``got``."""
    marker = f"marker-{uuid.uuid4().hex}".encode()
    await nc.publish(subject, marker)
    await nc.flush()
    await eventually(lambda: any(data == marker for _, data in got), f"the listener's own marker on {subject}",
                     seen=lambda: f"{len(got)} messages: {got[-3:]}")
    got[:] = [m for m in got if m[1] != marker]


async def test_students_are_isolated_and_the_instructor_sees_all(hub):
    s1, seen_by_s1 = await _listen(hub.student_url("s01", host="127.0.0.1"), ">", "s01-spy")
    teacher, seen_by_teacher = await _listen(hub.instructor_url, ">", "teacher")
    s2 = await trashlab.servers.connection.connect(hub.student_url("s02", host="127.0.0.1"), name="s02")
    # s02 publishes its own reading and tries to write into s01's account and the instructor's subjects
    await s2.publish("trash-level", b'{"can_id":"7", "level":"50.0"}')
    await s2.publish(class_subject("s01"), b'{"can_id":"666", "level":"1.0"}')
    await s2.publish("class.s01.trash-level", b"spoof")
    await s2.flush()
    await _caught_up(s1, seen_by_s1, "marker.s01")
    assert seen_by_s1 == [], f"s01 saw another student's traffic: {seen_by_s1}"
    await _caught_up(teacher, seen_by_teacher, "class.teacher.marker")
    assert seen_by_teacher == [("class.s02.trash-level", b'{"can_id":"7", "level":"50.0"}')], seen_by_teacher
    # the instructor cannot write into a student's account either: imports are one-way
    await teacher.publish("trash-level", b'{"can_id":"1", "level":"1.0"}')
    await teacher.publish(class_subject("s01"), b'{"can_id":"1", "level":"1.0"}')
    await teacher.flush()
    await _caught_up(s1, seen_by_s1, "marker.s01")
    assert seen_by_s1 == [], f"the instructor wrote into s01's account: {seen_by_s1}"
    for nc in (s1, s2, teacher):
        await nc.close()


@pytest.mark.parametrize("which", ["wrong password", "foreign password", "no password", "leaf login as a client"])
async def test_a_student_credential_gives_nothing_outside_its_account(hub, which):
    good = hub.student_url("s01", host="127.0.0.1")
    s2_password = hub.seats["s02"]
    url = {"wrong password": good.replace(hub.seats["s01"], "not-the-password"),
           "foreign password": good.replace(hub.seats["s01"], s2_password),  # s01 with s02's password
           "no password": f"nats://127.0.0.1:{hub.port}",
           # the brokers' login (which the hub sends nothing) is for leaf nodes only
           "leaf login as a client": good.replace("//s01:", f"//{leaf_user('s01')}:")}[which]
    with pytest.raises(trashlab.errors.ConnectionFailed) as err:
        await trashlab.servers.connection.connect(url, name="intruder")
    assert "authorization violation" in str(err.value)
    for password in (hub.seats["s01"], s2_password, hub.instructor_password):
        assert password not in str(err.value)
    if which != "no password":
        assert "***" in str(err.value)


async def test_instructor_credentials_are_not_a_student_s(hub):
    """The instructor's password does not open a student's account, nor a student's the instructor's."""
    as_s01 = hub.student_url("s01", host="127.0.0.1").replace(hub.seats["s01"], hub.instructor_password)
    with pytest.raises(trashlab.errors.ConnectionFailed):
        await trashlab.servers.connection.connect(as_s01, name="teacher-as-student")
    as_teacher = hub.instructor_url.replace(hub.instructor_password, hub.seats["s01"])
    with pytest.raises(trashlab.errors.ConnectionFailed):
        await trashlab.servers.connection.connect(as_teacher, name="student-as-teacher")


def test_roster_has_one_private_join_line_per_student(hub, tmp_path):
    roster = hub.write_roster(tmp_path / "class")
    assert stat.S_IMODE(roster.stat().st_mode) == 0o600
    info = tmp_path / "class" / "instructor.json"
    assert stat.S_IMODE(info.stat().st_mode) == 0o600
    rows = [ln.split() for ln in roster.read_text().splitlines() if not ln.startswith("#")]
    assert [r[0] for r in rows] == ["s01", "s02", "s03"]
    for student, line, ws in rows:
        seat = parse_join_line(f"{student}  {line}  {ws}")
        assert seat.student == student
        assert seat.client_url == hub.student_url(student)
        assert seat.leaf_url.endswith(f":{hub.leaf_port}") and seat.leaf_url.startswith("nats-leaf://")
        assert parse_join_line(ws).leaf_url == ws.replace(f"//{student}:", f"//{leaf_user(student)}:")
        assert parse_join_line(ws).client_url is None and parse_join_line(ws).student == student
        assert hub.seats[student] not in repr(seat)
    assert hub.instructor_password not in roster.read_text()
    seat_file = tmp_path / "class" / "students" / "s02.txt"  # a student's line as a file of its own
    assert stat.S_IMODE(seat_file.stat().st_mode) == 0o600
    assert parse_join_line(str(seat_file)) == parse_join_line(hub.join_line("s02"))
    assert json.loads(info.read_text())["instructor_url"] == hub.instructor_url


def test_monitoring_stays_local_even_when_the_hub_listens_everywhere():
    h = ClassHub(2, name=unique("hub"), host="0.0.0.0", advertise="hub.example").start()
    try:
        varz = json.load(urllib.request.urlopen(h.monitor_url + "/varz", timeout=2))
        assert varz["http_host"] == "127.0.0.1"
        assert varz["host"] == "0.0.0.0"
        assert h.join_line("s01").startswith("nats://s01:") and "@hub.example:" in h.join_line("s01")
        assert varz["auth_required"] is True
    finally:
        h.stop()


@pytest.mark.parametrize("transport", ["leaf", "websocket"])
async def test_a_joined_student_s_course_broker_reaches_the_class(hub, class_file, transport):
    """After trashlab.classroom.join(line), the notebook's own Broker("iot-msg") is a leaf node of the hub in
    the student's account: local clients work as before and the instructor sees the readings."""
    line = hub.join_line("s03", host="127.0.0.1") if transport == "leaf" else hub.websocket_line("s03", host="127.0.0.1")
    seat = join(line)
    assert joined() == seat and class_file.exists()
    assert stat.S_IMODE(class_file.stat().st_mode) == 0o600
    if transport == "leaf":
        assert os.environ["NATS_URL"] == hub.student_url("s03", host="127.0.0.1")
    teacher, seen = await _listen(hub.instructor_url, "class.>", "teacher")
    other, seen_by_s01 = await _listen(hub.student_url("s01", host="127.0.0.1"), ">", "s01")
    local = trashlab.Broker(unique("iot-msg")).start()
    try:
        def leafz() -> list:
            return json.load(urllib.request.urlopen(hub.monitor_url + "/leafz", timeout=2))["leafs"] or []

        # the leaf connection is made in the background
        await eventually(lambda: any(lf.get("account") == "S03" for lf in leafz()),
                         "the joined broker becoming a leaf of the hub in account S03",
                         seen=lambda: f"leafs {[lf.get('account') for lf in leafz()]}; the broker's log: "
                                      f"{local.output[-500:]}")
        col = await trashlab.Collector(local.url, name="local-col").start()
        # another notebook's broker of the same student: joined too, but private from this one
        other_notebook = trashlab.Broker(unique("iot-msg")).start()
        neighbour = await trashlab.Collector(other_notebook.url, name="neighbour").start()
        sim = await trashlab.Simulator(local.url, interval=0.01, count=50, sequence=True).start()
        await sim.wait(timeout=10)
        await col.wait_for(50, timeout=5)
        if seat.client_url:  # the student's own client on the hub reaches the class, not the local broker
            direct = await trashlab.servers.connection.connect(seat.client_url, name="direct")
            await direct.publish("trash-level", b'{"can_id":"1", "level":"1.0"}')
            await direct.flush()
            await direct.close()
        expected = 50 + bool(seat.client_url)
        await eventually(lambda: len(seen) >= expected, f"the instructor receiving the {expected} readings",
                         seen=lambda: f"{len(seen)}")
        await _caught_up(teacher, seen, "class.teacher.marker")
        assert len(seen) == expected and {s for s, _ in seen} == {"class.s03.trash-level"}, \
            f"expected {expected} readings on class.s03.trash-level, got {len(seen)} on {sorted({s for s, _ in seen})}"
        await _caught_up(other, seen_by_s01, "marker.s01")
        assert seen_by_s01 == [], f"s01 saw s03's readings: {seen_by_s01[:3]}"
        assert col.count == 50 and neighbour.count == 0
        await neighbour.stop()
        other_notebook.stop()
        for password in (hub.seats["s03"], hub.instructor_password):
            assert password not in local.output
            assert password not in hub.output
        await col.stop()
    finally:
        local.stop()
        for nc in (teacher, other):
            await nc.close()
    assert leave() is True and joined() is None
    private = trashlab.Broker(unique("iot-msg")).start()
    try:
        assert "leafnodes" not in private.config_text and private.config.leaf_remote is None
    finally:
        private.stop()


def test_join_with_a_wrong_password_says_so_without_printing_it(hub, class_file):
    wrong = hub.join_line("s01", host="127.0.0.1").replace(hub.seats["s01"], "Wr0ngPassw0rd")
    with pytest.raises(trashlab.errors.ConnectionFailed) as err:
        join(wrong)
    assert "password in your join line is wrong" in str(err.value)
    assert "Wr0ngPassw0rd" not in str(err.value)
    assert joined() is None and not class_file.exists()
    with pytest.raises(trashlab.errors.BadArgument):
        join("s01 hello")


async def test_class_watch_counts_students_and_answers_for_their_cans(hub):
    watch = await ClassWatch(hub.instructor_url, hub.monitor_url, hub.students).start()
    sims = []
    try:
        for student, count in (("s01", 30), ("s02", 10)):
            sims.append(await trashlab.Simulator(hub.student_url(student, host="127.0.0.1"), interval=0.01,
                                                 count=count, cans=5, seed=1, name=f"{student}-sim").start())
        for sim in sims:
            await sim.wait(timeout=10)
        await watch._poll_once()
        await eventually(lambda: watch.received >= 40, "the class watch receiving the 40 readings",
                         seen=lambda: f"{watch.received}")
        rows = {r["student"]: r for r in watch.rows()}
        assert rows["s01"]["received"] == 30 and rows["s02"]["received"] == 10 and rows["s03"]["received"] == 0, \
            {s: r["received"] for s, r in rows.items()}
        assert set(watch.online()) == {"s01", "s02"}
        assert sum(watch.distribution()) == rows["s01"]["cans"] + rows["s02"]["cans"]
        can, level = rows["s02"]["last"][0]
        answer = await watch.ask("s02", can)
        assert answer["can_id"] == f"s02/{can}" and answer["level"] == pytest.approx(level)
        with pytest.raises(trashlab.errors.CanNotFound):
            await watch.ask("s03", "1")
    finally:
        for sim in sims:
            await sim.stop()
        await watch.stop()


def test_cli_serve_writes_the_roster_and_prints_no_password(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trashlab", "classroom", "serve", "--students", "4",
                             "--dir", str(tmp_path / "class"), "--name", unique("hub")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            if "Ctrl-C" in line:
                break
        info = json.loads((tmp_path / "class" / "instructor.json").read_text())
        assert len(info["students"]) == 4
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=15)
    text = "".join(out) + rest
    assert proc.returncode == 0, text
    assert "roster.txt" in text and "4 students" in text
    for password in info["passwords"].values():
        assert password not in text
    # served again from the same folder: same students, passwords and ports, so the handed-out lines still work
    roster = (tmp_path / "class" / "roster.txt").read_text()
    proc = subprocess.Popen([sys.executable, "-m", "trashlab", "classroom", "serve", "--students", "9",
                             "--dir", str(tmp_path / "class"), "--name", unique("hub")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        for line in proc.stdout:
            if "Ctrl-C" in line:
                break
        assert (tmp_path / "class" / "roster.txt").read_text() == roster
        _check_login(parse_join_line(roster.splitlines()[-1]).client_url)
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


async def test_env_nats_url_set_to_the_join_line_puts_clients_without_a_url_in_the_student_account(hub, monkeypatch):
    """``%env NATS_URL=<roster line>``: clients started without a URL log in to the student's account."""
    teacher, seen = await _listen(hub.instructor_url, "class.>", "teacher")
    monkeypatch.setenv("NATS_URL", hub.join_line("s02", host="127.0.0.1"))
    sim = await trashlab.Simulator(interval=0.01, count=5, name="env-sim").start()
    await sim.wait(timeout=10)
    await sim.stop()
    await eventually(lambda: len(seen) >= 5, "the instructor receiving the 5 readings", seen=lambda: f"{seen}")
    await _caught_up(teacher, seen, "class.teacher.marker")
    await teacher.close()
    assert [s for s, _ in seen] == ["class.s02.trash-level"] * 5


def test_rerunning_the_broker_cell_after_joining_makes_it_join(hub, class_file):
    """Broker("iot-msg").start() again after trashlab.classroom.join restarts it as a leaf node; after leave, private."""
    name = unique("iot-msg")
    first = trashlab.Broker(name).start()
    try:
        assert first.config.leaf_remote is None
        join(hub.join_line("s02", host="127.0.0.1"))
        second = trashlab.Broker(name).start()
        assert second.pid != first.pid and second.config.leaf_remote and "leafnodes" in second.config_text
        assert trashlab.Broker(name).start().pid == second.pid  # same settings: reused
        leave()
        third = trashlab.Broker(name).start()
        assert third.pid != second.pid and third.config.leaf_remote is None
        third.stop()
    finally:
        first.stop()


async def _until(check, what: str, seen=lambda: "", timeout: float = 15.0) -> None:
    """Wait for ``check()``; fail saying what was awaited and what was seen."""
    if not await wait_until(check, timeout=timeout, what=what, show=False):
        pytest.fail(f"{what}: not after {timeout:g} s; seen: {seen()}")


def _hub_interest(broker: trashlab.Broker) -> list:
    """The subscriptions the hub forwarded to a student's broker (its leaf connection's, in /leafz)."""
    return [s for lf in fetch(broker.monitor_url, "leafz?subs=1").get("leafs") or []
            for s in lf.get("subscriptions_list") or []]


#: every wildcard a student may subscribe to on the hub with their own credentials
OWN_WILDCARDS = [">", "*", "class.>", "trash-level.>", "$SYS.>"]


@pytest.mark.parametrize("wildcard", OWN_WILDCARDS)
async def test_a_student_s_own_wildcard_never_cuts_their_class_feed(hub, class_file, wildcard):
    """The course's path (a joined student's Broker, a leaf node of the hub, a Simulator on it): the student
    subscribes to a wildcard on the hub with their own login, unsubscribes, subscribes again, restarts their
    broker; after each step the instructor receives exactly the readings the student published."""
    student = "s02"
    join(hub.join_line(student, host="127.0.0.1"))
    teacher, seen = await _listen(hub.instructor_url, class_subject(student), "teacher")
    spy, seen_by_s01 = await _listen(hub.student_url("s01", host="127.0.0.1"), ">", "s01-spy")
    me = await trashlab.servers.connection.connect(hub.student_url(student, host="127.0.0.1"), name="own-wildcard")
    mine: list = []

    async def on_mine(msg):
        mine.append(msg.subject)

    local = trashlab.Broker(unique("iot-msg")).start()
    sent: list = []

    async def publish(n: int, step: str) -> None:
        sim = await trashlab.Simulator(local.url, interval=0, count=n, sequence=True, name=f"sim-{step}",
                                       on_publish=sent.append).start()
        assert await sim.wait(timeout=15) == n, f"{step}: the simulator published {sim.published} of {n}"
        await sim.stop()
        await _until(lambda: len(seen) >= len(sent),
                     f"{step}: the instructor receives all {len(sent)} readings {student} published",
                     lambda: f"{len(seen)} received; the broker's leaf interest {_hub_interest(local)}")

    try:
        await _until(lambda: "trash-level" in _hub_interest(local), "the class's interest reaches the student's broker",
                     lambda: f"{_hub_interest(local)}; broker log: {local.output[-400:]}")
        await publish(20, "before any wildcard")
        sub = await me.subscribe(wildcard, cb=on_mine)
        await me.flush()
        await _until(lambda: wildcard in _hub_interest(local), f"the student's {wildcard!r} reaches their broker",
                     lambda: str(_hub_interest(local)))
        await publish(20, f"while subscribed to {wildcard!r}")
        if wildcard in (">", "*"):  # their own wildcard gets their own readings
            await _until(lambda: len(mine) == 20, f"the student's {wildcard!r} gets their 20 readings", lambda: str(len(mine)))
        await sub.unsubscribe()
        await me.flush()
        await _until(lambda: wildcard not in _hub_interest(local), f"the unsubscribed {wildcard!r} leaves their broker",
                     lambda: str(_hub_interest(local)))
        await publish(20, f"after unsubscribing {wildcard!r}")
        await me.subscribe(wildcard, cb=on_mine)
        await me.flush()
        local.stop()
        local.restart()
        await _until(lambda: {wildcard, "trash-level"} <= set(_hub_interest(local)),
                     "the restarted broker is a leaf again, with the class's interest and the student's wildcard",
                     lambda: str(_hub_interest(local)))
        await publish(20, f"after a broker restart, {wildcard!r} subscribed")
        assert sorted(d for _, d in seen) == sorted(sent), "the instructor's readings differ from what was published"
        assert {s for s, _ in seen} == {class_subject(student)}
        assert seen_by_s01 == [], f"s01 saw {student}'s traffic: {seen_by_s01[:3]}"
    finally:
        local.stop()
        for nc in (teacher, spy, me):
            await nc.close()


def _serve(folder, name: str):
    """``trashlab classroom serve --dir folder`` in the background; returns it once it says Ctrl-C stops it."""
    proc = subprocess.Popen([sys.executable, "-m", "trashlab", "classroom", "serve", "--students", "2",
                             "--dir", str(folder), "--name", name],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            text=True)
    out = []
    for line in proc.stdout:
        out.append(line)
        if "Ctrl-C" in line:
            return proc
    proc.wait(timeout=15)
    pytest.fail(f"`classroom serve` did not start (exit {proc.returncode}): {''.join(out)[-2000:]}")


def _stop(proc) -> None:
    proc.terminate()
    proc.communicate(timeout=15)


async def test_an_open_class_page_lives_through_a_hub_restart(tmp_path):
    """`classroom serve` again from the same folder keeps the monitoring port too, so an open class page
    (its ClassWatch) sees the hub answer again, the student online again and their readings again; and it
    keeps JetStream in the class folder, so a page opened after the restart remembers the progress and the
    class report's levels from before."""
    folder = tmp_path / "class"
    name = unique("hub")
    hub = await asyncio.to_thread(_serve, folder, name)
    watch = sim = again = None
    try:
        first = read_class(folder)
        watch = await ClassWatch.from_folder(folder).start()
        assert watch.jetstream and (folder / "jetstream").is_dir(), "`classroom serve` gives the hub JetStream"
        line = parse_join_line((folder / "students" / "s01.txt").read_text())
        s01 = await trashlab.servers.connection.connect(line.client_url, name="s01")
        await s01.publish(PROGRESS, payload("03/publish_readings", False, 1))
        await s01.close()
        sim = await trashlab.Simulator(line.client_url, interval=0.02, name="s01-sim").start()
        await _until(lambda: watch.monitor_ok and "s01" in watch.online() and watch.received > 0
                     and watch.progress["s01"] and watch.report.store.items() and not watch.report.store._dirty,
                     "the class page sees s01, their progress, and their levels in the bucket",
                     lambda: f"monitor {watch.monitor_ok}, online {watch.online()}, progress {watch.progress}")
        remembered = dict(watch.report.store.items())
        await asyncio.to_thread(_stop, hub)
        await _until(lambda: not watch.monitor_ok, "the class page notices the hub is gone",
                     lambda: f"monitor {watch.monitor_ok}")
        before = watch.received
        hub = await asyncio.to_thread(_serve, folder, name)
        assert read_class(folder)["monitor_url"] == first["monitor_url"], "the monitoring port moved"
        await _until(lambda: watch.monitor_ok and "s01" in watch.online() and watch.received > before + 10,
                     "the class page sees the restarted hub, s01 online and their readings again",
                     lambda: f"monitor {watch.monitor_ok}, online {watch.online()}, received {watch.received - before}")
        again = await ClassWatch.from_folder(folder).start()  # a page opened (or reloaded) after the restart
        assert again.progress["s01"]["03/publish_readings"][:2] == [False, 1], again.progress
        assert set(remembered) <= {k for k, _ in again.report.store.items()}, "the class report forgot levels"
    finally:
        if sim is not None:
            await sim.stop()
        for w in (watch, again):
            if w is not None:
                await w.stop()
        await asyncio.to_thread(_stop, hub)


def test_a_class_joined_before_the_leaf_login_existed_still_joins_as_the_leaf_user(hub, class_file):
    """A class.json written by an earlier trashlab holds the leaf URL with the client login (``s01``): brokers
    started now log in as ``s01.leaf`` all the same (the hub refuses ``s01`` from a leaf node)."""
    seat = parse_join_line(hub.join_line("s01", host="127.0.0.1"))
    old = seat.leaf_url.replace(f"//{leaf_user('s01')}:", "//s01:")
    class_file.write_text(json.dumps({"student": "s01", "client_url": seat.client_url, "leaf_url": old}))
    assert leaf_remote() == seat.leaf_url
    assert f"//{leaf_user('s01')}:" in seat.leaf_url and hub.seats["s01"] not in repr(seat)
