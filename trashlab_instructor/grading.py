"""Grading with nbgrader: instructor source → student notebooks → autograded scores → CSV.

One source of truth: ``course/source/<name>/<name>.ipynb`` (the instructor version, with
solutions). Each notebook is its own nbgrader assignment, so a submission is one notebook and the
grades come per part of the lab. The student version in ``notebooks/`` is generated, never edited::

    python -m trashlab_instructor generate            # course/source → course/release → notebooks/
    python -m trashlab_instructor generate --check    # exit 1 if notebooks/ is not what generation gives
    python -m trashlab_instructor autograde DIR       # DIR/<student>/<name>.ipynb → scores (time per submission)
    python -m trashlab_instructor autograde DIR -j 4  # four submissions at once (default: the cores, at most 4)
    python -m trashlab_instructor autograde DIR --no-sandbox  # no bubblewrap here: grade with your own rights
    python -m trashlab_instructor feedback            # course/feedback/<student>/<name>/<name>.html
    python -m trashlab_instructor export grades.csv   # one row per student and assignment
    python -m trashlab_instructor gradebook           # gradebook.csv: one row per student (Canvas, Moodle)
    python -m trashlab_instructor formgrader          # nbgrader's formgrader on 127.0.0.1:8867 (hand grading)
    python -m trashlab_instructor disable-extensions  # hide nbgrader's JupyterLab parts (student images)
    python -m trashlab_instructor rubrics [NAME]      # rubrics of written answers, answers of ungraded questions
    python -m trashlab_instructor rubrics --refresh   # rubric cells of the autograded notebooks, from course/rubrics

Every step is nbgrader's own (its Python API, imported once per process: nbgrader takes seconds to
import, so each submission's time is its grading alone), configured by ``nbgrader_config.py`` at the
repository root; this module only adds the copy to ``notebooks/``, the drift check, the submissions
folder, grading several submissions at once (each worker process grades one at a time; their
notebooks start their own brokers on free ports, so they never meet), and two defences against the
submission itself:

- every kernel nbgrader starts, and every judge, runs in a bubblewrap sandbox (``sandbox.py``): it cannot
  write the package, the course folder, the gradebook or the instructor's home;
- every test cell is judged again in a fresh process no notebook cell reaches (``judge.py``), at the same
  time as nbgrader runs the notebook; a test cell keeps its points only when both passed it.
nbgrader is an instructor/test tool (requirements-test.txt), imported only here and only when used.
"""

from __future__ import annotations

import argparse
import atexit
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from trashlab.errors import BadArgument, TrashlabError

from . import judge as _judge
from . import sandbox as _sandbox

CONFIG = "nbgrader_config.py"
#: Folders and files of a course root that are working state, never part of a release or the repo.
IGNORED = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc")
#: nbgrader's JupyterLab extension and server extensions (what students must not see).
LABEXTENSION = "@jupyter/nbgrader"
SERVER_EXTENSIONS = ["nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.validate_assignment",
                     "nbgrader.server_extensions.assignment_list", "nbgrader.server_extensions.course_list"]


class GradingError(TrashlabError):
    """An nbgrader step failed or the course folders are not as expected."""


def find_root(start: Optional[Path] = None) -> Path:
    """The repository root: the nearest folder (from ``start`` or the cwd upwards) holding nbgrader_config.py."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG).is_file():
            return folder
    package_parent = Path(__file__).resolve().parent.parent
    if (package_parent / CONFIG).is_file():
        return package_parent
    raise GradingError(f"no {CONFIG} in {here} or above: run this from the trashlab repository")


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    # nbgrader runs `alembic` from PATH: make this interpreter's scripts folder come first.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def nbgrader(args: Sequence[str], root: Path) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` from the repository root; raise GradingError with its log if it fails."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    proc = subprocess.run(cmd, cwd=root, env=_env(), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise GradingError(f"`nbgrader {' '.join(args)}` failed (exit {proc.returncode}):\n{tail}")
    return proc


_apis: Dict[Path, object] = {}


def api(root: Path):
    """nbgrader's Python API for the course at ``root`` (one per process: nbgrader takes seconds to import)."""
    root = Path(root).resolve()
    if root not in _apis:
        os.environ["PATH"] = _env()["PATH"]  # the gradebook runs `alembic` from PATH
        warnings.filterwarnings("ignore", module="nbgrader")  # SQLAlchemy session warnings inside nbgrader
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config.loader import PyFileConfigLoader

        config = PyFileConfigLoader(CONFIG, path=str(root)).load_config()
        _kernels_over_ipc(config)
        _apis[root] = NbGraderAPI(CourseDirectory(config=config), config=config)
    return _apis[root]


#: Assignments that do not count in the total (the notebook's first cell says "optional").
OPTIONAL = ("05b-jetstream",)
#: The wide CSV's columns before and after the assignments (Canvas's names for who the row is; see INSTRUCTORS.md).
WHO = ("Student", "SIS User ID", "SIS Login ID", "Section")
TOTAL = "Final Points"
AWAITING = "Awaiting hand grading"


def _kernels_over_ipc(config) -> None:
    """The kernels nbgrader starts talk over IPC sockets in a folder of this process (POSIX): nothing listens on
    TCP, no port is picked free then bound later (parallel graders could collide), and ipykernel 7 no longer
    prints "Kernel is running over TCP without encryption" for every submission."""
    if os.name != "posix":
        return  # Windows has no IPC transport in jupyter_client: TCP on loopback, with ipykernel's warning
    folder = tempfile.mkdtemp(prefix="trashlab-kernels-")  # short: a socket path has ~100 characters at most
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = os.path.join(folder, "kernel")


def _run(result: dict, what: str) -> dict:
    if not result.get("success"):
        tail = "\n".join(str(result.get("log", "")).strip().splitlines()[-25:])
        raise GradingError(f"nbgrader {what} failed: {result.get('error') or ''}\n{tail}")
    return result


def assignments(root: Path) -> List[str]:
    """Assignment names: the folders in course/source (each holds <name>.ipynb)."""
    source = root / "course" / "source"
    return sorted(p.name for p in source.iterdir() if p.is_dir() and (p / f"{p.name}.ipynb").is_file()) \
        if source.is_dir() else []


def _release_files(release: Path) -> Dict[str, Path]:
    files: Dict[str, Path] = {}
    for assignment in sorted(p for p in release.iterdir() if p.is_dir()):
        for f in sorted(assignment.rglob("*")):
            if f.is_file() and ".ipynb_checkpoints" not in f.parts:
                rel = f.relative_to(assignment).as_posix()
                if rel in files:
                    raise GradingError(f"{rel} exists in two assignments ({files[rel].parent.name} and "
                                       f"{assignment.name}): notebooks/ is flat, rename one")
                files[rel] = f
    return files


def generate_release(root: Path) -> Path:
    """``nbgrader generate_assignment`` for every assignment; returns course/release."""
    if not assignments(root):
        raise GradingError(f"no course/source/<name>/<name>.ipynb under {root}")
    for name in assignments(root):
        _run(api(root).generate_assignment(name, force=True, create=True), f"generate_assignment {name}")
    return root / "course" / "release"


def differences(release: Path, notebooks: Path) -> List[str]:
    """What differs between a release and a notebooks/ folder (empty when identical)."""
    wanted = _release_files(release)
    problems = []
    for rel, src in wanted.items():
        have = notebooks / rel
        if not have.is_file():
            problems.append(f"missing: notebooks/{rel}")
        elif not filecmp.cmp(src, have, shallow=False):
            problems.append(f"differs: notebooks/{rel}")
    if notebooks.is_dir():
        for nb in sorted(notebooks.glob("*.ipynb")):
            if nb.name not in wanted:
                problems.append(f"not generated: notebooks/{nb.name} (its source belongs in course/source/"
                                f"{nb.stem}/{nb.name})")
    return problems


def generate(root: Optional[Path] = None) -> List[str]:
    """Regenerate notebooks/ from course/source; return the notebooks/ files written or removed."""
    root = find_root(root)
    release = generate_release(root)
    notebooks = root / "notebooks"
    notebooks.mkdir(exist_ok=True)
    wanted = _release_files(release)
    changed = []
    for rel, src in wanted.items():
        dest = notebooks / rel
        if not dest.is_file() or not filecmp.cmp(src, dest, shallow=False):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            changed.append(f"wrote notebooks/{rel}")
    for nb in sorted(notebooks.glob("*.ipynb")):
        if nb.name not in wanted:
            nb.unlink()
            changed.append(f"removed notebooks/{nb.name} (no source)")
    return changed


def check(root: Optional[Path] = None) -> List[str]:
    """Generate into a scratch copy of the course and compare with notebooks/; return the differences."""
    root = find_root(root)
    with tempfile.TemporaryDirectory(prefix="trashlab-generate-") as tmp:
        scratch = Path(tmp)
        shutil.copy2(root / CONFIG, scratch / CONFIG)
        shutil.copytree(root / "course" / "source", scratch / "course" / "source", ignore=IGNORED)
        release = generate_release(scratch)
        return differences(release, root / "notebooks")


def collect(submissions: Path, root: Path) -> List[tuple]:
    """Copy DIR/<student>/<name>.ipynb (or DIR/<student>/<name>/<name>.ipynb) into course/submitted."""
    known = set(assignments(root))
    found = []
    if not submissions.is_dir():
        raise BadArgument(f"{submissions} is not a folder: give one holding a folder per student")
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir()):
        student = student_dir.name
        for nb in sorted(student_dir.rglob("*.ipynb")):
            if ".ipynb_checkpoints" in nb.parts:
                continue
            name = nb.stem
            if name not in known:
                print(f"skipped {nb}: no assignment called {name!r} in course/source", file=sys.stderr)
                continue
            dest = root / "course" / "submitted" / student / name
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            shutil.copyfile(nb, dest / nb.name)
            found.append((student, name))
    if not found:
        raise BadArgument(f"no submissions in {submissions}: expected {submissions}/<student>/<name>.ipynb "
                          f"with <name> one of {sorted(known)}")
    return found


#: Submissions graded at once by default: each runs its notebook in its own kernel, and most of a
#: notebook's time is waiting (publish intervals, reconnects), so a few share two cores well.
DEFAULT_JOBS = max(1, min(4, os.cpu_count() or 1))


def autograde(submissions: Path, root: Optional[Path] = None, jobs: int = 1, sandbox: bool = True) -> List[dict]:
    """Autograde every submission in a folder, ``jobs`` at a time, each sandboxed (unless ``sandbox=False``) and
    each test cell judged again outside the kernel; print and return student, assignment, score, max, seconds
    and the judge's verdicts (in the folder's order)."""
    if not isinstance(jobs, int) or jobs < 1:
        raise BadArgument(f"jobs={jobs!r}: give how many submissions to grade at once (1 or more)")
    _sandbox.require(sandbox)
    root = find_root(root)
    if sandbox and "trashlab-kernelspec-" not in os.environ.get("JUPYTER_PATH", ""):
        # nbgrader's kernels (here and in the workers, which inherit the environment) start sandboxed
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            p for p in (str(_sandbox.kernel_spec_folder()), os.environ.get("JUPYTER_PATH")) if p)
    if not (root / "course" / "gradebook.db").is_file():
        generate_release(root)  # the gradebook learns the assignments (and hidden tests) from generation
    found = collect(Path(submissions), root)
    with api(root).gradebook as gb:  # students first: two graders must not both create the same one
        for student in sorted({student for student, _ in found}):
            gb.update_or_create_student(student)
    if jobs == 1 or len(found) == 1:
        return [_report(_autograde_one(root, student, name, sandbox)) for student, name in found]
    # Each worker is a fresh interpreter with its own nbgrader (spawn: nothing of this process's
    # threads, kernels or open gradebook is inherited); the gradebook is SQLite, which serialises
    # the short writes. The longest notebooks start first, so the last one does not run alone.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    def cost(item: tuple) -> int:
        return -(root / "course" / "submitted" / item[0] / item[1] / f"{item[1]}.ipynb").stat().st_size

    done: Dict[tuple, dict] = {}
    with ProcessPoolExecutor(max_workers=min(jobs, len(found)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_autograde_one, root, student, name, sandbox) for student, name in sorted(found, key=cost)]
        for future in as_completed(futures):
            result = _report(future.result())
            done[(result["student"], result["assignment"])] = result
    return [done[item] for item in found]


def _autograde_one(root: Path, student: str, name: str, sandbox: bool = True) -> dict:
    """``nbgrader autograde NAME --student STUDENT`` in this process, and meanwhile the judge on every test cell;
    a test cell keeps its points only when the judge passed it too. Its score, time and the judge's verdicts."""
    import threading

    started = time.monotonic()
    import nbformat

    source = nbformat.read(root / "course" / "source" / name / f"{name}.ipynb", as_version=4)
    submitted = nbformat.read(root / "course" / "submitted" / student / name / f"{name}.ipynb", as_version=4)
    jobs = _judge.plan(source, submitted)
    verdicts: Dict[str, "_judge.Verdict"] = {}
    judging = threading.Thread(target=lambda: verdicts.update(_judge.judge_all(jobs, sandbox)), daemon=True)
    judging.start()
    for attempt in (1, 2):
        result = api(root).autograde(name, student, force=True, create=False)
        # a gradebook write that waited too long for another grader's: grade it again, once
        if result.get("success") or attempt == 2 or "database is locked" not in str(result.get("log", "")):
            break
    failed_run = _notebook_failed(result)
    if failed_run:
        result = _autograde_as_unanswered(root, student, name)
    _run(result, f"autograde {name} --student {student}")
    judging.join()
    missing = [job.test_id for job in jobs if job.test_id not in verdicts]
    if missing:
        raise GradingError(f"the judge gave no verdict for {student}/{name} {missing}")
    if failed_run:
        verdicts = {k: _judge.Verdict(k, v.points, False, failed_run, v.output, v.seconds) for k, v in verdicts.items()}
    _apply_verdicts(root, student, name, verdicts)
    seconds = time.monotonic() - started
    score, max_score = _score(root, student, name)
    return {"student": student, "assignment": name, "score": score, "max_score": max_score, "seconds": seconds,
            "judged": {k: {"passed": v.passed, "why": v.why, "seconds": v.seconds} for k, v in verdicts.items()}}


#: What nbgrader's log says when the submission itself stopped the run (its kernel died, a cell never ended).
_NOTEBOOK_FAULTS = ("DeadKernelError", "Kernel died", "CellTimeoutError")


def _notebook_failed(result: dict) -> str:
    """Why nbgrader could not run the submission to the end because of the submission (empty: it could)."""
    if result.get("success"):
        return ""
    log = str(result.get("log", "")) + str(result.get("error", ""))
    fault = next((f for f in _NOTEBOOK_FAULTS if f in log), "")
    if not fault:
        return ""
    return (f"the notebook did not run to its end ({fault}: its kernel died or a cell never ended): "
            "graded as unanswered")


def _autograde_as_unanswered(root: Path, student: str, name: str) -> dict:
    """Autograde the release notebook in the submission's place (every automatic point 0, written answers
    blank), so the gradebook has the submission; the student's notebook stays beside it as ``.failed``."""
    folder = root / "course" / "submitted" / student / name
    notebook = folder / f"{name}.ipynb"
    kept = folder / f"{name}.ipynb.failed"
    shutil.copyfile(notebook, kept)
    shutil.copyfile(root / "course" / "release" / name / f"{name}.ipynb", notebook)
    try:
        return api(root).autograde(name, student, force=True, create=False)
    finally:
        shutil.copyfile(kept, notebook)


def _apply_verdicts(root: Path, student: str, name: str, verdicts: Dict[str, "_judge.Verdict"]) -> None:
    """A test cell the judge failed scores 0 in the gradebook, and its cell in the autograded notebook (hence the
    feedback) says why under what the kernel printed."""
    failed = {k: v for k, v in verdicts.items() if not v.passed}
    if not failed:
        return
    for attempt in range(5):
        try:
            with api(root).gradebook as gb:
                for test_id in failed:
                    grade = gb.find_grade(test_id, name, name, student)
                    grade.auto_score = 0.0
                gb.db.commit()
            break
        except Exception as e:  # blind: SQLite "database is locked" by another grader: again, then give up
            if "locked" not in str(e) or attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))  # back-off before writing the gradebook again
    import nbformat

    path = root / "course" / "autograded" / student / name / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        test_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if test_id in failed and cell.cell_type == "code":
            last = "\n".join(failed[test_id].output.strip().splitlines()[-5:])
            cell.outputs.append(nbformat.v4.new_output(
                "stream", name="stdout", text=f"✘ judged again outside your notebook's kernel: 0 points: "
                f"{failed[test_id].why}" + (f"\n{last}" if last else "") + "\n"))
    nbformat.write(nb, path)


def _report(result: dict) -> dict:
    judged = result.get("judged", {})
    refused = {k: v["why"] for k, v in judged.items() if not v["passed"]}
    slowest = max((v["seconds"] for v in judged.values()), default=0.0)
    print(f"autograded {result['student']}/{result['assignment']}: {result['score']:g}/{result['max_score']:g} "
          f"points in {result['seconds']:.1f} s (its slowest judge {slowest:.1f} s)"
          + (f"; failed outside the kernel: {refused}" if refused else ""), flush=True)
    return result


def _score(root: Path, student: str, name: str) -> tuple:
    with api(root).gradebook as gb:
        sub = gb.find_submission(name, student)
        return float(sub.score), float(sub.max_score)


def scores(root: Optional[Path] = None) -> Dict[str, Dict[str, float]]:
    """Per submission ``{"student/assignment": {"score", "max_score"}}`` and per test cell, from the gradebook."""
    root = find_root(root)
    out: Dict[str, Dict[str, float]] = {}
    with api(root).gradebook as gb:
        for assignment in gb.assignments:
            for sub in assignment.submissions:
                row = {"score": float(sub.score), "max_score": float(sub.max_score)}
                for nb in sub.notebooks:
                    for grade in nb.grades:
                        if grade.max_score:
                            row[grade.name] = float(grade.score)
                out[f"{sub.student.id}/{assignment.name}"] = row
    return out


def feedback(root: Optional[Path] = None) -> Path:
    """HTML feedback per student and assignment in course/feedback (scores, ✔/✘ outputs, hidden tests)."""
    root = find_root(root)
    graded = {p.name for p in (root / "course" / "autograded").glob("*/*") if p.is_dir()}
    if not graded:
        raise GradingError("nothing autograded yet: run `python -m trashlab_instructor autograde DIR` first")
    for name in sorted(graded):
        _run(api(root).generate_feedback(name, force=True), f"generate_feedback {name}")
    return root / "course" / "feedback"


def export(to: Path, root: Optional[Path] = None) -> Path:
    """The gradebook as CSV: one row per student and assignment."""
    root = find_root(root)
    to = Path(to).resolve()
    nbgrader(["export", f"--to={to}"], root)
    return to


#: Where ``formgrader`` listens by default (Voila's class page takes 8866).
FORMGRADER_PORT = 8867


def formgrader_command(root: Path, port: int = FORMGRADER_PORT, ip: str = "127.0.0.1") -> List[str]:
    """The ``jupyter server`` command running nbgrader's formgrader for the course at ``root``, with its server
    extension enabled for this server only (student images and the test venv keep it disabled)."""
    cmd = [sys.executable, "-m", "jupyter", "server", "--no-browser", f"--ServerApp.ip={ip}", f"--ServerApp.port={port}",
           f"--ServerApp.root_dir={root}", "--ServerApp.default_url=/formgrader",
           "--ServerApp.jpserver_extensions={'nbgrader.server_extensions.formgrader': True}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # Jupyter refuses root without it (containers, CI)
    return cmd


def formgrader(port: int = FORMGRADER_PORT, ip: str = "127.0.0.1", root: Optional[Path] = None) -> int:
    """Run nbgrader's formgrader (hand grading, the gradebook) in the foreground until Ctrl-C; its exit code."""
    try:
        import nbgrader as _  # noqa: F401
    except ImportError:
        raise GradingError("nbgrader is not installed here: `pip install -r requirements-test.txt`") from None  # the ImportError adds nothing
    root = find_root(root)
    if not (root / "course" / "gradebook.db").is_file():
        raise GradingError("no gradebook yet: run `python -m trashlab_instructor generate` and `autograde` first")
    print(f"formgrader: open the http://{ip}:…/?token=… link Jupyter prints below (it lands on /formgrader); "
          "Ctrl-C twice stops it", flush=True)
    try:
        return subprocess.call(formgrader_command(root, port, ip), cwd=root, env=_env())
    except KeyboardInterrupt:
        return 0


def gradebook(to: Path = Path("gradebook.csv"), root: Optional[Path] = None,
              optional: Sequence[str] = OPTIONAL) -> Path:
    """The gradebook as a wide CSV for an LMS: one row per student, a column per assignment (blank: not
    submitted), ``Final Points`` over the required assignments, and the assignments whose written answers
    still wait for hand grading."""
    import csv

    root = find_root(root)
    to = Path(to).resolve()
    with api(root).gradebook as gb:
        names = sorted(a.name for a in gb.assignments)
        rows = []
        for student in sorted(gb.students, key=lambda st: st.id):
            scores: Dict[str, float] = {}
            waiting = []
            for sub in student.submissions:
                scores[sub.assignment.name] = float(sub.score)
                if sub.needs_manual_grade:
                    waiting.append(sub.assignment.name)
            shown = f"{student.last_name}, {student.first_name}" if student.last_name and student.first_name \
                else student.id
            login = student.lms_user_id or student.id
            total = sum(scores.get(name, 0.0) for name in names if name not in optional)
            rows.append([shown, login, login, "", *(f"{scores[n]:g}" if n in scores else "" for n in names),
                         f"{total:g}", " ".join(sorted(waiting))])
    with open(to, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*WHO, *names, TOTAL, AWAITING])
        writer.writerows(rows)
    return to


def disable_extensions() -> List[str]:
    """Disable nbgrader's JupyterLab and server extensions in this environment (no-op without nbgrader)."""
    try:
        import nbgrader as _  # noqa: F401
    except ImportError:
        return []
    jupyter = [sys.executable, "-m", "jupyter"]
    steps = [[*jupyter, "labextension", "disable", "--level=sys_prefix", LABEXTENSION]]
    steps += [[*jupyter, "server", "extension", "disable", "--sys-prefix", ext] for ext in SERVER_EXTENSIONS]
    for cmd in steps:
        subprocess.run(cmd, check=True, env=_env(), capture_output=True, timeout=300)
    return [LABEXTENSION, *SERVER_EXTENSIONS]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m trashlab_instructor COMMAND``: generate, autograde, feedback, export, gradebook, formgrader,
    disable-extensions, rubrics."""
    parser = argparse.ArgumentParser(prog="python -m trashlab_instructor", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="course/source → notebooks/ (the student version)")
    gen.add_argument("--check", action="store_true", help="only compare; exit 1 if notebooks/ would change")
    auto = sub.add_parser("autograde", help="autograde DIR/<student>/<name>.ipynb")
    auto.add_argument("submissions", type=Path)
    auto.add_argument("--jobs", "-j", type=int, default=DEFAULT_JOBS,
                      help=f"submissions graded at once (default {DEFAULT_JOBS}: the cores, at most 4)")
    auto.add_argument("--no-sandbox", action="store_true",
                      help="grade without bubblewrap, with your own rights (only for submissions you trust)")
    sub.add_parser("feedback", help="HTML feedback in course/feedback/")
    exp = sub.add_parser("export", help="grades as CSV")
    exp.add_argument("to", nargs="?", type=Path, default=Path("grades.csv"))
    book = sub.add_parser("gradebook", help="grades as a wide CSV for Canvas or Moodle: one row per student")
    book.add_argument("to", nargs="?", type=Path, default=Path("gradebook.csv"))
    form = sub.add_parser("formgrader", help="nbgrader's formgrader: hand-grade written answers, see the gradebook")
    form.add_argument("--port", type=int, default=FORMGRADER_PORT, help=f"web port (default {FORMGRADER_PORT})")
    form.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sub.add_parser("disable-extensions", help="hide nbgrader in JupyterLab (student images)")
    rub = sub.add_parser("rubrics", help="print the rubrics of written answers and answers of ungraded questions")
    rub.add_argument("assignment", nargs="?", help="one assignment (default: all)")
    what = rub.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="list missing or stale rubrics and leaks; exit 1 if any")
    what.add_argument("--refresh", action="store_true", help="rewrite the rubric cells of the autograded notebooks")
    args = parser.parse_args(argv)
    try:
        if args.command == "generate" and args.check:
            problems = check()
            for line in problems:
                print(line)
            print("notebooks/ is up to date" if not problems else
                  "notebooks/ is out of date: run `python -m trashlab_instructor generate` and commit")
            return 1 if problems else 0
        if args.command == "generate":
            changed = generate()
            print("\n".join(changed) if changed else "notebooks/ was already up to date")
        elif args.command == "autograde":
            autograde(args.submissions, jobs=args.jobs, sandbox=not args.no_sandbox)
        elif args.command == "feedback":
            print(f"feedback in {feedback()}")
        elif args.command == "export":
            print(f"grades in {export(args.to)}")
        elif args.command == "gradebook":
            print(f"gradebook in {gradebook(args.to)}")
        elif args.command == "formgrader":
            return formgrader(args.port, args.ip)
        elif args.command == "rubrics":
            from . import rubrics
            return rubrics.command(args.assignment, args.check, find_root(), args.refresh)
        elif args.command == "disable-extensions":
            done = disable_extensions()
            print("disabled: " + ", ".join(done) if done else "nbgrader is not installed: nothing to disable")
    except TrashlabError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
