"""trashlab's own exceptions: each message says what went wrong and what to do about it.

The tree (``*``: also a builtin, so ``except TimeoutError`` / ``except ValueError`` catch it too)::

    TrashlabError                 .exit_code (the CLI's exit status)
    ├── BadArgument               * ValueError; exit code 2
    ├── BadMessage                * ValueError; .reason, .kind
    ├── BrokerError               .name (the broker, cluster or hub)
    │   ├── NatsServerNotFound    .path
    │   ├── PortInUse             .port
    │   ├── InsecureBind          .host
    │   └── BrokerTimeout         * TimeoutError; .timeout (seconds waited)
    │       ├── BrokerStartTimeout
    │       └── ClusterNotFormed  .missing (the routes not there)
    ├── ConnectionFailed          .urls (passwords masked)
    │   └── NoServerKnown
    ├── ServiceUnavailable        .service
    ├── CanNotFound               * KeyError; .can_id, .service
    ├── ServiceFailed             .name (the process), .role ("simulator", "report" ...)
    │   └── ServiceStartTimeout   * TimeoutError; .timeout
    ├── DockerUnavailable
    └── CheckFailed               * AssertionError

Fields default to None where a raise site does not know them. A lower-level error that caused one of
these is kept as ``__cause__`` (``raise ... from exc``): a kernel still shows one line, a script's
traceback shows both.
"""

from __future__ import annotations

from typing import Optional, Sequence


class TrashlabError(Exception):
    """Base class: a problem a student can fix, described in one line."""

    #: what ``trashlab <command>`` exits with when this error ends it
    exit_code = 1


class BadArgument(TrashlabError, ValueError):
    """A value passed to trashlab (URL, subject, interval, ...) is not usable."""

    exit_code = 2


class BadMessage(TrashlabError, ValueError):
    """A payload is not a valid trash-level reading.

    ``kind`` is a short stable category (``not-json``, ``missing-field`` ...)
    that collectors count by; ``reason`` is the human sentence.
    """

    def __init__(self, reason: str, kind: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class BrokerError(TrashlabError):
    """The embedded nats-server could not be started or reached; ``name``: which broker (if known)."""

    def __init__(self, message: str, *, name: Optional[str] = None) -> None:
        super().__init__(message)
        self.name = name


class NatsServerNotFound(BrokerError):
    """The nats-server binary is missing or cannot be executed; ``path``: where it was looked for."""

    def __init__(self, message: str, *, path: Optional[str] = None) -> None:
        super().__init__(message)
        self.path = path


class PortInUse(BrokerError):
    """The requested port is already taken by another program; ``port``: that port."""

    def __init__(self, message: str, *, name: Optional[str] = None, port: Optional[int] = None) -> None:
        super().__init__(message, name=name)
        self.port = port


class InsecureBind(BrokerError):
    """A broker would listen beyond loopback without credentials; ``host``: the address asked for."""

    def __init__(self, message: str, *, name: Optional[str] = None, host: Optional[str] = None) -> None:
        super().__init__(message, name=name)
        self.host = host


class BrokerTimeout(BrokerError, TimeoutError):
    """A server did not get where it should within the bounded wait of ``timeout`` seconds."""

    def __init__(self, message: str, *, name: Optional[str] = None, timeout: Optional[float] = None) -> None:
        super().__init__(message, name=name)
        self.timeout = timeout


class BrokerStartTimeout(BrokerTimeout):
    """nats-server did not accept clients within the bounded wait."""


class ClusterNotFormed(BrokerTimeout):
    """Cluster nodes did not all route to each other within the bounded wait; ``missing``: the routes not there."""

    def __init__(self, message: str, *, name: Optional[str] = None, timeout: Optional[float] = None,
                 missing: Sequence[str] = ()) -> None:
        super().__init__(message, name=name, timeout=timeout)
        self.missing = list(missing)


class ConnectionFailed(TrashlabError):
    """No NATS server could be reached at the given URL(s); ``urls``: them, passwords masked."""

    def __init__(self, message: str, *, urls: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.urls = list(urls)


class NoServerKnown(ConnectionFailed):
    """No URL was given, NATS_URL is unset and this process started no broker."""


class ServiceUnavailable(TrashlabError):
    """No report service answered the request; ``service``: the one asked."""

    def __init__(self, message: str, *, service: Optional[str] = None) -> None:
        super().__init__(message)
        self.service = service


class CanNotFound(TrashlabError, KeyError):
    """The report service has no reading for the requested can id (``can_id``)."""

    def __init__(self, message: str, *, can_id: Optional[str] = None, service: Optional[str] = None) -> None:
        super().__init__(message)
        self.can_id = can_id
        self.service = service

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class ServiceFailed(TrashlabError):
    """A simulator or report process exited, or did not get ready, at start; ``name``, ``role``: which."""

    def __init__(self, message: str, *, name: Optional[str] = None, role: Optional[str] = None) -> None:
        super().__init__(message)
        self.name = name
        self.role = role


class ServiceStartTimeout(ServiceFailed, TimeoutError):
    """A spawned process gave no sign of life within ``timeout`` seconds."""

    def __init__(self, message: str, *, name: Optional[str] = None, role: Optional[str] = None,
                 timeout: Optional[float] = None) -> None:
        super().__init__(message, name=name, role=role)
        self.timeout = timeout


class DockerUnavailable(TrashlabError):
    """No Docker engine answers here (the notebooks then take the local path)."""


class CheckFailed(TrashlabError, AssertionError):
    """An exercise answer is not right yet; the message (a ✘ line) says what was expected."""
