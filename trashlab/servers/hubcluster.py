"""A class hub as a cluster of nats-servers, for several hundred students: no node is the whole class.

``ClassCluster(300, nodes=3).start()`` runs three :class:`HubNode` s on this machine, each a
:class:`~trashlab.servers.classroom.ClassHub` (the same student accounts, passwords and the instructor's
imports, declared identically on every node) joined to the others by routes (:class:`~trashlab.servers.cluster.Cluster`),
with a route password of its own (never the lab's ``T0pS3cr3t``). Accounts span the cluster: a reading a
student's broker sends to any node reaches the instructor connected to any node, as
``class.<student>.trash-level``.

A join line names every node: ``nats://s01:PW@hub1:4222?leaf=7422&node=hub2:4222:7422&node=hub3:4222:7422``
(``HOST:PORT:LEAFPORT``). A joined student's broker gets one leaf remote listing every node's leaf URL:
nats-server tries a remote's URLs in a random order, so the students spread over the nodes, and when its
node goes away the broker connects to another one (every second, nats-server's default). The instructor's
URL lists every node too (nats-py fails over), and the class page polls every node's monitoring
(``monitor_urls`` in ``instructor.json``), so it sees every student whichever node they are on.

On several hosts each runs one node: ``trashlab classroom serve --hosts hub1,hub2,hub3 --this hub2``
(docs/workshop.md, "A class of hundreds"); :func:`node_for_host` is that node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.error
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from .._secrets import redact, write_private
from ..errors import BadArgument, BrokerError
from .broker import Broker, _free_port
from .classroom import INSTRUCTOR, INSTRUCTOR_FILE, ClassHub, _password
from .keptfeed import KEPT_USER, keep_stream
from .config import Ports, ServerConfig
from .cluster import Cluster, node_name
from .monitor import fetch

log = logging.getLogger("trashlab")

#: The class cluster's name and route login (its password is generated, kept in ``instructor.json``).
CLASS_CLUSTER = "trashlab_class"
ROUTE_USER = "hub-route"
#: The ports a multi-host class uses on every host (clients, leaf nodes, routes), as in NATS's docs.
ROOM_PORTS = (4222, 7422, 6222)
MONITOR_PORT = 8222


@dataclass(frozen=True)
class NodeAddress:
    """Where students and the instructor reach one hub node: host, client port, leaf-node port."""

    host: str
    port: int
    leaf_port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.leaf_port}"


@dataclass(frozen=True)
class NodePorts:
    """The ports one node asks for (None: any free one)."""

    client: Optional[int] = None
    leaf: Optional[int] = None
    cluster: Optional[int] = None
    monitor: Optional[int] = None
    websocket: Optional[int] = None


class HubNode(ClassHub):
    """One node of a clustered class hub: a :class:`ClassHub` with routes to the other nodes.

    ``class_nodes`` lists every node of the class (this one included) in roster order: the join lines
    and the instructor's URL name them all.
    """

    def __init__(self, students: Union[int, Sequence[str]], *, name: str, route_password: str,
                 routes: Sequence[str] = (), cluster_port: Optional[int] = None,
                 class_nodes: Sequence[NodeAddress] = (), monitor_host: str = "127.0.0.1", **options) -> None:
        super().__init__(students, name=name, **options)
        self.monitor_host = monitor_host
        if not route_password:
            raise BadArgument("a class cluster needs a route password (ClassCluster makes one)")
        if cluster_port is not None and (not isinstance(cluster_port, int) or not 0 < cluster_port < 65536):
            raise BadArgument(f"cluster_port={cluster_port!r} is not a TCP port: give 1-65535, or leave it out")
        # a Broker with clustering (what Broker(cluster=True, routes=...) sets), with the class's own route login
        self.cluster = True
        self.cluster_name = CLASS_CLUSTER
        self.routes = list(routes)
        self.route_user, self.route_password = ROUTE_USER, route_password
        self.requested_ports = replace(self.requested_ports, cluster=cluster_port)
        self.class_nodes: List[NodeAddress] = list(class_nodes)

    def _config(self, ports: Ports, store: Optional[str], ports_dir: Optional[str]) -> ServerConfig:
        return replace(super()._config(ports, store, ports_dir), monitor_host=self.monitor_host)

    @property
    def monitor_url(self) -> str:
        """HTTP monitoring base URL: on 127.0.0.1, or on the address given as ``monitor_host``."""
        self._require_started()
        local = self.monitor_host in ("127.0.0.1", "0.0.0.0", "::", "")
        return f"http://{'127.0.0.1' if local else self.monitor_host}:{self.http_port}"

    @property
    def address(self) -> NodeAddress:
        """This node as students reach it."""
        self._require_started()
        return NodeAddress(self.public_host, self.port or 0, self.leaf_port or 0)

    def _nodes(self, host: Optional[str]) -> List[NodeAddress]:
        nodes = self.class_nodes or [self.address]
        return [NodeAddress(host, n.port, n.leaf_port) for n in nodes] if host else nodes

    def join_line(self, student: str, *, host: Optional[str] = None) -> str:
        """The student's line naming every node: ``nats://s01:PW@hub1:4222?leaf=7422&node=hub2:4222:7422&...``
        (``host`` replaces every node's host: a class on one machine)."""
        first, *others = self._nodes(host)
        line = f"nats://{student}:{self._seat(student)}@{first.host}:{first.port}?leaf={first.leaf_port}"
        return line + "".join(f"&node={n}" for n in others) + ("&keep=1" if self.keep_readings else "")

    #: on several hosts (``classroom serve --hosts``) each node makes the kept readings' stream once the
    #: cluster can (in the background; the same config from every node is one stream); a ClassCluster makes it itself
    makes_kept_stream = False

    def _keep_stream(self) -> None:
        if self.keep_readings and self.makes_kept_stream:
            threading.Thread(target=quietly_keep_stream, args=(self.kept_url, kept_replicas(len(self._nodes(None)))),
                             name="trashlab-keep-stream", daemon=True).start()

    def _logins(self, user: str) -> str:
        """``user``'s URLs (the instructor's password), one per node, comma-separated (a client fails over):
        ``instructor_url`` and ``kept_url``."""
        self._require_started()
        nodes = self.class_nodes or [self.address]
        return ",".join(f"nats://{user}:{self.instructor_password}@"
                        f"{self.client_host if n == self.address else n.host}:{n.port}" for n in nodes)

    def __repr__(self) -> str:
        return super().__repr__().replace("<ClassHub", "<HubNode", 1)


class ClassCluster(Cluster):
    """A class hub of ``nodes`` nats-servers on this machine: ``.start()``, ``.join_line(s)``, ``.kill(node)``.

    The same options as :class:`ClassHub`; ``ports`` gives each node's ports (:class:`NodePorts`, e.g.
    from an earlier run's ``instructor.json``), ``route_password`` reuses the routes' password.
    """

    def __init__(self, students: Union[int, Sequence[str]] = 300, nodes: int = 3, *, name: str = "class-hub",
                 host: str = "127.0.0.1", ports: Optional[Sequence[NodePorts]] = None,
                 websocket: bool = False, advertise: Optional[str] = None,
                 passwords: Optional[Mapping[str, str]] = None, route_password: Optional[str] = None,
                 start_timeout: float = 10.0, keep_readings: bool = False, store_dir: Optional[str] = None) -> None:
        if not isinstance(nodes, int) or isinstance(nodes, bool) or not 1 <= nodes <= 9:
            raise BadArgument(f"nodes={nodes!r}: give a number of hub nodes from 1 to 9, e.g. 3")
        if ports is not None and len(ports) != nodes:
            raise BadArgument(f"ports lists {len(ports)} nodes, the class has {nodes}")
        seats = ClassHub(students, passwords=passwords)  # checks the names once, makes the passwords
        self.seats: Dict[str, str] = seats.seats
        self.instructor_password = seats.instructor_password
        self.host, self.advertise = host, advertise
        self.keep_readings = bool(keep_readings)
        self.store_dir = store_dir  # node i keeps its JetStream store in <store_dir>/<node name> (else a temporary one)
        self.node_ports = list(ports or [NodePorts(websocket=0 if websocket else None)] * nodes)
        super().__init__(nodes, name, cluster_name=CLASS_CLUSTER, route_user=ROUTE_USER,
                         route_password=route_password or _password(), start_timeout=start_timeout)

    def _settings(self) -> tuple:
        return (*super()._settings(), tuple(self.seats.items()), self.instructor_password, self.host)

    def _node(self, index: int, cluster_port: Optional[int], routes: List[str]) -> HubNode:
        p = self.node_ports[index] if index < len(self.node_ports) else NodePorts()
        return HubNode(list(self.seats), name=node_name(self.name, index + 1), route_password=self.route_password,
                       routes=routes, cluster_port=cluster_port or p.cluster, host=self.host, port=p.client,
                       http_port=p.monitor, leaf_port=p.leaf, websocket_port=p.websocket, advertise=self.advertise,
                       passwords={**self.seats, INSTRUCTOR: self.instructor_password},
                       start_timeout=self.start_timeout, keep_readings=self.keep_readings,
                       store_dir=str(Path(self.store_dir) / node_name(self.name, index + 1)) if self.store_dir else None)

    def _broker(self, name: str, cluster_port: Optional[int], routes: List[str]) -> HubNode:
        """A further node (:meth:`Cluster.add_node`): the next index's ports."""
        node = self._node(len(self.nodes), cluster_port, routes)
        node.name = name
        return node

    def _fresh(self, attempts: int = 3) -> "Iterator[Tuple[int, Dict[str, Broker]]]":
        """New nodes on the ports asked for (free ones where none is), one set per attempt."""
        for attempt in reversed(range(attempts)):
            ports = [p.cluster or _free_port() for p in self.node_ports]
            routes = [self._route_url(p) for p in ports]
            made = [self._node(i, port, routes) for i, port in enumerate(ports)]
            yield attempt, {n.name: n for n in made}

    def start(self) -> "ClassCluster":
        """Start every node (a killed one again on its ports) and tell each node about all of them."""
        super().start()
        self._link()
        self._keep_stream()
        return self

    async def astart(self) -> "ClassCluster":
        """Like :meth:`start`, then wait until the routes are up, without blocking the event loop."""
        await super().astart()
        self._link()
        await asyncio.to_thread(self._keep_stream)
        return self

    def _keep_stream(self) -> None:
        """A class that keeps readings: their stream, replicated on up to 3 nodes (it outlives a node)."""
        if self.keep_readings:
            keep_stream(self.kept_url, replicas=kept_replicas(len(self.hubs)))

    def _link(self) -> None:
        addresses = [n.address for n in self.hubs]
        for n in self.hubs:
            n.class_nodes = addresses

    # ----- what ClassHub offers, for the whole class -------------------------------------------
    @property
    def hubs(self) -> List[HubNode]:
        """The nodes, first node first."""
        return [n for n in self.nodes.values() if isinstance(n, HubNode)]

    @property
    def students(self) -> list:
        """The students' names, in roster order."""
        return list(self.seats)

    @property
    def kept_url(self) -> str:
        """The ``kept`` login's URLs on this machine, one per node: reads the stream ``CLASS_READINGS``."""
        return self._logins(KEPT_USER)

    def _any(self) -> HubNode:
        for n in self.hubs:
            if n.running:
                return n
        raise BrokerError(f"class cluster {self.name} has no running node: call .start() first", name=self.name)

    def join_line(self, student: str, *, host: Optional[str] = None) -> str:
        """The student's join line, naming every node."""
        return self._any().join_line(student, host=host)

    def student_url(self, student: str, *, host: Optional[str] = None) -> str:
        """The student's client URLs, one per node, comma-separated."""
        return ",".join(n.student_url(student, host=host) for n in self.hubs)

    def _logins(self, user: str) -> str:
        """``user``'s URLs on this machine (the instructor's password), one per node, comma-separated."""
        self._any()
        return ",".join(f"nats://{user}:{self.instructor_password}@{n.client_host}:{n.port}" for n in self.hubs)

    @property
    def instructor_url(self) -> str:
        """The instructor's URLs on this machine, one per node, comma-separated (nats-py fails over)."""
        return self._logins(INSTRUCTOR)

    @property
    def monitor_urls(self) -> List[str]:
        """Every node's monitoring URL (on 127.0.0.1), first node first."""
        return [n.monitor_url for n in self.hubs]

    @property
    def monitor_url(self) -> str:
        """The first node's monitoring URL."""
        return self.hubs[0].monitor_url

    def node_of_leaf(self) -> Dict[str, List[str]]:
        """Which running node each student's brokers are leaf nodes of: student → [node, ...]."""
        where: Dict[str, List[str]] = {}
        by_account = {s.upper().replace("-", "_"): s for s in self.seats}
        for n in self.hubs:
            if not n.running:
                continue
            for leaf in fetch(n.monitor_url, "leafz").get("leafs") or []:
                student = by_account.get(leaf.get("account") or "")
                if student:
                    where.setdefault(student, []).append(n.name)
        return where

    def write_roster(self, folder: Union[str, Path] = "class") -> Path:
        """Like :meth:`ClassHub.write_roster` (join lines naming every node), plus every node's ports and
        monitoring URL and the route password in ``instructor.json`` (0600), so ``classroom serve`` again
        from the same folder brings back the same class."""
        roster = self._any().write_roster(folder)
        record(folder, self.hubs, self.route_password, instructor_url=self.instructor_url,
               kept_url=self.kept_url if self.keep_readings else None)
        return roster

    def __repr__(self) -> str:
        up = sum(b.running for b in self.nodes.values())
        return f"<ClassCluster {self.name}: {len(self.seats)} students, {up}/{len(self.nodes) or self.size} nodes running>"


def kept_replicas(nodes: int) -> int:
    """The kept readings' replicas on a hub of ``nodes`` nodes: 3 (one node may die), or every node of a smaller one."""
    return max(1, min(3, nodes))


def quietly_keep_stream(kept_url: str, replicas: int) -> None:
    """:func:`keep_stream` for as long as 10 minutes (the other hosts' nodes may start later), failing in one log line."""
    try:
        keep_stream(kept_url, replicas=replicas, timeout=600.0)
    except BrokerError as e:
        log.warning("trashlab: %s", e)


def new_route_password() -> str:
    """A fresh password for the routes between the hub's nodes."""
    return _password()


def record(folder: Union[str, Path], nodes: Sequence[HubNode], route_password: str, *,
           monitor_urls: Optional[Sequence[str]] = None, instructor_url: Optional[str] = None,
           kept_url: Optional[str] = None) -> Path:
    """Add a clustered hub's nodes (ports, monitoring) and route password to ``instructor.json`` (kept 0600), so
    the class page polls every node and ``classroom serve`` again from the folder brings back the same class."""
    path = Path(folder) / INSTRUCTOR_FILE
    info = json.loads(path.read_text())
    info.update({"monitor_urls": list(monitor_urls or [n.monitor_url for n in nodes]), "route_password": route_password,
                 "nodes": [{"name": n.name, "host": n.public_host, "port": n.port, "leaf_port": n.leaf_port,
                            "cluster_port": n.cluster_port, "monitor_port": n.http_port,
                            "websocket_port": n.websocket_port} for n in nodes]})
    if instructor_url:
        info["instructor_url"] = instructor_url
    if kept_url:
        info["kept_url"] = kept_url
    write_private(path, json.dumps(info, indent=1) + "\n")
    return path


def ports_from(info: Mapping) -> Optional[List[NodePorts]]:
    """The nodes' ports an earlier ``instructor.json`` recorded (None: not a clustered class)."""
    nodes = info.get("nodes")
    if not nodes:
        return None
    return [NodePorts(n.get("port"), n.get("leaf_port"), n.get("cluster_port"), n.get("monitor_port"),
                      n.get("websocket_port")) for n in nodes]


def node_for_host(students: Union[int, Sequence[str]], hosts: Sequence[str], this: str, *, listen: str = "0.0.0.0",
                  ports: Tuple[int, int, int] = ROOM_PORTS, passwords: Optional[Mapping[str, str]] = None,
                  route_password: str, name: str = "class-hub", monitor_host: str = "127.0.0.1",
                  monitor_port: int = MONITOR_PORT, keep_readings: bool = False,
                  store_dir: Optional[str] = None) -> HubNode:
    """The node of a class on several hosts that runs on ``this`` (one of ``hosts``, the names students and
    the other nodes use): clients, leaf nodes and routes on the same ``ports`` on every host, routes to all;
    monitoring on ``monitor_host:monitor_port`` (an address of this host the instructor's page may reach)."""
    hosts = [h.strip() for h in hosts if h.strip()]
    if this not in hosts:
        raise BadArgument(f"--this {this!r} is not one of --hosts {','.join(hosts)}: name this host as the others do")
    if len(set(hosts)) != len(hosts):
        raise BadArgument(f"--hosts {','.join(hosts)} names a host twice")
    client, leaf, route = ports
    routes = [f"nats-route://{ROUTE_USER}:{route_password}@{h}:{route}" for h in hosts]
    index = hosts.index(this) + 1
    node = HubNode(students, name=node_name(name, index), route_password=route_password, routes=routes,
                   cluster_port=route, host=listen, port=client, leaf_port=leaf, advertise=this,
                   passwords=passwords, class_nodes=[NodeAddress(h, client, leaf) for h in hosts],
                   monitor_host=monitor_host, http_port=monitor_port, keep_readings=keep_readings,
                   store_dir=store_dir)
    node.makes_kept_stream = True
    return node


def host_monitor_urls(hosts: Sequence[str], this_url: str, this: str, monitor_port: int = MONITOR_PORT) -> List[str]:
    """The class page's monitoring URLs on several hosts: this node's own, the others' on ``monitor_port``."""
    return [this_url if h == this else f"http://{h}:{monitor_port}" for h in hosts]


def fetch_nodes(monitor_urls: Sequence[str], *paths: str) -> Tuple[List[list], List[str]]:
    """Each path's list (``connections``, ``leafs``, ...) from every node that answers, joined, and the nodes that
    did not answer; raises :class:`BrokerError` when none does. ``fetch_nodes(urls, "connz?auth=1", "leafz")``."""
    joined: List[list] = [[] for _ in paths]
    down: List[str] = []
    for url in monitor_urls:
        try:
            answers = [fetch(url, path) for path in paths]
        except (BrokerError, ValueError, urllib.error.URLError, OSError):
            down.append(url)
            continue
        for got, path, answer in zip(joined, paths, answers, strict=True):
            key = {"connz": "connections", "leafz": "leafs", "routez": "routes"}.get(path.split("?")[0], path)
            got.extend(answer.get(key) or [])
    if len(down) == len(monitor_urls):
        raise BrokerError(f"no hub node answers monitoring ({', '.join(redact(u) for u in down)})")
    return joined, down
