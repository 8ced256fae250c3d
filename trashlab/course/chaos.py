"""The chaos drill: a fault of the chaos menu (:mod:`trashlab.servers.chaos`) measured like the failover drill.

Sequence-numbered readings flow from a simulator on one node to a collector on another, the fault
happens in the middle and is undone (also when the drill is interrupted); the result is a
:class:`~trashlab.course.failover.FailoverResult`: the loss, the largest gap between arrivals and how long the
collector took to reconnect. The drill is the failover drill's own harness with another fault.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from ..errors import BadArgument
from ..servers.chaos import drop_messages, heal, lame_duck, partition, step_down, stop_dropping
from .failover import STREAM, FailoverResult, _drill, _Fault

FAULTS = ("kill", "lame_duck", "drop", "partition", "step_down")
_ACTIONS = {"kill": "killed", "lame_duck": "put in lame-duck mode", "drop": "dropped {percent:g} % on",
            "partition": "cut off", "step_down": "stepped the stream leader down, collector on"}


def _fault(fault: str, cluster: Any, victim: Any, subject: str, percent: float, rate: float,
           fault_after: float) -> _Fault:
    """The chaos fault ``fault`` as a drill's fault: how to cause it, how to undo it."""
    async def cause() -> Optional[dict]:
        if fault == "kill":
            victim.kill()
        elif fault == "lame_duck":
            lame_duck(victim)
        elif fault == "drop":
            await asyncio.to_thread(drop_messages, cluster, subject, percent)
        elif fault == "partition":
            await asyncio.to_thread(partition, cluster, victim.name)
        else:
            return await step_down(cluster, STREAM)
        return None

    async def undo() -> None:  # a kill or a lame duck is undone by the restart after the drill
        if fault == "drop":
            await asyncio.to_thread(stop_dropping, cluster, subject)
        elif fault == "partition":
            await asyncio.to_thread(heal, cluster)

    stops = fault in ("kill", "lame_duck")
    return _Fault(fault, _ACTIONS[fault].format(percent=percent), cause, undo=undo, moves_clients=stops,
                  move_timeout=40.0, stops_node=stops,  # a lame duck's clients leave within its 30 s
                  announce=f"chaos drill: {fault} ({victim.name}) in {fault_after:g}s while {rate:g} readings/s "
                           "flow ...")


async def chaos_drill(cluster: Any, fault: str = "lame_duck", *, rate: float = 200.0, fault_after: float = 1.5,
                      run_after: float = 1.5, percent: float = 30.0, subject: str = "trash-level.chaos",
                      progress: bool = True) -> FailoverResult:
    """Cause ``fault`` while sequence-numbered readings flow from one node to a collector on another; undo it.

    ``fault``: ``"kill"``, ``"lame_duck"``, ``"drop"`` (``percent`` % lost), ``"partition"``, ``"step_down"``
    (JetStream: needs ``Cluster(3, jetstream=True)``). Returns a :class:`~trashlab.course.failover.FailoverResult`:
    published, received, lost, largest gap between arrivals, reconnect time of the collector.
    """
    if fault not in FAULTS:
        raise BadArgument(f"fault={fault!r}: use one of {', '.join(FAULTS)}")
    await cluster.wait_formed(progress=progress)
    running = [b for b in cluster.nodes.values() if b.running]
    if len(running) < 2:
        raise BadArgument("a chaos drill needs at least 2 running nodes: Cluster(size=2).start()")
    jetstream = fault == "step_down"
    if jetstream and (not cluster.jetstream or len(running) < 3):
        raise BadArgument("a step-down drill needs Cluster(size=3, jetstream=True)")
    victim, other = running[0], running[-1]
    return await _drill(cluster, victim, other, victim, _fault(fault, cluster, victim, subject, percent, rate,
                                                              fault_after),
                        jetstream=jetstream, rate=float(rate), fault_after=fault_after, run_after=run_after,
                        subject=subject, progress=progress, restore=True, label="chaos")
