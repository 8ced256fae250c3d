"""The class hub on three hosts (docs/workshop.md, "Three hosts"): five network namespaces on one bridge (three
hub hosts, a student host, the bridge's own), created and removed by this test; needs root and iproute2.

Each hub host runs the documented command (``classroom serve --hosts A1,A2,A3 --this An --listen 0.0.0.0
--monitor-listen An``; the second and third with the first one's ``instructor.json``). Three students on the
student host join with their roster lines and run their own brokers and simulators; the class page on hub1
(a ClassWatch polling every node's monitoring) sees all three whichever node they are on. Then the node
carrying the most students is SIGKILLed: every student is back on the page and their readings flow again.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from netns import add_namespace, ip, python_in, remove_namespaces, skip_without_namespaces
from sessions import child_env, end_all, wait_for_line

ROOT = Path(__file__).resolve().parent.parent

skip_without_namespaces()


@pytest.fixture
def room():
    """{"hub1": (namespace, address), "hub2": ..., "hub3": ..., "student": ...} on one bridge, removed afterwards."""
    tag = uuid.uuid4().hex[:5]
    net = f"10.214.{random.randint(0, 255)}"
    switch = f"tlsw-{tag}"
    hosts = {name: (f"tl{name[0]}{name[-1]}-{tag}", f"{net}.{i + 1}")
             for i, name in enumerate(("hub1", "hub2", "hub3", "student"))}
    made = []
    try:
        add_namespace(switch)
        made.append(switch)
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        for i, (ns, addr) in enumerate(hosts.values()):
            add_namespace(ns)
            made.append(ns)
            host_end, switch_end = f"vh{i}-{tag}", f"vs{i}-{tag}"
            ip("link", "add", host_end, "type", "veth", "peer", "name", switch_end)
            ip("link", "set", host_end, "netns", ns)
            ip("link", "set", switch_end, "netns", switch)
            ip("-n", switch, "link", "set", switch_end, "master", "br0")
            ip("-n", switch, "link", "set", switch_end, "up")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", host_end)
            ip("-n", ns, "link", "set", host_end, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield hosts
    finally:
        remove_namespaces(reversed(made))


def _answer(page: subprocess.Popen, log: Path) -> dict:
    line = page.stdout.readline()
    if not line.strip():
        pytest.fail(f"the class page on hub1 said nothing (exit {page.poll()}); its log: {log.read_text()[-1500:]}")
    return json.loads(line)


#: the class page's model on hub1: says where everyone is, waits for "killed", then for everyone back
PAGE = """
import asyncio, json, sys
from trashlab.notebook.classview import ClassWatch

async def until(check, what, timeout=60):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            print(json.dumps({"failed": what}), flush=True)
            sys.exit(1)
        await asyncio.sleep(0.1)  # the polling loop of a wait for a condition

async def main():
    watch = await ClassWatch.from_folder(sys.argv[1]).start()
    await until(lambda: len(watch.online()) == len(watch.students) and all(r["received"] > 0 for r in watch.rows()),
                "every student online and heard")
    print(json.dumps({"online": watch.online(), "monitor_urls": watch.monitor_urls}), flush=True)
    sys.stdin.readline()  # the test killed a node
    before = {r["student"]: r["received"] for r in watch.rows()}
    await until(lambda: len(watch.monitor_down) == 1, "the page noticing the killed node")
    await until(lambda: len(watch.online()) == len(watch.students)
                and all(r["received"] > before[r["student"]] + 5 for r in watch.rows()),
                "every student online again with new readings")
    print(json.dumps({"online": watch.online(), "down": watch.monitor_down}), flush=True)
    await watch.stop()
    # the class keeps readings: the stream on the two nodes left has every student's, 3 replicas
    import nats, nats.errors
    kept = json.load(open(sys.argv[1] + "/instructor.json"))["kept_url"].split(",")
    nc = await nats.connect(servers=kept, max_reconnect_attempts=-1)
    js = nc.jetstream(timeout=5)
    got = {}
    async def every_student_kept():
        nonlocal got
        try:
            info = await js.stream_info("CLASS_READINGS", subjects_filter="kept.>")
        except (nats.errors.Error, asyncio.TimeoutError):  # a new leader being elected
            return False
        got = {"replicas": info.config.num_replicas, "subjects": sorted(info.state.subjects or {})}
        return len(got["subjects"]) == len(watch.students)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not await every_student_kept() and loop.time() < deadline:
        await asyncio.sleep(0.2)  # the polling loop of a wait for a condition
    print(json.dumps(got), flush=True)
    await nc.close()

asyncio.run(main())
"""


def test_a_class_on_three_hub_hosts_survives_losing_one(room, tmp_path):
    addrs = [room[h][1] for h in ("hub1", "hub2", "hub3")]
    hosts = ",".join(addrs)
    procs: list = []
    logs: list = []
    try:
        folders = [tmp_path / f"hub{i}" / "class" for i in (1, 2, 3)]
        pids = {}
        for i, (host, folder) in enumerate(zip(("hub1", "hub2", "hub3"), folders, strict=True)):
            if i:  # the first host's roster, passwords and route password, copied privately
                folder.mkdir(parents=True, mode=0o700)
                shutil.copy2(folders[0] / "instructor.json", folder / "instructor.json")
            log = tmp_path / f"{host}.log"
            logs.append(log)
            ns, addr = room[host]
            proc = subprocess.Popen(python_in(ns, "-m", "trashlab", "classroom", "serve", "--students", "3", "--hosts", hosts,
                                        "--this", addr, "--listen", "0.0.0.0", "--monitor-listen", addr,
                                        "--dir", str(folder), "--keep-readings"),
                                    env=child_env(), stdout=open(log, "w"), stderr=subprocess.STDOUT)
            procs.append(proc)
            pids[host] = int(wait_for_line(log, r"pid (\d+); Ctrl-C", proc).split()[1].rstrip(";"))
        info = json.loads((folders[0] / "instructor.json").read_text())
        assert info["monitor_urls"] == [info["monitor_url"], f"http://{addrs[1]}:8222", f"http://{addrs[2]}:8222"]
        assert len(info["instructor_url"].split(",")) == 3
        lines = {ln.split()[0]: ln.split()[1] for ln in (folders[0] / "roster.txt").read_text().splitlines()
                 if not ln.startswith("#")}
        assert lines["s01"].endswith(f"@{addrs[0]}:4222?leaf=7422&node={addrs[1]}:4222:7422&node={addrs[2]}:4222:7422&keep=1")
        assert (folders[1] / "roster.txt").read_text() == (folders[0] / "roster.txt").read_text()

        student_ns = room["student"][0]
        for s in ("s01", "s02", "s03"):
            class_file = str(tmp_path / f"{s}-class.json")
            (tmp_path / f"{s}.txt").write_text(f"{s}  {lines[s]}\n")
            joined = subprocess.run(python_in(student_ns, "-m", "trashlab", "classroom", "join", str(tmp_path / f"{s}.txt")),
                                    env=child_env(TRASHLAB_CLASS_FILE=class_file), capture_output=True, text=True, timeout=30)
            assert joined.returncode == 0, joined.stderr
            log = tmp_path / f"{s}-broker.log"
            logs.append(log)
            broker = subprocess.Popen(python_in(student_ns, "-m", "trashlab", "broker", "--name", f"iot-msg-{s}"),
                                      env=child_env(TRASHLAB_CLASS_FILE=class_file), stdout=open(log, "w"),
                                      stderr=subprocess.STDOUT)
            procs.append(broker)
            local = wait_for_line(log, r"nats://127\.0\.0\.1:\d+", broker)
            procs.append(subprocess.Popen(python_in(student_ns, "-m", "trashlab", "sim", "--servers", local,
                                              "--interval", "0.05", "-q"), env=child_env(),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        page_log = tmp_path / "page.log"  # its log lines (a connection lost, found again) apart from its answers
        page = subprocess.Popen(python_in(room["hub1"][0], "-c", PAGE, str(folders[0])), env=child_env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=open(page_log, "w"), text=True)
        procs.append(page)
        first = _answer(page, page_log)
        assert first["online"] == ["s01", "s02", "s03"], first
        where = {}
        for host in ("hub1", "hub2", "hub3"):
            leafz = subprocess.run(python_in(room[host][0], "-c", "import sys, urllib.request; print(urllib.request.urlopen("
                                                           "sys.argv[1] + '/leafz').read().decode())",
                                       f"http://{room[host][1]}:8222"), env=child_env(), capture_output=True, text=True,
                                   timeout=30).stdout
            where[host] = len(json.loads(leafz).get("leafs") or [])
        assert sum(where.values()) == 3, where
        victim = max(where, key=lambda h: where[h])
        os.kill(pids[victim], signal.SIGKILL)  # the nats-server this test's serve started
        page.stdin.write("killed\n")
        page.stdin.flush()
        after = _answer(page, page_log)
        assert after["online"] == ["s01", "s02", "s03"] and len(after["down"]) == 1, (where, victim, after)
        kept = _answer(page, page_log)
        assert kept == {"replicas": 3, "subjects": [f"kept.{s}.trash-level" for s in ("s01", "s02", "s03")]}, kept
    finally:
        end_all(procs)
    text = "".join(log.read_text() for log in logs)
    for secret in [*info["passwords"].values(), info["route_password"]]:
        assert secret not in text
