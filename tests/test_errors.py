"""trashlab's exceptions: the tree drawn in errors.py is the real one, errors carry the fields a caller
needs (the port, the broker, the service), timeouts are TimeoutErrors, and the cause is kept.

The quick tests read the code; the others raise each error from a real nats-server."""

import ast
import asyncio
import re
import socket
from pathlib import Path

import pytest

import trashlab
import trashlab.servers.connection
from trashlab import errors
from trashlab.errors import (BadArgument, BrokerError, BrokerStartTimeout, BrokerTimeout, CanNotFound,
                             ClusterNotFormed, ConnectionFailed, PortInUse, ServiceFailed, ServiceStartTimeout,
                             ServiceUnavailable, TrashlabError)

from conftest import unique

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "trashlab").rglob("*.py"), *(ROOT / "trashlab_instructor").rglob("*.py")])


def _drawn_tree() -> "dict[str, str]":
    """class name -> parent name, read from the drawing at the top of errors.py."""
    drawing = errors.__doc__.split("::", 1)[1].split("\n\n", 2)[1]
    parents: "dict[str, str]" = {}
    stack: "list[tuple[int, str]]" = []
    for line in drawing.splitlines():
        m = re.match(r"^( *)(?:[│ ]*[├└]── )?(\w+)", line)
        name = m.group(2)
        depth = (len(line) - len(line.lstrip(" │├└─"))) if "──" in line else 0
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else ""
        stack.append((depth, name))
    return parents


def test_the_drawn_tree_is_the_real_one():
    drawn = _drawn_tree()
    real = {name: cls for name, cls in vars(errors).items()
            if isinstance(cls, type) and issubclass(cls, TrashlabError)}
    assert set(drawn) == set(real), f"errors.py draws {sorted(drawn)}, defines {sorted(real)}"
    for name, cls in real.items():
        ours = [b.__name__ for b in cls.__bases__ if issubclass(b, TrashlabError)]
        expected = ours[0] if ours else ""
        assert drawn[name] == expected, f"{name}: drawn under {drawn[name]!r}, derives from {expected!r}"


def test_timeouts_are_timeout_errors_and_keep_their_fields():
    for cls in (BrokerTimeout, BrokerStartTimeout, ClusterNotFormed, ServiceStartTimeout):
        assert issubclass(cls, TimeoutError), cls
    e = BrokerStartTimeout("nats-server x did not become ready within 3s", name="x", timeout=3.0)
    assert isinstance(e, BrokerError) and isinstance(e, asyncio.TimeoutError)
    assert (str(e), e.name, e.timeout) == ("nats-server x did not become ready within 3s", "x", 3.0)
    c = ClusterNotFormed("not formed", name="c", timeout=5, missing=["n1 has no route to n2"])
    assert c.missing == ["n1 has no route to n2"] and c.timeout == 5
    s = ServiceStartTimeout("sim did not start", name="sim-1", role="simulator", timeout=2.0)
    assert isinstance(s, ServiceFailed) and (s.name, s.role, s.timeout) == ("sim-1", "simulator", 2.0)


def test_exit_codes_live_on_the_errors():
    assert BadArgument("x").exit_code == 2
    assert TrashlabError("x").exit_code == 1 and PortInUse("x", port=1).exit_code == 1


def _catches_everything(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return handler.type is None or any(isinstance(k, ast.Name) and k.id in ("Exception", "BaseException")
                                       for k in kinds)


def test_every_blind_except_says_why():
    """``except Exception`` that swallows catches bugs too: each one left says on its line why it must
    (``# blind: ...``). A handler that ends by raising again (clean up, then ``raise``) hides nothing."""
    bare = []
    for path in SOURCES:
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ExceptHandler) and _catches_everything(node):
                reraises = isinstance(node.body[-1], ast.Raise)
                if not reraises and "# blind:" not in lines[node.lineno - 1]:
                    bare.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bare, "name the exception, or write `# blind: <why>` on the line:\n" + "\n".join(bare)


def test_every_dropped_cause_says_why():
    """``raise ... from None`` hides the cause from an instructor: each one left says on its line why."""
    hidden = []
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        lines = path.read_text().splitlines()
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.cause, ast.Constant) and node.cause.value is None:
                last = lines[node.end_lineno - 1]
                if "#" not in last.split("from None", 1)[-1]:
                    hidden.append(f"{path.relative_to(ROOT)}:{node.end_lineno}: {last.strip()}")
    assert not hidden, "keep the cause (`from e`), or say on the line why not:\n" + "\n".join(hidden)


# ----- from real servers ----------------------------------------------------------------------------
def test_port_in_use_names_the_port(broker):
    taken = broker.port
    with pytest.raises(PortInUse) as caught:
        trashlab.Broker(unique("clash"), port=taken).start()
    assert caught.value.port == taken, f"PortInUse.port is {caught.value.port}, the port taken was {taken}: {caught.value}"
    assert caught.value.name is not None and str(taken) in str(caught.value)


async def test_a_refused_connection_keeps_its_cause_and_names_the_url_without_the_password():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    with pytest.raises(ConnectionFailed) as caught:
        await trashlab.servers.connection.connect(f"nats://someone:s3cr3t-pw@127.0.0.1:{port}")
    e = caught.value
    assert e.urls and all("s3cr3t-pw" not in u and str(port) in u for u in e.urls), e.urls
    assert e.__cause__ is not None, "the cause (what nats-py or the OS said) is kept for the instructor"
    assert "s3cr3t-pw" not in str(e) and "s3cr3t-pw" not in repr(e.__cause__)


async def test_no_report_service_names_the_service_and_keeps_the_cause(shared_broker):
    with pytest.raises(ServiceUnavailable) as caught:
        await trashlab.query_levels(shared_broker.url, service="nobody-here", timeout=0.5)
    assert caught.value.service == "nobody-here" and "nobody-here" in str(caught.value)
    assert caught.value.__cause__ is not None


async def test_an_unknown_can_names_the_can(shared_broker):
    svc = await trashlab.ReportService(shared_broker.url, name=unique("rep")).start()
    try:
        with pytest.raises(CanNotFound) as caught:
            await trashlab.query_level("999", shared_broker.url, service=svc.name)
    finally:
        await svc.stop()
    assert (caught.value.can_id, caught.value.service) == ("999", svc.name)


@pytest.mark.nats
async def test_a_spawned_service_that_exits_names_itself():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # no broker: the child exits at start
    name = unique("sim")
    with pytest.raises(ServiceFailed) as caught:
        await trashlab.spawn_simulator(f"nats://127.0.0.1:{port}", name=name, timeout=30)
    assert caught.value.name == name and caught.value.role == "simulator", (caught.value.name, caught.value.role,
                                                                            str(caught.value))


async def test_a_backoff_waits_longer_each_time_up_to_its_longest_and_starts_again_after_a_success():
    from trashlab.servers.retry import Backoff

    backoff = Backoff(first=0.001, longest=0.004)
    assert [await backoff.pause() for _ in range(4)] == [0.001, 0.002, 0.004, 0.004]
    assert backoff.failures == 4
    backoff.reset()
    assert (await backoff.pause(), backoff.failures) == (0.001, 1)
