"""No password leaves the process that holds it: not on a command line (``ps``), not in a log line, not in
a repr or an error message, not in a file that group or other may read.

Each kind of credentialed thing is started for real (a broker with a client and a route password, the lab's
cluster and its ``--routes=nats-route://ruser:T0pS3cr3t@...``, an accounts broker with spawned simulator and
report processes, a class hub with a student's leaf-node broker, the CLI), then everything this test process
can see is searched for the password: the command line of every process whose parent chain leads here, the
log lines captured from trashlab and every child's output, the reprs and strs of the objects, every file
under the state folder and trashlab's temporary folders.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterable

import psutil
import pytest

import trashlab
from trashlab.servers import processes
from trashlab.servers.accounts import AccountsBroker
from trashlab.servers.classroom import ClassHub, _check_login, join, leave
from trashlab.servers.connection import resolve_servers
from conftest import unique


def _pw() -> str:
    return "pw-" + secrets.token_hex(8)


def _folders() -> "list[Path]":
    """The state folder and every temporary folder this process's trashlab made (brokers' configs, stores)."""
    return [processes.state_dir(), *(Path(d) for d in processes._temp_dirs)]


def _exposures(secret: str, objects: Iterable[object] = (), logs: str = "", folders: Iterable[Path] = ()) -> "list[str]":
    """Where ``secret`` can be read by someone who should not: each place as one line (the secret blanked)."""
    found = []

    def hide(text: str) -> str:
        return text.replace(secret, "<THE PASSWORD>")[:300]

    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if secret in cmd:
            found.append(f"command line of pid {p.pid} (ps shows it to every user): {hide(cmd)}")
    for child in processes.children():
        for line in child.output.splitlines():
            if secret in line:
                found.append(f"output of {child.kind} {child.name}: {hide(line)}")
    for line in logs.splitlines():
        if secret in line:
            found.append(f"log line: {hide(line)}")
    for obj in objects:
        for show in (repr, str):
            text = show(obj)
            if secret in text:
                found.append(f"{show.__name__}() of a {type(obj).__name__}: {hide(text)}")
    for folder in [*_folders(), *folders]:
        for path in [folder, *folder.rglob("*")]:
            try:
                mode = stat.S_IMODE(path.stat().st_mode)
                if path.is_dir():
                    if mode & 0o077:
                        found.append(f"folder {path} is mode {mode:o}, not 0700")
                    continue
                if secret in path.read_text(errors="replace") and mode & 0o077:
                    found.append(f"file {path} (mode {mode:o}: group/other may read it) holds the password")
            except OSError:
                continue  # removed in between
    return found


def _assert_kept(secret: str, what: str, **where) -> None:
    leaks = _exposures(secret, **where)
    assert not leaks, f"the password of {what} is exposed:\n  " + "\n  ".join(leaks)


@pytest.fixture
def logs(caplog):
    """Every trashlab log line, debug included."""
    caplog.set_level(logging.DEBUG, logger="trashlab")
    return caplog


def test_a_broker_with_a_client_and_a_route_password(logs):
    client_pw, route_pw = _pw(), _pw()
    seed = trashlab.Broker(unique("sec"), user="teacher", password=client_pw, cluster=True,
                           route_user="router", route_password=route_pw).start()
    joiner = trashlab.Broker(unique("secj"), routes=[seed.route_url], route_user="router",
                             route_password=route_pw)
    try:
        joiner.start()
        resolved = resolve_servers(seed.name)
        assert client_pw in seed.url and client_pw in resolved.urls[0]  # the values themselves still work
        objects = [seed, joiner, seed.config, joiner.config, seed.config.cluster, resolved]
        for secret, what in ((client_pw, "the client user"), (route_pw, "the routes")):
            _assert_kept(secret, what, objects=objects, logs=logs.text)
        assert "teacher:***@" in repr(seed), repr(seed)  # the user stays visible, the password does not
    finally:
        joiner.stop()
        seed.stop()


async def test_the_labs_cluster_and_its_routes_url(logs):
    cluster = trashlab.Cluster(size=2, name=unique("seccl"))
    await cluster.astart()
    lab = trashlab.Broker(unique("seclab"), routes=[f"nats-route://ruser:T0pS3cr3t@{cluster.first.name}:6222"])
    try:
        extra = cluster.add_node()
        lab.start()
        await cluster.wait_formed()
        nodes = [*cluster.nodes.values(), lab]
        objects = [cluster, cluster.status(), *nodes, *(n.config for n in nodes), extra.config.cluster]
        _assert_kept("T0pS3cr3t", "the lab's route user", objects=objects, logs=logs.text)
    finally:
        lab.stop()
        cluster.stop()


async def test_spawned_services_of_an_accounts_broker(logs):
    gateway_pw, report_pw = _pw(), _pw()
    secure = AccountsBroker(unique("secacc"), accounts={"IOT": {"gateway": gateway_pw, "report": report_pw}}).start()
    sim = rep = None
    try:
        rep = await trashlab.spawn_report(secure.url_for("report"), name=unique("secrep"))
        sim = await trashlab.spawn_simulator(secure.url_for("gateway"), name=unique("secsim"), interval=0.02)
        col = await trashlab.Collector(secure.url_for("report"), name=unique("seccol")).start()
        try:
            assert await col.wait_for(5, timeout=15) >= 5  # the children did log in with the passwords
        finally:
            await col.stop()
        objects = [secure, secure.config, sim, rep, sim.proc, col, resolve_servers(secure.url_for("gateway"))]
        for secret, what in ((gateway_pw, "the gateway"), (report_pw, "the report service")):
            _assert_kept(secret, what, objects=objects, logs=logs.text)
    finally:
        for svc in (sim, rep):
            if svc is not None:
                svc.stop()
        secure.stop()


def test_a_class_hub_and_a_students_leaf_broker(logs, tmp_path, monkeypatch):
    monkeypatch.setenv("TRASHLAB_CLASS_FILE", str(tmp_path / "joined" / "class.json"))
    monkeypatch.delenv("NATS_URL", raising=False)
    hub = ClassHub(["s01", "s02"], name=unique("sechub")).start()
    student = None
    try:
        hub.write_roster(tmp_path / "class")
        # a terminal joins with the line on stdin (or the student's file), never on its command line
        cli = subprocess.run([sys.executable, "-m", "trashlab", "classroom", "join", "-"], text=True, timeout=60,
                             input=hub.join_line("s02", host="127.0.0.1") + "\n", capture_output=True,
                             env={**os.environ, "TRASHLAB_CLASS_FILE": str(tmp_path / "cli" / "class.json")})
        assert cli.returncode == 0 and "joined the class as s02" in cli.stdout, cli.stdout + cli.stderr
        seat = join(hub.join_line("s01", host="127.0.0.1"))
        student = trashlab.Broker(unique("secleaf")).start()  # a leaf node of the hub, logged in as s01
        assert student.config.leaf_remote
        objects = [hub, hub.config, seat, student, student.config]
        folders = [tmp_path / "class", tmp_path / "joined", tmp_path / "cli"]
        for secret, what in ((hub.seats["s01"], "student s01"), (hub.seats["s02"], "student s02"),
                             (hub.instructor_password, "the instructor")):
            _assert_kept(secret, what, objects=objects, logs=logs.text + cli.stdout + cli.stderr, folders=folders)
    finally:
        leave()
        if student is not None:
            student.stop()
        hub.stop()


def test_error_messages_name_the_user_not_the_password():
    pw = _pw()
    b = trashlab.Broker(unique("secerr"), cluster=True).start()
    try:
        with pytest.raises(trashlab.errors.BadArgument) as bad_route:
            trashlab.Broker(unique("secerr2"), routes=[f"nats-route://ruser:{pw}@{b.name}:1234"]).start()
        with pytest.raises(trashlab.errors.BadArgument) as bad_url:
            resolve_servers(f"nats://user:{pw}@127.0.0.1:99999")
    finally:
        b.stop()
    for err in (bad_route, bad_url):
        assert pw not in str(err.value) and ":***@" in str(err.value), str(err.value)


def test_the_cli_broker_takes_its_password_from_the_environment():
    pw = _pw()
    env = {**os.environ, "TRASHLAB_PASSWORD": pw}
    proc = subprocess.Popen([sys.executable, "-m", "trashlab", "broker", "--name", unique("seccli"), "--user", "U"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("nats://U:***@127.0.0.1:"), (first, proc.stderr.read() if proc.poll() is not None else "")
        _check_login(first.replace("***", pw, 1))  # it asks for the password it was given
        _assert_kept(pw, "the CLI's broker", logs=first)
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read()


def test_the_state_folder_and_its_records_are_private(tmp_path, monkeypatch):
    """A new state folder is made 0700, an existing one of ours is tightened; a record is 0600 with its argv
    redacted, and still identifies its process (reaping compares the redacted command line)."""
    monkeypatch.setenv("TRASHLAB_STATE_DIR", str(tmp_path / "fresh" / "run"))
    mode = stat.S_IMODE(processes.state_dir().stat().st_mode)
    assert mode == 0o700, f"a new state folder is mode {mode:o}: others could list (and read) the records"
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    monkeypatch.setenv("TRASHLAB_STATE_DIR", str(loose))
    pw = _pw()
    child = processes.ManagedProcess([sys.executable, "-c", "import sys, time; time.sleep(60)",
                                      f"nats://someone:{pw}@127.0.0.1:1"], kind="sleeper", name=unique("sleep"))
    try:
        assert stat.S_IMODE(loose.stat().st_mode) == 0o700, "a 0755 state folder of ours was not tightened"
        [(path, record)] = [(p, r) for p, r in processes.records() if r["pid"] == child.pid]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert pw not in path.read_text() and "nats://someone:***@127.0.0.1:1" in record["argv"]
        assert processes.Recorded(record).ours, "the redacted record no longer identifies its process"
    finally:
        child.stop()


def test_a_jetstream_brokers_temporary_store_is_private():
    """The JetStream store trashlab makes in its temporary folder is 0700, as are the folders nats-server
    makes in it (others could otherwise list the streams' folders)."""
    b = trashlab.Broker(unique("js-private"), jetstream=True).start()
    try:
        loose = [f"{p} is mode {stat.S_IMODE(p.stat().st_mode):o}" for p in [Path(b._tmp), *Path(b._tmp).rglob("*")]
                 if p.is_dir() and stat.S_IMODE(p.stat().st_mode) & 0o077]
        assert not loose, f"folders of a JetStream broker that others may enter: {loose}"
    finally:
        b.stop()
