"""The ``trashlab`` command: the lab's containers as terminal programs.

``trashlab broker`` is the ``nats`` container, ``trashlab sim`` is ``node sim.js``, ``trashlab report``
is ``node rep.js`` (and it answers requests), ``trashlab levels`` asks it, ``trashlab cluster`` is the
lab's ``iot-msg`` + ``iot-msg2`` pair (or more nodes), ``trashlab demo`` runs the whole lab headless.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Callable, Optional, Sequence

from ._progress import poll_until
from ._secrets import redact
from .errors import BadArgument, BrokerError, TrashlabError


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None  # argparse prints this one line; the cause adds nothing
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"{text} is negative: use 0 (full speed) or a positive number of seconds")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None  # argparse prints this one line; the cause adds nothing
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative: give 0 or more")
    return value


def _port(text: str) -> int:
    value = _count(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return value


def _servers_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--servers", "-s", default=None,
                   help="NATS URL(s), comma-separated (default: $NATS_URL, the place for a URL with a password: "
                        "`ps` shows a command line to every user), e.g. nats://127.0.0.1:4222")
    # how a parent process resolved them (trashlab.spawn_simulator): the child keeps the same fallback policy
    p.add_argument("--origin", default=None, help=argparse.SUPPRESS)
    p.add_argument("--fallback", default=None, help=argparse.SUPPRESS)
    p.add_argument("--fallback-name", default=None, help=argparse.SUPPRESS)


def _servers(args):
    """The servers a command was given, resolved once with the policy its parent passed on."""
    from .servers.connection import resolve_servers

    return resolve_servers(args.servers, origin=args.origin, fallback=args.fallback, fallback_name=args.fallback_name)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage block) naming the fix; exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``trashlab`` command."""
    parser = _Parser(prog="trashlab", description="The NATS trash-can lab, without Docker.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("broker", help="run a nats-server in the foreground (Ctrl-C stops it)")
    p.add_argument("--name", default="iot-msg", help="server name (default iot-msg)")
    p.add_argument("--port", type=_port, default=None, help="client port (default: a free one)")
    p.add_argument("--jetstream", action="store_true", help="enable JetStream (store in a temporary folder)")
    p.add_argument("--store-dir", default=None, help="JetStream store folder (implies --jetstream)")
    p.add_argument("--listen", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; anything else needs --user/--password or --token)")
    p.add_argument("--user", default=None, help="user clients log in as (with the password)")
    p.add_argument("--password", default=None,
                   help="default $TRASHLAB_PASSWORD; prefer the variable: a command line shows in `ps` to every user")
    p.add_argument("--token", default=None, help="default $TRASHLAB_TOKEN (same reason)")

    p = sub.add_parser("sim", help="publish random trash levels like the lab's sim.js")
    _servers_arg(p)
    p.add_argument("--subject", default="trash-level")
    p.add_argument("--interval", type=_positive_float, default=4.0, help="seconds between messages (default 4)")
    p.add_argument("--count", type=_count, default=None, help="stop after N messages (default: run until Ctrl-C)")
    p.add_argument("--cans", type=_count, default=1000, help="can ids range 0..N (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")
    p.add_argument("--sequence", action="store_true", help="add a \"seq\" number to each message")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print each message")

    p = sub.add_parser("report", help="subscribe like rep.js and serve trash-report requests")
    _servers_arg(p)
    p.add_argument("--subject", default="trash-level")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print each message")

    p = sub.add_parser("levels", help="ask the report service for the latest levels")
    _servers_arg(p)
    p.add_argument("--can", default=None, help="only this can id")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--timeout", type=_positive_float, default=2.0)

    p = sub.add_parser("cluster", help="run a cluster of nats-servers in the foreground (Ctrl-C stops it)")
    p.add_argument("--size", type=_count, default=2, help="number of nodes (default 2)")
    p.add_argument("--name", default="iot-msg", help="first node's name; others get 2, 3, ... (default iot-msg)")
    p.add_argument("--jetstream", action="store_true", help="enable JetStream on every node")

    sub.add_parser("demo", help="the whole lab headless in under a minute")
    _add_classroom(sub)
    return parser


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    return stop


def _broker(args) -> int:
    from .servers.broker import Broker

    password = args.password or (os.environ.get("TRASHLAB_PASSWORD") if args.user else None)
    broker = Broker(args.name, port=args.port, jetstream=args.jetstream or bool(args.store_dir),
                    host=args.listen, store_dir=args.store_dir, user=args.user, password=password,
                    token=args.token or os.environ.get("TRASHLAB_TOKEN") or None)

    def announce() -> None:
        print(redact(broker.url), flush=True)  # you know the password; a terminal's scrollback need not
        print(f"monitoring: {broker.monitor_url}  (name {broker.name}, pid {broker.pid}; Ctrl-C stops it)", flush=True)
        leaf = broker.config.leaf_remote
        if leaf:
            print(f"in the class: a leaf node of the hub {redact(leaf)} (`trashlab classroom leave` to stop joining)",
                  flush=True)

    return foreground(broker, announce, f"nats-server {broker.name}", f"broker {broker.name}")


def foreground(broker, announce: Callable[[], None], process: str, label: str) -> int:
    """Start ``broker``, ``announce()`` it, run until Ctrl-C / SIGTERM (exit 0) or until it dies (exit 1)."""
    stopping = {"flag": False}

    def on_signal(signum, frame):
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    broker.start()
    announce()
    poll_until(lambda: not broker.running or stopping["flag"], timeout=float("inf"), every=0.2)
    if not broker.running and not stopping["flag"]:
        print(f"trashlab: error: {process} exited unexpectedly", file=sys.stderr)
        return 1
    broker.stop()
    print(f"{label} stopped", flush=True)
    return 0


async def _cluster(args) -> int:
    from .servers.cluster import Cluster

    cluster = Cluster(args.size, name=args.name, jetstream=args.jetstream)
    stop = _stop_event()
    try:
        await cluster.astart()
        for name, node in cluster.nodes.items():
            print(redact(f"{name}: {node.url}  routes {node.route_url}  monitoring {node.monitor_url}"), flush=True)
        print(redact(f"servers: {','.join(cluster.urls)}"), flush=True)
        print(f"cluster {cluster.cluster_name} formed with {args.size} nodes; Ctrl-C stops it", file=sys.stderr, flush=True)
        while not stop.is_set() and all(b.running for b in cluster.nodes.values()):
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        dead = [n for n, b in cluster.nodes.items() if not b.running]
        if dead and not stop.is_set():
            print(f"trashlab: error: node {', '.join(dead)} exited unexpectedly", file=sys.stderr)
            return 1
        return 0
    finally:
        cluster.stop()
        print(f"cluster {cluster.name} stopped", file=sys.stderr, flush=True)


async def _sim(args) -> int:
    from .services.simulator import Simulator

    echo = None if args.quiet else (lambda payload: print("publishing: " + payload.decode(), flush=True))
    sim = Simulator(_servers(args), args.subject, interval=args.interval, cans=args.cans, count=args.count,
                    seed=args.seed, sequence=args.sequence, name="trashlab-sim", on_publish=echo)
    stop = _stop_event()
    await sim.start()
    waiter = asyncio.ensure_future(sim.wait())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    await sim.stop()
    print(f"published {sim.published} messages to {args.subject}", file=sys.stderr, flush=True)
    return 1 if sim.error else 0


async def _report(args) -> int:
    from .services.report import ReportService

    echo = None if args.quiet else (lambda payload: print("Received report: " + payload.decode(), flush=True))
    svc = ReportService(_servers(args), args.subject, on_message=echo)
    stop = _stop_event()
    await svc.start()
    print(f"report service {svc.name} listening on {svc.subject} via {svc.connected_url} "
          f"(levels kept in {svc.store.kind})", file=sys.stderr, flush=True)
    await stop.wait()
    await svc.stop()
    print(f"received {svc.received} reports ({svc.rejected_count} rejected)", file=sys.stderr, flush=True)
    return 0


async def _levels(args) -> int:
    from .services.report import query_level, query_levels

    if args.can is not None:
        row = await query_level(args.can, _servers(args), timeout=args.timeout)
        row["updated_at"] = row["updated_at"].isoformat()
        print(json.dumps(row) if args.json else "\n".join(f"{k:>10}: {v}" for k, v in row.items()))
        return 0
    frame = await query_levels(_servers(args), timeout=args.timeout)
    if args.json:
        out = frame.assign(updated_at=frame["updated_at"].map(lambda t: t.isoformat()))
        print(json.dumps(out.to_dict(orient="records")))
    elif frame.empty:
        print("the report service has no levels yet (is a simulator publishing?)")
    else:
        print(frame.to_string(index=False))
        print(f"{len(frame)} cans")
    return 0


# ----- `trashlab classroom ...` ----------------------------------------------------------------
def _add_classroom(sub) -> None:
    """Add ``trashlab classroom serve|view|join|leave`` to the ``trashlab`` command's subparsers."""
    p = sub.add_parser("classroom", help="a class hub: one account per student, the instructor sees all")
    cmds = p.add_subparsers(dest="classroom_command", metavar="ACTION")
    cmds.required = True
    s = cmds.add_parser("serve", help="run the class hub in the foreground and write the roster (Ctrl-C stops it)")
    s.add_argument("--students", type=int, default=30, help="number of students, s01, s02, ... (default 30)")
    s.add_argument("--dir", default="class", help="folder for roster.txt and instructor.json (default ./class); "
                                                   "an existing one keeps its passwords")
    s.add_argument("--name", default="class-hub", help="server name (default class-hub)")
    s.add_argument("--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for a room)")
    s.add_argument("--port", type=int, default=None, help="client port (default: a free one; 4222 for a room)")
    s.add_argument("--leaf-port", type=int, default=None, help="leaf-node port (default: a free one; 7422 for a room)")
    s.add_argument("--websocket-port", type=int, default=None,
                   help="also accept leaf nodes over WebSocket on this port (0: a free one)")
    s.add_argument("--advertise", default=None, help="host name students use (default: this machine's name)")
    s.add_argument("--nodes", type=_count, default=1,
                   help="run the hub as a cluster of this many nats-servers on this machine (default 1; 3 for "
                        "hundreds of students); with --port/--leaf-port/--cluster-port, node i uses PORT+i-1")
    s.add_argument("--cluster-port", type=int, default=None, help="route port of a clustered hub (default: free "
                                                                   "ones; 6222 with --hosts)")
    s.add_argument("--hosts", default=None, help="a hub of one node per host: every hub host's name as students "
                                                 "reach it, comma-separated (hub1,hub2,hub3); run serve on each")
    s.add_argument("--this", default=None, help="with --hosts: which of them this host is")
    s.add_argument("--keep-readings", action="store_true",
                   help="keep every student's readings in a JetStream stream on the hub, each one acknowledged: none "
                        "lost when a hub node dies (remembered: serving the folder again keeps them too)")
    s.add_argument("--monitor-listen", default="127.0.0.1",
                   help="with --hosts: the address monitoring listens on (default 127.0.0.1; give this host's "
                        "address for the instructor's page to reach it, and let only that machine through)")
    v = cmds.add_parser("view", help="serve the live class page with Voila on 127.0.0.1")
    v.add_argument("--dir", default="class", help="the folder `classroom serve` wrote (default ./class)")
    v.add_argument("--port", type=int, default=8866, help="web port of the page (default 8866)")
    v.add_argument("--idle", type=float, default=60.0,
                   help="seconds a page's kernel keeps running with no browser showing it (default 60); "
                        "then it stops watching and the server ends it as idle")
    j = cmds.add_parser("join", help="join a class with your roster line (your brokers become leaf nodes of the hub)")
    j.add_argument("line", help="the file holding your roster line (students/s01.txt), or - to paste the line on "
                               "stdin; a line given here is seen by every user of this machine in `ps`")
    cmds.add_parser("leave", help="leave the class: brokers started from now on stay private")


def _classroom(args) -> int:
    """Run ``trashlab classroom <action>``; returns the exit code."""
    from .servers.classroom import join, leave

    if args.classroom_command == "join":
        if args.line == "-":
            if sys.stdin.isatty():
                print("paste your roster line, then press Enter:", file=sys.stderr, flush=True)
            args.line = sys.stdin.readline()
        seat = join(args.line)
        print(f"joined the class as {seat.student}: brokers you start from now on are leaf nodes of "
              f"{redact(seat.leaf_url)}", flush=True)
        return 0
    if args.classroom_command == "leave":
        print("left the class" if leave() else "no class was joined", flush=True)
        return 0
    if args.classroom_command == "view":
        return _class_view(args)
    return _class_serve(args)


def _class_serve(args) -> int:
    from pathlib import Path
    from urllib.parse import urlsplit

    from .servers.classroom import INSTRUCTOR_FILE, ClassHub, read_class

    folder = Path(args.dir)
    if args.nodes == 1 and not args.hosts and (folder / INSTRUCTOR_FILE).exists():
        args.nodes = len(read_class(folder).get("nodes") or [None])  # a clustered class served again: all its nodes
    if args.nodes > 1 or args.hosts:
        return _class_cluster_serve(args, folder)
    passwords, students = None, args.students
    ports: tuple = (args.port, args.leaf_port, args.websocket_port)
    monitor_port = None
    keep = args.keep_readings
    if (folder / INSTRUCTOR_FILE).exists():  # a restarted hub: the lines handed out stay valid
        info = read_class(folder)
        keep = keep or bool(info.get("kept_url"))
        passwords, students = info["passwords"], info["students"]
        ports = tuple(given if given is not None else info.get(key) for given, key in
                      zip(ports, ("port", "leaf_port", "websocket_port"), strict=True))
        monitor_port = urlsplit(info.get("monitor_url") or "").port  # an open class page polls this one
        print(f"reusing the roster in {folder} ({len(students)} students, same passwords and ports)", flush=True)
    hub = ClassHub(students, name=args.name, host=args.listen, port=ports[0], leaf_port=ports[1],
                   websocket_port=ports[2], advertise=args.advertise, passwords=passwords, http_port=monitor_port,
                   store_dir=str((folder / "jetstream").resolve()),  # the class page's memory, kept across restarts
                   keep_readings=keep)

    def announce() -> None:
        roster = hub.write_roster(folder)
        print(f"class hub {hub.name}: {len(hub.students)} students, clients {hub.public_host}:{hub.port}, "
              f"leaf nodes :{hub.leaf_port}" + (f", WebSocket :{hub.websocket_port}" if hub.websocket_port else ""),
              flush=True)
        print(f"roster: {roster.resolve()} (one join line per student; it holds their passwords: hand out each "
              f"line to its student only)", flush=True)
        print(f"class page: trashlab classroom view --dir {folder}   monitoring: {hub.monitor_url}", flush=True)
        print(f"pid {hub.pid}; Ctrl-C stops the hub", flush=True)

    return foreground(hub, announce, f"the class hub {hub.name}", f"class hub {hub.name}")


def _class_cluster_serve(args, folder) -> int:
    """``classroom serve --nodes N`` (N nodes here) or ``--hosts h1,h2,h3 --this h2`` (this host's node)."""
    from .servers import hubcluster
    from .servers.classroom import INSTRUCTOR_FILE, read_class

    info = read_class(folder) if (folder / INSTRUCTOR_FILE).exists() else {}
    if info:
        print(f"reusing the roster in {folder} ({len(info['students'])} students, same passwords and ports)", flush=True)
    students = info.get("students") or args.students
    passwords, route_password = info.get("passwords"), info.get("route_password")
    keep = args.keep_readings or bool(info.get("kept_url"))
    store = str((folder / "jetstream").resolve()) if keep else None  # the kept readings, across restarts
    if args.hosts:
        hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
        if not args.this:
            raise BadArgument(f"--hosts needs --this: which of {','.join(hosts)} this host is")
        if not route_password and args.this != hosts[0]:
            raise BadArgument(f"no class in {folder} to share: run serve on {hosts[0]} first, then copy its "
                              f"{folder}/{INSTRUCTOR_FILE} here (scp -p keeps it private)")
        ports = (args.port or 4222, args.leaf_port or 7422, args.cluster_port or 6222)
        node = hubcluster.node_for_host(students, hosts, args.this, listen=args.listen, ports=ports,
                                        passwords=passwords, route_password=route_password or hubcluster.new_route_password(),
                                        name=args.name, monitor_host=args.monitor_listen, keep_readings=keep,
                                        store_dir=store)

        def announce_node() -> None:
            node.write_roster(folder)
            hubcluster.record(folder, [node], node.route_password, monitor_urls=hubcluster.host_monitor_urls(
                hosts, node.monitor_url, args.this))
            print(f"class hub node {node.name} on {args.this}: {len(node.students)} students, clients :{node.port}, "
                  f"leaf nodes :{node.leaf_port}, routes :{node.cluster_port} to {','.join(hosts)}", flush=True)
            print(f"roster: {(folder / 'roster.txt').resolve()} (the same on every hub host)", flush=True)
            print(f"pid {node.pid}; Ctrl-C stops this node", flush=True)

        return foreground(node, announce_node, f"the class hub node {node.name}", f"class hub node {node.name}")
    saved = hubcluster.ports_from(info)
    if saved is None or len(saved) != args.nodes:
        def nth(port: Optional[int], i: int) -> Optional[int]:
            return port + i if port else port  # 0 (a free one) and None stay as they are

        saved = [hubcluster.NodePorts(nth(args.port, i), nth(args.leaf_port, i), nth(args.cluster_port, i),
                                      websocket=nth(args.websocket_port, i)) for i in range(args.nodes)]
    hub = hubcluster.ClassCluster(students, args.nodes, name=args.name, host=args.listen, ports=saved,
                                  advertise=args.advertise, passwords=passwords, route_password=route_password,
                                  keep_readings=keep, store_dir=store)

    def announce() -> None:
        roster = hub.write_roster(folder)
        for node in hub.hubs:
            print(f"node {node.name}: clients {node.public_host}:{node.port}, leaf nodes :{node.leaf_port}, "
                  f"routes :{node.cluster_port}, monitoring {node.monitor_url}", flush=True)
        print(f"class hub {hub.name}: {len(hub.students)} students on {len(hub.hubs)} nodes (it runs while one "
              "does)", flush=True)
        print(f"roster: {roster.resolve()} (one join line per student, naming every node; it holds their "
              f"passwords: hand out each line to its student only)", flush=True)
        print(f"class page: trashlab classroom view --dir {folder}", flush=True)
        print(f"pids {' '.join(str(n.pid) for n in hub.hubs)}; Ctrl-C stops the hub", flush=True)

    return foreground(hub, announce, f"every node of the class hub {hub.name}", f"class hub {hub.name}")


def cull_options(idle: float) -> "list[str]":
    """Voilà's kernel culling: a kernel with no browser connected and no output for ``idle`` s is shut down.

    A closed tab shuts its kernel down itself (Voilà's page asks at unload); a load that never opens the
    page (``curl``), a crashed tab or a lost network leaves it to jupyter_server's culler. The page's
    kernel stops its own redrawing when no browser is connected (:class:`ClassView`), so it turns idle.
    """
    seconds = max(1, int(idle))
    return [f"--MappingKernelManager.cull_idle_timeout={seconds}",
            f"--MappingKernelManager.cull_interval={max(1, seconds // 4)}",
            "--MappingKernelManager.cull_connected=False", "--MappingKernelManager.cull_busy=False",
            "--VoilaConfiguration.preheat_kernel=False"]


def ipc_kernel_options(folder: str) -> "list[str]":
    """Kernels over IPC sockets in ``folder`` (POSIX): no TCP port picked free then bound later (a broker may take it
    meanwhile), and no "Kernel is running over TCP without encryption" warning; nothing on Windows."""
    if os.name != "posix":
        return []
    return ["--KernelManager.transport=ipc", f"--KernelManager.ip={os.path.join(folder, 'kernel')}"]


def _class_view(args) -> int:
    import os
    import shutil
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    from .servers.classroom import read_class

    read_class(args.dir)  # a missing class is one line, before Voila starts
    from .notebook.classview import VIEW_NOTEBOOK

    voila = shutil.which("voila") or os.path.join(os.path.dirname(sys.executable), "voila")
    if not os.path.exists(voila):
        raise BrokerError("Voila is not installed: `pip install voila==0.5.13` (instructor machines only), "
                          "or open trashlab/notebook/class-view.ipynb in JupyterLab")
    if not args.idle > 0:
        raise BadArgument(f"--idle {args.idle}: give a number of seconds, e.g. 60")
    page = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "TRASHLAB_CLASS_DIR": str(Path(args.dir).resolve()), "TRASHLAB_CLASS_PAGE_URL": page,
           "TRASHLAB_CLASS_PAGE_IDLE": str(args.idle)}
    print(f"class page: {page}/ (Ctrl-C stops it)", flush=True)
    with tempfile.TemporaryDirectory(prefix="trashlab-page-kernels-") as sockets:  # short: a socket path is ~100 chars
        cmd = [voila, str(VIEW_NOTEBOOK), "--no-browser", f"--port={args.port}", "--Voila.ip=127.0.0.1",
               "--ServerApp.ip=127.0.0.1", *cull_options(args.idle), *ipc_kernel_options(sockets)]
        voila_proc = subprocess.Popen(cmd, env=env)
        stopping: "list[float]" = []

        def on_signal(signum, frame):  # Ctrl-C or SIGTERM: Voilà ends its kernels, then the socket folder goes
            stopping.append(time.monotonic())
            if voila_proc.poll() is None:
                voila_proc.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        code: Optional[int] = None
        try:
            while code is None:
                try:
                    code = voila_proc.wait(0.5)
                except subprocess.TimeoutExpired:
                    if stopping and time.monotonic() - stopping[0] > 15:  # Voilà's own shutdown had 15 s
                        voila_proc.kill()
        except BaseException:
            voila_proc.kill()
            raise
        return 0 if stopping else code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``trashlab`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "broker":
            return _broker(args)
        if args.command == "classroom":
            return _classroom(args)
        if args.command == "demo":
            from .course.demo import demo
            return asyncio.run(demo())
        runner = {"sim": _sim, "report": _report, "levels": _levels, "cluster": _cluster}[args.command]
        return asyncio.run(runner(args))
    except TrashlabError as e:  # one line; the exit code is the error's own (2 for a bad argument)
        print(f"trashlab {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 0
