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
        "1 network": network_create(), "1 inspect": network_inspect(), "2 broker": run_nats(),
        "2 ping": ping(), "3 simulator": run_node("sim"), "4 report": run_node("rep"),
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


def lab_step(*commands: Sequence[str]):
    """Run a step's docker commands when an engine answers, else list them; a table of command and result."""
    import pandas as pd

    status = docker_available()
    rows = []
    for argv in commands:
        result = run(argv).strip() if status else "not run: no Docker engine here (the local path does this step)"
        rows.append({"command": shell(argv), "result": result[:200]})
    return pd.DataFrame(rows, columns=["command", "result"])


#: What ``docker network inspect iot-net`` printed in the lab (shown when no engine answers here).
LAB_INSPECT_EXAMPLE = json.dumps([{
    "Name": "iot-net", "Scope": "local", "Driver": "bridge",
    "IPAM": {"Driver": "default", "Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]},
    "Containers": {}}])


def network_table(inspect_json: Optional[str] = None):
    """``docker network inspect`` output as a table (name, driver, subnet, gateway, containers, source).

    Without JSON it asks the engine, or shows the lab's example when no engine answers.
    """
    import pandas as pd

    source = "given"
    if inspect_json is None:
        if docker_available():
            inspect_json, source = run(network_inspect()), "docker engine"
        else:
            inspect_json, source = LAB_INSPECT_EXAMPLE, "example from the lab (no Docker engine here)"
    rows = []
    for net in json.loads(inspect_json):
        configs = (net.get("IPAM") or {}).get("Config") or [{}]
        containers = net.get("Containers") or {}
        rows.append({"name": net.get("Name"), "driver": net.get("Driver"), "scope": net.get("Scope"),
                     "subnet": configs[0].get("Subnet"), "gateway": configs[0].get("Gateway"),
                     "containers": ", ".join(c.get("Name", "?") for c in containers.values()) or "(none)",
                     "source": source})
    return pd.DataFrame(rows)


def docker_env_note() -> str:
    """Which path the notebooks take here, in one sentence."""
    status = docker_available()
    if status:
        return f"Docker path available: {status.reason}. The cells below can run the lab's commands."
    return f"Local path: {status.reason}."
