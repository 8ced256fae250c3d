"""A joined student's live progress: every ✔/✘ of an exercise check, told to the class over NATS.

When this machine joined a class (:func:`trashlab.classroom.join`), :func:`report_check` publishes one
small message on ``trash-progress`` *in the student's own account*: which exercise, passed or not, the
attempt number. Nothing else: no code, no output, no name (the hub knows whose account it came from and
shows it to the instructor as ``class.<student>.trash-progress``, so no student can speak for another).

It goes through a broker of this process that is a leaf node of the hub (the course's ``iot-msg`` after
joining), else straight to the hub with the student's own login. It never slows or breaks a check: the
message is handed to one background thread, which sends it with a few lines of the NATS protocol
(no nats-py, no event loop) and forgets every error; it never writes to stderr (nbgrader gives no
points to a test cell that does). Not joined: nothing happens.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections import Counter
from typing import Optional
from urllib.parse import unquote, urlsplit

from . import names
from .joined import joined
from .rawclient import login

#: The subject a student's progress is published on, in their own account.
PROGRESS = "trash-progress"
#: What an exercise id may look like (``03/publish_readings``); the class page drops anything else.
EXERCISE = re.compile(r"^[0-9a-z][0-9a-z_]{0,7}/[a-z][a-z0-9_]{0,47}$")
#: Seconds the background sender waits for a server before giving up on one message.
SEND_TIMEOUT = 2.0
#: Messages waiting to be sent beyond which new ones are dropped (a hub that does not answer).
MAX_PENDING = 200

_attempts: Counter = Counter()
_queue: "queue.Queue[tuple[str, bytes]]" = queue.Queue(maxsize=MAX_PENDING)
_sender: Optional[threading.Thread] = None
_lock = threading.Lock()
#: how many messages the sender handed to a server (tests wait on it)
sent = 0


def payload(exercise: str, ok: bool, attempt: int) -> bytes:
    """The message: ``{"exercise": "03/publish_readings", "ok": true, "attempt": 2}``."""
    return json.dumps({"exercise": exercise, "ok": bool(ok), "attempt": int(attempt)}).encode()


def _target() -> Optional[str]:
    """Where to publish: a broker of this process joined to the class as a leaf node, else the hub itself."""
    seat = joined()
    if seat is None:
        return None
    for broker in reversed(names.running()):
        config = getattr(broker, "config", None)
        if getattr(config, "leaf_remote", None):
            return broker.url
    return seat.client_url  # None when joined over WebSocket without a leaf broker running: nothing to do


def report_check(exercise: str, ok: bool) -> None:
    """Tell the class (if this machine joined one) that the check of ``exercise`` passed or failed; never raises."""
    try:
        if not EXERCISE.match(exercise):
            return
        url = _target()
        if url is None:
            return
        _attempts[exercise] += 1
        _queue.put_nowait((url, payload(exercise, ok, _attempts[exercise])))
        _ensure_sender()
    except Exception:  # blind: progress is a courtesy to the instructor; a check must never fail because of it
        return


def _ensure_sender() -> None:
    global _sender
    with _lock:
        if _sender is None or not _sender.is_alive():
            _sender = threading.Thread(target=_send_forever, name="trashlab-progress", daemon=True)
            _sender.start()


def _send_forever() -> None:
    global sent
    while True:
        url, data = _queue.get()
        try:
            _publish(url, data)
            sent += 1
        except Exception:  # blind: a hub away or refusing; the message is dropped, the thread goes on
            continue


def _publish(url: str, data: bytes) -> None:
    """CONNECT, PUB, PING; returns once the server answered PONG (it has routed the message)."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    done = login(parts.hostname or "127.0.0.1", parts.port or 4222, name="trashlab-progress",
                 user=user if password else None, password=password, token=None if password else user,
                 timeout=SEND_TIMEOUT)
    try:
        if not done.accepted:
            return
        done.sock.sendall(b"PUB %s %d\r\n%s\r\nPING\r\n" % (PROGRESS.encode(), len(data), data))
        reader = done.sock.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line or line.startswith((b"PONG", b"-ERR")):
                    break
                if line.startswith(b"PING"):
                    done.sock.sendall(b"PONG\r\n")
        finally:
            reader.close()
    finally:
        done.sock.close()
