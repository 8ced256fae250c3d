"""Twenty independent students on one machine, each with its own broker, simulator and collector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from conftest import unique

STUDENT = os.path.join(os.path.dirname(__file__), "student.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree_rss(procs: list) -> int:
    """Resident memory of these processes and all their children, in bytes."""
    total = 0
    for p in procs:
        try:
            proc = psutil.Process(p.pid)
            for q in [proc, *proc.children(recursive=True)]:
                total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


@pytest.mark.slow
def test_twenty_students_on_one_host(figure):
    n, count = 20, 400
    names = [unique(f"student{i:02d}") for i in range(n)]
    env = {**os.environ, "PYTHONPATH": ROOT}
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, STUDENT, name, str(count)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for name in names]
    peak = 0
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() - start < 240:
            peak = max(peak, _tree_rss(procs))
            time.sleep(0.2)  # sampling memory while the students run (a measurement, not synchronisation)
        results = []
        for name, p in zip(names, procs):
            out, err = p.communicate(timeout=10)
            assert p.returncode == 0, f"{name} failed: {err[-1500:]}"
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    took = time.monotonic() - start
    ports = [r["port"] for r in results] + [r["http_port"] for r in results]
    assert len(set(ports)) == 2 * n, "two students got the same port"
    for name, r in zip(names, results):
        # exactly this student's own messages: a single foreign one would break the count or the order
        assert r["published"] == r["received"] == count and r["in_order"], r
        assert r["clients"] == sorted([f"{name}-col", f"{name}-sim"]), r
    figure("load and soak", f"{n} students x (broker + simulator + collector, {count} msgs each): all finished in {took:.1f}s, "
          f"peak memory of all their processes {peak / 2**20:.0f} MiB ({peak / n / 2**20:.0f} MiB per student)")
