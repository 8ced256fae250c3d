"""The flow map in a real browser: JupyterLab, headless Debian chromium, the test notebook run with Run All.

It sees the map drawn (servers, the collector, the report service as one box with its endpoints), sees the killed node turn red, sees a new subscriber
appear, presses Pause and Resume, and after the notebook stops the map, sees a still SVG in the output. Screenshots land in
test-artifacts/ (flowmap-*.png); the one after the newcomer appears is the docs picture
(docs/img/flowmap.png is a small copy of it, committed by hand).
"""

from __future__ import annotations

import time

from test_browser import ALL_CELLS_RAN_JS, ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ROOT, UNEXPECTED_ERRORS_JS, serve_lab, sync_api

NOTEBOOK = ROOT / "tests" / "notebooks" / "flowmap.ipynb"
MAP = ".trashlab-flowmap svg"
#: The texts the live map shows (each SVG text element's content).
MAP_TEXTS_JS = f"""() => Array.from(document.querySelectorAll('{MAP} text')).map(t => t.textContent)"""


def has_text(page, pattern: str, timeout: float) -> None:
    page.wait_for_function(f"() => ({MAP_TEXTS_JS})().some(t => t.includes({pattern!r}))", timeout=timeout)


def test_flow_map_shows_a_kill_and_a_newcomer(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    steps = {}
    started = time.monotonic()
    with serve_lab(NOTEBOOK, tmp_path) as (base, token), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}", timeout=60_000)
            page.wait_for_function(
                "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
                " return k && k.status === 'idle'; }", timeout=90_000)
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            try:
                has_text(page, "collector (python3)", 90_000)
                steps["map drawn"] = time.monotonic() - started
                has_text(page, "fm-browser  up", 5_000)
                # the report service: one box named as the service, its endpoints inside, no queue group 'q'
                has_text(page, "trash-report (python3) · service", 15_000)
                has_text(page, "endpoint trash-report.level", 5_000)
                shown = page.evaluate(MAP_TEXTS_JS)
                assert not any("queue group 'q'" in t for t in shown), shown
                assert sum(t.startswith("trash-report (python3)") for t in shown) == 1, shown
                page.locator(".trashlab-flowmap").first.scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS / "flowmap-before-kill.png"))
                has_text(page, "● fm-browser  DOWN", 30_000)  # the killed node turns red
                steps["node red"] = time.monotonic() - started
                colour = page.evaluate(f"""() => {{
                    const g = document.querySelector('{MAP} g[data-id="srv:fm-browser"] rect');
                    return g && g.getAttribute('stroke'); }}""")
                assert colour == "#c0392b", colour
                has_text(page, "newcomer (python3)", 30_000)  # a new subscriber appears
                steps["newcomer"] = time.monotonic() - started
                page.wait_for_timeout(1200)  # a refresh with rates, transitions settled
                page.locator(".trashlab-flowmap").first.screenshot(path=str(ARTIFACTS / "flowmap.png"))
                # the buttons go through the kernel and back: Pause, then Resume
                page.get_by_role("button", name="❚❚ Pause").click()
                page.wait_for_selector(".trashlab-flowmap[data-state='paused']", timeout=5_000)
                page.get_by_role("button", name="▶ Resume").click()
                page.wait_for_selector(".trashlab-flowmap[data-state='live']", timeout=5_000)
                steps["paused and resumed"] = time.monotonic() - started
            finally:
                page.screenshot(path=str(ARTIFACTS / "flowmap-page.png"))
            page.wait_for_function(ALL_CELLS_RAN_JS, timeout=60_000)
            assert page.evaluate(UNEXPECTED_ERRORS_JS) == []
            # stopped: the widget is replaced by a still SVG of its last state
            page.wait_for_selector(".jp-RenderedHTMLCommon svg", timeout=10_000)
            still = page.locator(".jp-RenderedHTMLCommon svg").first.inner_html()
            assert "newcomer (python3)" in still and "DOWN" in still
            steps["still picture"] = time.monotonic() - started
        finally:
            browser.close()
    assert (ARTIFACTS / "flowmap.png").stat().st_size > 10_000
    print("flowmap browser:", ", ".join(f"{k} at {v:.1f}s" for k, v in steps.items()))


def test_flow_map_in_voila(tmp_path):
    """Voilà (the notebook as an app, code hidden) shows the live map too, it updates, and Stop freezes it on its last picture."""
    import os
    import subprocess
    import sys
    import urllib.request

    from sessions import end_all, free_port, ipc_kernels

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config")}
    cmd = [sys.executable, "-m", "voila", str(ROOT / "tests" / "notebooks" / "flowmap-voila.ipynb"), "--no-browser",
           f"--port={port}", "--Voila.ip=127.0.0.1"]
    log = open(tmp_path / "voila.log", "w")
    with ipc_kernels() as kernels:  # over IPC: no TCP port of the page's kernel taken by a broker meanwhile
        proc = subprocess.Popen(cmd + kernels, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
                    break
                except urllib.error.HTTPError:
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "voila.log").read_text()[-2000:]
                    time.sleep(0.3)
            with sync_api.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                try:
                    page = browser.new_page(viewport={"width": 1100, "height": 700})
                    page.goto(f"http://127.0.0.1:{port}/", timeout=90_000)
                    has_text(page, "collector (python3)", 90_000)
                    first = page.evaluate("() => document.querySelector('.fm-title').textContent")
                    page.wait_for_function(f"() => document.querySelector('.fm-title').textContent !== {first!r}",
                                           timeout=10_000)  # it updates in place
                    page.screenshot(path=str(ARTIFACTS / "flowmap-voila.png"))
                    page.get_by_role("button", name="■ Stop").click()  # through the kernel and back: frozen, still there
                    page.wait_for_selector(".trashlab-flowmap[data-state='stopped']", timeout=10_000)
                    assert page.get_by_role("button", name="■ Stop").is_disabled()
                    assert any("collector (python3)" in t for t in page.evaluate(MAP_TEXTS_JS))
                finally:
                    browser.close()
        finally:
            end_all([proc])
            log.close()
