"""``trashlab demo``: the whole lab, headless, in well under a minute."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from ..servers.cluster import Cluster
from .failover import failover_drill
from ..services.report import ReportService, query_level, query_levels
from ..services.simulator import Simulator


async def demo(say: Callable[[str], None] = print) -> int:
    """Broker, simulator, report service, a query, then a cluster losing its first node (core and JetStream)."""
    t0 = time.monotonic()
    cluster = Cluster(size=1, name="iot-msg").start()
    first = cluster.first
    say(f"1-2. broker iot-msg (nats-server) at {first.url}, monitoring {first.monitor_url}")
    report = None
    try:
        report = await ReportService(first.url).start()
        sim = await Simulator(first.url, interval=0.01, count=200, seed=5).start()
        say("3.   simulator publishing 200 readings to trash-level")
        await sim.wait(timeout=20)
        await sim.stop()
        await asyncio.sleep(0.2)
        levels = await query_levels(first.url)
        one = await query_level(levels["can_id"].iloc[0], first.url)
        say(f"4.   report service got {report.received} readings; it reports {len(levels)} cans, "
            f"e.g. can {one['can_id']} at {one['level']:.1f} % (levels kept in {report.store.kind})")

        second = cluster.add_node()
        await cluster.wait_formed()
        pooled = cluster.route_summary()
        say(f"5.   iot-msg2 joined with --routes={first.route_url}; "
            f"{int(pooled['total'].iloc[0])} route connections each way (pooled routes)")
        before = report.received
        core = await failover_drill(cluster, progress=False)
        say(f"     core NATS:  {core.summary()}")
        say(f"     the report service kept receiving through the kill: {report.received - before} more readings, "
            f"now via {cluster.node_of(report.connected_url)}")
        js = await failover_drill(jetstream=True, progress=False)
        say(f"     JetStream:  {js.summary()}")
        ok = (len(levels) > 0 and report.received > before and core.published == core.received + core.lost
              and js.lost == 0 and second.running)
        await report.stop()
        report = None
        say(f"6.   cleaned up; demo {'passed' if ok else 'FAILED'} in {time.monotonic() - t0:.1f}s")
        return 0 if ok else 1
    finally:
        if report is not None:
            await report.stop()
        cluster.stop()
