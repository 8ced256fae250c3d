"""Simulated students for the class-hub load test: one connection and one Simulator per student.

Run as a process (``python tests/class_students.py`` with a JSON spec on stdin, so no password
appears in a command line): ``{"urls": {"s01": "nats://s01:...@127.0.0.1:4222", ...}, "rate": 10,
"seconds": 60}``. Every student publishes ``rate`` readings a second with seq numbers 1, 2, ...;
prints one JSON line at the end: ``{"published": {"s01": 600, ...}, "seconds": 60.4}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import trashlab


async def main(spec: dict) -> dict:
    count = int(spec["rate"] * spec["seconds"])
    sims = [trashlab.Simulator(url, interval=1 / spec["rate"], count=count, sequence=True, seed=i, name=student)
            for i, (student, url) in enumerate(spec["urls"].items())]
    for sim in sims:
        await sim.start()
    started = time.monotonic()
    for sim in sims:
        await sim.wait(timeout=spec["seconds"] * 3 + 30)
    took = time.monotonic() - started
    published = {sim.name: sim.published for sim in sims}
    for sim in sims:
        await sim.stop()
    return {"published": published, "seconds": round(took, 1)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.stdin.read())))), flush=True)
