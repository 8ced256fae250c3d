"""The course notebooks run unchanged in a joined class, and the instructor sees what they publish.

The student joins once (``trashlab.classroom.join(line)``, remembered in the class file the kernel inherits);
then the instructor version of a course notebook runs top to bottom in a fresh kernel exactly as in
tests/test_notebooks.py (every exercise passing, no traceback), while the instructor, subscribed to
``class.>`` on the hub, counts the readings that arrive from that student's account.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import nbformat
import pytest

import trashlab
from conftest import unique
from test_notebooks import ROOT, _client, _kernel_env, _run_cells, kernel_dir  # noqa: F401
from trashlab.servers.classroom import ClassHub, join, leave

NOTEBOOKS = [ROOT / "course" / "source" / n / f"{n}.ipynb" for n in ("03-simulator", "08-multiple-subscribers")]


class _Teacher(threading.Thread):
    """The instructor's subscription to ``class.>``, on a loop of its own while the notebook runs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.subjects = url, {}
        self.ready, self._done = threading.Event(), None

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._done = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        nc = await trashlab.servers.connection.connect(self.url, name="teacher")

        async def cb(msg):
            self.subjects[msg.subject] = self.subjects.get(msg.subject, 0) + 1

        await nc.subscribe("class.>", cb=cb)
        await nc.flush()
        self.ready.set()
        await self._done.wait()
        await nc.close()

    def finish(self) -> dict:
        self.loop.call_soon_threadsafe(self._done.set)
        self.join(10)
        return self.subjects


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_course_notebook_runs_unchanged_in_a_joined_class(path: Path, kernel_dir: Path, tmp_path, monkeypatch):  # noqa: F811
    """The instructor version runs top to bottom in a joined class, every exercise passing; the instructor
    receives its readings and its checks' results (live progress), nothing else."""
    hub = ClassHub(["s01", "s02"], name=unique("hub")).start()
    monkeypatch.setenv("TRASHLAB_CLASS_FILE", str(tmp_path / "class.json"))
    teacher = _Teacher(hub.instructor_url)
    teacher.start()
    try:
        assert teacher.ready.wait(10)
        join(hub.join_line("s01"))
        nb = nbformat.read(path, as_version=4)
        state = tmp_path / "state"
        state.mkdir()
        work = tmp_path / "work"  # the notebook's %%writefile sim.py lands here, not in the checkout
        work.mkdir()
        client = _client(nb, kernel_dir, work)
        with client.setup_kernel(env=_kernel_env(str(state))):
            _, problems = _run_cells(client, f"{path.name} (joined class)")
        problems += [f"cell {i}: exercise failed: {out.get('evalue')}" for i, c in enumerate(client.nb.cells)
                     if c.cell_type == "code" and c.metadata.get("nbgrader")
                     for out in c.outputs if out.get("output_type") == "error"]
        assert not problems, "\n".join(problems)
    finally:
        seen = teacher.finish()
        leave()
        hub.stop()
    assert seen.get("class.s01.trash-level", 0) > 0, f"the instructor saw nothing of the notebook: {seen}"
    assert set(seen) == {"class.s01.trash-level", "class.s01.trash-progress"}, \
        f"expected s01's readings and their exercise checks (progress), and nothing else: {seen}"
    print(f"{path.name} in a joined class: the instructor received {seen['class.s01.trash-level']} readings "
          f"and {seen['class.s01.trash-progress']} checks")
