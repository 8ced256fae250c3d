"""Checks of notebook 02 (the broker): a first client, and who is connected.

Each check starts a broker of its own (with the protocol trace for ``hello_nats``) and compares with what
that broker reports: its trace and its monitoring port. The notebook's ``broker`` is not needed: a check
works after the notebook stopped it, and nothing the student did to that object counts.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from ...errors import CheckFailed
from ...servers.broker import protocol_records
from ...servers.monitor import fetch
from . import _short, failed, passed
from ._answer import answer, call, graded, require_function
from ._live import SETTLE, client, delivered, poll, private_broker, unique

CHECK_NAME = "trashlab-check"


def _ignored(broker: Any, check: str) -> None:
    """A broker passed the old way is not used any more: say so once (FutureWarning), and carry on."""
    if broker is not None:
        warnings.warn(f"{check}: the broker argument is ignored: the check starts a broker of its own; "
                      f"call {check}(answer) without it", FutureWarning, stacklevel=3)


def _delivered_to_others(output: str, subject: str) -> "tuple[set, set, set]":
    """Connection ids (other than the check's) that subscribed to, published on, and received ``subject``."""
    subs, pubs, got = set(), set(), set()
    for cid, name, arrow, text in protocol_records(output):
        if name == CHECK_NAME:
            continue
        if text.startswith(f"[SUB {subject} "):
            subs.add(cid)
        elif text.startswith(f"[PUB {subject} "):
            pubs.add(cid)
        elif arrow == "->>" and text.startswith(f"[MSG {subject} "):
            got.add(cid)
    return subs, pubs, got


def _published_first(output: str, subject: str) -> bool:
    """Whether a connection other than the check's sent its PUB on ``subject`` before its SUB (or with no SUB)."""
    first: "dict[int, str]" = {}
    for cid, name, _arrow, text in protocol_records(output):
        if name != CHECK_NAME and cid not in first:
            if text.startswith(f"[PUB {subject} "):
                first[cid] = "PUB"
            elif text.startswith(f"[SUB {subject} "):
                first[cid] = "SUB"
    return "PUB" in first.values()


@graded
async def check_hello(hello_nats: Callable, broker: Any = None, timeout: float = 5.0) -> None:
    """``await hello_nats(url, subject, text)`` must publish ``text`` on ``subject``, receive it back and return it.

    The truth is the check's own traced broker: the check listens on the subject itself, and reads the
    server's protocol trace to see that the student's connection subscribed and was sent the message.
    (``broker`` is ignored, with a FutureWarning: the check no longer uses the notebook's.)
    """
    name = require_function(hello_nats, "hello_nats")
    _ignored(broker, "check_hello")
    async with private_broker(trace=True) as own:
        await _check_hello(hello_nats, name, own, timeout)


async def _check_hello(hello_nats: Callable, name: str, broker: Any, timeout: float) -> None:
    subject, text = unique("hello."), unique("hi from the check ")
    what = f"await {name}(url, {subject!r}, {text!r})"
    heard: list = []
    async with client(broker.url, CHECK_NAME) as nc:
        async def on_msg(msg) -> None:
            heard.append(msg.data)
        sub = await nc.subscribe(subject, cb=on_msg)
        await nc.flush()
        try:
            got = await answer(hello_nats, broker.url, subject, text, what=what, timeout=timeout)
        except CheckFailed as error:
            if _published_first(broker.output, subject):
                raise failed(f"{what}: your connection published before it subscribed (the broker's trace has its "
                             "PUB before its SUB), so the message had gone before your subscription existed and "
                             "nothing came back: subscribe first, then publish") from None  # the order is the cause
            raise error
        await poll(lambda: bool(heard), SETTLE)
        await delivered(None, nc, [sub])
    if not heard:
        raise failed(f"{what}: the broker never saw a message on {subject!r}: publish `text` on the "
                     "`subject` you are given (and await nc.publish / nc.flush before closing)")
    if heard != [text.encode()]:
        raise failed(f"{what}: the broker carried {_short(heard)} on {subject!r}, expected one message "
                     f"{text.encode()!r}")
    await poll(lambda: any(_delivered_to_others(broker.output, subject)[2]), SETTLE)
    subs, _, sent_to = _delivered_to_others(broker.output, subject)
    if not subs:
        raise failed(f"{what}: your connection never subscribed to {subject!r} (no SUB in the broker's "
                     "trace): subscribe first, then publish, then wait for the message")
    if not subs & sent_to:
        raise failed(f"{what}: the broker never delivered the message to your subscription (no MSG in "
                     "its trace): subscribe before you publish, and flush so the SUB reaches the broker")
    if isinstance(got, (bytes, bytearray)):
        raise failed(f"{what} returned bytes {bytes(got)!r}: return the text, msg.data.decode()")
    if not isinstance(got, str):
        raise failed(f"{what} returned {_short(got)}, expected the text of the message you received: "
                     "msg.data.decode()")
    if got != text:
        raise failed(f"{what} returned {got!r}, expected the text that came back: {text!r}")
    ids = subs & sent_to

    def still_open() -> bool:
        return bool(ids & {c["cid"] for c in fetch(broker.monitor_url, "connz").get("connections") or []})
    if not await poll(lambda: not still_open(), 2.0):
        raise failed(f"{what}: your connection is still open after the function returned: "
                     "end with await nc.close()")
    return passed(f"{what} = {got!r}: SUB, PUB and MSG seen by the broker, connection closed")


@graded
async def check_client_names(client_names: Callable, broker: Any = None) -> None:
    """``client_names(broker)``: the sorted names of the clients connected now (from the monitoring port).

    The check calls it on a broker of its own, with two clients connected under fresh names, so a list
    written by hand cannot match. (``broker`` is ignored, with a FutureWarning.)
    """
    name = require_function(client_names, "client_names", asynchronous=False)
    _ignored(broker, "check_client_names")
    what = f"{name}(broker)"
    extra, watcher = unique("check-"), unique("watcher-")
    async with private_broker() as own, client(own.url, watcher), client(own.url, extra):
        got = call(client_names, own, what=what)
        expected = sorted(str(c.get("name", "")) for c in fetch(own.monitor_url, "connz").get("connections") or [])
    if not isinstance(got, (list, tuple)):
        raise failed(f"{what} returned a {type(got).__name__}, expected a list of names such as {expected}"
                     + (": turn it into one with list(...)" if hasattr(got, "tolist") else ""))
    got = list(got)
    if got == expected:
        return passed(f"{what} = {_short(got)}")
    if sorted(map(str, got)) == expected:
        raise failed(f"{what} has the right names in the wrong order: return them sorted ({expected})")
    raise failed(f"{what} is {_short(got)}, but the broker's /connz lists {expected} (the check connected "
                 f"{watcher!r} and {extra!r} to a broker of its own just before calling it): read the names from "
                 "broker.connz() each time")
