"""Where a lower layer calls an upper one: the upper layer registers a callback here when it is imported.

Layers point one way (servers -> services -> course / notebook -> cli, see docs/architecture.md): a broker
never imports the spawned-process module, the clean-up never imports the dashboard. When a lower layer has
news for whatever is loaded above it, or needs to ask it something, it calls the callbacks registered here;
a module that was never imported registered nothing, so it has nothing running to hear about.

Three kinds of observers, each registered under a key (registering a key again replaces it, so a reloaded
module is not called twice):

* port users (:func:`on_port`): clients and spawned processes that follow a broker to another port;
* what runs (:func:`on_running`): brokers, spawned processes and named clients, for the line an
  interrupted cell prints and for "is anything publishing here?";
* clean-up (:func:`on_cleanup`): live views first (they read from clients), then clients.

This module imports nothing from trashlab.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple


class Running(NamedTuple):
    """One thing trashlab runs for this process."""

    kind: str  # "broker", "simulator", "collector", ...
    name: str
    text: str  # how a message names it: "broker iot-msg", "simulator process sim", "collector 'col'"


#: key -> (is host:port still used?, a broker came back on another port: (old host:port, the broker))
_port_users: Dict[str, Tuple[Callable[[str], bool], Callable[[str, Any], None]]] = {}
#: key -> what that part of trashlab runs now; listed in the order of ``RUNNING_ORDER``, then of registration
_running: Dict[str, Callable[[], List[Running]]] = {}
RUNNING_ORDER = ("brokers", "processes", "clients")
#: stage -> key -> a clean-up that stops what it runs and returns how many it stopped
CLEANUP_STAGES = ("views", "clients")
_cleanups: Dict[str, Dict[str, Callable[[], int]]] = {stage: {} for stage in CLEANUP_STAGES}


def on_port(key: str, uses: Callable[[str], bool], moved: Callable[[str, Any], None]) -> None:
    """Register a user of broker ports: ``uses("host:port")`` says whether it still uses one,
    ``moved(old_hostport, broker)`` is called when a restarted broker had to take another port."""
    _port_users[key] = (uses, moved)


def port_used(hostport: str) -> bool:
    """True if a registered port user still uses ``host:port``."""
    return any(uses(hostport) for uses, _ in list(_port_users.values()))


def port_moved(old_hostport: str, broker: Any) -> None:
    """Tell every port user that ``broker`` is back, on another port than ``old_hostport``."""
    for _, moved in list(_port_users.values()):
        moved(old_hostport, broker)


def on_running(key: str, what: Callable[[], List[Running]]) -> None:
    """Register ``what()``: the things one part of trashlab runs now."""
    _running[key] = what


def running(kind: Optional[str] = None) -> List[Running]:
    """What trashlab runs for this process (of one ``kind``, or all), brokers first."""
    keys = sorted(_running, key=lambda k: RUNNING_ORDER.index(k) if k in RUNNING_ORDER else len(RUNNING_ORDER))
    found = [r for k in keys for r in _running[k]()]
    return [r for r in found if kind is None or r.kind == kind]


def on_cleanup(stage: str, key: str, stop: Callable[[], int]) -> None:
    """Register ``stop()`` for a clean-up (:func:`trashlab.stop_everything`) at ``stage`` ("views" or "clients")."""
    if stage not in _cleanups:
        raise ValueError(f"stage={stage!r}: use one of {', '.join(CLEANUP_STAGES)}")
    _cleanups[stage][key] = stop


def cleanup() -> int:
    """Run the registered clean-ups, live views first, then clients; return how many things they stopped."""
    return sum(stop() for stage in CLEANUP_STAGES for stop in list(_cleanups[stage].values()))
