"""The lab's clean-up: stop every process the course started, and prove nothing is left.

trashlab records each child it starts (broker, simulator, report service, cluster node) in a small
file (see :mod:`trashlab.processes`). :func:`process_table` lists those records that still run and
belong to this course session: started by this kernel, or by a sibling kernel of the same Jupyter
server (the course's other open notebooks). :func:`stop_everything` stops them. Only processes whose
pid, start time and command line match trashlab's own record are touched; nothing started by another
Jupyter server, terminal or user is.
"""

from __future__ import annotations

import os
import time
import pandas as pd
import psutil

from .. import _hooks
from . import keptfeed
from .broker import running_brokers
from .processes import Recorded, _alive_as_recorded, reap_orphans, records, stop_all, stop_processes

COLUMNS = ["pid", "kind", "name", "started_by", "running_for_s"]


def _records() -> "list[dict]":
    rows = []
    for path, rec in records():
        if _alive_as_recorded(rec.get("pid"), rec.get("create_time")) and _this_session(rec):
            rec["_path"] = path
            rows.append(rec)
    return rows


def _this_session(rec: dict) -> bool:
    """Started by this process, or by a sibling (another kernel of the same Jupyter server)."""
    owner = rec.get("owner_pid")
    if owner == os.getpid():
        return True
    if not _alive_as_recorded(owner, rec.get("owner_create_time")):
        return False  # orphans are reap_orphans()'s business
    try:
        return psutil.Process(owner).ppid() == os.getppid()
    except psutil.Error:
        return False


def process_table() -> pd.DataFrame:
    """Every process the course started that still runs: pid, kind, name, who started it, for how long."""
    me = os.getpid()
    rows = [{"pid": r["pid"], "kind": r.get("kind"), "name": r.get("name"),
             "started_by": "this notebook" if r.get("owner_pid") == me else f"another notebook (pid {r.get('owner_pid')})",
             "running_for_s": round(time.time() - r["create_time"], 1)} for r in _records()]
    return pd.DataFrame(rows, columns=COLUMNS)


def stop_everything(everywhere: bool = True, timeout: float = 5.0) -> pd.DataFrame:
    """Stop what this notebook started (brokers, clusters, simulator and report processes) and, with
    ``everywhere``, what the course's other notebooks started; return a table of what was stopped."""
    reap_orphans()
    # dashboards and flow maps (they poll the servers about to go: a still picture stays), then collectors,
    # simulators and report services of this notebook: whatever of them was imported registered here
    _hooks.cleanup()
    before = process_table()
    for broker in running_brokers():
        broker.stop(timeout)
    keptfeed.stop_feeds(1.0)  # a killed broker's feed too (a running one's went with its broker)
    stop_all(timeout)
    if everywhere:
        targets = [(Recorded(rec), rec) for rec in _records()]
        stop_processes([t for t, _ in targets if t.ours], timeout)
        for target, rec in targets:
            if target.ours and not target.alive:
                rec["_path"].unlink(missing_ok=True)
    left = set(process_table()["pid"])
    stopped = before[~before["pid"].isin(left)].reset_index(drop=True)
    return stopped

