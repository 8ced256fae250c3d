"""What the checks of 05-08 share: the server's view of one connection, bounded polling, quiet output.

A live check never trusts what the student's code says about itself: it starts its own nats-server
(so nothing else in the notebook disturbs it, and killing a node hurts nobody), publishes values it
chose, and reads the server's monitoring port (``/connz?subs=detail&cid=N``) for what really
happened on the student's connection. Everything it starts is stopped before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import gc
import inspect
import io
import json
import re
import sys
import urllib.request
from typing import Any, Optional

from . import failed
from ._live import _CheckBroker, poll, unique  # noqa: F401  (poll, unique: shared with the checks of 05-08)
from ...errors import CheckFailed

_TODO = NotImplementedError


def private_broker(jetstream: bool = False):
    """A nats-server of the check's own (not yet started; ``await .astart()``): never a leaf of a joined
    class, so what a check publishes is no reading of the class."""
    return _CheckBroker(unique("check-"), jetstream=jetstream)  # the same private kind the checks of 02-04 use


def connection(monitor_url: str, cid: Optional[int]) -> Optional[dict]:
    """The server's record of one open client connection (``/connz?subs=detail&cid=N``), or None."""
    if cid is None:
        return None
    try:
        with urllib.request.urlopen(f"{monitor_url}/connz?subs=detail&cid={int(cid)}", timeout=2) as resp:
            conns = json.loads(resp.read()).get("connections") or []
    except (OSError, ValueError):
        return None
    return conns[0] if conns else None


def subscriptions(record: Optional[dict]) -> "list[dict]":
    """The subscriptions of a /connz record: ``[{"subject", "qgroup", "msgs", ...}]``."""
    return list((record or {}).get("subscriptions_list_detail") or [])


def server_time(stamp: str) -> float:
    """An RFC 3339 time from /connz (``2026-11-30T03:11:51.40774297Z``) as seconds since 1970."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", stamp)
    if not m:
        raise ValueError(f"unexpected server time {stamp!r}")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    whole = _dt.datetime.fromisoformat(m.group(1) + zone).timestamp()
    return whole + (float("0." + m.group(2)) if m.group(2) else 0.0)


def require_function(fn: Any, what: str) -> None:
    """✘ at once (before any server starts) when the answer is missing or not a function."""
    if fn is None or fn is Ellipsis:
        raise failed(f"{what} has no answer yet: write it in the exercise cell, run that cell, then this one")
    if not callable(fn):
        raise failed(f"{what} should be a function (async def ...), got {type(fn).__name__}")


async def answer(fn: Any, what: str, *args: Any, timeout: float = 10.0) -> Any:
    """Await the student's ``async def`` with ``args``: one ✘ line for not written, not async, missing await,
    an exception or a hang; else its result."""
    require_function(fn, what)
    try:
        result = fn(*args)
        if not inspect.isawaitable(result):
            raise failed(f"{what} returned {type(result).__name__} at once: it should be an `async def`, "
                         "because everything it does with NATS is awaited")
        result = await asyncio.wait_for(result, timeout)
    except _TODO:
        raise failed(f"{what} is not written yet: replace `raise NotImplementedError()` with your code, "
                     "run that cell, then this one") from None
    except asyncio.TimeoutError:
        raise failed(f"{what} did not finish within {timeout:g} s: does it wait for something that "
                     "never comes?") from None
    except CheckFailed:
        raise
    except Exception as e:  # the student's bug, in one line
        raise failed(f"{what} raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never run: no "never awaited" warning later
        raise failed(f"{what} returned a coroutine that nobody awaited: add `await` in front of the "
                     "nats-py call it returns (e.g. `return await nats.connect(...)`)")
    return result


def _condense(text: str) -> "list[str]":
    """Captured stderr as short lines: each traceback shrinks to its last line."""
    lines, in_trace = [], False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_trace = True
            continue
        if in_trace:
            if line.startswith((" ", "\t")) or not line.strip():
                continue
            in_trace = False
        if line.strip():
            lines.append(line.strip())
    return lines


@contextlib.contextmanager
def quiet():
    """Collect what anything writes to stderr meanwhile (trashlab's log lines, nats-py's error tracebacks)
    and show it on stdout, one short line each, when the check ends.

    Under nbgrader a test cell that writes to stderr earns nothing: a reconnect logged by a background
    client must not zero a correct answer.
    """
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            try:
                yield
            finally:
                gc.collect()  # "coroutine ... was never awaited" warnings appear now, inside the capture
    finally:
        lines = _condense(buffer.getvalue())
        if lines:
            shown = lines[:3] + ([f"... and {len(lines) - 3} more"] if len(lines) > 3 else [])
            print("(written to stderr during the check, e.g. by a client without error_cb: "
                  + " | ".join(shown) + ")", file=sys.stdout)


@contextlib.asynccontextmanager
async def session(other: str):
    """A live check's set-up, output kept quiet: its private broker, the connection handed to the student's
    code (named ``student``) and one of the check's own (named ``other``); all closed and stopped after."""
    import nats

    with quiet():
        broker = await private_broker().astart()
        clients = []
        try:
            clients.append(await nats.connect(broker.url, name="student"))
            clients.append(await nats.connect(broker.url, name=other))
            yield broker, clients[0], clients[1]
        finally:
            for c in clients:
                with contextlib.suppress(Exception):
                    await c.close()
            broker.stop()
