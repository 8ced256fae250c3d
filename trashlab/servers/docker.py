"""The Docker path: the lab's own docker commands, as argv lists, for machines with a Docker engine.

Every function here returns the exact command line (a list, ready for ``subprocess``); :func:`run`
executes one when :func:`docker_available` says an engine answers. Without an engine the notebooks
take the local path (``trashlab.Broker`` and friends), and these commands are still shown.

One fix to the lab: its ``nats -c gnatsd.conf`` fails on current ``nats`` images (the file was
renamed ``nats-server.conf`` in 2019). Passing arguments to the image replaces its default command,
so a cluster node repeats ``-c nats-server.conf`` to keep the image's cluster settings (port 6222,
route user ``ruser`` / ``T0pS3cr3t``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from .broker import CLUSTER_NAME, ROUTE_PASSWORD, ROUTE_USER
from ..errors import DockerUnavailable

#: The official image's nats-server.conf (FACTS.md), for running the Docker path's arguments locally.
IMAGE_CONFIG = f"""port: 4222
monitor_port: 8222
cluster {{
  name: {CLUSTER_NAME}
  port: 6222
  authorization {{ user: {ROUTE_USER}, password: {ROUTE_PASSWORD}, timeout: 2 }}
  routes = []
}}
"""

NETWORK = "iot-net"
BROKER = "iot-msg"
NATS_IMAGE = "nats"
#: The configuration file inside the official image (the lab's ``gnatsd.conf`` no longer exists).
NATS_CONF = "nats-server.conf"
LAB_CLUSTER_FLAG_THAT_FAILS = ["-c", "gnatsd.conf"]


class DockerStatus(NamedTuple):
    """Whether a Docker engine answers, and why not when it does not."""

    available: bool
    reason: str

    def __bool__(self) -> bool:
        return self.available


def docker_available(timeout: float = 5.0) -> DockerStatus:
    """Ask the Docker engine for its version: ``DockerStatus(True, 'Docker 27.1 ...')`` or the reason it is not there."""
    exe = shutil.which("docker")
    if exe is None:
        return DockerStatus(False, "no docker command on this machine: the notebooks use the local path")
    try:
        out = subprocess.run([exe, "version", "--format", "{{.Server.Version}}"], capture_output=True,
                             text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return DockerStatus(False, f"docker did not answer ({type(e).__name__}): the notebooks use the local path")
    if out.returncode != 0 or not out.stdout.strip():
        err = (out.stderr.strip().splitlines() or ["no engine"])[-1]
        return DockerStatus(False, f"the docker command exists but no engine answers ({err[:120]}): "
                                   "the notebooks use the local path")
    return DockerStatus(True, f"Docker engine {out.stdout.strip()} answers")


# ----- the lab's command lines -------------------------------------------------------------------
def network_create(network: str = NETWORK) -> list:
    """``docker network create iot-net``: a private bridge network with name resolution."""
    return ["docker", "network", "create", network]


def network_inspect(network: str = NETWORK) -> list:
    """``docker network inspect iot-net``: its subnet, gateway and attached containers (JSON)."""
    return ["docker", "network", "inspect", network]


def network_ls() -> list:
    """``docker network ls``: every network of this engine (the defaults ``bridge``, ``host``, ``none`` and ours)."""
    return ["docker", "network", "ls"]


def resolv_conf(network: str = NETWORK) -> list:
    """``docker container run --rm --net=iot-net busybox cat /etc/resolv.conf``: which DNS server a container on the network asks."""
    return ["docker", "container", "run", "--rm", f"--net={network}", "busybox", "cat", "/etc/resolv.conf"]


def network_rm(network: str = NETWORK) -> list:
    """``docker network rm iot-net``."""
    return ["docker", "network", "rm", network]


def run_nats(name: str = BROKER, network: str = NETWORK, alias: Optional[str] = None,
             image: str = NATS_IMAGE) -> list:
    """``docker container run -d --name iot-msg --network-alias iot-msg --net iot-net nats`` (the broker)."""
    return ["docker", "container", "run", "-d", "--name", name, "--network-alias", alias or name,
            "--net", network, image]


def run_nats_node(name: str = "iot-msg2", join: str = BROKER, network: str = NETWORK,
                  image: str = NATS_IMAGE, route_port: int = 6222) -> list:
    """A broker joining ``join``'s cluster; the lab's command with the working ``-c nats-server.conf``."""
    route = f"nats-route://{ROUTE_USER}:{ROUTE_PASSWORD}@{join}:{route_port}"
    return ["docker", "container", "run", "-d", f"--name={name}", f"--net={network}", image,
            "-c", NATS_CONF, f"--routes={route}"]


def lab_cluster_command(name: str = "iot-msg2", join: str = BROKER, network: str = NETWORK) -> list:
    """The lab's original cluster command, which fails on current images (shown for comparison only)."""
    fixed = run_nats_node(name, join, network)
    i = fixed.index("-c")
    return ["docker", "run"] + fixed[3:i] + LAB_CLUSTER_FLAG_THAT_FAILS + fixed[i + 2:]


def ping(target: str = BROKER, network: str = NETWORK) -> list:
    """``docker container run --rm --net=iot-net alpine ping -c 1 iot-msg``: name resolution on the network."""
    return ["docker", "container", "run", "--rm", f"--net={network}", "alpine", "ping", "-c", "1", target]


def _app_dir() -> str:
    """The folder holding the lab's sim.js and rep.js (mounted as /app, as in the lab)."""
    return str(Path(__file__).resolve().parent / "lab_js")


def run_node(role: str, broker: str = BROKER, network: str = NETWORK, app_dir: Optional[str] = None) -> list:
    """The lab's ``sim`` / ``rep`` container: node with the lab's script mounted at /app, detached."""
    if role not in ("sim", "rep"):
        raise ValueError("role is 'sim' or 'rep'")
    script = f"npm install --no-audit --no-fund --silent nats@1 && node /app/{role}.js"
    return ["docker", "container", "run", "-d", "-v", f"{app_dir or _app_dir()}:/app", "-w", "/",
            f"--net={network}", f"--name={role}", "-e", f"NATS_URL=nats://{broker}:4222",
            "node", "sh", "-c", script]


def logs(name: str, tail: int = 5) -> list:
    """``docker container logs --tail 5 NAME``."""
    return ["docker", "container", "logs", "--tail", str(tail), name]


def kill(name: str) -> list:
    """``docker container kill NAME`` (a crash)."""
    return ["docker", "container", "kill", name]


def rm(names: Sequence[str]) -> list:
    """``docker container rm -f NAME...`` (the clean-up)."""
    return ["docker", "container", "rm", "-f", *names]


def lab_commands() -> "dict[str, list]":
    """Every command of the Docker path, in the order of the lab."""
    return {
        "1 network": network_create(), "1 list": network_ls(), "1 inspect": network_inspect(),
        "2 broker": run_nats(), "2 ping": ping(), "2 resolv.conf": resolv_conf(), "3 simulator": run_node("sim"), "4 report": run_node("rep"),
        "5 second broker": run_nats_node(), "5 kill": kill(BROKER),
        "6 clean-up": rm(["sim", "rep", BROKER, "iot-msg2"]), "6 network": network_rm(),
    }


def shell(argv: Sequence[str]) -> str:
    """A command line as one string, to show or paste in a terminal."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


def run(argv: Sequence[str], timeout: float = 120.0) -> str:
    """Run one docker command and return what it printed; :class:`DockerUnavailable` without an engine."""
    status = docker_available()
    if not status:
        raise DockerUnavailable(status.reason)
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        err = (out.stderr.strip().splitlines() or ["failed"])[-1]
        if "already exists" in err or "already in use" in err:
            return err  # running a cell again: the network or container is there already
        raise DockerUnavailable(f"`{shell(argv)}` failed: {err}")
    return out.stdout


#: How much of a command's output a table shows (a longer one ends with how many characters were left out).
RESULT_CHARS = 1000


def _clip(text: str, limit: int = RESULT_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def lab_step(*commands: Sequence[str]):
    """Run a step's docker commands when an engine answers, else list them; a table of command and result.

    The table is a DataFrame shown in full (:class:`~trashlab.servers._tables.FullTable`): every command
    whole, long cells wrapped, never cut at pandas' 50 characters.
    """
    from ._tables import FullTable

    status = docker_available()
    rows = []
    for argv in commands:
        result = run(argv).strip() if status else "not run: no Docker engine here (the local path does this step)"
        rows.append({"command": shell(argv), "result": _clip(result)})
    return FullTable(rows, columns=["command", "result"])


#: What ``docker network inspect iot-net`` printed in the lab (shown when no engine answers here).
LAB_INSPECT_EXAMPLE = json.dumps([{
    "Name": "iot-net", "Scope": "local", "Driver": "bridge",
    "IPAM": {"Driver": "default", "Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]},
    "Containers": {}}])


#: What ``docker network ls`` printed in the lab (shown when no engine answers here): Docker's three default
#: networks and the lab's ``iot-net``.
LAB_NETWORK_LS_EXAMPLE = """NETWORK ID     NAME      DRIVER    SCOPE
913a0e892a2c   bridge    bridge    local
c4fd5236b924   host      host      local
64702fb0fed6   iot-net   bridge    local
8dddac639dd4   none      null      local
"""

#: What ``cat /etc/resolv.conf`` printed in a container on ``iot-net`` in the lab.
LAB_RESOLV_CONF_EXAMPLE = """search localdomain
nameserver 127.0.0.11
options ndots:0
"""

#: Docker's embedded DNS server: the address every container on a user-defined network asks.
EMBEDDED_DNS = "127.0.0.11"

_RESOLV_MEANING = {
    "nameserver": lambda v: ("Docker's embedded DNS server (inside the container, answered by the engine): it "
                             "resolves the names and aliases of containers on the same user-defined network and "
                             "passes other names on to the host's DNS") if v == EMBEDDED_DNS
    else "a DNS server the container asks",
    "search": lambda v: f"a name not found as it is is also tried as NAME.{v}",
    "options": lambda v: "resolver options (ndots:0: any name is first tried as it is)" if "ndots:0" in v
    else "resolver options",
}


def _source(text: Optional[str], command: Sequence[str], example: str) -> "tuple[str, str]":
    if text is not None:
        return text, "given"
    if docker_available():
        return run(command), "docker engine"
    return example, "example from the lab (no Docker engine here)"


def network_ls_table(ls_text: Optional[str] = None):
    """``docker network ls`` output as a table (id, name, driver, scope, source).

    Without text it asks the engine, or shows the lab's example when no engine answers.
    """
    from ._tables import FullTable

    text, source = _source(ls_text, network_ls(), LAB_NETWORK_LS_EXAMPLE)
    rows = []
    for line in text.splitlines()[1:]:  # the first line is the header
        fields = line.split()
        if len(fields) == 4:
            rows.append({"network id": fields[0], "name": fields[1], "driver": fields[2], "scope": fields[3],
                         "source": source})
    return FullTable(rows, columns=["network id", "name", "driver", "scope", "source"])


def resolv_conf_table(resolv_text: Optional[str] = None):
    """A container's ``/etc/resolv.conf`` on ``iot-net``, one row per line with what it means (source included).

    Without text it asks the engine (a throw-away ``busybox`` on the network), or shows the lab's example.
    """
    from ._tables import FullTable

    text, source = _source(resolv_text, resolv_conf(), LAB_RESOLV_CONF_EXAMPLE)
    rows = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and not key.startswith("#"):
            meaning = _RESOLV_MEANING.get(key, lambda v: "")(value.strip())
            rows.append({"line": line.strip(), "meaning": meaning, "source": source})
    return FullTable(rows, columns=["line", "meaning", "source"])


def network_table(inspect_json: Optional[str] = None):
    """``docker network inspect`` output as a table (name, driver, subnet, gateway, containers, source).

    Without JSON it asks the engine, or shows the lab's example when no engine answers.
    """
    from ._tables import FullTable

    inspect_json, source = _source(inspect_json, network_inspect(), LAB_INSPECT_EXAMPLE)
    rows = []
    for net in json.loads(inspect_json):
        configs = (net.get("IPAM") or {}).get("Config") or [{}]
        containers = net.get("Containers") or {}
        rows.append({"name": net.get("Name"), "driver": net.get("Driver"), "scope": net.get("Scope"),
                     "subnet": configs[0].get("Subnet"), "gateway": configs[0].get("Gateway"),
                     "containers": ", ".join(c.get("Name", "?") for c in containers.values()) or "(none)",
                     "source": source})
    return FullTable(rows)


def docker_env_note() -> str:
    """Which path the notebooks take here, in one sentence."""
    status = docker_available()
    if status:
        return f"Docker path available: {status.reason}. The cells below can run the lab's commands."
    return f"Local path: {status.reason}."
