"""Load with bad input: a paced 10k msg/s stream (10 % malformed of every kind) and a 60 s soak.

The publisher runs in its own process (tests/flood.py) so subscriber and publisher do not share a
CPU; the collector and the report service under test run in this process, on one event loop, as
in a notebook. Figures are printed (run with ``-s`` to see them); docs/reliability.md quotes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import psutil
import pytest

import trashlab
from conftest import unique

sys.path.insert(0, os.path.dirname(__file__))
import flood

FLOOD = os.path.join(os.path.dirname(__file__), "flood.py")


async def _run_flood(url: str, rate: int, seconds: float, bad: bool, subject: str = "trash-level",
                     monitor: "str | None" = None) -> dict:
    """Run tests/flood.py to completion (bounded) and return its summary line; with ``monitor`` it waits
    while a subscriber is far behind (a busy machine slows it down instead of overflowing the server)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, FLOOD, url, "--rate", str(rate), "--seconds", str(seconds), "--subject", subject,
        *(["--bad"] if bad else []), *(["--monitor", monitor] if monitor else []),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds * 6 + 30)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the flood publisher did not finish in time") from None
    assert proc.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])


async def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


def _slow_consumer_lines(broker) -> str:
    """The server's own words on each slow consumer it cut off (64 MB pending, or a write deadline missed)."""
    return " | ".join(line for line in broker.output.splitlines() if "Slow Consumer" in line)[-1500:] or "(none)"


@pytest.mark.slow
@pytest.mark.timeout(600)  # a loaded machine slows the flood down (it waits for the subscribers)
async def test_malformed_stream_into_collector_and_report_service(broker, figure):
    rate, seconds = 10_000, 30
    col = await trashlab.Collector(broker.url, name="col-under-test").start()
    svc = await trashlab.ReportService(broker.url, name=unique("rep")).start()
    started = time.monotonic()
    # paced at 10k/s, and never more than a few MB ahead of the slower of the two (on a loaded machine the
    # flood slows down; the test is about every payload handled, not about a rate this machine reaches)
    summary = await _run_flood(broker.url, rate, seconds, bad=True, monitor=broker.monitor_url)
    published = summary["published"]
    assert published == rate * seconds and summary["errors"] == 0, summary
    await _until(lambda: col.count + col.rejected_count >= published
                 and svc.received + svc.rejected_count >= published, 30)
    took = time.monotonic() - started
    valid, kinds = flood.expected(published, bad=True)
    server_drops = broker.varz().loc["slow_consumers", "value"]
    assert server_drops == 0, (f"nats-server cut off a subscriber {server_drops} times (server-side slow consumer); "
                               f"its log: {_slow_consumer_lines(broker)}")

    # both stay up and still answer
    assert col.running and svc.running
    stats = await trashlab.query_stats(broker.url, service=svc.name)
    # every valid reading kept, exactly once: count equality by sequence
    seqs = list(col.frame()["seq"])
    assert len(seqs) == col.count == len(valid)
    assert set(seqs) == valid
    assert col.loss(published=None)["duplicates"] == 0
    assert svc.received == stats["received"] == len(valid)
    # every malformed payload counted with its reason, by both
    assert dict(col.reasons) == dict(kinds)
    assert svc.reasons == kinds and stats["reasons"] == dict(kinds)
    assert col.rejected_count == svc.rejected_count == sum(kinds.values())
    assert col.slow_consumer_events == 0
    # what was kept aside is small even though 1 MB payloads came in
    kept = col.rejected
    assert set(kept["kind"]) <= set(kinds) and kept["payload"].map(len).max() <= 1024
    figure("load and soak", f"bad-input stream: {published} messages in {summary['seconds']:.1f}s "
          f"({published / summary['seconds']:.0f} msg/s), {len(valid)} valid all kept, "
          f"{sum(kinds.values())} malformed counted by kind {dict(kinds)}; "
          f"all processed {took:.1f}s after start")
    await svc.stop()
    await col.stop()


@pytest.mark.slow
@pytest.mark.timeout(600)  # a loaded machine slows the flood down (it waits for the collector)
async def test_sixty_seconds_at_10k_with_max_rows_stays_bounded(broker, figure):
    rate, seconds, max_rows = 10_000, 60, 10_000
    col = await trashlab.Collector(broker.url, max_rows=max_rows, name="soak").start()
    me = psutil.Process()
    samples = []

    async def sample():
        while True:
            samples.append((time.monotonic(), me.memory_info().rss, col.count))
            await asyncio.sleep(1)  # sampling memory once a second (a measurement, not synchronisation)

    sampler = asyncio.ensure_future(sample())
    # paced at 10k/s, never far ahead of the collector (a loaded machine slows the flood down, not the server's
    # patience: this test is about memory with max_rows, not about a rate this machine reaches)
    summary = await _run_flood(broker.url, rate, seconds, bad=False, monitor=broker.monitor_url)
    published = summary["published"]
    await _until(lambda: col.count >= published, 30)
    sampler.cancel()
    assert published == rate * seconds and summary["errors"] == 0, summary
    server_drops = broker.varz().loc["slow_consumers", "value"]
    assert server_drops == 0, f"nats-server cut off the collector {server_drops} times: {_slow_consumer_lines(broker)}"
    assert col.count == published, f"received {col.count} of {published}"
    assert col.slow_consumer_events == 0 and col.rejected_count == 0
    frame = col.frame()
    assert len(frame) == max_rows
    assert list(frame["seq"]) == list(range(published - max_rows + 1, published + 1))  # the newest rows
    # memory: after the first 10 s (deque full, allocator warm) RSS stops growing
    warm = [rss for t, rss, n in samples if n >= 100_000]
    growth = (max(warm) - warm[0]) / 2**20
    peak = max(rss for _, rss, _ in samples) / 2**20
    figure("load and soak", f"soak: {published} messages in {summary['seconds']:.1f}s, received {col.count}, "
          f"max_rows={max_rows}, collector RSS peak {peak:.0f} MiB, growth after warm-up {growth:.1f} MiB")
    assert growth < 40, f"collector memory grew {growth:.1f} MiB with max_rows set"
    await col.stop()
