"""The live checks of notebooks 05-08 against real nats-servers: the example solution passes, each
realistic mistake fails with one ✘ line that names the fix, and nothing the check starts outlives it.

These checks judge with the truth of their own broker (what they published, ``/connz`` of the student's
connection), never with what the student's code reports about itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time

import nats
import pytest

from trashlab import checks
from trashlab.errors import CheckFailed

from conftest import recorded_alive
from test_grading import KV_PY, READ_BATCH


async def fails(check, *args, **kwargs) -> str:
    """The ✘ line a failing live check shows."""
    with pytest.raises(CheckFailed) as info:
        await check(*args, **kwargs)
    text = str(info.value)
    assert text.startswith("✘ ") and "\n" not in text, text
    return text


@pytest.fixture(autouse=True)
def nothing_left_running():
    """What a check starts (recorded in this session's state folder) is stopped before it returns."""
    yield
    assert not recorded_alive(), f"a check left processes running: {recorded_alive()}"


# ----- 05: a client that records its outage -------------------------------------------------------
def recorder(*, down="time", up="time", **options):
    async def connect_recording(servers, events):
        async def disconnected():
            events.append(("disconnected", time.time() if down == "time" else down))

        async def reconnected():
            events.append(("reconnected", time.time() if up == "time" else up))
        cbs = {}
        if down is not None:
            cbs["disconnected_cb"] = disconnected
        if up is not None:
            cbs["reconnected_cb"] = reconnected
        return await nats.connect(servers=servers, **cbs, **options)
    return connect_recording


@pytest.mark.parametrize("give", ["all", "one"])
async def test_outage_recorder_passes_against_the_servers_truth(give, capsys):
    await checks.check_outage(recorder(), give)
    out = capsys.readouterr()
    assert "✔ your client recorded an outage of" in out.out and "after the kill" in out.out
    assert out.err == "", "nats-py's error tracebacks while the node was down must not reach stderr"


async def test_outage_recorder_mistakes():
    assert "coroutine that nobody awaited" in await fails(
        checks.check_outage, lambda servers, events: _no_await(servers))
    assert "not clock times" in await fails(checks.check_outage, recorder(down=1.0, up=2.0))
    assert "not clock times" in await fails(checks.check_outage, recorder(down=time.monotonic()))
    assert "reconnected_cb" in await fails(checks.check_outage, recorder(up=None))
    assert "did not come back" in await fails(checks.check_outage, recorder(allow_reconnect=False))


async def _no_await(servers):
    return nats.connect(servers=servers)


# ----- 05b: a publish the stream acknowledges ------------------------------------------------------
async def test_publish_acked_against_the_stream(capsys):
    async def acked(js, subject, payload):
        return (await js.publish(subject, payload)).seq

    async def the_ack(js, subject, payload):
        return await js.publish(subject, payload)

    async def counted_from_one(js, subject, payload):
        await js.publish(subject, payload)
        counted_from_one.n = getattr(counted_from_one, "n", 0) + 1
        return counted_from_one.n

    async def core_only(js, subject, payload):
        await js._nc.publish(subject, payload)
        return 0

    await checks.check_publish_acked(acked)
    assert "match the stream" in capsys.readouterr().out
    assert "return its .seq" in await fails(checks.check_publish_acked, the_ack)
    assert "the stream holds" in await fails(checks.check_publish_acked, counted_from_one)
    assert "holds nothing under 0" in await fails(checks.check_publish_acked, core_only)



# ----- 05b by hand: stream, publish with a message id, durable consumer, key-value bucket ---------------
async def make_stream(js, name, subjects):
    await js.add_stream(name=name, subjects=subjects)


async def publish_once(js, subject, payload, msg_id):
    return (await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})).seq


def defined(source: str) -> dict:
    """The names an answer cell's source defines (the reference answers live in test_grading)."""
    names: dict = {}
    exec(compile(source, "answer cell", "exec"), names)
    return names


def reader(durable=True, ack=True, fetch=None):
    """The reference read_batch of 05b, or one of its mistakes."""
    source = READ_BATCH
    if not durable:
        source = source.replace("durable=durable)", ")")
    if not ack:
        source = source.replace("await msg.ack()", "pass")
    if fetch:
        source = source.replace("psub.fetch(batch,", f"psub.fetch({fetch},")
    return defined(source)["read_batch"]


KV = defined(KV_PY)
open_levels, save_level, load_level, follow_levels = (KV[n] for n in ("open_levels", "save_level", "load_level",
                                                                       "follow_levels"))


async def test_stream_and_publish_with_message_ids_against_the_servers_state(capsys):
    async def no_subjects(js, name, subjects):
        await js.add_stream(name=name)

    async def no_id(js, subject, payload, msg_id):
        return (await js.publish(subject, payload)).seq

    async def own_count(js, subject, payload, msg_id):
        await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
        own_count.n = getattr(own_count, "n", 0) + 1
        return own_count.n

    await checks.check_make_stream(make_stream, subjects=["trash.north.level", "trash.*.alarm"])
    await checks.check_publish_once(publish_once)
    out = capsys.readouterr().out
    assert "and it stored a reading published on each" in out and "2 retries acknowledged as duplicates" in out, out
    assert "expected exactly" in await fails(checks.check_make_stream, no_subjects)
    assert "Nats-Msg-Id None" in await fails(checks.check_publish_once, no_id)
    assert "but the stream holds" in await fails(checks.check_publish_once, own_count)


async def test_durable_reader_against_the_consumers_state(capsys):
    await checks.check_read_acked(reader())
    await checks.check_replay(reader())
    out = capsys.readouterr().out
    assert "with all 3 acknowledged" in out and "went on at reading #3" in out, out
    assert "still waits for the acknowledgement of 3" in await fails(checks.check_read_acked, reader(ack=False))
    assert "an ephemeral consumer" in await fails(checks.check_read_acked, reader(durable=False))
    assert "expected the 3 stored next" in await fails(checks.check_read_acked, reader(fetch=10))
    assert "still waits for the acknowledgement" in await fails(checks.check_replay, reader(ack=False))


async def test_levels_in_a_bucket_through_a_restart_and_a_watch(capsys):
    async def wiped(js, bucket):
        with contextlib.suppress(Exception):
            await js.delete_key_value(bucket)
        return await js.create_key_value(bucket=bucket)

    async def as_json(kv, can_id, level):
        await kv.put(can_id, json.dumps({"level": level}).encode())

    async def once(kv, levels):
        for key in await kv.keys():
            levels[key] = float((await kv.get(key)).value)

    await checks.check_levels_kept(open_levels, save_level, load_level)
    await checks.check_follow_levels(open_levels, follow_levels)
    out = capsys.readouterr().out
    assert "None for a can never saved" in out and "then 4 puts by another client" in out, out
    assert "after a restart" in await fails(checks.check_levels_kept, wiped, save_level, load_level)
    assert "as text" in await fails(checks.check_levels_kept, open_levels, as_json, load_level)
    assert "keep watching" in await fails(checks.check_follow_levels, open_levels, once)


# ----- 06: sim.py and rep.py stop on SIGTERM, the git step --------------------------------------------
def _program(tmp_path, cell: str, name: str) -> str:
    """Write a %%writefile cell's program into lab5/ under tmp_path; the path the checks are given."""
    (tmp_path / "lab5").mkdir(exist_ok=True)
    (tmp_path / "lab5" / name).write_text(cell.split("\n", 1)[1])
    return f"lab5/{name}"


async def test_rep_drain_passes_drain_and_fails_each_fake(tmp_path, monkeypatch, capsys):
    """The reference drains; close(), sleep-then-close, no handler, SIGTERM ignored and sleep-then-drain each fail
    with the ✘ line that names what they did (the same programs lose their points under nbgrader, test_grading)."""
    from test_grading import REP_DRAIN_PY, WRONG

    monkeypatch.chdir(tmp_path)
    path = _program(tmp_path, REP_DRAIN_PY, "rep.py")
    await checks.check_rep_drain(path, work=0.05, readings=30)
    out = capsys.readouterr().out
    assert "on SIGTERM it unsubscribed first" in out and "exited 0" in out, out
    # sleeping 1 s then closing is caught either way: still subscribed after 1 s of readings, or readings dropped
    expected = [("without unsubscribing first",), ("without unsubscribing first", "it keeps receiving"),
                ("SIGTERM ended it at once (exit code -15)",), ("it keeps receiving",),
                ("kept receiving", "it keeps receiving")]
    for cell, why in zip(WRONG["rep-drain"], expected, strict=True):
        path = _program(tmp_path, cell, "rep.py")
        said = await fails(checks.check_rep_drain, path, work=0.05, readings=30)
        assert any(w in said for w in why), (cell.splitlines()[-8:], said)
    todo = _program(tmp_path, REP_DRAIN_PY.replace("asyncio.run(main())", "raise NotImplementedError()"), "rep.py")
    assert "rep.py is not written yet" in await fails(checks.check_rep_drain, todo)


async def test_sim_stop_passes_a_drained_stop_and_fails_an_abrupt_one(tmp_path, monkeypatch, capsys):
    from test_grading import SIM_STOP_PY, WRONG

    monkeypatch.chdir(tmp_path)
    await checks.check_sim_stop(_program(tmp_path, SIM_STOP_PY, "sim.py"), interval=0.05)
    assert "it ended with exit code 0" in capsys.readouterr().out
    no_handler, loop_stopped = WRONG["sim-stop"]
    assert "exit code -15" in await fails(checks.check_sim_stop, _program(tmp_path, no_handler, "sim.py"))
    assert "crashed (exit code 1)" in await fails(checks.check_sim_stop, _program(tmp_path, loop_stopped, "sim.py"))


def _git(*args: str, cwd) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def commit_right(repo, message):
    subprocess.run(["git", "-C", repo, "add", "sim.py", "rep.py"], check=True, capture_output=True)
    subprocess.run(["git", "-C", repo, "commit", "--quiet", "-m", message], check=True, capture_output=True)


def commit_add_only(repo, message):
    subprocess.run(["git", "-C", repo, "add", "sim.py", "rep.py"], check=True, capture_output=True)


def commit_sim_only(repo, message):
    subprocess.run(["git", "-C", repo, "add", "sim.py"], check=True, capture_output=True)
    subprocess.run(["git", "-C", repo, "commit", "--quiet", "-m", message], check=True, capture_output=True)


def commit_in_lab5(repo, message):
    commit_right("lab5", message)


async def test_git_commit_is_judged_by_git_itself(tmp_path, monkeypatch, capsys):
    """The student's commit(repo, message) is called with a message drawn at run time, then git itself is asked:
    no folder, a folder inside another repository, no commit, a file left out, a hard-coded folder: each one ✘ line
    naming the fix; nothing to commit calls nothing; git missing from PATH: one line saying to install it."""
    monkeypatch.chdir(tmp_path)
    check = checks.check_git_commit
    assert "there is no folder lab5" in await fails(check, commit_right, "lab5")
    (tmp_path / "lab5").mkdir()
    for name in ("sim.py", "rep.py"):
        (tmp_path / "lab5" / name).write_text(f"print('{name}')\n")
    _git("init", "--quiet", ".", cwd=tmp_path)  # a repository around lab5 is not lab5's own
    assert "is not a git repository of its own" in await fails(check, commit_right, "lab5")
    _git("init", "--quiet", "lab5", cwd=tmp_path)
    for key, value in (("user.name", "t"), ("user.email", "t@example.invalid")):
        _git("config", key, value, cwd=tmp_path / "lab5")
    assert "has no rep.py" in await fails(check, commit_sim_only, "lab5")
    assert "with the message given" in await fails(check, commit_add_only, "lab5")
    await check(commit_right, "lab5")
    assert "holds sim.py and rep.py exactly as they are on disk" in capsys.readouterr().out
    await check(commit_add_only, "lab5")  # nothing to commit: the function is not called, HEAD is judged
    (tmp_path / "lab5" / "rep.py").write_text("print('changed')\n")
    await check(commit_right, "lab5")  # changed: committed again
    await check(commit_right, "lab5", scratch=True)
    assert "a copy the check made of lab5" in capsys.readouterr().out
    assert "raised CalledProcessError" in await fails(check, commit_in_lab5, "lab5", scratch=True)
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert "git is not installed on this machine: install it" in await fails(check, commit_right, "lab5")


async def test_deprecated_shut_down_check_warns_with_its_replacement():
    async def drain(nc):
        await nc.drain()

    with pytest.warns(FutureWarning, match="check_rep_drain"):
        await checks.check_shut_down(drain)


# ----- 07: the rate arriving on a subject --------------------------------------------------------------
# The answers below sleep as a student's answer does (counting for ``seconds``): the behaviour under test,
# not synchronisation.
async def measure(nc, subject, seconds):
    count = 0

    async def cb(msg):
        nonlocal count
        count += 1
    sub = await nc.subscribe(subject, cb=cb)
    await asyncio.sleep(seconds)
    await sub.unsubscribe()
    return count / seconds


@pytest.mark.filterwarnings("ignore:coroutine 'sleep' was never awaited:RuntimeWarning")  # a wrong answer below
async def test_rate_against_what_the_check_published(capsys):
    await checks.check_rate(measure, seconds=1.0)
    await checks.check_rate(measure, seconds=2.0)
    assert capsys.readouterr().out.count("✔") == 2

    async def count_only(nc, subject, seconds):
        return await measure(nc, subject, seconds) * seconds

    async def wrong_subject(nc, subject, seconds):
        return await measure(nc, "trash.level", seconds)

    async def constant(nc, subject, seconds):
        await asyncio.sleep(seconds)
        return 40.0

    async def subscribed_constant(nc, subject, seconds):
        await nc.subscribe(subject)
        await asyncio.sleep(seconds)
        return 40.0

    async def no_await(nc, subject, seconds):
        await nc.subscribe(subject)
        asyncio.sleep(seconds)
        return 0.0

    async def off_by_one(nc, subject, seconds):
        return await measure(nc, subject, seconds) + 1 / seconds

    assert "that is the count" in await fails(checks.check_rate, count_only, seconds=2.0)
    assert "one message off" in await fails(checks.check_rate, off_by_one)
    assert "saw no subscription" in await fails(checks.check_rate, wrong_subject)
    assert "saw no subscription" in await fails(checks.check_rate, constant, seconds=2.0)
    assert "expected 20" in await fails(checks.check_rate, subscribed_constant, seconds=2.0)
    assert "before its 1 s window ended" in await fails(checks.check_rate, no_await)


# ----- 08: a member of a queue group ---------------------------------------------------------------------
def joiner(queue_override="given", data=True, subject_override=None):
    async def join(nc, subject, queue, received):
        async def cb(msg):
            received.append(msg.data if data else msg)
        q = queue if queue_override == "given" else queue_override
        kwargs = {"queue": q} if q else {}
        return await nc.subscribe(subject_override or subject, cb=cb, **kwargs)
    return join


async def test_queue_member_read_from_the_servers_connz(capsys):
    await checks.check_queue_member(joiner())
    await checks.check_queue_member(joiner(), queue="workers-2", published=90)
    assert capsys.readouterr().out.count("each reading exactly once") == 2
    assert "in no queue group" in await fails(checks.check_queue_member, joiner(queue_override=None))
    assert "expected the group it was given" in await fails(checks.check_queue_member,
                                                             joiner(queue_override="reporters"), queue="other")
    assert "expected the subject" in await fails(checks.check_queue_member, joiner(subject_override="trash.level"))
    assert "append msg.data" in await fails(checks.check_queue_member, joiner(data=False))


async def test_a_log_line_on_stderr_during_a_check_goes_to_stdout(capsys):
    """A trashlab reconnect line (stderr) while a check runs must not reach stderr: nbgrader zeroes such a cell."""
    async def noisy(nc, subject, queue, received):
        print("trashlab [rep]: reconnected to 127.0.0.1:4222", file=sys.stderr)
        logging.getLogger("trashlab").warning("trashlab [rep]: a log line during the check")
        return await joiner()(nc, subject, queue, received)

    await checks.check_queue_member(noisy)
    out = capsys.readouterr()
    assert out.err == "" and "reconnected to 127.0.0.1:4222" in out.out and "a log line during the check" in out.out


# ----- 08: copies of the student's rep.py as one queue group ----------------------------------------------
async def test_rep_queue_copies_judged_by_the_servers_connz_and_every_reply(tmp_path, monkeypatch, capsys):
    """N copies of rep.py (N, group and names drawn by the check): the right program passes both checks; a
    mistake in the group fails only the group check, a mistake in the replies only the answers check."""
    from test_grading import REP_QUEUE_PY

    monkeypatch.chdir(tmp_path)
    right = REP_QUEUE_PY.split("\n", 1)[1]

    def write(text: str) -> str:
        (tmp_path / "rep.py").write_text(text)
        return "rep.py"

    write(right)
    await checks.check_rep_queue("rep.py")
    await checks.check_rep_queue_answers("rep.py", copies=3)
    out = capsys.readouterr().out
    assert "each got exactly one reply" in out and "each naming the copy that answered" in out, out
    # the other right design: every copy takes every reading (fan-out), the requests stay in the group
    write(right.replace('"trash-level", queue=group, ', '"trash-level", '))
    await checks.check_rep_queue("rep.py", copies=2)
    await checks.check_rep_queue_answers("rep.py", copies=2)

    plain = write(right.replace("queue=group, ", ""))
    why = await fails(checks.check_rep_queue, plain, copies=3)
    assert "in no queue group" in why and "one request got 3 replies" in why, why
    await checks.check_rep_queue_answers(plain, copies=2)  # the replies themselves are right
    fixed = write(right.replace("queue=group", "queue='reporters'"))
    why = await fails(checks.check_rep_queue, fixed)
    assert "in queue group 'reporters'" in why and "sys.argv[1]" in why, why
    assert "in queue group 'reporters'" in await fails(checks.check_rep_queue, fixed, group="reporters-2")
    constant = write(right.replace('"level": levels[can_id], ', '"level": 50.0, '))
    await checks.check_rep_queue(constant, copies=2)
    assert "says level 50.0" in await fails(checks.check_rep_queue_answers, constant)
    named = write(right.replace('"copy": copy}\n        else', '"copy": "rep-1"}\n        else'))
    assert "says copy 'rep-1'" in await fails(checks.check_rep_queue_answers, named, copies=2)
    silent = write(right.replace('            answer = {"error": f"unknown can {can_id}", "copy": copy}\n',
                                 "            return\n"))
    assert "got no reply" in await fails(checks.check_rep_queue, silent, copies=2)
    crash = write(right.replace("group, copy = sys.argv[1], sys.argv[2]", "group, copy = sys.argv[1], sys.argv[3]"))
    why = await fails(checks.check_rep_queue, crash, copies=2)
    assert "crashed" in why and "IndexError" in why, why
    todo = write(right.replace("asyncio.run(main())", "raise NotImplementedError()"))
    assert "rep.py is not written yet" in await fails(checks.check_rep_queue_answers, todo, copies=2)
