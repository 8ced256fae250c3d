"""Checks of notebook 06 (clean-up): the student's ``sim.py`` and ``rep.py`` stop on SIGTERM by draining, and
their git repository holds both files as committed.

The program checks run the student's file as its own process against a private broker of the check's own,
send it SIGTERM (what ``docker container stop`` sends) and judge what the broker saw:

- ``check_rep_drain``: ``python rep.py SECONDS`` stores each reading for SECONDS before printing it. The
  check publishes readings until the server has delivered all of them (most then wait in the client's
  queue), sends SIGTERM, and watches the server's ``/connz``. A drain unsubscribes first (the server lists
  no subscription while the connection is still open), then handles every reading already delivered, then
  closes: every reading published before the signal is printed, none published after the subscription went
  away, and the program exits 0. ``close()`` drops what is waiting; sleeping then closing keeps receiving
  while it sleeps; a program without a handler dies at once (exit -15); one that ignores SIGTERM stays.
- ``check_sim_stop``: ``python sim.py INTERVAL COUNT`` with a COUNT it would take minutes to publish, stopped
  with SIGTERM: it must end (exit 0) within seconds, and every reading it printed must have reached the broker.
- ``check_git_commit``: the student's ``commit(repo, message)`` is called with a message drawn at run time (when
  there is something to commit); then, through ``git`` itself, the folder is a repository of its own whose HEAD
  holds each file with the bytes on disk.

``check_shut_down`` (the function exercise ``shut_down(nc)`` of earlier versions) is deprecated: it could not
tell ``drain()`` from sleeping then closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import random
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ...message import SUBJECT, encode
from ...services.programs import Program
from . import failed, passed
from ._answer import answer, call, graded, require_function
from ._live import (CONNECT_WITHIN, SETTLE, USE_NATS_URL, client, clients_seen, crashed, delivered, ended, poll,
                    private_broker, program_file, session, student_program, subscribed)
from ._truth import connection, subscriptions
from .simulator import _printed as _sim_printed, _watched

#: The connection name of the check's own publisher (never taken for the student's program).
CHECKER = "trashlab-check"
#: Seconds of the program's own handling after SIGTERM before a reading published then must not reach it.
SETTLED_AFTER = 0.5
#: Seconds of the program's own handling after SIGTERM by which the server must list no subscription of it.
UNSUBSCRIBED_AFTER = 1.0
#: Seconds a program may take to end once it was sent SIGTERM and has nothing left to handle.
END_WITHIN = 5.0
#: How a stopped program ends: SIGTERM handled, everything sent or handled, then main() returns.
HANDLE_SIGTERM = ("on SIGTERM drain the connection and end: "
                  "asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, ...), then await nc.drain()")


def _reading_lines(payloads: Sequence[str]) -> "list[str]":
    return [f"Received report: {p}" for p in payloads]


def _their_cid(monitor_url: str) -> Optional[int]:
    """The connection (not the check's own) that subscribes to trash-level, from the server's /connz."""
    from ...servers.monitor import fetch
    from ...errors import BrokerError

    try:
        conns = fetch(monitor_url, "connz?subs=detail&limit=1000").get("connections") or []
    except (BrokerError, ValueError):
        return None
    return next((c.get("cid") for c in conns if c.get("name") != CHECKER
                 and any(s.get("subject") == SUBJECT for s in c.get("subscriptions_list_detail") or [])), None)


@graded
async def check_rep_drain(path: Any = "lab5/rep.py", work: float = 0.1, readings: int = 30, late: int = 5,
                          seed: Optional[int] = None) -> None:
    """``python rep.py WORK`` stopped with SIGTERM drains: it unsubscribes first, prints every reading delivered
    before the signal, none published once its subscription is gone, and exits 0."""
    file = program_file(path, "rep.py")
    what = f"python {file.name} {work:g}"
    rng = random.Random(seed)
    settled = max(3, math.ceil(SETTLED_AFTER / work))  # its own progress, in readings handled, not our clock
    due = max(settled + 2, math.ceil(UNSUBSCRIBED_AFTER / work))
    readings = max(readings, due + 10)
    before: "list[str]" = []
    async with private_broker() as broker, student_program(file, f"{work:g}", broker=broker) as program:
        await subscribed(program, broker, (SUBJECT,), what, CHECKER)
        cid = _their_cid(broker.monitor_url)
        async with client(broker.url, CHECKER) as nc:
            want: "set[str]" = set()

            def handled() -> int:
                return sum(1 for line in program.stdout() if line in want)

            # readings until enough wait in the program's queue at the signal to see every stage (a busy machine
            # may let it handle many before the server has sent the last): each batch is in its hands first
            for batch in (readings, due + 10, due + 10, due + 10):
                more = [encode(str(rng.randint(0, 1000)), rng.random() * 100, seq=len(before) + i).decode()
                        for i in range(batch)]
                for data in more:
                    await nc.publish(SUBJECT, data.encode())
                await nc.flush(timeout=2)
                before += more
                want |= set(_reading_lines(more))
                await poll(functools.partial(_all_sent, program, broker.monitor_url, cid, len(before)), SETTLE)
                if not program.alive:
                    raise await ended(program, what, " before it was stopped")
                if len(before) - handled() >= due + 5:
                    break
            readings = len(before)
            at_signal = handled()
            if readings - at_signal < due + 5:
                raise failed(f"{what}: it printed {at_signal} of {readings} readings at once: store each reading "
                             f"first, with await asyncio.sleep(SECONDS) (SECONDS = the first argument, {work:g} "
                             "here), then print it")
            program.proc.terminate()  # docker container stop: SIGTERM, and the check watches what follows
            stage, sent_late = await _after_sigterm(program, broker, cid, handled, at_signal, settled, due, nc, rng)
            if stage == "unsubscribed":  # readings published now have nobody to go to: none may be printed
                for _ in range(late):
                    sent_late.append(await _publish_one(nc, rng, seq=-1))
                await nc.flush(timeout=2)
            if stage in ("unsubscribed", "closed"):  # it is finishing what it holds: wait for its end
                remaining = readings - handled()
                await poll(lambda: not program.alive, remaining * work * 3 + END_WITHIN, every=0.05)
            alive = program.alive  # before the check's clean-up kills it
            if not alive:
                await program.wait(2)  # its last lines, and its exit code
            printed = handled()
    _judge_drain(program, alive, what, stage, readings, printed, at_signal, sent_late, settled)


def _all_sent(program: Program, monitor_url: str, cid: Optional[int], sent: int) -> bool:
    """True once the server sent the program's connection ``sent`` messages (or the program ended)."""
    return not program.alive or int((connection(monitor_url, cid) or {}).get("out_msgs", 0)) >= sent


async def _publish_one(nc: Any, rng: random.Random, seq: int) -> str:
    data = encode(str(rng.randint(0, 1000)), rng.random() * 100, seq=seq)
    await nc.publish(SUBJECT, data)
    return data.decode()


async def _after_sigterm(program: Program, broker: Any, cid: Optional[int], handled: Callable[[], int],
                         at_signal: int, settled: int, due: int, nc: Any,
                         rng: random.Random) -> "tuple[str, list[str]]":
    """Watch the program after SIGTERM until its subscription is gone ("unsubscribed"), its connection is gone
    ("closed"), it handled ``due`` readings still subscribed ("subscribed") or nothing moves ("stuck").

    Once it has handled ``settled`` readings since the signal (its own progress: the signal was long handled by
    a program that drains), the check publishes one reading per reading it handles while the server still lists
    its subscription: a program that keeps receiving after SIGTERM gets (and prints) those."""
    sent_late: "list[str]" = []
    deadline = time.monotonic() + END_WITHIN
    last = at_signal
    while True:
        record = connection(broker.monitor_url, cid)
        done = handled() - at_signal
        if record is None or not program.alive:
            return "closed", sent_late
        if SUBJECT not in {s.get("subject") for s in subscriptions(record)}:
            return "unsubscribed", sent_late
        if done >= due:
            return "subscribed", sent_late
        if handled() != last:
            deadline = time.monotonic() + END_WITHIN  # it moves: "stuck" only when nothing happens
            last = handled()
        if time.monotonic() > deadline:
            return "stuck", sent_late
        if done >= settled and len(sent_late) < done - settled + 1:
            sent_late.append(await _publish_one(nc, rng, seq=-2))
            await nc.flush(timeout=2)
        await asyncio.sleep(0.02)


def _judge_drain(program: Program, alive: bool, what: str, stage: str, readings: int, printed: int,
                 at_signal: int, sent_late: "list[str]", settled: int) -> None:
    if alive:
        if stage == "stuck":
            raise failed(f"{what}: {END_WITHIN:.0f} s after SIGTERM it still runs, still subscribed to {SUBJECT}, "
                         f"and handles nothing: it ignores the signal; {HANDLE_SIGTERM}")
        if stage == "subscribed":
            raise failed(f"{what}: it handled {printed - at_signal} more readings after SIGTERM and the server still "
                         f"lists its subscription to {SUBJECT}: it keeps receiving: {HANDLE_SIGTERM} (drain "
                         "unsubscribes first, then handles what it holds)")
        raise failed(f"{what}: its subscription is gone but it still runs long after its last reading was "
                     "handled: let main() end once await nc.drain() returned")
    rc = program.returncode
    if rc is not None and rc < 0:
        raise failed(f"{what}: SIGTERM ended it at once (exit code {rc}), {readings - printed} of the {readings} "
                     f"readings delivered to it never printed: {HANDLE_SIGTERM}")
    if rc:
        raise crashed(program, what)
    late_printed = [p for p in _reading_lines(sent_late) if p in program.stdout()]
    if late_printed:
        raise failed(f"{what}: it printed {len(late_printed)} reading(s) the check published after SIGTERM, once it "
                     f"had handled {settled} more: it kept receiving: {HANDLE_SIGTERM} (drain unsubscribes first)")
    if stage == "subscribed":
        raise failed(f"{what}: it handled {printed - at_signal} more readings after SIGTERM while the server still "
                     f"listed its subscription to {SUBJECT}: it kept receiving: {HANDLE_SIGTERM}")
    if printed < readings:
        how = ("it closed its connection without unsubscribing first" if stage == "closed"
               else "its subscription went away with readings still waiting")
        raise failed(f"{what}: {how}, and {readings - printed} of the {readings} readings delivered to it before "
                     "SIGTERM were never printed: close() (or unsubscribe()) drops what waits in the client; "
                     "drain() unsubscribes, lets the handler finish each one, then closes")
    passed(f"{what}: on SIGTERM it unsubscribed first (the server listed no subscription while it still ran), "
           f"printed all {readings} readings delivered to it ({readings - at_signal} of them after the signal), "
           f"none of the {len(sent_late)} published afterwards, and exited 0")


@graded
async def check_sim_stop(path: Any = "lab5/sim.py", interval: float = 0.05, seen: int = 5) -> None:
    """``python sim.py INTERVAL COUNT`` (a COUNT far too long to finish) stopped with SIGTERM ends with exit code 0,
    and every reading it printed reached the broker."""
    file = program_file(path, "sim.py")
    count = 100_000
    what = f"python {file.name} {interval:g} {count}, stopped with SIGTERM"
    async with _watched() as (broker, watch, subs, arrived, elsewhere):
        async with student_program(file, f"{interval:g}", count, broker=broker) as program:
            await poll(lambda: not program.alive or len(arrived) >= seen, CONNECT_WITHIN + seen * interval)
            if not program.alive:
                raise await ended(program, what, " before it was stopped")
            if len(arrived) < seen:
                if not clients_seen(broker.monitor_url, "trashlab-check"):
                    raise failed(f"{what}: it never connected to the broker it was given: {USE_NATS_URL}")
                raise failed(f"{what}: {len(arrived)} readings arrived on {SUBJECT!r} in {CONNECT_WITHIN:.0f} s: "
                             "publish one reading every INTERVAL seconds, as in notebook 3")
            program.proc.terminate()  # docker container stop
            await poll(lambda: not program.alive, END_WITHIN, every=0.05)
            if program.alive:
                raise failed(f"{what}: still running {END_WITHIN:.0f} s after SIGTERM: {HANDLE_SIGTERM}")
            await program.wait(2)
            await delivered(None, watch, subs)  # what the server took from it before it ended is here
    rc = program.returncode
    if rc is not None and rc < 0:
        raise failed(f"{what}: SIGTERM ended it at once (exit code {rc}): {HANDLE_SIGTERM}")
    if rc:
        raise crashed(program, what)
    printed = _sim_printed(program)
    got = [data.decode(errors="replace") for _, data in arrived]
    if sorted(got) != sorted(printed):
        lost = len(set(printed) - set(got))
        raise failed(f"{what}: it printed {len(printed)} readings, the broker delivered {len(got)} on {SUBJECT!r}"
                     + (f" ({lost} printed were never sent)" if lost else "")
                     + ": publish each reading you print, and drain the connection before the program ends")
    passed(f"{what}: it ended with exit code 0 after {len(printed)} readings, every one of them received by "
           "the broker")


# ----- the git step ----------------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> "subprocess.CompletedProcess[bytes]":
    """``git -C repo ARGS`` (no pager, no prompt), its output as bytes."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, env=env, timeout=30)


#: Words a commit message drawn at run time is made of (a hard-coded message fails).
_WORDS = ("bins", "cans", "levels", "drain", "sigterm", "readings", "report", "simulator", "routes", "cleanup")


@graded
async def check_git_commit(commit: Callable, repo: Any = "lab5", files: Sequence[str] = ("sim.py", "rep.py"),
                           scratch: bool = False) -> None:
    """``commit(repo, message)`` adds ``files`` and commits them with ``message`` in ``repo``; judged through git:
    ``repo`` is a repository of its own whose HEAD holds each file as on disk. ``scratch``: ``repo`` is a copy of
    it the check makes in a folder of its own (an answer that hard-codes the folder fails)."""
    name = require_function(commit, "commit", asynchronous=False)
    folder = Path(str(repo))
    message = f"lab 5: {' '.join(random.sample(_WORDS, 3))}"
    with contextlib.ExitStack() as stack:
        if scratch:
            folder = _scratch_copy(folder, tuple(files), stack)
        if _to_commit(folder, tuple(files)):
            call(commit, str(folder), message, what=f"{name}({str(folder)!r}, {message!r})")
            subject = _git(folder, "log", "-1", "--format=%s").stdout.decode(errors="replace").strip()
            if subject != message:
                raise failed(f"after {name}({str(folder)!r}, {message!r}) the last commit of {folder} says "
                             f"{subject or 'nothing'!r}: commit in the folder given, with the message given "
                             "(git -C REPO commit -m MESSAGE)")
        head = _committed(folder, tuple(files))
    shown = "a copy the check made of " + str(repo) if scratch else str(folder)
    passed(f"{shown}: the last commit ({head}) holds {' and '.join(files)} exactly as they are on disk")


def _scratch_copy(folder: Path, files: "tuple[str, ...]", stack: contextlib.ExitStack) -> Path:
    """A new repository (own user, no commit) in a temporary folder holding copies of ``files`` from ``folder``."""
    _git_here()
    for name in files:
        if not (folder / name).is_file():
            raise failed(f"there is no {folder / name}: run the exercise cell that writes it (%%writefile)")
    copy = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trashlab-git-"))) / folder.name
    copy.mkdir()
    for name in files:
        shutil.copyfile(folder / name, copy / name)
    for args in (("init", "--quiet"), ("config", "user.name", "trashlab check"),
                 ("config", "user.email", "check@example.invalid")):
        _git(copy, *args)
    return copy


def _git_here() -> None:
    if shutil.which("git") is None:
        raise failed("git is not installed on this machine: install it (Debian/Ubuntu: sudo apt install git; "
                     "others: https://git-scm.com/downloads), then run the git cells again")


def _own_repository(folder: Path) -> None:
    """✘ unless ``folder`` is the top of a git repository (not a folder inside another one)."""
    _git_here()
    if not folder.is_dir():
        raise failed(f"there is no folder {folder} in {os.getcwd()}: run the cell that creates it (git init)")
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top.returncode != 0 or Path(top.stdout.decode().strip()).resolve() != folder.resolve():
        where = top.stdout.decode().strip()
        raise failed(f"{folder} is not a git repository of its own"
                     + (f" (git finds the one at {where})" if top.returncode == 0 and where else "")
                     + f": run the cell with git init {folder}")


def _to_commit(folder: Path, files: "tuple[str, ...]") -> bool:
    """True when ``folder`` (a repository of its own) has no commit yet or ``files`` differ from HEAD."""
    _own_repository(folder)
    if _git(folder, "rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:
        return True
    return bool(_git(folder, "status", "--porcelain", "--", *files).stdout.strip())


def _committed(folder: Path, files: "tuple[str, ...]") -> str:
    """The last commit of ``folder`` ("hash subject") when it holds ``files`` as on disk, else the ✘ line."""
    _own_repository(folder)
    if _git(folder, "rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:
        raise failed(f"{folder} has no commit yet: git add {' '.join(files)}, then git commit -m MESSAGE")
    for name in files:
        on_disk = folder / name
        if not on_disk.is_file():
            raise failed(f"there is no {on_disk}: run the exercise cell that writes it (%%writefile {on_disk})")
        shown = _git(folder, "show", f"HEAD:{name}")
        if shown.returncode != 0:
            raise failed(f"the last commit of {folder} has no {name}: git add it as well, then commit")
        if shown.stdout != on_disk.read_bytes():
            raise failed(f"{on_disk} changed since the last commit (HEAD has another version): git add {name}, "
                         "then commit again")
    return _git(folder, "log", "-1", "--format=%h %s").stdout.decode(errors="replace").strip()


# ----- deprecated ------------------------------------------------------------------------------------------
@graded
async def check_shut_down(shut_down: Callable, published: int = 40, work: float = 0.01,
                          subject: str = "trash-level") -> None:
    """Deprecated (use :func:`check_rep_drain`): ``await shut_down(nc)`` must leave ``nc`` closed with every
    delivered message handled."""
    warnings.warn("check_shut_down is deprecated and may pass sleeping then closing: notebook 06 grades the "
                  "student's rep.py with check_rep_drain (trashlab.course.checks.cleanup)", FutureWarning,
                  stacklevel=2)
    name = require_function(shut_down, "shut_down")
    what = f"await {name}(nc)"
    async with session("check-publisher") as (broker, nc, pub):
        handled: list = []

        async def slow_handler(msg) -> None:
            await asyncio.sleep(work)  # e.g. writing the level to a database
            handled.append(msg.data)

        await nc.subscribe(subject, cb=slow_handler)
        await nc.flush()
        cid = nc.client_id
        await poll(lambda: subscriptions(connection(broker.monitor_url, cid)), timeout=2)
        for seq in range(1, published + 1):
            await pub.publish(subject, encode(str(seq), float(seq % 100)))
        await pub.flush()
        await poll(lambda: int((connection(broker.monitor_url, cid) or {}).get("out_msgs", 0)) >= published,
                   timeout=3)
        await nc.flush()
        waiting = published - len(handled)
        await answer(shut_down, nc, what=what, timeout=15)
        gone = await poll(lambda: connection(broker.monitor_url, cid) is None, timeout=1.0 if nc.is_closed else 0)
    if nc.is_closed and len(handled) < published:
        raise failed(f"after {what} only {len(handled)} of the {published} delivered readings were handled "
                     f"({waiting} were waiting in the client): close() drops them; drain() lets the "
                     "handler finish first, then closes")
    if not nc.is_closed or not gone:
        raise failed(f"after {what} the connection is still open (the server still lists it): "
                     "the clean-up must end with the connection closed (and awaited)")
    passed(f"{what}: all {published} delivered readings handled ({waiting} were still waiting when you "
           "started), then the connection closed")
