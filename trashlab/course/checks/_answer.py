"""How every check runs the student's answer: call it, bounded in time, and keep stderr clean meanwhile.

- :func:`require_function` says at once (before any server starts) that the answer is missing or is
  not a function; it returns the name the ✘ lines use.
- :func:`answer` awaits an ``async def`` answer, :func:`call` calls a plain one. Each way the student's
  code can go wrong becomes one ✘ line: not written yet (the ``raise NotImplementedError()`` stub
  nbgrader leaves), an exception (its first line), no ``async def``, a hang (``answer`` waits at most
  ``timeout``), a coroutine returned without ``await``.
- :func:`graded` wraps every public check: under nbgrader a test cell that writes anything to stderr
  earns nothing, so while a check runs trashlab's log lines go to stdout, and whatever else reaches
  stderr (nats-py's error tracebacks from a client without ``error_cb``, "never awaited" warnings) is
  collected and shown on stdout, one short line each, when the check ends. A correct answer never loses
  its points to a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import io
import logging
import sys
from typing import Any, Callable, Iterator, Optional, TypeVar

import pandas as pd

from . import _short, failed
from ...errors import CheckFailed
from ...servers.progress import report_check

#: The stub nbgrader puts where a solution was removed raises this exception type.
_TODO = NotImplementedError

F = TypeVar("F", bound=Callable[..., Any])


def _name(fn: Any, default: str = "your function") -> str:
    return getattr(fn, "__name__", default)


def _call_text(fn: Any, args: tuple) -> str:
    shown = ", ".join("frame" if isinstance(a, pd.DataFrame) else _short(a, 30) for a in args)
    return f"{_name(fn)}({shown})"


def require_function(fn: Any, name: str, asynchronous: bool = True) -> str:
    """✘ at once when the answer is missing or not a function; else the name to show (``name`` if it has none)."""
    if fn is None or fn is Ellipsis:
        kind = "async def" if asynchronous else "def"
        raise failed(f"{name} has no answer yet: run the exercise cell that defines it (`{kind} {name}(...)`), "
                     "then this one")
    if not callable(fn):
        raise failed(f"{name} should be a function ({'async def' if asynchronous else 'def'} ...), got {_short(fn)}")
    return _name(fn, name)


def _blame(error: Exception, fn: Any, what: str) -> CheckFailed:
    """What the student's code raised, as the ✘ line of the check."""
    if isinstance(error, CheckFailed):
        return error
    if isinstance(error, _TODO):
        return failed(f"{_name(fn)} is not written yet: replace `raise NotImplementedError()` with your code, "
                      "run that cell, then this one")
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return failed(f"{what} raised {type(error).__name__}" + (f": {first}" if first else ""))


def call(fn: Callable, *args: Any, what: Optional[str] = None) -> Any:
    """Call a student's plain function; "not written yet", a missing answer and any exception become a ✘ line.

    ``what`` is how the call is shown in that line (by default ``name(args)``).
    """
    require_function(fn, _name(fn), asynchronous=False)
    what = what or _call_text(fn, args)
    try:
        result = fn(*args)
    except Exception as e:  # blind: the student's code may raise anything: one ✘ line
        raise _blame(e, fn, what) from None  # a ✘ line for the student; their error is named in it
    if inspect.iscoroutine(result):
        result.close()  # never run: no "never awaited" warning later
        raise failed(f"{what} returned a coroutine: write it as a plain `def` (nothing in it needs await)")
    return result


class _Raised(Exception):
    """The student's exception, told apart from the time limit (nats-py's TimeoutError is an asyncio one)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


async def _theirs(pending: Any) -> Any:
    try:
        return await pending
    except Exception as e:  # blind: the student's code may raise anything: told apart from the time limit
        raise _Raised(e) from e


async def answer(fn: Callable, *args: Any, what: Optional[str] = None, timeout: float = 10.0) -> Any:
    """Await the student's ``async def`` with ``args`` (at most ``timeout`` seconds); return its result.

    One ✘ line for: no answer, not written yet, not an ``async def``, an exception, a hang, a coroutine
    returned without ``await``. ``what`` is how the call is shown (by default ``await name(args)``).
    """
    require_function(fn, _name(fn))
    what = what or f"await {_call_text(fn, args)}"
    try:
        pending = fn(*args)
    except Exception as e:  # blind: the student's code may raise anything: one ✘ line
        raise _blame(e, fn, what) from None  # a ✘ line for the student; their error is named in it
    if not inspect.isawaitable(pending):
        raise failed(f"{what} returned {_short(pending)} at once: it should be an `async def`, because "
                     "everything it does with NATS is awaited")
    try:
        result = await asyncio.wait_for(_theirs(pending), timeout)
    except asyncio.TimeoutError:
        raise failed(f"{what} did not finish within {timeout:g} s: does it wait for something that "
                     "never comes?") from None  # a ✘ line for the student; their error is named in it
    except _Raised as raised:
        raise _blame(raised.error, fn, what) from None  # a ✘ line for the student; their error is named in it
    if inspect.isawaitable(result):
        returned = f", {result.__qualname__}(...)" if inspect.iscoroutine(result) else ""
        if inspect.iscoroutine(result):
            result.close()  # never run: no "never awaited" warning later
        raise failed(f"{what} returned a coroutine that nobody awaited{returned}: add `await` in front of "
                     "the nats-py call it returns (`return await ...`)")
    return result


# ----- stderr stays clean while a check runs ---------------------------------------------------------
class _StdoutHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stdout)


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
def _stderr_kept_clean() -> Iterator[None]:
    """trashlab's log lines go to stdout meanwhile; anything else written to stderr is shown on stdout after."""
    logger = logging.getLogger("trashlab")
    saved = logger.handlers[:], logger.propagate
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers, logger.propagate = [handler], False
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            try:
                yield
            finally:
                gc.collect()  # "coroutine ... was never awaited" warnings appear now, inside the capture
    finally:
        logger.handlers, logger.propagate = saved
        lines = _condense(buffer.getvalue())
        if lines:
            shown = lines[:3] + ([f"... and {len(lines) - 3} more"] if len(lines) > 3 else [])
            print("(written to stderr during the check, e.g. by a client without error_cb: "
                  + " | ".join(shown) + ")", file=sys.stdout)


#: the notebook each check module belongs to (the first part of an exercise id, ``03/publish_readings``)
NOTEBOOKS = {"broker": "02", "simulator": "03", "report": "04", "cluster": "05", "jetstream": "05b",
             "cleanup": "06", "rates": "07", "fanout": "08"}


def exercise_id(check: Callable) -> str:
    """The id a check's ✔/✘ is told to the class under: ``03/publish_readings`` for ``simulator.check_publish_readings``."""
    module = getattr(check, "__module__", "").rpartition(".")[2]
    return f"{NOTEBOOKS.get(module, module)}/{_name(check).removeprefix('check_')}"


@contextlib.contextmanager
def _progress_told(exercise: str) -> Iterator[None]:
    """After the check: ✔ (no error) or ✘ (CheckFailed) is published to the class, if this machine joined one."""
    try:
        yield
    except CheckFailed:
        report_check(exercise, False)
        raise
    report_check(exercise, True)


def graded(check: F) -> F:
    """Decorator for every public check (sync or async): nothing written to stderr while it runs can cost the
    points; its ✔/✘ reaches the class page when the student joined a class (:mod:`trashlab.servers.progress`)."""
    exercise = exercise_id(check)
    if inspect.iscoroutinefunction(check):
        @functools.wraps(check)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with _stderr_kept_clean(), _progress_told(exercise):
                return await check(*args, **kwargs)
        return run_async  # type: ignore[return-value]

    @functools.wraps(check)
    def run(*args: Any, **kwargs: Any) -> Any:
        with _stderr_kept_clean(), _progress_told(exercise):
            return check(*args, **kwargs)
    return run  # type: ignore[return-value]
