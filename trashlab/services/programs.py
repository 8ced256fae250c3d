"""A student's own program as its own process: the lab's ``docker container run --name sim ... node sim.js``.

``trashlab.run_program("sim.py", 0.5, 20, servers=broker)`` runs a plain Python file (nats-py, no
trashlab import) with this interpreter, in its own session, with the broker in ``$NATS_URL`` (several
URLs are separated by commas, as the ``nats`` CLI reads it). Credentials travel only in that
environment variable, never on the command line. Like a container it has a name: running a program under
a name that still runs replaces the old process (stopped first), so a re-run cell never leaves two.

What it printed shows like ``docker container logs``: :meth:`Program.logs`, :meth:`Program.tail`, stderr
lines marked. :meth:`Program.stop` sends SIGTERM and waits (the program's own SIGTERM handler, e.g. a
``drain()``, runs), :meth:`Program.kill` is ``docker container rm -f``. The process is a
:class:`~trashlab.servers.processes.ManagedProcess`: recorded in the state folder, stopped at exit, taken
down with a kernel that dies, and out of reach of the kernel's Interrupt (■).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import BadArgument
from ..servers.connection import resolve_servers
from ..servers.processes import ManagedProcess
from .._text import Lines

#: How a line the program wrote to stderr is marked in :meth:`Program.logs`.
STDERR_MARK = "stderr| "

_programs: "dict[str, Program]" = {}


def _program_path(path: Any) -> Path:
    """The file to run, or one line saying what is wrong with ``path`` and how to fix it."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise BadArgument(f"run_program({path!r}): give the program's file name, e.g. run_program('sim.py')")
    file = Path(path).expanduser()
    if file.is_dir():
        raise BadArgument(f"run_program({str(path)!r}): that is a folder; give the program's file inside it, "
                          "e.g. run_program('sim.py')")
    if file.suffix != ".py":
        raise BadArgument(f"run_program({str(path)!r}): only Python files run here; give a .py file, "
                          "e.g. the sim.py your %%writefile cell wrote")
    if not file.is_file():
        raise BadArgument(f"run_program({str(path)!r}): no such file in {os.getcwd()}: run the cell that "
                          f"writes it (%%writefile {file.name}) first")
    return file.resolve()


def _nats_url(servers: Any) -> str:
    """The value of ``$NATS_URL`` for the child: a broker, a cluster, a name, a URL or a list of them."""
    urls = getattr(servers, "urls", None)  # a Cluster (its running nodes)
    if urls is None and not isinstance(servers, (str, list, tuple)) and hasattr(servers, "url"):
        urls = [servers.url]  # a Broker
    return ",".join(resolve_servers(urls if urls is not None else servers).urls)


class Program:
    """A Python file running as its own process (a container): ``.logs()``, ``.stop()``, ``.kill()``, ``.alive``."""

    def __init__(self, path: Path, args: "list[str]", name: str, env: "dict[str, str]") -> None:
        """Start ``python -u path args`` (``env`` added to this process's environment)."""
        self.path, self.args, self.name = path, list(args), name
        self.proc = ManagedProcess([sys.executable, "-u", str(path), *self.args], kind="program", name=name,
                                   env=env, split_stderr=True, cwd=str(path.parent))

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.alive

    @property
    def returncode(self) -> Optional[int]:
        """Exit code once it ended (negative: the signal that ended it), else None."""
        return self.proc.returncode

    def logs(self, n: Optional[int] = None) -> Lines:
        """What it printed (the last ``n`` lines, or all kept), like ``docker container logs``; stderr lines marked.

        stdout and stderr are two pipes: each keeps its own order, and they are interleaved as their lines
        arrived (as in ``docker container logs``, a line of one may show before an earlier line of the other)."""
        return Lines((STDERR_MARK + line) if stream == "stderr" else line for stream, line in self.proc.lines(n))

    def tail(self, n: int = 5) -> Lines:
        """The last ``n`` lines it printed (``docker container logs --tail n``)."""
        return self.logs(n)

    def stdout(self) -> "list[str]":
        """Every kept line it wrote to stdout, unmarked (e.g. its ``publishing: ...`` lines)."""
        return [line for stream, line in self.proc.lines() if stream == "stdout"]

    def stderr(self, n: int = 10) -> "list[str]":
        """The last ``n`` lines it wrote to stderr (a crash's traceback ends there)."""
        found = [line for stream, line in self.proc.lines() if stream == "stderr"]
        return found[-n:] if n > 0 else []

    def failure(self, n: int = 3) -> str:
        """Its last ``n`` non-blank stderr lines joined with `` | `` (why it crashed), or its exit code."""
        lines = [line.strip() for line in self.stderr(50) if line.strip(" ^~\t")][-n:]  # no ^^^^ markers
        return " | ".join(lines) if lines else f"no output on stderr (exit code {self.returncode})"

    async def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Wait until it ends (at most ``timeout`` s, without blocking the notebook); its exit code, or None.

        Like ``docker container wait``; its last lines are read in full once it ended.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.alive and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.02)
        return self.proc.wait(1) if not self.alive else None

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM (``docker container stop``): its own handler runs; SIGKILL after ``timeout`` s. The exit code."""
        return self.proc.stop(timeout)

    def kill(self) -> Optional[int]:
        """SIGKILL at once (``docker container rm -f``); the exit code."""
        return self.proc.kill()

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        shown = " ".join([self.path.name, *self.args])
        return f"<program {self.name!r} ({shown}) pid={self.pid} {state}, {self.proc.line_count} lines>"


def run_program(path: "str | os.PathLike[str]", *args: Any, name: Optional[str] = None, servers: Any = None,
                env: Optional[Mapping[str, str]] = None) -> Program:
    """Run a Python file as its own process, broker in ``$NATS_URL`` (``docker container run --name``); return at once."""
    file = _program_path(path)
    name = name or file.stem
    if not isinstance(name, str) or not name.strip():
        raise BadArgument(f"name={name!r}: give the process a name, e.g. name='sim'")
    child_env = {str(k): str(v) for k, v in (env or {}).items()}  # added to this process's environment
    if servers is not None or "NATS_URL" not in child_env:
        child_env["NATS_URL"] = _nats_url(servers)  # with its password: the environment only its owner reads
    child_env["PYTHONUNBUFFERED"] = "1"  # its prints reach the logs as they happen, like a terminal's
    for ended in [key for key, p in _programs.items() if not p.alive and key != name]:
        del _programs[ended]  # like `docker container run --rm`: an ended program's name is free again
    old = _programs.get(name)
    if old is not None:
        old.stop()  # one process per name, like one container per name
    program = Program(file, [str(a) for a in args], name, child_env)
    _programs[name] = program
    return program


def programs() -> "list[Program]":
    """The programs started from here that still run (``docker container ls``)."""
    return [p for p in _programs.values() if p.alive]
