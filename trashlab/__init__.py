"""trashlab: the NATS trash-can lab (Docker + microservices) as a Python library for notebooks.

A real nats-server on loopback, a gateway simulator, a collector into pandas and a report
service you can ask for levels at any time. Start with::

    import trashlab
    broker = trashlab.Broker("iot-msg").start()
    sim = await trashlab.Simulator(broker.url, interval=0.5).start()
    col = await trashlab.Collector(broker.url).start()

``__all__`` is what a student or a notebook uses (at most 35 names). The plumbing lives in submodules:
``trashlab.processes`` (child processes, reaping), ``trashlab.classroom`` (a class hub, join/leave),
``trashlab.servers`` (brokers, names, connecting, monitoring, the chaos menu), ``trashlab.services``
(the microservices, spawned processes), ``trashlab.notebook`` (dashboard, flow map, plots, kernel
set-up), ``trashlab.course`` (checks, drills), ``trashlab.errors`` and ``trashlab.message``. A name that left ``__all__`` still
works as ``trashlab.<name>`` with a ``FutureWarning`` (shown everywhere) naming its new spelling.

Importing trashlab has no side effects. In a Jupyter kernel, the first public name a cell uses sets
the kernel up once (log lines in the cell, one-line errors: :func:`trashlab.notebook.kernel.setup_kernel`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ._aio import run
from ._lazy import submodules
from .errors import TrashlabError

if sys.version_info < (3, 11):  # refused in one line: the pinned wheels (pandas 3.1) need 3.11 (README "Supported systems")
    raise ImportError(f"trashlab needs Python 3.11 or newer (this is {sys.version.split()[0]}): "
                      "create the venv with a newer Python, e.g. `python3.11 -m venv .venv`")

# Everything else loads on first use (PEP 562): a spawned `python -m trashlab sim` then starts without
# pandas or matplotlib, and a notebook pays for what it touches. The table says where each name lives,
# public or moved; `__all__` says which are public.
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
    "errors": ("BadArgument", "BadMessage", "BrokerError", "BrokerStartTimeout", "CanNotFound", "CheckFailed",
               "ClusterNotFormed", "ConnectionFailed", "DockerUnavailable", "InsecureBind", "NatsServerNotFound",
               "NoServerKnown", "PortInUse", "ServiceFailed", "ServiceUnavailable"),
    "message": ("SUBJECT", "TrashLevel", "decode_fields", "encode"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}
# Modules notebooks and scripts reach as ``trashlab.<name>`` (trashlab.plots.counts_bar, trashlab.docker.lab_step).
_MODULES = {"plots": "notebook.plots", "docker": "servers.docker", "checks": "course.checks",
            "processes": "servers.processes", "classroom": "servers.classroom"}

__version__ = "0.1.0"

__all__ = [
    # the lab's pieces (servers: start()/stop(); NATS clients: await start()/stop(); docs/architecture.md)
    "Broker", "Cluster", "AccountsBroker", "Simulator", "Collector", "ReportService", "LiveDashboard", "FlowMap",
    # asking the report service
    "query_levels", "query_level", "query_stats",
    # clustering, failover and the chaos menu (the rest of the menu are methods of Broker and Cluster)
    "failover_drill", "compare_drills", "plot_timelines", "chaos_drill",
    # processes like containers: the student's own programs, and trashlab's
    "run_program", "spawn_simulator", "spawn_simulators", "spawn_report", "watch", "summary", "stop_spawned",
    # subscribers side by side (fan-out, queue groups)
    "start_subscribers", "stop_subscribers", "wait_total", "delivery_table",
    # what is running, and stopping all of it
    "process_table", "stop_everything",
    # names, reachability, scripts
    "resolve", "ping", "run",
    # namespaces notebooks use: plots, the lab's Docker commands, exercise checks
    "plots", "docker", "checks",
    # every trashlab error derives from it (the others: trashlab.errors)
    "TrashlabError",
]

if TYPE_CHECKING:  # what type checkers and IDEs see: the real classes and functions, loaded lazily at run time
    from .course import checks as checks
    from .course.failover import compare_drills as compare_drills
    from .course.failover import failover_drill as failover_drill
    from .course.failover import plot_timelines as plot_timelines
    from .notebook import plots as plots
    from .notebook.dashboard import LiveDashboard as LiveDashboard
    from .notebook.flowmap import FlowMap as FlowMap
    from .servers import docker as docker
    from .servers import classroom as classroom
    from .servers import processes as processes
    from .servers.accounts import AccountsBroker as AccountsBroker
    from .servers.broker import Broker as Broker
    from .course.chaos import chaos_drill as chaos_drill
    from .servers.cleanup import process_table as process_table
    from .servers.cleanup import stop_everything as stop_everything
    from .servers.cluster import Cluster as Cluster
    from .servers.connection import resolve as resolve
    from .services.collector import Collector as Collector
    from .services.ping import ping as ping
    from .services.programs import run_program as run_program
    from .services.report import ReportService as ReportService
    from .services.report import query_level as query_level
    from .services.report import query_levels as query_levels
    from .services.report import query_stats as query_stats
    from .services.simulator import Simulator as Simulator
    from .services.spawn import spawn_report as spawn_report
    from .services.spawn import spawn_simulator as spawn_simulator
    from .services.spawn import spawn_simulators as spawn_simulators
    from .services.spawn import stop_spawned as stop_spawned
    from .services.spawn import summary as summary
    from .services.spawn import watch as watch
    from .services.subscribers import delivery_table as delivery_table
    from .services.subscribers import start_subscribers as start_subscribers
    from .services.subscribers import stop_subscribers as stop_subscribers
    from .services.subscribers import wait_total as wait_total


def _new_spelling(name: str) -> str:
    """Where a name that left ``__all__`` lives now, e.g. ``trashlab.processes.reap_orphans``."""
    module = _WHERE[name]
    alias = next((short for short, full in _MODULES.items() if full == module), module)
    return f"trashlab.{alias}.{name}"


def _kernel_first_use() -> None:
    """Set a Jupyter kernel up once, the first time a cell uses a public name (never at import)."""
    global _kernel_ready
    if not _kernel_ready and "IPython" in sys.modules:  # a kernel or IPython shell: never import IPython ourselves
        import os
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            from .notebook.kernel import setup_kernel

            _kernel_ready = setup_kernel()
            return
        # ■ while the set-up is imported (the first cell of every notebook) would show a plain traceback:
        # it is held until the set-up is done, then delivered again, so it shows as one line
        held: "list[int]" = []
        previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
        try:
            from .notebook.kernel import setup_kernel
        finally:
            signal.signal(signal.SIGINT, previous)
        _kernel_ready = setup_kernel()
        if held:
            os.kill(os.getpid(), signal.SIGINT)


_kernel_ready = False
_submodule = submodules(__name__)


def __getattr__(name: str) -> Any:
    """Load a public name, or a submodule such as ``trashlab.plots``, on first use."""
    import importlib

    if not name.startswith("_"):
        _kernel_first_use()  # before the import below: ■ during a first import of pandas then shows one line
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        if name not in __all__:
            import warnings

            warnings.warn(f"trashlab.{name} moved to {_new_spelling(name)}: use that spelling "
                          f"(trashlab.{name} will be removed)", FutureWarning, stacklevel=2)
            return value  # not cached: every use of the old spelling warns
    elif name in _MODULES:
        value = importlib.import_module(f".{_MODULES[name]}", __name__)  # trashlab.plots, trashlab.docker, ...
    else:
        value = _submodule(name)  # a subpackage: trashlab.servers, ...; else AttributeError
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
