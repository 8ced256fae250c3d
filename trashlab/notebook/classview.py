"""The instructor's class view: who is online, how fast each student publishes, the class's levels.

``ClassWatch`` is the model (one instructor connection to the class hub, subscribed to
``class.*.trash-level``, plus the hub's local monitoring port for who is connected); ``ClassReport``
is the class's report service (``class-report``: every student's cans, asked as ``"s01/135"``);
``ClassView`` draws both as widgets. ``trashlab classroom view`` serves ``class-view.ipynb`` with
Voilà, so the page can be projected.
"""

from __future__ import annotations

import asyncio
import collections
import html
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from .._aio import cancel, quietly
from ..errors import BadArgument, BadMessage, BrokerError, TrashlabError
from ..message import decode_fields
from ..servers.classroom import CLASS_PREFIX, EXPORTED, _account, read_class
from ..servers.connection import connect
from ..servers.retry import NATS_ERRORS
from ..services.report import MemoryLevels, ReportService, query_level

if TYPE_CHECKING:
    from nats.aio.client import Client

log = logging.getLogger("trashlab")

#: The class report service's name: ``class-report.level`` answers ``"s01/135"``.
CLASS_REPORT = "class-report"
#: Seconds over which per-student rates are averaged.
RATE_WINDOW = 5
#: Seconds between two looks at the hub's monitoring port (who is connected).
POLL_INTERVAL = 1.0
VIEW_NOTEBOOK = Path(__file__).with_name("class-view.ipynb")
#: what asking the class report can end with (said on the page)
_ASK_ERRORS: "tuple[type[BaseException], ...]" = (TrashlabError, *NATS_ERRORS)


class ClassReport(ReportService):
    """The class's report service, in the instructor's account: the latest level of every student's
    cans, keyed ``<student>/<can_id>`` (ask ``query_level("s01/135", url, service="class-report")``)."""

    def __init__(self, servers, *, name: str = CLASS_REPORT) -> None:
        super().__init__(servers, f"{CLASS_PREFIX}.*.{EXPORTED}", name=name, store=MemoryLevels())

    async def _on_msg(self, msg) -> None:
        student = msg.subject.split(".")[1]
        try:
            can_id, level, _ = decode_fields(msg.data)
        except BadMessage as e:
            self._rejects.add(msg.data, e, time.time())
            return
        self.received += 1
        await self.store.put(f"{student}/{can_id}", level, time.time())


class _Student:
    __slots__ = ("received", "rejected", "last", "seconds", "levels")

    def __init__(self, keep: int) -> None:
        self.received = 0
        self.rejected = 0
        self.last: collections.deque = collections.deque(maxlen=keep)  # (time, can, level)
        self.seconds: collections.Counter = collections.Counter()  # whole second -> messages
        self.levels: dict = {}  # can -> latest level


class ClassWatch:
    """Live numbers of a class: per student online / rate / received / last readings, and the
    class-wide level distribution; ``ask(student, can)`` goes through the class report service."""

    def __init__(self, instructor_url: str, monitor_url: str, students: Sequence[str], *, keep: int = 3,
                 monitor_urls: Sequence[str] = ()) -> None:
        if not students:
            raise BadArgument("a class view needs the list of students (read_class(folder)['students'])")
        self.instructor_url = instructor_url
        self.monitor_url = monitor_url
        #: every hub node's monitoring (a clustered hub, servers.hubcluster); the nodes not answering now
        self.monitor_urls = list(monitor_urls) or [monitor_url]
        self.monitor_down: list = []
        self.students = list(students)
        self._by = {s: _Student(keep) for s in self.students}
        self._online: dict = {s: 0 for s in self.students}
        self.monitor_ok = False
        self.report: Optional[ClassReport] = None
        self._nc: Optional[Client] = None
        self._poller: Optional[asyncio.Task] = None

    @classmethod
    def from_folder(cls, folder="class", **options) -> "ClassWatch":
        """A watch on the class whose ``instructor.json`` is in ``folder`` (written by ``classroom serve``)."""
        info = read_class(folder)
        return cls(info["instructor_url"], info["monitor_url"], info["students"],
                   **{"monitor_urls": info.get("monitor_urls") or (), **options})

    # ----- lifecycle ----------------------------------------------------------------------
    async def start(self) -> "ClassWatch":
        """Connect as the instructor, subscribe to every student's readings, start the class report.

        A start that fails or is interrupted half-way stops what it started (the connection, the
        class report, the poller) before the error goes on."""
        try:
            self._nc = await connect(self.instructor_url, name="class-view")
            await self._nc.subscribe(f"{CLASS_PREFIX}.*.{EXPORTED}", cb=self._on_msg, pending_msgs_limit=512 * 1024)
            await self._nc.flush()
            self.report = ClassReport(self.instructor_url)
            await self.report.start()
            await self._poll_once()
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="trashlab-class-poll")
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Stop polling, the class report and the subscription."""
        await cancel(self._poller)
        self._poller = None
        if self.report is not None:
            await self.report.stop()
        if self._nc is not None and not self._nc.is_closed:
            await quietly(self._nc.close())

    async def _on_msg(self, msg) -> None:
        student = msg.subject.split(".")[1]
        st = self._by.get(student)
        if st is None:
            return
        try:
            can_id, level, _ = decode_fields(msg.data)
        except BadMessage:
            st.rejected += 1
            return
        now = time.time()
        st.received += 1
        st.seconds[int(now)] += 1
        st.last.append((now, can_id, level))
        st.levels[can_id] = level

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            await self._poll_once()

    async def _poll_once(self) -> None:
        try:
            conns, leafs = await asyncio.get_running_loop().run_in_executor(None, self._fetch_monitor)
        except (BrokerError, ValueError):  # not answering, or half a page
            self.monitor_ok = False
            return
        self.monitor_ok = True
        accounts = collections.Counter(c.get("account") for c in conns)
        accounts.update(lf.get("account") for lf in leafs)
        self._online = {s: accounts.get(_account(s), 0) for s in self.students}

    def _fetch_monitor(self) -> tuple:
        from ..servers.hubcluster import fetch_nodes

        (conns, leafs), self.monitor_down = fetch_nodes(self.monitor_urls, "connz?auth=1&limit=4096", "leafz")
        return conns, leafs

    # ----- what the page shows ------------------------------------------------------------
    def online(self) -> list:
        """Students with at least one client or leaf-node connection to the hub now."""
        return [s for s in self.students if self._online.get(s)]

    def rate(self, student: str) -> float:
        """Messages per second from ``student`` over the last :data:`RATE_WINDOW` full seconds."""
        st = self._by[student]
        now = int(time.time())
        recent = sum(st.seconds.get(now - i, 0) for i in range(1, RATE_WINDOW + 1))
        for old in [sec for sec in st.seconds if sec < now - 2 * RATE_WINDOW]:
            del st.seconds[old]
        return recent / RATE_WINDOW

    def rows(self) -> list:
        """One dict per student: student, online (connections), rate, received, last readings."""
        return [{"student": s, "connections": self._online.get(s, 0), "rate": self.rate(s),
                 "received": self._by[s].received, "cans": len(self._by[s].levels),
                 "last": [(can, level) for _, can, level in reversed(self._by[s].last)]}
                for s in self.students]

    def table(self):
        """The per-student numbers as a DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows())

    def distribution(self, bins: int = 10) -> list:
        """How many of the class's cans (latest level per student and can) fall in each 100/bins % band."""
        counts = [0] * bins
        for st in self._by.values():
            for level in st.levels.values():
                counts[min(int(level * bins / 100), bins - 1)] += 1
        return counts

    @property
    def received(self) -> int:
        """Readings received from the whole class."""
        return sum(st.received for st in self._by.values())

    async def ask(self, student: str, can: str, timeout: float = 2.0) -> dict:
        """The class report service's latest reading of ``student``'s can ``can``."""
        if student not in self._by:
            raise BadArgument(f"no student {student!r} in this class")
        return await query_level(f"{student}/{str(can).strip()}", self.instructor_url,
                                 service=CLASS_REPORT, timeout=timeout)


class ClassView:
    """The class page: header, per-student table, level distribution, and a report question box."""

    def __init__(self, watch: ClassWatch, *, refresh: float = 1.0) -> None:
        import ipywidgets as w

        self.watch = watch
        self.refresh = refresh
        self.header = w.HTML()
        self.students = w.HTML()
        self.levels = w.HTML()
        self.who = w.Dropdown(options=watch.students, description="student")
        self.can = w.Text(description="can id", placeholder="e.g. 135")
        self.button = w.Button(description="Ask the class report", layout=w.Layout(width="auto"))
        self.answer = w.HTML()
        self.button.on_click(lambda _: asyncio.ensure_future(self._ask()))
        self.widget = w.VBox([self.header, w.HBox([self.students, self.levels]),
                              w.HTML("<b>The class's report service</b>"),
                              w.HBox([self.who, self.can, self.button]), self.answer])
        self.widget.add_class("trashlab-class-view")
        self._task: Optional[asyncio.Task] = None

    @classmethod
    async def open(cls, folder=None, **options) -> "ClassView":
        """Watch the class in ``folder`` (default ``$TRASHLAB_CLASS_DIR`` or ``class``): a started view."""
        folder = folder or os.environ.get("TRASHLAB_CLASS_DIR") or "class"
        return await cls(ClassWatch.from_folder(folder), **options).start()

    async def start(self) -> "ClassView":
        """Start the watch (connect, subscribe) and redraw every ``refresh`` s; again: nothing happens."""
        if self._task is None:
            started_here = self.watch._nc is None or self.watch._nc.is_closed
            if started_here:
                await self.watch.start()
            try:
                self.draw()
            except BaseException:  # no page: nothing keeps watching
                if started_here:
                    await self.watch.stop()
                raise
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="trashlab-class-view")
        return self

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                self.draw()
            except Exception as e:  # blind: the projected page stays alive and says what broke
                self.header.value = f"<b>class view error:</b> {html.escape(str(e))}"

    def draw(self) -> None:
        """Refresh every part of the page from the watch."""
        rows = self.watch.rows()
        online = sum(1 for r in rows if r["connections"])
        rate = sum(r["rate"] for r in rows)
        hub = "" if self.watch.monitor_ok else " &middot; <span style='color:#b00'>hub monitoring not answering</span>"
        self.header.value = (f"<h2 style='margin:4px 0'>Class: <span class='online'>{online}</span> of {len(rows)} "
                             f"students online &middot; <span class='class-rate'>{rate:.1f}</span> msg/s &middot; "
                             f"<span class='class-received'>{self.watch.received}</span> readings{hub}</h2>")
        body = []
        for r in rows:
            dot = "&#9679;" if r["connections"] else "&#9675;"
            color = "#0a0" if r["connections"] else "#999"
            last = ", ".join(f"{html.escape(c)}: {lv:.0f}%" for c, lv in r["last"])
            body.append(f"<tr class='student' data-student='{r['student']}' data-online='{int(bool(r['connections']))}'>"
                        f"<td style='color:{color}'>{dot}</td><td>{r['student']}</td>"
                        f"<td class='rate' style='text-align:right'>{r['rate']:.1f}</td>"
                        f"<td class='received' style='text-align:right'>{r['received']}</td>"
                        f"<td style='text-align:right'>{r['cans']}</td><td class='last'>{last}</td></tr>")
        self.students.value = ("<style>.class-students td, .class-students th {padding: 2px 8px}</style>"
                               "<table class='class-students' style='border-collapse:collapse;margin-right:2em'>"
                               "<tr><th></th><th>student</th><th>msg/s</th><th>readings</th><th>cans</th>"
                               "<th style='text-align:left'>last readings</th></tr>" + "".join(body) + "</table>")
        counts = self.watch.distribution()
        top = max(counts) or 1
        bars = "".join(f"<tr><td>{i * 10}-{i * 10 + 10}%</td><td><div style='background:#4c72b0;height:12px;"
                       f"width:{int(200 * c / top)}px'></div></td><td class='band'>{c}</td></tr>"
                       for i, c in enumerate(counts))
        self.levels.value = ("<b>Class-wide levels</b> (latest per can)<table class='class-levels'>" + bars + "</table>")

    async def _ask(self) -> None:
        try:
            row = await self.watch.ask(self.who.value, self.can.value)
            can = str(row["can_id"]).split("/", 1)[-1]
            self.answer.value = (f"<span class='report-answer'>{html.escape(self.who.value)}'s can "
                                 f"{html.escape(can)}: level {row['level']:.1f}% "
                                 f"({row['readings']} readings, at {row['updated_at']:%H:%M:%S})</span>")
        except _ASK_ERRORS as e:  # no service, no such can, the hub gone: said on the page
            self.answer.value = f"<span class='report-answer'>{html.escape(str(e))}</span>"

    async def stop(self) -> None:
        """Stop updating and disconnect."""
        await cancel(self._task)
        self._task = None
        await self.watch.stop()

    async def close(self) -> None:
        """The old spelling of :meth:`stop`."""
        await self.stop()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def group_rows(rows: Sequence[dict], size: int = 30) -> list:
    """:meth:`ClassWatch.rows` of hundreds of students as groups of ``size`` in roster order (one page line
    each, e.g. ``s001–s030``): how many are online, their msg/s and readings together, and by name who is
    offline or online but silent (0 msg/s): the students to look at, without a row for everyone."""
    if not isinstance(size, int) or size < 1:
        raise BadArgument(f"size={size!r}: give the number of students per group, e.g. 30")
    groups = []
    for start in range(0, len(rows), size):
        part = list(rows[start:start + size])
        names = [r["student"] for r in part]
        groups.append({"label": f"{names[0]}–{names[-1]}" if len(names) > 1 else names[0], "students": names,
                       "online": sum(1 for r in part if r["connections"]),
                       "rate": sum(r["rate"] for r in part), "received": sum(r["received"] for r in part),
                       "offline": [r["student"] for r in part if not r["connections"]],
                       "silent": [r["student"] for r in part if r["connections"] and not r["rate"]]})
    return groups
