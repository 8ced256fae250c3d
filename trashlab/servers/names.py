"""Names of the brokers this process runs: the local stand-in for Docker's DNS on ``iot-net``.

A broker registers itself here once it knows its ports; the resolver (:mod:`.connection`) and a
broker's ``routes`` look names up here. The module imports nothing from trashlab, so the client side
never reaches back into the broker module.

Like the lab's container, a name answers on three ports: ``4222`` (clients), ``6222`` (routes) and
``8222`` (monitoring) map to the broker's real ports; any other port is an error naming those three.
"""

from __future__ import annotations

from typing import Dict, Optional, Protocol
from urllib.parse import SplitResult, urlsplit

#: The lab container's ports and what each one is on a broker started here.
CLIENT_PORT, ROUTE_PORT, MONITOR_PORT = 4222, 6222, 8222


class Named(Protocol):
    """What the registry needs from a broker."""

    name: str

    @property
    def client_host(self) -> str: ...

    @property
    def running(self) -> bool: ...

    @property
    def url(self) -> str: ...

    def real_port(self, lab_port: int) -> Optional[int]: ...


_names: Dict[str, Named] = {}


class UnknownPort(ValueError):
    """A broker name was given with a port the lab's container does not have."""


def register(broker: Named) -> None:
    """Make ``broker.name`` resolve to ``broker`` (the newest registration of a name wins)."""
    _names.pop(broker.name, None)  # re-inserted last: running() stays in order of (re)registration
    _names[broker.name] = broker


def unregister(broker: Named) -> None:
    """Forget ``broker``'s name if it is still the one registered under it."""
    if _names.get(broker.name) is broker:
        del _names[broker.name]


def registered(name: str) -> Optional[Named]:
    """The broker registered under ``name``, running or not (None if none is)."""
    return _names.get(name)


def lookup(name: str) -> Optional[Named]:
    """The running broker called ``name``, or None."""
    b = _names.get(name)
    return b if b is not None and b.running else None


def running() -> "list[Named]":
    """The registered brokers that run, oldest registration first."""
    return [b for b in _names.values() if b.running]


def running_names() -> str:
    """``iot-msg, iot-msg2`` (or ``none``) for messages."""
    return ", ".join(b.name for b in running()) or "none"


def map_url(text: str) -> Optional[str]:
    """``text`` with a broker name replaced by its real host and port, or None if its host is no name here.

    The scheme, credentials and path of ``text`` are kept; without credentials of its own a client URL
    gets the broker's (a broker with a password answers its name with its full ``url``).
    """
    parts = urlsplit(text)
    broker = lookup(parts.hostname or "")
    if broker is None:
        return None
    lab_port = parts.port or (CLIENT_PORT if parts.scheme in ("nats", "tls") else None)
    real = broker.real_port(lab_port) if lab_port is not None else None
    if real is None:
        raise UnknownPort(
            f"broker {broker.name!r} answers on {CLIENT_PORT} (clients), {ROUTE_PORT} (routes) and "
            f"{MONITOR_PORT} (monitoring), like the lab's container; {text!r} asks for "
            + (f"port {parts.port}" if parts.port else "no port") + ": use one of those three")
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if not userinfo and lab_port == CLIENT_PORT:
        own = urlsplit(broker.url).netloc
        userinfo = own.rpartition("@")[0] if "@" in own else ""
    netloc = (userinfo + "@" if userinfo else "") + f"{broker.client_host}:{real}"
    return SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment).geturl()
