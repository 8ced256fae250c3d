"""The protocol x-ray: ``Broker(trace=True).protocol(name)`` shows what one client said on the wire."""

import asyncio
import time

import nats
import pytest

import trashlab
from conftest import unique
from trashlab.errors import BrokerError


def _exchange(url: str, name: str, subject: str) -> bytes:
    async def go() -> bytes:
        nc = await nats.connect(url, name=name)
        got: asyncio.Future = asyncio.get_running_loop().create_future()

        async def on_msg(msg) -> None:
            if not got.done():
                got.set_result(msg.data)
        await nc.subscribe(subject, cb=on_msg)
        await nc.publish(subject, b"hello")
        data = await asyncio.wait_for(got, 5)
        await nc.close()
        return data
    return asyncio.run(go())


def _wait_for_lines(broker, name: str, needed: str, seconds: float = 5.0):
    lines = broker.protocol(name)
    deadline = time.monotonic() + seconds
    while not any(needed in ln for ln in lines) and time.monotonic() < deadline:
        time.sleep(0.05)  # the polling loop of this wait helper
        lines = broker.protocol(name)
    return lines


def test_protocol_shows_one_clients_lines_in_order():
    broker = trashlab.Broker(unique("xray"), trace=True).start()
    try:
        assert "trace: true" in broker.config_text  # the server logs every protocol line
        assert _exchange(broker.url, "student", "hello.x") == b"hello"
        _exchange(broker.url, "someone-else", "other.y")
        lines = _wait_for_lines(broker, "student", "->> [MSG hello.x")
        text = list(lines)
        kinds = [ln.split()[1].strip("[").split(":")[0] for ln in text]
        assert kinds[0] == "CONNECT" and '"name": "student"' in text[0], text
        for needed in ("<<- [PING]", "->> [PONG]", "<<- [SUB hello.x", "<<- [PUB hello.x", "->> [MSG hello.x"):
            assert any(ln.startswith(needed) for ln in text), (needed, text)
        order = [next(i for i, ln in enumerate(text) if ln.startswith(k))
                 for k in ("<<- [CONNECT", "<<- [SUB hello.x", "<<- [PUB hello.x", "->> [MSG hello.x")]
        assert order == sorted(order), text
        assert not any("other.y" in ln for ln in text), "another client's lines leaked into the x-ray"
        assert any("other.y" in ln for ln in _wait_for_lines(broker, "someone-else", "->> [MSG other.y"))
        # shown as terminal lines, not as a Python list
        assert repr(lines).splitlines() == text and not repr(lines).startswith("[")
        assert list(broker.protocol("nobody-by-that-name")) == []
        # a second client of the same name (a re-run cell): the x-ray shows the newest connection
        _exchange(broker.url, "student", "again.z")
        again = list(_wait_for_lines(broker, "student", "->> [MSG again.z"))
        assert any("again.z" in ln for ln in again) and not any("hello.x" in ln for ln in again), again
    finally:
        broker.stop()


def test_protocol_without_trace_names_the_fix(broker):
    with pytest.raises(BrokerError, match="trace=True"):
        broker.protocol("student")


def test_the_raw_client_logs_in_subscribes_and_reports_a_refusal_or_a_closed_socket():
    """servers/rawclient.py, the one hand-written NATS client (the join check, the server-side slow consumer):
    PONG when let in (and subscribed), the server's -ERR when refused, b"" when the other end closes, no
    INFO when it is not a NATS server; it never waits for an answer that cannot come."""
    import socket
    import threading

    from trashlab.servers.rawclient import login

    broker = trashlab.Broker(unique("raw"), trace=True).start()
    try:
        ok = login(broker.client_host, broker.port, name="raw-ok", subscribe="raw.x")
        ok.sock.close()
        assert ok.accepted and ok.info and ok.info.get("server_id"), ok
        assert any("SUB raw.x 1" in ln for ln in _wait_for_lines(broker, "raw-ok", "SUB raw.x")), \
            f"the server never saw the subscription: {broker.protocol('raw-ok')}"
    finally:
        broker.stop()
    broker = trashlab.Broker(unique("rawauth"), user="u", password="right").start()
    try:
        let_in = login(broker.client_host, broker.port, name="raw-ok", user="u", password="right")
        refused = login(broker.client_host, broker.port, name="raw-bad", user="u", password="wrong")
        let_in.sock.close()
        refused.sock.close()
        assert let_in.accepted and let_in.info and let_in.info.get("auth_required"), let_in
        assert not refused.accepted and refused.answer.startswith(b"-ERR") and b"Authorization" in refused.answer, \
            refused.answer
    finally:
        broker.stop()

    for greeting in (b"INFO {}\r\n", b"HTTP/1.1 400 Bad Request\r\n"):  # a NATS-like end that hangs up; not NATS
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)

            def answer_once(greeting: bytes = greeting) -> None:
                conn, _ = server.accept()
                with conn:
                    conn.sendall(greeting)
                    # hang up before the client's CONNECT is read: whether the client then reads the end of
                    # the stream or a reset depends on timing (CI saw the reset); both mean "closed"

            t = threading.Thread(target=answer_once)
            t.start()
            got = login("127.0.0.1", server.getsockname()[1], name="raw-closed", timeout=5.0)
            got.sock.close()
            t.join()
        if greeting.startswith(b"INFO"):
            assert got.info == {} and got.answer == b"" and not got.accepted, got
        else:
            assert got.info is None and got.answer.startswith(b"HTTP/1.1"), got


def test_the_raw_client_reads_a_reset_after_its_connect_as_a_closed_connection():
    """A server that resets the connection once the CONNECT arrived (what a kernel answers when a server
    hung up without reading): the login reports b"" like a plain close, never a ConnectionResetError."""
    import socket
    import struct
    import threading

    from trashlab.servers.rawclient import login

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def reset_after_connect() -> None:
            conn, _ = server.accept()
            conn.sendall(b"INFO {}\r\n")
            conn.recv(1)  # the client's CONNECT has arrived
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # linger 0: a reset, not the end of the stream

        t = threading.Thread(target=reset_after_connect)
        t.start()
        got = login("127.0.0.1", server.getsockname()[1], name="raw-reset", timeout=5.0)
        got.sock.close()
        t.join()
    assert got.info == {} and got.answer == b"" and not got.accepted, got
