"""Child processes trashlab starts (brokers, simulator and report processes) and their cleanup.

Three safety nets, so a student never finds a stray nats-server:

1. every child is stopped at interpreter exit (``atexit``);
2. on Linux each child gets ``PR_SET_PDEATHSIG`` = SIGKILL, so it dies with the process that
   started it even when that process is SIGKILLed (a crashed kernel). The kernel ties that signal
   to the *thread* that forked, so children asked for from any other thread than the main one are
   forked by one long-lived spawner thread that lives as long as the process;
3. each child is recorded in a state file; the next trashlab start removes children whose owner
   is gone. A process is only ever killed if its pid, start time and executable match the record,
   so trashlab never kills a process it did not start. ``trashlab-*`` temporary folders (a broker's
   JetStream store) carry the same owner record and are removed the same way.

At exit the children are stopped first, then the temporary folders are removed. Every path that
stops processes goes through :func:`stop_processes` (SIGTERM to all, wait, SIGKILL what remains).

Each child runs in its own session (``start_new_session``), outside the process group of the process
that started it: JupyterLab's Interrupt (■) sends SIGINT to the kernel's whole process group, and it
must stop the running cell, never the brokers and services the notebook started. A kernel that is
shut down still stops them (at exit), one that crashes still takes them with it (2, 3).
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import functools
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Deque, Optional, Protocol, Sequence, TypeVar

import psutil

from ..errors import TrashlabError
from .._secrets import private_dir, redact_all, write_private

log = logging.getLogger("trashlab")

_children: "list[ManagedProcess]" = []
_temp_dirs: "list[str]" = []
_lock = threading.Lock()
_OWNER_FILE = ".trashlab-owner.json"


def state_dir() -> Path:
    """Folder holding one small JSON record per running child (``TRASHLAB_STATE_DIR`` overrides); only its
    owner may enter it (0700)."""
    base = os.environ.get("TRASHLAB_STATE_DIR") or os.path.join(
        os.environ.get("XDG_RUNTIME_DIR") or os.path.join(Path.home(), ".cache"), "trashlab", "run"
    )
    return private_dir(base)


def _write_json(path: Path, data: dict) -> None:
    """Write a record whole or not at all (temp file + rename), readable by its owner only (0600)."""
    write_private(path, json.dumps(data))


def _owner() -> dict:
    """This process as the owner field of a record."""
    return {"owner_pid": os.getpid(), "owner_create_time": _create_time(os.getpid())}


@functools.lru_cache(maxsize=None)
def _load_prctl():
    """libc's ``prctl``, looked up in the parent: a ``dlopen`` between fork and exec can deadlock."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None


def _pdeathsig(prctl, owner: int) -> None:  # runs in the child between fork and exec: no imports, no dlopen
    prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != owner:  # the owner died between fork and prctl
        os.kill(os.getpid(), signal.SIGKILL)


class _Spawner:
    """One daemon thread that forks children for callers on other threads than the main one.

    ``PR_SET_PDEATHSIG`` fires when the forking *thread* ends, so a child forked by a short-lived
    worker thread would die with that thread, and one forked without it would outlive a crash.
    This thread never ends before the process does, so its children die exactly with the process.
    """

    def __init__(self) -> None:
        self._jobs: "queue.SimpleQueue" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()

    def popen(self, kwargs: dict) -> subprocess.Popen:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="trashlab-spawner", daemon=True)
                self._thread.start()
        done = threading.Event()
        box: dict = {}
        self._jobs.put((kwargs, box, done))
        if not done.wait(30):
            raise OSError("trashlab's spawner thread did not answer within 30 s")
        if "error" in box:
            raise box["error"]
        return box["popen"]

    def _serve(self) -> None:
        while True:
            kwargs, box, done = self._jobs.get()
            try:
                box["popen"] = subprocess.Popen(preexec_fn=_pdeathsig_hook(), start_new_session=True, **kwargs)
            except BaseException as e:  # blind: handed back to the caller's thread, raised there
                box["error"] = e
            done.set()


_spawner = _Spawner()


def _pdeathsig_hook():
    """The preexec function setting the parent-death signal (None where unsupported)."""
    prctl = _load_prctl() if sys.platform.startswith("linux") else None
    return functools.partial(_pdeathsig, prctl, os.getpid()) if prctl is not None else None


#: what native Windows gets instead of a traceback at the first server or program (README "Supported systems")
NATIVE_WINDOWS = ("trashlab runs its servers and programs as POSIX processes, which native Windows Python does "
                  "not have: use WSL2 (Ubuntu), the course's Binder link, or your course's JupyterHub")


def _spawn(kwargs: dict) -> subprocess.Popen:
    """Popen in its own session (an Interrupt of the kernel does not reach it), with the parent-death
    signal, forked by a thread that lives as long as the process."""
    if sys.platform == "win32":  # no os.setsid, no preexec_fn, no SIGKILL: say so in one line, start nothing
        raise TrashlabError(NATIVE_WINDOWS)
    if _pdeathsig_hook() is None or threading.current_thread() is threading.main_thread():
        return subprocess.Popen(preexec_fn=_pdeathsig_hook(), start_new_session=True, **kwargs)
    return _spawner.popen(kwargs)


def _create_time(pid: int) -> Optional[float]:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class ManagedProcess:
    """A child process started by trashlab: output kept in a ring buffer, stopped at exit.

    ``argv`` is shown by ``ps`` to every user of the machine and holds no password; ``env`` (added to this
    process's environment, which only its owner may read) is where a child's URLs with passwords go.
    """

    def __init__(self, argv: Sequence[str], *, kind: str, name: str, env: Optional[dict] = None,
                 keep_lines: int = 2000, echo: bool = False,
                 on_line: Optional[Callable[[str], None]] = None, disposable: bool = False,
                 split_stderr: bool = False, cwd: Optional[str] = None) -> None:
        self.argv = [str(a) for a in argv]  # never a password: that goes in ``env`` or a 0600 file
        #: its state lives only in trashlab's temporary folders: at interpreter exit it is SIGKILLed, not
        #: asked to stop, so those folders are gone before a kernel's shutdown grace period ends
        self.disposable = disposable
        self.on_line = on_line
        self.kind = kind
        self.name = name
        self.echo = echo
        # (stream, line) in arrival order; stream is "stderr" only for a child started with split_stderr
        self._lines: Deque[tuple[str, str]] = collections.deque(maxlen=keep_lines)
        self.line_count = 0
        reap_orphans()
        self.popen = _spawn(dict(
            args=self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE if split_stderr else subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=None if env is None else {**os.environ, **env}, cwd=cwd, bufsize=1,
            text=True, errors="replace",
        ))
        self.pid = self.popen.pid
        self.started_at = time.time()
        self._record = state_dir() / f"{self.pid}.json"
        _write_json(self._record, {
            "pid": self.pid, "create_time": _create_time(self.pid), "exe": os.path.basename(self.argv[0]),
            **_owner(), "kind": kind, "name": name, "argv": redact_all(self.argv),
        })
        self._readers = [threading.Thread(target=self._read, args=(stream, "stdout"), daemon=True,
                                          name=f"trashlab-{kind}-{name}")
                         for stream in [self.popen.stdout] if stream is not None]
        if self.popen.stderr is not None:
            self._readers.append(threading.Thread(target=self._read, args=(self.popen.stderr, "stderr"),
                                                  name=f"trashlab-{kind}-{name}-stderr", daemon=True))
        for reader in self._readers:
            reader.start()
        with _lock:
            _children.append(self)

    def _read(self, stream, label: str) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self._lines.append((label, line))
            self.line_count += 1
            if self.on_line is not None:
                self.on_line(line)
            if self.echo:
                print(line, flush=True)
        stream.close()
        self.popen.wait()
        self._forget()

    def tail(self, n: int = 10) -> list[str]:
        """The last ``n`` lines the process printed."""
        return [line for _, line in list(self._lines)[-n:]] if n > 0 else []

    def lines(self, n: Optional[int] = None) -> "list[tuple[str, str]]":
        """The last ``n`` lines (all kept ones by default) as ``(stream, line)``: stream is ``stdout`` or ``stderr``."""
        kept = list(self._lines)
        return kept if n is None else kept[-n:] if n > 0 else []

    @property
    def output(self) -> str:
        """Everything kept from its output (the newest lines), as one string."""
        return "\n".join(line for _, line in self._lines)

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        """Exit code once it ended (negative: killed by that signal), else None."""
        return self.popen.poll()

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Wait until it ends (at most ``timeout`` s); return the exit code or None if still running.

        Once it ended, its last lines are read too (the reader thread may lag behind the exit), so
        ``output`` holds the error it died with.
        """
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for reader in self._readers:
            if reader is not threading.current_thread():
                reader.join(1.0)
        return code

    def terminate(self) -> None:
        """Send SIGTERM and return at once."""
        if self.alive:
            self.popen.terminate()

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """Ask it to stop (SIGTERM, like Ctrl-C in its terminal); SIGKILL after ``timeout`` s."""
        stop_processes([self], timeout)
        return self.returncode

    def kill(self) -> Optional[int]:
        """SIGKILL it at once, as a crash would (for failure demos)."""
        if self.alive:
            self.popen.kill()
            self.wait(5)
        self._forget()
        return self.returncode

    def _forget(self) -> None:
        if self.popen.poll() is None:
            return
        self._record.unlink(missing_ok=True)
        with _lock:
            if self in _children:
                _children.remove(self)

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        return f"<{self.kind} {self.name!r} pid={self.pid} {state}>"


def children() -> "list[ManagedProcess]":
    """The processes this interpreter started that still run."""
    with _lock:
        return [c for c in _children if c.alive]


class ServerLifecycle:
    """The verbs of what runs as server processes (Broker, Cluster): ``start()`` and ``stop()`` are plain
    calls that return when it is done; ``await astart()`` / ``await astop()`` wait without blocking the
    event loop; both work as ``with`` / ``async with`` (docs/architecture.md "One start/stop convention")."""

    def start(self: "S") -> "S":
        raise NotImplementedError

    async def astart(self: "S") -> "S":
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    async def astop(self) -> None:
        """Like :meth:`stop`, waiting in a worker thread, so the event loop keeps running meanwhile."""
        import asyncio

        await asyncio.to_thread(self.stop)

    def __enter__(self: "S") -> "S":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self: "S") -> "S":
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()


S = TypeVar("S", bound=ServerLifecycle)


class Stoppable(Protocol):
    """What :func:`stop_processes` needs: a process it can signal and wait for."""

    @property
    def alive(self) -> bool: ...

    def terminate(self) -> None: ...

    def kill(self) -> object: ...

    def wait(self, timeout: Optional[float] = None) -> Optional[int]: ...


def stop_processes(procs: "Sequence[Stoppable]", timeout: float = 5.0) -> int:
    """The one stop routine: SIGTERM to all at once, wait at most ``timeout`` s in total, SIGKILL the rest.

    Returns how many were running.
    """
    running = [p for p in procs if p.alive]
    for p in running:
        p.terminate()
    deadline = time.monotonic() + timeout
    for p in running:
        p.wait(max(0.0, deadline - time.monotonic()))
        p.kill()  # a no-op for one that ended; also forgets its record
    return len(running)


class Recorded:
    """A process known only by its record (started by another trashlab process), for :func:`stop_processes`."""

    def __init__(self, rec: dict) -> None:
        self.rec = rec
        self._proc: Optional[psutil.Process] = None
        try:
            proc = psutil.Process(rec["pid"])
            if _alive_as_recorded(rec.get("pid"), rec.get("create_time")) and redact_all(proc.cmdline()) == rec.get("argv"):
                self._proc = proc  # pid, start time and command line match: it is the one recorded
        except (psutil.Error, KeyError, OSError):
            pass

    @property
    def ours(self) -> bool:
        """True when the running process is the one the record describes."""
        return self._proc is not None

    @property
    def alive(self) -> bool:
        try:
            return self._proc is not None and self._proc.is_running() and self._proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def terminate(self) -> None:
        try:
            if self._proc is not None:
                self._proc.terminate()
        except psutil.Error:
            pass

    def kill(self) -> None:
        try:
            if self.alive:
                self._proc.kill()  # type: ignore[union-attr]
                self._proc.wait(5)  # type: ignore[union-attr]
        except psutil.Error:
            pass

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        try:
            return self._proc.wait(timeout) if self._proc is not None else 0
        except psutil.TimeoutExpired:
            return None
        except psutil.Error:
            return 0


def stop_all(timeout: float = 5.0) -> int:
    """Stop every process this interpreter started; return how many were running."""
    return stop_processes(children(), timeout)


def temp_dir(label: str) -> str:
    """A ``trashlab-<label>-*`` temporary folder, removed at exit after the children stopped.

    It holds the same owner record as a child's, so if this process is SIGKILLed the next trashlab
    start removes it (:func:`reap_orphans`).
    """
    path = tempfile.mkdtemp(prefix=f"trashlab-{label}-")
    try:
        _write_json(Path(path) / _OWNER_FILE, _owner())
        with _lock:
            _temp_dirs.append(path)
    except BaseException:  # an Interrupt right here: a folder without its record would never be removed
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


def _at_exit() -> None:
    """Children first (a nats-server still writes to its JetStream store), then the temporary folders.

    Disposable children (a broker whose store is a temporary folder) are SIGKILLed and their folders
    removed before the others are asked to stop: Jupyter kills a shutting-down kernel after a few seconds,
    and a graceful stop of a loaded JetStream server can take longer than that, which left the folders
    behind until the next trashlab start reaped them.
    """
    for child in children():
        if child.disposable:
            child.kill()  # waits for it to end
    with _lock:
        dirs, _temp_dirs[:] = list(_temp_dirs), []
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)
    stop_all()


def _alive_as_recorded(pid: Optional[int], create_time: Optional[float]) -> bool:
    if not pid or create_time is None:
        return False
    now = _create_time(pid)
    return now is not None and abs(now - create_time) < 0.01


def records(drop_unreadable: bool = False) -> "list[tuple[Path, dict]]":
    """Every readable child record in the state folder: ``(path, record)`` pairs, oldest pid first."""
    found: "list[tuple[Path, dict]]" = []
    try:
        paths = sorted(state_dir().glob("*.json"))
    except OSError:
        return found
    for path in paths:
        try:
            found.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            if drop_unreadable:
                path.unlink(missing_ok=True)
    return found


def reap_orphans() -> list[int]:
    """Kill children left behind by a trashlab process that died; return their pids.

    Only processes whose pid, start time and command line match a trashlab record are
    touched, and only when the process that started them no longer exists.
    """
    killed = []
    for path, rec in records(drop_unreadable=True):
        if _alive_as_recorded(rec.get("owner_pid"), rec.get("owner_create_time")):
            continue  # its owner still runs: not an orphan
        orphan = Recorded(rec)
        if orphan.ours and stop_processes([orphan], timeout=2.0):
            killed.append(rec["pid"])
            log.warning("trashlab: stopped a %s (%s, pid %d) left behind by a process that died",
                        rec.get("kind"), rec.get("name"), rec["pid"])
        path.unlink(missing_ok=True)
    _reap_temp_dirs()
    return killed


def _reap_temp_dirs() -> None:
    """Remove ``trashlab-*`` temporary folders whose recorded owner is gone (never one without our record)."""
    for folder in Path(tempfile.gettempdir()).glob("trashlab-*"):
        try:
            owner = json.loads((folder / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being created
        if not _alive_as_recorded(owner.get("owner_pid"), owner.get("owner_create_time")):
            shutil.rmtree(folder, ignore_errors=True)


def python_command(*args: str) -> list[str]:
    """argv running ``python -m trashlab ARGS`` with this interpreter, unbuffered."""
    return [sys.executable, "-u", "-m", "trashlab", *args]


atexit.register(_at_exit)
