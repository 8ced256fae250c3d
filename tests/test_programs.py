"""``trashlab.run_program``: a student's plain nats-py file run like a container, against real nats-servers."""

from __future__ import annotations

import asyncio
import signal
import textwrap
from pathlib import Path

import nats
import psutil
import pytest

import trashlab
from trashlab.errors import BadArgument
from trashlab.servers import processes
from trashlab.services.programs import STDERR_MARK, programs

from conftest import unique

#: the lab's simulator as a student writes it: broker from $NATS_URL, interval and count from argv
SIM = textwrap.dedent('''\
    import asyncio, os, random, sys
    import nats

    async def main(interval, count):
        nc = await nats.connect(servers=os.environ["NATS_URL"].split(","))
        for i in range(count):
            payload = '{"can_id":"%d", "level":"%r"}' % (random.randint(0, 1000), random.random() * 100)
            print("publishing: " + payload)
            await nc.publish("SUBJECT", payload.encode())
            await asyncio.sleep(interval)
        await nc.drain()

    asyncio.run(main(float(sys.argv[1]), int(sys.argv[2])))
    ''')

#: a program that stops on SIGTERM through its own handler, saying so
GRACEFUL = textwrap.dedent('''\
    import asyncio, os, signal
    import nats

    async def main():
        nc = await nats.connect(servers=os.environ["NATS_URL"].split(","))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()
        print("got SIGTERM: draining", flush=True)
        await nc.drain()
        print("drained", flush=True)

    asyncio.run(main())
    ''')

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"

CRASH = textwrap.dedent('''\
    import sys
    print("starting")
    reading = {"can_id": "7"}
    print(reading["can"])
    ''')


def program(folder: Path, text: str, name: str = "prog.py") -> Path:
    path = folder / name
    path.write_text(text)
    return path


async def until(condition, timeout: float = 20.0) -> bool:
    """Await ``condition()`` becoming true (at most ``timeout`` s); False if it never did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_a_program_publishes_exactly_what_it_was_asked_to(shared_broker, tmp_path):
    subject = unique("readings")
    path = program(tmp_path, SIM.replace("SUBJECT", subject), "sim.py")
    got: list = []
    watcher = await nats.connect(shared_broker.url)
    try:
        async def count(msg) -> None:
            got.append(msg.data)
        await watcher.subscribe(subject, cb=count)
        await watcher.flush()
        sim = trashlab.run_program(path, 0.01, 7, name=unique("sim"), servers=shared_broker)
        assert await sim.wait(30) == 0, f"sim.py ended with {sim.returncode}:\n{sim.logs()}"
        await watcher.flush()  # what the server took from sim.py before its drain ended is now here
    finally:
        await watcher.close()
    assert len(got) == 7, f"sim.py was asked for 7 readings; the subscriber received {len(got)}:\n{sim.logs()}"
    published = [line for line in sim.stdout() if line.startswith("publishing: ")]
    assert [line.removeprefix("publishing: ").encode() for line in published] == got
    assert "sim.py 0.01 7" in repr(sim)


async def test_stop_runs_the_programs_own_sigterm_handler(broker, tmp_path):
    prog = trashlab.run_program(program(tmp_path, GRACEFUL), name=unique("graceful"), servers=broker.url)
    assert await until(lambda: "ready" in prog.stdout() or not prog.alive), prog.logs()
    assert prog.stop() == 0, f"exit code {prog.returncode}:\n{prog.logs()}"
    assert prog.stdout()[-2:] == ["got SIGTERM: draining", "drained"], prog.logs()


async def test_kill_is_immediate_and_forgets_the_record(tmp_path):
    prog = trashlab.run_program(program(tmp_path, SLEEPER), name=unique("sleeper"), servers="nats://127.0.0.1:4222")
    assert await until(lambda: "up" in prog.stdout()), prog.logs()
    assert prog.kill() == -signal.SIGKILL
    assert not prog.alive
    assert not any(rec.get("pid") == prog.pid for _, rec in processes.records())


async def test_the_same_name_again_replaces_the_running_process(tmp_path):
    path = program(tmp_path, SLEEPER)
    name = unique("again")
    first = trashlab.run_program(path, name=name, servers="nats://127.0.0.1:4222")
    second = trashlab.run_program(path, name=name, servers="nats://127.0.0.1:4222")
    try:
        assert not first.alive and second.alive
        running = [p for p in programs() if p.name == name]
        assert running == [second]
        recorded = [rec for _, rec in processes.records() if rec.get("name") == name]
        assert [rec["pid"] for rec in recorded] == [second.pid]
    finally:
        second.kill()


async def test_credentials_travel_in_the_environment_only(tmp_path):
    secret = "pw-" + unique("s")
    with trashlab.Broker(unique("auth"), user="student", password=secret) as auth:
        prog = trashlab.run_program(program(tmp_path, GRACEFUL), name=unique("auth"), servers=auth)
        try:
            assert await until(lambda: "ready" in prog.stdout() or not prog.alive), prog.logs()
            assert prog.alive, f"the program could not connect with the credentials in NATS_URL:\n{prog.logs()}"
            cmdline = " ".join(psutil.Process(prog.pid).cmdline())
            assert secret not in cmdline, cmdline
            assert secret not in repr(prog)
            records = [path.read_text() for path, rec in processes.records() if rec.get("pid") == prog.pid]
            assert records and not any(secret in text for text in records)
        finally:
            prog.stop()


async def test_a_crash_leaves_its_last_stderr_lines_for_a_check(tmp_path):
    prog = trashlab.run_program(program(tmp_path, CRASH, "rep.py"), name=unique("crash"),
                                servers="nats://127.0.0.1:4222")
    assert await prog.wait(30) == 1
    assert prog.stdout() == ["starting"]
    assert prog.stderr(1) == ["KeyError: 'can'"]
    assert prog.failure().endswith("KeyError: 'can'") and 'print(reading["can"])' in prog.failure(), prog.failure()
    # stdout and stderr are two pipes read by two threads: each keeps its order, the interleaving is arrival
    # order (CI once read the traceback before "starting")
    logs = prog.logs()
    assert [ln for ln in logs if not ln.startswith(STDERR_MARK)] == ["starting"], logs
    err = [ln for ln in logs if ln.startswith(STDERR_MARK)]
    assert err[0] == STDERR_MARK + "Traceback (most recent call last):" and err[-1] == STDERR_MARK + "KeyError: 'can'", logs


async def test_servers_and_env_reach_the_program(tmp_path):
    """A list of servers arrives comma-separated in NATS_URL (as the nats CLI reads it); env adds variables."""
    show = program(tmp_path, "import os\nprint(os.environ['NATS_URL'])\nprint(os.environ['CANS'])\n")
    prog = trashlab.run_program(show, name=unique("env"), servers=["nats://127.0.0.1:4222", "127.0.0.1:4333"],
                                env={"CANS": 3})
    assert await prog.wait(30) == 0, prog.logs()
    assert prog.stdout() == ["nats://127.0.0.1:4222,nats://127.0.0.1:4333", "3"]


@pytest.mark.parametrize("path, fix", [
    ("missing.py", "no such file"), ("notes.txt", "give a .py file"), (".", "that is a folder"), ("", "file name"),
])
def test_bad_input_is_one_line_naming_the_fix(tmp_path, monkeypatch, path, fix):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BadArgument, match=fix) as caught:
        trashlab.run_program(path, servers="nats://127.0.0.1:4222")
    assert "\n" not in str(caught.value)
