"""Helpers for tests that start whole process trees (Jupyter, binder/start) in a session of their own."""

from __future__ import annotations

import os
import signal
import socket

import psutil


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
