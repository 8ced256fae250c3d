"""The judge: every graded test cell run again in a fresh process that no notebook cell reaches.

Anything running in the student's kernel can be patched from it (``importlib.reload = lambda m: m`` in an
answer cell, then no-op checks, made check cells print ✔), so the kernel's verdict is feedback only. For
each test cell of a submission, autograde also starts one fresh Python process (sandboxed, see
``sandbox.py``) that gets, from the instructor's source notebook, the notebook's imports and the values the
test cell names (``broker`` in 02), the test cell itself (hidden tests included), and from the submission
only that exercise's answer: a program file (``%%writefile sim.py``) is written as a file and never runs
inside the judge (the check runs it as its own process), an answer function's source is executed after the
check module is imported. The programs earlier answer cells of the notebook wrote are written too (a later
check may run them); nothing else of the submission (no other cell, no output) reaches it.

Inside the judge, in this order: the job is read from stdin, the process makes itself undumpable (a
program it starts cannot ptrace it or open its file descriptors), the context and the test cell's leading
statements (the import of its check module) run, a snapshot of every attribute of every loaded module and
class is taken, an audit hook is armed, then the answer and the test cell's checks run. The test cell
passes when its statements end without an exception, nothing in the snapshot changed (a monkeypatched
check, helper, ``importlib.reload``, a builtin, a ``sys.modules`` entry), the audit hook saw the answer's
code reach for frames, the garbage collector's object lists, ctypes, tracing or audit hooks of its own,
and nothing ended the process early (``SystemExit``, ``os._exit``). The verdict is one line carrying a
token given on stdin; the grader accepts exactly one such line with the right token and exit status 0.

A test cell earns its points only when nbgrader's kernel *and* the judge pass it (``grading.py``).
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import sandbox as _sandbox

VERDICT = "TRASHLAB-VERDICT"
#: The code of the answer as the judge compiles it (the audit hook recognises its frames by this name).
ANSWER_FILE = "<answer>"
#: At most this long per test cell (a check bounds its own waits; this is for a stuck answer).
TIMEOUT = 120.0
#: The tag of a plain instructor cell that a judge runs whole before the test cell (what the files need).
JUDGE_SETUP = "judge-setup"
_WRITEFILE = re.compile(r"^%%writefile\s+(-a\s+)?(\S+)\s*$")


@dataclass
class Job:
    """One test cell to judge: what the judge process gets on stdin (JSON)."""

    test_id: str
    points: float
    answer_id: str
    context: List[str] = field(default_factory=list)
    setup: List[str] = field(default_factory=list)
    check: str = ""
    answer: str = ""
    files: Dict[str, str] = field(default_factory=dict)


@dataclass
class Verdict:
    """What the judge found for one test cell."""

    test_id: str
    points: float
    passed: bool
    why: str
    output: str
    seconds: float


# ----- the grader's side: plan the jobs from the trusted source -----------------------------------------
def _meta(cell: Any) -> dict:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def _python(source: str) -> str:
    """IPython syntax (magics) as plain Python, like the kernel would run it."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _unhide(source: str) -> str:
    return "\n".join(line for line in source.splitlines()
                     if line.strip() not in ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"))


def _defined(tree: ast.AST) -> set:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _parse(source: str) -> ast.Module:
    return ast.parse(source, feature_version=sys.version_info[:2])


def _split_test(source: str, answer_names: set) -> tuple:
    """The test cell's leading statements that neither await nor use the answer (the import of its check),
    and the rest (the checks)."""
    tree = _parse(source)
    lines = source.splitlines(keepends=True)
    setup: List[str] = []
    for stmt in tree.body:
        used = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
        if any(isinstance(n, ast.Await) for n in ast.walk(stmt)) or used & answer_names:
            start = stmt.lineno - 1 - len(getattr(stmt, "decorator_list", []))
            return setup, "".join(lines[start:])
        setup.append(ast.get_source_segment(source, stmt) or "")
    return setup, ""


def _trusted_context(cells: Sequence[Any], before: int, needed: set) -> List[str]:
    """From the instructor's cells before index ``before`` (no answer, no test cell): every top-level import,
    and the top-level assignment of each name in ``needed`` (its last one before the test cell); a plain cell
    tagged ``judge-setup`` (e.g. one that makes a folder a git repository) runs whole, in its place."""
    imports: List[str] = []
    assigned: Dict[str, str] = {}
    order: List[str] = []
    prepared: List[str] = []
    for cell in cells[:before]:
        if cell.get("cell_type") != "code" or _meta(cell):
            continue
        try:
            code = _python(_text(cell.get("source")))
            tree = _parse(code)
        except SyntaxError:
            continue
        if JUDGE_SETUP in (cell.get("metadata") or {}).get("tags", []):
            prepared.append(code)  # the instructor's own cell, whole: e.g. 06's `git init lab5`
            continue
        for stmt in tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                imports.append(ast.get_source_segment(code, stmt) or "")
            elif isinstance(stmt, ast.Assign):
                targets = {t.id for t in stmt.targets if isinstance(t, ast.Name)}
                for name in targets & needed:
                    assigned[name] = ast.get_source_segment(code, stmt) or ""
                    if name not in order:
                        order.append(name)
    return imports + prepared + [assigned[n] for n in order]


def plan(source_nb: Any, submitted_nb: Any) -> List[Job]:
    """The jobs for a submission: one per test cell of the instructor's source, with that exercise's answer
    from the submission (matched by grade_id; a missing answer cell is an empty answer)."""
    cells = list(source_nb["cells"])
    given = {}
    for cell in submitted_nb["cells"]:
        meta = _meta(cell)
        if meta.get("solution") and cell.get("cell_type") == "code" and meta.get("grade_id") not in given:
            given[meta["grade_id"]] = _text(cell.get("source"))
    jobs: List[Job] = []
    answer_id: Optional[str] = None
    files: Dict[str, str] = {}  # the programs the submission's answer cells wrote so far (a later check may run them)
    for index, cell in enumerate(cells):
        meta = _meta(cell)
        if cell.get("cell_type") != "code" or not meta:
            continue
        if meta.get("solution"):
            answer_id = meta["grade_id"]
            program = _WRITEFILE.match(given.get(answer_id, "").partition("\n")[0].strip())
            if program:
                files[program.group(2)] = given[answer_id].partition("\n")[2]
            continue
        if not meta.get("grade") or answer_id is None:
            continue
        job = Job(meta["grade_id"], float(meta.get("points") or 0), answer_id, files=dict(files))
        answer = given.get(answer_id, "")
        first, _, rest = answer.partition("\n")
        written = _WRITEFILE.match(first.strip())
        if written:
            job.files[written.group(2)] = rest
        else:
            try:
                job.answer = _python(answer)
            except Exception:  # blind: IPython could not read it: the judge gets it as written
                job.answer = answer
        try:
            answer_names = _defined(_parse(job.answer)) if job.answer else set()
        except SyntaxError:
            answer_names = set()
        reference = _text(next((c.get("source") for c in cells[:index] if _meta(c).get("grade_id") == answer_id), ""))
        try:
            answer_names |= _defined(_parse(_python(reference))) if not written else set()
        except SyntaxError:
            pass
        test = _python(_unhide(_text(cell.get("source"))))
        job.setup, job.check = _split_test(test, answer_names)
        tree = _parse(test)
        loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        needed = loads - _defined(tree) - answer_names - set(dir(builtins))
        job.context = _trusted_context(cells, index, needed)
        jobs.append(job)
    return jobs


def judge(job: Job, sandboxed: bool = True, timeout: float = TIMEOUT) -> Verdict:
    """Run one job in a fresh judge process (sandboxed unless told otherwise); its verdict."""
    token = secrets.token_hex(16)
    home = _sandbox.private_home("trashlab-judge-")
    cmd = [sys.executable, "-m", "trashlab_instructor.judge"]
    if sandboxed:
        cmd = [*_sandbox.prefix(home), *cmd]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if not sandboxed:
        env.update(HOME=str(home), TMPDIR=str(home / "tmp"), TRASHLAB_STATE_DIR=str(home / "state"))
    payload = json.dumps({"token": token, **job.__dict__})
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, input=payload, capture_output=True, text=True, cwd=home, env=env,
                              timeout=timeout, start_new_session=True)
        out, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return Verdict(job.test_id, job.points, False, f"did not finish within {timeout:g} s", out,
                       time.monotonic() - started)
    seconds = time.monotonic() - started
    verdicts = [line for line in proc.stdout.splitlines() if line.startswith(VERDICT)]
    shown = "\n".join(line for line in out.splitlines() if not line.startswith(VERDICT))
    if len(verdicts) != 1:
        return Verdict(job.test_id, job.points, False, f"the judge wrote {len(verdicts)} verdicts (exit {code}): "
                       "the answer ended it early or forged one", shown, seconds)
    _, got, body = (verdicts[0].split(" ", 2) + ["", ""])[:3]
    try:
        found = json.loads(body)
    except ValueError:
        found = {}
    if got != token or code != 0 or not isinstance(found, dict):
        return Verdict(job.test_id, job.points, False, f"a verdict without the judge's token (exit {code})", shown,
                       seconds)
    return Verdict(job.test_id, job.points, bool(found.get("passed")), str(found.get("why", "")), shown, seconds)


def judge_all(jobs: Sequence[Job], sandboxed: bool = True, parallel: int = 2) -> Dict[str, Verdict]:
    """Every job, ``parallel`` at a time (each judge is sandboxed with its own network: nothing collides)."""
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return {v.test_id: v for v in pool.map(lambda j: judge(j, sandboxed), jobs)}


# ----- the judge process --------------------------------------------------------------------------------
def _undumpable() -> None:
    """PR_SET_DUMPABLE 0: a program this process starts (same user) cannot ptrace it or open /proc/<it>/fd."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the sandbox is Linux-only anyway


#: Class attributes the standard library itself changes in use (a ``tempfile.TemporaryDirectory`` registers a
#: ``weakref.finalize``, which sets these flags): never the answer's doing, so not compared.
_BOOKKEEPING = {("weakref", "finalize", "_dirty"), ("weakref", "finalize", "_registered_with_atexit")}


def _snapshot() -> Dict[tuple, int]:
    """The identity of every attribute of every loaded module and of the classes they define."""
    seen: Dict[tuple, int] = {}
    for mname, module in list(sys.modules.items()):
        seen[("sys.modules", mname)] = id(module)
        values = getattr(module, "__dict__", None)
        if not isinstance(values, dict):
            continue
        for key, value in list(values.items()):
            if callable(value) or isinstance(value, type(sys)):
                seen[(mname, key)] = id(value)
            if isinstance(value, type) and getattr(value, "__module__", None) == mname:
                for ckey, cvalue in list(vars(value).items()):
                    if (mname, key, ckey) not in _BOOKKEEPING:
                        seen[(mname, key, ckey)] = id(cvalue)
    return seen


#: Audit events an honest answer never raises from its own code.
_FORBIDDEN = ("sys._getframe", "sys._current_frames", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
              "sys.settrace", "sys.setprofile", "sys.addaudithook", "object.__getattr__", "object.__setattr__",
              "object.__delattr__", "ctypes.", "cpython.PyInterpreterState_", "os.kill", "os.killpg", "signal.")


def _arm(flags: List[str]) -> None:
    """An audit hook (it cannot be removed) recording forbidden events raised by the answer's own code."""
    busy = [False]
    getframe = sys._getframe

    def hook(event: str, args: tuple) -> None:
        if busy[0] or not event.startswith(_FORBIDDEN):
            return
        busy[0] = True
        try:
            frame: Any = getframe(1)
            for _ in range(3):  # the code doing it, or a helper it called
                if frame is None:
                    break
                if frame.f_code.co_filename == ANSWER_FILE:
                    flags.append(event)
                    raise RuntimeError(f"the answer used {event}: not allowed while it is graded")
                frame = frame.f_back
        finally:
            busy[0] = False

    sys.addaudithook(hook)


def _run(source: str, namespace: dict, filename: str, loop: Any) -> None:
    import inspect

    code = compile(source, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    result = eval(code, namespace)  # the judge exists to run the cell (sandboxed)
    if inspect.iscoroutine(result):
        loop.run_until_complete(result)


def _child() -> int:
    import asyncio

    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    token = job.pop("token")
    out = os.dup(1)
    os.set_inheritable(out, False)
    _undumpable()
    verdict = {"passed": False, "why": ""}
    flags: List[str] = []
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    namespace: Dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    stage = "the notebook's context"
    try:
        for code in job["context"]:
            _run(code, namespace, "<context>", loop)
        stage = "the test cell's set-up"
        for code in job["setup"]:
            _run(code, namespace, "<test cell>", loop)
        for name, text in job["files"].items():
            Path(name).parent.mkdir(parents=True, exist_ok=True)  # %%writefile lab5/sim.py: lab5 as well
            Path(name).write_text(text)
        before = _snapshot()
        _arm(flags)
        if job["answer"]:
            stage = "the answer cell"
            try:
                _run(job["answer"], namespace, ANSWER_FILE, loop)
            except Exception as e:  # blind: like the kernel: an answer cell's error is shown, the checks still run
                print(f"the answer cell raised {type(e).__name__}: {e}")
        stage = "the test cell"
        _run(job["check"], namespace, "<test cell>", loop)
        after = _snapshot()
        changed = sorted(".".join(k) for k, v in before.items() if after.get(k) != v)
        if flags:
            verdict["why"] = f"the answer's code used {', '.join(sorted(set(flags)))}"
        elif changed:
            verdict["why"] = f"the answer changed what the check is built from: {', '.join(changed[:5])}"
        else:
            verdict = {"passed": True, "why": ""}
    except BaseException as e:  # blind: SystemExit, KeyboardInterrupt from the answer too: a fail
        first = next((line for line in str(e).splitlines() if line.strip()), "")
        verdict["why"] = f"{stage} raised {type(e).__name__}" + (f": {first}" if first else "")
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(out, f"\n{VERDICT} {token} {json.dumps(verdict)}\n".encode())
    # at once: no atexit handler or thread of the answer's runs after the verdict; what the checks and the
    # context started (nats-servers) dies with this process (PDEATHSIG; in the sandbox, its PID namespace)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(_child())
