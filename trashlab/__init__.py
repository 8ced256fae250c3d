"""trashlab: the NATS trash-can lab (Docker + microservices) as a Python library for notebooks.

A real nats-server on loopback, a gateway simulator, a collector into pandas and a report
service you can ask for levels at any time. Start with::

    import trashlab
    broker = trashlab.Broker("iot-msg").start()
    sim = await trashlab.Simulator(broker.url, interval=0.5).start()
    col = await trashlab.Collector(broker.url).start()
"""

from __future__ import annotations

import logging
import sys

from . import checks
from .accounts import AccountsBroker
from .aio import run
from .broker import Broker, find_nats_server, running_brokers
from .cleanup import process_table, stop_everything
from .cluster import Cluster
from .collector import Collector, sequence_loss
from .connection import connect, resolve, server_list
from .dashboard import LiveDashboard
from .docker import docker_available
from .errors import (BadArgument, BadMessage, BrokerError, BrokerStartTimeout, CanNotFound, CheckFailed,
                     ClusterNotFormed, ConnectionFailed, DockerUnavailable, InsecureBind, NatsServerNotFound, NoServerKnown,
                     PortInUse, ServiceFailed, ServiceUnavailable, TrashlabError)
from .message import SUBJECT, TrashLevel, decode_fields, encode
from .failover import FailoverResult, compare_drills, failover_drill, plot_timelines
from .kvlevels import KVLevels
from .monitor import monitor
from .ping import ping
from .processes import ManagedProcess, children, reap_orphans, stop_all
from .report import MemoryLevels, ReportService, discover, query_level, query_levels, query_stats
from .simulator import Simulator
from .spawn import (ServiceProcess, spawn_report, spawn_simulator, spawn_simulators, spawned, stop_spawned, summary,
                    watch)
from .subscribers import delivery_table, start_subscribers, stop_subscribers, wait_total

__version__ = "0.1.0"

__all__ = [
    # the lab's pieces
    "Broker", "Cluster", "AccountsBroker", "Simulator", "Collector", "ReportService", "LiveDashboard",
    "TrashLevel", "SUBJECT", "encode", "decode_fields",
    # asking the report service
    "query_levels", "query_level", "query_stats", "discover", "MemoryLevels", "KVLevels",
    # clustering and failover
    "failover_drill", "compare_drills", "plot_timelines", "FailoverResult",
    # processes like containers, subscribers, clean-up
    "spawn_simulator", "spawn_simulators", "spawn_report", "spawned", "stop_spawned", "ServiceProcess", "summary",
    "watch", "start_subscribers", "stop_subscribers", "wait_total", "delivery_table", "process_table",
    "stop_everything", "ManagedProcess", "children", "reap_orphans", "stop_all", "sequence_loss",
    # connecting, monitoring, Docker path
    "connect", "resolve", "server_list", "running_brokers", "find_nats_server", "monitor", "ping",
    "docker_available", "run", "plots", "docker",
    # exercises
    "checks",
    # errors
    "TrashlabError", "BadArgument", "BadMessage", "BrokerError", "BrokerStartTimeout", "CanNotFound", "CheckFailed",
    "ClusterNotFormed", "ConnectionFailed", "DockerUnavailable", "InsecureBind", "NatsServerNotFound",
    "NoServerKnown", "PortInUse", "ServiceFailed", "ServiceUnavailable",
]


def __getattr__(name: str):
    """``trashlab.plots`` is imported on first use (matplotlib is slow to import in every process)."""
    if name == "plots":
        import importlib

        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module 'trashlab' has no attribute {name!r}")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (in Jupyter: the running cell)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


_log = logging.getLogger("trashlab")
if not _log.handlers:
    _log.addHandler(_StderrHandler())
    _log.setLevel(logging.WARNING)
    _log.propagate = False


def _install_short_errors() -> None:
    """In IPython/Jupyter, show trashlab errors as one line instead of a traceback."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return

    def short(shell, etype, evalue, tb, tb_offset=None):
        stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {evalue}"]
        shell._showtraceback(etype, evalue, stb)
        return stb

    shell.set_custom_exc((TrashlabError,), short)


_install_short_errors()
