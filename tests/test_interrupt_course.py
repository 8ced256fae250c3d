"""A student presses ■ in every cell of a course notebook, then runs that cell again: the lab keeps working.

Each code cell of the instructor version (solutions in place) is sent to a real kernel; if it is still
running a moment later, the kernel is interrupted the way JupyterLab's ■ does it. The interrupted cell
must show one line (no traceback), and running the same cell again must then work as if nothing had
happened. Every notebook is taken (a cell that finishes at once is not interrupted, only run).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kernels import Kernel, running_recorded

pytestmark = pytest.mark.course  # runs course notebooks (tests/conftest.py tiers)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(d.name for d in (ROOT / "course" / "source").iterdir() if d.is_dir())  # every notebook
#: notebooks none of whose cells runs longer than PRESS_AFTER (nothing to interrupt: each cell is only run)
NOTHING_TO_INTERRUPT = {"02-nats-broker"}
#: how long a cell runs before ■ is pressed
PRESS_AFTER = 0.3


def _cells(stem: str) -> "list[tuple[str, bool]]":
    nb = json.loads((ROOT / "course" / "source" / stem / f"{stem}.ipynb").read_text())
    return [("".join(c["source"]), "raises-exception" in c.get("metadata", {}).get("tags", []))
            for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_interrupt_any_cell_then_run_it_again(stem, figure, tmp_path):
    k = Kernel.start(cwd=str(tmp_path))  # the notebook's %%writefile sim.py lands there, not in the checkout
    pressed: "list[str]" = []  # "cell N: error" (interrupted) or "cell N: ok" (its code ended first: nothing to stop)
    try:
        k.ok("import trashlab")  # ■ before trashlab is imported at all is plain Jupyter (a traceback)
        for index, (source, may_fail) in enumerate(_cells(stem)):
            msg_id = k.submit(source)
            if k.running_after(msg_id, PRESS_AFTER):
                k.interrupt()
                reply = k.result(msg_id, timeout=60)
                pressed.append(f"cell {index}: {reply.status}")
                if reply.status == "error":
                    for _ename, _, lines in reply.errors:
                        assert len(lines) == 1, f"{stem} cell {index} interrupted shows a traceback:\n{reply.text}"
                    assert "Traceback" not in reply.text, f"{stem} cell {index}: {reply.text}"
            else:
                k.result(msg_id)
            # the lab's brokers and services; a student's program (run_program) ends by itself when its count is done
            lab = {key: pid for key, pid in running_recorded(k.state).items() if not key.startswith("program:")}
            again = k.run(source, timeout=90)  # the student runs the cell again
            if not may_fail:
                assert again.status == "ok", f"{stem} cell {index} failed after an interrupt:\n{source}\n{again.text}"
            assert "Traceback" not in again.text, f"{stem} cell {index}:\n{again.text}"
            assert set(lab) <= set(running_recorded(k.state)) or "stop" in source, \
                f"{stem} cell {index}: a process of the lab stopped: {lab} -> {running_recorded(k.state)}"
        # ■ pressed in at least one cell (the test is not empty). Whether the cell then shows "Interrupted" or
        # ends normally depends on the moment: an Interrupt that lands after the cell's own code ended is
        # dropped on purpose (docs/student-proof.md); both must leave the lab working, checked above.
        assert pressed or stem in NOTHING_TO_INTERRUPT, f"no cell of {stem} ran long enough to press ■"
        figure("interrupt every cell: where ■ was pressed, and how the cell ended",
               f"{stem}: {', '.join(pressed) or 'every cell finished within ' + str(PRESS_AFTER) + ' s'}")
    finally:
        k.shutdown()
        shutil.rmtree(k.state, ignore_errors=True)
