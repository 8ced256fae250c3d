"""Load through the class hub: 30 simulated students at 10 msg/s each for 60 s, nothing lost.

The students run in a process of their own (tests/class_students.py); the instructor's side is a
plain subscription to ``class.*.trash-level`` (seq numbers per student) and the class view's
``ClassWatch``. Hub CPU and memory are sampled every second and reported (never asserted):
printed and written to test-artifacts/class-load.json. ``TRASHLAB_CLASS_LOAD_STUDENTS=100`` gives
the documented 100-student figure.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import trashlab
from conftest import unique
from trashlab.notebook.classview import ClassWatch
from trashlab.servers.classroom import ClassHub

ROOT = Path(__file__).resolve().parent.parent
STUDENTS = int(os.environ.get("TRASHLAB_CLASS_LOAD_STUDENTS", "30"))
RATE = 10
SECONDS = int(os.environ.get("TRASHLAB_CLASS_LOAD_SECONDS", "60"))


@pytest.mark.slow
@pytest.mark.timeout(SECONDS * 4 + 120)
async def test_a_class_of_students_publishing_through_the_hub_loses_nothing(figure):
    hub = ClassHub(STUDENTS, name=unique("hub")).start()
    seqs: dict = collections.defaultdict(list)
    hub_proc = psutil.Process(hub.pid)
    samples = []
    teacher = watch = None
    try:
        teacher = await trashlab.servers.connection.connect(hub.instructor_url, name="teacher")

        async def on_msg(msg):
            seqs[msg.subject.split(".")[1]].append(json.loads(msg.data)["seq"])

        await teacher.subscribe("class.*.trash-level", cb=on_msg, pending_msgs_limit=1_000_000)
        await teacher.flush()
        watch = await ClassWatch(hub.instructor_url, hub.monitor_url, hub.students).start()
        spec = {"urls": {s: hub.student_url(s) for s in hub.students}, "rate": RATE, "seconds": SECONDS}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        proc = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "tests" / "class_students.py"),
                                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
        hub_proc.cpu_percent()
        online_peak = 0
        while proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            samples.append((hub_proc.cpu_percent(), hub_proc.memory_info().rss))
            online_peak = max(online_peak, len(watch.online()))
        result = json.loads((await proc.stdout.read()).decode().strip().splitlines()[-1])
        count = RATE * SECONDS
        deadline = time.monotonic() + 10
        while sum(map(len, seqs.values())) < STUDENTS * count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await teacher.flush()
        assert result["published"] == {s: count for s in hub.students}
        lost = {s: count - len(seqs[s]) for s in hub.students if sorted(seqs[s]) != list(range(1, count + 1))}
        assert not lost, f"messages lost or duplicated per student: {lost}"
        assert {r["student"]: r["received"] for r in watch.rows()} == {s: count for s in hub.students}
        assert online_peak == STUDENTS
    finally:
        if watch is not None:
            await watch.stop()
        if teacher is not None:
            await teacher.close()
        hub.stop()
    cpu = [c for c, _ in samples[1:]] or [0.0]
    rss = [m for _, m in samples] or [0]
    measured = {"students": STUDENTS, "rate_per_student": RATE, "seconds": SECONDS, "messages": STUDENTS * count,
              "publish_seconds": result["seconds"], "hub_cpu_percent_mean": round(sum(cpu) / len(cpu), 1),
              "hub_cpu_percent_max": round(max(cpu), 1), "hub_rss_mib_max": round(max(rss) / 2**20, 1),
              "cores": psutil.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / f"class-load-{STUDENTS}.json").write_text(json.dumps(measured, indent=1) + "\n")
    figure("load and soak", "class hub load: " + json.dumps(measured))
