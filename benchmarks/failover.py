"""Repeat the failover drill and print the numbers docs/clustering.md quotes.

    PYTHONPATH=. python benchmarks/failover.py [--runs 5] [--rate 200]

Core NATS on a 2-node cluster, then JetStream on a 3-node cluster, ``--runs`` times each; one row per run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import pandas as pd

import trashlab


async def main(runs: int, rate: float) -> None:
    logging.getLogger("trashlab").setLevel(logging.ERROR)
    rows = []
    for jetstream, size in ((False, 2), (True, 3)):
        with trashlab.Cluster(size, name="bench-js" if jetstream else "bench", jetstream=jetstream) as cluster:
            await cluster.wait_formed(timeout=30)
            for _ in range(runs):
                result = await trashlab.failover_drill(cluster, jetstream=jetstream, rate=rate, progress=False)
                rows.append(result.row())
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    print()
    print(table.groupby("mode")[["published", "lost", "duplicates", "reconnect_ms", "largest_gap_ms"]]
          .agg(["min", "median", "max"]).to_string())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.rate))
