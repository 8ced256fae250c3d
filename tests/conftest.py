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


def started_by_this_session(pid: int) -> bool:
    """True if the process inherited this test session's state folder (so the tests started it).

    Other people's nats-server processes on the same machine come and go during a run; only
    ours are checked.
    """
    try:
        return psutil.Process(pid).environ().get("TRASHLAB_STATE_DIR") == os.environ["TRASHLAB_STATE_DIR"]
    except psutil.Error:
        return False


@pytest.fixture(autouse=True, scope="session")
def no_orphans():
    """Fail the session if a nats-server started by the tests outlives them."""
    before = nats_server_pids()
    yield
    trashlab.stop_all()
    deadline = time.monotonic() + 5
    left = set()
    while time.monotonic() < deadline:
        left = {p for p in nats_server_pids() - before if started_by_this_session(p)}
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"tests left nats-server processes behind: {sorted(left)}"
