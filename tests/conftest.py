"""Shared fixtures: real nats-server processes, isolated state, no process left behind; test tiers.

Every test carries exactly one tier marker, by cost (registered in pyproject.toml, docs/testing.md):

``quick``   no processes at all (checked: a quick test that starts one fails, naming it)
``nats``    real nats-server processes, spawned ``trashlab`` children, a small kernel or CLI run
``course``  the course itself: notebooks, the demo, the real browser, nbgrader, the Binder emulation
``slow``    load and soak (minutes), the benchmark

The inner loop is ``python -m pytest -m "quick or nats" -n 4``. A test module or test may set its tier
with a marker; otherwise the tables below decide (a module not named in them is ``nats``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

# Each test session records its children in its own state folder, so reaping in tests never
# touches what a developer runs by hand beside them.
os.environ["TRASHLAB_STATE_DIR"] = tempfile.mkdtemp(prefix="trashlab-test-state-")
os.environ.pop("NATS_URL", None)
# A class the developer joined (trashlab.classroom.join) must not turn the tests' brokers into leaf nodes.
os.environ["TRASHLAB_CLASS_FILE"] = os.path.join(os.environ["TRASHLAB_STATE_DIR"], "no-class.json")

import trashlab

TIERS = ("quick", "nats", "course", "slow")
#: modules that run the course: notebooks, a real browser, nbgrader, Binder
COURSE_MODULES = {"test_notebooks", "test_grading", "test_binder", "test_browser", "test_classroom_notebooks",
                  "test_classroom_browser", "test_flowmap_browser", "test_interrupt_course"}
#: load and soak, benchmarks
SLOW_MODULES = {"test_benchmark"}
#: modules whose tests are ``quick`` unless they ask for a process fixture or are named in NOT_QUICK
QUICK_MODULES = {"test_message", "test_checks", "test_collector_aggregates", "test_dashboard", "test_docker",
                 "test_static", "test_surface", "test_docs", "test_errors"}
PROCESS_FIXTURES = {"broker", "shared_broker", "pair", "js_cluster", "report", "kernel_dir", "jupyter_lab"}
NOT_QUICK = {"test_renders_images_in_a_headless_notebook_run", "test_lab_gnatsd_flag_fails_with_a_current_nats_server",
             "test_cluster_arguments_join_with_the_image_config", "test_live_docker_network_and_broker",
             "test_without_an_engine_the_reason_is_given_and_nothing_runs", "test_no_docker_command_at_all"}
#: processes a quick test may start without touching NATS or Jupyter (matplotlib's font scan, platform,
#: ctypes look-ups, the linter and the type checker)
HARMLESS = {"fc-list", "uname", "ldconfig", "ldconfig.real", "gcc", "cc", "ld", "objdump", "ruff", "mypy"}


def _module(item) -> str:
    """The test module's name (``test_cli``)."""
    return Path(str(item.fspath)).stem


def tier_of(item) -> str:
    """The tier of a collected test: its own marker, else the tables above."""
    own = [t for t in TIERS if item.get_closest_marker(t)]
    if own:
        return max(own, key=TIERS.index)
    module = _module(item)
    if module in COURSE_MODULES:
        return "course"
    if module in SLOW_MODULES:
        return "slow"
    if module in QUICK_MODULES and not PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) \
            and item.originalname not in NOT_QUICK:
        return "quick"
    return "nats"


#: The long poles, started first so that everything else runs beside them (``-n``: tests/run.sh runs
#: the suite on several pytest-xdist workers; docs/testing.md). Other modules keep their order after these.
LONG_POLES = ("test_grading", "test_binder", "test_classroom_load", "test_stream_load", "test_notebooks",
              "test_interrupt_course", "test_course_checks", "test_chaos")
#: Modules whose tests are independent and each long (a notebook, a drill): under ``-n`` their tests are
#: spread over the workers. Every other module runs whole on one worker, so a module-scoped fixture
#: (a cluster, the graded course, the Binder image) is built once.
SPREAD = {"test_notebooks", "test_interrupt_course", "test_course_checks", "test_checks_live", "test_stream_load"}


def pytest_collection_modifyitems(config, items) -> None:
    """Give every test its tier marker, so ``-m`` selects tiers; put the long poles first."""
    for item in items:
        tier = tier_of(item)
        if not item.get_closest_marker(tier):
            item.add_marker(tier)
    first = {name: i for i, name in enumerate(LONG_POLES)}
    items.sort(key=lambda item: first.get(_module(item), len(first)))  # stable: modules stay whole


def pytest_xdist_make_scheduler(config, log):
    """Under ``-n``: whole modules to a worker (their module-scoped fixtures built once), except the
    modules in SPREAD, test by test; in collection order, so the long poles start first.

    (pytest-xdist's own ``--dist loadgroup`` does not group under pytest 9: it renames ``item._nodeid``,
    which pytest 9 no longer reads.) An explicit ``--dist`` other than load is left to pytest-xdist.
    """
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndSpread(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if Path(module).stem in SPREAD else module

    config.option.loadscopereorder = False  # keep the collection order (LONG_POLES first)
    return ModulesAndSpread(config, log)


_started_in_quick: "list[str] | None" = None


def _audit(event: str, args: tuple) -> None:
    """Notes every process started while a quick test runs (an audit hook cannot be removed, so it checks a flag)."""
    if _started_in_quick is None or event not in ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec"):
        return
    if event == "os.fork":
        _started_in_quick.append("fork()")
        return
    exe, argv = args[0], args[1] if len(args) > 1 else ()
    argv = [argv] if isinstance(argv, (str, bytes)) else list(argv or ())
    name = os.path.basename(os.fsdecode(argv[0] if argv else exe or ""))
    if name not in HARMLESS:
        _started_in_quick.append(" ".join(os.fsdecode(a) for a in argv[:4]) or str(exe))


sys.addaudithook(_audit)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A ``quick`` test that starts a process fails, naming it: it belongs in tier ``nats``."""
    global _started_in_quick
    if tier_of(item) != "quick":
        return (yield)
    _started_in_quick = []
    try:
        result = yield
    finally:
        started, _started_in_quick = _started_in_quick, None
    if started:
        pytest.fail(f"a quick test started processes ({started[:3]}): mark it nats (tests/conftest.py)")
    return result


#: user_properties key of a measured figure (see the ``figure`` fixture)
FIGURE = "trashlab-figure"
_figures: "list[tuple[str, str, float | None]]" = []


@pytest.fixture
def figure(request):
    """``figure(section, line, total=None)``: a measured figure for the end-of-run summary.

    Timings are reported, never asserted. The figure travels in the test's report, so it is printed
    by the process that prints the summary, also when pytest-xdist runs the test in a worker;
    ``total`` values of one section are added up under it.
    """
    def record(section: str, line: str, total: "float | None" = None) -> None:
        request.node.user_properties.append((FIGURE, [section, line, total]))
    return record


def pytest_runtest_logreport(report) -> None:
    if report.when == "teardown":  # by then the test has recorded all of its figures
        _figures.extend(tuple(value) for key, value in report.user_properties if key == FIGURE)


def pytest_terminal_summary(terminalreporter) -> None:
    """The figures tests measured, by section (each with the sum of its ``total`` values)."""
    sections: "dict[str, list[tuple[str, float | None]]]" = {}
    for section, line, total in _figures:
        sections.setdefault(section, []).append((line, total))
    for section, lines in sections.items():
        terminalreporter.section(section, sep="-")
        for line, _ in lines:
            terminalreporter.write_line(line)
        totals = [t for _, t in lines if t is not None]
        if totals:
            terminalreporter.write_line(f"total: {sum(totals):.1f} s over {len(totals)}")


def unique(prefix: str = "t") -> str:
    """A broker/service name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ----- waiting for a condition (no test sleeps to synchronise) ---------------------------------------
async def eventually(check, what: str, timeout: float = 15.0, seen=None) -> None:
    """Wait until ``check()`` (a function or coroutine function) is true, at most ``timeout`` s, else fail
    the test with ``what`` was awaited and ``seen()`` (what there was instead). The timeout is a ceiling
    for a stuck test, never a measurement: the condition ends the wait as soon as it holds."""
    from trashlab._progress import wait_until

    if not await wait_until(check, timeout=timeout, what=what, show=False, every=0.02):
        pytest.fail(f"waited {timeout:g} s for {what}" + (f"; seen: {seen()}" if seen is not None else ""))


def eventually_sync(check, what: str, timeout: float = 15.0, seen=None) -> None:
    """:func:`eventually` for a test without an event loop (``check`` is a plain function)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}" + (f"; seen: {seen()}" if seen is not None else ""))
        time.sleep(0.02)  # the polling loop of this wait helper


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or token not in ("*", have[i]):
            return False
    return len(want) == len(have)


def interest(server, subject: str) -> int:
    """How many subscriptions ``server`` (a Broker or a monitoring URL) delivers ``subject`` to: its own
    clients' (/subsz?test=) plus one per route and leaf connection that carries interest in it (/routez,
    /leafz: /subsz lists only local clients)."""
    from trashlab.servers.monitor import fetch

    url = getattr(server, "monitor_url", server)
    local = int(fetch(url, f"subsz?subs=1&test={subject}").get("total") or 0)
    links = (fetch(url, "routez?subs=1").get("routes") or []) + (fetch(url, "leafz?subs=1").get("leafs") or [])
    return local + sum(any(_matches(p.split(" ")[0], subject) for p in (link.get("subscriptions_list") or []))
                       for link in links)


async def has_interest(server, subject: str, count: int = 1, timeout: float = 15.0) -> None:
    """Wait until ``server`` sees at least ``count`` subscriptions to ``subject`` (a subscriber on
    another node counts once it reached this one through the route), else fail saying how many it saw."""
    await eventually(lambda: interest(server, subject) >= count, f"{count} subscription(s) to {subject!r} "
                     f"visible on {getattr(server, 'name', server)}", timeout,
                     seen=lambda: f"{interest(server, subject)} subscription(s)")


async def record_seqs(url: str, subject: str):
    """The test's own witness: a plain nats-py subscriber on ``url`` appending each reading's ``seq`` to a
    list, subscribed on the server when this returns. Returns ``(nc, seqs)``; close ``nc`` at the end."""
    import json

    import nats

    seqs: "list[int]" = []

    async def keep(msg) -> None:
        seqs.append(int(json.loads(msg.data)["seq"]))

    async def quiet(e: Exception) -> None:  # the node may be the one a drill kills
        pass

    nc = await nats.connect(url, name="test-witness", error_cb=quiet)
    await nc.subscribe(subject, cb=keep)
    await nc.flush()
    return nc, seqs


def missing(expected, got, first: int = 10) -> str:
    """``expected`` vs ``got`` (sequences of seqs or payloads) in one line: counts, the first few missing,
    the first few extra and repeated ones."""
    from collections import Counter

    want, have = Counter(expected), Counter(got)
    lost = sorted((want - have).elements())
    extra = sorted((have - want).elements())
    return (f"expected {sum(want.values())}, got {sum(have.values())}; missing {len(lost)} {lost[:first]}"
            + (f"; unexpected or repeated {len(extra)} {extra[:first]}" if extra else ""))


@pytest.fixture
def broker():
    """A fresh broker for one test."""
    b = trashlab.Broker(unique("iot")).start()
    yield b
    b.stop()


@pytest.fixture
def class_file(tmp_path, monkeypatch):
    """Joining a class is remembered in a file of this test only; NATS_URL is restored afterwards."""
    from trashlab.servers.classroom import leave

    path = tmp_path / "class.json"
    monkeypatch.setenv("TRASHLAB_CLASS_FILE", str(path))
    monkeypatch.delenv("NATS_URL", raising=False)
    yield path
    leave()


@pytest.fixture(scope="module")
def shared_broker():
    """One broker for a whole test module (tests use their own subjects)."""
    b = trashlab.Broker(unique("shared")).start()
    yield b
    b.stop()


def nats_server_pids() -> set:
    """Pids of the nats-server processes this test process started (not other test runs' on the machine)."""
    found = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() == "nats-server":
                found.add(p.pid)
        except psutil.Error:
            pass
    return found


def recorded_alive() -> list:
    """Processes recorded by trashlab in this test session's state folder that still run."""
    from trashlab.servers.processes import _alive_as_recorded, records

    alive = []
    for _, rec in records():
        if _alive_as_recorded(rec.get("pid"), rec.get("create_time")):
            if psutil.Process(rec["pid"]).status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{rec['kind']} {rec['name']} pid {rec['pid']}")
    return alive


@pytest.fixture(autouse=True, scope="session")
def no_orphans():
    """Fail the session if a process started by the tests (or by kernels and CLIs they ran) outlives them."""
    yield
    trashlab.processes.stop_all()
    deadline = time.monotonic() + 10
    while recorded_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = recorded_alive()
    assert not left, f"tests left processes behind: {left}"


def pytest_unconfigure(config) -> None:
    """This process's own state folder goes, also where no test ran (the xdist controller, --collect-only)."""
    shutil.rmtree(os.environ["TRASHLAB_STATE_DIR"], ignore_errors=True)
