"""The public surface: a short ``trashlab.__all__`` with docstrings, real types for checkers, moved names
that warn, and an import with no side effects (docs/architecture.md "The public surface")."""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import trashlab

ROOT = Path(__file__).resolve().parent.parent
#: at most this many public names (issue 23): a surface a student can hold in their head
MOST = 35
#: names another change adds to ``__all__`` (``run_program``: a student's own sim.py as a process), counted here
RESERVED = {"run_program"}


def test_all_is_short_and_every_name_resolves_with_a_one_line_docstring():
    names = set(trashlab.__all__)
    assert len(trashlab.__all__) == len(names), f"a name is listed twice in trashlab.__all__: {trashlab.__all__}"
    assert len(names | RESERVED) <= MOST, (
        f"trashlab.__all__ has {len(names)} names (+ reserved {sorted(RESERVED - names)}), at most {MOST}: "
        "move plumbing to a submodule (trashlab/__init__.py _LAZY) and keep the old spelling warning")
    undocumented = []
    for name in sorted(names):
        value = getattr(trashlab, name)  # raises AttributeError for a name that does not resolve
        doc = inspect.getdoc(value) or ""
        first = doc.strip().splitlines()[0] if doc.strip() else ""
        if not first or len(first) > 160:
            undocumented.append(f"{name}: {first!r}")
    assert not undocumented, "public names need a one-line docstring (a first line under 160 characters):\n" + \
        "\n".join(undocumented)


def test_every_moved_name_still_resolves_and_warns_naming_its_new_spelling():
    moved = sorted(n for n in trashlab._WHERE if n not in trashlab.__all__)
    assert moved, "nothing moved? then _LAZY and __all__ disagree"
    for name in moved:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = getattr(trashlab, name)
        spelling = trashlab._new_spelling(name)
        said = [str(w.message) for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))]
        assert said and spelling in said[0], f"trashlab.{name} should warn naming {spelling}; warnings: {said}"
        module, _, attr = spelling.rpartition(".")
        owner = trashlab
        for part in module.split(".")[1:]:
            owner = getattr(owner, part)
        assert getattr(owner, attr) is value, f"{spelling} is not the object trashlab.{name} gave"


def test_the_course_uses_no_moved_name():
    """Students never see the warning: notebooks, course sources and docs use the new spellings."""
    moved = sorted((n for n in trashlab._WHERE if n not in trashlab.__all__), key=len, reverse=True)
    pattern = re.compile(r"\btrashlab\.(" + "|".join(moved) + r")\b")
    places = [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("course/source/*/*.ipynb"), *ROOT.glob("docs/*.md"),
              ROOT / "README.md", ROOT / "INSTRUCTORS.md", *ROOT.glob("benchmarks/*.py"),
              *ROOT.glob("trashlab_instructor/*.py")]
    found = [f"{p.relative_to(ROOT)}: trashlab.{m.group(1)} -> {trashlab._new_spelling(m.group(1))}"
             for p in places for m in pattern.finditer(p.read_text(encoding="utf-8"))]
    assert not found, "old spellings (they warn in a student's notebook):\n" + "\n".join(found)


def test_type_checkers_see_real_types_through_the_facade(tmp_path):
    """mypy sees ``trashlab.Broker`` as the class (not Any), although names load lazily at run time."""
    mypy = Path(sys.executable).with_name("mypy")
    if not mypy.exists():
        pytest.fail("mypy is missing: pip install -r requirements-test.txt")
    snippet = tmp_path / "student.py"
    snippet.write_text(textwrap.dedent("""
        import trashlab
        reveal_type(trashlab.Broker)
        reveal_type(trashlab.Broker("iot-msg").start())
        reveal_type(trashlab.Collector)
        reveal_type(trashlab.query_levels)
        reveal_type(trashlab.plots.counts_bar)
        reveal_type(trashlab.TrashlabError)
    """))
    out = subprocess.run([str(mypy), "--no-error-summary", "--follow-imports=silent", "--ignore-missing-imports",
                          "--cache-dir", str(ROOT / ".mypy_cache" / "surface"), str(snippet)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    revealed = re.findall(r'Revealed type is "(.*)"', out.stdout)
    assert len(revealed) == 6, f"mypy said:\n{out.stdout}{out.stderr}"
    expected = ["trashlab.servers.broker.Broker", "trashlab.servers.broker.Broker", "trashlab.services.collector.Collector",
                "def ", "def ", "trashlab.errors.TrashlabError"]
    for shown, want in zip(revealed, expected):
        assert want in shown and shown != "Any", f"mypy revealed {shown!r}, expected {want!r}:\n{out.stdout}"


@pytest.mark.nats  # a Python process of its own (a quick test starts none); no server
def test_import_trashlab_loads_nothing_heavy_and_starts_nothing():
    script = textwrap.dedent("""
        import os, sys, threading
        import trashlab
        heavy = sorted(m for m in ("pandas", "matplotlib", "IPython", "numpy", "nats", "ipywidgets") if m in sys.modules)
        threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else threading.active_count()
        import psutil
        kids = psutil.Process().children()
        print(heavy, threads, len(kids))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "1", "0"], \
        f"import trashlab should load no pandas/matplotlib/IPython/nats, run 1 thread, start 0 processes; saw {out.stdout}"


@pytest.mark.nats  # a real kernel
def test_a_kernel_is_set_up_at_first_use_not_at_import():
    """``import trashlab`` changes nothing in a kernel; the first public name a cell uses sets it up, once."""
    import shutil

    from kernels import Kernel

    k = Kernel.start()
    try:
        handlers = "sum(type(h).__name__ == '_CellStderr' for h in logging.getLogger('trashlab').handlers)"
        first = k.ok(f"import logging, trashlab\nprint('after import:', {handlers})").text
        assert "after import: 0" in first, f"import trashlab set the kernel up (a side effect): {first!r}"
        used = k.ok(f"trashlab.Broker; trashlab.checks; trashlab.notebook.kernel.setup_kernel()\n"
                    f"print('after use:', {handlers})").text
        assert "after use: 1" in used, f"the first use should set the kernel up exactly once: {used!r}"
        reply = k.run("raise trashlab.errors.BadArgument('one line please')")
        assert reply.status == "error" and len(reply.errors) == 1, reply
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in reply.errors[0][2]]
        assert lines == ["BadArgument: one line please"], f"a trashlab error shows as one line: {reply.errors[0]}"
    finally:
        k.shutdown()
        shutil.rmtree(k.state, ignore_errors=True)


#: docs/architecture.md "One start/stop convention": a process or a view has plain verbs, a NATS client awaited ones
PLAIN = ["trashlab.servers.broker.Broker", "trashlab.servers.cluster.Cluster", "trashlab.servers.accounts.AccountsBroker",
         "trashlab.servers.classroom.ClassHub", "trashlab.notebook.dashboard.LiveDashboard",
         "trashlab.notebook.flowmap.FlowMap"]
AWAITED = ["trashlab.services.simulator.Simulator", "trashlab.services.collector.Collector",
           "trashlab.services.report.ReportService", "trashlab.servers.chaos.SlowConsumer",
           "trashlab.notebook.classview.ClassWatch", "trashlab.notebook.classview.ClassView"]
SERVERS = PLAIN[:4]


def _component(path: str) -> type:
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("path", PLAIN + AWAITED)
def test_every_component_follows_one_start_stop_convention(path):
    cls = _component(path)
    awaited = path in AWAITED
    for verb in ("start", "stop"):
        method = getattr(cls, verb)
        assert inspect.iscoroutinefunction(method) == awaited, \
            f"{path}.{verb}() should be {'awaited' if awaited else 'a plain call'} (docs/architecture.md)"
    stop_returns = inspect.signature(cls.stop).return_annotation
    assert stop_returns in (None, "None"), f"{path}.stop() should return None, it says {stop_returns!r}"
    start_returns = str(inspect.signature(cls.start).return_annotation).strip("'\"")
    assert start_returns in {c.__name__ for c in cls.__mro__} | {"C", "V", "S"}, f"{path}.start() should return the component: {start_returns!r}"
    if path in SERVERS:
        assert inspect.iscoroutinefunction(cls.astart) and inspect.iscoroutinefunction(cls.astop), \
            f"{path} needs await astart()/astop() that do not block the event loop"
    from trashlab.services.spawn import ServiceProcess

    assert inspect.signature(ServiceProcess.stop).return_annotation in (None, "None"), "ServiceProcess.stop() returns None"


@pytest.mark.nats
async def test_a_server_stops_without_blocking_the_loop():
    broker = await trashlab.Broker().astart()
    assert broker.running
    ticks = []

    async def tick():
        while True:
            ticks.append(1)
            await asyncio.sleep(0.01)

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        assert await broker.astop() is None
    finally:
        ticker.cancel()
    assert not broker.running, "astop() returned while the server still ran"
    assert ticks, "the event loop did not run while the server stopped"
    async with trashlab.Broker() as again:
        assert again.running
    assert not again.running


@pytest.mark.nats  # a Python process of its own: nothing imported yet but trashlab
def test_every_new_spelling_works_right_after_import_trashlab():
    """``trashlab.services.report.discover`` needs no ``import trashlab.services.report`` first."""
    spellings = sorted(trashlab._new_spelling(n) for n in trashlab._WHERE if n not in trashlab.__all__)
    script = "import trashlab\n" + "".join(f"{s}\n" for s in spellings) + "print('all', len(%r))" % spellings
    out = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", script],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and "all" in out.stdout, f"a new spelling fails after a bare import trashlab:\n{out.stderr}"
