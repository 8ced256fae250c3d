"""Checks of notebook 08 (several subscribers): copies of the student's ``rep.py`` as one queue group, and a
function whose subscription joins a queue group.

``check_rep_queue`` and ``check_rep_queue_answers`` run N copies of ``python rep.py GROUP COPY`` (N, the group
and the copies' names drawn at each run, so nothing hard-coded from the page passes) against a broker of the
check's own, read the server's view of their subscriptions (``/connz?subs=detail``: subject, queue group,
deliveries), send requests on ``trash-report.level`` with a reply subject of their own per request, and count
the replies on a plain subscription: the server must deliver each request to one member, and each must get one
reply, naming the copy that answered, with a level that copy can know.

``check_queue_member`` (the earlier function exercise, kept for old notebooks) calls
``await join_queue_group(nc, subject, queue, received)`` with a group and subject drawn at each run, adds
members of its own to that group, publishes numbered readings, and compares the server's delivery count with
what the student kept.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

from . import _short, failed, passed
from ._answer import answer, graded, require_function
from ._live import (CONNECT_WITHIN, others, SETTLE, USE_NATS_URL, client, clients_seen, ended, json_object, poll,
                    private_broker, program_file, session, student_program)
from ._truth import connection, subscriptions
from ...message import SUBJECT, encode


def _drawn_group(rng: random.Random) -> str:
    """A queue group name no page shows: a word and a few random letters, new at each run."""
    return f"{rng.choice(['levels', 'workers', 'district', 'night', 'east', 'reports'])}-{rng.randrange(16**4):04x}"


@graded
async def check_queue_member(join_queue_group: Callable, queue: Optional[str] = None, published: int = 60,
                             others: int = 2, subject: Optional[str] = None) -> None:
    """``await join_queue_group(nc, subject, queue, received)`` must subscribe ``nc`` to ``subject`` in
    queue group ``queue`` and append each message's ``data`` to ``received`` (group and subject drawn when not given)."""
    name = require_function(join_queue_group, "join_queue_group")
    rng = random.Random()
    queue = queue if queue is not None else _drawn_group(rng)
    subject = subject if subject is not None else f"trash-level.{rng.choice(['north', 'south', 'east', 'west'])}"
    what = f"await {name}(nc, {subject!r}, {queue!r}, received)"
    async with session("check-members") as (broker, nc, helper):
        received: list = []
        await answer(join_queue_group, nc, subject, queue, received, what=what)
        record = await poll(lambda: subscriptions(connection(broker.monitor_url, nc.client_id)), timeout=3.0)
        _judge_subscription(record, what, subject, queue)
        counts = [0] * others

        def member(i: int):
            async def cb(msg) -> None:
                counts[i] += 1
            return cb

        for i in range(others):
            await helper.subscribe(subject, queue=queue, cb=member(i))
        await helper.flush()
        for seq in range(1, published + 1):
            await helper.publish(subject, encode(str(seq), float(seq % 100), seq))
        await helper.flush()
        await poll(lambda: len(received) + sum(counts) >= published, timeout=3.0)
        await poll(lambda: False, timeout=0.1)  # a duplicate would arrive now
        server = next((s for s in subscriptions(connection(broker.monitor_url, nc.client_id))
                       if s.get("subject") == subject), {})
        _judge_deliveries(received, counts, int(server.get("msgs", 0)), published, queue, what)


def _judge_subscription(subs: list, what: str, subject: str, queue: str) -> None:
    if not subs:
        raise failed(f"after {what} the server sees no subscription on your connection: "
                     "did you `await nc.subscribe(...)`?")
    mine = [s for s in subs if s.get("subject") == subject]
    if not mine:
        raise failed(f"your connection subscribed to {[s.get('subject') for s in subs]}, expected the "
                     f"subject it was given, {subject!r}")
    if len(mine) > 1:
        raise failed(f"your connection has {len(mine)} subscriptions on {subject!r}: subscribe once")
    group = mine[0].get("qgroup")
    if not group:
        raise failed(f"the server sees a plain subscription on {subject!r}, in no queue group: every "
                     "member would get every reading. Pass the group you were given as queue= to nc.subscribe")
    if group != queue:
        raise failed(f"the server sees your subscription in queue group {group!r}, expected the group it "
                     f"was given, {queue!r}")


def _judge_deliveries(received: list, counts: list, delivered: int, published: int, queue: str, what: str) -> None:
    if not isinstance(received, list):
        raise failed("the received list was replaced: append to the list you were given")
    wrong = [r for r in received if not isinstance(r, (bytes, bytearray))]
    if wrong:
        raise failed(f"received holds {type(wrong[0]).__name__} items, expected each message's payload "
                     "(bytes): append msg.data")
    if len(received) != delivered:
        raise failed(f"the server delivered {delivered} readings to your subscription, but received holds "
                     f"{len(received)}: append msg.data once per message, in the callback")
    total = len(received) + sum(counts)
    if total != published:
        raise failed(f"the queue group got {total} readings for {published} published (yours {len(received)}, "
                     f"the other members {counts}): each reading should reach exactly one member")
    if not 0 < len(received) < published:
        raise failed(f"your subscription got {len(received)} of {published}: in a group of {len(counts) + 1} "
                     "it should get a share")
    passed(f"the server delivered {delivered} of {published} readings to your subscription in queue group "
           f"{queue!r} and {sum(counts)} to the {len(counts)} other members: each reading exactly once")


# ----- rep.py in a queue group: several copies of the student's report service ---------------------------
#: Where the copies answer (the subject of notebook 04's rep.py).
REQUEST_SUBJECT = "trash-report.level"
#: The connection name of the check's own publisher and asker (never taken for a copy).
CHECKER = "trashlab-check"
#: How long the check waits for the reply to a request.
REPLY_WITHIN = 1.0


def _copies_seen(monitor_url: str) -> "list[dict]":
    """The open connections other than the check's own, each as ``{subject: its subscription record}``
    plus ``"in_msgs"`` (what the connection published)."""
    return [{**{s.get("subject"): s for s in c.get("subscriptions_list_detail") or []},
             "in_msgs": int(c.get("in_msgs", 0))} for c in others(monitor_url, CHECKER)]


def _draw(copies: Optional[int], group: Optional[str]) -> "tuple[int, str, list[str]]":
    """The number of copies, the queue group and each copy's name: drawn now where not given."""
    rng = random.Random()
    n = copies if copies is not None else rng.choice([2, 3])
    names = [f"copy-{rng.randrange(16**4):04x}{i}" for i in range(1, n + 1)]
    return n, group if group is not None else _drawn_group(rng), names


@contextlib.asynccontextmanager
async def _copies_running(path: Any, copies: Optional[int], group: Optional[str]) -> AsyncIterator[tuple]:
    """A private broker with N copies of ``python rep.py GROUP COPY`` subscribed to trash-level and
    trash-report.level, and a connection of the check's own made after that:
    ``(broker, programs, what, group, names, nc)``."""
    file: Path = program_file(path, "rep.py")
    n, group, names = _draw(copies, group)
    what = f"{n} copies of python {file.name} {group} COPY"
    async with private_broker() as broker, contextlib.AsyncExitStack() as stack:
        programs = [await stack.enter_async_context(student_program(file, group, name, broker=broker))
                    for name in names]

        def ready() -> "list[dict]":
            return [c for c in _copies_seen(broker.monitor_url) if SUBJECT in c and REQUEST_SUBJECT in c]

        await poll(lambda: len(ready()) >= n or not all(p.alive for p in programs), CONNECT_WITHIN + 5, every=0.1)
        for program in programs:
            if not program.alive:
                raise await ended(program, f"python {file.name} {group} {program.args[-1]}",
                                  f" before it subscribed to {SUBJECT} and {REQUEST_SUBJECT}")
        got = ready()
        if len(got) < n:
            if not clients_seen(broker.monitor_url, CHECKER):
                raise failed(f"{what}: none of them connected to the broker it was given: {USE_NATS_URL}")
            subjects = sorted({s for c in _copies_seen(broker.monitor_url) for s in c if s != "in_msgs"})
            raise failed(f"{what}: the server shows {len(got)} of the {n} copies subscribed to both {SUBJECT} and "
                         f"{REQUEST_SUBJECT} (they subscribe to {subjects or 'nothing'})")
        async with client(broker.url, CHECKER) as nc:
            yield broker, programs, what, group, names, nc


def _group_problem(copies: "list[dict]", group: str, n: int) -> Optional[str]:
    """Why the copies' subscriptions are not one queue group ``group`` answering requests (None: they are)."""
    for subject in (REQUEST_SUBJECT, SUBJECT):
        groups = [c[subject].get("qgroup") or "" for c in copies]
        wrong = sorted({g for g in groups if g and g != group})
        if wrong:
            return (f"the server shows their subscriptions on {subject!r} in queue group {wrong[0]!r}, but the "
                    f"check gave them the group {group!r} as the first argument: take the group from sys.argv[1]")
        if subject == REQUEST_SUBJECT and not all(groups):
            return (f"the server shows {groups.count('')} of the {n} subscriptions on {subject!r} in no queue "
                    f"group: every copy gets every request and answers it. Subscribe with queue= the group "
                    "from the first argument")
    return None


def _served(monitor_url: str) -> "tuple[int, int]":
    """What the copies were handed on trash-report.level (requests, summed over their subscriptions) and what
    they published (their replies), as the server counts them."""
    copies = _copies_seen(monitor_url)
    return (sum(c[REQUEST_SUBJECT].get("msgs", 0) for c in copies if REQUEST_SUBJECT in c),
            sum(c["in_msgs"] for c in copies))


async def _ask_all(nc, cans: "list[str]", monitor_url: str, timeout: float) -> "list[list[bytes]]":
    """Publish one request per can on trash-report.level, each with a reply subject of its own, and collect
    every reply on a plain subscription (a requester's ``nc.request`` would show only the first): the replies
    to each request, once every request has one and there are as many as the server handed the copies requests
    and saw them publish (a copy that answers late, or twice, is counted too)."""
    inbox = nc.new_inbox()
    replies: "list[list[bytes]]" = [[] for _ in cans]

    async def on_reply(msg) -> None:
        replies[int(msg.subject.rsplit(".", 1)[1])].append(msg.data)

    sub = await nc.subscribe(f"{inbox}.*", cb=on_reply)
    await nc.flush(timeout=2)
    before = _served(monitor_url)
    for i, can in enumerate(cans):
        await nc.publish(REQUEST_SUBJECT, can.encode(), reply=f"{inbox}.{i}")
    await nc.flush(timeout=2)

    def complete() -> bool:
        handed, published = (now - then for now, then in zip(_served(monitor_url), before))
        return all(replies) and sum(map(len, replies)) >= max(handed, published)

    await poll(complete, timeout + SETTLE, every=0.05)
    await sub.unsubscribe()
    return replies


@graded
async def check_rep_queue(path: Any = "rep.py", copies: Optional[int] = None, group: Optional[str] = None) -> None:
    """N copies of ``python rep.py GROUP COPY`` (N, GROUP and the names drawn at each run): the server shows their
    subscriptions on trash-report.level (and trash-level) in queue group GROUP, delivers each request to one of
    them, and each request gets exactly one reply."""
    async with _copies_running(path, copies, group) as (broker, programs, what, group, names, nc):
        n = len(programs)
        copies_seen = [c for c in _copies_seen(broker.monitor_url) if REQUEST_SUBJECT in c]
        problem = _group_problem(copies_seen, group, n)
        rng = random.Random()
        if problem and "no queue group" in problem:  # show what it costs: one request, a reply from each copy
            replies = await _ask_all(nc, [str(rng.randint(1, 999))], broker.monitor_url, REPLY_WITHIN)
            raise failed(f"{what}: {problem} (one request got {len(replies[0])} replies)")
        if problem:
            raise failed(f"{what}: {problem}")
        cans = [str(rng.randint(1, 999)) for _ in range(rng.randint(6, 9))]
        before = sum(c[REQUEST_SUBJECT].get("msgs", 0) for c in copies_seen)
        replies = await _ask_all(nc, cans, broker.monitor_url, REPLY_WITHIN)
        after = [c[REQUEST_SUBJECT].get("msgs", 0) for c in _copies_seen(broker.monitor_url) if REQUEST_SUBJECT in c]
        for program in programs:
            if not program.alive:
                raise await ended(program, f"python {path} {group} {program.args[-1]}", " while answering requests")
    delivered = sum(after) - before
    if delivered != len(cans):
        raise failed(f"{what}: the server delivered {len(cans)} requests {delivered} times to the copies "
                     f"({after}): each request should go to one member of the group")
    counts = [len(r) for r in replies]
    if 0 in counts:
        raise failed(f"{what}: {counts.count(0)} of {len(cans)} requests got no reply within "
                     f"{REPLY_WITHIN + SETTLE:g} s: answer every request with await msg.respond(...), an unknown "
                     "can too")
    if max(counts) > 1:
        raise failed(f"{what}: some requests got more than one reply (replies per request: {counts}): answer "
                     "each request once")
    passed(f"{what}: the server shows all {n} in queue group {group!r}; it delivered each of {len(cans)} requests "
           f"to one of them ({', '.join(map(str, after))} each), and each got exactly one reply")


@graded
async def check_rep_queue_answers(path: Any = "rep.py", copies: Optional[int] = None,
                                  group: Optional[str] = None) -> None:
    """N copies of ``python rep.py GROUP COPY``: each reply names the copy that answered (``"copy"``, its second
    argument) and carries the level of the can the check published, or an error from a copy that never saw it."""
    rng = random.Random()
    cans = [str(c) for c in rng.sample(range(1, 1000), 3)]
    levels = {can: round(rng.uniform(1, 99), 2) for can in cans}
    repeat = 12  # each can's reading, several times: a copy in the group gets some of them
    async with _copies_running(path, copies, group) as (broker, programs, what, group, names, nc):
        for _ in range(repeat):
            for can in cans:
                await nc.publish(SUBJECT, encode(can, levels[can]))
        await nc.flush(timeout=2)

        def deliveries() -> int:
            return sum(c[SUBJECT].get("msgs", 0) for c in _copies_seen(broker.monitor_url) if SUBJECT in c)

        groups = {c[SUBJECT].get("qgroup") or f"plain-{i}" for i, c in enumerate(_copies_seen(broker.monitor_url))
                  if SUBJECT in c}  # a queue group takes each reading once, a plain subscription once each
        await poll(lambda: deliveries() >= repeat * len(cans) * len(groups), SETTLE)
        asked = [cans[i % len(cans)] for i in range(rng.randint(6, 9))]
        replies = await _ask_all(nc, asked, broker.monitor_url, REPLY_WITHIN)
        per_copy = sorted(c[REQUEST_SUBJECT].get("msgs", 0) for c in _copies_seen(broker.monitor_url)
                          if REQUEST_SUBJECT in c)
        for program in programs:
            if not program.alive:
                raise await ended(program, f"python {path} {group} {program.args[-1]}", " while answering requests")
    if not all(replies):
        raise failed(f"{what}: {sum(1 for r in replies if not r)} of {len(asked)} requests got no reply within "
                     f"{REPLY_WITHIN + SETTLE:g} s: answer every request with await msg.respond(...)")
    named: Counter = Counter()
    levelled = 0
    for can, answers in zip(asked, replies):
        for data in answers:
            asked_what = f"{what}: the reply to a request for can {can}"
            reply = json_object(data, asked_what)
            if reply.get("copy") not in names:
                raise failed(f"{asked_what} says copy {_short(reply.get('copy'))}, but the copies were started as "
                             f"{', '.join(names)}: reply with \"copy\": the second argument (sys.argv[2])")
            named[reply["copy"]] += 1
            if "error" in reply:
                continue  # a copy that never got a reading of this can: it can only say so
            level = reply.get("level")
            if str(reply.get("can_id")) != can:
                raise failed(f"{asked_what} is about can {_short(reply.get('can_id'))}: {_short(reply)}")
            if isinstance(level, bool) or not isinstance(level, (int, float)) or abs(float(level) - levels[can]) > 1e-9:
                raise failed(f"{asked_what} says level {_short(level)}, but every reading of can {can} said "
                             f"{levels[can]}: answer with the level the copy received")
            levelled += 1
    if not levelled:
        raise failed(f"{what}: every reply was an error, although each copy received readings of the cans asked "
                     f"about (e.g. can {cans[0]}: {levels[cans[0]]}): keep each can's latest level and answer with it")
    got = sorted([named[name] for name in names])
    if got != per_copy:
        raise failed(f"{what}: the server delivered {per_copy} requests to the copies, but the replies name them "
                     f"{dict(named)} times: name the copy that really answered (sys.argv[2])")
    passed(f"{what}: {sum(named.values())} replies, each naming the copy that answered "
           f"({', '.join(f'{k} {v}' for k, v in sorted(named.items()))}), each with the level that copy received "
           f"or an error")
