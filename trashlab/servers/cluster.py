"""A NATS cluster on loopback (lab section 5): several nats-server processes joined by routes.

``Cluster(size=2, name="iot-msg")`` is the lab's ``iot-msg`` container plus
``docker run -d --name=iot-msg2 --net=iot-net nats --routes=nats-route://ruser:T0pS3cr3t@iot-msg:6222``.
Nodes are named ``iot-msg``, ``iot-msg2``, ``iot-msg3`` ... and use the route credentials and cluster
name of the official ``nats`` image's ``nats-server.conf`` (``ruser`` / ``T0pS3cr3t``, ``my_cluster``),
so a node started by hand with the lab's ``--routes`` URL joins too.

The nodes started together all get a route to every one of them (a node ignores its route to itself):
JetStream in a cluster refuses to start on a node without configured routes. :meth:`Cluster.add_node`
joins one more node the lab's way, with a single route to a running node; the others learn about it
through the cluster's gossip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.error
import urllib.request
from typing import Dict, Iterator, List, Optional

import pandas as pd

from .broker import CLUSTER_NAME, ROUTE_PASSWORD, ROUTE_USER, Broker, _free_port
from ..errors import BadArgument, BrokerError, ClusterNotFormed, PortInUse
from .monitor import fetch
from .processes import ServerLifecycle

log = logging.getLogger("trashlab")

_clusters: "dict[str, Cluster]" = {}

ROUTE_COLUMNS = ["node", "remote", "rid", "kind", "solicited", "configured", "in_msgs", "out_msgs",
                 "subscriptions", "uptime"]


def node_name(name: str, index: int) -> str:
    """The lab's naming: ``iot-msg`` for the first node, then ``iot-msg2``, ``iot-msg3`` ..."""
    return name if index == 1 else f"{name}{index}"


def health(broker: Broker) -> dict:
    """The node's /healthz answer (``{"status": "ok"}`` or the reason it is not healthy)."""
    try:
        with urllib.request.urlopen(broker.monitor_url + "/healthz", timeout=2) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:  # 503 carries the reason in its body
        try:
            return json.loads(e.read())
        except ValueError:
            return {"status": "unavailable", "error": f"HTTP {e.code}"}
    except (urllib.error.URLError, OSError) as e:
        return {"status": "down", "error": str(getattr(e, "reason", e))}


class Cluster(ServerLifecycle):
    """``size`` real nats-server nodes on 127.0.0.1 joined by routes; ``.urls``, ``.nodes[name]``, ``.routes()``."""

    def __init__(self, size: int = 2, name: str = "iot-msg", jetstream: bool = False, *,
                 cluster_name: str = CLUSTER_NAME, route_user: str = ROUTE_USER,
                 route_password: str = ROUTE_PASSWORD, start_timeout: float = 10.0) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise BadArgument(f"size={size!r} must be a whole number of nodes >= 1, e.g. 2 (the lab) or 3")
        if size > 9:
            raise BadArgument(f"size={size} is more nats-server processes than a laptop needs: use 2-5")
        Broker(name)  # validates the name the same way (one line on a bad one)
        self.size = size
        self.name = name
        self.jetstream = jetstream
        self.cluster_name = cluster_name
        self.route_user, self.route_password = route_user, route_password
        self.start_timeout = start_timeout
        self.nodes: Dict[str, Broker] = {}
        old = _clusters.get(name)
        if old is not None and old._settings() == self._settings():
            self.nodes = old.nodes  # a re-run notebook cell: the same processes, not new ones

    def _settings(self) -> tuple:
        return (self.size, self.jetstream, self.cluster_name, self.route_user, self.route_password)

    # ----- what a student looks at -----------------------------------------------------------
    @property
    def urls(self) -> List[str]:
        """Client URLs of the running nodes, first node first (a list for ``servers=``)."""
        return [b.url for b in self.nodes.values() if b.running]

    @property
    def first(self) -> Broker:
        """The first node (``iot-msg``): the one the lab kills."""
        return self.nodes[node_name(self.name, 1)]

    @property
    def running(self) -> bool:
        """True while at least one node runs."""
        return any(b.running for b in self.nodes.values())

    def node_of(self, hostport: Optional[str]) -> Optional[str]:
        """Name of the node a client is connected to, from its ``connected_url`` (``host:port``)."""
        if not hostport:
            return None
        port = int(str(hostport).rsplit(":", 1)[1])
        for name, b in self.nodes.items():
            if b.port == port:
                return name
        return None

    def _route_url(self, port: int) -> str:
        return f"nats-route://{self.route_user}:{self.route_password}@127.0.0.1:{port}"

    def _broker(self, name: str, cluster_port: Optional[int], routes: List[str]) -> Broker:
        return Broker(name, jetstream=self.jetstream, cluster=True, cluster_port=cluster_port,
                      cluster_name=self.cluster_name, routes=routes, route_user=self.route_user,
                      route_password=self.route_password, start_timeout=self.start_timeout)

    # ----- lifecycle -----------------------------------------------------------------------
    def start(self) -> "Cluster":
        """Start every node (re-running it reuses running nodes, restarts killed ones); returns at once."""
        if self.nodes:
            for b in self.nodes.values():
                b.restart()  # same ports, same JetStream store
        else:
            for attempt, nodes in self._fresh():
                with self._trying(nodes, attempt):
                    for b in nodes.values():
                        b.start()
                if self.nodes is nodes:
                    break
        _clusters[self.name] = self
        return self

    async def astart(self) -> "Cluster":
        """Like :meth:`start` followed by :meth:`await wait_formed() <wait_formed>`, without blocking the loop.

        Each node starts with :meth:`Broker.astart`, from the loop's thread (a node's parent-death signal
        belongs to the thread that started it, so no worker thread may start one).
        """
        if self.nodes:
            for b in self.nodes.values():
                if not b.running:
                    await b.astart()  # same ports, same JetStream store
        else:
            for attempt, nodes in self._fresh():
                with self._trying(nodes, attempt):
                    for b in nodes.values():
                        await b.astart()
                if self.nodes is nodes:
                    break
        _clusters[self.name] = self
        await self.wait_formed()
        return self

    def _fresh(self, attempts: int = 3) -> "Iterator[tuple[int, Dict[str, Broker]]]":
        """New nodes on free ports, one set per attempt (numbered from the last one down to 0)."""
        for attempt in reversed(range(attempts)):
            ports = [_free_port() for _ in range(self.size)]
            routes = [self._route_url(p) for p in ports]
            yield attempt, {node_name(self.name, i + 1): self._broker(node_name(self.name, i + 1), p, routes)
                            for i, p in enumerate(ports)}

    @contextlib.contextmanager
    def _trying(self, nodes: Dict[str, Broker], attempts_left: int) -> Iterator[None]:
        """Around starting a set of new nodes: they become the cluster's nodes when all started; else all
        stop (no half-started cluster), and the error goes on unless it was a free port taken in between
        and another attempt is left."""
        try:
            yield
        except BaseException as e:  # blind: stops the new nodes, then raises again (not a taken port with tries left)
            for b in nodes.values():
                b.stop()
            if not isinstance(e, PortInUse) or not attempts_left:
                raise
        else:
            self.nodes = nodes

    def add_node(self, name: Optional[str] = None) -> Broker:
        """Join one more node the lab's way: ``--routes=nats-route://ruser:T0pS3cr3t@<first>:<port>``.

        Safe to run again: without ``name`` it is always the same extra node (``iot-msg3`` for a
        2-node cluster), returned as it is when it runs, restarted when it was stopped; give
        ``name=`` for more nodes.
        """
        seed = next((b for b in self.nodes.values() if b.running), None)
        if seed is None:
            raise BrokerError(f"cluster {self.name} has no running node to join: call .start() first", name=self.name)
        name = name or node_name(self.name, self.size + 1)
        if name in self.nodes:
            return self.nodes[name].restart()  # running: as it is; stopped: again, on its ports
        node = self._broker(name, None, [seed.route_url]).start()
        self.nodes[name] = node
        return node

    def stop(self) -> None:
        """Stop every node gracefully (no nats-server left behind)."""
        for b in reversed(list(self.nodes.values())):
            b.stop()
        if _clusters.get(self.name) is self:
            del _clusters[self.name]

    def kill(self, name: Optional[str] = None) -> Broker:
        """SIGKILL one node (default: the first, as in the lab); returns it (``.restart()`` brings it back)."""
        node = self.nodes[name] if name else self.first
        node.kill()
        return node

    def restart(self, name: Optional[str] = None) -> Broker:
        """Bring a killed (or lame-duck) node back on its ports (default: the first); returns it."""
        node = self.nodes[name] if name else self.first
        return node.restart()

    # ----- the chaos menu (trashlab.servers.chaos) ---------------------------------------------
    def lame_duck(self, name: Optional[str] = None) -> Broker:
        """Put one node (default: the first) in lame-duck mode: its clients move before it leaves."""
        from .chaos import lame_duck
        return lame_duck(self.nodes[name] if name else self.first)

    def drop_messages(self, subject: str, percent: float = 30.0) -> "Cluster":
        """Lose ``percent`` % of the messages on ``subject`` on every node (subject mapping, config reload)."""
        from .chaos import drop_messages
        return drop_messages(self, subject, percent)

    def stop_dropping(self, subject: Optional[str] = None) -> "Cluster":
        """Undo :meth:`drop_messages`."""
        from .chaos import stop_dropping
        return stop_dropping(self, subject)

    def partition(self, *isolated: str) -> "Cluster":
        """Cut the routes between ``isolated`` nodes (default: the first) and the rest; :meth:`heal` undoes it."""
        from .chaos import partition
        return partition(self, *isolated)

    def heal(self) -> "Cluster":
        """Give every node its routes back after :meth:`partition`."""
        from .chaos import heal
        return heal(self)

    async def step_down(self, stream: str) -> dict:
        """Make the leader of a JetStream stream step down; returns old and new leader and the election time."""
        from .chaos import step_down
        return await step_down(self, stream)

    # ----- is it one cluster yet? -------------------------------------------------------------
    def formed(self) -> bool:
        """True when every running node has routes to every other running node (and JetStream is healthy)."""
        return not self._missing()

    def _missing(self) -> List[str]:
        running = [n for n, b in self.nodes.items() if b.running]
        problems = []
        for n in running:
            try:
                routes = fetch(self.nodes[n].monitor_url, "routez").get("routes") or []
            except BrokerError:
                problems.append(f"{n} does not answer monitoring")
                continue
            peers = {r.get("remote_name") for r in routes}
            for other in running:
                if other != n and other not in peers:
                    problems.append(f"{n} has no route to {other}")
            if self.jetstream:
                h = health(self.nodes[n])
                if h.get("status") != "ok":
                    problems.append(f"{n}: {h.get('error', h.get('status'))}")
        return problems

    async def wait_formed(self, timeout: float = 15.0, progress: bool = True) -> "Cluster":
        """Wait (at most ``timeout`` s) until all running nodes are routed together; else :class:`ClusterNotFormed`."""
        from .._progress import wait_until

        missing: List[str] = []

        async def formed() -> bool:
            missing[:] = await asyncio.get_running_loop().run_in_executor(None, self._missing)
            return not missing

        if not await wait_until(formed, timeout=timeout, what=f"waiting for cluster {self.name} to form", every=0.1,
                                show=progress, show_after=2.0, why=lambda: missing[0] if missing else ""):
            raise ClusterNotFormed(
                f"cluster {self.name} not formed after {timeout:g}s ({'; '.join(missing[:3])}): check the "
                "nodes' logs with cluster.nodes[name].output, or stop() and start() it again",
                name=self.name, timeout=timeout, missing=missing)
        return self

    # ----- the route table -------------------------------------------------------------------
    def routes(self) -> pd.DataFrame:
        """One row per route connection (from each node's /routez); see the module docs for the pool."""
        rows = []
        for n, b in self.nodes.items():
            if not b.running:
                continue
            for r in fetch(b.monitor_url, "routez?subs=1").get("routes") or []:
                account = r.get("account")
                rows.append({
                    "node": n, "remote": r.get("remote_name"), "rid": r.get("rid"),
                    # since nats-server 2.10: a pool of routes per peer, plus one pinned to the system account
                    "kind": f"account {account}" if account else "pooled",
                    "solicited": bool(r.get("did_solicit")), "configured": bool(r.get("is_configured")),
                    "in_msgs": r.get("in_msgs"), "out_msgs": r.get("out_msgs"),
                    "subscriptions": r.get("subscriptions"), "uptime": r.get("uptime")})
        return pd.DataFrame(rows, columns=ROUTE_COLUMNS)

    def route_summary(self) -> pd.DataFrame:
        """Route connections counted per node and peer: why 2 nodes show more than one route each."""
        table = self.routes()
        if table.empty:
            return pd.DataFrame(columns=["node", "remote", "pooled", "system account", "total"])
        summary = (table.assign(pooled=table["kind"].eq("pooled"), system=~table["kind"].eq("pooled"))
                   .groupby(["node", "remote"], sort=False)
                   .agg(pooled=("pooled", "sum"), system=("system", "sum"), total=("rid", "count"))
                   .reset_index().rename(columns={"system": "system account"}))
        return summary

    def status(self) -> pd.DataFrame:
        """One row per node: running, pid, client URL, cluster port, connected clients, routes."""
        rows = []
        for n, b in self.nodes.items():
            row = {"node": n, "running": b.running, "pid": b.pid if b.running else None,
                   "url": b.url if b.running else None, "cluster_port": b.cluster_port,
                   "connections": None, "routes": None}
            if b.running:
                try:
                    varz = fetch(b.monitor_url, "varz")
                    row["connections"], row["routes"] = varz.get("connections"), varz.get("routes")
                except BrokerError:
                    pass
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        up = sum(b.running for b in self.nodes.values())
        js = " jetstream" if self.jetstream else ""
        return f"<Cluster {self.name}{js}: {up}/{len(self.nodes) or self.size} nodes running>"
