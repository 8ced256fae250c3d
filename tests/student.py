"""One "student": what the first notebook does — a broker, a simulator and a collector in one kernel.

Run as a process (``python tests/student.py NAME COUNT``); prints one JSON line describing what
this student saw, so a test can start twenty at once and check no two of them interfered.
"""

from __future__ import annotations

import json
import sys

import trashlab


async def lesson(name: str, count: int) -> dict:
    """Broker → simulator (seq numbers) → collector, then what arrived and who was connected."""
    broker = await trashlab.Broker(name).astart()
    col = await trashlab.Collector(broker.url, name=f"{name}-col").start()
    sim = await trashlab.Simulator(broker.url, interval=0.005, count=count, sequence=True, seed=hash(name) % 1000,
                                   name=f"{name}-sim").start()
    await sim.wait(timeout=60)
    await col.wait_for(count, timeout=10)
    clients = sorted(broker.connz()["name"])
    await sim.stop()
    await col.stop()
    broker.stop()
    seqs = [int(s) for s in col.frame()["seq"]]
    return {"name": name, "port": broker.port, "http_port": broker.http_port, "published": sim.published,
            "received": col.count, "in_order": seqs == list(range(1, count + 1)), "clients": clients,
            "rejected": col.rejected_count}


if __name__ == "__main__":
    print(json.dumps(trashlab.run(lesson(sys.argv[1], int(sys.argv[2])))), flush=True)
