"""Network namespaces for tests that put a class hub and its students on separate "hosts" (root and iproute2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def skip_without_namespaces() -> None:
    """Skip the calling test module where network namespaces cannot be made (not root, no ``ip``)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2 (ip)", allow_module_level=True)


def ip(*args: str) -> None:
    """Run ``ip`` with ``args``; a failure raises with its stderr."""
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def add_namespace(name: str) -> None:
    """Make the namespace ``name``, or skip the test where this machine refuses (a container without the right)."""
    try:
        ip("netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f"cannot create a network namespace here: {getattr(e, 'stderr', e)!r}")


def remove_namespaces(names) -> None:
    """Remove the namespaces ``names`` (those already gone are fine)."""
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def python_in(ns: str, *args: str) -> list:
    """The command line running this Python with ``args`` inside the namespace ``ns``."""
    return ["ip", "netns", "exec", ns, sys.executable, *args]
