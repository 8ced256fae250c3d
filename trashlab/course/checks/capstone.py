"""Checks of notebook 09 (the capstone): the student's ``alert.py``, an alert service built from an empty cell.

The service, as notebook 09 specifies it: ``python alert.py THRESHOLD`` with its servers in ``$NATS_URL``

- for each reading on ``trash-level`` whose level is above ``THRESHOLD``, publishes that reading's payload,
  unchanged, on ``trash-alert.<can_id>``;
- answers requests on ``trash-full`` with a JSON list of the can ids whose latest level is above ``THRESHOLD``;
- runs as several copies in the queue group ``alert-service``: each alert once, each request answered once,
  and every copy's answer the same;
- keeps working while the node it is on is killed.

Each check runs the file as its own process(es) against servers of its own, publishes readings it draws at run
time (the threshold too), and judges what the servers carried: the alerts a subscriber of its own received,
the replies to its own requests, and each copy's subscriptions in ``/connz``.
"""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any, Optional, Sequence

from ...message import SUBJECT, encode
from ...services.programs import Program
from . import _short, failed, passed
from ._answer import graded
from ._live import (CONNECT_WITHIN, SETTLE, USE_NATS_URL, client, clients_seen, ended, killed_and_back,
                    node_showing, others, poll, private_broker, program_file, student_program, unique)
from ._truth import subscriptions

#: The subjects and the queue group of the specification.
ALERTS, FULL, GROUP = "trash-alert", "trash-full", "alert-service"
#: The check's own connections (never counted as the student's).
CHECKER = "trashlab-check"
#: Seconds a node's death may take to show as the program's subscriptions on the surviving node.
BACK_WITHIN = 10.0


class _Readings:
    """Readings drawn at run time around a threshold, and what a right service does with them."""

    def __init__(self, rng: random.Random, threshold: float, cans: int) -> None:
        self.threshold = threshold
        ids = rng.sample(range(1, 1000), cans)
        self.payloads: "list[bytes]" = []
        for i, can in enumerate(ids):
            above = i % 2 == 0
            level = threshold + rng.uniform(0.5, 100 - threshold) if above else rng.uniform(0, threshold - 0.5)
            self.payloads.append(encode(str(can), level))
        # the boundary (not above), then a full can emptied and one empty can filling up
        self.payloads.append(encode(str(ids[1]), float(threshold)))
        self.payloads.append(encode(str(ids[0]), rng.uniform(0, threshold - 0.5)))
        self.payloads.append(encode(str(ids[3 % cans]), threshold + rng.uniform(0.5, 100 - threshold)))
        # just above and just below: a threshold written into the program (not the argument) gets one wrong
        self.payloads.append(encode(str(rng.randint(1000, 1999)), threshold + rng.uniform(0.1, 1.0)))
        self.payloads.append(encode(str(rng.randint(2000, 2999)), threshold - rng.uniform(0.1, 1.0)))

    def more(self, rng: random.Random, count: int) -> "list[bytes]":
        """``count`` further readings of new cans, half of them above the threshold; added to the history."""
        new = [encode(str(rng.randint(3000, 3999)), self.threshold + rng.uniform(0.5, 100 - self.threshold)
                      if i % 2 == 0 else rng.uniform(0, self.threshold - 0.5)) for i in range(count)]
        self.payloads.extend(new)
        return new

    def alerts(self, payloads: "Optional[Sequence[bytes]]" = None) -> "list[tuple[str, bytes]]":
        """``(subject, payload)`` of each alert a right service publishes for ``payloads`` (all by default)."""
        out = []
        for data in self.payloads if payloads is None else payloads:
            reading = json.loads(data)
            if float(reading["level"]) > self.threshold:
                out.append((f"{ALERTS}.{reading['can_id']}", data))
        return out

    def full(self) -> "list[str]":
        """The cans whose latest level is above the threshold."""
        latest = {}
        for data in self.payloads:
            reading = json.loads(data)
            latest[reading["can_id"]] = float(reading["level"])
        return sorted((can for can, level in latest.items() if level > self.threshold), key=int)


def _draw(seed: Optional[int], threshold: Optional[float]) -> "tuple[random.Random, float]":
    rng = random.Random(seed)
    return rng, float(threshold if threshold is not None else rng.choice([55, 60, 65, 70, 75, 80, 85]))


def _queue_subjects(monitor_url: str) -> "list[dict[str, Optional[str]]]":
    """For each open connection not the check's own: subject -> queue group of its subscriptions."""
    out = []
    for conn in others(monitor_url, CHECKER):
        subs: "dict[str, Optional[str]]" = {}
        for sub in subscriptions(conn):
            subject = str(sub.get("subject"))
            subs.setdefault(subject, None)
            if sub.get("qgroup"):
                subs[subject] = sub.get("qgroup")
        out.append(subs)
    return out


async def _ready(programs: "list[Program]", broker: Any, subjects: "tuple[str, ...]", what: str) -> None:
    """Wait until every copy's connection shows a subscription on each of ``subjects``; ✘ if one ended or never did."""
    def done() -> bool:
        shown = [s for s in _queue_subjects(broker.monitor_url) if set(subjects) <= set(s)]
        return len(shown) >= len(programs) or not all(p.alive for p in programs)

    await poll(done, CONNECT_WITHIN, every=0.1)
    for program in programs:
        if not program.alive:
            raise await ended(program, what, f" before it subscribed to {', '.join(subjects)}")
    shown = _queue_subjects(broker.monitor_url)
    if sum(1 for s in shown if set(subjects) <= set(s)) < len(programs):
        if not clients_seen(broker.monitor_url, CHECKER):
            raise failed(f"{what}: in {CONNECT_WITHIN:.0f} s it never connected to the broker it was given: "
                         f"{USE_NATS_URL}")
        seen = sorted({subject for s in shown for subject in s})
        raise failed(f"{what}: the server shows no subscription on {' and '.join(subjects)} from "
                     f"{'every copy' if len(programs) > 1 else 'it'} (it subscribes to {seen or 'nothing'})")


@contextlib.asynccontextmanager
async def _alert_watch(url: str):
    """A connection of the check's own, subscribed to every alert: ``(nc, alerts)``, alerts as (subject, data)."""
    alerts: "list[tuple[str, bytes]]" = []
    async with client(url, CHECKER) as nc:
        async def on_alert(msg) -> None:
            alerts.append((msg.subject, msg.data))
        await nc.subscribe(f"{ALERTS}.>", cb=on_alert)
        await nc.flush(timeout=2)
        yield nc, alerts


async def _published(nc: Any, payloads: "Sequence[bytes]", alerts: list, expected: int, programs: "list[Program]",
                     what: str) -> None:
    """Publish ``payloads`` on trash-level; wait for ``expected`` alerts in all, then for any extra one."""
    for data in payloads:
        await nc.publish(SUBJECT, data)
    await nc.flush(timeout=2)
    await poll(lambda: len(alerts) >= expected or not all(p.alive for p in programs), SETTLE)
    await poll(lambda: len(alerts) > expected, 0.3)  # a duplicate or an alert too many would arrive now
    for program in programs:
        if not program.alive:
            raise await ended(program, what, " while readings arrived")


def _judge_alerts(alerts: list, want: "list[tuple[str, bytes]]", threshold: float, what: str) -> int:
    """✘ unless ``alerts`` are exactly ``want`` (in any order)."""
    got = sorted(alerts)
    if got == sorted(want):
        return len(want)
    subjects = sorted({s for s, _ in alerts})
    extra = [a for a in alerts if a not in want]
    missing = [a for a in want if a not in alerts]
    if not alerts:
        raise failed(f"{what}: no alert arrived on {ALERTS}.> for the {len(want)} readings above {threshold:g}: "
                     f"publish each on {ALERTS}.<can_id>, e.g. {want[0][0]!r}")
    if any(not s.startswith(f"{ALERTS}.") or s.count(".") != 1 for s in subjects):
        raise failed(f"{what}: alerts arrived on {subjects[:3]}: the subject is {ALERTS}.<can_id>, "
                     f"e.g. {want[0][0]!r}")
    if len(alerts) > len(want) and not missing and len(set(alerts)) < len(alerts):
        raise failed(f"{what}: {len(alerts)} alerts arrived for {len(want)} readings above {threshold:g}: some "
                     f"reading was alerted more than once (e.g. {_dupe(alerts)!r})")
    below = [a for a in extra if float(json.loads(a[1])["level"]) <= threshold] if extra else []
    if below:
        raise failed(f"{what}: an alert for {below[0][1].decode()!r}, which is not above the threshold "
                     f"{threshold:g} (the first argument): alert only when level > THRESHOLD")
    if extra:
        raise failed(f"{what}: an alert {extra[0][0]} {extra[0][1]!r} that matches no reading published: "
                     "publish the reading's payload as it came, unchanged")
    raise failed(f"{what}: {len(missing)} of the {len(want)} readings above {threshold:g} got no alert "
                 f"(e.g. {missing[0][1].decode()!r} on {missing[0][0]!r})")


def _dupe(alerts: list) -> Any:
    seen = set()
    for a in alerts:
        if a in seen:
            return a[1].decode()
        seen.add(a)
    return None


@graded
async def check_alerts(path: Any = "alert.py", seed: Optional[int] = None, threshold: Optional[float] = None,
                       cans: int = 8) -> None:
    """One copy of ``python alert.py THRESHOLD``: an alert on ``trash-alert.<can>`` for each reading above it, only those."""
    file = program_file(path, "alert.py")
    rng, threshold = _draw(seed, threshold)
    readings = _Readings(rng, threshold, cans)
    what = f"python {file.name} {threshold:g}"
    want = readings.alerts()
    async with private_broker() as broker, _alert_watch(broker.url) as (nc, alerts):
        async with student_program(file, f"{threshold:g}", broker=broker) as program:
            await _ready([program], broker, (SUBJECT,), what)
            await _published(nc, readings.payloads, alerts, len(want), [program], what)
    count = _judge_alerts(alerts, want, threshold, what)
    passed(f"{what}: {count} alerts for the {count} of {len(readings.payloads)} readings above {threshold:g}, "
           f"each on {ALERTS}.<can> with the reading's payload")


def _judge_groups(shown: "list[dict[str, Optional[str]]]", subjects: "tuple[str, ...]", copies: int,
                  what: str) -> None:
    """✘ unless the server shows each copy subscribed to each of ``subjects`` in queue group ``alert-service``."""
    for subject in subjects:
        groups = [s.get(subject) for s in shown if subject in s]
        if len(groups) < copies:
            raise failed(f"{what}: only {len(groups)} of the {copies} copies subscribe to {subject!r}")
        wrong = [g for g in groups if g != GROUP]
        if wrong:
            said = "in no queue group" if wrong[0] is None else f"in queue group {wrong[0]!r}"
            raise failed(f"{what}: the server shows a copy's subscription on {subject!r} {said}: every copy would "
                         f"handle every message. Subscribe to it with queue={GROUP!r}")


@graded
async def check_alert_group(path: Any = "alert.py", copies: Optional[int] = None, seed: Optional[int] = None,
                            threshold: Optional[float] = None, cans: int = 10) -> None:
    """Several copies of ``alert.py`` at once in queue group ``alert-service``: each reading above the threshold alerted once."""
    file = program_file(path, "alert.py")
    rng, threshold = _draw(seed, threshold)
    copies = copies or rng.choice([2, 3])
    readings = _Readings(rng, threshold, cans)
    what = f"{copies} copies of python {file.name} {threshold:g}"
    want = readings.alerts()
    async with private_broker() as broker, _alert_watch(broker.url) as (nc, alerts):
        async with contextlib.AsyncExitStack() as stack:
            programs = [await stack.enter_async_context(student_program(file, f"{threshold:g}", broker=broker))
                        for _ in range(copies)]
            await _ready(programs, broker, (SUBJECT,), what)
            _judge_groups(_queue_subjects(broker.monitor_url), (SUBJECT,), copies, what)
            await _published(nc, readings.payloads, alerts, len(want), programs, what)
    count = _judge_alerts(alerts, want, threshold, what)
    passed(f"{what}: queue group {GROUP!r}; {count} readings above {threshold:g}, each alerted exactly once")


async def _ask(nc: Any, what: str) -> "list[Any]":
    """One request on trash-full; every reply that came (the check listens on its own inbox, so it counts them)."""
    inbox = nc.new_inbox()
    replies: "list[bytes]" = []

    async def on_reply(msg) -> None:
        replies.append(msg.data)
    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        await nc.publish(FULL, b"", reply=inbox)
        await nc.flush(timeout=2)
        await poll(lambda: replies, 3.0)
        await poll(lambda: len(replies) > 1, 0.2)  # a second copy's answer would arrive now
    finally:
        await sub.unsubscribe()
    return replies


def _parsed(reply: bytes, what: str) -> Any:
    try:
        value = json.loads(reply)
    except ValueError:
        msg = f"{what}: the reply {reply[:60]!r} is not JSON: reply with json.dumps(list_of_can_ids)"
        raise failed(msg) from None  # a ✘ line for the student; the reply is in it
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise failed(f"{what}: the reply is {_short(value)}: expected a JSON list of can ids as strings, "
                     "like the readings' can_id, e.g. [\"17\", \"135\"]")
    return value


async def _answers(nc: Any, readings: _Readings, asks: int, what: str) -> int:
    """``asks`` requests, each answered exactly once with the full cans.

    No retry is needed for a right program: the check publishes the readings and then the request from one
    connection, so the server hands each copy its readings before the request, and nats-py runs the reading's
    callback before the request's."""
    want = readings.full()
    for _ in range(asks):
        replies = await _ask(nc, what)
        if not replies:
            raise failed(f"{what}: no reply to a request on {FULL!r} within 3 s: subscribe to {FULL!r} and "
                         "answer each request with await msg.respond(...)")
        if len(replies) > 1:
            raise failed(f"{what}: one request on {FULL!r} got {len(replies)} replies: answer requests in "
                         f"queue group {GROUP!r}, so that one copy answers")
        got = _parsed(replies[0], what)
        if sorted(got, key=lambda c: (len(c), c)) != want or len(got) != len(set(got)):
            raise failed(f"{what}: asked which cans are full, the reply was {_short(got)}, expected {want} (the "
                         f"cans whose latest level is above {readings.threshold:g}): "
                         + ("every copy must see every reading to know every can (a queue group shares the "
                            "readings out among the copies)" if set(got) < set(want) else
                            "keep each can's latest level, and list the cans whose latest level is above the "
                            "threshold"))
    return asks


@graded
async def check_full_cans(path: Any = "alert.py", copies: Optional[int] = None, seed: Optional[int] = None,
                          threshold: Optional[float] = None, cans: int = 10, asks: int = 6) -> None:
    """Copies of ``alert.py`` answer ``trash-full`` requests once each, every answer the cans above the threshold now."""
    file = program_file(path, "alert.py")
    rng, threshold = _draw(seed, threshold)
    copies = copies or rng.choice([2, 3])
    readings = _Readings(rng, threshold, cans)
    everything = list(readings.payloads)
    readings.payloads = []
    what = f"{copies} copies of python {file.name} {threshold:g}, asked on {FULL!r}"
    async with private_broker() as broker, client(broker.url, CHECKER) as nc:
        async with contextlib.AsyncExitStack() as stack:
            programs = [await stack.enter_async_context(student_program(file, f"{threshold:g}", broker=broker))
                        for _ in range(copies)]
            await _ready(programs, broker, (SUBJECT, FULL), what)
            _judge_groups(_queue_subjects(broker.monitor_url), (FULL,), copies, what)
            await _answers(nc, readings, 1, what + " before any reading")  # no can is full yet: []
            readings.payloads = everything
            for data in everything:
                await nc.publish(SUBJECT, data)
            await nc.flush(timeout=2)
            count = await _answers(nc, readings, asks, what)
            for program in programs:
                if not program.alive:
                    raise await ended(program, what)
    passed(f"{what}: {count + 1} requests, each answered once, with {readings.full()} (above {threshold:g})")


@graded
async def check_alert_failover(path: Any = "alert.py", seed: Optional[int] = None,
                               threshold: Optional[float] = None, cans: int = 6) -> None:
    """``alert.py`` given both nodes of a cluster keeps alerting and answering, with what it knew, after its node is killed."""
    from ...servers.cluster import Cluster

    file = program_file(path, "alert.py")
    rng, threshold = _draw(seed, threshold)
    readings = _Readings(rng, threshold, cans)
    what = f"python {file.name} {threshold:g} on a 2-node cluster"
    cluster = Cluster(size=2, name=unique("check-")).start()
    try:
        await cluster.wait_formed(timeout=15, progress=False)
        nodes = list(cluster.nodes.values())
        async with student_program(file, f"{threshold:g}", broker=cluster) as program:
            victim = await node_showing(
                program, nodes, lambda b: any({SUBJECT, FULL} <= set(s) for s in _queue_subjects(b.monitor_url)),
                what, f"{SUBJECT} and {FULL}")
            survivor = next(b for b in nodes if b is not victim)
            # the check watches from the program's own node each time: an alert never waits for a route's news
            async with _alert_watch(victim.url) as (nc, alerts):
                await _published(nc, readings.payloads, alerts, len(readings.alerts()), [program], what)
                _judge_alerts(alerts, readings.alerts(), threshold, what + ", before any node was killed")
            async with _alert_watch(survivor.url) as (nc, alerts):
                await killed_and_back(
                    program, victim, survivor,
                    lambda b: any({SUBJECT, FULL} <= set(s) for s in _queue_subjects(b.monitor_url)),
                    what, f"{SUBJECT} and {FULL}", BACK_WITHIN)
                after = readings.more(rng, 6)
                want = readings.alerts(after)
                await _published(nc, after, alerts, len(want), [program], what)
                _judge_alerts(alerts, want, threshold, what + f", after {victim.name} was killed")
                await _answers(nc, readings, 1, what + f", asked on {FULL!r} after the kill")
    finally:
        cluster.stop()
    passed(f"{what}: alerts before and after {victim.name} was killed, and after it the answer on {FULL!r} still "
           f"held the cans it had seen before ({readings.full()})")
