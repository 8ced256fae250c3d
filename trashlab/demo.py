"""``trashlab demo``: the whole lab, headless, in well under a minute."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from .broker import Broker
from .collector import Collector
from .report import ReportService, query_level, query_levels
from .simulator import Simulator


async def demo(say: Callable[[str], None] = print) -> int:
    """Broker, simulator, report service, a query, then a 2-node cluster losing its first node."""
    t0 = time.monotonic()
    first = Broker("iot-msg", cluster=True).start()
    say(f"1-2. broker iot-msg (nats-server) at {first.url}, monitoring {first.monitor_url}")
    try:
        report = await ReportService(first.url).start()
        sim = await Simulator(first.url, interval=0.01, count=200, seed=5).start()
        say("3.   simulator publishing 200 readings to trash-level")
        await sim.wait(timeout=20)
        await asyncio.sleep(0.2)
        levels = await query_levels(first.url)
        one = await query_level(levels["can_id"].iloc[0], first.url)
        say(f"4.   report service got {report.received} readings; it reports {len(levels)} cans, "
            f"e.g. can {one['can_id']} at {one['level']:.1f} %")

        second = Broker("iot-msg2", routes=[first.route_url]).start()
        say(f"5.   iot-msg2 joined with --routes={first.route_url}")
        col = await Collector(first.url, name="demo-collector").start()
        sim2 = await Simulator(first.url, interval=0.01, seed=6, sequence=True).start()
        await _until(lambda: len(col._nc.discovered_servers) > 0 and col.count > 50, 10)
        before = col.count
        first.kill()
        say(f"     killed iot-msg after {before} readings; clients move to {second.url}")
        await _until(lambda: col.count > before + 100, 15)
        published = await sim2.stop()
        await asyncio.sleep(0.3)
        received = await col.stop()
        seqs = set(col.frame()["seq"].dropna().astype(int))
        lost = len(set(range(1, published + 1)) - seqs)
        say(f"     collector kept receiving on {col.connected_url or second.url}: {received} of {published} "
            f"readings arrived, {lost} lost at the kill (core NATS is at-most-once)")
        await report.stop()
        await sim.stop()
        second.stop()
        ok = received > before and len(levels) > 0
        say(f"6.   cleaned up; demo {'passed' if ok else 'FAILED'} in {time.monotonic() - t0:.1f}s")
        return 0 if ok else 1
    finally:
        for b in (first,):
            b.stop()


async def _until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
