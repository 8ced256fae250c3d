"""Async in scripts and in notebooks: trashlab.run, top-level await, one-line errors in Jupyter."""

import subprocess
import sys
import textwrap

import nbformat
from nbclient import NotebookClient

from sessions import ipc_kernel_manager

SCRIPT = textwrap.dedent("""
    import asyncio, trashlab

    async def start():
        broker = trashlab.Broker("script-broker").start()
        col = await trashlab.Collector(broker.url).start()
        sim = await trashlab.Simulator(broker.url, interval=0.01).start()
        return col, sim

    col, sim = trashlab.run(start())            # a second run() call: the simulator keeps going
    trashlab.run(asyncio.sleep(0.5))  # the behaviour under test: between run() calls the simulator goes on
    n = trashlab.run(col.wait_for(20, timeout=30))
    trashlab.run(sim.stop()); trashlab.run(col.stop())
    print("received", n)
""")


def test_run_in_a_script_keeps_background_tasks_between_calls():
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split()[-1]) >= 20, f"received fewer than 20 in 30 s: {res.stdout[-500:]} {res.stderr[-1000:]}"


def _execute(cells):
    nb = nbformat.v4.new_notebook()
    for src in cells:
        cell = nbformat.v4.new_code_cell(src)
        if "# raises" in src:
            cell.metadata["tags"] = ["raises-exception"]
        nb.cells.append(cell)
    client = NotebookClient(nb, timeout=60, kernel_name="python3")
    client.km = ipc_kernel_manager()
    client.execute()
    return nb


def test_in_a_notebook_await_and_run_both_work_and_errors_are_one_line():
    nb = _execute([
        "import asyncio, trashlab\nbroker = trashlab.Broker('nb-broker').start()",
        "col = await trashlab.Collector(broker.url).start()\n"
        "sim = await trashlab.Simulator(broker.url, interval=0.01).start()\n"
        "await col.wait_for(11, timeout=30)\nprint(col.count > 10)",
        "async def script_style():\n    return await trashlab.query_levels(broker.url, timeout=0.3)\n"
        "# raises\ntrashlab.run(script_style())",
        "# raises: a clear one-line error, not a traceback\ntrashlab.Broker('other', port=broker.port).start()",
        "print(trashlab.run(asyncio.sleep(0, result='ok')))",
        "await sim.stop(); await col.stop(); broker.stop()",
    ])
    outs = [c.outputs for c in nb.cells]
    assert outs[1][0]["text"].strip() == "True"
    err = outs[2][0]
    assert err["ename"] == "ServiceUnavailable" and len(err["traceback"]) == 1
    err = outs[3][0]
    assert err["ename"] == "PortInUse" and len(err["traceback"]) == 1
    assert "already in use" in err["traceback"][0]
    assert outs[4][0]["text"].strip() == "ok"
