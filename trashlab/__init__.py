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
from .aio import run
from .broker import Broker, find_nats_server, running_brokers
from .collector import Collector
from .connection import connect, resolve, server_list
from .errors import (BadArgument, BadMessage, BrokerError, BrokerStartTimeout, CanNotFound, CheckFailed,
                     ConnectionFailed, InsecureBind, NatsServerNotFound, NoServerKnown, PortInUse, ServiceUnavailable,
                     TrashlabError)
from .message import SUBJECT, TrashLevel, decode_fields, encode
from .monitor import monitor
from .processes import ManagedProcess, children, reap_orphans, stop_all
from .report import ReportService, discover, query_level, query_levels, query_stats
from .simulator import Simulator

__version__ = "0.1.0"

__all__ = [
    "Broker", "Collector", "ManagedProcess", "ReportService", "Simulator", "TrashLevel", "SUBJECT",
    "BadArgument", "BadMessage", "BrokerError", "BrokerStartTimeout", "CanNotFound", "CheckFailed", "ConnectionFailed",
    "InsecureBind", "NatsServerNotFound", "NoServerKnown", "PortInUse", "ServiceUnavailable", "TrashlabError",
    "checks", "children", "connect", "decode_fields", "discover", "encode", "find_nats_server", "monitor",
    "query_level", "query_levels", "query_stats", "reap_orphans", "resolve", "run", "running_brokers",
    "server_list", "stop_all",
]


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
