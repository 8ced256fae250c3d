"""Every notebook in notebooks/ runs top to bottom headless, then again in the same kernel with each
cell run twice in a row (a student re-running cells: every cell must survive being run again at once).

notebooks/ holds the student versions, generated from the instructor versions in course/source (with
solutions, INSTRUCTORS.md): unanswered exercises fail there in cells tagged ``raises-exception``, and the
walkthrough goes on. The instructor versions are run by nbgrader's autograde of the reference solutions
(tests/test_grading.py: every exercise passes, no traceback); an instructor version without exercises
must equal its student version, which runs here.

Each notebook runs ONCE (one kernel, two passes): the course is the expensive tier, see docs/testing.md.
Each notebook gets a fresh kernel running THIS interpreter (a temporary kernelspec pointing at
``sys.executable``), with this checkout first on ``PYTHONPATH`` and its own trashlab state folder.
A cell may fail only when tagged ``raises-exception``; no output may show a traceback (checked after
every execution of a cell, so the first of two runs is checked too). The time of each pass is printed
at the end of the pytest run with the whole course's headless time (a figure: under ``-n`` the
notebooks share the cores with other tests, so run this file alone for the course's own time).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

from sessions import ipc_kernel_manager

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: the instructor versions (solutions), the source notebooks/ is generated from
INSTRUCTOR = sorted((ROOT / "course" / "source").glob("*/*.ipynb"))
CELL_TIMEOUT = 90
KERNEL = "trashlab-this-python"
FORBIDDEN = ("Traceback", "Task exception was never retrieved", "Exception ignored in")
#: Pass 2 runs each cell twice in a row (TRASHLAB_RERUN_CELLS=0: once, i.e. plain Run All again).
RERUN_EACH_CELL = os.environ.get("TRASHLAB_RERUN_CELLS", "1") != "0"
@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    """A kernelspec folder whose only kernel runs this very interpreter (pytest removes old ones)."""
    base = tmp_path_factory.mktemp("kernels")
    spec = base / KERNEL
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "trashlab tests", "language": "python"}))
    return base


def _client(nb, kernel_dir: Path, cwd: Path) -> NotebookClient:
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name=KERNEL, allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}}, shutdown_kernel="graceful")
    client.km = ipc_kernel_manager(KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    return client


def _kernel_env(state: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["TRASHLAB_STATE_DIR"] = state
    env.pop("NATS_URL", None)
    return env


def _output_text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return "\n".join(output.get("traceback", [])) + output.get("evalue", "")
    return "\n".join(str(v) for k, v in output.get("data", {}).items() if k.startswith("text/"))


def output_problems(cell, label: str) -> "list[str]":
    """What is wrong with one executed cell's outputs: an error in a cell not tagged ``raises-exception``,
    or a traceback (or an unretrieved task exception) shown in any output."""
    found = []
    tagged = "raises-exception" in cell.metadata.get("tags", [])
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error" and not tagged:
            found.append(f"{label}: {out.get('ename')}: {out.get('evalue')}")
        text = _output_text(out)
        for bad in FORBIDDEN:
            if bad in text:
                found.append(f"{label}: output shows {bad!r}: {text[:300]!r}")
    return found


def _left_running(state: Path) -> "list[str]":
    left = []
    for record in state.glob("*.json"):
        rec = json.loads(record.read_text())
        try:
            alive = abs(psutil.Process(rec["pid"]).create_time() - rec["create_time"]) < 0.01
        except (psutil.Error, TypeError, KeyError):
            alive = False
        if alive:
            left.append(f"{rec.get('kind')} {rec.get('name')} (pid {rec['pid']})")
    return left


def _run_cells(client: NotebookClient, label: str, times: int = 1) -> "tuple[float, list[str]]":
    """Every cell in order, each ``times`` times in a row; returns (seconds, problems after each execution)."""
    client.reset_execution_trackers()
    problems: "list[str]" = []
    started = time.monotonic()
    for index, cell in enumerate(client.nb.cells):
        for run in range(times if cell.cell_type == "code" else 1):
            where = f"{label}: cell {index}" + (f" (run {run + 1} of {times})" if times > 1 else "")
            try:
                client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except CellTimeoutError:
                pytest.fail(f"{where} did not finish within {CELL_TIMEOUT} s:\n{cell.source}")
            except CellExecutionError as e:
                pytest.fail(f"{where} failed (tag it raises-exception if that is the point):\n"
                            f"{cell.source}\n{str(e)[-1500:]}")
            problems += output_problems(cell, where) if cell.cell_type == "code" else []
    return time.monotonic() - started, problems


def _wait_stopped(state: Path, name: str) -> None:
    deadline = time.monotonic() + 10
    while _left_running(state) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _left_running(state), f"{name} left processes running after its kernel stopped: {_left_running(state)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_then_reruns_in_one_kernel(path: Path, kernel_dir: Path, tmp_path: Path, figure):
    """Top to bottom in a fresh kernel, then again in the same kernel with each cell run twice in a row:
    no errors outside ``raises-exception`` cells, no tracebacks, nothing left running."""
    nb = nbformat.read(path, as_version=4)
    state = tmp_path / "state"
    state.mkdir()
    work = tmp_path / "work"  # the kernel's folder, as notebooks/ is a student's: %%writefile sim.py lands here
    work.mkdir()
    client = _client(nb, kernel_dir, work)
    started = time.monotonic()
    again = 2 if RERUN_EACH_CELL else 1
    with client.setup_kernel(env=_kernel_env(str(state))):
        first, problems = _run_cells(client, f"{path.name} (fresh kernel)")
        kernel_start = time.monotonic() - started - first
        second, more = _run_cells(client, f"{path.name} (same kernel, again)", times=again)
    figure(f"notebooks: headless execution time (goal: the whole course in at most 120 s on {os.cpu_count()} cores)",
           f"{path.stem:<32} fresh kernel {first + kernel_start:6.1f} s   again, same kernel"
           f"{', each cell twice' if RERUN_EACH_CELL else ''} {second:6.1f} s", total=first + kernel_start)
    assert not problems + more, "\n".join(problems + more)
    _wait_stopped(state, path.name)


@pytest.mark.quick
def test_the_course_notebooks_are_there():
    """Each lab section has its notebook, numbered in the lab's order."""
    course = {"01-private-network", "02-nats-broker", "03-simulator", "04-report-service", "06-cleanup",
              "07-multiple-simulators", "08-multiple-subscribers", "09-capstone"}
    missing = course - {p.stem for p in NOTEBOOKS}
    assert not missing, f"missing notebooks: {sorted(missing)}"


def _graded(nb) -> bool:
    return any(c.metadata.get("nbgrader", {}).get("solution") or c.metadata.get("nbgrader", {}).get("grade")
               for c in nb.cells)


@pytest.mark.quick
@pytest.mark.parametrize("path", INSTRUCTOR, ids=[p.stem for p in INSTRUCTOR])
def test_instructor_version_is_run_by_autograde_or_is_the_student_version(path: Path):
    """No separate instructor run: with exercises, test_grading autogrades the reference solutions (the
    instructor version, every check passing); without, its code is the student version's, run above."""
    nb = nbformat.read(path, as_version=4)
    if _graded(nb):
        return  # tests/test_grading.py::test_reference_solutions_get_full_marks runs it
    student = nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
    code = [(c.source, c.metadata.get("tags", [])) for c in nb.cells if c.cell_type == "code"]
    assert code == [(c.source, c.metadata.get("tags", [])) for c in student.cells if c.cell_type == "code"], \
        f"{path.name} has no exercises but differs from notebooks/{path.name}: regenerate the student version"


@pytest.mark.quick
def test_there_are_instructor_versions():
    """Every student notebook has its instructor version (the generated student version is checked in test_grading)."""
    assert {p.stem for p in INSTRUCTOR} == {p.stem for p in NOTEBOOKS}


@pytest.mark.quick
@pytest.mark.parametrize("path", NOTEBOOKS + INSTRUCTOR,
                         ids=[p.stem for p in NOTEBOOKS] + [f"instructor-{p.stem}" for p in INSTRUCTOR])
def test_committed_notebook_is_stripped(path: Path):
    """Notebooks are committed without outputs or execution counts (clean diffs, fresh start)."""
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts: clear them before committing"


def test_kernel_is_this_python(kernel_dir: Path, tmp_path: Path):
    """The kernel runs this interpreter and imports trashlab from this checkout."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import sys, trashlab; print(sys.prefix); print(trashlab.__file__)"))
    client = _client(nb, kernel_dir, ROOT)
    state = str(tmp_path)
    with client.setup_kernel(env=_kernel_env(state)):
        _run_cells(client, "kernel check")
    prefix, module = nb.cells[0].outputs[0]["text"].split()
    assert prefix == sys.prefix
    assert Path(module).resolve() == ROOT / "trashlab" / "__init__.py"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_cleanup_notebook_stops_what_another_notebook_started(kernel_dir: Path, tmp_path: Path):
    """06-cleanup, run in its own kernel, stops a broker a sibling kernel (another notebook) left running."""
    cleanup = sorted((ROOT / "notebooks").glob("06-*.ipynb"))
    if not cleanup:
        pytest.skip("no 06 clean-up notebook")
    state = str(tmp_path)
    other_nb = nbformat.v4.new_notebook()
    other_nb.cells.append(nbformat.v4.new_code_cell(
        "import trashlab\nb = trashlab.Broker('left-running').start()\nprint(b.pid)"))
    other = _client(other_nb, kernel_dir, ROOT)
    with other.setup_kernel(env=_kernel_env(state)):
        _run_cells(other, "a notebook that leaves its broker running")
        pid = int(other_nb.cells[0].outputs[0]["text"])
        nb = nbformat.read(cleanup[0], as_version=4)
        work = tmp_path / "work"  # its lab5/ (programs, git repository) lands there, not in the checkout
        work.mkdir()
        client = _client(nb, kernel_dir, work)
        with client.setup_kernel(env=_kernel_env(state)):
            _run_cells(client, cleanup[0].name)
        deadline = time.monotonic() + 10
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(pid), "the clean-up notebook left another notebook's broker running"
    shown = "\n".join(_output_text(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "left-running" in shown, "the clean-up notebook did not list the other notebook's broker"
