"""Child records, the parent-death signal, temporary folders and exit order, with real processes."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import psutil
import pytest

import trashlab
from trashlab.servers import processes

from conftest import unique


def test_a_record_is_never_seen_half_written(tmp_path):
    """A reaper in another process deletes records it cannot parse: a record is written whole or not at all."""
    path = tmp_path / "123.json"
    record = {"pid": 123, "argv": ["x" * 200] * 50}
    processes._write_json(path, record)
    stop = threading.Event()
    seen_bad = []

    def reader() -> None:
        while not stop.is_set():
            try:
                json.loads(path.read_text())
            except FileNotFoundError:
                seen_bad.append("missing")
            except ValueError:
                seen_bad.append("half")

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(3000):
            processes._write_json(path, record)
    finally:
        stop.set()
        t.join()
    assert seen_bad == []
    assert [p.name for p in tmp_path.iterdir()] == ["123.json"]  # no temp file left behind


def test_prctl_is_resolved_in_the_parent_not_between_fork_and_exec(monkeypatch):
    processes._load_prctl()  # what the parent does once

    def no_dlopen(*args, **kwargs):
        raise AssertionError("dlopen in the child between fork and exec")

    monkeypatch.setattr(ctypes, "CDLL", no_dlopen)
    proc = processes.ManagedProcess(["sleep", "30"], kind="test", name=unique("prctl"))
    try:
        assert proc.alive
        # the parent-death signal is set in the child (field 'PDeathSig' is not in /proc; ask prctl there)
        assert psutil.Process(proc.pid).cmdline() == ["sleep", "30"]
    finally:
        proc.stop()


CRASHING_OWNER = textwrap.dedent("""
    import sys, time
    import trashlab
    trashlab.processes._pdeathsig_hook = lambda: None   # only reaping can help now
    b = trashlab.Broker(sys.argv[1], jetstream=True).start()
    print(b.pid, b._tmp, flush=True)
    time.sleep(60)
""")


def test_temp_folders_of_a_sigkilled_owner_are_reaped_and_no_others():
    owner = subprocess.Popen([sys.executable, "-c", CRASHING_OWNER, unique("crash")], stdout=subprocess.PIPE,
                             text=True)
    stranger = tempfile.mkdtemp(prefix="trashlab-not-ours-")  # no owner record: never touched
    try:
        pid, folder = owner.stdout.readline().split()
        assert Path(folder, "jetstream").is_dir()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    try:
        mine = processes.temp_dir(unique("alive"))  # its owner (this process) runs: kept
        trashlab.processes.reap_orphans()
        assert not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
        assert not os.path.exists(folder), "the dead owner's temp folder (JetStream store) is still there"
        assert os.path.isdir(stranger) and os.path.isdir(mine)
    finally:
        os.rmdir(stranger)


def test_an_interrupt_while_a_temp_folder_is_made_leaves_no_folder(monkeypatch):
    """■ between creating a temp folder and writing its owner record: a folder without a record would
    never be reaped, so it goes at once."""
    label = unique("interrupted")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(processes, "_write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        processes.temp_dir(label)
    assert not list(Path(tempfile.gettempdir()).glob(f"trashlab-{label}-*"))


EXITING = textwrap.dedent("""
    import shutil, sys, psutil
    import trashlab
    b = trashlab.Broker(sys.argv[1], jetstream=True).start()
    real = shutil.rmtree

    def spy(path, *args, **kwargs):
        if path == b._tmp:
            alive = psutil.pid_exists(b.pid) and psutil.Process(b.pid).status() != psutil.STATUS_ZOMBIE
            print("server alive while its folder is removed:", alive, flush=True)
        return real(path, *args, **kwargs)

    shutil.rmtree = spy
    print(b._tmp, flush=True)
""")


def test_at_exit_servers_stop_before_their_temp_folders_are_removed():
    out = subprocess.run([sys.executable, "-c", EXITING, unique("exit")], capture_output=True, text=True,
                         timeout=60)
    folder, verdict = out.stdout.splitlines()[:2]
    assert verdict == "server alive while its folder is removed: False"
    assert not os.path.exists(folder)


SLOW_TO_STOP = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    marker = Path(sys.argv[1])

    def asked(*_):
        marker.write_text("SIGTERM received")  # and keep running: a graceful stop that takes long

    signal.signal(signal.SIGTERM, asked)
    print("ready", flush=True)
    while True:
        time.sleep(1)
""")

EXIT_WITH_A_SLOW_CHILD = textwrap.dedent("""
    import sys
    import trashlab
    from trashlab.servers.processes import ManagedProcess
    b = trashlab.Broker(sys.argv[1], jetstream=True).start()
    slow = ManagedProcess([sys.executable, "-c", sys.argv[2], sys.argv[3]], kind="test", name="slow")
    while not any(line == "ready" for line in slow.tail()):
        slow.wait(0.05)
    print(b._tmp, flush=True)
""")


def test_a_shutdown_killed_during_a_slow_graceful_stop_leaves_no_jetstream_folder(tmp_path):
    """Jupyter SIGKILLs a shutting-down kernel after a few seconds. Brokers whose store is a temporary
    folder are killed and their folders removed before anything else is asked to stop gracefully, so
    a kill during that graceful stop leaves no folder behind (CI once saw one left, under load)."""
    marker = tmp_path / "asked-to-stop"
    proc = subprocess.Popen([sys.executable, "-c", EXIT_WITH_A_SLOW_CHILD, unique("slowexit"), SLOW_TO_STOP,
                             str(marker)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        folder = proc.stdout.readline().strip()
        assert folder and os.path.isdir(folder), f"no temp folder printed: {folder!r}, stderr: {proc.stderr.read()}"
        # it is exiting now: once the slow child was asked to stop, kill the exiting process as Jupyter would
        deadline = 60.0
        waited = 0.0
        while not marker.exists():
            assert proc.poll() is None, f"the script ended before asking the slow child to stop: {proc.stderr.read()}"
            assert waited < deadline, "the exiting script never asked the slow child to stop"
            waited += 0.02
            try:
                proc.wait(0.02)
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
        proc.wait(10)
        assert not os.path.exists(folder), (
            f"{folder} still exists when the exiting process was killed during the graceful stop of another child: "
            "the temporary JetStream store must be removed before slow graceful stops")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for p in psutil.process_iter(["cmdline"]):  # the slow child dies with its parent (PDEATHSIG); be sure
            try:
                if str(marker) in (p.info["cmdline"] or []):
                    p.kill()
            except psutil.Error:
                pass


def test_native_windows_gets_one_line_naming_the_fix_and_starts_nothing(monkeypatch):
    """Native Windows Python has no os.setsid, preexec_fn or SIGKILL: the first server or program says
    in one line to use WSL2, Binder or a course hub, instead of a traceback from subprocess."""
    monkeypatch.setattr(sys, "platform", "win32")
    before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(trashlab.TrashlabError) as err:
        processes.ManagedProcess([sys.executable, "-c", "pass"], kind="test", name=unique("win"))
    assert "WSL2" in str(err.value) and "\n" not in str(err.value)
    assert {p.pid for p in psutil.Process().children()} == before


MACOS_OWNER = textwrap.dedent("""
    import os, sys
    from trashlab.servers import processes
    sys.platform = "darwin"  # macOS: no prctl, so no parent-death signal; the records are the fallback
    assert processes._pdeathsig_hook() is None
    child = processes.ManagedProcess([sys.executable, "-c", "import time; time.sleep(120)"], kind="test",
                                     name=sys.argv[1])
    print(child.pid, flush=True)
    os.kill(os.getpid(), 9)  # the owner crashes: atexit never runs
""")


def test_without_prctl_a_crashed_owners_child_is_reaped_by_the_next_start():
    """The macOS path, forced on Linux: a child outlives its SIGKILLed owner (nothing kills it with its
    parent), and the next trashlab start finds it through its record and stops it."""
    out = subprocess.run([sys.executable, "-c", MACOS_OWNER, unique("mac")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == -9, f"the owner did not die as planned: {out.returncode} {out.stderr[-600:]}"
    pid = int(out.stdout.split()[0])
    child = psutil.Process(pid)
    try:
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE, \
            "the child died with its owner: the fallback path (no prctl) was not the one taken"
        assert pid in processes.reap_orphans(), "the next start did not reap the crashed owner's child"
        assert not psutil.pid_exists(pid) or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if psutil.pid_exists(pid):
            child.kill()
