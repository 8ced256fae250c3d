"""Which errors of nats-py mean "try again", and waiting longer each time before trying.

A drill kills nodes on purpose: for a while there is no stream leader, requests time out and the
client reconnects. Those errors are worth another try, after a pause that grows. Anything else (a bug,
a wrong argument) is not retried: it is raised.
"""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors

#: what nats-py raises while a node is away or a leader is being elected: ask again in a moment
TRY_AGAIN: "tuple[type[BaseException], ...]" = (
    nats.errors.TimeoutError,  # no answer in time (also FetchTimeoutError: nothing new to fetch)
    asyncio.TimeoutError,
    nats.errors.NoRespondersError,  # no leader to answer the request right now
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,  # reconnecting, and the buffer for that is full
    nats.js.errors.NoStreamResponseError,  # a JetStream publish nobody answered: the stream has no leader yet
    nats.js.errors.ServiceUnavailableError,  # JetStream 503: the stream or its leader is not there yet
    nats.js.errors.APIError,  # 409 "Leadership Change", "Consumer Deleted" while a node moves
)

#: everything a NATS server or the network can answer with (as opposed to a bug in the caller)
NATS_ERRORS: "tuple[type[BaseException], ...]" = (nats.errors.Error, OSError, asyncio.TimeoutError)

#: the first pause after a failed try, the longest one, and how much longer each next one is
FIRST_PAUSE = 0.005
LONGEST_PAUSE = 0.5
GROWTH = 2.0


class Backoff:
    """Pauses between tries: ``FIRST_PAUSE`` s, then twice as long each time, at most ``LONGEST_PAUSE`` s.

    ``await backoff.pause()`` after a failed try; ``backoff.reset()`` after one that worked.
    """

    def __init__(self, first: float = FIRST_PAUSE, longest: float = LONGEST_PAUSE, growth: float = GROWTH) -> None:
        self.first, self.longest, self.growth = first, longest, growth
        self.next = first
        self.failures = 0

    def reset(self) -> None:
        """A try worked: the next failure starts again with a short pause."""
        self.next = self.first
        self.failures = 0

    async def pause(self) -> float:
        """Wait before the next try; return how long it waited."""
        waited = self.next
        self.failures += 1
        self.next = min(self.longest, self.next * self.growth)
        await asyncio.sleep(waited)
        return waited
