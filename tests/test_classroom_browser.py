"""The instructor's class page in a real browser: a class hub, the page served by Voilà
(`trashlab classroom view`), simulated students appearing on it (two connected directly, one through
its own broker joined to the hub as a leaf node), and the class report answering for a student's can.
Needs /usr/bin/chromium and the Python ``playwright`` and ``voila`` packages (requirements-test.txt)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
import socket
import urllib.request
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from conftest import eventually_sync, unique
from sessions import child_env, end_all, free_port, stop_session, wait_for_line
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, sync_api  # skips without chromium/playwright

from trashlab.servers.classroom import ClassHub
from trashlab.servers.monitor import fetch

pytest.importorskip("voila", reason="pip install -r requirements-test.txt (voila)")

ONLINE_JS = "() => { const e = document.querySelector('.online'); return e ? Number(e.textContent) : -1; }"
ROWS_JS = """() => Array.from(document.querySelectorAll('tr.student')).map(r => ({
  student: r.dataset.student, online: r.dataset.online === '1',
  rate: Number(r.querySelector('.rate').textContent), received: Number(r.querySelector('.received').textContent),
  last: r.querySelector('.last').textContent}))"""


def _spawn(args, tmp_path: Path, name: str, **env) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "trashlab", *args], env=child_env(**env), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)


def _voila(folder: Path, tmp_path: Path, *options: str) -> "tuple[subprocess.Popen, int]":
    """``trashlab classroom view`` on a free port, returned once Voilà listens."""
    port = free_port()
    view = _spawn(["classroom", "view", "--dir", str(folder), "--port", str(port), *options], tmp_path, "voila")
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()  # Voila listens
            return view, port
        except OSError:
            if view.poll() is not None or time.monotonic() > deadline:
                stop_session(view.pid)
                pytest.fail("Voila did not start:\n" + (tmp_path / "voila.log").read_text()[-3000:])
            time.sleep(0.3)


def _shows_the_class(page, log: Path, timeout: float = 90) -> None:
    """Wait until ``page`` shows the class (nobody online); else fail with what it showed and Voilà's log."""
    try:
        page.wait_for_function(f"({ONLINE_JS})() === 0", timeout=timeout * 1000)
    except sync_api.TimeoutError:
        pytest.fail(f"the class page did not show the class within {timeout:g} s; it showed:\n"
                    f"{page.inner_text('body')[:600]}\nVoila's log:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def _class_page(port: int, width: int, height: int, log: Path, *, route=None) -> Iterator:
    """The class page in headless Chromium, once it shows the class (nobody online yet). ``route``, if given,
    sees every script the page loads (``page.route``)."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            if route is not None:
                page.route("**/*.js", route)
            page.goto(f"http://127.0.0.1:{port}/", timeout=90_000)
            _shows_the_class(page, log)
            yield page
        finally:
            browser.close()


def test_instructor_sees_simulated_students_appear_on_the_class_page(tmp_path):
    hub = ClassHub(4, name=unique("hub")).start()
    folder = tmp_path / "class"
    hub.write_roster(folder)
    procs = []
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        view, port = _voila(folder, tmp_path)
        procs.append(view)
        with _class_page(port, 1280, 900, tmp_path / "voila.log") as page:
            # students arrive: s01 and s02 connect directly, s03 through its own broker joined as a leaf
            for student in ("s01", "s02"):
                procs.append(_spawn(["sim", "--interval", "0.1", "--cans", "20", "-q"], tmp_path, student,
                                    NATS_URL=hub.student_url(student)))
            join_file = str(tmp_path / "s03-class.json")
            joined = subprocess.run([sys.executable, "-m", "trashlab", "classroom", "join", hub.join_line("s03")],
                                    env=child_env(TRASHLAB_CLASS_FILE=join_file), capture_output=True, text=True,
                                    timeout=30)
            assert joined.returncode == 0, joined.stderr
            assert hub.seats["s03"] not in joined.stdout + joined.stderr
            local = _spawn(["broker", "--name", "iot-msg"], tmp_path, "s03-broker", TRASHLAB_CLASS_FILE=join_file)
            procs.append(local)
            local_url = wait_for_line(tmp_path / "s03-broker.log", r"nats://127\.0\.0\.1:\d+", local)
            procs.append(_spawn(["sim", "--servers", local_url, "--interval", "0.1", "--cans", "20", "-q"],
                                tmp_path, "s03-sim"))
            page.wait_for_function(f"({ONLINE_JS})() === 3", timeout=60_000)
            page.wait_for_function(f"({ROWS_JS})().filter(r => r.rate > 0).length === 3", timeout=60_000)
            rows = {r["student"]: r for r in page.evaluate(ROWS_JS)}
            assert [s for s, r in rows.items() if r["online"]] == ["s01", "s02", "s03"]
            assert rows["s04"]["received"] == 0 and not rows["s04"]["online"]
            bands = page.evaluate("() => Array.from(document.querySelectorAll('.band')).map(e => Number(e.textContent))")
            assert len(bands) == 10 and sum(bands) > 0
            # the class report answers for one of s03's cans (s03 publishes only through its leaf broker)
            can = re.match(r"\s*(\w+):", rows["s03"]["last"]).group(1)
            page.select_option(".widget-dropdown select", "s03")
            page.fill(".widget-text input", can)
            page.click("text=Ask the class report")
            page.wait_for_function(
                "() => { const e = document.querySelector('.report-answer'); return e && /level/.test(e.textContent); }",
                timeout=20_000)
            answer = page.text_content(".report-answer")
            assert f"s03's can {can}: level" in answer
            page.screenshot(path=str(ARTIFACTS / "class-view.png"), full_page=True)
            page_text = page.content()
            for password in [*hub.seats.values(), hub.instructor_password]:
                assert password not in page_text
    finally:
        end_all(procs)
        hub.stop()
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log")) + hub.output
    for password in [*hub.seats.values(), hub.instructor_password]:
        assert password not in logs
    print(f"class view: {answer}; screenshot {ARTIFACTS / 'class-view.png'}")


def _page_kernels(view: subprocess.Popen) -> int:
    """The page kernels Voilà runs now (the ipykernel processes under `classroom view`)."""
    count = 0
    for child in psutil.Process(view.pid).children(recursive=True):
        try:
            count += "ipykernel_launcher" in " ".join(child.cmdline())
        except psutil.Error:  # ended meanwhile
            pass
    return count


def _kernel_sockets(view: subprocess.Popen) -> Path:
    """The folder of the page kernels' IPC sockets (from Voilà's command line under `classroom view`)."""
    for child in psutil.Process(view.pid).children(recursive=True):
        for arg in child.cmdline():
            if arg.startswith("--KernelManager.ip="):
                return Path(arg.split("=", 1)[1]).parent
    pytest.fail("Voila runs without --KernelManager.ip (its kernels are not over IPC)")


def _class_reports(hub: ClassHub) -> int:
    """How many class-report responders are connected to the hub (the instructor's connections of that name)."""
    conns = fetch(hub.monitor_url, "connz?auth=1&limit=4096").get("connections") or []
    return sum(1 for c in conns if c.get("account") == "INSTRUCTOR" and c.get("name") == "class-report")


def test_one_kernel_per_open_page_and_none_for_pages_gone(tmp_path):
    """Three loads that never open the page (like `curl`) and one browser page: the loads' kernels end (they
    stop watching once no browser shows them, then Voilà's culler ends them as idle), leaving one kernel and one
    class-report responder, the open page's; once that page is gone too, none."""
    hub = ClassHub(2, name=unique("hub"), jetstream=True).start()
    folder = tmp_path / "class"
    hub.write_roster(folder)
    procs: list = []
    try:
        view, port = _voila(folder, tmp_path, "--idle", "6")
        procs.append(view)
        sockets = _kernel_sockets(view)
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=120) as answer:
                assert b"<html" in answer.read(), "Voila did not serve the page"
        started = _page_kernels(view)
        assert started >= 1, "a load that executes the page starts a kernel (else this test shows nothing)"

        def seen() -> str:
            return f"{_page_kernels(view)} kernels, {_class_reports(hub)} class-report responders"

        with _class_page(port, 1366, 768, tmp_path / "voila.log") as page:
            eventually_sync(lambda: _page_kernels(view) == 1 and _class_reports(hub) == 1,
                            "only the open page's kernel and class report left", timeout=120, seen=seen)
            page.wait_for_function(f"({ONLINE_JS})() === 0", timeout=10_000)  # the open page lives on
            page.close()  # no unload handler runs: like a tab that crashed or a network gone
        eventually_sync(lambda: _page_kernels(view) == 0 and _class_reports(hub) == 0,
                        "no kernel and no class report once no page is open", timeout=120, seen=seen)
        print(f"{started} kernels after three loads; one with one page open; none after it closed")
    finally:
        end_all(procs)
        hub.stop()
    log = (tmp_path / "voila.log").read_text()
    assert log.count("Kernel started") >= 4, log[-2000:]
    assert "running over TCP" not in log, "the page kernels talk over IPC: no transport warning in the log"
    assert view.returncode == 0 and not sockets.exists(), f"`classroom view` stopped by SIGTERM (exit " \
        f"{view.returncode}) leaves {sockets} behind: {log[-1500:]}"


def test_a_page_whose_kernel_is_gone_reloads_itself(tmp_path):
    """A browser slower to connect than the culler (a loaded laptop, a slow network; or a laptop that slept through
    a break) finds its page's kernel gone: the page reloads itself, gets a new kernel and shows the class, instead
    of staying frozen and empty on the projector. The first load's scripts are held until its kernel is gone."""
    hub = ClassHub(2, name=unique("hub")).start()
    folder = tmp_path / "class"
    hub.write_roster(folder)
    procs: list = []
    held: list = []
    try:
        view, port = _voila(folder, tmp_path, "--idle", "6")
        procs.append(view)

        def hold_first_load(route) -> None:
            if route.request.url.endswith("/voila.js") and not held:
                held.append(route.request.url)  # the page's kernel is culled before this browser connects
                eventually_sync(lambda: _page_kernels(view) == 0, "the first load's kernel culled", timeout=120,
                                seen=lambda: f"{_page_kernels(view)} kernels")
            route.continue_()

        with _class_page(port, 1366, 768, tmp_path / "voila.log", route=hold_first_load) as page:
            assert held, "the first load's script was never held (so its kernel was never gone)"
            eventually_sync(lambda: _page_kernels(view) == 1, "one kernel, the reloaded page's", timeout=60,
                            seen=lambda: f"{_page_kernels(view)} kernels")
            page.wait_for_function(f"({ONLINE_JS})() === 0", timeout=10_000)  # alive: it answers and redraws
    finally:
        end_all(procs)
        hub.stop()
    assert "Kernel does not exist" in (tmp_path / "voila.log").read_text(), "the page asked for its gone kernel"


#: a student through the course's real path: joined, the notebook's Broker a leaf of the hub, a check run per line on stdin
STUDENT = r"""
import asyncio, json, random, sys, time, urllib.request
import trashlab
from trashlab.course.checks import simulator
from trashlab.errors import CheckFailed

async def good(nc, count, interval):
    for _ in range(count):
        await nc.publish("trash-level", b'{"can_id":"%d", "level":"%.2f"}' % (random.randint(0, 1000), random.random() * 100))
        await asyncio.sleep(interval)

def interest(broker):
    leafs = json.load(urllib.request.urlopen(broker.monitor_url + "/leafz?subs=1", timeout=2))["leafs"] or []
    return [s for lf in leafs for s in lf.get("subscriptions_list") or []]

async def main():
    broker = trashlab.Broker("iot-msg").start()
    deadline = time.monotonic() + 60
    while "trash-progress" not in interest(broker):  # the hub wants the student's progress from this leaf
        if time.monotonic() > deadline:
            sys.exit(f"the hub never asked this leaf for trash-progress: {interest(broker)}")
        await asyncio.sleep(0.1)
    print("ready", flush=True)
    for answer in (None, good):
        sys.stdin.readline()
        try:
            await simulator.check_publish_readings(answer)
        except CheckFailed:
            pass
        print("checked", time.time(), flush=True)
    sys.stdin.readline()
    broker.stop()

asyncio.run(main())
"""

#: the rest of a class of 30, each connected with their own login: readings (some with hostile can ids) and progress
CLASS = r"""
import asyncio, json, random, sys
import nats

EXERCISES = ["02/hello", "02/client_names", "03/publish_readings", "03/wildcard", "04/responder", "04/requester",
             "05/outage", "06/shut_down"]
HOSTILE = ['<b class="injected">pwned</b>', "a-very-long-can-id-" + "x" * 40, "135"]

async def quiet(error):
    pass

async def student(url, n):
    nc = await nats.connect(url, name="student", error_cb=quiet)
    rnd = random.Random(n)
    for ex in EXERCISES[:rnd.randint(1, len(EXERCISES))]:
        for attempt in range(1, rnd.choice([1, 1, 2, 4]) + 1):
            await nc.publish("trash-progress", json.dumps({"exercise": ex, "ok": False, "attempt": attempt}).encode())
        if rnd.random() < 0.7:
            await nc.publish("trash-progress", json.dumps({"exercise": ex, "ok": True, "attempt": 9}).encode())
    while True:
        can = HOSTILE[n % 3] if n < 6 else str(rnd.randint(0, 999))
        await nc.publish("trash-level", json.dumps({"can_id": can, "level": str(round(rnd.random() * 100, 2))}).encode())
        await nc.flush()
        await asyncio.sleep(0.5)

async def main():
    urls = json.load(open(sys.argv[1]))
    await asyncio.gather(*(student(u, i) for i, u in enumerate(urls)))

asyncio.run(main())
"""


def _said(proc: subprocess.Popen, word: str, tmp_path: Path) -> list:
    """The next line of ``proc``'s output that starts with ``word`` (other lines are the check's own), split."""
    seen = []
    for line in proc.stdout:
        if line.startswith(word):
            return line.split()
        seen.append(line)
    pytest.fail(f"the student ended before saying {word!r}: {''.join(seen)[-1000:]} "
                f"{(tmp_path / 's01.err').read_text()[-2000:]}")


def test_live_progress_and_a_class_of_30_on_a_projector(tmp_path):
    """A class of 30 on a 1366x768 page: s01 runs notebook 03's real check twice through their joined broker
    (a leaf of the hub), and each ✘/✔ appears in their row; 29 simulated students (their own logins) publish
    readings, hostile can ids among them, and progress. Every row fits the screen without scrolling, and the
    can ids are shown as text, cut short."""
    hub = ClassHub(30, name=unique("hub"), jetstream=True).start()
    folder = tmp_path / "class"
    hub.write_roster(folder)
    procs: list = []
    ARTIFACTS.mkdir(exist_ok=True)
    urls = tmp_path / "urls.json"
    urls.write_text(json.dumps([hub.student_url(s, host="127.0.0.1") for s in hub.students[1:]]))
    urls.chmod(0o600)
    cell = "document.querySelector(\"tr[data-student='s01'] td[data-exercise='03/publish_readings']\")"
    try:
        view, port = _voila(folder, tmp_path)
        procs.append(view)
        with _class_page(port, 1366, 768, tmp_path / "voila.log") as page:
            join_file = str(tmp_path / "s01-class.json")
            joined = subprocess.run([sys.executable, "-m", "trashlab", "classroom", "join", "-"],
                                    input=hub.join_line("s01"), env=child_env(TRASHLAB_CLASS_FILE=join_file),
                                    capture_output=True, text=True, timeout=30)
            assert joined.returncode == 0, joined.stderr
            errors = open(tmp_path / "s01.err", "w")
            s01 = subprocess.Popen([sys.executable, "-c", STUDENT], env=child_env(TRASHLAB_CLASS_FILE=join_file),
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                   text=True, start_new_session=True, cwd=tmp_path)
            procs.append(s01)
            _said(s01, "ready", tmp_path)
            delays = []
            for mark in ("✘1", "✔"):
                s01.stdin.write("\n")
                s01.stdin.flush()
                ended = float(_said(s01, "checked", tmp_path)[1])
                page.wait_for_function(f"() => {{ const c = {cell}; return c && c.textContent === '{mark}'; }}",
                                       timeout=20_000, polling=20)
                delays.append(time.time() - ended)
            rest = subprocess.Popen([sys.executable, "-c", CLASS, str(urls)], env=child_env(), start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=open(tmp_path / "class.err", "w"))
            procs.append(rest)
            try:
                page.wait_for_function(f"({ONLINE_JS})() === 30", timeout=60_000)
            except sync_api.TimeoutError:
                pytest.fail(f"not 30 online but {page.evaluate(ONLINE_JS)}: {(tmp_path / 'class.err').read_text()[-2000:]}")
            page.wait_for_function("() => document.querySelectorAll('td.ex.stuck').length > 0 && "
                                   "document.querySelectorAll('td.ex.pass').length > 5", timeout=30_000)
            page.wait_for_function(f"({ROWS_JS})().filter(r => r.received > 0).length === 29", timeout=60_000)  # all but s01
            page.screenshot(path=str(ARTIFACTS / "class-view-projector.png"))
            layout = page.evaluate("""() => {
              const rows = document.querySelectorAll('tr.student');
              return {rows: rows.length, bottom: rows[rows.length - 1].getBoundingClientRect().bottom,
                      width: document.documentElement.scrollWidth, height: window.innerHeight,
                      injected: document.querySelectorAll('.injected').length,
                      table: document.querySelector('.class-students').getBoundingClientRect().right,
                      side: document.querySelector('.class-side').getBoundingClientRect().left,
                      fontSize: parseFloat(getComputedStyle(rows[0]).fontSize),
                      lasts: Array.from(document.querySelectorAll('td.last')).map(e => e.textContent)}; }""")
            assert layout["rows"] == 30
            assert layout["bottom"] <= layout["height"], f"row 30 ends at {layout['bottom']} px, below the screen"
            assert layout["width"] <= 1366, f"the page is {layout['width']} px wide: it scrolls sideways"
            assert layout["table"] <= layout["side"], f"the table ({layout['table']} px) runs under the side panel"
            assert layout["fontSize"] >= 15, f"text of {layout['fontSize']} px is too small for a projector"
            assert layout["injected"] == 0, "a student's can id became markup on the page"
            shown = "".join(layout["lasts"])
            assert "<b class=" in shown, f"the hostile can id is not shown as text: {shown[:300]}"
            assert "x" * 20 not in shown, "a long can id is not cut short"
            page_text = page.content()
            for password in [*hub.seats.values(), hub.instructor_password]:
                assert password not in page_text
            s01.stdin.write("\n")
            s01.stdin.flush()
        print(f"s01's ✘ and ✔ appeared on the page {delays[0]:.2f} s and {delays[1]:.2f} s after their checks "
              f"ended; screenshot {ARTIFACTS / 'class-view-projector.png'}")
    finally:
        end_all(procs)
        hub.stop()
