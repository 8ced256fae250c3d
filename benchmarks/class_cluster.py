"""A class of N simulated students through their own brokers on a 3-node class hub, one node killed mid-class.

    PYTHONPATH=. python benchmarks/class_cluster.py [--students 300] [--nodes 3] [--rate 1] [--after 3] [--no-kill] [--no-keep] [--json FILE]

Every student is a real student broker (a nats-server joined as a leaf node with ``classroom.join``) and a
sequence-numbered simulator publishing on it; a witness subscriber on the hub's last node counts what arrives
(``trashlab.course.classdrill``). Prints what was published and lost (split by whether the student's node was
killed), how long until every student was back, and each hub node's CPU and memory from its /varz. The hub keeps
readings (``classroom serve --keep-readings``; ``--no-keep``: it does not): the node killed is then the one leading
the stream of kept readings, and what the stream holds is compared with what was published too.
Memory: each student broker is a nats-server of about 10-20 MB, so 300 students need 3-6 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time

from trashlab.course.classdrill import class_drill


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=300)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--rate", type=float, default=1.0, help="readings per second per student (default 1)")
    p.add_argument("--after", type=int, default=3, help="readings every student sends after the kill (default 3)")
    p.add_argument("--no-kill", action="store_true", help="do not kill a node")
    p.add_argument("--no-keep", action="store_true", help="a hub that does not keep readings (core NATS only)")
    p.add_argument("--json", default=None, help="also write everything measured to this file")
    args = p.parse_args()
    logging.getLogger("trashlab").setLevel(logging.ERROR)
    started = time.monotonic()
    result = asyncio.run(class_drill(args.students, args.nodes, rate=args.rate, kill=not args.no_kill,
                                     keep_readings=not args.no_keep, after=args.after,
                                     timeout=max(120.0, args.students * 1.0)))
    figures = result.figures()
    for key, value in figures.items():
        print(f"{key:32} {value}")
    print(f"{'gaps (student: [first, last] seq)':32} {json.dumps(result.gaps)[:400]}")
    if result.keep_readings:
        print(f"{'kept gaps':32} {json.dumps(result.kept_gaps)[:400]}")
    print(f"{'wall seconds':32} {time.monotonic() - started:.0f}")
    if args.json:
        with open(args.json, "w") as f:
            f.write(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
