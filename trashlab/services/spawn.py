"""The lab's containers as separate local processes: ``python -m trashlab sim`` and ``... report``.

``await spawn_simulator(broker.url)`` is ``docker container run --name=sim ... node sim.js``: its own
process, its own connection, its own output (``.tail()``), which you can ``.stop()`` (Ctrl-C) or
``.kill()`` (a crash) without touching the notebook. Spawning again under the same name reuses the
running process when nothing changed, so re-running a cell never starts a second one.

The URLs (they may hold passwords) reach the child in its environment (``NATS_URL``, see
:meth:`~trashlab.servers.connection.Resolved.env`), never on its command line, which ``ps`` shows to
every user of the machine.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Iterable, Mapping, Optional

from .. import _hooks
from ..servers.connection import NEWS, Servers, resolve_servers
from ..errors import BadArgument, ServiceFailed, ServiceStartTimeout
from ..message import SUBJECT
from ..servers.processes import ManagedProcess, python_command, stop_processes
from .._progress import StatusLine, wait_until
from .._text import Lines

log = logging.getLogger("trashlab")

_running: "dict[str, ServiceProcess]" = {}


class ServiceProcess:
    """A trashlab command running as its own process: ``.tail()``, ``.alive``, ``.stop()``, ``.kill()``."""

    def __init__(self, role: str, name: str, args: list, ready_marker: str, count_prefix: str,
                 env: Optional[Mapping[str, str]] = None) -> None:
        self.role, self.name, self.args, self.env = role, name, list(args), dict(env or {})
        self.ready_marker, self.count_prefix = ready_marker, count_prefix
        self.messages = 0
        self.first_at: Optional[float] = None
        self.last_at: Optional[float] = None
        self.proc = self._start()

    def _start(self) -> ManagedProcess:
        return ManagedProcess(python_command(*self.args), kind=self.role, name=self.name, env=self.env,
                              on_line=self._on_line)

    def _respawn(self, args: list, env: Mapping[str, str]) -> None:
        """Run again with ``args`` and ``env`` (same name, same object, counters go on), e.g. to follow a moved broker."""
        self.proc.stop()
        self.args, self.env = list(args), dict(env)
        self.proc = self._start()

    def _on_line(self, line: str) -> None:
        if line.startswith(self.count_prefix):
            self.messages += 1
            self.last_at = time.time()
            if self.first_at is None:
                self.first_at = self.last_at

    @property
    def count(self) -> int:
        """Messages it published or received (the old spelling of :attr:`messages`)."""
        return self.messages

    @property
    def ready(self) -> bool:
        """True once the process printed its first sign of life (a line starting with its marker)."""
        return self.count > 0 or any(line.startswith(self.ready_marker) for line in self.proc.tail(20))

    def failure(self) -> str:
        """The line that best says why it ended: its error, else its last line."""
        lines = [ln for ln in self.proc.tail(20) if ln.strip()]
        for marker in ("error", "stopped publishing", "Error", "Traceback"):
            found = [ln for ln in lines if marker in ln]
            if found:
                return found[-1].strip()
        return lines[-1].strip() if lines else f"no output (exit code {self.returncode})"

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.alive

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.proc.pid

    @property
    def returncode(self) -> Optional[int]:
        """Exit code once it ended (negative: the signal that killed it)."""
        return self.proc.returncode

    @property
    def rate(self) -> float:
        """Messages per second from its first one until now (or until its last one, once it stopped)."""
        if self.first_at is None:
            return 0.0
        end = time.time() if self.alive else (self.last_at or self.first_at)
        return self.messages / max(1e-3, end - self.first_at) if self.messages > 1 else 0.0

    def tail(self, n: int = 5) -> Lines:
        """The last ``n`` lines it printed (like ``docker container logs --tail``), shown as terminal lines."""
        return Lines(self.proc.tail(n))

    def stop(self) -> None:
        """Stop it like Ctrl-C in its terminal (``returncode`` is then its exit code)."""
        self.proc.stop()

    def kill(self) -> None:
        """SIGKILL it, like ``docker container kill`` (``returncode`` is then its exit code)."""
        self.proc.kill()

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        return f"<{self.role} process {self.name!r} pid={self.pid} {state}, {self.messages} messages>"


def _servers(servers: Servers) -> "tuple[list[str], dict[str, str]]":
    """Names resolve here, in the process that knows them; the child gets the same fallback policy: the
    policy as arguments, the URLs (and their passwords) in its environment."""
    resolved = resolve_servers(servers)
    return resolved.args(), resolved.env()


def _launch(role: str, name: str, args: list, env: dict, marker: str,
            prefix: str) -> "tuple[ServiceProcess, bool]":
    old = _running.get(name)
    if old is not None and old.alive:
        if old.args == args and old.env == env:
            return old, False
        old.stop()
    svc = ServiceProcess(role, name, args, marker, prefix, env)
    _running[name] = svc
    return svc, True


async def _ready(procs: "list[ServiceProcess]", what: str, timeout: float) -> None:
    line = StatusLine(f"starting {what} ...")

    def check() -> bool:
        if all(p.ready for p in procs):
            return True
        failed = [p for p in procs if not p.alive and (not p.ready or p.returncode)]
        if failed:
            failed[0].proc.wait(1)  # its last lines (the error) read in full
            raise ServiceFailed(f"{failed[0].role} {failed[0].name!r} exited at start: {failed[0].failure()[:300]}",
                                name=failed[0].name, role=failed[0].role)
        return False

    if not await wait_until(check, timeout=timeout, what=f"starting {what}", status=line):
        for p in procs:
            p.stop()
        raise ServiceStartTimeout(f"{what} did not start within {timeout:g}s: the machine may be busy; run the cell again",
                                  name=procs[0].name if len(procs) == 1 else None,
                                  role=procs[0].role if procs else None, timeout=timeout)
    line.done(f"{what}: running (pid {', '.join(str(p.pid) for p in procs)}) after {line.elapsed:.1f} s")


def _sim_args(servers: Servers, subject: str, interval: float, count: Optional[int], cans: int,
              seed: Optional[int], sequence: bool) -> "tuple[list, dict[str, str]]":
    if not isinstance(interval, (int, float)) or interval < 0:
        raise BadArgument(f"interval={interval!r} must be 0 (full speed) or a positive number of seconds")
    policy, env = _servers(servers)
    args = ["sim", *policy, "--subject", subject, "--interval", f"{interval:g}", "--cans", str(cans)]
    if count is not None:
        args += ["--count", str(count)]
    if seed is not None:
        args += ["--seed", str(seed)]
    if sequence:
        args.append("--sequence")
    return args, env


async def spawn_simulator(servers: Servers = None, *, name: str = "sim", interval: float = 0.5,
                          subject: str = SUBJECT, count: Optional[int] = None, cans: int = 1000,
                          seed: Optional[int] = None, sequence: bool = False,
                          timeout: float = 20.0) -> ServiceProcess:
    """Run ``trashlab sim`` as its own process (the lab's ``sim`` container); return once it publishes."""
    args, env = _sim_args(servers, subject, interval, count, cans, seed, sequence)
    svc, new = _launch("simulator", name, args, env, "publishing:", "publishing:")
    if new or not svc.ready:
        await _ready([svc], f"simulator {name}", timeout)
    return svc


async def spawn_simulators(n: int, servers: Servers = None, *, prefix: str = "sim", interval: float = 0.5,
                           subject: str = SUBJECT, timeout: float = 30.0, **options) -> "list[ServiceProcess]":
    """Run ``n`` simulator processes named ``sim-1`` ... ``sim-n`` at once; return when all publish."""
    if not isinstance(n, int) or n < 1:
        raise BadArgument(f"n={n!r}: give how many simulators to run, e.g. 3")
    procs = []
    for i in range(1, n + 1):
        args, env = _sim_args(servers, subject, interval, options.get("count"), options.get("cans", 1000),
                              options.get("seed"), options.get("sequence", False))
        procs.append(_launch("simulator", f"{prefix}-{i}", args, env, "publishing:", "publishing:")[0])
    if not all(p.ready for p in procs):
        await _ready(procs, f"{n} simulators", timeout)
    return procs


async def spawn_report(servers: Servers = None, *, name: str = "rep", subject: str = SUBJECT,
                       timeout: float = 20.0) -> ServiceProcess:
    """Run ``trashlab report`` as its own process (the lab's ``rep`` container); return once it listens."""
    policy, env = _servers(servers)
    svc, new = _launch("report", name, ["report", *policy, "--subject", subject], env, "report service ",
                       "Received report:")
    if new or not svc.ready:
        await _ready([svc], f"report service {name}", timeout)
    return svc


def broker_moved(old_hostport: str, new_hostport: str) -> None:
    """A broker came back on another port: each running process that was given the old one restarts
    with the new one (a container would find its broker by name; these were given an address)."""
    old = re.compile(re.escape(old_hostport) + r"(?!\d)")  # :4222 is not :42221
    for svc in list(_running.values()):
        if svc.alive and any(old.search(v) for v in svc.env.values()):
            log.warning("trashlab: %s %r restarts to follow its broker from %s to %s", svc.role, svc.name,
                        old_hostport, new_hostport, extra=NEWS)
            svc._respawn(svc.args, {k: old.sub(new_hostport, v) for k, v in svc.env.items()})


def uses(hostport: str) -> bool:
    """True if a running process spawned from here was given ``host:port``."""
    pattern = re.compile(re.escape(hostport) + r"(?!\d)")
    return any(svc.alive and any(pattern.search(v) for v in svc.env.values()) for svc in _running.values())


def summary(procs: Iterable[ServiceProcess]):
    """One row per process: name, pid, running, messages (published or received), rate per second."""
    import pandas as pd

    return pd.DataFrame([{"name": p.name, "pid": p.pid, "running": p.alive, "messages": p.messages,
                          "rate_per_s": round(p.rate, 1)} for p in procs],
                        columns=["name", "pid", "running", "messages", "rate_per_s"])


async def watch(procs: Iterable[ServiceProcess], seconds: float = 2.0, every: float = 0.25):
    """Let the processes run for ``seconds`` s with a live line of their message counts; return :func:`summary`."""
    import asyncio

    from .._progress import waiting

    procs = list(procs)
    line = StatusLine("")
    end = time.monotonic() + seconds
    with waiting(f"watching {', '.join(p.name for p in procs)} for {seconds:g} s"):
        while True:
            left = end - time.monotonic()
            counts = ", ".join(f"{p.name}: {p.count}" + ("" if p.alive else " (stopped)") for p in procs)
            line.update(f"{counts}  ({max(0.0, left):.1f} s to go)" if left > 0 else counts)
            if left <= 0:
                return summary(procs)
            await asyncio.sleep(min(every, left))


def spawned(role: Optional[str] = None) -> "list[ServiceProcess]":
    """The simulator/report processes started from here that still run (optionally one role)."""
    return [p for p in _running.values() if p.alive and (role is None or p.role == role)]


def stop_spawned(procs: Optional[Iterable[ServiceProcess]] = None) -> int:
    """Stop the given processes (default: every one spawned from here); return how many were running."""
    targets = procs if procs is not None else list(_running.values())
    return stop_processes([p.proc for p in targets])  # all at once, like Ctrl-C in every terminal


_hooks.on_port("processes", uses, lambda old_hostport, broker: broker_moved(old_hostport,
                                                                          f"{broker.client_host}:{broker.port}"))
_hooks.on_running("processes", lambda: [_hooks.Running(p.role, p.name, f"{p.role} process {p.name}")
                                        for p in spawned()])
