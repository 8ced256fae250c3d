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

    folder = tempfile.mkdtemp(prefix="trashlab-k-")
    try:
        yield ["--KernelManager.transport=ipc", f"--KernelManager.ip={os.path.join(folder, 'kernel')}"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
