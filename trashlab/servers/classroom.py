"""Classroom mode: one class hub, one NATS account per student, an instructor who sees everyone.

``ClassHub(students=30).start()`` runs a nats-server whose configuration gives every student an
account of their own (generated password) that *exports* its ``trash-level`` stream, and an
``INSTRUCTOR`` account that *imports* each one as ``class.<student>.trash-level``. Subjects are
private to an account, so a student subscribed to ``>`` sees only their own traffic and cannot
publish into anyone else's; the instructor subscribed to ``class.>`` sees the whole class.

A student joins with one line, the one the roster gives them: ``trashlab.classroom.join("nats://s01:…@hub:4222?leaf=7422")``
in a notebook (or ``trashlab classroom join "…"`` in a terminal). From then on the student's own
brokers (the course's ``iot-msg``) connect to the hub as *leaf nodes* bound to the student's
account, so the course notebooks run unchanged and the class sees their traffic; clients without a
URL (``NATS_URL``) reach the hub directly. A ``ws://`` line makes the leaf connection over WebSocket,
for networks that only let web ports through.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..errors import BadArgument, BrokerError, ConnectionFailed
from .broker import Broker, is_loopback
from .config import Ports, ServerConfig
from .connection import mask

log = logging.getLogger("trashlab")

#: The account name of the instructor, and the user name in it.
INSTRUCTOR = "instructor"
#: The subject each student's account exports (the lab's subject).
EXPORTED = "trash-level"
#: Where a student's readings appear in the instructor's account (``class.s01.trash-level``).
CLASS_PREFIX = "class"
ROSTER = "roster.txt"
INSTRUCTOR_FILE = "instructor.json"
_STUDENT = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def student_names(count: int) -> list:
    """``s01`` … ``s30`` (zero-padded to the width of ``count``, at least two digits)."""
    if not isinstance(count, int) or not 1 <= count <= 1000:
        raise BadArgument(f"students={count!r}: give a number of students from 1 to 1000, e.g. 30")
    width = max(2, len(str(count)))
    return [f"s{i:0{width}d}" for i in range(1, count + 1)]


def _password() -> str:
    return secrets.token_urlsafe(12)


def _account(student: str) -> str:
    return student.upper().replace("-", "_")


def class_subject(student: str, subject: str = EXPORTED) -> str:
    """The instructor's name for a student's subject: ``class.s01.trash-level``."""
    return f"{CLASS_PREFIX}.{student}.{subject}"


def hub_blocks(seats: Mapping[str, str], instructor_password: str, *, host: str = "127.0.0.1",
               leaf_port: Optional[int] = None, websocket_port: Optional[int] = None) -> "tuple[str, ...]":
    """The hub's own config blocks: its leaf-node (and WebSocket) listener, an account per student
    (exporting ``trash-level``), the instructor's account importing them all."""
    if not seats:
        raise BadArgument("a class needs at least one student")
    q = json.dumps
    lines = [f"leafnodes {{ listen: {q(f'{host}:{leaf_port or -1}')} }}"]
    if websocket_port is not None:
        lines.append(f"websocket {{ listen: {q(f'{host}:{websocket_port or -1}')}, no_tls: true }}")
    lines.append("accounts {")
    for student, password in seats.items():
        lines.append(f"  {_account(student)}: {{ users: [ {{user: {q(student)}, password: {q(password)}}} ], "
                     f"exports: [ {{stream: {q(EXPORTED)}}} ] }}")
    imports = ", ".join(f"{{stream: {{account: {_account(s)}, subject: {q(EXPORTED)}}}, to: {q(class_subject(s))}}}"
                        for s in seats)
    lines.append(f"  {INSTRUCTOR.upper()}: {{ users: [ {{user: {q(INSTRUCTOR)}, password: {q(instructor_password)}}} ], "
                 f"imports: [ {imports} ] }}")
    lines.append("}")
    return tuple(lines)


class ClassHub(Broker):
    """The class's nats-server: one account per student, an instructor account that sees them all.

    ``students`` is a count (``s01``…) or a list of names; ``passwords`` reuses earlier credentials
    (a restarted hub keeps the roster valid). ``advertise`` is the host name students use in their
    join lines (default: this machine's name when listening beyond loopback). ``websocket_port=0``
    adds a WebSocket listener on a free port (``None``: no WebSocket).
    """

    _joins_class = False  # the hub never becomes a leaf of a class itself

    def __init__(self, students: Union[int, Sequence[str]] = 30, *, name: str = "class-hub",
                 host: str = "127.0.0.1", port: Optional[int] = None, http_port: Optional[int] = None,
                 leaf_port: Optional[int] = None, websocket_port: Optional[int] = None,
                 advertise: Optional[str] = None, passwords: Optional[Mapping[str, str]] = None,
                 start_timeout: float = 10.0) -> None:
        super().__init__(name, port=port, host=host, http_port=http_port, start_timeout=start_timeout)
        names = student_names(students) if isinstance(students, int) else list(students)
        for s in names:
            if not isinstance(s, str) or not _STUDENT.match(s) or s == INSTRUCTOR:
                raise BadArgument(f"student name {s!r}: use lower-case letters, digits, '-' or '_' "
                                  f"(starting with a letter, not {INSTRUCTOR!r})")
        if len(set(names)) != len(names) or not names:
            raise BadArgument("student names must be unique, and there must be at least one")
        for label, value in (("leaf_port", leaf_port), ("websocket_port", websocket_port)):
            if value is not None and (not isinstance(value, int) or not 0 <= value < 65536):
                raise BadArgument(f"{label}={value!r} is not a TCP port: give 1-65535, or 0 for a free one")
        given = dict(passwords or {})
        self.seats = {s: given.get(s) or _password() for s in names}
        self.instructor_password = given.get(INSTRUCTOR) or _password()
        self.leaf_port = leaf_port
        self.websocket_port = websocket_port
        self.advertise = advertise

    # ----- configuration ------------------------------------------------------------------
    def _check_security(self) -> None:
        pass  # every account has a password: the hub never accepts anonymous clients, wherever it listens

    def _config(self, ports: Ports, store: Optional[str], ports_dir: Optional[str]) -> ServerConfig:
        """The broker's config (ports, monitoring on 127.0.0.1) plus the hub's listeners and accounts."""
        blocks = hub_blocks(self.seats, self.instructor_password, host=self.host, leaf_port=self.leaf_port,
                            websocket_port=self.websocket_port)
        return replace(super()._config(ports, store, ports_dir), blocks=blocks)

    def start(self) -> "ClassHub":
        """Start the hub and wait until it accepts clients (students' and the instructor's)."""
        super().start()
        self._read_listeners()
        return self

    async def astart(self) -> "ClassHub":
        """Like :meth:`start`, without blocking the event loop."""
        await super().astart()
        self._read_listeners()
        return self

    def _read_listeners(self) -> None:
        from .monitor import fetch

        varz = fetch(self.monitor_url, "varz")
        self.leaf_port = (varz.get("leaf") or {}).get("port") or self.leaf_port
        ws = (varz.get("websocket") or {}).get("port")
        if self.websocket_port is not None and ws:
            self.websocket_port = ws

    # ----- who connects how ---------------------------------------------------------------
    @property
    def students(self) -> list:
        """The students' names, in roster order."""
        return list(self.seats)

    @property
    def public_host(self) -> str:
        """The host name in the students' join lines."""
        if self.advertise:
            return self.advertise
        return self.client_host if is_loopback(self.client_host) else socket.gethostname()

    def _seat(self, student: str) -> str:
        if student not in self.seats:
            raise BadArgument(f"no student {student!r} in this class: use one of {', '.join(self.students[:5])}"
                              + (" …" if len(self.seats) > 5 else ""))
        return self.seats[student]

    def student_url(self, student: str, *, host: Optional[str] = None) -> str:
        """The student's client URL, ``nats://s01:PASSWORD@host:port``."""
        self._require_started()
        return f"nats://{student}:{self._seat(student)}@{host or self.public_host}:{self.port}"

    def join_line(self, student: str, *, host: Optional[str] = None) -> str:
        """What the student passes to ``trashlab.classroom.join``: the client URL plus ``?leaf=PORT``."""
        return f"{self.student_url(student, host=host)}?leaf={self.leaf_port}"

    def websocket_line(self, student: str, *, host: Optional[str] = None) -> str:
        """A join line over WebSocket (``ws://s01:PASSWORD@host:port``), for web-ports-only networks."""
        self._require_started()
        if self.websocket_port is None:
            raise BrokerError(f"hub {self.name} has no WebSocket listener: start it with websocket_port=0 "
                              "(CLI: --websocket-port)")
        return f"ws://{student}:{self._seat(student)}@{host or self.public_host}:{self.websocket_port}"

    @property
    def instructor_url(self) -> str:
        """The instructor's client URL (sees ``class.<student>.trash-level`` for every student)."""
        self._require_started()
        return f"nats://{INSTRUCTOR}:{self.instructor_password}@{self.client_host}:{self.port}"

    def write_roster(self, folder: Union[str, Path] = "class") -> Path:
        """Write ``roster.txt`` (one join line per student), ``students/<student>.txt`` (each line as a file
        of its own) and ``instructor.json`` (the class view's connection) into ``folder``, readable by you
        only; returns the roster's path."""
        self._require_started()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["# trashlab class roster: hand each student their own line (it holds their password).",
                 "# A student runs it once, in a notebook:  trashlab.classroom.join(\"<line>\")",
                 "#                     or in a terminal:   trashlab classroom join \"<line>\"",
                 "# student  join-line" + ("  websocket-line" if self.websocket_port is not None else "")]
        for s in self.students:
            row = f"{s}  {self.join_line(s)}"
            if self.websocket_port is not None:
                row += f"  {self.websocket_line(s)}"
            lines.append(row)
        roster = folder / ROSTER
        _write_private(roster, "\n".join(lines) + "\n")
        seats = folder / "students"  # the same lines as one file per student, to hand out as files
        seats.mkdir(exist_ok=True)
        for row in lines[4:]:
            _write_private(seats / f"{row.split()[0]}.txt", row + "\n")
        info = {"hub": self.name, "instructor_url": self.instructor_url, "monitor_url": self.monitor_url,
                "students": self.students, "passwords": {**self.seats, INSTRUCTOR: self.instructor_password},
                "port": self.port, "leaf_port": self.leaf_port, "websocket_port": self.websocket_port}
        _write_private(folder / INSTRUCTOR_FILE, json.dumps(info, indent=1) + "\n")
        return roster

    def __repr__(self) -> str:
        if self.running:
            return (f"<ClassHub {self.name} {self.url} ({len(self.seats)} students, leaf port {self.leaf_port}) "
                    f"pid={self.pid}>")
        return f"<ClassHub {self.name} {len(self.seats)} students, {'stopped' if self._run else 'not started'}>"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def read_class(folder: Union[str, Path] = "class") -> dict:
    """The instructor's file written by :meth:`ClassHub.write_roster` (URLs, students, passwords)."""
    path = Path(folder) / INSTRUCTOR_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BadArgument(f"no class in {Path(folder).resolve()}: start one with "
                          f"`trashlab classroom serve --students 30 --dir {folder}`") from None


# ----- the student's side: joining ------------------------------------------------------------
@dataclass(frozen=True)
class Seat:
    """What a join line says: the student, the client URL (None over WebSocket) and the leaf URL."""

    student: str
    client_url: Optional[str]
    leaf_url: str

    def __repr__(self) -> str:  # never show the password
        return f"Seat(student={self.student!r}, client_url={_masked(self.client_url)}, leaf_url={_masked(self.leaf_url)})"


def _masked(url: Optional[str]) -> str:
    return repr(mask(url)) if url else "None"


def parse_join_line(line: str) -> Seat:
    """Read a roster line (``s01  nats://s01:PW@host:4222?leaf=7422``), a bare URL, a ``ws://`` URL,
    or the path of a file holding one."""
    text = (line or "").strip()
    if text and "://" not in text and Path(text).is_file():
        text = Path(text).read_text().strip()
    tokens = [t for t in text.split() if "://" in t]
    if not tokens:
        raise BadArgument("this is not a join line: paste the line from the class roster, "
                          "e.g. nats://s01:PASSWORD@HOST:4222?leaf=7422")
    url = tokens[0]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadArgument(f"join line {mask(url)} has a bad port: paste the roster line as it is") from None
    if not parts.username or not parts.password or not parts.hostname or port is None:
        raise BadArgument(f"join line {mask(url)} lacks the student name, password, host or port: "
                          "paste the roster line as it is")
    student = parts.username
    if parts.scheme in ("ws", "wss"):
        return Seat(student, None, urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    if parts.scheme not in ("nats", "tls"):
        raise BadArgument(f"join line scheme {parts.scheme!r}: expected nats:// (or ws:// over WebSocket)")
    client = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    leaf = (parse_qs(parts.query).get("leaf") or [""])[0]
    if leaf.isdigit():
        leaf_url = f"nats-leaf://{parts.username}:{parts.password}@{parts.hostname}:{leaf}"
    elif "://" in leaf:
        leaf_url = leaf
    else:
        raise BadArgument(f"join line {mask(url)} has no ?leaf=PORT: paste the whole roster line")
    return Seat(student, client, leaf_url)


def join_file() -> Path:
    """Where a joined class is remembered for every kernel and terminal (``TRASHLAB_CLASS_FILE`` overrides)."""
    override = os.environ.get("TRASHLAB_CLASS_FILE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "trashlab" / "class.json"


def _check_login(url: str, timeout: float = 3.0) -> None:
    """Log in once with the NATS protocol (CONNECT + PING) and raise a one-line error if refused."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 4222), timeout=timeout) as sock:
            f = sock.makefile("rwb")
            if not f.readline().startswith(b"INFO"):
                raise ConnectionFailed(f"{mask(url)} is not a NATS server: check the host and port of your join line")
            creds = {"user": parts.username, "pass": parts.password, "verbose": False, "pedantic": False,
                     "name": "trashlab-join", "lang": "python", "version": "trashlab", "protocol": 1}
            f.write(b"CONNECT " + json.dumps(creds).encode() + b"\r\nPING\r\n")
            f.flush()
            answer = f.readline()
    except OSError as e:
        raise ConnectionFailed(f"cannot reach the class hub {mask(url)} ({e.strerror or e}): is the hub running, "
                               "and is this the host your instructor gave?") from None
    if answer.startswith(b"-ERR") and b"Authorization" in answer:
        raise ConnectionFailed(f"the class hub {mask(url)} refused the login (authorization violation): "
                               "the password in your join line is wrong; copy your own roster line again")
    if not answer.startswith(b"PONG"):
        raise ConnectionFailed(f"the class hub {mask(url)} answered {answer[:60]!r} to the login")


def join(line: str, *, check: bool = True, remember: bool = True) -> Seat:
    """Join the class with your roster line: your brokers become leaf nodes of the hub (so the course
    notebooks run unchanged and the class sees them) and ``NATS_URL`` points clients without a URL
    at the hub. Remembered for every notebook and terminal until :func:`leave`."""
    seat = parse_join_line(line)
    if check and seat.client_url:
        _check_login(seat.client_url)
    if remember:
        path = join_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps({"student": seat.student, "client_url": seat.client_url,
                                         "leaf_url": seat.leaf_url}) + "\n")
    if seat.client_url:
        os.environ["NATS_URL"] = seat.client_url
    log.warning("trashlab: joined the class as %s: brokers you start from now on connect to the hub %s",
                seat.student, mask(seat.leaf_url))
    return seat


def joined() -> Optional[Seat]:
    """The class this machine joined (see :func:`join`), or None."""
    try:
        data = json.loads(join_file().read_text())
        return Seat(data["student"], data.get("client_url"), data["leaf_url"])
    except (OSError, ValueError, KeyError):
        return None


def leave() -> bool:
    """Leave the class: brokers started from now on stay private; True if a class was joined."""
    seat = joined()
    try:
        join_file().unlink()
    except FileNotFoundError:
        pass
    if seat is not None and seat.client_url and os.environ.get("NATS_URL") == seat.client_url:
        del os.environ["NATS_URL"]
    return seat is not None


def leaf_remote() -> Optional[str]:
    """The leaf URL a broker started now should connect to (None when no class is joined)."""
    seat = joined()
    return seat.leaf_url if seat is not None else None


# ----- `trashlab classroom ...` ----------------------------------------------------------------
def add_cli(sub) -> None:
    """Add ``trashlab classroom serve|view|join|leave`` to the ``trashlab`` command's subparsers."""
    p = sub.add_parser("classroom", help="a class hub: one account per student, the instructor sees all")
    cmds = p.add_subparsers(dest="classroom_command", metavar="ACTION")
    cmds.required = True
    s = cmds.add_parser("serve", help="run the class hub in the foreground and write the roster (Ctrl-C stops it)")
    s.add_argument("--students", type=int, default=30, help="number of students, s01, s02, ... (default 30)")
    s.add_argument("--dir", default="class", help="folder for roster.txt and instructor.json (default ./class); "
                                                   "an existing one keeps its passwords")
    s.add_argument("--name", default="class-hub", help="server name (default class-hub)")
    s.add_argument("--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for a room)")
    s.add_argument("--port", type=int, default=None, help="client port (default: a free one; 4222 for a room)")
    s.add_argument("--leaf-port", type=int, default=None, help="leaf-node port (default: a free one; 7422 for a room)")
    s.add_argument("--websocket-port", type=int, default=None,
                   help="also accept leaf nodes over WebSocket on this port (0: a free one)")
    s.add_argument("--advertise", default=None, help="host name students use (default: this machine's name)")
    v = cmds.add_parser("view", help="serve the live class page with Voila on 127.0.0.1")
    v.add_argument("--dir", default="class", help="the folder `classroom serve` wrote (default ./class)")
    v.add_argument("--port", type=int, default=8866, help="web port of the page (default 8866)")
    j = cmds.add_parser("join", help="join a class with your roster line (your brokers become leaf nodes of the hub)")
    j.add_argument("line", help="your line from the roster, e.g. nats://s01:PASSWORD@HOST:4222?leaf=7422")
    cmds.add_parser("leave", help="leave the class: brokers started from now on stay private")


def cli(args) -> int:
    """Run ``trashlab classroom <action>``; returns the exit code."""
    if args.classroom_command == "join":
        seat = join(args.line)
        print(f"joined the class as {seat.student}: brokers you start from now on are leaf nodes of "
              f"{mask(seat.leaf_url)}", flush=True)
        return 0
    if args.classroom_command == "leave":
        print("left the class" if leave() else "no class was joined", flush=True)
        return 0
    if args.classroom_command == "view":
        return _view(args)
    return _serve(args)


def _serve(args) -> int:
    from ..cli import foreground

    folder = Path(args.dir)
    passwords, students = None, args.students
    ports: tuple = (args.port, args.leaf_port, args.websocket_port)
    if (folder / INSTRUCTOR_FILE).exists():  # a restarted hub: the lines handed out stay valid
        info = read_class(folder)
        passwords, students = info["passwords"], info["students"]
        ports = tuple(given if given is not None else info.get(key) for given, key in
                      zip(ports, ("port", "leaf_port", "websocket_port"), strict=True))
        print(f"reusing the roster in {folder} ({len(students)} students, same passwords and ports)", flush=True)
    hub = ClassHub(students, name=args.name, host=args.listen, port=ports[0], leaf_port=ports[1],
                   websocket_port=ports[2], advertise=args.advertise, passwords=passwords)

    def announce() -> None:
        roster = hub.write_roster(folder)
        print(f"class hub {hub.name}: {len(hub.students)} students, clients {hub.public_host}:{hub.port}, "
              f"leaf nodes :{hub.leaf_port}" + (f", WebSocket :{hub.websocket_port}" if hub.websocket_port else ""),
              flush=True)
        print(f"roster: {roster.resolve()} (one join line per student; it holds their passwords: hand out each "
              f"line to its student only)", flush=True)
        print(f"class page: trashlab classroom view --dir {folder}   monitoring: {hub.monitor_url}", flush=True)
        print(f"pid {hub.pid}; Ctrl-C stops the hub", flush=True)

    return foreground(hub, announce, f"the class hub {hub.name}", f"class hub {hub.name}")


def _view(args) -> int:
    import shutil
    import subprocess
    import sys

    read_class(args.dir)  # a missing class is one line, before Voila starts
    from ..notebook.classview import VIEW_NOTEBOOK

    voila = shutil.which("voila") or os.path.join(os.path.dirname(sys.executable), "voila")
    if not os.path.exists(voila):
        raise BrokerError("Voila is not installed: `pip install voila==0.5.13` (instructor machines only), "
                          "or open trashlab/notebook/class-view.ipynb in JupyterLab")
    env = {**os.environ, "TRASHLAB_CLASS_DIR": str(Path(args.dir).resolve())}
    print(f"class page: http://127.0.0.1:{args.port}/ (Ctrl-C stops it)", flush=True)
    cmd = [voila, str(VIEW_NOTEBOOK), "--no-browser", f"--port={args.port}", "--Voila.ip=127.0.0.1",
           "--ServerApp.ip=127.0.0.1"]
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0
