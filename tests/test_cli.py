"""The trashlab command end to end: broker, sim → report → levels, and its errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import eventually_sync, interest, unique

TL = [sys.executable, "-m", "trashlab"]


def run(*args, timeout=60, env=None):
    return subprocess.run([*TL, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_sim_into_report_answered_by_levels(shared_broker):
    url = shared_broker.url
    before = interest(shared_broker, "trash-level")
    report = subprocess.Popen([*TL, "report", "--servers", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        # the report service subscribes before the simulator starts
        eventually_sync(lambda: interest(shared_broker, "trash-level") > before or report.poll() is not None,
                        "the report service subscribing to trash-level", timeout=60)
        assert report.poll() is None, f"the report service ended: {report.communicate()[1][-2000:]}"
        sim = run("sim", "--servers", url, "--count", "200", "--interval", "0.005", "--seed", "7")
        assert sim.returncode == 0, sim.stderr
        published = [json.loads(ln[len("publishing: "):]) for ln in sim.stdout.splitlines()]
        assert len(published) == 200
        assert all(set(m) == {"can_id", "level"} and isinstance(m["level"], str) for m in published)
        latest = {}
        for m in published:
            latest[m["can_id"]] = float(m["level"])
        answers = []

        def levels_now() -> dict:
            levels = run("levels", "--servers", url, "--json")
            assert levels.returncode == 0, levels.stderr
            answers.append({r["can_id"]: r["level"] for r in json.loads(levels.stdout)})
            return answers[-1]

        # the report service has the 200 readings once it answers with the latest level of every can
        eventually_sync(lambda: levels_now() == latest, f"trashlab levels answering the {len(latest)} cans' latest levels",
                        timeout=60, seen=lambda: f"{len(answers[-1])} cans, of which "
                        f"{sum(answers[-1].get(k) == v for k, v in latest.items())} right")
        table = run("levels", "--servers", url)
        assert f"{len(latest)} cans" in table.stdout
        one = run("levels", "--servers", url, "--can", published[0]["can_id"])
        assert one.returncode == 0 and published[0]["can_id"] in one.stdout
        missing = run("levels", "--servers", url, "--can", "nope")
        assert missing.returncode == 1 and "no reading for can 'nope'" in missing.stderr
    finally:
        report.send_signal(signal.SIGINT)
        out, err = report.communicate(timeout=15)
    assert report.returncode == 0, f"trashlab report exited {report.returncode}: {err[-2000:]}"
    received = [ln for ln in out.splitlines() if ln.startswith("Received report: ")]
    assert len(received) == 200, f"the report service printed {len(received)} of 200 readings; its last lines: " \
        f"{out.splitlines()[-5:]}, stderr {err[-1000:]!r}"
    assert received[0] == "Received report: " + sim.stdout.splitlines()[0][len("publishing: "):]
    assert "Traceback" not in err


def test_sim_uses_nats_url(shared_broker):
    res = run("sim", "--count", "3", "--interval", "0", env={"NATS_URL": shared_broker.url})
    assert res.returncode == 0 and res.stdout.count("publishing: ") == 3


def test_broker_prints_its_url_first_and_stops_on_ctrl_c():
    proc = subprocess.Popen([*TL, "broker", "--name", unique("cli")], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("nats://127.0.0.1:")
        assert run("sim", "--servers", first, "--count", "2", "--interval", "0").returncode == 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    assert proc.returncode == 0
    assert run("sim", "--servers", first, "--count", "1").returncode == 1  # it is really gone


@pytest.mark.parametrize("args, words", [
    (["sim", "--interval", "-1"], "negative"),
    (["sim", "--count", "many"], "whole number"),
    (["sim", "--servers", "http://x:1"], "scheme"),
    (["sim", "--servers", "nats://127.0.0.1:1", "--subject", "bad subject"], "not valid"),
    (["broker", "--port", "99999"], "TCP port"),
    (["nonsense"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(args, words):
    res = run(*args)
    assert res.returncode == 2, res
    assert words in res.stderr and "Traceback" not in res.stderr


def test_unreachable_server_exits_1_with_one_line():
    res = run("sim", "--servers", "nats://127.0.0.1:1", "--count", "1")
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "connection refused" in res.stderr


def test_no_report_service_exits_1(shared_broker):
    res = run("levels", "--servers", shared_broker.url, "--timeout", "0.5")
    assert res.returncode == 1 and "no trash-report service answered" in res.stderr


def test_listen_beyond_loopback_needs_credentials():
    res = run("broker", "--name", unique("open"), "--listen", "0.0.0.0")
    assert res.returncode == 1 and "without credentials" in res.stderr


@pytest.mark.course  # the whole lab end to end, like the notebooks: not in the inner loop
def test_demo_runs_the_whole_lab(figure):
    """The one run of ``trashlab demo`` in the suite: the lab, then the core NATS and JetStream drills."""
    t0 = time.monotonic()
    res = run("demo", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "demo passed" in res.stdout and "killed iot-msg" in res.stdout
    assert "core NATS:  core: killed iot-msg" in res.stdout
    assert "JetStream:  jetstream: killed" in res.stdout and ", 0 lost" in res.stdout
    assert "Traceback" not in res.stderr
    figure("trashlab demo (the goal is under a minute)", f"trashlab demo: {time.monotonic() - t0:.1f} s")
