"""Shared fixtures: real nats-server processes, isolated state, no process left behind."""

from __future__ import annotations

import os
import tempfile
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


def _ours(pid: int) -> bool:
    """Started by this test session: a descendant of it, or an orphan (its parent is gone).

    Other sessions on the same machine (parallel work) start nats-servers too; those have a live parent.
    """
    try:
        proc = psutil.Process(pid)
        me = os.getpid()
        if any(p.pid == me for p in proc.parents()):
            return True
        return proc.ppid() == 1 or not psutil.pid_exists(proc.ppid())
    except psutil.Error:
        return False


@pytest.fixture(autouse=True, scope="session")
def no_orphans():
    """Fail the session if a nats-server started by the tests outlives them."""
    before = nats_server_pids()
    yield
    trashlab.stop_all()
    left = {pid for pid in nats_server_pids() - before if _ours(pid)}
    assert not left, f"tests left nats-server processes behind: {sorted(left)}"
