"""A joined student's readings kept by the class hub: each one acknowledged, sent again until it is, stored once.

A student's broker forwards ``trash-level`` to the class hub as a leaf node, in core NATS: at most once, so the
readings published while its leaf connection moves to another hub node (a node killed) are lost. A hub that
*keeps readings* (``classroom serve --keep-readings``; its join lines say ``keep=1``) has a JetStream stream for
them (:data:`KEPT_STREAM`), and every broker a student starts after joining such a class runs a
:class:`KeptFeed` next to it: a background thread that subscribes to ``trash-level`` on that broker (the same
server as the student's publishers: nothing lost on the way) and publishes each reading to the hub with the
student's own login, as a JetStream publish (a request with a ``Nats-Msg-Id`` header, answered by the stream's
acknowledgement). Until the acknowledgement comes (a hub node gone, the stream electing a leader) it sends the
same reading again, in order; the stream stores a repeated id once (its duplicate window,
docs.nats.io/nats-concepts/jetstream/streams#duplicate-window). Readings wait in memory, at most
:data:`MAX_WAITING`; beyond that the oldest go, counted in ``dropped``.

The hub files each student's kept readings under ``kept.<student>.trash-level`` (the student's account imports
only its own subject: nobody keeps a reading in another's name). The thread never writes to stderr (nbgrader
gives no points to a cell that does) and never touches the notebook's event loop: it runs its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from collections import deque
from typing import Deque, Dict, Optional, Tuple

import nats
import nats.errors

from .._secrets import redact

log = logging.getLogger("trashlab")

#: The subject the student's account publishes kept readings on (imported from the hub's KEPT account).
KEPT_IMPORT = "trash-level.kept"
#: The account on the hub that holds the kept readings, and its one user (the instructor's password).
KEPT_ACCOUNT = "KEPT"
KEPT_USER = "kept"
#: The hub's stream of kept readings; a student's readings are its subject ``kept.<student>.trash-level``.
KEPT_STREAM = "CLASS_READINGS"
KEPT_PREFIX = "kept"
#: Readings waiting for the hub's acknowledgement beyond which the oldest are dropped.
MAX_WAITING = 100_000
#: Seconds a reading waits for its acknowledgement before it is sent again; seconds between tries.
ACK_WITHIN = 2.0
RETRY_EVERY = 0.2
#: JetStream's "try again" answers (503: no stream leader yet; 10008: JetStream temporarily unavailable)
_AGAIN = {503, 10008}


def kept_subject(student: str) -> str:
    """Where the hub keeps a student's readings: ``kept.s01.trash-level``."""
    return f"{KEPT_PREFIX}.{student}.trash-level"


class KeptFeed:
    """Every reading on ``trash-level`` of one broker, published to the class hub until the hub acknowledges it.

    ``broker_url`` is the student's broker, ``hub_url`` the student's own login on the hub (comma-separated
    URLs for a clustered hub). ``start()`` returns at once; ``ready`` is set once the broker has the feed's
    subscription; ``stop(timeout)`` sends what still waits for up to ``timeout`` s, then ends the thread.
    """

    def __init__(self, broker_url: str, hub_url: str, student: str, *, subject: str = "trash-level") -> None:
        self.broker_url = broker_url
        self._hub_urls = [u.strip() for u in hub_url.split(",") if u.strip()]
        self.student = student
        self.subject = subject
        self.received = 0  #: readings taken from the broker
        self.kept = 0  #: readings the hub acknowledged (a repeat it had stored already counts once)
        self.resent = 0  #: tries that were not acknowledged and were made again
        self.dropped = 0  #: readings given up: the oldest beyond MAX_WAITING, or refused by the stream (too big)
        self.ready = threading.Event()
        self._waiting: Deque[Tuple[int, bytes]] = deque()  # touched by the feed's own loop only
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._wake: Optional[asyncio.Event] = None
        self._stopping = threading.Event()
        self._deadline = 0.0
        self._token = secrets.token_hex(6)  # this feed's message ids: <student>-<token>-<n>

    @property
    def waiting(self) -> int:
        """Readings taken from the broker and not yet acknowledged by the hub."""
        return len(self._waiting)

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "KeptFeed":
        """Start the thread (it connects to the broker, subscribes, then to the hub); returns at once."""
        if not self.running:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._main, name=f"trashlab-kept-feed-{self.student}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Send what waits for up to ``timeout`` s (the hub must acknowledge it), then end the thread."""
        thread = self._thread
        if thread is None:
            return
        loop = self._loop
        self._deadline = timeout
        self._stopping.set()
        if loop is not None and self._wake is not None:
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # its loop closed already: the thread is ending
                pass
        thread.join(timeout + 5.0)
        self._thread = None

    def counts(self) -> Dict[str, int]:
        """``received``, ``kept``, ``waiting``, ``resent``, ``dropped``."""
        return {"received": self.received, "kept": self.kept, "waiting": self.waiting, "resent": self.resent,
                "dropped": self.dropped}

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<KeptFeed {self.student} {state} {redact(self.broker_url)} {self.counts()}>"

    # ----- the thread ------------------------------------------------------------------------
    def _main(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._run())
        except Exception as e:  # blind: a thread of plumbing ends in one log line, never a traceback on stderr
            log.debug("trashlab: kept feed %s ended: %s", self.student, redact(e))
        finally:
            loop.close()
            self._loop = None

    async def _connect(self, servers: list, name: str) -> Optional[nats.NATS]:
        async def quiet(*_args) -> None:
            return None

        while not self._stopping.is_set():
            try:
                return await nats.connect(servers=servers, name=name, max_reconnect_attempts=-1,
                                          reconnect_time_wait=RETRY_EVERY, connect_timeout=2, allow_reconnect=True,
                                          error_cb=quiet, disconnected_cb=quiet, reconnected_cb=quiet,
                                          closed_cb=quiet, pending_size=64 * 1024 * 1024)
            except (OSError, nats.errors.Error, asyncio.TimeoutError):
                await asyncio.sleep(1.0)
        return None

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        local = hub = None
        try:
            local = await self._connect([self.broker_url], "trashlab-kept-feed")
            if local is None:
                return
            await local.subscribe(self.subject, cb=self._take, pending_msgs_limit=MAX_WAITING,
                                  pending_bytes_limit=256 * 1024 * 1024)
            await local.flush(timeout=5)
            self.ready.set()
            hub = await self._connect(self._hub_urls, f"trashlab-kept-feed-{self.student}")
            if hub is not None:
                await self._send(hub)
        finally:
            for nc in (local, hub):
                if nc is not None and not nc.is_closed:
                    try:
                        await asyncio.wait_for(nc.close(), 2)
                    except (asyncio.TimeoutError, nats.errors.Error, OSError):
                        pass

    async def _take(self, msg) -> None:
        self._waiting.append((self.received, msg.data))
        self.received += 1
        if len(self._waiting) > MAX_WAITING:
            self._waiting.popleft()
            self.dropped += 1
        assert self._wake is not None
        self._wake.set()

    async def _send(self, hub: nats.NATS) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        stop_at: Optional[float] = None
        while True:
            if self._stopping.is_set() and stop_at is None:
                stop_at = loop.time() + self._deadline
            if not self._waiting:
                if stop_at is not None:
                    return
                self._wake.clear()
                if not self._waiting and not self._stopping.is_set():
                    await self._wake.wait()
                continue
            if stop_at is not None and loop.time() > stop_at:
                return  # what still waits is given up with the feed
            n, data = self._waiting[0]
            if await self._publish(hub, n, data):
                if self._waiting and self._waiting[0][0] == n:  # not dropped as the oldest meanwhile
                    self._waiting.popleft()
            else:
                self.resent += 1
                await asyncio.sleep(RETRY_EVERY)

    async def _publish(self, hub: nats.NATS, n: int, data: bytes) -> bool:
        """One try: True when the hub acknowledged reading ``n`` (or refused it for good: counted as dropped)."""
        try:
            reply = await hub.request(KEPT_IMPORT, data, timeout=ACK_WITHIN,
                                      headers={"Nats-Msg-Id": f"{self.student}-{self._token}-{n}"})
        except (nats.errors.Error, asyncio.TimeoutError, OSError):  # timeout, no responders, reconnecting
            return False
        try:
            ack = json.loads(reply.data)
        except ValueError:
            return False
        error = ack.get("error") if isinstance(ack, dict) else None
        if error is None:
            self.kept += 1
            return True
        if error.get("code") in _AGAIN or error.get("err_code") in _AGAIN:
            return False
        self.dropped += 1  # the stream refuses it for good (e.g. bigger than its largest message)
        log.debug("trashlab: the hub refused a kept reading of %s: %s", self.student, error.get("description"))
        return True


#: Limits of the stream: a student's own readings are bounded (one student's flood pushes out only their own),
#: then the whole stream; readings older than two weeks go; a reading is at most 64 KiB.
PER_STUDENT = 200_000
STREAM_BYTES = 2 * 1024**3
MAX_AGE_S = 14 * 24 * 3600
MAX_READING = 64 * 1024
DUPLICATE_WINDOW_S = 120


def stream_config(replicas: int = 1) -> dict:
    """The kept readings' stream, as JetStream's API takes it (``replicas``: 3 on a hub of 3 nodes or more)."""
    return {"name": KEPT_STREAM, "subjects": [f"{KEPT_PREFIX}.*.trash-level"], "retention": "limits",
            "storage": "file", "num_replicas": replicas, "discard": "old", "max_msgs_per_subject": PER_STUDENT,
            "max_bytes": STREAM_BYTES, "max_age": MAX_AGE_S * 10**9, "max_msg_size": MAX_READING,
            "duplicate_window": DUPLICATE_WINDOW_S * 10**9,
            "description": "every reading of every student, acknowledged (trashlab class hub)"}


def keep_stream(kept_url: str, replicas: int = 1, timeout: float = 30.0) -> None:
    """Make the hub's stream of kept readings (kept as it is when it exists); waits for JetStream to answer
    (a clustered hub elects its JetStream leader first), at most ``timeout`` s."""
    from urllib.parse import unquote, urlsplit

    from .._progress import poll_until
    from ..errors import BrokerError
    from .rawclient import request

    body = json.dumps(stream_config(replicas)).encode()
    last = ["no answer"]
    urls = [urlsplit(u.strip()) for u in kept_url.split(",") if u.strip()]

    def made() -> bool:  # one try on each node; JetStream may still be electing its leader
        for u in urls:
            try:
                reply = request(u.hostname or "127.0.0.1", u.port or 4222, f"$JS.API.STREAM.CREATE.{KEPT_STREAM}", body,
                                name="trashlab-keep-stream", user=unquote(u.username or ""),
                                password=unquote(u.password or ""), timeout=2.0)
            except OSError as e:  # this node is not there (yet): another one, or again
                last[0] = str(e)
                continue
            if reply is None:
                continue
            error = json.loads(reply).get("error")
            if error is None or error.get("err_code") == 10058:  # made, or there already
                return True
            last[0] = str(error.get("description"))
        return False

    if not poll_until(made, timeout=timeout, every=0.5):
        raise BrokerError(f"the class hub did not make its stream {KEPT_STREAM} within {timeout:g}s ({last[0]}): "
                          "is JetStream on (keep_readings=True turns it on)?")


#: broker name -> its feed (one per broker; a broker started again on the same URL keeps it)
_feeds: Dict[str, KeptFeed] = {}


def follow(name: str, broker_url: str, hub_url: str, student: str) -> KeptFeed:
    """The kept feed of broker ``name``: started if new, or again if the broker is on another URL now
    (its ``ready`` is set once it subscribed)."""
    feed = _feeds.get(name)
    if feed is not None and (feed.broker_url != broker_url or not feed.running):
        feed.stop(1.0)
        feed = None
    if feed is None:
        feed = _feeds[name] = KeptFeed(broker_url, hub_url, student).start()
    return feed


def unfollow(name: str, timeout: float = 5.0) -> Optional[KeptFeed]:
    """Stop broker ``name``'s kept feed after sending what waits (``timeout`` s at most); the feed, or None."""
    feed = _feeds.pop(name, None)
    if feed is not None:
        feed.stop(timeout)
    return feed


def feed_of(name: str) -> Optional[KeptFeed]:
    """The kept feed of broker ``name``, if it has one."""
    return _feeds.get(name)


def stop_feeds(timeout: float = 1.0) -> int:
    """Stop every kept feed of this process (``timeout`` s each to send what waits); how many were running."""
    names = list(_feeds)
    for name in names:
        unfollow(name, timeout)
    return len(names)
