"""A class hub as a 3-node cluster: join lines naming every node, students' brokers spread over the nodes
and failing over, the class page seeing everyone whichever node they are on, and a node killed mid-class
(``trashlab.course.classdrill``; ``benchmarks/class_cluster.py`` is the 300-student run)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from trashlab._secrets import redact
from trashlab.course.classdrill import class_drill
from trashlab.notebook.classview import ClassWatch, group_rows
from trashlab.servers.classroom import parse_join_line, read_class
from trashlab.servers.config import ServerConfig
from conftest import eventually, unique

STUDENTS = int(os.environ.get("TRASHLAB_CLASS_CLUSTER_STUDENTS", "24"))


@pytest.mark.quick
def test_a_join_line_naming_every_node_gives_one_leaf_remote_listing_them_all():
    line = "s07  nats://s07:Secr3tPw@hub1:4222?leaf=7422&node=hub2:4223:7423&node=hub3:4224:7424"
    seat = parse_join_line(line)
    assert seat.client_url == ("nats://s07:Secr3tPw@hub1:4222,nats://s07:Secr3tPw@hub2:4223,"
                               "nats://s07:Secr3tPw@hub3:4224")
    assert seat.leaf_url.split(",") == [f"nats-leaf://s07.leaf:Secr3tPw@{h}" for h in ("hub1:7422", "hub2:7423",
                                                                                        "hub3:7424")]
    text = ServerConfig("iot-msg", leaf_remote=seat.leaf_url).render()
    remote = next(ln for ln in text.splitlines() if ln.startswith("leafnodes"))
    assert remote.count("nats-leaf://") == 3 and "url: [" in remote, remote
    assert "Secr3tPw" not in repr(seat) and "Secr3tPw" not in redact(text)
    with pytest.raises(Exception, match="node='hub2'.*HOST:PORT:LEAFPORT") as err:
        parse_join_line("nats://s07:Secr3tPw@hub1:4222?leaf=7422&node=hub2")
    assert "Secr3tPw" not in str(err.value)


async def test_a_node_killed_mid_class_every_student_back_and_the_kept_readings_lose_nothing(figure):
    """Students' brokers (real nats-servers joined with their roster line) spread over a 3-node hub that keeps
    readings; the node with the most students is SIGKILLed while they publish. Every student comes back (a leaf
    of a surviving node) and the class page (ClassWatch polling every node) shows them all. The hub's stream
    holds every reading every student published, once each (their brokers' feeds sent each until the stream
    acknowledged it). The live feed (core NATS, at most once) against the witness: students on the surviving
    nodes lose nothing, students of the killed node at most one run of consecutive readings (those their broker
    published before its leaf connected again), nobody gets a duplicate."""
    seen: dict = {}
    watch = None

    async def stage(name: str, hub) -> None:
        nonlocal watch
        if name == "joined":
            watch = await ClassWatch(hub.instructor_url, hub.monitor_url, hub.students,
                                     monitor_urls=hub.monitor_urls).start()
            await eventually(lambda: len(watch.online()) == len(hub.students), "the class page seeing every student",
                             seen=lambda: f"online {len(watch.online())} of {len(hub.students)}; "
                                          f"nodes down {watch.monitor_down}")
        else:
            await eventually(lambda: len(watch.online()) == len(hub.students) and len(watch.monitor_down) == 1,
                             "the class page seeing every student again, and the killed node down",
                             seen=lambda: f"online {len(watch.online())} of {len(hub.students)}; "
                                          f"nodes down {watch.monitor_down}", timeout=30)
            seen["online_after_kill"] = len(watch.online())

    try:
        result = await class_drill(STUDENTS, 3, rate=5.0, warmup=3, after=5, timeout=120, name=unique("chub"),
                                   progress=False, stage=stage)
    finally:
        if watch is not None:
            await watch.stop()
    figures = result.figures()
    figure("class cluster", "class cluster drill: " + json.dumps(figures))
    where = result.placement
    assert len(where) == STUDENTS and len(set(where.values())) >= 2, f"students not spread over the nodes: {where}"
    assert result.moved, "the killed node had no student"
    assert set(result.back_seconds) == set(result.moved)
    # a generous ceiling for a loaded 2-core CI (docs/workshop.md has the measured figure; the promise is 10 s)
    assert result.all_back_seconds is not None and result.all_back_seconds < 30, figures
    assert not result.duplicates, f"duplicates per student: {result.duplicates}"
    elsewhere = {s: n for s, n in result.lost.items() if s not in result.moved}
    assert not elsewhere, f"students on the surviving nodes lost readings: {elsewhere}; gaps {result.gaps}"
    several = {s: g for s, g in result.gaps.items() if len(g) > 1}
    assert not several, f"a killed node's student lost more than one run of readings: {several}"
    assert all(result.published[s] > 0 for s in result.published)
    assert seen["online_after_kill"] == STUDENTS
    # the node killed wrote the kept readings (unless no student was on it): the stream elected a new leader
    assert result.killed == result.stream_leader or result.stream_leader not in where.values(), figures
    assert result.keep_readings and sum(result.kept.values()) == sum(result.published.values()), figures
    assert not result.kept_lost, f"readings missing from the hub's stream: {result.kept_lost}; gaps {result.kept_gaps}"
    assert not result.kept_duplicates, f"readings twice in the hub's stream: {result.kept_duplicates}"


def _serve(folder, name: str, *extra: str):
    proc = subprocess.Popen([sys.executable, "-m", "trashlab", "classroom", "serve", "--students", "3",
                             "--dir", str(folder), "--name", name, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = []
    for line in proc.stdout:
        out.append(line)
        if "Ctrl-C" in line:
            return proc, "".join(out)
    proc.wait(timeout=15)
    pytest.fail(f"`classroom serve {' '.join(extra)}` did not start (exit {proc.returncode}): {''.join(out)[-2000:]}")


def test_cli_serves_a_three_node_class_and_serves_it_again_on_the_same_ports(tmp_path):
    """`classroom serve --nodes 3`: join lines naming every node, 0600 files, no password printed; served again
    from the folder (without --nodes) every node comes back on its ports with the same passwords."""
    folder = tmp_path / "class"
    name = unique("chub")
    proc, out = _serve(folder, name, "--nodes", "3")
    try:
        info = read_class(folder)
        assert len(info["monitor_urls"]) == 3 and len(info["nodes"]) == 3 and len(info["instructor_url"].split(",")) == 3
        line = (folder / "students" / "s02.txt").read_text()
        assert line.count("&node=") == 2, line
        for path in (folder / "roster.txt", folder / "instructor.json", folder / "students" / "s02.txt"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=20)[0]
    for secret in [*info["passwords"].values(), info["route_password"]]:
        assert secret not in out + rest
    proc, out = _serve(folder, name)  # without --nodes: the folder's class has three
    try:
        again = read_class(folder)
        assert again["nodes"] == info["nodes"] and again["passwords"] == info["passwords"], (info["nodes"], again["nodes"])
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.mark.quick
def test_rows_of_hundreds_of_students_come_in_groups_naming_who_to_look_at():
    rows = [{"student": f"s{i:03d}", "connections": int(i % 50 != 0), "rate": 0.0 if i % 70 == 0 else 1.0,
             "received": 10} for i in range(1, 301)]
    groups = group_rows(rows, 40)
    assert [g["label"] for g in groups][:2] == ["s001–s040", "s041–s080"] and len(groups) == 8
    assert sum(len(g["students"]) for g in groups) == 300 and groups[-1]["students"][-1] == "s300"
    assert [s for g in groups for s in g["offline"]] == ["s050", "s100", "s150", "s200", "s250", "s300"]
    assert [s for g in groups for s in g["silent"]] == ["s070", "s140", "s210", "s280"]
    assert groups[0]["online"] == 40 and groups[1]["online"] == 39 and groups[0]["received"] == 400
    with pytest.raises(Exception, match="students per group"):
        group_rows(rows, 0)
