"""trashlab: the NATS trash-can lab (Docker + microservices) as a Python library for notebooks.

A real nats-server on loopback, a gateway simulator, a collector into pandas and a report
service you can ask for levels at any time. Start with::

    import trashlab
    broker = trashlab.Broker("iot-msg").start()
    sim = await trashlab.Simulator(broker.url, interval=0.5).start()
    col = await trashlab.Collector(broker.url).start()
"""

from __future__ import annotations

import sys

from ._aio import run
from .errors import (BadArgument, BadMessage, BrokerError, BrokerStartTimeout, CanNotFound, CheckFailed,
                     ClusterNotFormed, ConnectionFailed, DockerUnavailable, InsecureBind, NatsServerNotFound, NoServerKnown,
                     PortInUse, ServiceFailed, ServiceUnavailable, TrashlabError)
from .message import SUBJECT, TrashLevel, decode_fields, encode

# Everything else loads on first use (PEP 562): a spawned `python -m trashlab sim` then starts without
# pandas or matplotlib, and a notebook pays for what it touches. The table is the public API by module.
_LAZY = {
    "servers.accounts": ("AccountsBroker",),
    "servers.broker": ("Broker", "find_nats_server", "running_brokers"),
    "servers.chaos": ("SlowConsumer", "slow_consumer"),
    "course.chaos": ("chaos_drill",),
    "servers.classroom": ("ClassHub", "join", "leave", "joined"),
    "servers.cleanup": ("process_table", "stop_everything"),
    "servers.cluster": ("Cluster",),
    "services.collector": ("Collector", "sequence_loss"),
    "servers.connection": ("connect", "resolve", "server_list"),
    "notebook.dashboard": ("LiveDashboard",),
    "notebook.flowmap": ("FlowMap",),
    "notebook.kernel": ("setup_kernel",),
    "servers.docker": ("docker_available",),
    "course.failover": ("FailoverResult", "compare_drills", "failover_drill", "plot_timelines"),
    "services.kvlevels": ("KVLevels",),
    "servers.monitor": ("monitor",),
    "services.ping": ("ping",),
    "services.programs": ("Program", "run_program"),
    "servers.processes": ("ManagedProcess", "children", "reap_orphans", "stop_all"),
    "services.report": ("MemoryLevels", "ReportService", "discover", "query_level", "query_levels", "query_stats"),
    "services.simulator": ("Simulator",),
    "services.spawn": ("ServiceProcess", "spawn_report", "spawn_simulator", "spawn_simulators", "spawned", "stop_spawned",
              "summary", "watch"),
    "services.subscribers": ("delivery_table", "start_subscribers", "stop_subscribers", "wait_total"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}
# Modules notebooks and scripts reach as ``trashlab.<name>`` (trashlab.plots.counts_bar, trashlab.docker.lab_step).
_MODULES = {"plots": "notebook.plots", "docker": "servers.docker", "checks": "course.checks",
            "processes": "servers.processes"}

__version__ = "0.1.0"

__all__ = [
    # the lab's pieces
    "Broker", "Cluster", "AccountsBroker", "Simulator", "Collector", "ReportService", "LiveDashboard", "FlowMap",
    "TrashLevel", "SUBJECT", "encode", "decode_fields",
    # asking the report service
    "query_levels", "query_level", "query_stats", "discover", "MemoryLevels", "KVLevels",
    # clustering and failover
    "failover_drill", "compare_drills", "plot_timelines", "FailoverResult",
    # the chaos menu (the rest are methods of Broker and Cluster)
    "chaos_drill", "slow_consumer", "SlowConsumer",
    # processes like containers, subscribers, clean-up
    "run_program", "spawn_simulator", "spawn_simulators", "spawn_report", "spawned", "stop_spawned", "ServiceProcess", "summary",
    "watch", "start_subscribers", "stop_subscribers", "wait_total", "delivery_table", "process_table",
    "stop_everything", "ManagedProcess", "children", "reap_orphans", "stop_all", "sequence_loss",
    # classroom mode
    "ClassHub", "join", "leave", "joined",
    # connecting, monitoring, Docker path
    "connect", "resolve", "server_list", "running_brokers", "find_nats_server", "monitor", "ping",
    "docker_available", "run", "plots", "docker", "setup_kernel",
    # exercises
    "checks",
    # errors
    "TrashlabError", "BadArgument", "BadMessage", "BrokerError", "BrokerStartTimeout", "CanNotFound", "CheckFailed",
    "ClusterNotFormed", "ConnectionFailed", "DockerUnavailable", "InsecureBind", "NatsServerNotFound",
    "NoServerKnown", "PortInUse", "ServiceFailed", "ServiceUnavailable",
]


def __getattr__(name: str):
    """Load a public name, or a submodule such as ``trashlab.plots``, on first use."""
    import importlib
    import importlib.util

    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{_MODULES[name]}", __name__)  # trashlab.plots, trashlab.docker, ...
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)  # a subpackage: trashlab.servers, ...
    else:
        raise AttributeError(f"module 'trashlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))


if "IPython" in sys.modules:  # a kernel or IPython shell: never import IPython ourselves
    from .notebook.kernel import setup_kernel as _setup_kernel

    _setup_kernel()
