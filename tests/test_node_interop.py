"""The lab's own sim.js / rep.js (npm `nats` v1) and trashlab on the same broker, both ways."""

import asyncio
import os
import shutil
from pathlib import Path

import pytest

import trashlab

NODE_DIR = Path(__file__).parent / "node"
pytestmark = pytest.mark.skipif(
    not shutil.which("node") or not (NODE_DIR / "node_modules" / "nats").exists(),
    reason="needs node and `npm install` in tests/node (tests/setup.d/10-node-interop.sh does it)")


async def test_lab_sim_js_feeds_trashlab_collector_and_report(shared_broker):
    col = await trashlab.Collector(shared_broker.url).start()
    report = await trashlab.ReportService(shared_broker.url).start()
    env = {**os.environ, "NATS_URL": shared_broker.url, "COUNT": "25", "INTERVAL": "10"}
    proc = await asyncio.create_subprocess_exec("node", str(NODE_DIR / "sim.js"), env=env,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    await col.wait_for(25, 5)
    await col.stop()
    await report.stop()
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("publishing: ")]
    assert len(lines) == 25
    assert col.count == 25 and col.rejected_count == 0
    sent = [trashlab.message.TrashLevel.decode(ln[len("publishing: "):]) for ln in lines]
    assert [(r.can_id, r.level) for r in sent] == list(zip(col.frame()["can_id"], col.frame()["level"]))
    assert report.received == 25


async def test_trashlab_simulator_feeds_lab_rep_js(shared_broker):
    env = {**os.environ, "NATS_URL": shared_broker.url}
    proc = await asyncio.create_subprocess_exec("node", str(NODE_DIR / "rep.js"), env=env,
                                                stdout=asyncio.subprocess.PIPE)
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 15)).strip() == b"ready"
        sent = []
        sim = trashlab.Simulator(shared_broker.url, interval=0.01, count=20, seed=3,
                                 on_publish=lambda p: sent.append(p.decode()))
        await sim.start()
        await sim.wait(10)
        await sim.stop()
        got = [(await asyncio.wait_for(proc.stdout.readline(), 5)).decode().rstrip("\n") for _ in range(20)]
    finally:
        proc.terminate()
        await proc.wait()
    assert got == ["Received report: " + p for p in sent]
    assert all('"can_id":"' in p and '", "level":"' in p for p in sent)
