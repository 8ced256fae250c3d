"""The Docker path: the exact command lines, what happens without an engine, and a live run when one exists."""

from __future__ import annotations

import html
import json
import shlex
import subprocess

import pytest

import trashlab
from trashlab import docker

from conftest import eventually_sync, unique

ENGINE = docker.docker_available()

# The lab's commands, as printed in the lab (whitespace normalised).
LAB = {
    "network": "docker network create iot-net",
    "inspect": "docker network inspect iot-net",
    "broker": "docker container run -d --name iot-msg --network-alias iot-msg --net iot-net nats",
    "ping": "docker container run --rm --net=iot-net alpine ping -c 1 iot-msg",
    "ls": "docker network ls",
    "resolv.conf": "docker container run --rm --net=iot-net busybox cat /etc/resolv.conf",  # the lab's, plus --rm
    "cluster_as_in_lab": "docker run -d --name=iot-msg2 --net=iot-net nats -c gnatsd.conf "
                         "--routes=nats-route://ruser:T0pS3cr3t@iot-msg:6222",
}


def test_lab_command_lines_are_exact():
    assert docker.network_create() == LAB["network"].split()
    assert docker.network_inspect() == LAB["inspect"].split()
    assert docker.run_nats() == LAB["broker"].split()
    assert docker.ping() == LAB["ping"].split()
    assert docker.network_ls() == LAB["ls"].split()
    assert docker.resolv_conf() == LAB["resolv.conf"].split()
    assert docker.lab_cluster_command() == LAB["cluster_as_in_lab"].split()


def test_cluster_command_uses_the_config_file_that_exists():
    argv = docker.run_nats_node()
    assert argv[argv.index("nats") + 1:] == ["-c", "nats-server.conf",
                                             "--routes=nats-route://ruser:T0pS3cr3t@iot-msg:6222"]
    assert "gnatsd.conf" not in " ".join(argv)


@pytest.mark.nats  # asks the docker command whether an engine answers
def test_section_5_docker_cells_show_the_lab_commands():
    """Notebook 05's Docker cells: the second node (with the config file that exists), its log, the kill."""
    import nbformat

    assert docker.kill("iot-msg") == "docker container kill iot-msg".split()  # the lab's exact line
    table = docker.lab_step(docker.run_nats_node("iot-msg2"), docker.logs("iot-msg2"), docker.kill("iot-msg"))
    assert table["command"].tolist() == [
        "docker container run -d --name=iot-msg2 --net=iot-net nats -c nats-server.conf "
        "--routes=nats-route://ruser:T0pS3cr3t@iot-msg:6222",
        "docker container logs --tail 5 iot-msg2", "docker container kill iot-msg"]
    root = docker.Path(__file__).resolve().parent.parent
    cells = "\n".join(c.source for c in nbformat.read(root / "notebooks" / "05-clustering.ipynb", 4).cells)
    for call in ('docker.run_nats_node("iot-msg2")', 'docker.logs("iot-msg2")', 'docker.kill("iot-msg")'):
        assert call in cells, f"notebook 05 has no Docker cell with {call}"


def test_sim_and_rep_containers_run_the_lab_scripts():
    for role in ("sim", "rep"):
        argv = docker.run_node(role)
        assert argv[:4] == ["docker", "container", "run", "-d"]
        assert f"--name={role}" in argv and "--net=iot-net" in argv and "NATS_URL=nats://iot-msg:4222" in argv
        mount = argv[argv.index("-v") + 1]
        host_dir = mount.rsplit(":", 1)[0]
        assert (docker.Path(host_dir) / f"{role}.js").is_file()
        assert argv[-1].endswith(f"node /app/{role}.js")


def test_shell_form_round_trips():
    for argv in docker.lab_commands().values():
        assert shlex.split(docker.shell(argv)) == argv


def test_lab_gnatsd_flag_fails_with_a_current_nats_server(tmp_path):
    """What the lab's `-c gnatsd.conf` does today: nats-server refuses to start."""
    out = subprocess.run([trashlab.servers.broker.find_nats_server(), "-c", "gnatsd.conf"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=20)
    assert out.returncode != 0
    assert "gnatsd.conf" in out.stdout + out.stderr


def test_cluster_arguments_join_with_the_image_config(tmp_path):
    """The arguments after `nats` in run_nats_node(), run by a real nats-server with the image's config
    (ports swapped for free ones), join a trashlab broker using the image's route credentials."""
    first = trashlab.Broker(unique("dock"), cluster=True).start()
    conf = docker.IMAGE_CONFIG.replace("4222", "-1").replace("8222", "-1").replace("port: 6222", "port: -1")
    (tmp_path / "nats-server.conf").write_text(conf)
    argv = docker.run_nats_node(join="127.0.0.1", route_port=first.cluster_port)
    node = subprocess.Popen([trashlab.servers.broker.find_nats_server()] + argv[argv.index("nats") + 1:] + ["-a", "127.0.0.1"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        eventually_sync(lambda: node.poll() is not None or not first.routez().empty,
                        "the Docker-style node routing to the first one (or exiting)")
        assert node.poll() is None, node.stdout.read()
        assert not first.routez().empty, first.output
    finally:
        node.kill()
        node.communicate(timeout=10)
        first.stop()


@pytest.mark.skipif(bool(ENGINE), reason="a Docker engine answers here")
def test_without_an_engine_the_reason_is_given_and_nothing_runs():
    assert not ENGINE and "local path" in ENGINE.reason
    table = docker.lab_step(docker.network_create())
    assert table["command"].tolist() == [LAB["network"]]
    assert table["result"].str.startswith("not run").all()
    with pytest.raises(trashlab.errors.DockerUnavailable, match="local path"):
        docker.run(docker.network_create())
    assert docker.network_table()["source"].iloc[0].startswith("example")


def test_no_docker_command_at_all(monkeypatch):
    monkeypatch.setattr(docker.shutil, "which", lambda name: None)
    status = docker.docker_available()
    assert not status and "no docker command" in status.reason


def test_network_table_from_inspect_json():
    data = json.dumps([{"Name": "iot-net", "Driver": "bridge", "Scope": "local",
                        "IPAM": {"Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]},
                        "Containers": {"abc": {"Name": "iot-msg"}, "def": {"Name": "sim"}}}])
    row = docker.network_table(data).iloc[0]
    assert (row["subnet"], row["gateway"], row["containers"]) == ("172.18.0.0/16", "172.18.0.1", "iot-msg, sim")


@pytest.mark.skipif(not ENGINE, reason=f"no live Docker test: {ENGINE.reason}")
def test_live_docker_network_and_broker():
    net, name = unique("iot-net"), unique("iot-msg")
    try:
        docker.run(docker.network_create(net))
        docker.run(docker.run_nats(name, net))
        table = docker.network_table(docker.run(docker.network_inspect(net)))
        assert name in table["containers"].iloc[0]
    finally:
        subprocess.run(docker.rm([name]), capture_output=True)
        subprocess.run(docker.network_rm(net), capture_output=True)


@pytest.mark.nats  # lab_step asks the docker client whether an engine answers (a process)
def test_logs_of_the_lab_containers_are_docker_container_logs():
    """Notebooks 02-04 show what the iot-msg, sim and rep containers printed."""
    for name in ("iot-msg", "sim", "rep"):
        assert docker.logs(name) == f"docker container logs --tail 5 {name}".split()
        assert shlex.split(docker.shell(docker.logs(name))) == docker.logs(name)
    table = docker.lab_step(docker.run_node("sim"), docker.logs("sim"))
    assert table["command"].tolist()[1] == "docker container logs --tail 5 sim"
    # shown in full (pandas alone cuts cells at 50 characters, "..."): the long `docker container run` too
    whole = docker.shell(docker.run_node("sim"))
    assert len(whole) > 50 and whole in repr(table) and "..." not in repr(table)
    assert html.escape(whole) in table._repr_html_() and "pre-wrap" in table._repr_html_()


def test_network_ls_table_from_the_labs_output():
    table = docker.network_ls_table(docker.LAB_NETWORK_LS_EXAMPLE)
    assert table["name"].tolist() == ["bridge", "host", "iot-net", "none"]
    assert table.set_index("name")["driver"].to_dict() == {"bridge": "bridge", "host": "host", "iot-net": "bridge",
                                                           "none": "null"}
    assert set(table["source"]) == {"given"}


def test_resolv_conf_table_names_the_embedded_dns():
    table = docker.resolv_conf_table(docker.LAB_RESOLV_CONF_EXAMPLE)
    assert table["line"].tolist() == ["search localdomain", "nameserver 127.0.0.11", "options ndots:0"]
    meaning = table.set_index("line")["meaning"]
    assert "embedded DNS" in meaning["nameserver 127.0.0.11"] and "same user-defined network" in meaning["nameserver 127.0.0.11"]
    other = docker.resolv_conf_table("nameserver 10.0.0.2\n# a comment\n")
    assert other["line"].tolist() == ["nameserver 10.0.0.2"] and "embedded" not in other["meaning"].iloc[0]


def test_full_tables_show_every_character():
    """The docker tables of notebooks 01-06 (issue 22): no cell cut short, as HTML and as text, slices too."""
    from trashlab.servers._tables import FullTable

    long = "docker container run -d -v /a/very/long/path/to/the/lab_js:/app -w / --net=iot-net --name=sim node sh -c x"
    table = FullTable([{"command": long, "result": "<not run>"}])
    assert long in repr(table) and long in str(table) and long in table.to_text()
    page = table._repr_html_()
    assert long in page and "&lt;not run&gt;" in page and "white-space:pre-wrap" in page
    assert long in table[["command"]]._repr_html_()  # a slice shows in full too
    assert table["command"].tolist() == [long]


@pytest.mark.nats  # the tables ask the docker command whether an engine answers
def test_notebook_01_shows_network_ls_inspect_and_the_dns():
    import nbformat

    root = docker.Path(__file__).resolve().parent.parent
    cells = "\n".join(c.source for c in nbformat.read(root / "notebooks" / "01-private-network.ipynb", 4).cells)
    for call in ("docker.network_ls()", "docker.network_ls_table()", "docker.network_inspect()",
                 "docker.network_table()", "docker.resolv_conf()", "docker.resolv_conf_table()", "127.0.0.11"):
        assert call in cells, f"notebook 01 has no Docker cell with {call}"
    if not ENGINE:
        assert "iot-net" in docker.network_ls_table()["name"].tolist()
        assert "nameserver 127.0.0.11" in docker.resolv_conf_table()["line"].tolist()
