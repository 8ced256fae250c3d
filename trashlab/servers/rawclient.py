"""The one hand-written NATS client: a few lines of the text protocol over a bare socket.

For what nats-py cannot show: checking a join line's login (``CONNECT`` + ``PING``, read the answer)
without loading nats-py, and the server-side slow consumer (:class:`trashlab.servers.chaos.SlowConsumer`), which
subscribes and then never reads again, so the server's buffer for it fills. nats-py always reads.
Blocking calls: from async code run :func:`login` in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import json
import secrets
import socket
from typing import NamedTuple, Optional


class Login(NamedTuple):
    """An open connection after the handshake."""

    sock: socket.socket
    info: "dict | None"  # the server's INFO (None: the first line was not INFO, not a NATS server)
    answer: bytes  # the answer to CONNECT + PING: b"PONG", b"-ERR '...'", or b"" (closed, not a NATS server)

    @property
    def accepted(self) -> bool:
        """True if the server answered PONG: logged in (and subscribed)."""
        return self.answer.startswith(b"PONG")


def _open(host: str, port: int, timeout: float, rcvbuf: Optional[int]) -> socket.socket:
    error: Optional[OSError] = None
    for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            if rcvbuf:  # before connect: the receive window it advertises from the start
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect(addr)
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error or OSError(f"{host} has no address")


def login(host: str, port: int, *, name: str, user: Optional[str] = None, password: Optional[str] = None,
          token: Optional[str] = None, subscribe: Optional[str] = None, rcvbuf: Optional[int] = None,
          timeout: float = 5.0) -> Login:
    """Connect, read INFO, send CONNECT (and ``SUB subscribe 1``) and PING, read the answer line.

    The caller closes ``.sock`` (also when the login was refused). ``rcvbuf`` shrinks the socket's
    receive buffer (a slow consumer's tiny window). Raises OSError when the server cannot be reached or
    does not answer within ``timeout`` s.
    """
    sock = _open(host, port, timeout, rcvbuf)
    try:
        reader = sock.makefile("rb")
        try:
            first = reader.readline()
            if not first.startswith(b"INFO"):
                return Login(sock, None, first.strip())
            try:
                info = json.loads(first[4:])
            except ValueError:
                info = {}
            opts = {"verbose": False, "pedantic": False, "name": name, "lang": "raw-tcp", "version": "trashlab",
                    "protocol": 1}
            if user is not None:
                opts.update(user=user, **{"pass": password})
            elif token is not None:
                opts["auth_token"] = token
            sub = f"SUB {subscribe} 1\r\n" if subscribe else ""
            try:
                sock.sendall(f"CONNECT {json.dumps(opts)}\r\n{sub}PING\r\n".encode())
                while True:
                    line = reader.readline()
                    if not line or line.startswith((b"PONG", b"-ERR")):  # b"": the server closed the connection
                        return Login(sock, info, line.strip())
            except (ConnectionResetError, BrokenPipeError):
                # closed too: a server that hangs up before reading our CONNECT makes its kernel answer
                # that CONNECT with a reset, which then arrives instead of the end of the stream
                return Login(sock, info, b"")
        finally:
            reader.close()  # the socket stays open for the caller
    except BaseException:
        sock.close()
        raise


def request(host: str, port: int, subject: str, payload: bytes, *, name: str, user: Optional[str] = None,
            password: Optional[str] = None, timeout: float = 5.0) -> Optional[bytes]:
    """One request: log in subscribed to an inbox, publish ``payload`` with that inbox as reply subject, and
    return the reply's payload (None: no reply within ``timeout`` s, or the login refused). Raises OSError when
    the server cannot be reached."""
    inbox = f"_INBOX.trashlab.{secrets.token_hex(8)}"
    done = login(host, port, name=name, user=user, password=password, subscribe=inbox, timeout=timeout)
    try:
        if not done.accepted:
            return None
        done.sock.sendall(f"PUB {subject} {inbox} {len(payload)}\r\n".encode() + payload + b"\r\n")
        reader = done.sock.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return None
                if line.startswith(b"PING"):
                    done.sock.sendall(b"PONG\r\n")
                elif line.startswith(b"MSG "):
                    size = int(line.split()[-1])
                    return reader.read(size + 2)[:size]
        except TimeoutError:
            return None
        finally:
            reader.close()
    finally:
        done.sock.close()
