"""The JetStream drill right after a node was restarted (the drill before restores its victim): it still runs.

A restarted node has its routes and answers /healthz a moment before JetStream's meta leader will place a
stream copy on it: the leader forgets a node's statistics when its route comes back, and places nothing on
it until the node has sent new ones (nats-server: 0.25, 0.5, 1, 2 ... s after the node's start). The drill's
stream has 3 copies, so it must wait for that, not fail with "no suitable peers for placement, peer offline"
(what CI saw when ■ in the 05b notebook's drill cell was followed by running the cell again).
"""

from __future__ import annotations

import pytest

import trashlab
import trashlab.servers.connection
import trashlab.errors
from conftest import unique
from trashlab._progress import wait_until
from trashlab.servers.monitor import fetch
from trashlab.course.failover import STREAM, _drop_stream, _make_stream


def _routed_to(cluster: trashlab.Cluster, name: str) -> bool:
    """Every other running node has a route to ``name`` again."""
    return all(name in {r.get("remote_name") for r in fetch(b.monitor_url, "routez").get("routes") or []}
               for n, b in cluster.nodes.items() if n != name and b.running)


@pytest.fixture
def js_cluster():
    cluster = trashlab.Cluster(3, name=unique("place"), jetstream=True).start()
    yield cluster
    cluster.stop()


async def test_the_drill_stream_is_placed_on_a_node_restarted_a_moment_ago(js_cluster):
    await js_cluster.wait_formed(timeout=30, progress=False)
    # not the meta leader: its death would need an election first, and JetStream answers nothing until then
    leader = (fetch(js_cluster.first.monitor_url, "jsz").get("meta_cluster") or {}).get("leader")
    victim = next(b for n, b in js_cluster.nodes.items() if n != leader)
    other = js_cluster.nodes[leader]
    victim.kill()
    victim.restart()  # returns once the node listens; its routes come back a moment later
    # the moment the other nodes have a route to it again: the first one that cluster.wait_formed() could accept
    assert await wait_until(lambda: _routed_to(js_cluster, victim.name), timeout=30, every=0.01, show=False,
                            what="routes back"), f"no route to the restarted {victim.name}: {js_cluster.routes()}"
    try:
        await _make_stream(other.url, "trash-level.placed", replicas=3, progress=False)
    except trashlab.errors.BrokerError as e:
        pytest.fail(f"the drill could not create its 3-copy stream right after {victim.name} restarted "
                    f"(expected: it waits until JetStream can place a copy on every node): {e}")
    nc = await trashlab.servers.connection.connect(js_cluster.urls)
    try:
        info = await nc.jetstream(timeout=5).stream_info(STREAM)
    finally:
        await nc.close()
    assert info.config.num_replicas == 3 and info.cluster is not None
    holders = {info.cluster.leader} | {r.name for r in info.cluster.replicas or []}
    assert holders == set(js_cluster.nodes), f"the stream's copies are on {holders}, expected every node"
    await _drop_stream(js_cluster.urls)



async def test_any_other_refusal_is_reported_at_once(js_cluster):
    """Only "no suitable peers" is waited for: a subject another stream captures is the one-line error at once."""
    await js_cluster.wait_formed(timeout=30, progress=False)
    nc = await trashlab.servers.connection.connect(js_cluster.urls)
    try:
        await nc.jetstream(timeout=5).add_stream(name="OTHER", subjects=["trash-level.taken"])
        with pytest.raises(trashlab.errors.BrokerError, match="another stream may already capture that subject"):
            await _make_stream(js_cluster.first.url, "trash-level.taken", replicas=3, progress=False)
    finally:
        await nc.close()
