"""The classroom's real geometry: the hub on one host, a student on another (two network namespaces
joined by a veth pair, created and removed by this test; needs root and iproute2).

The hub runs the documented room command (``--listen 0.0.0.0 --port 4222 --leaf-port 7422``); from
the student's host the monitoring port is closed, a wrong password is refused in one line without the
password, and the student's own broker, joined with the roster line, reaches the instructor.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from netns import add_namespace, ip, python_in, remove_namespaces, skip_without_namespaces
from sessions import child_env, end_all, wait_for_line

ROOT = Path(__file__).resolve().parent.parent

skip_without_namespaces()


@pytest.fixture
def two_hosts():
    """(hub namespace, student namespace, hub address) on a private /24, removed afterwards."""
    tag = uuid.uuid4().hex[:6]
    hub_ns, student_ns = f"tlh-{tag}", f"tls-{tag}"
    net = f"10.213.{random.randint(0, 255)}"
    add_namespace(hub_ns)
    try:
        add_namespace(student_ns)
        ip("link", "add", f"vh-{tag}", "type", "veth", "peer", "name", f"vs-{tag}")
        ip("link", "set", f"vh-{tag}", "netns", hub_ns)
        ip("link", "set", f"vs-{tag}", "netns", student_ns)
        for ns, dev, host in ((hub_ns, f"vh-{tag}", 1), (student_ns, f"vs-{tag}", 2)):
            ip("-n", ns, "addr", "add", f"{net}.{host}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield hub_ns, student_ns, f"{net}.1"
    finally:
        remove_namespaces((hub_ns, student_ns))


TEACHER = """
import asyncio, json, sys
import trashlab
async def main():
    url = sys.stdin.readline().strip()
    seen = {}
    nc = await trashlab.servers.connection.connect(url, name="teacher")
    async def cb(msg):
        seen[msg.subject] = seen.get(msg.subject, 0) + 1
    await nc.subscribe("class.>", cb=cb)
    await nc.flush()
    print("ready", flush=True)
    want = int(sys.stdin.readline())  # the test says how many readings were published
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while sum(seen.values()) < want and loop.time() < deadline:
        await asyncio.sleep(0.05)  # the polling loop of a wait (at most 30 s) for them
    await nc.flush()
    await nc.close()
    print(json.dumps(seen), flush=True)
asyncio.run(main())
"""


def test_a_student_on_another_host_joins_the_class(two_hosts, tmp_path):
    hub_ns, student_ns, hub_addr = two_hosts
    folder = tmp_path / "class"
    procs = []
    try:
        hub_log = tmp_path / "hub.log"
        hub = subprocess.Popen(python_in(hub_ns, "-m", "trashlab", "classroom", "serve", "--students", "3", "--listen",
                                   "0.0.0.0", "--port", "4222", "--leaf-port", "7422", "--advertise", hub_addr,
                                   "--dir", str(folder)),
                               env=child_env(), stdout=open(hub_log, "w"), stderr=subprocess.STDOUT)
        procs.append(hub)
        wait_for_line(hub_log, "Ctrl-C stops the hub", hub)
        info = json.loads((folder / "instructor.json").read_text())
        lines = {ln.split()[0]: ln.split()[1] for ln in (folder / "roster.txt").read_text().splitlines()
                 if not ln.startswith("#")}
        assert lines["s01"].startswith("nats://s01:") and lines["s01"].endswith(f"@{hub_addr}:4222?leaf=7422")

        # from the student's host: the monitoring port is closed, the client port is open
        monitor_port = int(info["monitor_url"].rsplit(":", 1)[1])
        probe = subprocess.run(python_in(student_ns, "-c", (
            "import socket, sys\n"
            f"def ok(p):\n    try:\n        socket.create_connection(('{hub_addr}', p), timeout=2).close(); return 1\n"
            "    except OSError:\n        return 0\n"
            f"print(ok({monitor_port}), ok(4222))")), env=child_env(), capture_output=True, text=True, timeout=30)
        assert probe.stdout.split() == ["0", "1"], probe.stdout + probe.stderr

        # a wrong password from the student's host: refused in one line, the password not shown
        class_file = str(tmp_path / "student-class.json")
        wrong = lines["s01"].replace(info["passwords"]["s01"], "Wr0ngPassw0rd")
        bad = subprocess.run(python_in(student_ns, "-m", "trashlab", "classroom", "join", wrong),
                             env=child_env(TRASHLAB_CLASS_FILE=class_file), capture_output=True, text=True, timeout=30)
        assert bad.returncode == 1 and "password in your join line is wrong" in bad.stderr
        assert "Wr0ngPassw0rd" not in bad.stdout + bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        foreign = subprocess.run(python_in(student_ns, "-m", "trashlab", "levels", "--servers",
                                     lines["s01"].replace(info["passwords"]["s01"], info["passwords"]["s02"])),
                                 env=child_env(), capture_output=True, text=True, timeout=30)
        assert foreign.returncode == 1 and "authorization violation" in foreign.stderr
        assert info["passwords"]["s02"] not in foreign.stderr

        # the instructor listens on the hub's host
        teacher = subprocess.Popen(python_in(hub_ns, "-c", TEACHER), env=child_env(), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(teacher)
        teacher.stdin.write(info["instructor_url"] + "\n")
        teacher.stdin.flush()
        assert teacher.stdout.readline().strip() == "ready"

        # the student joins and runs the lab on their own broker
        joined = subprocess.run(python_in(student_ns, "-m", "trashlab", "classroom", "join", lines["s01"]),
                                env=child_env(TRASHLAB_CLASS_FILE=class_file), capture_output=True, text=True, timeout=30)
        assert joined.returncode == 0, joined.stderr
        broker_log = tmp_path / "student-broker.log"
        broker = subprocess.Popen(python_in(student_ns, "-m", "trashlab", "broker", "--name", "iot-msg"),
                                  env=child_env(TRASHLAB_CLASS_FILE=class_file), stdout=open(broker_log, "w"),
                                  stderr=subprocess.STDOUT)
        procs.append(broker)
        local = wait_for_line(broker_log, r"nats://127\.0\.0\.1:\d+", broker)
        wait_for_line(broker_log, rf"in the class: a leaf node of the hub nats-leaf://s01\.leaf:\*\*\*@{re.escape(hub_addr)}:7422", broker)
        leafz = ""
        for _ in range(100):  # the leaf connection comes up in the background
            leafz = subprocess.run(python_in(hub_ns, "-c", f"import urllib.request; print(urllib.request.urlopen("
                                                     f"'{info['monitor_url']}/leafz').read().decode())"),
                                   env=child_env(), capture_output=True, text=True, timeout=30).stdout
            if '"account": "S01"' in leafz:
                break
            time.sleep(0.2)  # the polling loop of this wait
        assert '"account": "S01"' in leafz, leafz
        sim = subprocess.run(python_in(student_ns, "-m", "trashlab", "sim", "--servers", local, "--count", "50",
                                 "--interval", "0.01", "-q"), env=child_env(), capture_output=True, text=True, timeout=60)
        assert sim.returncode == 0, sim.stderr
        teacher.stdin.write("50\n")  # the teacher waits for the 50 (at most 30 s), then says what it saw
        teacher.stdin.flush()
        seen = json.loads(teacher.stdout.readline())
        assert seen == {"class.s01.trash-level": 50}, f"the instructor saw {seen}, expected the 50 readings of s01"
    finally:
        end_all(procs)
    logs = hub_log.read_text() + (broker_log.read_text() if "broker_log" in locals() else "")
    assert "class hub" in logs and "stopped" in hub_log.read_text()
    for password in info["passwords"].values():
        assert password not in logs
