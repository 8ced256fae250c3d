"""Shared fixtures: real nats-server processes, isolated state, no process left behind."""

from __future__ import annotations

import os
import tempfile
import time
import uuid

import psutil
import pytest

# Each test session records its children in its own state folder, so reaping in tests never
# touches what a developer runs by hand beside them.
os.environ["TRASHLAB_STATE_DIR"] = tempfile.mkdtemp(prefix="trashlab-test-state-")
os.environ.pop("NATS_URL", None)
# A class the developer joined (trashlab.join) must not turn the tests' brokers into leaf nodes.
os.environ["TRASHLAB_CLASS_FILE"] = os.path.join(os.environ["TRASHLAB_STATE_DIR"], "no-class.json")

import trashlab  # noqa: E402


def unique(prefix: str = "t") -> str:
    """A broker/service name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def broker():
    """A fresh broker for one test."""
    b = trashlab.Broker(unique("iot")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def shared_broker():
    """One broker for a whole test module (tests use their own subjects)."""
    b = trashlab.Broker(unique("shared")).start()
    yield b
    b.stop()


def nats_server_pids() -> set:
    """Pids of every nats-server process on the machine."""
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "nats-server"}


def recorded_alive() -> list:
    """Processes recorded by trashlab in this test session's state folder that still run."""
    from trashlab.servers.processes import _alive_as_recorded, records

    alive = []
    for _, rec in records():
        if _alive_as_recorded(rec.get("pid"), rec.get("create_time")):
            if psutil.Process(rec["pid"]).status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{rec['kind']} {rec['name']} pid {rec['pid']}")
    return alive


@pytest.fixture(autouse=True, scope="session")
def no_orphans():
    """Fail the session if a process started by the tests (or by kernels and CLIs they ran) outlives them."""
    yield
    trashlab.stop_all()
    deadline = time.monotonic() + 10
    while recorded_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = recorded_alive()
    assert not left, f"tests left processes behind: {left}"
