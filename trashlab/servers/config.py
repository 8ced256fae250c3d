"""What a nats-server started by trashlab is told, as one frozen value rendered to one config file.

The official ``nats`` image starts its server from a config file (``nats-server.conf``: ports,
cluster block, route credentials); a :class:`~trashlab.Broker` does the same, so
``print(broker.config_text)`` reads like the image's file with this broker's values.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

from .._secrets import HIDDEN, redact
from ..errors import BadArgument

#: Route credentials and cluster name of the official ``nats`` image's nats-server.conf.
#: Teaching values: anyone who reads the lab knows them. Override them outside a classroom.
ROUTE_USER = "ruser"
ROUTE_PASSWORD = "T0pS3cr3t"
CLUSTER_NAME = "my_cluster"
#: Lame-duck mode: nats-server's shortest drain (it refuses less than 30 s) and a short grace period.
LAME_DUCK_DURATION = "30s"
LAME_DUCK_GRACE = "1s"

Accounts = Tuple[Tuple[str, Tuple[Tuple[str, str], ...]], ...]
#: subject -> ((destination, weight %), ...): a weighted subject mapping (chaos.drop_messages)
Mappings = Tuple[Tuple[str, Tuple[Tuple[str, float], ...]], ...]


@dataclass(frozen=True)
class Ports:
    """Client, monitoring and cluster (route) ports; None means "any free one" (nats-server picks it)."""

    client: Optional[int] = None
    monitor: Optional[int] = None
    cluster: Optional[int] = None


@dataclass(frozen=True)
class ClusterBlock:
    """The ``cluster { }`` block: name, route credentials and the routes to other nodes."""

    name: str = CLUSTER_NAME
    user: str = ROUTE_USER
    password: str = ROUTE_PASSWORD
    routes: Tuple[str, ...] = ()

    def __repr__(self) -> str:
        return _redacted_repr(self)


@dataclass(frozen=True)
class ServerConfig:
    """Ports, auth, cluster, routes, JetStream and accounts of one nats-server."""

    name: str
    host: str = "127.0.0.1"
    ports: Ports = Ports()
    user: Optional[str] = None
    password: Optional[str] = None
    token: Optional[str] = None
    cluster: Optional[ClusterBlock] = None
    store_dir: Optional[str] = None  # JetStream is on when set
    accounts: Accounts = ()
    ports_file_dir: Optional[str] = None
    #: a joined class: the hub's leaf URL this broker connects to (it sends its traffic; the hub's permissions
    #: for the leaf login send nothing back, see ``classroom.hub_blocks``); comma-separated URLs for a clustered hub
    leaf_remote: Optional[str] = None
    #: further blocks rendered as they are (a class hub's leaf listener, WebSocket and accounts)
    blocks: Tuple[str, ...] = ()
    #: what the chaos menu changes at run time (by config reload)
    mappings: Mappings = ()
    write_deadline: Optional[str] = None
    #: every protocol line of every client in the log (Broker.protocol(name) reads it)
    trace: bool = False
    #: where monitoring listens: loopback, except a class hub node on several hosts (hubcluster, --monitor-listen)
    monitor_host: str = "127.0.0.1"

    def __repr__(self) -> str:  # every password hidden: routes, leaf URL, accounts, a hub's blocks
        return _redacted_repr(self, accounts=tuple((a, tuple((u, HIDDEN) for u, _ in users))
                                                   for a, users in self.accounts))

    def render(self) -> str:
        """The nats-server configuration file text."""
        q = json.dumps  # a JSON string is a valid quoted string in nats-server's config syntax
        lines = [f"server_name: {q(self.name)}", f"host: {q(self.host)}", f"port: {_port(self.ports.client)}",
                 # monitoring stays on loopback even when clients may come from the network (unless told)
                 f'http: "{self.monitor_host}:{_port(self.ports.monitor)}"',
                 # lame-duck mode (chaos.lame_duck): the shortest drain nats-server accepts, a short grace
                 f"lame_duck_duration: {q(LAME_DUCK_DURATION)}", f"lame_duck_grace_period: {q(LAME_DUCK_GRACE)}"]
        if self.write_deadline:  # chaos.SlowConsumer: a client that stops reading is cut off sooner
            lines.append(f"write_deadline: {q(self.write_deadline)}")
        if self.trace:
            lines.append("trace: true")
        if self.ports_file_dir:
            lines.append(f"ports_file_dir: {q(self.ports_file_dir)}")
        if self.user is not None:
            lines.append(f"authorization {{ user: {q(self.user)}, password: {q(self.password)} }}")
        elif self.token is not None:
            lines.append(f"authorization {{ token: {q(self.token)} }}")
        if self.cluster is not None:
            c = self.cluster
            lines += ["cluster {", f"  name: {q(c.name)}", f"  host: {q(self.host)}",
                      f"  port: {_port(self.ports.cluster)}",
                      f"  authorization {{ user: {q(c.user)}, password: {q(c.password)}, timeout: 2 }}"]
            lines.append(f"  routes: [{', '.join(q(r) for r in c.routes)}]")  # empty: a reload can drop all
            lines.append("}")
        if self.store_dir is not None:
            lines.append(f"jetstream {{ store_dir: {q(self.store_dir)} }}")
        if self.accounts:
            lines.append(accounts_block(self.accounts))
        if self.mappings:
            body = ", ".join(f"{q(subject)}: [{', '.join(f'{{destination: {q(d)}, weight: {w:g}%}}' for d, w in dests)}]"
                             for subject, dests in self.mappings)
            lines.append(f"mappings {{ {body} }}")
        if self.leaf_remote:
            # No deny_imports here: nats-server 2.15 applies a leaf remote's subscribe-deny to what this broker
            # *sends* as soon as the hub forwards a wildcard or queue subscription overlapping it (a student's
            # own `>` on the hub), and keeps it until a restart: the class feed stopped for good. The hub
            # keeps two notebooks' brokers apart instead (classroom.hub_blocks).
            urls = [u.strip() for u in self.leaf_remote.split(",") if u.strip()]
            if len(urls) > 1:  # a clustered class hub (hubcluster): a list, tried in a random order (no_randomize
                # is false by default, docs.nats.io/reference/config/leafnodes/remotes), another one when it drops
                lines.append(f"leafnodes {{ remotes: [ {{ url: [{', '.join(q(u) for u in urls)}] }} ] }}")
            else:
                lines.append(f"leafnodes {{ remotes: [ {{ url: {q(self.leaf_remote)} }} ] }}")
        lines += self.blocks
        return "\n".join(lines) + "\n"


def _redacted_repr(value: Any, **shown: object) -> str:
    """A dataclass's usual repr (``shown`` replacing some fields), with every password hidden."""
    fields = ", ".join(f"{f.name}={shown.get(f.name, getattr(value, f.name))!r}" for f in dataclasses.fields(value))
    return redact(f"{type(value).__name__}({fields})")


def _port(port: Optional[int]) -> int:
    return -1 if port is None else port


def freeze_accounts(accounts: Mapping[str, Mapping[str, str]]) -> Accounts:
    """Accounts as a frozen value (account → {user: password}), checked: each account has users."""
    if not accounts:
        raise BadArgument("give at least one account, e.g. {'IOT': {'gateway': 'secret'}}")
    for account, users in accounts.items():
        if not users:
            raise BadArgument(f"account {account!r} has no users: give {{'user': 'password'}}")
    return tuple((a, tuple(users.items())) for a, users in accounts.items())


def accounts_block(accounts: Accounts) -> str:
    """The ``accounts { }`` block of a nats-server config."""
    lines = ["accounts {"]
    for account, users in accounts:
        entries = ", ".join(f"{{user: {json.dumps(u)}, password: {json.dumps(p)}}}" for u, p in users)
        lines.append(f"  {account}: {{ users: [ {entries} ] }}")
    lines.append("}")
    return "\n".join(lines)
