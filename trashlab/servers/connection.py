"""Connecting to NATS: where the servers are, and one concise log line per connection event.

``servers`` may be a URL, a comma-separated string or a list (like the lab's ``servers`` array).
Each entry may be ``nats://host:port``, ``host:port``, the lab's old ``nats:iot-msg:4222`` form,
or just a broker name such as ``iot-msg``: names of brokers this process started resolve to their
current URL, the way Docker's DNS resolves container names on ``iot-net``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from nats.aio.client import Client
from nats.errors import Error as NatsError, NoServersError

from .. import _hooks
from .._aio import quietly
from .._secrets import redact
from .._compat import server_info
from ..errors import BadArgument, ConnectionFailed, NoServerKnown
from . import names

log = logging.getLogger("trashlab")
#: ``extra=`` of a log line that is news, not a problem (lost, reconnected): a kernel shows it as plain
#: output (stdout), not in a red stderr box (see :mod:`trashlab.notebook.kernel`)
NEWS = {"news": True}

Servers = Union[str, Sequence[str], None]
_SUBJECT_TOKEN = re.compile(r"^[^\s.*>]+$")


#: Where a resolved ``servers`` value came from.
ARGUMENT, NATS_URL, LOCAL_BROKER = "argument", "NATS_URL", "local broker"
_ORIGINS = (ARGUMENT, NATS_URL, LOCAL_BROKER)
#: The environment variable a spawned ``trashlab sim`` / ``report`` reads its fallback broker's URL from
#: (its servers come in ``NATS_URL``): URLs may hold passwords, and a command line is shown to every user by ``ps``.
FALLBACK_ENV = "TRASHLAB_NATS_FALLBACK"


@dataclass(frozen=True)
class Resolved:
    """A ``servers`` value resolved once: the URLs (credentials and explicit ports kept) and where they
    came from. When they came from ``$NATS_URL``, ``fallback`` is the broker this process started,
    used if ``$NATS_URL`` does not answer."""

    urls: Tuple[str, ...]
    origin: str = ARGUMENT
    fallback: Optional[str] = None
    fallback_name: Optional[str] = None

    def __str__(self) -> str:
        return ", ".join(redact(u) for u in self.urls)

    def __repr__(self) -> str:
        return redact(f"Resolved(urls={self.urls!r}, origin={self.origin!r}, fallback={self.fallback!r}, "
                      f"fallback_name={self.fallback_name!r})")

    def args(self) -> "list[str]":
        """The policy as ``trashlab sim`` / ``report`` arguments, without a URL (those go in :meth:`env`)."""
        argv = ["--origin", self.origin]
        if self.fallback:
            argv += ["--fallback-name", self.fallback_name or "local"]
        return argv

    def env(self) -> "dict[str, str]":
        """The URLs as a spawned process's environment (``NATS_URL``, ``TRASHLAB_NATS_FALLBACK``): with
        :meth:`args` the child rebuilds the same value, and no password shows in ``ps``."""
        return {"NATS_URL": ",".join(self.urls), FALLBACK_ENV: self.fallback or ""}


#: every client connect() made, so one that knew a broker's old port learns its new one
_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


#: clients being shut down by a clean-up: their disconnects are expected, not news
_hushed: "weakref.WeakSet[Client]" = weakref.WeakSet()


def hush_all() -> None:
    """Silence connection news of every client of this process (a clean-up is stopping their servers)."""
    for nc in list(_clients):
        _hushed.add(nc)


def knows(hostport: str) -> bool:
    """True if a client of this process (not closed) has ``host:port`` among its servers."""
    return any(not nc.is_closed and hostport in {u.netloc.rsplit("@", 1)[-1] for u in nc.servers}
               for nc in list(_clients))


def broker_moved(old_hostport: str, new_url: str) -> None:
    """A broker of this process came back on another port: clients that knew the old one try the new one too."""
    new = urlsplit(new_url)
    for nc in list(_clients):
        if nc.is_closed:
            continue
        pool = [srv.uri for srv in nc.server_pool]
        known = {u.netloc.rsplit("@", 1)[-1] for u in pool}
        if old_hostport in known and f"{new.hostname}:{new.port}" not in known:
            try:
                nc.set_server_pool([u.geturl() for u in pool] + [new_url])
            except (NatsError, ValueError) as e:  # closed in between, or a URL it cannot parse
                log.info("trashlab: could not tell a client about %s: %s", redact(new_url), redact(e))


_hooks.on_port("clients", knows, lambda old_hostport, broker: broker_moved(old_hostport, broker.url))


def resolve(name: str) -> str:
    """The current client URL of the broker called ``name`` that this process started."""
    broker = names.lookup(name)
    if broker is None:
        raise BadArgument(f"no broker called {name!r} is running here (running: {names.running_names()}): start it "
                          f"with trashlab.Broker({name!r}).start() or give a URL such as nats://127.0.0.1:4222")
    return broker.url


def _one(entry: str) -> str:
    text = entry.strip()
    if not text:
        raise BadArgument("empty server URL: give nats://host:port, e.g. nats://127.0.0.1:4222")
    m = re.match(r"^nats:([^/][^:]*):(\d+)$", text)  # the lab's 'nats:iot-msg:4222'
    if m:
        text = f"nats://{m.group(1)}:{m.group(2)}"
    if "://" not in text:
        text = "nats://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise BadArgument(f"server URL {redact(entry)!r} has a bad port: expected nats://host:port, "
                          "e.g. nats://127.0.0.1:4222") from None  # its cause quotes the URL (maybe a password)
    if parts.scheme not in ("nats", "tls", "ws", "wss"):
        raise BadArgument(f"server URL {redact(entry)!r} has scheme {parts.scheme!r}: use nats://host:port")
    if not parts.hostname:
        raise BadArgument(f"server URL {redact(entry)!r} has no host: expected nats://host:port, e.g. nats://127.0.0.1:4222")
    try:
        named = names.map_url(text)  # a broker name: resolved like Docker's DNS on iot-net
    except names.UnknownPort as e:
        raise BadArgument(redact(e)) from None  # the same sentence, as the error type callers catch
    if named is not None:
        return named
    _check_not_a_mistyped_name(parts.hostname)
    if port is None and parts.scheme in ("nats", "tls"):
        text = text.rstrip("/") + ":4222"
    return text


def _check_not_a_mistyped_name(host: str) -> None:
    """A one-word host that is no broker here and that no DNS knows: say so instead of a DNS error."""
    if "." in host or ":" in host or host == "localhost":
        return
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as e:
        raise BadArgument(f"no broker called {host!r} is running here (running: {names.running_names()}): check "
                          f"the name, or start it with trashlab.Broker({host!r}).start()") from e


def resolve_servers(servers: "Servers | Resolved" = None, *, origin: Optional[str] = None,
                    fallback: Optional[str] = None, fallback_name: Optional[str] = None) -> Resolved:
    """Resolve ``servers`` once: the given value, else ``$NATS_URL``, else the newest broker started here.

    ``origin``/``fallback`` rebuild a value resolved by another process (a spawned ``trashlab sim``): its
    URLs come in ``$NATS_URL`` and its fallback in ``$TRASHLAB_NATS_FALLBACK`` (:meth:`Resolved.env`).
    """
    if isinstance(servers, Resolved):
        return servers
    if origin is not None and origin not in _ORIGINS:
        raise BadArgument(f"origin {origin!r} is not one of {', '.join(_ORIGINS)}")
    if servers is None or (isinstance(servers, str) and not servers.strip()):
        env = os.environ.get("NATS_URL", "").strip()
        if env:
            servers, origin = env, origin or NATS_URL
        else:
            brokers = names.running()
            if not brokers:
                raise NoServerKnown("no NATS server given: start one with `await trashlab.Broker().astart()` "
                                    "(or `trashlab broker` in a terminal), or set NATS_URL")
            return Resolved((brokers[-1].url,), LOCAL_BROKER)
    if isinstance(servers, str):
        servers = servers.split(",")
    elif not isinstance(servers, (list, tuple)):
        raise BadArgument(f"servers must be a URL or a list of URLs, not {type(servers).__name__}")
    urls = tuple(_one(s) for s in servers if str(s).strip())
    if not urls:
        raise BadArgument("no server URL given: expected nats://host:port, e.g. nats://127.0.0.1:4222")
    origin = origin or ARGUMENT
    if origin == NATS_URL and fallback is None:
        fallback = os.environ.get(FALLBACK_ENV) or None  # a spawned child: its parent's fallback
        local = names.running()
        if fallback is None and local and local[-1].url not in urls:
            fallback, fallback_name = local[-1].url, local[-1].name
    return Resolved(urls, origin, fallback if origin == NATS_URL else None,
                    fallback_name if origin == NATS_URL else None)


def server_list(servers: "Servers | Resolved" = None) -> list[str]:
    """Normalise ``servers`` to a list of URLs: given value, else ``NATS_URL``, else our broker."""
    return list(resolve_servers(servers).urls)


def check_subject(subject: str, *, wildcards: bool = False) -> str:
    """Validate a NATS subject (``trash-level``, ``a.b.c``); wildcards only when subscribing."""
    if not isinstance(subject, str) or not subject:
        raise BadArgument("subject is empty: use e.g. 'trash-level'")
    tokens = subject.split(".")
    for i, tok in enumerate(tokens):
        if tok == "*" and wildcards:
            continue
        if tok == ">" and wildcards and i == len(tokens) - 1:
            continue
        if not _SUBJECT_TOKEN.match(tok):
            hint = ""
            if "*" in tok or ">" in tok:
                hint = (" (a wildcard is a whole word: * for any one word, > for the rest and only at the end, "
                        "e.g. 'trash.*' or 'trash.>')" if wildcards else
                        " (wildcards * and > are for subscribing; publishing needs one concrete subject)")
            raise BadArgument(f"subject {subject!r} is not valid{hint}: use dot-separated words without "
                              "spaces, e.g. 'trash-level'")
    return subject


def describe(err: BaseException) -> str:
    """A one-line description of a connection-level error."""
    text = redact(str(err) or type(err).__name__)
    text = text.removeprefix("nats: ")
    if isinstance(err, ConnectionRefusedError) or "Connect call failed" in text:
        return "connection refused"
    return text.splitlines()[0][:160]


def describe_raised(err: BaseException) -> str:
    """An exception from anyone's code as one line that names its type: ``KeyError: 'can'``."""
    text = redact(str(err)).strip()
    first = text.splitlines()[0][:160] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _raised_by_a_handler(err: BaseException) -> bool:
    """Whether nats-py's error callback got an exception a subscription's callback raised (not a
    connection or protocol error of nats-py's own, nor an OS error)."""
    return not isinstance(err, (NatsError, OSError, EOFError, asyncio.TimeoutError, asyncio.CancelledError))


async def connect(servers: "Servers | Resolved" = None, *, name: str = "trashlab",
                  on_error: Optional[Callable[[Exception], bool]] = None, **options) -> Client:
    """Connect with nats-py, reconnecting forever, logging one line per event instead of tracebacks.

    ``servers`` is resolved here unless it already is a :class:`Resolved` (then it is used as is).
    ``on_error`` sees each asynchronous error first; when it returns True the error is handled.
    When the servers came from ``NATS_URL`` and it is unreachable (a Binder session or workshop broker
    that is gone), the broker this process started is used instead, with one warning line.
    """
    where = resolve_servers(servers)
    try:
        return await _connect(list(where.urls), name, on_error, options)
    except ConnectionFailed:
        if where.fallback is None:
            raise
        log.warning("trashlab [%s]: NATS_URL %s is unreachable; using broker %s started here (%s)",
                    name, where, where.fallback_name, redact(where.fallback))
        return await _connect([where.fallback], name, on_error, options)


async def _connect(urls: list, name: str, on_error: Optional[Callable[[Exception], bool]], options: dict) -> Client:
    state: dict = {"down": False, "connecting": True, "last": None}
    nc: Client

    def where() -> str:
        url = nc.connected_url
        return f"{url.hostname}:{url.port}" if url is not None else "the server"

    async def error_cb(e: Exception) -> None:
        if on_error is not None and on_error(e):
            return
        if nc in _hushed:
            return
        if state["connecting"]:  # reported once, by the exception connect() raises
            state["last"] = e  # the cause (refused, auth); nc.last_error holds only "no servers available"
            return
        if _raised_by_a_handler(e):  # a subscription's callback raised: the connection itself is fine
            log.warning("trashlab [%s]: a message handler raised %s", name, describe_raised(e))
            return
        if state["down"]:
            return  # one line per outage: reconnect attempts fail quietly until one succeeds
        state["down"] = True
        text = describe(e)
        if "EOF" in text or "reset" in text or "refused" in text:
            log.warning("trashlab [%s]: lost the connection to %s (%s), reconnecting...", name, where(), text,
                        extra=NEWS)
        else:
            log.warning("trashlab [%s]: %s", name, text)

    async def disconnected_cb() -> None:
        if not nc.is_closed and not state["down"] and nc not in _hushed:
            log.warning("trashlab [%s]: disconnected from %s, reconnecting...", name, where(), extra=NEWS)
        state["down"] = True

    async def reconnected_cb() -> None:
        state["down"] = False
        if nc not in _hushed:
            log.warning("trashlab [%s]: reconnected to %s", name, where(), extra=NEWS)

    opts: dict[str, Any] = dict(name=name, allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                connect_timeout=2, ping_interval=10, max_outstanding_pings=3,
                error_cb=error_cb, disconnected_cb=disconnected_cb, reconnected_cb=reconnected_cb)
    opts.update(options)
    nc = Client()
    try:
        # the first connection is tried once per URL: a wrong URL should fail fast, not retry forever
        await nc.connect(servers=urls, **{**opts, "max_reconnect_attempts": 1})
    except (asyncio.CancelledError, KeyboardInterrupt):  # the cell was interrupted: no half-open client left
        await quietly(nc.close())
        raise
    except (NoServersError, OSError, TimeoutError) as raised:
        e = state["last"] or raised
        auth_required = server_info(nc).get("auth_required")
        await quietly(nc.close())
        shown = [redact(u) for u in urls]
        if auth_required or "authorization" in describe(e).lower():
            # it answered, asked for credentials, then hung up (nats-py may see only the reset)
            why = ("the credentials in the URL are wrong" if any("@" in u for u in urls)
                   else "it requires credentials")
            raise ConnectionFailed(
                f"{', '.join(shown)} refused the login (authorization violation: {why}): give the "
                "broker's user and password or token in the URL, nats://USER:PASSWORD@host:port or "
                "nats://TOKEN@host:port (AccountsBroker.url_for(user))", urls=shown) from e
        raise ConnectionFailed(
            f"cannot reach {', '.join(shown)} ({describe(e)}): is a broker running? "
            "Start one with trashlab.Broker().start() or `trashlab broker`, or check the URL / NATS_URL",
            urls=shown) from e
    except Exception as e:  # blind: whatever nats-py raises while connecting becomes one ConnectionFailed line
        await quietly(nc.close())
        shown = [redact(u) for u in urls]
        raise ConnectionFailed(f"cannot connect to {', '.join(shown)}: {describe(e)}", urls=shown) from e
    nc.options["max_reconnect_attempts"] = opts["max_reconnect_attempts"]
    state["connecting"] = False
    _clients.add(nc)
    return nc


async def close_quietly(nc: Optional[Client], *, drain: bool = False, timeout: float = 5.0) -> None:
    """Deliver what is buffered (``drain``: also what was received), then close; never raises.

    A server that is gone (killed, stopped, its cell interrupted) makes nats-py raise
    ``ConnectionResetError`` and the like from flush/drain/close: stopping is done either way.
    """
    if nc is None or nc.is_closed:
        return
    try:
        if nc.is_connected and nc not in _hushed:  # hushed: a clean-up stops its server, no time to lose
            await nc.flush(timeout=min(2.0, timeout))  # type: ignore[arg-type]  # nats-py says int; it takes float seconds
            if drain:
                await asyncio.wait_for(nc.drain(), timeout)
    except Exception as e:  # blind: a clean-up path: stop() never raises, whatever the server or nats-py did
        log.info("trashlab: %s while stopping (the server may be gone)", describe(e))
    await quietly(nc.close())


def url_of(nc: Client) -> Optional[str]:
    """``host:port`` the client is connected to right now (None while disconnected)."""
    url = nc.connected_url
    return f"{url.hostname}:{url.port}" if url is not None and nc.is_connected else None
