"""A TCP proxy in front of a real server that can hold back the server's answers: a hung node, seen
from the client, without touching the server.

Connections after the first ``pass_first`` go through held: what the client sends reaches the server,
but nothing comes back until ``release`` is set. ``held`` is set when a held connection is accepted;
``gave_up`` when a held client closed its end before the release (it stopped waiting).
"""

from __future__ import annotations

import socket
import threading
from typing import Tuple


class HoldingProxy:
    """127.0.0.1:``port`` forwards to ``target``; connections after the first ``pass_first`` are held."""

    def __init__(self, target: Tuple[str, int], *, pass_first: int = 0) -> None:
        self.target = target
        self.pass_first = pass_first
        self.release = threading.Event()
        self.held = threading.Event()
        self.gave_up = threading.Event()
        self.accepted = 0
        self._closed = False
        self._sockets: list = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="holdproxy-accept").start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:port`` (for a monitoring endpoint)."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            hold = self.accepted > self.pass_first
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            if hold:
                self.held.set()
            threading.Thread(target=self._pump, args=(client, upstream, hold, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, hold, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, hold: bool, from_client: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    if from_client and hold and not self.release.is_set():
                        self.gave_up.set()
                    break
                if hold and not from_client:
                    self.release.wait()
                dst.sendall(data)
        except OSError:
            if from_client and hold and not self.release.is_set():
                self.gave_up.set()
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Stop accepting, let everything held go, close every connection."""
        self._closed = True
        self.release.set()
        self._listener.close()
        for s in self._sockets:
            s.close()
