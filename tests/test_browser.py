"""A student's view in a real browser: JupyterLab on loopback, headless Debian chromium, run all cells.

It opens the notebook that shows the live dashboard, runs every cell the way a student would (Run All),
and checks what appears on the page: the message counter rises above zero and the plot is there. A
screenshot lands in test-artifacts/. Needs /usr/bin/chromium (tests/setup.d/20-browser.sh installs it)
and the Python ``playwright`` package; it never downloads a browser.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sessions import end_all, free_port, ipc_kernels

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: What a student sees of ``trashlab.LiveDashboard``: the counters line ("received 1,234 ...") and the plot.
RECEIVED_JS = """() => {
  for (const el of document.querySelectorAll('.widget-html-content')) {
    const m = /received ([\\d,]+)/.exec(el.textContent);
    if (m) return Number(m[1].replace(/,/g, ''));
  }
  return -1;
}"""
PLOT = ".jupyter-matplotlib-figure canvas"
#: Run All has finished: every code cell has an execution count and the kernel is idle again.
ALL_CELLS_RAN_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget, cells = w.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type === 'code' && !c.executionCount) return false;
  }
  return cells.length > 0 && w.sessionContext.session.kernel.status === 'idle';
}"""


def dashboard_notebook() -> Path:
    """The course notebook that shows ``trashlab.LiveDashboard``, else the test stand-in."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if "LiveDashboard(" in path.read_text():
            return path
    return ROOT / "tests" / "notebooks" / "live-dashboard.ipynb"


if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing: run tests/setup.d/20-browser.sh as root (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-test.txt (playwright)")


@contextlib.contextmanager
def serve_lab(notebook: Path, tmp_path: Path):
    """JupyterLab on 127.0.0.1 serving a copy of ``notebook``'s folder; yields (base URL, token)."""
    work = tmp_path / "course"  # the page autosaves: serve a copy, keep the repository's notebooks clean
    shutil.copytree(notebook.parent, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "jupyter-config")  # no personal settings leak in
    env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "lab-settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "lab-workspaces")
    news = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "official Jupyter news?" toast over the dashboard
    tracker = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"windowingMode": "none"}')  # every cell stays in the page, scrolled away or not
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "jupyter.log", "w")
    with ipc_kernels() as kernels:  # over IPC: no TCP port of a kernel taken by a broker meanwhile
        proc = subprocess.Popen(cmd + kernels, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyter.log").read_text()[-3000:])
                    time.sleep(0.3)
            yield base, token
        finally:
            end_all([proc])  # Jupyter shuts its kernels down, and trashlab stops its broker
            log.close()


@pytest.fixture
def jupyter_lab(tmp_path):
    """JupyterLab serving a copy of the dashboard notebook; yields (base URL, token, notebook name)."""
    notebook = dashboard_notebook()
    with serve_lab(notebook, tmp_path) as (base, token):
        yield base, token, notebook.name


UNEXPECTED_ERRORS_JS = """() => {
  const bad = [];
  window.jupyterapp.shell.currentWidget.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    if ((cell.model.getMetadata('tags') || []).includes('raises-exception')) return;
    for (const out of cell.model.outputs.toJSON()) {
      if (out.output_type === 'error') bad.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
    }
  });
  return bad;
}"""


def test_student_runs_all_cells_and_sees_the_live_dashboard(jupyter_lab):
    base, token, name = jupyter_lab
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-dashboard.png"
    started = time.monotonic()
    steps = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{base}/lab/tree/{name}?token={token}", timeout=60_000)
            page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell')",
                                   timeout=60_000)
            page.wait_for_function(  # the kernel is up before we press Run All
                "() => { const w = window.jupyterapp.shell.currentWidget;"
                " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
                " return k && k.status === 'idle'; }", timeout=90_000)
            steps["kernel idle"] = time.monotonic() - started
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            try:  # while the cells run: the dashboard is live (a notebook may stop it at its end)
                page.wait_for_function(f"({RECEIVED_JS})() > 0", timeout=120_000)
                steps["counter > 0"] = time.monotonic() - started
                page.wait_for_selector(PLOT, state="visible", timeout=30_000)
                first = page.evaluate(RECEIVED_JS)
                page.wait_for_function(f"({RECEIVED_JS})() > {first}", timeout=30_000)  # still live
                plot = page.locator(PLOT).first
                plot.scroll_into_view_if_needed()
                box = plot.bounding_box()
                page.wait_for_timeout(300)  # let the canvas paint the refresh that raised the counter
                received = page.evaluate(RECEIVED_JS)
            finally:
                page.screenshot(path=str(shot))
            assert box and box["width"] > 300 and box["height"] > 150, f"the plot is not visible: {box}"
            page.wait_for_function(ALL_CELLS_RAN_JS, timeout=180_000)
            steps["all cells ran"] = time.monotonic() - started
            # an error only where the notebook expects one: the exercise checks a student has not answered
            # yet are tagged raises-exception (Run All walks past them); any other error is a defect
            errors = page.evaluate(UNEXPECTED_ERRORS_JS)
            assert errors == [], errors
            # the lesson's diagram (a ```mermaid block in the first Markdown cell) renders as a picture
            diagram = page.wait_for_selector(".jp-RenderedMermaid img[src^='data:image/svg']", state="attached",
                                             timeout=30_000)
            assert diagram.evaluate("img => img.naturalWidth") > 100, "the Mermaid diagram did not render"
            page.screenshot(path=str(ARTIFACTS / "browser-notebook-end.png"))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"browser: {name}:", ", ".join(f"{k} at {v:.1f}s" for k, v in steps.items()),
          f"received {received} at the screenshot ({shot})")
