"""The instructor's class view: who is online, how fast each student publishes, the class's levels,
and every student's exercise checks (✔/✘, attempts) as they run.

``ClassWatch`` is the model (one instructor connection to the class hub, subscribed to
``class.*.trash-level``, plus the hub's local monitoring port for who is connected, plus the students'
progress ``class.*.trash-progress``); ``ClassReport`` is the class's report service (``class-report``:
every student's cans, asked as ``"s01/135"``); ``ClassView`` draws them as widgets. ``trashlab classroom
view`` serves ``class-view.ipynb`` with Voilà, so the page can be projected.

What the page knows lives on the hub when the hub has JetStream (``classroom serve`` gives it one, in the
class folder): the class report's levels in the bucket ``class-levels``, the progress messages in the
stream ``CLASS_PROGRESS``. A reloaded page, or one open across a hub restart, starts from them.

Under Voilà a page's kernel watches its own page: with no browser connected to it for
``$TRASHLAB_CLASS_PAGE_IDLE`` seconds it stops its NATS clients and its redrawing, so jupyter_server's
culler (``classroom view`` turns it on) ends the kernel; a browser that comes back resumes it.
"""

from __future__ import annotations

import asyncio
import collections
import html
import json
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
from ..servers.progress import EXERCISE, PROGRESS
from ..servers.retry import NATS_ERRORS
from ..services.kvlevels import jetstream_available
from ..services.report import ReportService, query_level

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
#: The JetStream bucket of the class report's levels (in the instructor's account on the hub).
CLASS_LEVELS = "class-levels"
#: The JetStream stream that keeps every student's progress messages (``class.*.trash-progress``).
PROGRESS_STREAM = "CLASS_PROGRESS"
#: Seconds between two looks at the progress stream (a ✔/✘ reaches the page within about this).
PROGRESS_POLL = 0.2
#: A failing exercise with this many attempts or more is marked as stuck on the page.
STUCK_AFTER = 3
#: Characters of a student-supplied can id shown on the page (the rest is cut, with an ellipsis).
CAN_ID_SHOWN = 10


class ClassReport(ReportService):
    """The class's report service, in the instructor's account: the latest level of every student's
    cans, keyed ``<student>/<can_id>`` (ask ``query_level("s01/135", url, service="class-report")``).
    Kept in the JetStream bucket ``class-levels`` when the hub has JetStream, else in memory."""

    bucket = CLASS_LEVELS

    def __init__(self, servers, *, name: str = CLASS_REPORT) -> None:
        super().__init__(servers, f"{CLASS_PREFIX}.*.{EXPORTED}", name=name)

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


def _shown(text: str, limit: int = CAN_ID_SHOWN) -> str:
    """Student-supplied text for the page: escaped, and cut to ``limit`` characters."""
    text = str(text)
    return html.escape(text if len(text) <= limit else text[:limit - 1] + "…")


class ClassWatch:
    """Live numbers of a class: per student online / rate / received / last readings, their exercise
    checks, and the class-wide level distribution; ``ask(student, can)`` goes through the class report."""

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
        self._follower: Optional[asyncio.Task] = None
        #: student -> exercise -> [passed (the latest check), attempts, time of the latest]
        self.progress: dict = {s: {} for s in self.students}
        self.progress_rejected = 0
        self._progress_seq = 0  # the last message of the progress stream applied
        self.jetstream = False
        #: set when a progress message arrives: the page redraws at once instead of at its next refresh
        self.changed = asyncio.Event()

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
            self._remember_levels()
            loop = asyncio.get_running_loop()
            self.jetstream = await jetstream_available(self._nc) and await self._progress_stream()
            if self.jetstream:  # the stream remembers; the page reads it from where it is
                await self._read_progress()
                self._follower = loop.create_task(self._follow_progress(), name="trashlab-class-progress")
            else:
                await self._nc.subscribe(f"{CLASS_PREFIX}.*.{PROGRESS}", cb=self._on_progress)
            await self._poll_once()
            self._poller = loop.create_task(self._poll(), name="trashlab-class-poll")
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Stop polling, the class report and the subscription."""
        await cancel(self._poller)
        await cancel(self._follower)
        self._poller = self._follower = None
        if self.report is not None:
            await self.report.stop()
        if self._nc is not None and not self._nc.is_closed:
            await quietly(self._nc.close())

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._nc is not None and not self._nc.is_closed

    def _remember_levels(self) -> None:
        """What the class report's store already holds (its JetStream bucket): the page starts from it."""
        assert self.report is not None, "start() starts the report first"
        for key, value in self.report.store.items():
            student, _, can = key.partition("/")
            st = self._by.get(student)
            if st is not None and can not in st.levels:
                st.levels[can] = value.level
                st.received += value.readings

    # ----- progress: every student's exercise checks ---------------------------------------
    async def _progress_stream(self) -> bool:
        """Find or make the stream that keeps the class's progress messages; False if JetStream refuses."""
        assert self._nc is not None, "start() connects first"
        js = self._nc.jetstream(timeout=5.0)
        try:
            await js.stream_info(PROGRESS_STREAM)
            return True
        except NATS_ERRORS:
            pass
        try:
            await js.add_stream(name=PROGRESS_STREAM, subjects=[f"{CLASS_PREFIX}.*.{PROGRESS}"], max_msgs=200_000,
                                max_age=14 * 24 * 3600, max_msg_size=1024,
                                description="every student's exercise checks (trashlab class page)")
        except NATS_ERRORS as e:
            log.warning("trashlab: no progress stream on the hub (%s): the page shows progress from now on only", e)
            return False
        return True

    async def _read_progress(self) -> None:
        """Apply every progress message the stream holds that this page has not applied yet."""
        from nats.js.errors import NotFoundError

        assert self._nc is not None, "start() connects first"
        js = self._nc.jetstream(timeout=5.0)
        state = (await js.stream_info(PROGRESS_STREAM)).state
        if state.last_seq < self._progress_seq:  # the stream was made again: read it from its start
            self._progress_seq = 0
        self._progress_seq = max(self._progress_seq, state.first_seq - 1)
        while self._progress_seq < state.last_seq:
            try:
                msg = await js.get_msg(PROGRESS_STREAM, self._progress_seq + 1)
                self._apply_progress(msg.subject or "", msg.data or b"")
            except NotFoundError:  # removed by a limit meanwhile
                pass
            self._progress_seq += 1

    async def _follow_progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_POLL)
            try:
                await self._read_progress()
            except NATS_ERRORS:  # the hub away (restarting): read on when it is back
                continue

    async def _on_progress(self, msg) -> None:
        self._apply_progress(msg.subject, msg.data)

    def _apply_progress(self, subject: str, data: bytes) -> None:
        """One student's ✔/✘: checked, bounded, counted as an attempt of that exercise."""
        student = subject.split(".")[1] if subject.count(".") >= 2 else ""
        mine = self.progress.get(student)
        try:
            doc = json.loads(data[:512])
            exercise, ok = doc["exercise"], doc["ok"]
            if mine is None or not isinstance(exercise, str) or not EXERCISE.match(exercise) or not isinstance(ok, bool):
                raise ValueError(exercise)
        except (ValueError, KeyError, TypeError):  # not a progress message: counted, never shown
            self.progress_rejected += 1
            return
        entry = mine.setdefault(exercise, [False, 0, 0.0])
        entry[0], entry[1], entry[2] = ok, entry[1] + 1, time.time()
        self.changed.set()

    def exercises(self) -> list:
        """Every exercise some student has checked, in course order (``02/hello`` ... ``08/...``)."""
        return sorted({e for mine in self.progress.values() for e in mine})

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
                 "last": [(can, level) for _, can, level in reversed(self._by[s].last)],
                 "progress": {e: (ok, n) for e, (ok, n, _) in self.progress[s].items()}}
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


#: The page's own look: large enough for a projector, 30 students on 1366x768 without scrolling.
PAGE_CSS = """<style>
.trashlab-class-view {width: 100%; box-sizing: border-box}
.trashlab-class-view, .trashlab-class-view .widget-html-content {font-size: 16px; line-height: 20px}
.trashlab-class-view h2 {font-size: 21px; margin: 0 0 4px 0}
.class-students {border-collapse: collapse; width: 100%}
.class-students td, .class-students th {padding: 0 4px; height: 21px; white-space: nowrap}
.class-students th {font-size: 12px; line-height: 13px; vertical-align: bottom; text-align: right}
.class-students tr.student:nth-child(even) {background: #f0f0f0}
.class-students td.num {text-align: right; font-variant-numeric: tabular-nums}
.class-students td.last {max-width: 150px; overflow: hidden; text-overflow: ellipsis; color: #444}
.class-students th.ex {text-align: center; max-width: 52px; overflow: hidden}
.class-students td.ex {text-align: center; font-weight: bold; min-width: 30px}
.class-students td.ex.pass {color: #080}
.class-students td.ex.fail {color: #c00}
.class-students td.ex.stuck {color: #fff; background: #c00}
.class-side {min-width: 280px; max-width: 290px; margin-left: 10px}
.class-side .widget-html-content {font-size: 15px}
.class-levels td {padding: 0 4px; height: 18px}
</style>"""
#: Exercise columns shown at most (the latest checked; the rest is summed up in the header).
MAX_EXERCISES = 10
#: Student lines that fit a 1366x768 projector; a bigger class is shown in groups (at most this many lines).
ROWS_ON_PAGE = 30
#: Names shown per group line under "to look at" (the rest as "+n").
LOOK_AT_SHOWN = 4


def _page_watch() -> "tuple[Optional[str], float]":
    """This kernel's page on Voilà (``$TRASHLAB_CLASS_PAGE_URL``) and how long it may stay unwatched."""
    url = os.environ.get("TRASHLAB_CLASS_PAGE_URL")
    try:
        idle = float(os.environ.get("TRASHLAB_CLASS_PAGE_IDLE", "60"))
    except ValueError:
        idle = 60.0
    return url, idle


def _kernel_id() -> Optional[str]:
    """This kernel's id on its Jupyter server (None outside a kernel)."""
    try:
        from ipykernel.connect import get_connection_file

        return Path(get_connection_file()).stem.removeprefix("kernel-")
    except Exception:  # blind: not in a kernel, or no connection file
        return None


#: The page reloads itself when its kernel is gone (a browser slower to connect than the culler, a laptop that
#: slept through a break): without it the projected page stays frozen and empty for good. A reload gets a new
#: kernel; a server that does not answer is asked again later.
_RELOAD_JS = """<script>(function () {
  if (window.__trashlabPageWatch) return;
  window.__trashlabPageWatch = true;
  const config = document.getElementById("jupyter-config-data");
  const base = (config ? JSON.parse(config.textContent).baseUrl : null) || "/";
  const url = base.replace(/\\/?$/, "/") + "api/kernels/%s";
  setInterval(function () {
    fetch(url + "?" + Date.now(), {cache: "no-store"})
      .then(function (answer) { if (answer.status === 404) location.reload(); })
      .catch(function () {});  // the server is away: ask again at the next tick
  }, %d);
})();</script>"""


def _connections(page_url: str) -> Optional[int]:
    """How many browser connections jupyter_server counts for this kernel (None: cannot tell)."""
    import urllib.request

    kernel_id = _kernel_id()
    if kernel_id is None:
        return None
    try:
        with urllib.request.urlopen(f"{page_url.rstrip('/')}/api/kernels/{kernel_id}", timeout=2) as answer:
            return int(json.loads(answer.read())["connections"])
    except Exception:  # blind: no Voilà, no kernel id, a slow server: the page keeps running as it is
        return None


class ClassView:
    """The class page: header, per-student table with their exercise checks, level distribution, and a
    report question box; laid out for a 1366x768 projector."""

    def __init__(self, watch: ClassWatch, *, refresh: float = 1.0) -> None:
        import ipywidgets as w

        self.watch = watch
        self.refresh = refresh
        self.header = w.HTML()
        self.students = w.HTML(layout=w.Layout(flex="1 1 auto", overflow="hidden"))
        self.levels = w.HTML()
        self.who = w.Dropdown(options=watch.students, description="student", layout=w.Layout(width="270px"))
        self.can = w.Text(description="can id", placeholder="e.g. 135", layout=w.Layout(width="270px"))
        self.button = w.Button(description="Ask the class report", layout=w.Layout(width="270px"))
        self.answer = w.HTML()
        self.button.on_click(lambda _: asyncio.ensure_future(self._ask()))
        side = w.VBox([self.levels, w.HTML("<b>The class's report service</b>"), self.who, self.can, self.button,
                       self.answer, w.HTML(f"<small>✔ passed &middot; ✘<i>n</i> failing after <i>n</i> checks &middot; "
                                           f"white on red: stuck ({STUCK_AFTER}+ failed checks)</small>")])
        side.add_class("class-side")
        self.widget = w.VBox([w.HTML(PAGE_CSS), self.header, w.HBox([self.students, side])],
                             layout=w.Layout(width="100%"))
        self.widget.add_class("trashlab-class-view")
        self._task: Optional[asyncio.Task] = None
        self.page_url, self.idle = _page_watch()
        self.paused = False
        self._alone_since: Optional[float] = None
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
            try:  # every `refresh` s, and at once when a student's check arrives
                await asyncio.wait_for(self.watch.changed.wait(), self.refresh)
            except asyncio.TimeoutError:
                pass
            self.watch.changed.clear()
            if self.page_url is not None:
                await self._watch_page()
            if self.paused:
                continue  # no widget traffic: the kernel turns idle and the server's culler can end it
            try:
                self.draw()
            except Exception as e:  # blind: the projected page stays alive and says what broke
                self.header.value = f"<b>class view error:</b> {html.escape(str(e))}"

    async def _watch_page(self) -> None:
        """Under Voilà: pause (NATS clients stopped, no redrawing) while no browser shows this page, resume when one does."""
        assert self.page_url is not None, "only under Voilà"
        count = await asyncio.get_running_loop().run_in_executor(None, _connections, self.page_url)
        if count is None:
            return
        now = time.monotonic()
        if count:
            self._alone_since = None
            if self.paused:
                log.info("trashlab: a browser shows the class page again: watching the class again")
                await self.watch.start()
                self.paused = False
            return
        if self._alone_since is None:
            self._alone_since = now
        if not self.paused and now - self._alone_since >= self.idle:
            self.paused = True
            await self.watch.stop()

    def draw(self) -> None:
        """Refresh every part of the page from the watch."""
        rows = self.watch.rows()
        online = sum(1 for r in rows if r["connections"])
        rate = sum(r["rate"] for r in rows)
        hub = "" if self.watch.monitor_ok else " &middot; <span style='color:#b00'>hub monitoring not answering</span>"
        exercises = self.watch.exercises()
        latest = sorted(exercises, key=lambda e: max((p[e][2] for p in self.watch.progress.values() if e in p)))
        shown = [e for e in exercises if e in latest[-MAX_EXERCISES:]]
        hidden = len(exercises) - len(shown)
        stuck = sum(1 for r in rows for ok, n in r["progress"].values() if not ok and n >= STUCK_AFTER)
        self.header.value = (f"<h2>Class: <span class='online'>{online}</span> of {len(rows)} "
                             f"online &middot; <span class='class-rate'>{rate:.1f}</span> msg/s &middot; "
                             f"<span class='class-received'>{self.watch.received}</span> readings &middot; "
                             f"<span class='class-stuck'>{stuck}</span> stuck{hub}</h2>")
        heads = "".join(f"<th class='ex' title='{html.escape(e)}'>{html.escape(e.split('/')[0])}<br>"
                        f"{_shown(e.split('/')[1], 7)}</th>" for e in shown)
        more = f"<th>+{hidden} more</th>" if hidden else ""
        if len(rows) > ROWS_ON_PAGE:
            self.students.value = _group_table(rows, shown, heads, more)
        else:
            self.students.value = _student_table(rows, shown, heads, more)
        counts = self.watch.distribution()
        top = max(counts) or 1
        bars = "".join(f"<tr><td>{i * 10}-{i * 10 + 10}%</td><td><div style='background:#4c72b0;height:12px;"
                       f"width:{int(140 * c / top)}px'></div></td><td class='band'>{c}</td></tr>"
                       for i, c in enumerate(counts))
        self.levels.value = ("<b>Class-wide levels</b> (latest per can)<table class='class-levels'>" + bars + "</table>")

    async def _ask(self) -> None:
        try:
            row = await self.watch.ask(self.who.value, self.can.value)
            can = str(row["can_id"]).split("/", 1)[-1]
            self.answer.value = (f"<span class='report-answer'>{html.escape(self.who.value)}'s can "
                                 f"{_shown(can)}: level {row['level']:.1f}% "
                                 f"({row['readings']} readings, at {row['updated_at']:%H:%M:%S})</span>")
        except _ASK_ERRORS as e:  # no service, no such can, the hub gone: said on the page
            self.answer.value = f"<span class='report-answer'>{_shown(str(e), 200)}</span>"

    async def stop(self) -> None:
        """Stop updating and disconnect."""
        await cancel(self._task)
        self._task = None
        await self.watch.stop()

    async def close(self) -> None:
        """The old spelling of :meth:`stop`."""
        await self.stop()

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(self.widget)
        kernel_id = _kernel_id()
        if self.page_url is not None and kernel_id is not None:  # under Voilà: a page whose kernel is gone reloads
            display(HTML(_RELOAD_JS % (kernel_id, int(min(5.0, max(1.0, self.idle / 2)) * 1000))))


def _student_table(rows: Sequence[dict], shown: Sequence[str], heads: str, more: str) -> str:
    """The page's table with one line per student (a class that fits the screen)."""
    body = []
    for r in rows:
        dot = "&#9679;" if r["connections"] else "&#9675;"
        color = "#0a0" if r["connections"] else "#999"
        last = ", ".join(f"{_shown(c)}: {lv:.0f}%" for c, lv in r["last"][:2])
        cells = []
        for e in shown:
            ok, n = r["progress"].get(e, (None, 0))
            kind = "" if ok is None else "pass" if ok else "stuck" if n >= STUCK_AFTER else "fail"
            mark = "" if ok is None else "✔" if ok else f"✘{n}"
            cells.append(f"<td class='ex {kind}' data-exercise='{html.escape(e)}' data-attempts='{n}'>{mark}</td>")
        body.append(f"<tr class='student' data-student='{r['student']}' data-online='{int(bool(r['connections']))}'>"
                    f"<td style='color:{color}'>{dot}</td><td>{r['student']}</td>"
                    f"<td class='rate num'>{r['rate']:.1f}</td><td class='received num'>{r['received']}</td>"
                    f"<td class='num'>{r['cans']}</td><td class='last'>{last}</td>{''.join(cells)}"
                    f"{'<td></td>' if more else ''}</tr>")
    return ("<table class='class-students'><tr><th></th><th style='text-align:left'>student</th>"
            "<th>msg/s</th><th>readings</th><th>cans</th><th style='text-align:left'>last readings</th>"
            + heads + more + "</tr>" + "".join(body) + "</table>")


def _group_table(rows: Sequence[dict], shown: Sequence[str], heads: str, more: str) -> str:
    """The page's table for a class too big for a line each: one line per group of students in roster order, with
    how many are online, their msg/s and readings together, who to look at (offline, or online and silent), and per
    exercise how many passed and how many fail (white on red when someone in the group is stuck)."""
    size = -(-len(rows) // ROWS_ON_PAGE)  # ceil: at most ROWS_ON_PAGE lines
    body = []
    for group in group_rows(rows, size):
        look = [f"0 msg/s {s}" for s in group["silent"]] + [f"&#9675; {s}" for s in group["offline"]]
        if len(look) > LOOK_AT_SHOWN:
            look = look[:LOOK_AT_SHOWN] + [f"+{len(look) - LOOK_AT_SHOWN}"]
        cells = []
        for e in shown:
            passed, failing, stuck = group["progress"].get(e, (0, 0, 0))
            kind = "stuck" if stuck else "fail" if failing else "pass" if passed else ""
            mark = " ".join(filter(None, [f"{passed}✔" if passed else "", f"{failing}✘" if failing else ""]))
            cells.append(f"<td class='ex {kind}' data-exercise='{html.escape(e)}' data-passed='{passed}' "
                         f"data-failing='{failing}' data-stuck='{stuck}'>{mark}</td>")
        body.append(f"<tr class='group' data-label='{group['label']}' data-online='{group['online']}' "
                    f"data-size='{len(group['students'])}'><td>{group['label']}</td>"
                    f"<td class='num'>{group['online']}/{len(group['students'])}</td>"
                    f"<td class='rate num'>{group['rate']:.1f}</td><td class='received num'>{group['received']}</td>"
                    f"<td class='look'>{', '.join(look)}</td>{''.join(cells)}{'<td></td>' if more else ''}</tr>")
    return ("<table class='class-students'><tr><th style='text-align:left'>students</th><th>online</th><th>msg/s</th>"
            "<th>readings</th><th style='text-align:left'>to look at</th>" + heads + more + "</tr>"
            + "".join(body) + "</table>")


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
                       "silent": [r["student"] for r in part if r["connections"] and not r["rate"]],
                       "progress": _group_progress(part)})
    return groups


def _group_progress(rows: Sequence[dict]) -> dict:
    """Per exercise, how many of ``rows`` passed it, fail it, and are stuck on it (failing after STUCK_AFTER checks)."""
    counts: dict = {}
    for r in rows:
        for exercise, (ok, attempts) in r.get("progress", {}).items():
            passed, failing, stuck = counts.get(exercise, (0, 0, 0))
            counts[exercise] = (passed + bool(ok), failing + (not ok), stuck + (not ok and attempts >= STUCK_AFTER))
    return counts
