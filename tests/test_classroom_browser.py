"""The instructor's class page in a real browser: a class hub, the page served by Voilà
(`trashlab classroom view`), simulated students appearing on it (two connected directly, one through
its own broker joined to the hub as a leaf node), and the class report answering for a student's can.
Needs /usr/bin/chromium and the Python ``playwright`` and ``voila`` packages (requirements-test.txt)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import socket
from pathlib import Path

import pytest

from conftest import unique
from sessions import free_port, stop_session
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ROOT, sync_api  # skips without chromium/playwright

from trashlab.servers.classroom import ClassHub

pytest.importorskip("voila", reason="pip install -r requirements-test.txt (voila)")

ONLINE_JS = "() => { const e = document.querySelector('.online'); return e ? Number(e.textContent) : -1; }"
ROWS_JS = """() => Array.from(document.querySelectorAll('tr.student')).map(r => ({
  student: r.dataset.student, online: r.dataset.online === '1',
  rate: Number(r.querySelector('.rate').textContent), received: Number(r.querySelector('.received').textContent),
  last: r.querySelector('.last').textContent}))"""


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _spawn(args, tmp_path: Path, name: str, **env) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "trashlab", *args], env=_env(**env), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)


def _first_line(tmp_path: Path, name: str, pattern: str, proc: subprocess.Popen, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, (tmp_path / f"{name}.log").read_text())
        if m:
            return m.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"{name} did not print {pattern}: {(tmp_path / f'{name}.log').read_text()[-2000:]}")


def test_instructor_sees_simulated_students_appear_on_the_class_page(tmp_path):
    hub = ClassHub(4, name=unique("hub")).start()
    folder = tmp_path / "class"
    hub.write_roster(folder)
    port = free_port()
    procs = []
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        view = _spawn(["classroom", "view", "--dir", str(folder), "--port", str(port)], tmp_path, "voila")
        procs.append(view)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()  # Voila listens
                break
            except OSError:
                if view.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("Voila did not start:\n" + (tmp_path / "voila.log").read_text()[-3000:])
                time.sleep(0.3)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/", timeout=90_000)
                page.wait_for_function(f"({ONLINE_JS})() === 0", timeout=90_000)  # the class page, nobody yet
                # students arrive: s01 and s02 connect directly, s03 through its own broker joined as a leaf
                for student in ("s01", "s02"):
                    procs.append(_spawn(["sim", "--interval", "0.1", "--cans", "20", "-q"], tmp_path, student,
                                        NATS_URL=hub.student_url(student)))
                join_file = str(tmp_path / "s03-class.json")
                joined = subprocess.run([sys.executable, "-m", "trashlab", "classroom", "join", hub.join_line("s03")],
                                        env=_env(TRASHLAB_CLASS_FILE=join_file), capture_output=True, text=True,
                                        timeout=30)
                assert joined.returncode == 0, joined.stderr
                assert hub.seats["s03"] not in joined.stdout + joined.stderr
                local = _spawn(["broker", "--name", "iot-msg"], tmp_path, "s03-broker", TRASHLAB_CLASS_FILE=join_file)
                procs.append(local)
                local_url = _first_line(tmp_path, "s03-broker", r"nats://127\.0\.0\.1:\d+", local)
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
                browser.close()
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
            stop_session(proc.pid)
        hub.stop()
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log")) + hub.output
    for password in [*hub.seats.values(), hub.instructor_password]:
        assert password not in logs
    print(f"class view: {answer}; screenshot {ARTIFACTS / 'class-view.png'}")
