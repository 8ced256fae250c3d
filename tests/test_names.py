"""Broker names resolve once, like Docker's DNS on iot-net: ports, credentials and the fallback policy kept."""

from __future__ import annotations

import socket

import pytest

import trashlab
from trashlab.servers.connection import ARGUMENT, LOCAL_BROKER, NATS_URL, Resolved, resolve_servers

from conftest import eventually_sync, unique


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"nats://127.0.0.1:{s.getsockname()[1]}"  # nobody listens there once closed


@pytest.fixture
def locked():
    b = trashlab.Broker(unique("locked"), user="intern", password="pw").start()
    yield b
    b.stop()


async def test_a_name_keeps_the_credentials_of_the_url(locked):
    wrong = resolve_servers(f"nats://intern:nope@{locked.name}:4222")
    assert wrong.urls == (f"nats://intern:nope@127.0.0.1:{locked.port}",)
    with pytest.raises(trashlab.errors.ConnectionFailed, match="credentials in the URL are wrong"):
        await trashlab.servers.connection.connect(f"nats://intern:nope@{locked.name}:4222")
    nc = await trashlab.servers.connection.connect(f"nats://intern:pw@{locked.name}:4222")  # the right ones connect
    await nc.close()
    nc = await trashlab.servers.connection.connect(locked.name)  # a bare name answers with the broker's own URL
    await nc.close()


def test_lab_ports_map_to_the_real_ports_and_others_are_refused():
    b = trashlab.Broker(unique("ports"), cluster=True).start()
    try:
        assert trashlab.servers.connection.server_list(f"nats://{b.name}:4222") == [b.url]
        assert trashlab.servers.connection.server_list(f"nats://{b.name}:6222") == [f"nats://127.0.0.1:{b.cluster_port}"]
        assert trashlab.servers.connection.server_list(f"nats://{b.name}:8222") == [f"nats://127.0.0.1:{b.http_port}"]
        with pytest.raises(trashlab.errors.BadArgument, match="4222.*6222.*8222.*port 9999"):
            trashlab.servers.connection.server_list(f"nats://{b.name}:9999")
    finally:
        b.stop()


def test_websocket_urls_get_no_nats_port_appended():
    assert trashlab.servers.connection.server_list("ws://127.0.0.1") == ["ws://127.0.0.1"]
    assert trashlab.servers.connection.server_list("nats://127.0.0.1") == ["nats://127.0.0.1:4222"]


def test_a_mistyped_broker_name_says_which_brokers_run(broker):
    typo = broker.name[:-1] + "x"  # never the name itself (swapping two equal last letters was, 1 run in 16)
    with pytest.raises(trashlab.errors.BadArgument) as err:
        trashlab.servers.connection.server_list(f"nats://{typo}:4222")
    assert str(err.value).startswith(f"no broker called {typo!r} is running here (running: ")
    assert broker.name in str(err.value)


def test_the_resolved_value_says_where_the_urls_came_from(broker, monkeypatch):
    assert resolve_servers(broker.url).origin == ARGUMENT
    local = resolve_servers()
    assert local.origin == LOCAL_BROKER and local.urls == (trashlab.servers.broker.running_brokers()[-1].url,)
    dead = _dead_url()
    monkeypatch.setenv("NATS_URL", dead)
    env = resolve_servers()
    assert env == Resolved((dead,), NATS_URL, trashlab.servers.broker.running_brokers()[-1].url, trashlab.servers.broker.running_brokers()[-1].name)
    assert resolve_servers(env) is env  # resolving a resolved value changes nothing


async def test_connect_uses_a_resolved_value_as_it_is(broker, monkeypatch):
    where = resolve_servers(broker.name)
    broker_url_at_resolution = where.urls
    monkeypatch.setenv("NATS_URL", _dead_url())  # irrelevant to an already resolved value
    nc = await trashlab.servers.connection.connect(where, name="resolved-once")
    try:
        assert f"nats://{trashlab.servers.connection.url_of(nc)}" == broker_url_at_resolution[0]
    finally:
        await nc.close()


def test_a_route_given_by_name_joins_the_lab_way():
    first = trashlab.Broker(unique("seed"), cluster=True).start()
    second = trashlab.Broker(unique("join"), routes=[f"nats-route://ruser:T0pS3cr3t@{first.name}:6222"]).start()
    try:
        assert f"ruser:T0pS3cr3t@127.0.0.1:{first.cluster_port}" in second.config_text
        eventually_sync(lambda: first.name in set(second.routez()["remote_name"]), f"a route to {first.name}",
                        seen=lambda: f"routes to {sorted(set(second.routez()['remote_name']))}; {second.output[-500:]}")
    finally:
        second.stop()
        first.stop()


async def test_a_spawned_simulator_keeps_the_nats_url_fallback(monkeypatch):
    """The parent resolves $NATS_URL (dead) with its own broker as fallback; the child gets that policy."""
    b = trashlab.Broker(unique("fallback")).start()
    monkeypatch.setenv("NATS_URL", _dead_url())
    col = await trashlab.Collector(b.url).start()
    sim = None
    try:
        sim = await trashlab.spawn_simulator(name=unique("sim"), interval=0.01)
        assert sim.args[sim.args.index("--origin") + 1] == NATS_URL and sim.env["TRASHLAB_NATS_FALLBACK"] == b.url
        assert b.url not in " ".join(sim.args)  # URLs reach the child in its environment, not its command line
        assert await col.wait_for(5, timeout=15) >= 5  # it published to the broker started here
        assert any("unreachable" in line for line in sim.tail(50))
    finally:
        if sim is not None:
            sim.stop()
        await col.stop()
        b.stop()
