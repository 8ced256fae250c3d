"""A live message map of a running Broker or Cluster, drawn in the notebook from the servers' own numbers.

``trashlab.FlowMap(cluster)`` as the last line of a cell shows, updated in place every ``refresh``
seconds: the servers (green, red when down) and the routes between them, every connected client by
connection name and language, the subjects they subscribe to (a queue group drawn as one box with its
members), arrows with live message rates, and JetStream streams with their leader and replicas.

Where the numbers come from:

* ``/varz`` (a node's totals), ``/connz?subs=detail`` (each client: name, language, messages in and out,
  and each subscription with its own delivered count), ``/routez`` (who is routed to whom) and
  ``/jsz?streams=1`` (streams, leaders, replicas) of every node;
* a *wiretap*: one subscription to ``>`` (connection ``trashlab-flowmap``, left off the map) counts
  the messages per published subject, which the endpoints do not tell. An arrow from a publisher
  to a subject is inferred by matching the client's publish rate with the subject's rate; it is
  drawn dashed to say so.

The kernel polls the endpoints in a worker thread, turns the answers into a *display list* (boxes,
texts, arrows as plain data) and sends it to the front end, where ``flowmap.js`` (an ``anywidget``
ES module, no lab extension) updates the SVG elements in place. The same display list serialises to
a static SVG: the picture kept in the saved notebook when the map is stopped (and shown by front ends
without widgets).
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ._live import LiveView
from ..errors import BadArgument, BrokerError, ConnectionFailed
from ..servers.chaos import dropping, in_lame_duck
from ..servers.retry import NATS_ERRORS

log = logging.getLogger("trashlab")

WIRETAP_NAME = "trashlab-flowmap"
#: Colours of the servers, in order (a client's stripe has its server's colour).
SERVER_COLOURS = ["#2e86c1", "#8e44ad", "#d68910", "#16a085", "#c0392b", "#7f8c8d"]
DOWN = "#c0392b"
UP = "#27ae60"
LAME = "#e67e22"
WIDTH = 940
ROW = 30
_COL_PUB, _COL_SUBJ, _COL_SUB = 12, 330, 636
_BOX_W = {"pub": 236, "subj": 216, "sub": 280}
_ASSETS = Path(__file__).parent
MOVED_SHOWN = 10.0  # seconds a client that changed server says where it came from
#: Subjects the wiretap counts one by one; any further one is counted under OTHER_SUBJECTS (a class that
#: publishes to one subject per can must not grow the table without end).
MAX_SUBJECTS = 100
OTHER_SUBJECTS = "> (other subjects)"
#: what keeps the wiretap from connecting: no server answers yet, or it wants credentials
_TAP_ERRORS: "tuple[type[BaseException], ...]" = (ConnectionFailed, *NATS_ERRORS)


def _subject_group(subject: str) -> str:
    """Internal subjects shown as one entry each: replies, service discovery, JetStream's API (its acks
    too), a key-value bucket, any other ``$`` subject by its first token."""
    if subject.startswith("_INBOX."):
        return "_INBOX.> (replies)"
    if subject.startswith("$SRV."):
        return "$SRV.> (service discovery)"
    if subject.startswith("$JS."):
        return "$JS.> (JetStream API)"
    if subject.startswith(("$KV.", "$O.")) and subject.count(".") >= 2:
        return subject.split(".", 2)[0] + "." + subject.split(".", 2)[1] + ".>"
    if subject.startswith("$"):
        return subject.split(".", 1)[0] + ".>"
    return subject


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def _resolve(target: Any) -> Any:
    """A Broker or Cluster as given, or the one this kernel started under that name (a cluster first)."""
    if not isinstance(target, str):
        return target
    from ..servers import names
    from ..servers.cluster import _clusters

    found = _clusters.get(target) or names.registered(target)
    if found is None:
        raise BadArgument(f"no broker or cluster named {target!r} was started here (running: "
                          f"{names.running_names()}): start it first, e.g. trashlab.Broker({target!r}).start()")
    return found


def _nodes_of(target: Any) -> Dict[str, Any]:
    """Name -> Broker for a Broker or a Cluster."""
    nodes = getattr(target, "nodes", None)
    if isinstance(nodes, dict):
        return nodes
    if hasattr(target, "monitor_url") and hasattr(target, "name"):
        return {target.name: target}
    raise BadArgument(f"FlowMap needs a trashlab.Broker or trashlab.Cluster, got {type(target).__name__}: "
                      "e.g. `trashlab.FlowMap(broker)` after `broker = trashlab.Broker('iot-msg').start()`")


def _fetch(url: str, endpoint: str) -> dict:
    from ..servers.monitor import fetch

    return fetch(url, endpoint, timeout=1.0)


#: Two samples closer than this give no rate (a map displayed and refreshed at once would divide by ~0 s).
MIN_SAMPLE_GAP = 0.15
#: What a rate shows before it has two samples (the first frame, a client or subject just seen).
NO_RATE_YET = "…"
#: The queue group ``nats.micro`` puts every endpoint in (nats-py's ``DEFAULT_QUEUE_GROUP``).
MICRO_QUEUE = "q"


def _rate_label(rate: Optional[float]) -> str:
    if rate is None:
        return NO_RATE_YET
    return f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.1f}/s" if rate else "0/s"


def _total(rates: "List[Optional[float]]") -> Optional[float]:
    """The sum of the rates known; None when there are some and none is known yet."""
    known = [r for r in rates if r is not None]
    return sum(known) if known or not rates else None


def _service_name(subs: List[dict]) -> Optional[str]:
    """The ``nats.micro`` service a connection serves, from its discovery subscription ``$SRV.PING.<name>``."""
    for s in subs:
        parts = (s.get("subject") or "").split(".")
        if len(parts) == 3 and parts[:2] == ["$SRV", "PING"]:
            return parts[2]
    return None


class _Wiretap:
    """One subscription to ``>``: messages per subject, the thing monitoring does not show.

    ``counts`` stays small: replies, JetStream acks and other internal subjects are counted by their
    group (:func:`_subject_group`), and subjects beyond :data:`MAX_SUBJECTS` under :data:`OTHER_SUBJECTS`.
    """

    def __init__(self, urls: List[str]) -> None:
        self.urls = urls
        self.counts: Dict[str, int] = {}
        self._nc: Any = None

    def count(self, subject: str) -> None:
        """Count one message published to ``subject``."""
        key = _subject_group(subject)
        if key not in self.counts and len(self.counts) >= MAX_SUBJECTS:
            key = OTHER_SUBJECTS
        self.counts[key] = self.counts.get(key, 0) + 1

    async def start(self) -> "_Wiretap":
        from ..servers.connection import connect

        self._nc = await connect(self.urls, name=WIRETAP_NAME, on_error=lambda e: True)  # quiet

        async def count(msg) -> None:
            self.count(msg.subject)

        await self._nc.subscribe(">", cb=count, pending_msgs_limit=1_000_000)
        return self

    async def stop(self) -> None:
        if self._nc is not None:
            nc, self._nc = self._nc, None
            try:
                await nc.close()
            except NATS_ERRORS:  # already gone with its server
                pass


class FlowMap(LiveView):
    """A live map of servers, clients, subjects and message rates; display it as a cell's last line.

    ``target``: a :class:`~trashlab.Broker`, a :class:`~trashlab.Cluster`, or the name of one started in
    this kernel (``"iot-msg"``).
    """

    _noun = "map"
    _again = "trashlab.FlowMap(cluster)"

    def __init__(self, target: Any, refresh: float = 1.0, *, wiretap: bool = True, internal: bool = False,
                 height: Optional[int] = None) -> None:
        target = _resolve(target)
        _nodes_of(target)  # one line on a wrong argument
        if not isinstance(refresh, (int, float)) or not 0.2 <= refresh <= 60:
            raise BadArgument(f"refresh={refresh!r} must be 0.2 to 60 seconds, e.g. 1")
        self.target = target
        self.refresh_interval = float(refresh)
        self.wiretap = wiretap
        self.internal = internal  # show _INBOX / $SRV / $JS traffic too
        self.height = height
        self.refreshes = 0
        self.last_poll_seconds = 0.0  # in a worker thread: the HTTP requests
        self.last_kernel_seconds = 0.0  # on the kernel's loop: rates, layout, sending the update
        self.data: dict = {}
        self._prev: Dict[str, Tuple[float, float, Optional[float]]] = {}  # counter -> (when, value, rate) last sampled
        self._fresh: set = set()  # counters seen in this poll (the others are forgotten)
        self._where: Dict[str, tuple] = {}  # client name -> (server, (moved from, when) or None)
        self._tap: Optional[_Wiretap] = None
        self._widget: Any = None
        self._handle: Any = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="trashlab-flowmap")

    @property
    def nodes(self) -> Dict[str, Any]:
        """The servers drawn, by name."""
        return _nodes_of(self.target)

    # ----- one poll: the endpoints of every node ---------------------------------------------------
    def _poll(self) -> dict:
        raw: Dict[str, Any] = {}
        for name, b in list(self.nodes.items()):
            entry: Dict[str, Any] = {"up": False}
            if b.running:
                try:
                    url = b.monitor_url
                    entry = {"up": True, "varz": _fetch(url, "varz"), "connz": _fetch(url, "connz?subs=detail&limit=1024"),
                             "routez": _fetch(url, "routez")}
                    if (entry["varz"].get("jetstream") or {}).get("config"):
                        entry["jsz"] = _fetch(url, "jsz?streams=1")
                except BrokerError:
                    entry = {"up": False}
            raw[name] = entry
        return raw

    def _rate(self, key: str, value: float, now: float) -> Optional[float]:
        """Per second since the last sample; None until there are two samples far enough apart (or after a reset)."""
        prev = self._prev.get(key)
        self._fresh.add(key)
        if prev is not None and now - prev[0] < MIN_SAMPLE_GAP:
            return prev[2]  # too close to the last sample to measure anything: keep it and its rate
        rate = None if prev is None or value < prev[1] else (value - prev[1]) / (now - prev[0])
        self._prev[key] = (now, value, rate)
        return rate

    def _moved(self, client: str, server: str, now: float) -> Optional[str]:
        """The server a client (by name) was on before, for MOVED_SHOWN seconds after it moved."""
        before = self._where.get(client)
        if before is None or before[0] == server:
            moved = before[1] if before else None
            if moved and now - moved[1] < MOVED_SHOWN:
                return moved[0]
            self._where[client] = (server, None)
            return None
        self._where[client] = (server, (before[0], now))
        return before[0]

    def snapshot(self, raw: Optional[dict] = None, now: Optional[float] = None) -> dict:
        """What the map shows now, as plain data (polls the servers when ``raw`` is not given); a rate is
        None until its counter has two samples (``now``: when ``raw`` was sampled, ``time.monotonic()``)."""
        if raw is None:
            raw = self._poll()
        now = time.monotonic() if now is None else now
        self._fresh = set()
        servers: List[dict] = []
        clients: List[dict] = []
        routes: set = set()
        streams: Dict[str, dict] = {}
        names = list(self.nodes)
        for name, entry in raw.items():
            colour = SERVER_COLOURS[names.index(name) % len(SERVER_COLOURS)] if name in names else "#555"
            if not entry["up"]:
                servers.append({"name": name, "up": False, "colour": colour, "clients": 0, "in": 0.0, "out": 0.0,
                                "slow": None})
                continue
            v = entry["varz"]
            servers.append({"name": name, "up": True, "colour": colour, "clients": 0,
                            "lame_duck": in_lame_duck(self.nodes[name]) if name in self.nodes else False,
                            "in": self._rate(f"s:{name}:in", v.get("in_msgs", 0), now),
                            "out": self._rate(f"s:{name}:out", v.get("out_msgs", 0), now),
                            "slow": v.get("slow_consumers", 0)})
            for r in entry["routez"].get("routes") or []:
                peer = r.get("remote_name")
                if peer:
                    routes.add(tuple(sorted((name, peer))))
            for c in entry["connz"].get("connections") or []:
                if c.get("name") == WIRETAP_NAME:
                    continue
                key = f"{name}:{c.get('cid')}"
                subs = []
                for s in c.get("subscriptions_list_detail") or []:
                    subs.append({"subject": s.get("subject"), "queue": s.get("qgroup") or "",
                                 "rate": self._rate(f"sub:{key}:{s.get('sid')}", s.get("msgs", 0), now)})
                cname = c.get("name") or f"cid {c.get('cid')}"
                service = _service_name(subs)
                for s in subs:  # nats.micro's endpoints: its queue group on a service's connection
                    s["endpoint"] = service is not None and s["queue"] == MICRO_QUEUE
                clients.append({"key": key, "name": cname, "moved_from": self._moved(cname, name, now),
                                "service": service,
                                "lang": c.get("lang") or "?", "server": name,
                                "in": self._rate(f"c:{key}:in", c.get("in_msgs", 0), now),
                                "out": self._rate(f"c:{key}:out", c.get("out_msgs", 0), now),
                                "pending": c.get("pending_bytes", 0), "subs": subs})
                servers[-1]["clients"] += 1
            for acc in (entry.get("jsz") or {}).get("account_details") or []:
                for st in acc.get("stream_detail") or []:
                    cl = st.get("cluster") or {}
                    info = streams.setdefault(st.get("name"), {
                        "name": st.get("name"), "leader": None, "replicas": [], "messages": 0, "hosts": set(),
                        "subjects": (st.get("config") or {}).get("subjects") or []})
                    # each node reports the stream it hosts; together they name the leader and every replica
                    info["hosts"].add(name)
                    info["hosts"].update(r.get("name") for r in cl.get("replicas") or [] if r.get("name"))
                    info["leader"] = cl.get("leader") or info["leader"] or (name if not cl else None)
                    info["messages"] = max(info["messages"], (st.get("state") or {}).get("messages", 0))
        for info in streams.values():
            info["replicas"] = sorted(info.pop("hosts") - {info["leader"]})
        subjects = self._subjects(clients, now)
        for key in [k for k in self._prev if k not in self._fresh]:  # clients and subjects that are gone
            del self._prev[key]
        up = [s["name"] for s in servers if s["up"]]
        missing = sorted({tuple(sorted((a, b))) for a in up for b in up if a < b} - routes) if len(up) > 1 else []
        return {"servers": servers, "routes": sorted(routes), "missing_routes": missing, "clients": clients,
                "subjects": subjects, "dropping": dropping(self.target),
                "streams": sorted(streams.values(), key=lambda s: s["name"]),
                "wiretap": self._tap is not None}

    def _subjects(self, clients: List[dict], now: float) -> Dict[str, Optional[float]]:
        """Subject (or collapsed group) -> messages per second published to it (None: not known yet)."""
        parts: Dict[str, List[Optional[float]]] = {}
        if self._tap is not None:
            for subject, n in list(self._tap.counts.items()):
                parts.setdefault(_subject_group(subject), []).append(self._rate(f"t:{subject}", n, now))
        rates = {group: _total(r) for group, r in parts.items()}
        for c in clients:
            for s in c["subs"]:
                group = _subject_group(s["subject"])
                if group == s["subject"] and group not in rates:
                    # a wildcard subscription: the published subjects it matches
                    rates[group] = _total([r for subj, r in rates.items() if _matches(group, subj) and subj != group])
        if not self.internal:
            rates = {s: r for s, r in rates.items() if not s.startswith(("_INBOX", "$"))}
        return rates

    # ----- the picture as data -----------------------------------------------------------------
    def layout(self, snap: dict) -> dict:
        """Boxes, texts and arrows (each a dict with an ``id``) for ``snap``; the JS and the SVG draw these."""
        items: List[dict] = []
        servers = snap["servers"]
        colour = {s["name"]: s["colour"] for s in servers}
        n = max(1, len(servers))
        sw = min(200, (WIDTH - 40) // n - 20)
        pos = {}
        for i, s in enumerate(servers):
            x = 20 + i * (WIDTH - 40) // n + ((WIDTH - 40) // n - sw) // 2
            pos[s["name"]] = (x, 34)
            lame = s.get("lame_duck")
            state = "LAME DUCK" if lame else "up" if s["up"] else "DOWN"
            items.append({"id": f"srv:{s['name']}", "kind": "box", "x": x, "y": 34, "w": sw, "h": 52,
                          "fill": "#fef5e7" if lame else "#eafaf1" if s["up"] else "#fdedec",
                          "stroke": LAME if lame else UP if s["up"] else DOWN,
                          "sw": 3, "cls": "server" + (" lame" if lame else "" if s["up"] else " down")})
            items.append({"id": f"srvt:{s['name']}", "kind": "text", "x": x + 8, "y": 52, "bold": True,
                          "fill": LAME if lame else s["colour"], "text": f"● {s['name']}  {state}"})
            detail = (f"{s['clients']} clients · in {_rate_label(s['in'])} · out {_rate_label(s['out'])}"
                      + (f" · slow {s['slow']}" if s["slow"] else "")) if s["up"] else "not answering: stopped or killed"
            items.append({"id": f"srvd:{s['name']}", "kind": "text", "x": x + 8, "y": 72, "size": 11,
                          "fill": "#333" if s["up"] else DOWN, "text": detail})
        for a, b in snap.get("missing_routes", []):  # both up, yet not routed: a partition
            if a in pos and b in pos:
                (xa, ya), (xb, _) = pos[a], pos[b]
                lo, hi = sorted((xa, xb))
                items.append({"id": f"cut:{a}:{b}", "kind": "path", "stroke": DOWN, "sw": 2, "dash": "4 4",
                              "d": f"M{lo + sw},{ya + 26} L{hi},{ya + 26}"})
                items.append({"id": f"cutt:{a}:{b}", "kind": "text", "x": (lo + sw + hi) / 2 - 40, "y": ya + 20,
                              "size": 11, "fill": DOWN, "bold": True, "text": "no route: partitioned"})
        for a, b in snap["routes"]:
            if a in pos and b in pos:
                (xa, ya), (xb, _) = pos[a], pos[b]
                lo, hi = sorted((xa, xb))
                mid = (lo + sw + hi) / 2
                items.append({"id": f"route:{a}:{b}", "kind": "path", "stroke": "#7f8c8d", "sw": 2,
                              "d": f"M{lo + sw},{ya + 18} C{mid},{ya - 4} {mid},{ya - 4} {hi},{ya + 18}"})
                items.append({"id": f"routet:{a}:{b}", "kind": "text", "x": mid - 16, "y": ya + 2, "size": 10,
                              "fill": "#7f8c8d", "text": "route"})
        y0 = 104
        for st in snap["streams"]:
            reps = " ".join(("★" if r == st["leader"] else "") + r
                            for r in ([st["leader"]] if st["leader"] else []) + st["replicas"])
            reps += "" if st["leader"] else " (no leader: electing)"
            items.append({"id": f"stream:{st['name']}", "kind": "box", "x": 20, "y": y0, "w": WIDTH - 40, "h": 22,
                          "fill": "#fef9e7", "stroke": "#d4ac0d", "sw": 1.5, "cls": "stream"})
            items.append({"id": f"streamt:{st['name']}", "kind": "text", "x": 28, "y": y0 + 15, "size": 12,
                          "text": f"JetStream stream {st['name']} ({', '.join(st['subjects'])}): "
                                  f"{st['messages']:,} msgs · R{1 + len(st['replicas'])} on {reps} (★ leader)"})
            y0 += 28
        items.append({"id": "hdr:pub", "kind": "text", "x": _COL_PUB, "y": y0 + 14, "size": 11, "fill": "#666",
                      "text": "clients: publishers and others"})
        items.append({"id": "hdr:subj", "kind": "text", "x": _COL_SUBJ, "y": y0 + 14, "size": 11, "fill": "#666",
                      "text": "subjects (published msgs/s)"})
        items.append({"id": "hdr:sub", "kind": "text", "x": _COL_SUB, "y": y0 + 14, "size": 11, "fill": "#666",
                      "text": "subscribers (delivered msgs/s)"})
        top = y0 + 24
        subjects = dict(snap["subjects"])
        subscribers = [c for c in snap["clients"] if any(not s["subject"].startswith(("_INBOX", "$"))
                                                          or self.internal for s in c["subs"])]
        others = [c for c in snap["clients"] if c not in subscribers]
        for c in subscribers:
            for s in c["subs"]:
                g = _subject_group(s["subject"])
                if self.internal or not g.startswith(("_INBOX", "$")):
                    subjects.setdefault(g, 0.0)
        # subjects column
        spos: Dict[str, Tuple[int, int]] = {}
        for k, (subject, rate) in enumerate(sorted(subjects.items())):
            y = top + k * (ROW + 8)
            spos[subject] = (_COL_SUBJ, y)
            lost = snap.get("dropping", {}).get(subject)
            box = {"id": f"subj:{subject}", "kind": "box", "x": _COL_SUBJ, "y": y, "w": _BOX_W["subj"], "h": ROW,
                   "fill": "#f4f6f7", "stroke": "#566573", "sw": 1.5, "r": 14, "cls": "subject"}
            if lost:
                box.update(fill="#fdedec", stroke=DOWN, dash="5 3")
            items.append(box)
            items.append({"id": f"subjt:{subject}", "kind": "text", "x": _COL_SUBJ + 12, "y": y + 19, "size": 12,
                          "fill": DOWN if lost else "#222", "bold": True,
                          "text": f"{subject}   {_rate_label(rate)}" + (f" · losing {lost:g} %" if lost else "")})
        # subscribers column: plain subscriptions, services (nats.micro) as one box with their endpoints,
        # then queue groups as one box with members
        groups: Dict[Tuple[str, str], List[Tuple[dict, dict]]] = {}
        plain: List[Tuple[dict, dict]] = []
        for c in subscribers:
            if c.get("service"):
                continue
            for s in c["subs"]:
                if not self.internal and s["subject"].startswith(("_INBOX", "$")):
                    continue
                (groups.setdefault((s["subject"], s["queue"]), []) if s["queue"] else plain).append((c, s))
        y = top
        for c, s in plain:
            items += self._client_box(c, "sub", _COL_SUB, y, colour, f"sub:{c['key']}:{s['subject']}")
            items += self._arrow(f"e:{s['subject']}>{c['key']}", spos.get(_subject_group(s["subject"])),
                                 (_COL_SUB, y), s["rate"], colour.get(c["server"], "#555"))
            y += ROW + 8
        for service in self.services(snap):
            items += self._service_box(service, y, spos, colour)
            y += 40 + len(service["endpoints"]) * 24 + 8
        for (subject, queue), members in sorted(groups.items()):
            h = 22 + len(members) * (ROW + 4) + 4
            items.append({"id": f"q:{subject}:{queue}", "kind": "box", "x": _COL_SUB - 8, "y": y, "w": _BOX_W["sub"] + 16,
                          "h": h, "fill": "#fbeee6", "stroke": "#ca6f1e", "sw": 1.5, "dash": "5 3", "cls": "queue"})
            items.append({"id": f"qt:{subject}:{queue}", "kind": "text", "x": _COL_SUB, "y": y + 15, "size": 11,
                          "fill": "#ca6f1e", "bold": True,
                          "text": f"queue group '{queue}': 1 of {len(members)} gets each"})
            for m, (c, s) in enumerate(members):
                my = y + 22 + m * (ROW + 4)
                items += self._client_box(c, "sub", _COL_SUB, my, colour, f"sub:{c['key']}:{subject}:{queue}")
                items += self._arrow(f"e:{subject}>{c['key']}:{queue}", spos.get(_subject_group(subject)),
                                     (_COL_SUB, my), s["rate"], colour.get(c["server"], "#555"))
            y += h + 8
        # publishers (and clients that do neither) on the left; an arrow to the subject whose rate matches
        y = top
        traffic = {s: r for s, r in subjects.items() if r}
        for c in sorted(others, key=lambda c: (-(c["in"] or 0), c["name"])):
            items += self._client_box(c, "pub", _COL_PUB, y, colour, f"pub:{c['key']}")
            for subject in self._published_by(c, traffic, snap["clients"]):
                items += self._arrow(f"p:{c['key']}>{subject}", (_COL_PUB + _BOX_W["pub"], y), spos.get(subject),
                                     c["in"], colour.get(c["server"], "#555"), guessed=True, forward=True)
            y += ROW + 8
        bottom = max([it["y"] + it.get("h", 0) for it in items if "y" in it] + [top]) + 16
        return {"width": WIDTH, "height": self.height or bottom, "items": items}

    def services(self, snap: dict) -> List[dict]:
        """The ``nats.micro`` services in ``snap``, one per name: its instances (clients) and what they
        receive, endpoints first (a rate summed over the instances; None: not known yet)."""
        found: Dict[str, dict] = {}
        for c in snap["clients"]:
            if not c.get("service"):
                continue
            svc = found.setdefault(c["service"], {"name": c["service"], "instances": [], "parts": {}})
            svc["instances"].append(c)
            for s in c["subs"]:
                if not self.internal and s["subject"].startswith(("_INBOX", "$")):
                    continue
                svc["parts"].setdefault((not s["endpoint"], s["subject"]), []).append(s["rate"])
        for svc in found.values():
            svc["endpoints"] = [{"subject": subject, "endpoint": not other, "rate": _total(rates)}
                                for (other, subject), rates in sorted(svc.pop("parts").items())]
        return [found[name] for name in sorted(found)]

    def _service_box(self, svc: dict, y: int, spos: Dict[str, Tuple[int, int]], colour: dict) -> List[dict]:
        """One box for a service, named as it is, with a row per endpoint (and per plain subscription)."""
        ident = f"svc:{svc['name']}"
        first = svc["instances"][0]
        stripe = colour.get(first["server"], "#555")
        n = len(svc["instances"])
        where = ", ".join(sorted({c["server"] for c in svc["instances"]}))
        items = [
            {"id": ident, "kind": "box", "x": _COL_SUB - 8, "y": y, "w": _BOX_W["sub"] + 16,
             "h": 40 + len(svc["endpoints"]) * 24, "fill": "#eef6fb", "stroke": stripe, "sw": 1.5, "cls": "service",
             "stripe": stripe},
            {"id": ident + ":t", "kind": "text", "x": _COL_SUB, "y": y + 15, "size": 12, "bold": True,
             "text": f"{svc['name']} ({first['lang']}) · service"},
            {"id": ident + ":d", "kind": "text", "x": _COL_SUB, "y": y + 30, "size": 10, "fill": "#555",
             "text": f"on {where}" + (f" · {n} instances" if n > 1 else "")},
        ]
        for k, e in enumerate(svc["endpoints"]):
            ry = y + 36 + k * 24
            row = f"{ident}:{e['subject']}"
            items.append({"id": row, "kind": "box", "x": _COL_SUB, "y": ry, "w": _BOX_W["sub"], "h": 20,
                          "fill": "#ffffff", "stroke": "#aab7b8", "sw": 1, "r": 4, "cls": "endpoint"})
            items.append({"id": row + ":t", "kind": "text", "x": _COL_SUB + 8, "y": ry + 14, "size": 11,
                          "text": ("endpoint " if e["endpoint"] else "listens to ") + e["subject"]})
            start = spos.get(_subject_group(e["subject"]))
            items += self._arrow(f"e:{e['subject']}>{ident}", start, (_COL_SUB, ry - 5), e["rate"], stripe)
        return items

    @staticmethod
    def _published_by(c: dict, traffic: Dict[str, float], clients: List[dict]) -> List[str]:
        """Subjects a client most likely publishes to: the rates must match (the endpoints do not say)."""
        if not c["in"] or not traffic:
            return []
        if len(traffic) == 1:
            return list(traffic)
        publishers = sum(x["in"] for x in clients if x["in"])
        return [s for s, r in traffic.items()
                if abs(r - c["in"]) <= 0.25 * max(r, c["in"]) or abs(r - publishers) <= 0.25 * max(r, publishers)]

    @staticmethod
    def _client_box(c: dict, col: str, x: int, y: int, colour: dict, ident: str) -> List[dict]:
        stripe = colour.get(c["server"], "#555")
        rate = f"pub {_rate_label(c['in'])}" if col == "pub" else f"got {_rate_label(c['out'])}"
        slow = " · pending %dk" % (c["pending"] // 1024) if c["pending"] > 64 * 1024 else ""
        return [
            {"id": ident, "kind": "box", "x": x, "y": y, "w": _BOX_W[col], "h": ROW, "fill": "#ffffff",
             "stroke": stripe, "sw": 1.5, "cls": "client", "stripe": stripe},
            {"id": ident + ":t", "kind": "text", "x": x + 10, "y": y + 13, "size": 12, "bold": True,
             "text": f"{c['name']} ({c['lang']})"},
            {"id": ident + ":d", "kind": "text", "x": x + 10, "y": y + 26, "size": 10, "fill": "#555",
             "text": f"on {c['server']}" + (f" (was on {c['moved_from']})" if c.get("moved_from") else "")
                     + f" · {rate}{slow}"},
        ]

    @staticmethod
    def _arrow(ident: str, start: Optional[Tuple[int, int]], end: Optional[Tuple[int, int]], rate: Optional[float],
               colour: str, guessed: bool = False, forward: bool = False) -> List[dict]:
        if start is None or end is None:
            return []
        if forward:  # publisher box's right edge -> subject's left edge
            (x1, y1), (x2, y2) = (start[0], start[1] + ROW // 2), (end[0], end[1] + ROW // 2)
        else:  # subject's right edge -> subscriber's left edge
            (x1, y1), (x2, y2) = (start[0] + _BOX_W["subj"], start[1] + ROW // 2), (end[0], end[1] + ROW // 2)
        mx = (x1 + x2) / 2
        width = 1.5 + min(5.0, (rate or 0) / 100)
        item = {"id": ident, "kind": "path", "d": f"M{x1},{y1} C{mx},{y1} {mx},{y2} {x2 - 6},{y2}",
                "stroke": colour if rate else "#bbb", "sw": width, "arrow": True, "rate": round(rate or 0, 1),
                "cls": "flow" + (" guessed" if guessed else "")}
        if guessed:
            item["dash"] = "6 4"
        label = {"id": ident + ":r", "kind": "text", "x": x2 - 62, "y": y2 - 5, "size": 11,
                 "fill": colour if rate else "#999", "text": _rate_label(rate), "bold": True}
        return [item, label]

    # ----- static picture ----------------------------------------------------------------------
    def svg(self, picture: Optional[dict] = None) -> str:
        """The map as a standalone SVG (the still picture a saved notebook keeps)."""
        picture = picture or self.data.get("picture") or self.layout(self.snapshot())
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{picture["width"]}" height="{picture["height"]}" '
               f'viewBox="0 0 {picture["width"]} {picture["height"]}" font-family="sans-serif">',
               '<defs><marker id="fm-arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="10" markerHeight="10" '
               'markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>',
               f'<text x="8" y="18" font-size="13" fill="#333">{html.escape(self.data.get("title", ""))}</text>']
        for it in picture["items"]:
            dash = f' stroke-dasharray="{it["dash"]}"' if it.get("dash") else ""
            if it["kind"] == "box":
                out.append(f'<rect x="{it["x"]}" y="{it["y"]}" width="{it["w"]}" height="{it["h"]}" rx="{it.get("r", 6)}" '
                           f'fill="{it["fill"]}" stroke="{it["stroke"]}" stroke-width="{it["sw"]}"{dash}/>')
                if it.get("stripe"):
                    out.append(f'<rect x="{it["x"]}" y="{it["y"]}" width="5" height="{it["h"]}" fill="{it["stripe"]}"/>')
            elif it["kind"] == "text":
                weight = ' font-weight="bold"' if it.get("bold") else ""
                out.append(f'<text x="{it["x"]}" y="{it["y"]}" font-size="{it.get("size", 13)}" '
                           f'fill="{it.get("fill", "#222")}"{weight}>{html.escape(it["text"])}</text>')
            elif it["kind"] == "path":
                marker = ' marker-end="url(#fm-arrow)"' if it.get("arrow") else ""
                out.append(f'<path d="{it["d"]}" fill="none" stroke="{it["stroke"]}" stroke-width="{it["sw"]}"'
                           f'{dash}{marker}/>')
        out.append("</svg>")
        return "".join(out)

    # ----- one refresh ---------------------------------------------------------------------------
    def _title(self, snap: dict) -> str:
        up = sum(s["up"] for s in snap["servers"])
        state = " (stopped)" if self._stopped else " (paused)" if self._paused else ""
        tap = "" if snap.get("wiretap") else " · no wiretap: publish arrows need wiretap=True"
        return (f"{up}/{len(snap['servers'])} servers up · {len(snap['clients'])} clients · "
                f"{len(snap['subjects'])} subjects · {time.strftime('%H:%M:%S')}{state}{tap}")

    def _apply(self, raw: dict) -> None:
        t0 = time.perf_counter()
        snap = self.snapshot(raw)
        picture = self.layout(snap)
        self.data = {"title": self._title(snap), "picture": picture, "snapshot": snap}
        if self._widget is not None:
            self._widget.title = self.data["title"]
            self._widget.picture = picture
            self._widget.state = "stopped" if self._stopped else "paused" if self._paused else "live"
        self.refreshes += 1
        self.last_kernel_seconds = time.perf_counter() - t0

    async def refresh(self) -> None:
        """Poll the servers (in a worker thread) and update the map now."""
        t0 = time.perf_counter()
        raw = await asyncio.get_running_loop().run_in_executor(self._pool, self._poll)
        self.last_poll_seconds = time.perf_counter() - t0
        self._apply(raw)

    # ----- lifecycle -----------------------------------------------------------------------------
    def _replaces(self, other: LiveView) -> bool:
        """A re-run cell's map of the same servers (maybe new objects) replaces the old one."""
        assert isinstance(other, FlowMap)
        return other.target is self.target or set(other.nodes) == set(self.nodes)

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:  # cancelled by stop() (from any context: a cell, the Stop button) or ended: close the wiretap
            if self._tap is not None:
                tap, self._tap = self._tap, None
                await asyncio.shield(tap.stop())

    async def _loop(self) -> None:
        failures = tap_failures = 0
        while not self._stopped:
            if self.wiretap and self._tap is None and tap_failures < 3:
                urls = [b.url for b in self.nodes.values() if b.running]
                if urls:
                    try:
                        self._tap = await _Wiretap(urls).start()
                    except _TAP_ERRORS as e:  # no server answers yet, or it wants an account: a few tries
                        tap_failures += 1
                        if tap_failures == 3:
                            log.warning("trashlab: the flow map draws no publish arrows (its wiretap cannot "
                                        "connect: %s); subscriptions and rates are still shown", e)
            if not self._paused:
                try:
                    await self.refresh()
                    failures = 0
                except Exception as e:  # blind: a view never raises into the kernel's loop: one line, then it stops refreshing
                    failures += 1
                    if failures >= 3:
                        log.warning("trashlab: flow map stopped refreshing: %s", e)
                        return
            await asyncio.sleep(self.refresh_interval)

    def pause(self) -> None:
        """Stop redrawing for now."""
        self._paused = True
        if self._widget is not None:
            self._widget.state = "paused"

    def resume(self) -> None:
        """Redraw again after :meth:`pause`."""
        self._paused = False
        if self._widget is not None:
            self._widget.state = "live"

    def stop(self) -> None:
        """Stop for good: end polling and the wiretap, and leave a still SVG of the last state in the output."""
        if not self._end_task():
            return
        if self.data:
            self.data["title"] = self.data["title"] + " (stopped)"
        if self._widget is not None:
            # the view freezes on its last picture, buttons off: what a front end that ignores the update
            # below keeps showing (Voilà); the widget is left open for that reason
            self._widget.title = self.data.get("title", "")
            self._widget.state = "stopped"
            self._widget = None
        if self._handle is not None:  # JupyterLab, nbclient: the output becomes a still SVG, kept when saved
            from IPython.display import HTML

            self._handle.update(HTML(self.svg()))
            self._handle = None
        self._pool.shutdown(wait=False)

    # ----- display -------------------------------------------------------------------------------
    def _make_widget(self) -> Any:
        import anywidget
        import traitlets

        owner = weakref.ref(self)

        class _FlowMapWidget(anywidget.AnyWidget):
            _esm = _ASSETS / "flowmap.js"
            _css = _ASSETS / "flowmap.css"
            picture = traitlets.Dict({}).tag(sync=True)
            title = traitlets.Unicode("").tag(sync=True)
            state = traitlets.Unicode("live").tag(sync=True)
            still = traitlets.Unicode("").tag(sync=False)

            def _repr_mimebundle_(self, **kwargs: Any) -> Any:
                bundle = super()._repr_mimebundle_(**kwargs)
                if bundle and self.still:  # front ends without widgets (nbconvert, GitHub) show this
                    bundle[0]["text/html"] = self.still
                return bundle

        widget = _FlowMapWidget()

        def on_msg(_widget: Any, content: Any, _buffers: Any) -> None:
            me = owner()
            if me is None or not isinstance(content, dict):
                return
            action = content.get("action")
            if action == "pause":
                me.pause()
            elif action == "resume":
                me.resume()
            elif action == "stop":
                me.stop()

        widget.on_msg(on_msg)
        return widget

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        if self._stopped:
            display(HTML(self.svg()))
            return
        self._apply(self._poll())
        self._widget = self._make_widget()
        self._widget.title, self._widget.picture = self.data["title"], self.data["picture"]
        self._widget.still = self.svg()
        self._handle = display(self._widget, display_id=True)
        self.start()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "paused" if self._paused else "running" if self.running else "idle"
        return (f"<FlowMap of {self.target!r}, {state}, every {self.refresh_interval:g}s, {self.refreshes} refreshes, "
                f"last refresh {self.last_kernel_seconds * 1000:.1f} ms in the kernel>")
