"""The gateway simulator (the lab's ``sim.js``): random levels for random cans on ``trash-level``."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Callable, Optional

from nats.errors import ConnectionClosedError, OutboundBufferLimitError

from ..servers.connection import Servers, check_subject
from ..errors import BadArgument
from ..message import SUBJECT, encode
from .lifecycle import NatsComponent

if TYPE_CHECKING:
    pass

log = logging.getLogger("trashlab")

# between two yields to the loop at full speed (interval=0)
_BURST = 256


class Simulator(NatsComponent):
    """Publishes ``{"can_id":"135", "level":"42.93..."}`` every ``interval`` seconds as a background task."""

    def __init__(self, servers: Servers = None, subject: str = SUBJECT, interval: float = 4.0,
                 cans: int = 1000, count: Optional[int] = None, seed: Optional[int] = None, *,
                 sequence: bool = False, name: str = "simulator",
                 on_publish: Optional[Callable[[bytes], None]] = None) -> None:
        if not isinstance(interval, (int, float)) or interval < 0 or interval != interval:
            raise BadArgument(f"interval={interval!r} must be 0 (full speed) or a positive number of seconds, e.g. 4.0")
        if not isinstance(cans, int) or cans < 1:
            raise BadArgument(f"cans={cans!r} must be a positive whole number, e.g. 1000")
        if count is not None and (not isinstance(count, int) or count < 0):
            raise BadArgument(f"count={count!r} must be a whole number >= 0, or None to run until stopped")
        super().__init__(servers, name)
        self.subject = check_subject(subject)
        self.interval = float(interval)
        self.cans = cans
        self.count = count
        self.seed = seed
        self.sequence = sequence
        self.on_publish = on_publish
        self.published = 0
        self.dropped = 0
        #: why publishing stopped early (None while fine)
        self.error: Optional[str] = None
        self._rng = random.Random(seed)
        self._task: Optional[asyncio.Task] = None

    def reading(self) -> bytes:
        """The next random reading, encoded like sim.js (can id rounded like ``toFixed()``)."""
        level = self._rng.random() * 100
        can_id = str(round(self._rng.random() * self.cans))
        return encode(can_id, level, self.published + 1 if self.sequence else None)

    kind = "simulator"
    drain_on_stop = False  # a publisher: flush what is buffered, nothing to deliver
    stop_timeout = 2.0

    async def _setup(self) -> None:
        """Start publishing in the background."""
        self._task = self._background(self._run(), "publish")

    @property
    def running(self) -> bool:
        """True while the publishing task runs."""
        return self._task is not None and not self._task.done()

    async def _publish(self, payload: bytes) -> None:
        assert self._nc is not None, "publishing before start()"
        try:
            await self._nc.publish(self.subject, payload)
        except (OutboundBufferLimitError, ConnectionClosedError):
            self.dropped += 1
            return
        self.published += 1
        if self.on_publish is not None:
            self.on_publish(payload)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not self.stopping and (self.count is None or self.published + self.dropped < self.count):
                if self.interval > 0:
                    await self._publish(self.reading())
                    next_at += self.interval
                    await asyncio.sleep(max(0.0, next_at - loop.time()))
                else:
                    left = _BURST if self.count is None else min(_BURST, self.count - self.published - self.dropped)
                    for _ in range(left):
                        await self._publish(self.reading())
                    await asyncio.sleep(0)
            if self._nc is not None:
                await self._nc.flush(timeout=5)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # blind: a background task never dies silently (kept in .error, one warning line)
            self.error = str(e) or type(e).__name__
            log.warning("trashlab [%s]: stopped publishing: %s", self.name, self.error)

    async def wait(self, timeout: Optional[float] = None) -> int:
        """Wait until ``count`` messages are published (or ``timeout`` s); return how many were.

        Giving up prints one line saying how far it got.
        """
        from .._progress import waiting

        if self._task is not None:
            what = f"simulator {self.name!r} publishing {self.count if self.count is not None else 'until stopped'}"
            try:
                with waiting(what):
                    await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                if self.count is None:  # "let it run for timeout seconds"
                    return self.published
                why = ("it is not connected (its broker is down?)" if self.connected_url is None
                       else "publishing is slower than that: wait longer")
                print(f"{what}: gave up after {timeout:g} s with {self.published} published: {why}", flush=True)
        return self.published

    async def stop(self) -> None:
        """Stop publishing, flush what is buffered, close the connection (``published`` says how many went out)."""
        await super().stop()

    @property
    def rate(self) -> float:
        """Messages published per second since start."""
        return self._per_second(self.published)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Simulator {self.subject} every {self.interval:g}s {state}, published={self.published}>"
