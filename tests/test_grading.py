"""Graded exercises with the real nbgrader: instructor source → student notebooks → autograde.

One scratch copy of the course is generated once per module; these kinds of submission are built
from the student release and autograded for real (the notebooks start real nats-servers):
``reference`` (every answer cell holds the instructor's solution), ``untouched`` (the release as a
student receives it) and ``wrong-1``, ``wrong-2``, ... (the reference with the k-th realistic mistake of
``WRONG`` in every exercise that has one: each exercise must lose exactly its own points).
Written answers (markdown cells graded by hand) are left to the instructor: they count in ``max_score``
but never in the automatic score.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import nbformat
import pytest

from sessions import formgrader
from test_notebooks import output_problems
from trashlab.errors import BadArgument
from trashlab_instructor import grading

# nbgrader's own SQLAlchemy session warnings while it records grades: not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore:Object of type <Submitted"),
              # the module fixture autogrades every submission kind of every notebook (several minutes)
              pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "course" / "source"

#: How a right sim.py (03) builds a reading's text.
PAYLOAD = """'{"can_id":"%d", "level":"%r"}' % (random.randint(0, 1000), random.random() * 100)"""
#: A right sim.py, the base of its wrong variants.
SIM_PY = """%%writefile sim.py
import asyncio
import json
import os
import random
import sys
import time

import nats


async def main():
    interval, count = float(sys.argv[1]), int(sys.argv[2])
    nc = await nats.connect(servers=os.environ["NATS_URL"].split(","))
    for i in range(count):
        payload = """ + PAYLOAD + """
        print("publishing: " + payload)
        await nc.publish("trash-level", payload.encode())
        await asyncio.sleep(interval)
    await nc.drain()


asyncio.run(main())
"""

#: A right rep.py (04), the base of its wrong variants.
REP_PY = """%%writefile rep.py
import asyncio
import json
import os

import nats


async def main():
    levels = {}
    nc = await nats.connect(servers=os.environ["NATS_URL"].split(","))

    async def on_reading(msg):
        print("Received report: " + msg.data.decode())
        reading = json.loads(msg.data)
        levels[reading["can_id"]] = float(reading["level"])

    async def on_request(msg):
        can_id = msg.data.decode()
        if can_id in levels:
            answer = {"can_id": can_id, "level": levels[can_id]}
        else:
            answer = {"error": f"unknown can {can_id}"}
        await msg.respond(json.dumps(answer).encode())

    await nc.subscribe("trash-level", cb=on_reading)
    await nc.subscribe("trash-report.level", cb=on_request)
    await asyncio.Event().wait()


asyncio.run(main())
"""

#: A right rep.py through a kill (05), the base of its wrong variants.
REP_FAILOVER_PY = """%%writefile rep.py
import asyncio
import os

import nats


async def main() -> None:
    async def disconnected():
        print("Disconnected")

    async def reconnected():
        print(f"Reconnected to {nc.connected_url.hostname}:{nc.connected_url.port}")

    nc = await nats.connect(servers=os.environ["NATS_URL"].split(","), reconnect_time_wait=0.5,
                            disconnected_cb=disconnected, reconnected_cb=reconnected)
    print(f"Connected to {nc.connected_url.hostname}:{nc.connected_url.port}")

    async def on_reading(msg):
        print("Received report: " + msg.data.decode())

    await nc.subscribe("trash-level", cb=on_reading)
    await asyncio.Event().wait()


asyncio.run(main())
"""


def _reference_cell(name: str, grade_id: str) -> str:
    """An answer cell of the instructor version as a student would write it (no solution markers)."""
    cells = json.loads((SOURCE / name / f"{name}.ipynb").read_text())["cells"]
    cell = next(c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)
    return "".join(line for line in "".join(cell["source"]).splitlines(True) if "### " not in line)


#: The reference sim.py and rep.py of 06 (they stop on SIGTERM), the bases of their wrong variants.
SIM_STOP_PY = _reference_cell("06-cleanup", "sim-stop")
REP_DRAIN_PY = _reference_cell("06-cleanup", "rep-drain")
GIT_COMMIT_PY = _reference_cell("06-cleanup", "git-commit")


#: A right alert.py (09, the capstone), the base of its wrong variants.
ALERT_PY = """%%writefile alert.py
# alert.py: alerts for full trash cans. Usage: python alert.py THRESHOLD (servers from NATS_URL).
import asyncio
import json
import os
import signal
import sys

import nats


async def main() -> None:
    threshold = float(sys.argv[1]) if len(sys.argv) > 1 else 90.0
    latest = {}

    nc = await nats.connect(servers=os.environ["NATS_URL"].split(","), reconnect_time_wait=0.5,
                            max_reconnect_attempts=-1)

    async def remember(msg):  # every copy sees every reading: its answers cover every can
        reading = json.loads(msg.data)
        latest[reading["can_id"]] = float(reading["level"])

    async def alert(msg):  # one copy of the group gets each reading: one alert per reading
        reading = json.loads(msg.data)
        if float(reading["level"]) > threshold:
            await nc.publish(f"trash-alert.{reading['can_id']}", msg.data)

    async def full(msg):
        cans = sorted((can for can, level in latest.items() if level > threshold), key=int)
        await msg.respond(json.dumps(cans).encode())

    await nc.subscribe("trash-level", cb=remember)
    await nc.subscribe("trash-level", queue="alert-service", cb=alert)
    await nc.subscribe("trash-full", queue="alert-service", cb=full)
    print(f"alert service: threshold {threshold:g}, connected to {nc.connected_url.netloc}")

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await nc.drain()


asyncio.run(main())
"""

#: A right rep.py as one copy of a queue group (08): notebook 04's, with the group and the copy's name from its
#: arguments. The base of its wrong variants.
REP_QUEUE_PY = (REP_PY.replace("import os\n", "import os\nimport sys\n")
                .replace("    levels = {}\n", "    group, copy = sys.argv[1], sys.argv[2]\n    levels = {}\n")
                .replace('"level": levels[can_id]}', '"level": levels[can_id], "copy": copy}')
                .replace('{"error": f"unknown can {can_id}"}', '{"error": f"unknown can {can_id}", "copy": copy}')
                .replace('nc.subscribe("trash-level", cb=', 'nc.subscribe("trash-level", queue=group, cb=')
                .replace('nc.subscribe("trash-report.level", cb=', 'nc.subscribe("trash-report.level", queue=group, cb='))


#: A right durable reader (05b), the base of its wrong variants.
READ_BATCH = """async def read_batch(js, subject, durable, batch):
    psub = await js.pull_subscribe(subject, durable=durable)
    msgs = await psub.fetch(batch, timeout=5)
    for msg in msgs:
        await msg.ack()
    await psub.unsubscribe()
    return [msg.data for msg in msgs]
"""

#: The report service's levels in a key-value bucket (05b), the base of its wrong variants.
KV_PY = """import json

from nats.js.errors import KeyNotFoundError


async def open_levels(js, bucket):
    return await js.create_key_value(bucket=bucket)


async def save_level(kv, can_id, level):
    await kv.put(can_id, str(level).encode())


async def load_level(kv, can_id):
    try:
        entry = await kv.get(can_id)
    except KeyNotFoundError:
        return None
    return float(entry.value)


async def follow_levels(kv, levels):
    watcher = await kv.watchall()
    async for entry in watcher:
        if entry is not None:
            levels[entry.key] = float(entry.value)
"""

#: Realistic mistakes per exercise: grade_id of the answer cell -> wrong answers (each a whole cell, or
#: ``(cell, test grade_ids)`` when it loses only those test cells of the exercise; otherwise it loses them all).
#: Submission ``wrong-k`` answers every exercise with its k-th mistake (the reference where it has none).
WRONG = {
    # 02: a first client (checked against the broker's trace) and /connz
    "hello-nats": [
        "async def hello_nats(url, subject, text):\n    return 'hello'  # constant\n",
        "async def hello_nats(url, subject, text):\n    nc = await nats.connect(url)\n"
        "    await nc.publish(subject, text.encode())\n    await nc.close()\n"
        "    return text  # never subscribed: echoes its argument\n",
        "async def hello_nats(url, subject, text):\n    nc = await nats.connect(url)\n"
        "    sub = await nc.subscribe('greetings')\n    await nc.publish('greetings', text.encode())\n"
        "    msg = await sub.next_msg(timeout=2)\n    await nc.close()\n"
        "    return msg.data.decode()  # right steps, wrong subject\n",
        "async def hello_nats(url, subject, text):\n    nc = await nats.connect(url)\n"
        "    sub = await nc.subscribe(subject)\n    await nc.publish(subject, text.encode())\n"
        "    msg = await sub.next_msg(timeout=2)\n    await nc.close()\n    return msg.data  # bytes, not str\n",
        "async def hello_nats(url, subject, text):\n    nc = await nats.connect(url)\n"
        "    sub = await nc.subscribe(subject)\n    nc.publish(subject, text.encode())  # missing await\n"
        "    msg = await sub.next_msg(timeout=1)\n    await nc.close()\n    return msg.data.decode()\n",
        "async def hello_nats(url, subject, text):\n    nc = await nats.connect(url)\n"
        "    sub = await nc.subscribe(subject)\n    await nc.publish(subject, text.encode())\n"
        "    msg = await sub.next_msg(timeout=2)\n    return msg.data.decode()  # never closes\n",
    ],
    "client-names": [
        "def client_names(broker):\n    return ['watcher']  # written by hand\n",
        "def client_names(broker):\n    return list(broker.connz()['cid'])  # ids, not names\n",
        "def client_names(broker):\n    return list(broker.connz()['name'])  # not sorted\n",
        "def client_names(broker):\n    return broker.connz()['name']  # a Series, not a list\n",
        "import trashlab.course.checks._answer as answer_helpers\n\n"
        "def noop_graded(check):\n    async def noop(*args, **kwargs):\n        print('✔ all good')\n    return noop\n\n"
        "answer_helpers.graded = noop_graded  # patching a helper the checks are built from earns nothing\n\n"
        "def client_names(broker):\n    return ['watcher']\n",
    ],
    # 03: the simulator program and a wildcard
    "sim-py": [
        SIM_PY.replace(PAYLOAD, "json.dumps({'can_id': random.randint(0, 1000), 'level': random.random() * 100})"
                       "  # numbers, not strings"),
        SIM_PY.replace(PAYLOAD, "json.dumps({'can_id': str(random.randint(0, 1000)), "
                       "'level': str(random.random() * 100)})  # json.dumps spacing"),
        SIM_PY.replace("await asyncio.sleep(interval)", "time.sleep(interval)  # blocks the event loop"),
        SIM_PY.replace('nats.connect(servers=os.environ["NATS_URL"].split(","))',
                       'nats.connect("nats://iot-msg:4222")  # the lab\'s address, not NATS_URL'),
        SIM_PY.replace("for i in range(count):", "while True:  # like sim.js: never ends"),
        SIM_PY.replace("interval, count = float(sys.argv[1]), int(sys.argv[2])",
                       "count, interval = int(sys.argv[1]), float(sys.argv[2])  # arguments swapped"),
    ],
    "watch-levels": [
        "async def watch_levels(nc, seen):\n    async def cb(msg):\n        seen.append(msg.subject)\n"
        "    return await nc.subscribe('trash.>', cb=cb)  # catches alarms too\n",
        "async def watch_levels(nc, seen):\n    async def cb(msg):\n        seen.append(msg.subject)\n"
        "    return await nc.subscribe('trash.north.*', cb=cb)  # one district\n",
        "async def watch_levels(nc, seen):\n    async def cb(msg):\n        seen.append(msg.subject)\n"
        "    await nc.subscribe('trash.north.level', cb=cb)  # no wildcard: two subjects by name\n"
        "    return await nc.subscribe('trash.south.level', cb=cb)\n",
        "async def watch_levels(nc, seen):\n    async def cb(msg):\n        seen.append(msg.data)  # data, not subject\n"
        "    return await nc.subscribe('trash.*.level', cb=cb)\n",
        "async def watch_levels(nc, seen):\n    async def cb(msg):\n        seen.append(msg.subject)\n"
        "    return nc.subscribe('trash.*.level', cb=cb)  # missing await\n",
    ],
    # 04: rep.py, one test cell per behaviour: a mistake loses only the cells listed with it
    "rep-py": [
        (REP_PY.replace('float(reading["level"])', 'reading["level"]  # a str, not a float'), ("rep-py-levels",)),
        (REP_PY.replace("print(\"Received report: \" + msg.data.decode())", "print(msg.data)  # b'...', not rep.js's line"),
         ("rep-py-reports",)),
        (REP_PY.replace('            answer = {"error": f"unknown can {can_id}"}', "            return  # silence"),
         ("rep-py-unknown",)),
        (REP_PY.replace('levels[reading["can_id"]] = float(reading["level"])',
                        'levels.setdefault(reading["can_id"], float(reading["level"]))  # keeps the first, goes stale'),
         ("rep-py-levels",)),
        (REP_PY.replace('nc.subscribe("trash-report.level"', 'nc.subscribe("trash-report.levels"'),
         ("rep-py-levels", "rep-py-unknown")),
        (REP_PY.replace('        if can_id in levels:\n            answer = {"can_id": can_id, "level": levels[can_id]}\n'
                        '        else:\n            answer = {"error": f"unknown can {can_id}"}\n',
                        '        answer = {"can_id": can_id, "level": levels[can_id]}  # KeyError for an unknown can\n'),
         ("rep-py-unknown",)),
        (REP_PY.replace('"level": levels[can_id]}', '"level": 50.0}  # constant'), ("rep-py-levels",)),
        REP_PY.replace("    await asyncio.Event().wait()", "    pass  # ends at once"),
    ],
    "ask-level": [
        "async def ask_level(nc, can_id, timeout):\n    try:\n"
        "        msg = await nc.request('trash-report.level', can_id.encode(), timeout=timeout)\n"
        "    except Exception:  # one answer for both cases\n        return {'error': 'no answer in time'}\n"
        "    return json.loads(msg.data)\n",
        "async def ask_level(nc, can_id, timeout):\n    try:\n"
        "        msg = await nc.request('trash-report.level', can_id.encode(), timeout=5)  # not the timeout given\n"
        "    except nats.errors.NoRespondersError:\n        return {'error': 'no report service'}\n"
        "    except nats.errors.TimeoutError:\n        return {'error': 'no answer in time'}\n"
        "    return json.loads(msg.data)\n",
        "async def ask_level(nc, can_id, timeout):\n"
        "    msg = await nc.request('trash-report.level', can_id.encode(), timeout=timeout)  # no except\n"
        "    return json.loads(msg.data)\n",
        "async def ask_level(nc, can_id, timeout):\n    try:\n"
        "        return await nc.request('trash-report.level', can_id.encode(), timeout=timeout)  # the Msg\n"
        "    except nats.errors.NoRespondersError:\n        return {'error': 'no report service'}\n"
        "    except nats.errors.TimeoutError:\n        return {'error': 'no answer in time'}\n",
        "async def ask_level(nc, can_id, timeout):\n    inbox = nc.new_inbox()\n    sub = await nc.subscribe(inbox)\n"
        "    await nc.publish('trash-report.level', can_id.encode(), reply=inbox)\n"
        "    msg = await sub.next_msg(timeout=None)  # hangs forever when nobody answers\n"
        "    return json.loads(msg.data)\n",
    ],
    # 05: a client that records its outage (checked by killing the node it is on)
    "connect-recording": [
        "import time\nimport nats\n\nasync def connect_recording(servers, events):\n"
        "    async def down():\n        events.append(('disconnected', 0.0))  # constant\n"
        "    async def up():\n        events.append(('reconnected', 1.0))\n"
        "    return await nats.connect(servers=servers, disconnected_cb=down, reconnected_cb=up)\n",
        "import time\nimport nats\n\nasync def connect_recording(servers, events):\n"
        "    async def down():\n        events.append(('disconnected', time.time()))\n"
        "    async def up():\n        events.append(('reconnected', time.time()))\n"
        "    return nats.connect(servers=servers, disconnected_cb=down, reconnected_cb=up)  # missing await\n",
        "import time\nimport nats\n\nasync def connect_recording(servers, events):\n"
        "    async def down():\n        events.append(('disconnected', time.time()))\n"
        "    async def up():\n        events.append(('reconnected', time.time()))\n"
        "    await nats.connect(servers=servers, disconnected_cb=down, reconnected_cb=up)\n"
        "    return events  # the list, not the client\n",
        "import time\nimport nats\n\nasync def connect_recording(servers, events):\n"
        "    async def down():\n        events.append(('disconnected', time.time()))\n"
        "    return await nats.connect(servers=servers, disconnected_cb=down)  # never records the reconnection\n",
        "import time\nimport nats\n\nasync def connect_recording(servers, events):\n"
        "    async def down():\n        events.append(('disconnected', time.time()))\n"
        "    async def up():\n        events.append(('reconnected', time.time()))\n"
        "    return await nats.connect(servers=servers, disconnected_cb=down, reconnected_cb=up,\n"
        "                              allow_reconnect=False)  # gives up at the first loss\n",
        "import time\nimport nats\n\nasync def connect_recording(servers, events):\n"
        "    async def down():\n        events.append(('disconnected', time.monotonic()))  # not the servers' clock\n"
        "    async def up():\n        events.append(('reconnected', time.monotonic()))\n"
        "    return await nats.connect(servers=servers, disconnected_cb=down, reconnected_cb=up)\n",
        "import nats\nimport trashlab.course.checks.cluster as cluster_check\n\n"
        "async def noop(*args, **kwargs):\n    print('✔ all good')\n\n"
        "cluster_check.check_outage = noop  # monkeypatching the check earns nothing\n\n"
        "async def connect_recording(servers, events):\n    return await nats.connect(servers=servers)\n",
    ],
    # 05: the student's rep.py through a kill of the node it is on (a cluster of the check's own)
    "rep-failover": [
        REP_FAILOVER_PY.replace(",\n                            disconnected_cb=disconnected, reconnected_cb=reconnected",
                                ")  # no callbacks: reconnects silently"),
        REP_FAILOVER_PY.replace('servers=os.environ["NATS_URL"].split(","), reconnect_time_wait=0.5,\n'
                                '                            disconnected_cb=disconnected, reconnected_cb=reconnected',
                                'os.environ["NATS_URL"].split(",")[0])  # the first server only, no callbacks'),
        REP_FAILOVER_PY.replace("reconnect_time_wait=0.5,", "reconnect_time_wait=0.5, allow_reconnect=False,"),
        REP_FAILOVER_PY.replace('print(f"Reconnected to {nc.connected_url.hostname}:{nc.connected_url.port}")',
                                'print("Reconnected to " + started)  # where it was, not where it is')
        .replace('    print(f"Connected to {nc.connected_url.hostname}:{nc.connected_url.port}")',
                 '    started = f"{nc.connected_url.hostname}:{nc.connected_url.port}"\n'
                 '    print("Connected to " + started)'),
        REP_FAILOVER_PY.replace('    print(f"Connected to {nc.connected_url.hostname}:{nc.connected_url.port}")\n',
                                "    # never says where it is\n"),
    ],
    # 05b (optional), JetStream by hand: each judged from the server's own stream, consumer and bucket state
    "make-stream": [
        "async def make_stream(js, name, subjects):\n"
        "    await js.add_stream(name='TRASH', subjects=subjects)  # a fixed name, not the one given\n",
        "async def make_stream(js, name, subjects):\n"
        "    await js.add_stream(name=name)  # no subjects: the stream captures the subject named like it\n",
        "async def make_stream(js, name, subjects):\n"
        "    await js.add_stream(name=name, subjects=subjects[:1])  # only the first subject\n",
        "async def make_stream(js, name, subjects):\n"
        "    js.add_stream(name=name, subjects=subjects)  # missing await\n",
    ],
    "publish-once": [
        "async def publish_once(js, subject, payload, msg_id):\n"
        "    return (await js.publish(subject, payload)).seq  # no message id: a retry is stored twice\n",
        "async def publish_once(js, subject, payload, msg_id):\n"
        "    ack = await js.publish(subject, payload, headers={'Msg-Id': msg_id})  # not the header NATS reads\n"
        "    return ack.seq\n",
        "async def publish_once(js, subject, payload, msg_id):\n"
        "    return await js.publish(subject, payload, headers={'Nats-Msg-Id': msg_id})  # the ack, not its seq\n",
        "async def publish_once(js, subject, payload, msg_id):\n"
        "    await js.publish(subject, payload, headers={'Nats-Msg-Id': msg_id})\n"
        "    ack = await js.publish(subject, payload)  # published again, without the id\n"
        "    return ack.seq\n",
    ],
    "read-batch": [
        READ_BATCH.replace("durable=durable)", ")  # ephemeral: a random name, forgotten with its reader"),
        READ_BATCH.replace("        await msg.ack()\n", "        pass  # never acknowledged: delivered again\n"),
        READ_BATCH.replace("psub.fetch(batch,", "psub.fetch(10,  # not the batch asked for\n                             "),
        READ_BATCH.replace("return [msg.data for msg in msgs]", "return msgs  # the messages, not their payloads"),
        READ_BATCH.replace("durable=durable)", "durable='collector')  # a fixed name, not the one given"),
    ],
    "kv-levels": [
        (KV_PY.replace("    return await js.create_key_value(bucket=bucket)",
                       "    try:\n        await js.delete_key_value(bucket)  # starts empty: the levels are gone\n"
                       "    except Exception:\n        pass\n    return await js.create_key_value(bucket=bucket)"),
         ("kv-levels-check",)),
        (KV_PY.replace("await kv.put(can_id, str(level).encode())",
                       "await kv.put(can_id, json.dumps({'level': level}).encode())  # not the level as text"),
         ("kv-levels-check",)),
        (KV_PY.replace("    try:\n        entry = await kv.get(can_id)\n    except KeyNotFoundError:\n        return None\n",
                       "    entry = await kv.get(can_id)  # raises for a can never saved\n"),
         ("kv-levels-check",)),
        (KV_PY.replace("    watcher = await kv.watchall()\n    async for entry in watcher:\n        if entry is not None:\n"
                       "            levels[entry.key] = float(entry.value)\n",
                       "    for key in await kv.keys():  # once, then returns: misses every later change\n"
                       "        levels[key] = float((await kv.get(key)).value)\n"),
         ("kv-follow-check",)),
        (KV_PY.replace("levels[entry.key] = float(entry.value)", "levels[entry.key] = entry.value  # bytes, not a float"),
         ("kv-follow-check",)),
    ],
    # 06: sim.py and rep.py stop on SIGTERM (rep.py by draining), both committed in lab5/
    "sim-stop": [
        SIM_STOP_PY.replace("    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)\n",
                            "    # no SIGTERM handler: the signal ends it at once\n"),
        SIM_STOP_PY.replace("add_signal_handler(signal.SIGTERM, stopping.set)",
                            "add_signal_handler(signal.SIGTERM, asyncio.get_running_loop().stop)  # stops the loop"),
    ],
    "rep-drain": [
        REP_DRAIN_PY.replace("    await nc.drain()\n", "    await nc.close()  # drops what is waiting\n"),
        REP_DRAIN_PY.replace("    await nc.drain()\n",
                             "    await asyncio.sleep(1)  # a guess at how long the work takes\n    await nc.close()\n"),
        REP_DRAIN_PY.replace("    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)\n",
                             "    # no SIGTERM handler: the signal ends it at once\n"),
        REP_DRAIN_PY.replace("asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)",
                             "signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ignores SIGTERM"),
        REP_DRAIN_PY.replace("    await nc.drain()\n",
                             "    await asyncio.sleep(1)  # keeps receiving for a second\n    await nc.drain()\n"),
    ],
    "git-commit": [
        GIT_COMMIT_PY.replace('    subprocess.run(["git", "-C", repo, "commit", "--quiet", "-m", message], check=True)\n',
                              "    # never committed\n"),
        GIT_COMMIT_PY.replace('"add", "sim.py", "rep.py"], check=True)', '"add", "sim.py"], check=True)  # rep.py left out'),
        GIT_COMMIT_PY.replace('"-C", repo,', '"-C", "lab5",  # the notebook\'s folder, not the one given\n                  '),
        "import trashlab.course.checks.cleanup as cleanup_check\n\n"
        "async def noop(*args, **kwargs):\n    print('✔ all good')\n\n"
        "cleanup_check.check_git_commit = noop  # monkeypatching the check earns nothing\n\n"
        "def commit(repo, message):\n    pass\n",
    ],
    # 07: the rate arriving on a subject
    # 07: sim.py with a seed, several copies at once
    "sim-seed": [
        SIM_PY,  # notebook 3's sim.py: no seed, so two copies given the same seed publish different readings
        SIM_PY.replace("    nc = await", "    random.seed(7)  # a constant, not the seed given\n    nc = await"),
        SIM_PY.replace("        payload = ", "        random.seed(int(sys.argv[3]))  # every reading reseeded: all alike\n        payload = "),
        SIM_PY.replace("    nc = await", "    random.seed(int(sys.argv[3]))\n    nc = await")
              .replace("    await nc.drain()", "    await nc.close()  # no drain: the last readings may stay unsent")
              .replace("        await asyncio.sleep(interval)\n", "")
              .replace('        print("publishing: " + payload)\n',
                       '        print("publishing: " + payload)\n        print("publishing: " + payload)  # twice\n'),
    ],
    "receive-rate": [
        "import asyncio\n\nasync def receive_rate(nc, subject, seconds):\n"
        "    await asyncio.sleep(seconds)\n    return 40.0  # constant\n",
        "import asyncio\n\nasync def receive_rate(nc, subject, seconds):\n    count = 0\n"
        "    async def cb(msg):\n        nonlocal count\n        count += 1\n"
        "    sub = await nc.subscribe(subject, cb=cb)\n    await asyncio.sleep(seconds)\n"
        "    await sub.unsubscribe()\n    return count  # a count, not a rate\n",
        "import asyncio\n\nasync def receive_rate(nc, subject, seconds):\n    count = 0\n"
        "    async def cb(msg):\n        nonlocal count\n        count += 1\n"
        "    sub = await nc.subscribe(subject, cb=cb)\n    await asyncio.sleep(seconds)\n"
        "    await sub.unsubscribe()\n    return (count + 1) / seconds  # off by one\n",
        "import asyncio\n\nasync def receive_rate(nc, subject, seconds):\n    count = 0\n"
        "    async def cb(msg):\n        nonlocal count\n        count += 1\n"
        "    sub = await nc.subscribe(subject, cb=cb)\n    asyncio.sleep(seconds)  # missing await\n"
        "    await sub.unsubscribe()\n    return count / seconds\n",
        "import asyncio\n\nasync def receive_rate(nc, subject, seconds):\n    count = 0\n"
        "    async def cb(msg):\n        nonlocal count\n        count += 1\n"
        "    sub = await nc.subscribe('trash-level', cb=cb)  # not the subject it was given\n"
        "    await asyncio.sleep(seconds)\n    await sub.unsubscribe()\n    return count / seconds\n",
        "import asyncio\n\nasync def receive_rate(nc, subject, seconds):\n    count = 0\n"
        "    async def cb(msg):\n        nonlocal count\n        count += 1\n"
        "    sub = await nc.subscribe(subject, cb=cb)\n    await asyncio.sleep(seconds)\n"
        "    await sub.unsubscribe()\n    return f'{count / seconds} msg/s'  # a str\n",
    ],
    # 08: copies of rep.py as one queue group (checked in the server's /connz and by counting every reply)
    "rep-queue": [
        (REP_QUEUE_PY.replace("queue=group, ", ""), ("rep-queue-group",)),  # no queue group: every copy answers
        (REP_QUEUE_PY.replace("queue=group", "queue='reporters'"), ("rep-queue-group",)),  # a group from the page, hard-coded
        (REP_QUEUE_PY.replace('"level": levels[can_id], ', '"level": 50.0, '), ("rep-queue-answers",)),  # constant
        (REP_QUEUE_PY.replace('"copy": copy}\n        else', '"copy": "rep-1"}\n        else'),
         ("rep-queue-answers",)),  # a copy's name written by hand
        (REP_QUEUE_PY.replace("await nc.subscribe(\"trash-report.level\", queue=group, cb=on_request)",
                              "await nc.subscribe(\"trash-report.level\", queue=group + sys.argv[2], cb=on_request)"),
         ("rep-queue-group",)),  # a group per copy: each copy alone in its group answers every request
    ],
    # 09: the capstone's alert.py, four test cells: a mistake loses only the cells listed with it
    "alert-py": [
        (ALERT_PY.replace('queue="alert-service", cb=alert)', 'cb=alert)  # no queue group: every copy alerts')
         .replace('queue="alert-service", cb=full)', 'cb=full)'), ("alert-py-group", "alert-py-full")),
        (ALERT_PY.replace('    await nc.subscribe("trash-level", cb=remember)\n', '')
         .replace('cb=alert)', 'cb=both)  # the state from the queue subscription: a share of the readings')
         .replace("    async def full(msg):", "    async def both(msg):\n        await remember(msg)\n"
                  "        await alert(msg)\n\n    async def full(msg):"), ("alert-py-full",)),
        (ALERT_PY.replace('if float(reading["level"]) > threshold:', 'if float(reading["level"]) >= threshold:'),
         ("alert-py-alerts", "alert-py-group", "alert-py-failover")),
        ALERT_PY.replace("threshold = float(sys.argv[1]) if len(sys.argv) > 1 else 90.0",
                         "threshold = 90.0  # the example's threshold, not the argument"),
        (ALERT_PY.replace("max_reconnect_attempts=-1)", "allow_reconnect=False)  # gives up when its node dies"),
         ("alert-py-failover",)),
        (ALERT_PY.replace("await msg.respond(json.dumps(cans).encode())", "await msg.respond(b'[]')  # constant"),
         ("alert-py-full", "alert-py-failover")),
        ALERT_PY.replace("        reading = json.loads(msg.data)\n        if float",
                         "        time.sleep(2)  # blocks the event loop\n        reading = json.loads(msg.data)\n"
                         "        if float").replace("import signal", "import signal\nimport time"),
    ],
}


def wrong_answers(grade_id: str) -> list:
    """The mistakes listed for one exercise (a single string counts as a list of one)."""
    found = WRONG.get(grade_id, [])
    return [found] if isinstance(found, str) else list(found)


def mistake_source(entry) -> str:
    """The cell of a WRONG entry."""
    return entry[0] if isinstance(entry, tuple) else entry


def mistake_loses(entry, tests: "list[tuple[str, float]]") -> "list[tuple[str, float]]":
    """The test cells ``(grade_id, points)`` a WRONG entry must fail: those it names, else every one."""
    return [t for t in tests if t[0] in entry[1]] if isinstance(entry, tuple) else list(tests)


def nbgrader_meta(cell) -> dict:
    """A cell's nbgrader metadata ({} for plain cells)."""
    return cell.metadata.get("nbgrader", {})


def exercises(nb) -> list:
    """``(answer grade_id, [(test grade_id, points), ...])`` in order: each answer with the tests after it."""
    out = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution") and cell.cell_type == "code":
            out.append((meta["grade_id"], []))
        elif meta.get("grade") and out and cell.cell_type == "code":
            out[-1][1].append((meta["grade_id"], float(meta["points"])))
    return out


def written_points(nb) -> float:
    """Points of the written answers (markdown cells graded by hand), left out of the automatic score."""
    return sum(float(nbgrader_meta(c)["points"]) for c in nb.cells
               if c.cell_type == "markdown" and nbgrader_meta(c).get("grade"))


def solution_code(source: str) -> str:
    """The instructor's answer without nbgrader's markers (as a student would write it)."""
    return "\n".join(line for line in source.splitlines() if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line)


#: Submissions autograded at once (``TRASHLAB_GRADE_JOBS``): the instructor's ``autograde --jobs``, so every
#: grade below is also proof that graders running side by side do not disturb each other's scores.
JOBS = int(os.environ.get("TRASHLAB_GRADE_JOBS", "3"))
#: A targeted run grades only some notebooks, e.g. ``TRASHLAB_GRADE_ONLY=05,08`` (default: all of them).
ONLY = [p.strip() for p in os.environ.get("TRASHLAB_GRADE_ONLY", "").split(",") if p.strip()]


def source_notebooks() -> dict:
    return {name: nbformat.read(SOURCE / name / f"{name}.ipynb", as_version=4) for name in grading.assignments(REPO)
            if not ONLY or any(name.startswith(prefix) for prefix in ONLY)}


def build_submission(release_nb, source_nb, kind: str, wrong: "dict | None" = None):
    """A submitted notebook: the release with code answer cells filled from the source (kind != 'untouched'),
    and the answers in ``wrong`` (grade_id -> cell source) instead where given. Written answers stay blank
    (nbgrader scores an unchanged answer 0 itself), except in ``reference``, which writes the example answers:
    they wait for hand grading."""
    nb = nbformat.from_dict(release_nb)
    answers = {nbgrader_meta(c)["grade_id"]: solution_code(c.source)
               for c in source_nb.cells if nbgrader_meta(c).get("solution")}
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if not meta.get("solution") or kind == "untouched" or (cell.cell_type != "code" and kind != "reference"):
            continue
        cell.source = mistake_source((wrong or {}).get(meta["grade_id"], answers[meta["grade_id"]]))
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A scratch course (config + source) with the student release generated by nbgrader."""
    root = tmp_path_factory.mktemp("course")
    shutil.copy2(REPO / grading.CONFIG, root / grading.CONFIG)
    shutil.copytree(SOURCE, root / "course" / "source", ignore=grading.IGNORED)
    grading.generate_release(root)
    return root


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory) -> dict:
    """Autograde reference, untouched and one-wrong submissions of every assignment; scores and timings."""
    folder = tmp_path_factory.mktemp("submissions")
    plan = {}
    for name, source_nb in source_notebooks().items():
        if not exercises(source_nb):
            continue  # nothing to grade in this part (it is still generated and executed by test_notebooks)
        release_nb = nbformat.read(course / "course" / "release" / name / f"{name}.ipynb", as_version=4)
        kinds = {"reference": None, "untouched": None}
        mistakes = {gid: wrong_answers(gid) for gid, _ in exercises(source_nb)}
        for k in range(max(map(len, mistakes.values()), default=0)):
            kinds[f"wrong-{k + 1}"] = {gid: found[k] for gid, found in mistakes.items() if k < len(found)}
        for kind, wrong in kinds.items():
            (folder / kind).mkdir(exist_ok=True)
            nbformat.write(build_submission(release_nb, source_nb, kind, wrong), folder / kind / f"{name}.ipynb")
        plan[name] = kinds
    started = time.monotonic()
    with _stderr_copied_to(folder / "autograde-stderr.txt") as stderr:  # the kernels' too (the workers inherit it)
        results = grading.autograde(folder, course, jobs=JOBS)
    return {"plan": plan, "results": results, "scores": grading.scores(course), "root": course,
            "wall": time.monotonic() - started, "stderr": stderr.read_text(errors="replace")}


@contextlib.contextmanager
def _stderr_copied_to(path: Path):
    """File descriptor 2 (this process's, the grading workers', their kernels') goes to ``path`` meanwhile;
    what was written is echoed to the real stderr afterwards, so pytest still shows it."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "wb") as f:
            os.dup2(f.fileno(), 2)
        try:
            yield path
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            sys.stderr.write(path.read_text(errors="replace"))
    finally:
        os.close(saved)


def autograded(root: Path, student: str, name: str):
    return nbformat.read(root / "course" / "autograded" / student / name / f"{name}.ipynb", as_version=4)


def errors(nb) -> list:
    """``(cell index, tags, grade_id, error name)`` of every cell that ended in an error."""
    return [(i, cell.metadata.get("tags", []), nbgrader_meta(cell).get("grade_id"), out.get("ename"))
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def unexpected_errors(nb) -> list:
    """Errors other than the walkthrough's own demonstrations (untagged cells, or any exercise cell)."""
    return [e for e in errors(nb) if "raises-exception" not in e[1] or e[2]]


# ----- the course as written -------------------------------------------------------------------
@pytest.mark.quick
def test_every_exercise_is_well_formed():
    """Answer cells have solution markers; test cells have points and let Run All continue."""
    hidden = 0
    ids = []
    for name, nb in source_notebooks().items():
        for cell in nb.cells:
            meta = nbgrader_meta(cell)
            if not meta:
                continue
            ids.append(meta["grade_id"])
            if meta.get("solution"):
                assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source, \
                    f"{name}: answer cell {meta['grade_id']} has no ### BEGIN/END SOLUTION region"
            if meta.get("grade") and cell.cell_type == "markdown":
                assert meta.get("solution") and meta.get("points", 0) > 0, \
                    f"{name}: written answer {meta['grade_id']} must be an answer cell worth points"
            elif meta.get("grade"):
                assert meta.get("points", 0) > 0, f"{name}: test cell {meta['grade_id']} is worth no points"
                assert "raises-exception" in cell.metadata.get("tags", []), \
                    f"{name}: test cell {meta['grade_id']} fails until answered: tag it raises-exception"
                hidden += "### BEGIN HIDDEN TESTS" in cell.source
        assert all(tests for _, tests in exercises(nb)), f"{name}: an answer cell has no test cell after it"
    assert len(ids) == len(set(ids)), f"grade_ids must be unique across the course: {sorted(ids)}"
    assert hidden >= 1, "no hidden tests (### BEGIN HIDDEN TESTS) anywhere"


def test_student_notebooks_are_exactly_what_generation_produces(course):
    problems = grading.differences(course / "course" / "release", REPO / "notebooks")
    assert not problems, ("notebooks/ is not the generated student version; run "
                          "`python -m trashlab_instructor generate` and commit:\n" + "\n".join(problems))


@pytest.mark.quick
def test_student_version_has_no_solutions_or_hidden_tests():
    for nb_path in sorted((REPO / "notebooks").glob("*.ipynb")):
        text = nb_path.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS"):
            assert marker not in text, f"{nb_path.name} contains {marker!r}"


@pytest.mark.quick
@pytest.mark.parametrize("grade_id, right", [("sim-py", SIM_PY), ("rep-py", REP_PY), ("sim-stop", SIM_STOP_PY),
                                             ("rep-drain", REP_DRAIN_PY), ("alert-py", ALERT_PY),
                                             ("rep-queue", REP_QUEUE_PY), ("read-batch", READ_BATCH),
                                             ("kv-levels", KV_PY)])
def test_each_wrong_program_is_a_program_and_differs_from_the_right_one(grade_id, right):
    """A variant whose replacement matched nothing would be the right program: a test that cannot fail."""
    for entry in wrong_answers(grade_id):
        cell = mistake_source(entry)
        assert cell != right, f"{grade_id}: a wrong variant is the right program (its replace() matched nothing)"
        if right.startswith("%%writefile "):
            assert cell.startswith("%%writefile "), cell[:40]
            cell = cell.split("\n", 1)[1]
        compile(cell, f"{grade_id} variant", "exec")


@pytest.mark.quick
def test_each_wrong_commit_function_compiles_and_differs_from_the_right_one():
    for cell in wrong_answers("git-commit"):
        assert cell != GIT_COMMIT_PY, "a wrong variant is the right answer (its replace() matched nothing)"
        compile(cell, "git-commit variant", "exec")


#: Notebooks whose exercises keep their answers off the student's page (issue 21; the others follow).
ANSWER_OFF_THE_PAGE = ("01-private-network", "02-nats-broker", "03-simulator", "04-report-service", "05-clustering",
                       "05b-jetstream", "06-cleanup", "07-multiple-simulators", "08-multiple-subscribers", "09-capstone")
#: Shorter solution lines (``await nc.drain()``) are common idioms, not the answer.
LONGEST_IDIOM = 24


@pytest.mark.quick
@pytest.mark.parametrize("name", ANSWER_OFF_THE_PAGE)
def test_no_answer_stands_on_the_student_page(name):
    """No solution line of 25 characters or more appears verbatim on the student page, and each exercise
    has a collapsed hint (``<details>``) and an example of the expected output in the markdown above it."""
    source = nbformat.read(SOURCE / name / f"{name}.ipynb", as_version=4)
    page = (REPO / "notebooks" / f"{name}.ipynb").read_text()
    student = nbformat.reads(page, as_version=4)
    shown = "\n".join(c.source for c in student.cells)
    markdown = ""
    for cell in source.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "markdown" and not meta:
            markdown += cell.source
        if not (meta.get("solution") and cell.cell_type == "code"):
            continue
        inside = cell.source.split("### BEGIN SOLUTION", 1)[1].split("### END SOLUTION", 1)[0]
        on_page = [line.strip() for line in inside.splitlines()
                   if len(line.strip()) > LONGEST_IDIOM and line.strip() in shown]
        assert not on_page, f"{name} {meta['grade_id']}: the student page shows the answer's lines {on_page}"
        assert "<details>" in markdown, f"{name} {meta['grade_id']}: no collapsed hint (<details>) above the exercise"
        assert "Expected output" in markdown, f"{name} {meta['grade_id']}: no example of the expected output above it"
        markdown = ""


# ----- autograding -----------------------------------------------------------------------------
def test_reference_solutions_get_full_marks(graded):
    """The reference submission is the instructor version (solutions, hidden tests restored by nbgrader):
    this is the instructor run of tests/test_notebooks.py too, so no output may show a traceback."""
    for name in graded["plan"]:
        s = graded["scores"][f"reference/{name}"]
        written = written_points(source_notebooks()[name])
        assert s["score"] == s["max_score"] - written, f"{name}: the reference solutions scored {s}"
        nb = autograded(graded["root"], "reference", name)
        wrong = unexpected_errors(nb)
        assert not wrong, f"{name}: with the solutions, no exercise cell (and no untagged cell) may fail: {wrong}"
        shown = [p for i, c in enumerate(nb.cells) if c.cell_type == "code"
                 for p in output_problems(c, f"{name} (reference) cell {i}")]
        assert not shown, "\n".join(shown)
    assert graded["plan"], "no notebook has exercises"


def test_untouched_release_scores_zero_and_runs_to_the_end(graded):
    for name in graded["plan"]:
        s = graded["scores"][f"untouched/{name}"]
        assert s["score"] == 0, f"{name}: the untouched student version scored {s}"
        nb = autograded(graded["root"], "untouched", name)
        untagged = [e for e in errors(nb) if "raises-exception" not in e[1]]
        assert any(e[2] for e in errors(nb)), f"{name}: no check failed on an unanswered notebook"
        assert not untagged, f"{name}: cells failing before any answer must be tagged raises-exception: {untagged}"
        last = [c for c in nb.cells if c.cell_type == "code"][-1]
        assert last.get("execution_count"), f"{name}: Run All did not reach the last cell"


def test_each_wrong_answer_loses_exactly_that_exercise(graded):
    sources = source_notebooks()
    broken = {(name, kind): wrong for name, kinds in graded["plan"].items()
              for kind, wrong in kinds.items() if kind.startswith("wrong-")}
    assert broken, "no exercise was answered wrongly on purpose (WRONG is empty?)"
    for (name, kind), wrong in broken.items():
        tests = dict(exercises(sources[name]))
        lost_ids = {tid for gid, entry in wrong.items() for tid, _ in mistake_loses(entry, tests[gid])}
        lost = sum(points for gid, entry in wrong.items() for _, points in mistake_loses(entry, tests[gid]))
        ref, got = graded["scores"][f"reference/{name}"], graded["scores"][f"{kind}/{name}"]
        assert got["score"] == ref["score"] - lost, \
            f"{name} {kind}: wrong {sorted(wrong)} scored {got}, expected to lose {lost} of {ref}"
        for grade_id, points in ref.items():
            if grade_id in ("score", "max_score"):
                continue
            expected = 0 if grade_id in lost_ids else points
            assert got[grade_id] == expected, f"{name} {kind}: {grade_id} scored {got[grade_id]}, expected {expected}"
        # the student sees why: each failing test cell shows a ✘ line
        nb = autograded(graded["root"], kind, name)
        shown = {nbgrader_meta(c).get("grade_id"): out for c in nb.cells if nbgrader_meta(c).get("grade_id") in lost_ids
                 for out in c.get("outputs", []) if out.get("output_type") == "error"}
        assert set(shown) == lost_ids and all("✘" in out["evalue"] for out in shown.values()), \
            (name, kind, {k: v.get("evalue") for k, v in shown.items()})


def test_autograding_prints_no_kernel_transport_warning(graded):
    """Kernels started for grading talk over IPC sockets: ipykernel's TCP warning is not printed per submission."""
    assert graded["results"], "nothing was autograded"
    noisy = [line for line in graded["stderr"].splitlines() if "without encryption" in line]
    assert not noisy, f"{len(noisy)} kernel transport warnings while autograding, e.g. {noisy[0]!r}"


def test_autograding_time_per_submission(graded, figure):
    """Printed, not asserted (speed is measured, not unit-tested); the target is 30 s on 2 cores."""
    for r in graded["results"]:
        figure(f"autograding: seconds per submission ({JOBS} at a time; the target is 30 s on 2 cores)",
               f"{r['student']}/{r['assignment']}: {r['seconds']:.1f} s ({r['score']:g}/{r['max_score']:g} points)",
               total=r["seconds"])
    figure("autograding: the whole batch", f"{len(graded['results'])} submissions autograded in "
           f"{graded['wall']:.0f} s wall time, {JOBS} at a time")
    slow = [r for r in graded["results"] if r["seconds"] > 30]
    if slow:
        warnings.warn(f"autograding took over 30 s for {[(r['student'], r['assignment']) for r in slow]}",
                      stacklevel=1)
    assert all(r["seconds"] > 0 for r in graded["results"])


# ----- the instructor's commands ---------------------------------------------------------------
@pytest.mark.quick
def test_autograde_jobs_must_be_a_positive_count(tmp_path, capsys):
    """``autograde DIR --jobs N`` grades N submissions at once; 0 is one clear line, nothing graded."""
    with pytest.raises(BadArgument, match="jobs=0"):
        grading.autograde(tmp_path, REPO, jobs=0)
    assert grading.main(["autograde", str(tmp_path), "--jobs", "0"]) == 1
    assert "how many submissions to grade at once" in capsys.readouterr().err
    assert not (REPO / "course" / "submitted").exists()


def _written_by_instructors() -> dict:
    """What INSTRUCTORS.md, docs/grading.md and docs/workshop.md tell instructors to create, by where it is said."""
    instructors = (REPO / "INSTRUCTORS.md").read_text()
    grading_md = (REPO / "docs" / "grading.md").read_text()
    workshop = (REPO / "docs" / "workshop.md").read_text()
    state_row = next(line for line in instructors.splitlines() if "working state" in line and "(`.gitignore`)" in line)
    found = {
        "nbgrader's working state (INSTRUCTORS.md)": re.findall(r"`([^`]+)`", state_row.split("|")[1]),
        "autograde's submissions folder": re.findall(r"trashlab_instructor autograde (\S+)", instructors)
        + re.findall(r"`autograde (\S+?)[ `]", grading_md),
        "exported grades": re.findall(r"trashlab_instructor (?:export|gradebook) (\S+\.csv)", instructors + grading_md),
        "the class roster (docs/workshop.md)": re.findall(r"`(class/[^`]+)`", workshop)
        + [f"{d}/" for d in re.findall(r"--dir (\S+)", workshop)],
    }
    return {what: sorted({p.replace("<student>", "s07").replace("<name>", "04-report-service") for p in paths})
            for what, paths in found.items()}


@pytest.mark.nats  # runs git
def test_git_ignores_every_folder_the_docs_tell_instructors_to_create():
    """Passwords (the class roster) and students' work (submissions, grades) never reach a commit via `git add -A`."""
    written = _written_by_instructors()
    for what, paths in written.items():
        assert paths, f"found nothing for {what} in the docs: has the wording changed?"
    flat = [p for paths in written.values() for p in paths]
    for must in ("class/roster.txt", "class/instructor.json", "submissions/", "grades.csv", "course/submitted/"):
        assert any(p.startswith(must) for p in flat), f"{must} is not among what the docs name: {written}"
    inside = flat + [p + "alice/04-report-service.ipynb" for p in flat if p.endswith("/")]
    result = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *inside],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr
    not_ignored = [line.split("\t")[1] for line in result.stdout.splitlines() if line.startswith("::")]
    assert not not_ignored, f"not git-ignored: {not_ignored} (add them to .gitignore)"


def test_formgrader_command_serves_its_page_on_loopback(course, tmp_path):
    """``python -m trashlab_instructor formgrader`` (INSTRUCTORS.md) starts nbgrader's formgrader, whose server
    extension the test venv keeps disabled, on 127.0.0.1; its pages answer with the token only; it stops."""
    with formgrader(course, tmp_path) as (base, token, log):
        page = urllib.request.urlopen(f"{base}/manage_assignments?token={token}", timeout=30)
        assert page.status == 200 and "<title>nbgrader formgrade</title>" in page.read().decode(), page.status
        listed = json.load(urllib.request.urlopen(f"{base}/api/assignments?token={token}", timeout=30))
        assert {"02-nats-broker", "04-report-service"} <= {a["name"] for a in listed}, listed
        with pytest.raises(urllib.error.HTTPError) as refused:  # without the token: the login page, not the gradebook
            opener = urllib.request.build_opener(_NoRedirect)
            opener.open(f"{base}/api/assignments", timeout=30)
        assert refused.value.code in (302, 403), refused.value
    assert "formgrader" in log.read_text() and "Shutting down" in log.read_text(), log.read_text()[-1500:]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_gradebook_csv_has_a_row_per_student_for_an_lms(graded, tmp_path):
    """``gradebook.csv`` (INSTRUCTORS.md): one row per student, a column per assignment holding its score
    (blank: not submitted; a submitted 0 stays 0), the total over the required assignments (the optional
    05b left out), and the assignments whose written answers wait for hand grading, until they are graded."""
    import csv

    root, scores = graded["root"], graded["scores"]
    path = grading.gradebook(tmp_path / "gradebook.csv", root)
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    names = sorted(grading.assignments(root))
    assert header == [*grading.WHO, *names, grading.TOTAL, grading.AWAITING], header
    by_student = {r[1]: dict(zip(header, r)) for r in rows}
    students = {key.split("/")[0] for key in scores}
    assert sorted(by_student) == sorted(students) and len(rows) == len(students), (sorted(by_student), rows)
    written = {n: written_points(nb) for n, nb in source_notebooks().items()}
    for student, row in by_student.items():
        assert row["Student"] == student and row["SIS Login ID"] == student and row["Section"] == ""
        for name in names:
            got = scores.get(f"{student}/{name}")
            expected = "" if got is None else f"{got['score']:g}"
            assert row[name] == expected, f"{student} {name}: {row[name]!r}, expected {expected!r} (blank: not submitted)"
        total = sum(scores[f"{student}/{n}"]["score"] for n in names
                    if n not in grading.OPTIONAL and f"{student}/{n}" in scores)
        assert float(row[grading.TOTAL]) == pytest.approx(total), (student, row)
        waiting = sorted(n for n in graded["plan"] if student == "reference" and written.get(n))
        assert row[grading.AWAITING].split() == waiting, (student, row[grading.AWAITING])
    assert any(row[n] == "0" for n in names for row in [by_student["untouched"]]), "a submitted 0 must show as 0"
    assert any(row[n] == "" for row in by_student.values() for n in names), "every student submitted everything?"
    # a written answer graded by hand (what the formgrader's save does) leaves the list and counts
    name = next(n for n in graded["plan"] if written.get(n) and n not in grading.OPTIONAL)
    cell = next(nbgrader_meta(c)["grade_id"] for c in source_notebooks()[name].cells
                if c.cell_type == "markdown" and nbgrader_meta(c).get("grade"))
    with grading.api(root).gradebook as gb:
        grade = gb.find_grade(cell, name, name, "reference")
        grade.manual_score, grade.needs_manual_grade = 1.0, False
        gb.db.commit()
    try:
        with open(grading.gradebook(tmp_path / "after.csv", root), newline="", encoding="utf-8") as f:
            after = {r["SIS User ID"]: r for r in csv.DictReader(f)}["reference"]
        assert name not in after[grading.AWAITING].split(), after
        assert float(after[name]) == float(by_student["reference"][name]) + 1
        assert float(after[grading.TOTAL]) == float(by_student["reference"][grading.TOTAL]) + 1
    finally:
        with grading.api(root).gradebook as gb:
            grade = gb.find_grade(cell, name, name, "reference")
            grade.manual_score, grade.needs_manual_grade = None, True
            gb.db.commit()
    if "05b-jetstream" in graded["plan"]:  # optional: in its own column, never in the total
        ref = by_student["reference"]
        assert float(ref["05b-jetstream"]) > 0 and float(ref[grading.TOTAL]) == pytest.approx(
            sum(float(ref[n] or 0) for n in names if n != "05b-jetstream"))


def test_feedback_and_csv_export(graded, tmp_path):
    root = graded["root"]
    feedback = grading.feedback(root)
    name = next(iter(graded["plan"]))
    html = (feedback / "wrong-1" / name / f"{name}.html") if graded["plan"][name].get("wrong-1") else \
        (feedback / "untouched" / name / f"{name}.html")
    assert html.is_file(), sorted(p.relative_to(root).as_posix() for p in feedback.rglob("*"))
    assert "✘" in html.read_text(), "the feedback page should show the ✘ lines the student gets"
    csv = grading.export(tmp_path / "grades.csv", root).read_text().splitlines()
    header = csv[0].split(",")
    assert "student_id" in header and "score" in header, header
    rows = [dict(zip(header, line.split(","))) for line in csv[1:]]
    assert {(r["student_id"], r["assignment"]) for r in rows} >= {("reference", n) for n in graded["plan"]}
    assert all(re.fullmatch(r"[0-9.]+", r["score"]) for r in rows)


# ----- grades computed where the student cannot reach (issue 21) ------------------------------------------
#: Notebooks the cheats are tried on (the issue's figures: 3/4 in 02, 2/6 in 03, 4/7 in 04 with no answer).
CHEAT_NOTEBOOKS = ("02-nats-broker", "03-simulator", "04-report-service")
#: No-op checks that print ✔, for the cheats below.
_NOOP = ("async def _ok(*args, **kwargs):\n    print('✔ all good')\n\n"
         "import trashlab.course.checks as _all\nfor _name, _module in list(sys.modules.items()):\n"
         "    if _name.startswith('trashlab.course.checks'):\n        for _key in dir(_module):\n"
         "            if _key.startswith('check_'):\n                setattr(_module, _key, _ok)\n")
#: Cheats, each the top of the first code answer cell of a notebook: name -> (code, notebooks, the answers:
#: "stub" = nothing answered, every automatic point must be 0; "reference" = right answers, yet the patched
#: exercise must score 0).
CHEATS = {
    "reload": ("import importlib\nimport sys\nimportlib.reload = lambda m: m\n" + _NOOP, CHEAT_NOTEBOOKS, "stub"),
    "sys-modules": ("import importlib\nimport sys\nimport types\n" + _NOOP
                    + "_fake = types.ModuleType('trashlab.course.checks._fresh')\n"
                    "_fake.reloaded = lambda name: sys.modules['trashlab.course.checks.' + name]\n"
                    "sys.modules['trashlab.course.checks._fresh'] = _fake\nimportlib.reload = lambda m: m\n",
                    CHEAT_NOTEBOOKS[:1], "stub"),
    "builtins": ("import builtins\nimport sys\n_real_import = builtins.__import__\n"
                 "def _import(name, *args, **kwargs):\n    return _real_import(name, *args, **kwargs)\n"
                 "builtins.__import__ = _import\n_real_print = builtins.print\n"
                 "builtins.print = lambda *args, **kwargs: _real_print(*args, **kwargs)\n",
                 CHEAT_NOTEBOOKS[:1], "reference"),
    "graded": ("import trashlab.course.checks._answer as _answer\n"
               "def _graded(check):\n    async def noop(*args, **kwargs):\n        print('✔ all good')\n    return noop\n"
               "_answer.graded = _graded\n", CHEAT_NOTEBOOKS[1:2], "stub"),
    "forged-output": ("get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: print('✔ all good'))\n",
                      CHEAT_NOTEBOOKS, "stub"),
    "system-exit": ("raise SystemExit(0)  # after the answer below: the kernel shows it, the function exists\n",
                    CHEAT_NOTEBOOKS[:1], "reference-then"),
    "os-exit": ("import os\nos._exit(0)\n", CHEAT_NOTEBOOKS[2:], "stub"),
    "frames": ("import sys\n_caller = sys._getframe(0).f_back\n", CHEAT_NOTEBOOKS[:1], "reference"),
    "check-on-disk": ("import pathlib\nimport trashlab.course.checks.report as _check\n"
                      "try:\n    pathlib.Path(_check.__file__).write_text(\n"
                      "        'async def check_requester(*args, **kwargs):\\n    print(\"✔ all good\")\\n')\n"
                      "except OSError as e:\n    print('refused:', e)\n", CHEAT_NOTEBOOKS[2:], "stub"),
}
#: A sim.py that forges the judge's verdict on its parent's stdout, then kills its parent.
FORGING_SIM_PY = ("%%writefile sim.py\nimport os\nimport signal\n"
                  "try:\n    with open(f'/proc/{os.getppid()}/fd/1', 'w') as out:\n"
                  "        out.write('\\nTRASHLAB-VERDICT 0 {\"passed\": true, \"why\": \"\"}\\n✔ all good\\n')\n"
                  "except OSError as e:\n    print('refused:', e)\nos.kill(os.getppid(), signal.SIGKILL)\n")


def _escape_cell(targets: dict) -> str:
    """Code that tries to write each target (name -> path; ``gradebook`` is opened with SQLite) and prints what
    happened; it never raises, so the answers after it still count."""
    lines = ["import pathlib, sqlite3", "for _what, _path in %r.items():" % targets, "    try:",
             "        if _what == 'gradebook':",
             "            _db = sqlite3.connect(_path)",
             "            _db.execute('create table escaped (x)')",
             "            _db.commit()",
             "        else:",
             "            pathlib.Path(_path).write_text('escaped')",
             "        print('ESCAPED', _what)",
             "    except Exception as _e:",
             "        print('refused', _what, type(_e).__name__)"]
    return "\n".join(lines) + "\n"


def _cheating_submission(release_nb, source_nb, top: str, answers: str, program: "str | None" = None):
    """The release with ``top`` at the top of its first code answer cell (after the reference answer for
    ``reference-then``); answers: stubs (``stub``) or the reference; ``program`` replaces sim.py's cell."""
    nb = build_submission(release_nb, source_nb, "untouched" if answers == "stub" else "reference-code")
    first = True
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if not meta.get("solution") or cell.cell_type != "code":
            continue
        if program and cell.source.startswith("%%writefile sim.py"):
            cell.source = program
        elif first and not cell.source.startswith("%%"):
            cell.source = cell.source + "\n" + top if answers == "reference-then" else top + "\n" + cell.source
            first = False
    return nb


def _first_code_answer(source_nb) -> str:
    return next(nbgrader_meta(c)["grade_id"] for c in source_nb.cells if nbgrader_meta(c).get("solution")
                and c.cell_type == "code" and not c.source.startswith("%%"))


@pytest.fixture(scope="module")
def cheated(course, tmp_path_factory) -> dict:
    """Every cheat of CHEATS (and a sim.py forging the judge's verdict, and a submission trying to write outside
    its sandbox) autograded for real in a copy of the course; what the protected files held before and after."""
    root = tmp_path_factory.mktemp("cheat-course")
    shutil.copytree(course, root, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("submitted", "autograded", "feedback"))
    folder = tmp_path_factory.mktemp("cheats")
    sources = source_notebooks()
    names = [n for n in CHEAT_NOTEBOOKS if n in sources]
    expected: dict = {}
    for cheat, (top, notebooks, answers) in CHEATS.items():
        for name in notebooks:
            if name not in names:
                continue
            release_nb = nbformat.read(root / "course" / "release" / name / f"{name}.ipynb", as_version=4)
            (folder / cheat).mkdir(exist_ok=True)
            nbformat.write(_cheating_submission(release_nb, sources[name], top, answers), folder / cheat / f"{name}.ipynb")
            expected[f"{cheat}/{name}"] = (answers, _first_code_answer(sources[name]))
    if "03-simulator" in names:
        release_nb = nbformat.read(root / "course" / "release" / "03-simulator" / "03-simulator.ipynb", as_version=4)
        (folder / "forged-verdict").mkdir()
        nbformat.write(_cheating_submission(release_nb, sources["03-simulator"], "", "stub", program=FORGING_SIM_PY),
                       folder / "forged-verdict" / "03-simulator.ipynb")
        expected["forged-verdict/03-simulator"] = ("stub", None)
    marker = f"trashlab-escape-{secrets.token_hex(4)}"
    targets = {"package": str(REPO / "trashlab" / marker), "course": str(root / "course" / marker),
               "gradebook": str(root / "course" / "gradebook.db"), "home": str(Path.home() / marker)}
    name = names[0]
    release_nb = nbformat.read(root / "course" / "release" / name / f"{name}.ipynb", as_version=4)
    (folder / "escape").mkdir()
    nbformat.write(_cheating_submission(release_nb, sources[name], _escape_cell(targets), "reference"),
                   folder / "escape" / f"{name}.ipynb")
    protected = sorted((REPO / "trashlab").rglob("*.py"))
    before = {p: p.read_bytes() for p in protected}
    try:
        results = grading.autograde(folder, root, jobs=JOBS)
    finally:
        changed = [p for p in protected if p.read_bytes() != before[p]]
        for p in changed:
            p.write_bytes(before[p])  # a sandbox that failed must not leave the checkout broken
        escaped = [t for w, t in targets.items() if w != "gradebook" and Path(t).exists()]
        for t in escaped:
            Path(t).unlink()
    import sqlite3

    with contextlib.closing(sqlite3.connect(root / "course" / "gradebook.db")) as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
    return {"root": root, "results": results, "scores": grading.scores(root), "expected": expected,
            "changed": changed, "escaped": escaped, "tables": tables, "escape": f"escape/{name}"}


def _automatic(nb) -> "dict[str, float]":
    return {gid: points for _, tests in exercises(nb) for gid, points in tests}


def test_cheats_earn_nothing_outside_the_kernel(cheated):
    """Each cheat (a patched reload, checks, helpers, builtins, sys.modules entries, a forged ✔ in place of the
    check's error, SystemExit, os._exit, frames, a rewritten check module, a sim.py forging the judge's verdict)
    scores 0 for the exercise it sits in under real nbgrader; the rest of the notebook scores as it would."""
    sources = source_notebooks()
    assert cheated["expected"], "no cheat was tried (TRASHLAB_GRADE_ONLY left out 02-04?)"
    for key, (answers, patched) in cheated["expected"].items():
        name = key.split("/")[1]
        got = cheated["scores"][key]
        tests = dict(exercises(sources[name]))
        automatic = _automatic(sources[name])
        if answers == "stub":
            wrong = {gid: got.get(gid) for gid in automatic if got.get(gid)}
            assert not wrong, f"{key}: with no answer written, the cheat scored {wrong} ({got})"
            continue
        lost = {gid for gid, _ in tests[patched]}
        for gid, points in automatic.items():  # the reference answers get full marks (tested above)
            expected = 0 if gid in lost else points
            assert got[gid] == expected, f"{key}: {gid} scored {got[gid]}, expected {expected} ({got})"
    judged = {f"{r['student']}/{r['assignment']}": r.get("judged", {}) for r in cheated["results"]}
    for key, (answers, patched) in cheated["expected"].items():
        if answers != "stub":
            name = key.split("/")[1]
            refused = [gid for gid, _ in dict(exercises(sources[name]))[patched] if not judged[key][gid]["passed"]]
            assert refused, f"{key}: the judge passed the patched exercise {patched}: {judged[key]}"


def test_sandbox_keeps_the_package_course_gradebook_and_home(cheated):
    """A submission that tries to write into the trashlab package, the course folder, the gradebook and the
    instructor's home is refused each time, and its right answers still get their full marks."""
    assert not cheated["changed"], f"a submission rewrote the package's files: {cheated['changed']}"
    assert not cheated["escaped"], f"a submission wrote outside its sandbox: {cheated['escaped']}"
    assert "escaped" not in cheated["tables"], "a submission wrote into course/gradebook.db"
    key = cheated["escape"]
    name = key.split("/")[1]
    full = sum(_automatic(source_notebooks()[name]).values())
    assert cheated["scores"][key]["score"] == full, f"{key}: the right answers scored {cheated['scores'][key]}, not {full}"
    nb = nbformat.read(cheated["root"] / "course" / "autograded" / "escape" / name / f"{name}.ipynb", as_version=4)
    printed = "".join(out.get("text", "") for c in nb.cells for out in c.get("outputs", []))
    for what in ("package", "course", "gradebook", "home"):
        assert f"refused {what}" in printed, f"the {what} write was not even tried, or not refused: {printed[-2000:]}"


@pytest.mark.quick
def test_autograde_without_a_sandbox_names_the_fix(tmp_path, capsys, monkeypatch):
    """No bubblewrap on PATH: one line naming the install and --no-sandbox, nothing graded."""
    from trashlab_instructor import sandbox

    monkeypatch.setenv("PATH", str(tmp_path))
    sandbox.problem.cache_clear()
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap.*--no-sandbox"):
            grading.autograde(tmp_path, REPO)
        assert grading.main(["autograde", str(tmp_path)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no `bwrap` on PATH" in err[0], err
    finally:
        sandbox.problem.cache_clear()
    assert not (REPO / "course" / "submitted").exists()


@pytest.mark.quick
def test_the_judge_gets_only_the_answer_and_the_instructors_cells():
    """The judge's job for a test cell: the instructor's test cell with its hidden tests, the notebook's imports
    and the values it names from plain cells, and only that exercise's answer (a program as a file)."""
    from trashlab_instructor import judge

    def cell(kind, source, **meta):
        return {"cell_type": kind, "source": source, "metadata": {"nbgrader": meta} if meta else {}}

    source = {"cells": [
        cell("code", "import nats\nbroker = make_broker()\nprint('walkthrough')"),
        cell("code", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", solution=True, grade_id="f"),
        cell("code", "import importlib\nm = importlib.import_module('x')\nawait m.check(f, broker)\n"
             "### BEGIN HIDDEN TESTS\nawait m.check(f, broker, 2)\n### END HIDDEN TESTS",
             grade=True, grade_id="f-check", points=2),
        cell("code", "%%writefile sim.py\nprint('sim')", solution=True, grade_id="sim"),
        cell("code", "await m.check_sim('sim.py')", grade=True, grade_id="sim-check", points=3)]}
    submitted = {"cells": [
        cell("code", "import os\nos.system('evil')  # a cell of the student's own: never judged"),
        cell("code", "def f():\n    return 2", solution=True, grade_id="f"),
        cell("code", "await m.check(f, broker)  # changed by the student: the source's is judged",
             grade=True, grade_id="f-check", points=2),
        cell("code", "%%writefile sim.py\nprint('mine')", solution=True, grade_id="sim")]}
    jobs = {j.test_id: j for j in judge.plan(source, submitted)}
    f, sim = jobs["f-check"], jobs["sim-check"]
    assert f.context == ["import nats", "broker = make_broker()"], f.context
    assert f.setup == ["import importlib", "m = importlib.import_module('x')"], f.setup
    assert f.check.count("await m.check(") == 2 and "HIDDEN" not in f.check, f.check
    assert f.answer == "def f():\n    return 2\n" and not f.files and f.points == 2
    assert sim.files == {"sim.py": "print('mine')"} and sim.answer == "" and "evil" not in repr(jobs)
    assert not f.files, "a program written after the exercise reached its judge"
