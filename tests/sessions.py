"""Helpers for tests that start whole process trees (Jupyter, binder/start) in a session of their own."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Tuple

import psutil


ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict:
    """The environment for a program a test starts: this one's, with the repository importable, output unbuffered
    and no ``NATS_URL`` of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_for_line(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 60) -> str:
    """The first match of ``pattern`` in the log ``path`` that ``proc`` writes; fails with the log's end when
    ``proc`` ends first or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text())
        if m:
            return m.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.1)  # the polling loop of this wait
    import pytest

    pytest.fail(f"{path.name}: no {pattern!r} (exit {proc.poll()}) in: {path.read_text()[-2000:]}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ipc_kernels() -> Iterator[list]:
    """Options for a Jupyter server (Lab, Voilà) whose kernels talk over IPC sockets in a short folder of their own,
    removed after: a TCP kernel's ports are picked free, then bound by the kernel later, and a broker started by
    another test meanwhile (nats-server picks any free port) can take one, so the kernel never answers."""
    import shutil
    import tempfile

    from trashlab.cli import ipc_kernel_options

    folder = tempfile.mkdtemp(prefix="trashlab-k-")
    try:
        yield ipc_kernel_options(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ipc_kernel_manager(kernel_name: str = "python3", **options):
    """A kernel manager for nbclient (``client.km = ...``) whose kernel talks over IPC sockets in a short folder of
    its own (removed with the manager): no TCP port picked free, then bound by the kernel later (see ipc_kernels)."""
    import shutil
    import tempfile
    import weakref

    from jupyter_client.manager import AsyncKernelManager

    folder = tempfile.mkdtemp(prefix="trashlab-k-")
    km = AsyncKernelManager(kernel_name=kernel_name, transport="ipc", ip=os.path.join(folder, "kernel"), **options)
    weakref.finalize(km, shutil.rmtree, folder, True)
    return km


def stop_session(pgid: int, timeout: float = 15) -> None:
    """SIGTERM every process of the process group we started (and only those), SIGKILL what is left."""
    members = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                members.append(p)
        except (OSError, psutil.Error):
            pass
    for p in members:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(members, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


def end_all(procs, timeout: float = 20) -> None:
    """Stop processes we started, the last first: SIGTERM, up to ``timeout`` s for a clean exit, else SIGKILL; then
    whatever is left of the session each one leads (a Jupyter server's kernels, a hub's nodes)."""
    for proc in reversed(list(procs)):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        stop_session(proc.pid)


@contextlib.contextmanager
def formgrader(root: Path, folder: Path) -> Iterator[Tuple[str, str, Path]]:
    """``python -m trashlab_instructor formgrader`` (INSTRUCTORS.md) for the course at ``root``, on a free port with
    a token of its own: yields ``(base URL of /formgrader, token, its log)``; stopped (its whole session) after."""
    token = secrets.token_hex(16)
    log = folder / "formgrader.log"
    env = {**os.environ, "JUPYTER_TOKEN": token, "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
           "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trashlab_instructor", "formgrader", "--port", str(free_port())],
                                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        found = None
        while time.monotonic() < deadline and proc.poll() is None and not found:
            found = re.search(r"http://127\.0\.0\.1:(\d+)/formgrader\?token=", log.read_text())
            time.sleep(0.1)  # polling the log for the line that says it listens
        assert found, f"the formgrader did not start (exit {proc.poll()}): {log.read_text()[-3000:]}"
        yield f"http://127.0.0.1:{found.group(1)}/formgrader", token, log
    finally:
        stop_session(proc.pid)
        proc.wait(timeout=30)
