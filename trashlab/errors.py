"""trashlab's own exceptions: each message says what went wrong and what to do about it."""

from __future__ import annotations


class TrashlabError(Exception):
    """Base class: a problem a student can fix, described in one line."""


class BadArgument(TrashlabError, ValueError):
    """A value passed to trashlab (URL, subject, interval, ...) is not usable."""


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
    """The embedded nats-server could not be started or reached."""


class NatsServerNotFound(BrokerError):
    """The nats-server binary is missing or cannot be executed."""


class PortInUse(BrokerError):
    """The requested port is already taken by another program."""


class BrokerStartTimeout(BrokerError):
    """nats-server did not accept clients within the bounded wait."""


class InsecureBind(BrokerError):
    """A broker would listen beyond loopback without credentials."""


class ConnectionFailed(TrashlabError):
    """No NATS server could be reached at the given URL(s)."""


class NoServerKnown(ConnectionFailed):
    """No URL was given, NATS_URL is unset and this process started no broker."""


class ServiceUnavailable(TrashlabError):
    """No report service answered the request."""


class CanNotFound(TrashlabError, KeyError):
    """The report service has no reading for the requested can id."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class ServiceFailed(TrashlabError):
    """A simulator or report process exited, or did not get ready, at start."""


class DockerUnavailable(TrashlabError):
    """No Docker engine answers here (the notebooks then take the local path)."""


class ClusterNotFormed(BrokerError):
    """Cluster nodes did not all route to each other within the bounded wait."""


class CheckFailed(TrashlabError, AssertionError):
    """An exercise answer is not right yet; the message (a ✘ line) says what was expected."""
