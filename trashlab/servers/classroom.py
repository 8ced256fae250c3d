"""Classroom mode: one class hub, one NATS account per student, an instructor who sees everyone.

``ClassHub(students=30).start()`` runs a nats-server whose configuration gives every student an
account of their own (generated password) that *exports* its ``trash-level`` stream, and an
``INSTRUCTOR`` account that *imports* each one as ``class.<student>.trash-level``. Subjects are
private to an account, so a student subscribed to ``>`` sees only their own traffic and cannot
publish into anyone else's; the instructor subscribed to ``class.>`` sees the whole class.

A student joins with one line, the one the roster gives them: ``trashlab.classroom.join("nats://s01:…@hub:4222?leaf=7422")``
in a notebook (or ``trashlab classroom join students/s01.txt`` in a terminal: a line typed on a
command line is shown to every user of the machine by ``ps``). From then on the student's own
brokers (the course's ``iot-msg``) connect to the hub as *leaf nodes* bound to the student's
account, so the course notebooks run unchanged and the class sees their traffic; clients without a
URL (``NATS_URL``) reach the hub directly. A ``ws://`` line makes the leaf connection over WebSocket,
for networks that only let web ports through.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import socket
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .._secrets import private_dir, redact, write_private
from ..errors import BadArgument, BrokerError, ConnectionFailed
from .broker import Broker, is_loopback
from .config import Ports, ServerConfig
from .connection import NEWS
from .keptfeed import KEPT_ACCOUNT, KEPT_IMPORT, KEPT_USER, keep_stream, kept_subject
from .joined import LEAF_SUFFIX, Seat, join_file, joined, leaf_remote, leaf_user  # noqa: F401  (trashlab.servers.classroom.joined, ...)
from .progress import PROGRESS
from .rawclient import login

log = logging.getLogger("trashlab")

#: The account name of the instructor, and the user name in it.
INSTRUCTOR = "instructor"
#: The subject each student's account exports (the lab's subject).
EXPORTED = "trash-level"
#: Where a student's readings appear in the instructor's account (``class.s01.trash-level``).
CLASS_PREFIX = "class"
ROSTER = "roster.txt"
INSTRUCTOR_FILE = "instructor.json"
#: A student's brokers log in to the hub as ``<student>.leaf`` (same password; '.' is in no student's name).
#: The one subject a leaf login may be sent, which nothing publishes: the hub sends a student's brokers
#: nothing, so two notebooks' brokers of one student stay apart. An allow-list, not ``deny: [">"]``:
#: nats-server 2.15 applies a leaf's subscribe-deny to what the student's broker *sends* once a wildcard
#: or queue subscription overlapping it arrives from the hub (the student's own ``>``), for good.
LEAF_RECEIVES = "_trashlab.class.nothing"
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
               leaf_port: Optional[int] = None, websocket_port: Optional[int] = None,
               jetstream: bool = False, keep: bool = False) -> "tuple[str, ...]":
    """The hub's own config blocks: its leaf-node (and WebSocket) listener, an account per student
    (exporting ``trash-level`` and ``trash-progress``), the instructor's account importing them all
    (with JetStream when ``jetstream``: the class page's memory; students' accounts never get it).

    A student's account has two logins with the student's password: ``s01`` for clients (plain or WebSocket),
    ``s01.leaf`` for the student's brokers as leaf nodes, which the hub sends nothing (see ``LEAF_RECEIVES``).

    ``keep`` adds the account that keeps every reading (:mod:`trashlab.servers.keptfeed`): JetStream on, the
    instructor's password for its user ``kept``, and a service per student, imported by that student's account
    only (``trash-level.kept`` there, ``kept.<student>.trash-level`` in the stream).
    """
    if not seats:
        raise BadArgument("a class needs at least one student")
    q = json.dumps
    lines = [f"leafnodes {{ listen: {q(f'{host}:{leaf_port or -1}')} }}"]
    if websocket_port is not None:
        lines.append(f"websocket {{ listen: {q(f'{host}:{websocket_port or -1}')}, no_tls: true }}")
    lines.append("accounts {")
    for student, password in seats.items():
        client = (f"{{user: {q(student)}, password: {q(password)}, "
                  f"allowed_connection_types: [\"STANDARD\", \"WEBSOCKET\"]}}")
        leaf = (f"{{user: {q(leaf_user(student))}, password: {q(password)}, "
                f"allowed_connection_types: [\"LEAFNODE\", \"LEAFNODE_WS\"], "
                f"permissions: {{subscribe: {{allow: [{q(LEAF_RECEIVES)}]}}}}}}")
        kept = (f", imports: [ {{service: {{account: {KEPT_ACCOUNT}, subject: {q(kept_subject(student))}}}, "
                f"to: {q(KEPT_IMPORT)}}} ]") if keep else ""
        lines.append(f"  {_account(student)}: {{ users: [ {client}, {leaf} ], exports: [ {_exports()} ]{kept} }}")
    imports = ", ".join(f"{{stream: {{account: {_account(s)}, subject: {q(subject)}}}, to: {q(class_subject(s, subject))}}}"
                        for s in seats for subject in STUDENT_EXPORTS)
    lines.append(f"  {INSTRUCTOR.upper()}: {{ {'jetstream: enabled, ' if jetstream else ''}users: [ {{user: {q(INSTRUCTOR)}, password: {q(instructor_password)}}} ], "
                 f"imports: [ {imports} ] }}")
    if keep:
        exports = ", ".join(f"{{service: {q(kept_subject(s))}, accounts: [{_account(s)}]}}" for s in seats)
        lines.append(f"  {KEPT_ACCOUNT}: {{ jetstream: enabled, users: [ {{user: {q(KEPT_USER)}, "
                     f"password: {q(instructor_password)}}} ], exports: [ {exports} ] }}")
    lines.append("}")
    return tuple(lines)


#: What a student's account exports, each seen by the instructor as ``class.<student>.<subject>``: the
#: lab's readings and the student's exercise progress (:mod:`trashlab.servers.progress`).
STUDENT_EXPORTS = (EXPORTED, PROGRESS)


def _exports() -> str:
    return ", ".join(f"{{stream: {json.dumps(subject)}}}" for subject in STUDENT_EXPORTS)


class ClassHub(Broker):
    """The class's nats-server: one account per student, an instructor account that sees them all.

    ``students`` is a count (``s01``…) or a list of names; ``passwords`` reuses earlier credentials
    (a restarted hub keeps the roster valid). ``advertise`` is the host name students use in their
    join lines (default: this machine's name when listening beyond loopback). ``websocket_port=0``
    adds a WebSocket listener on a free port (``None``: no WebSocket). ``store_dir`` (or ``jetstream=True``
    for a temporary one) gives the instructor's account JetStream, where the class page keeps what it
    knows across page reloads and hub restarts (``classroom serve`` uses ``<class folder>/jetstream``).
    ``keep_readings=True`` (which turns JetStream on) keeps every student's readings in the stream
    ``CLASS_READINGS``: the join lines say ``keep=1`` and the students' brokers send each reading until the hub
    acknowledges it (:mod:`trashlab.servers.keptfeed`); :attr:`kept_url` reads them.
    """

    _joins_class = False  # the hub never becomes a leaf of a class itself

    def __init__(self, students: Union[int, Sequence[str]] = 30, *, name: str = "class-hub",
                 host: str = "127.0.0.1", port: Optional[int] = None, http_port: Optional[int] = None,
                 leaf_port: Optional[int] = None, websocket_port: Optional[int] = None,
                 advertise: Optional[str] = None, passwords: Optional[Mapping[str, str]] = None,
                 start_timeout: float = 10.0, jetstream: bool = False, store_dir: Optional[str] = None,
                 keep_readings: bool = False) -> None:
        super().__init__(name, port=port, host=host, http_port=http_port, start_timeout=start_timeout,
                         jetstream=jetstream or keep_readings or store_dir is not None, store_dir=store_dir)
        self.keep_readings = bool(keep_readings)
        names = student_names(students) if isinstance(students, int) else list(students)
        for s in names:
            if not isinstance(s, str) or not _STUDENT.match(s) or s in (INSTRUCTOR, KEPT_USER):
                raise BadArgument(f"student name {s!r}: use lower-case letters, digits, '-' or '_' "
                                  f"(starting with a letter, not {INSTRUCTOR!r} or {KEPT_USER!r})")
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
                            websocket_port=self.websocket_port,
                            # the class page's memory on one hub; a clustered hub's JetStream keeps readings only
                            jetstream=store is not None and not self.cluster, keep=self.keep_readings)
        return replace(super()._config(ports, store, ports_dir), blocks=blocks)

    def start(self) -> "ClassHub":
        """Start the hub and wait until it accepts clients (students' and the instructor's)."""
        super().start()
        self._read_listeners()
        self._keep_stream()
        return self

    async def astart(self) -> "ClassHub":
        """Like :meth:`start`, without blocking the event loop."""
        await super().astart()
        self._read_listeners()
        await asyncio.to_thread(self._keep_stream)
        return self

    def _keep_stream(self) -> None:
        """A hub that keeps readings makes their stream (there already when it restarts on its store)."""
        if self.keep_readings:
            keep_stream(self.kept_url, replicas=1)

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
        return f"{self.student_url(student, host=host)}?leaf={self.leaf_port}" + ("&keep=1" if self.keep_readings else "")

    def websocket_line(self, student: str, *, host: Optional[str] = None) -> str:
        """A join line over WebSocket (``ws://s01:PASSWORD@host:port``), for web-ports-only networks."""
        self._require_started()
        if self.websocket_port is None:
            raise BrokerError(f"hub {self.name} has no WebSocket listener: start it with websocket_port=0 "
                              "(CLI: --websocket-port)", name=self.name)
        return f"ws://{student}:{self._seat(student)}@{host or self.public_host}:{self.websocket_port}"

    def url_for(self, user: Optional[str] = None) -> str:
        """Client URL on this machine logging in as ``user``: a student (default: the first one) or the
        instructor (``"instructor"``), e.g. ``nats://s01:PASSWORD@127.0.0.1:4222``."""
        if user == INSTRUCTOR:
            return self.instructor_url
        return self.student_url(user or self.students[0], host=self.client_host)

    def _logins(self, user: str) -> str:
        """``user``'s client URL with the instructor's password (a clustered hub: one URL per node)."""
        self._require_started()
        return f"nats://{user}:{self.instructor_password}@{self.client_host}:{self.port}"

    @property
    def kept_url(self) -> str:
        """The login that reads the kept readings (``kept``, the instructor's password): stream ``CLASS_READINGS``."""
        return self._logins(KEPT_USER)

    @property
    def instructor_url(self) -> str:
        """The instructor's client URL (sees ``class.<student>.trash-level`` for every student)."""
        return self._logins(INSTRUCTOR)

    def write_roster(self, folder: Union[str, Path] = "class") -> Path:
        """Write ``roster.txt`` (one join line per student), ``students/<student>.txt`` (each line as a file
        of its own) and ``instructor.json`` (the class view's connection) into ``folder``, readable by you
        only (files 0600, folders 0700); returns the roster's path."""
        self._require_started()
        folder = private_dir(folder, tighten=False)  # made 0700; a folder you named keeps its mode
        lines = ["# trashlab class roster: hand each student their own line (it holds their password).",
                 "# A student runs it once, in a notebook:  trashlab.classroom.join(\"<line>\")",
                 "#   or in a terminal: trashlab classroom join students/<student>.txt  (or `join -`, then paste it)",
                 "# student  join-line" + ("  websocket-line" if self.websocket_port is not None else "")]
        for s in self.students:
            row = f"{s}  {self.join_line(s)}"
            if self.websocket_port is not None:
                row += f"  {self.websocket_line(s)}"
            lines.append(row)
        roster = folder / ROSTER
        write_private(roster, "\n".join(lines) + "\n")
        seats = private_dir(folder / "students")  # the same lines as one file per student, to hand out as files
        for row in lines[4:]:
            write_private(seats / f"{row.split()[0]}.txt", row + "\n")
        info = {"hub": self.name, "instructor_url": self.instructor_url, "monitor_url": self.monitor_url,
                "students": self.students, "passwords": {**self.seats, INSTRUCTOR: self.instructor_password},
                "port": self.port, "leaf_port": self.leaf_port, "websocket_port": self.websocket_port,
                **({"kept_url": self.kept_url} if self.keep_readings else {})}
        write_private(folder / INSTRUCTOR_FILE, json.dumps(info, indent=1) + "\n")
        return roster

    def __repr__(self) -> str:
        if self.running:
            return (f"<ClassHub {self.name} {redact(self.url)} ({len(self.seats)} students, leaf port {self.leaf_port}) "
                    f"pid={self.pid}>")
        return f"<ClassHub {self.name} {len(self.seats)} students, {'stopped' if self._run else 'not started'}>"


def read_class(folder: Union[str, Path] = "class") -> dict:
    """The instructor's file written by :meth:`ClassHub.write_roster` (URLs, students, passwords)."""
    path = Path(folder) / INSTRUCTOR_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BadArgument(f"no class in {Path(folder).resolve()}: start one with "
                          f"`trashlab classroom serve --students 30 --dir {folder}`") from None  # it names the folder


# ----- the student's side: joining ------------------------------------------------------------
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
        raise BadArgument(f"join line {redact(url)} has a bad port: paste the roster line as it is") from None  # its cause quotes the password
    if not parts.username or not parts.password or not parts.hostname or port is None:
        raise BadArgument(f"join line {redact(url)} lacks the student name, password, host or port: "
                          "paste the roster line as it is")
    student = parts.username.removesuffix(LEAF_SUFFIX)
    login = f"{leaf_user(student)}:{parts.password}@{parts.netloc.rpartition('@')[2]}"
    if parts.scheme in ("ws", "wss"):
        return Seat(student, None, urlunsplit((parts.scheme, login, parts.path, "", "")))
    if parts.scheme not in ("nats", "tls"):
        raise BadArgument(f"join line scheme {parts.scheme!r}: expected nats:// (or ws:// over WebSocket)")
    client = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    query = parse_qs(parts.query)
    leaf = (query.get("leaf") or [""])[0]
    if leaf.isdigit():
        leaf_url = f"nats-leaf://{leaf_user(student)}:{parts.password}@{parts.hostname}:{leaf}"
    elif "://" in leaf:
        leaf_url = leaf
    else:
        raise BadArgument(f"join line {redact(url)} has no ?leaf=PORT: paste the whole roster line")
    for node_client, node_leaf in _other_nodes(url, parts.scheme, student, parts.password):
        client, leaf_url = f"{client},{node_client}", f"{leaf_url},{node_leaf}"
    keep = (query.get("keep") or [""])[0] == "1"  # the hub keeps readings: send each until kept
    return Seat(student, client, leaf_url, keep)


def _other_nodes(url: str, scheme: str, student: str, password: str) -> "list[tuple[str, str]]":
    """A clustered hub's further nodes in a join line (``&node=HOST:PORT:LEAFPORT``, :mod:`.hubcluster`):
    (client URL, leaf URL) for each."""
    found = []
    for node in parse_qs(urlsplit(url).query).get("node") or []:
        host, _, ports = node.partition(":")
        client_port, _, leaf_port = ports.partition(":")
        if not host or not client_port.isdigit() or not leaf_port.isdigit():
            raise BadArgument(f"join line {redact(url)} has a bad node={node!r} (expected HOST:PORT:LEAFPORT): "
                              "paste the roster line as it is")
        found.append((f"{scheme}://{student}:{password}@{host}:{client_port}",
                      f"nats-leaf://{leaf_user(student)}:{password}@{host}:{leaf_port}"))
    return found


def _check_login(url: str, timeout: float = 3.0) -> None:
    """Log in once with the NATS protocol (CONNECT + PING) and raise a one-line error if refused."""
    parts = urlsplit(url)
    try:
        done = login(parts.hostname or "", parts.port or 4222, name="trashlab-join", user=parts.username,
                     password=parts.password, timeout=timeout)
        done.sock.close()
    except OSError as e:
        raise ConnectionFailed(f"cannot reach the class hub {redact(url)} ({e.strerror or e}): is the hub running, "
                               "and is this the host your instructor gave?", urls=[redact(url)]) from e
    answer = done.answer
    if done.info is None:
        raise ConnectionFailed(f"{redact(url)} is not a NATS server: check the host and port of your join line",
                               urls=[redact(url)])
    if answer.startswith(b"-ERR") and b"Authorization" in answer:
        raise ConnectionFailed(f"the class hub {redact(url)} refused the login (authorization violation): "
                               "the password in your join line is wrong; copy your own roster line again",
                               urls=[redact(url)])
    if not answer.startswith(b"PONG"):
        raise ConnectionFailed(f"the class hub {redact(url)} answered {answer[:60]!r} to the login", urls=[redact(url)])


def _check_any_login(urls: Sequence[str], timeout: float = 3.0) -> None:
    """:func:`_check_login` on the first node of a (clustered) hub that answers; a refused password fails at once."""
    for i, url in enumerate(urls):
        try:
            return _check_login(url, timeout)
        except ConnectionFailed as e:
            if i == len(urls) - 1 or not isinstance(e.__cause__, OSError):
                raise


def join(line: str, *, check: bool = True, remember: bool = True) -> Seat:
    """Join the class with your roster line: your brokers become leaf nodes of the hub (so the course
    notebooks run unchanged and the class sees them) and ``NATS_URL`` points clients without a URL
    at the hub. Remembered for every notebook and terminal until :func:`leave`."""
    seat = parse_join_line(line)
    if check and seat.client_url:
        _check_any_login(seat.client_url.split(","))
    if remember:
        path = join_file()
        private_dir(path.parent, tighten=False)
        write_private(path, json.dumps({"student": seat.student, "client_url": seat.client_url,
                                         "leaf_url": seat.leaf_url, "keep": seat.keep}) + "\n")
    if seat.client_url:
        os.environ["NATS_URL"] = seat.client_url
    log.warning("trashlab: joined the class as %s: brokers you start from now on connect to the hub %s",
                seat.student, redact(seat.leaf_url), extra=NEWS)
    return seat


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
