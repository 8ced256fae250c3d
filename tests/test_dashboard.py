"""LiveDashboard: renders headless, follows a running simulator, reuses one figure, cleans up."""

import asyncio
import gc
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import nbclient

from sessions import ipc_kernel_manager
import pytest
from matplotlib.figure import Figure
from nbformat.v4 import new_code_cell, new_notebook

import trashlab
from conftest import eventually, unique

ROOT = Path(__file__).resolve().parents[1]


def figures() -> int:
    """Live matplotlib Figure objects in this process (pyplot-managed or not)."""
    gc.collect()
    return sum(isinstance(o, Figure) for o in gc.get_objects())


def filled(rows: int = 500) -> trashlab.Collector:
    col = trashlab.Collector("nats://127.0.0.1:1")
    sim = trashlab.Simulator("nats://127.0.0.1:1", seed=3, cans=50)
    t = time.time() - rows / 100
    for i in range(rows):
        col.add(sim.reading(), received_at=t + i / 100)
    return col


@pytest.mark.parametrize("renderer", ["auto", "image"])
def test_renders_images_in_a_headless_notebook_run(renderer):
    name = unique("dash")
    nb = new_notebook(cells=[
        new_code_cell(f"import asyncio, trashlab\nbroker = trashlab.Broker({name!r}).start()\n"
                      "col = await trashlab.Collector(broker.url).start()\n"
                      "sim = await trashlab.Simulator(broker.url, interval=0.002, seed=1).start()\n"
                      "await col.wait_for(1, timeout=30)"),
        new_code_cell(f"dash = trashlab.LiveDashboard(col, refresh=0.2, renderer={renderer!r})\ndash"),
        new_code_cell("first = dash.counters()\n"
                      "for _ in range(600):  # wait (at most 30 s) until it counted more and refreshed twice\n"
                      "    if dash.counters()['received'] > first['received'] and dash.refreshes >= 2:\n"
                      "        break\n"
                      "    await asyncio.sleep(0.05)\n"
                      "import json; print(json.dumps([first, dash.counters(), dash.refreshes]))"),
        new_code_cell("dash.stop(); await sim.stop(); await col.stop(); broker.stop()\ndash.snapshot()"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.km = ipc_kernel_manager()
    client.execute()
    outputs = [cell.outputs for cell in nb.cells]
    assert not [o for cell in outputs for o in cell if o.output_type == "error"]
    dash_images = [o for o in outputs[1] if "image/png" in o.get("data", {})]
    assert len(dash_images) == 1, outputs[1]  # one figure, updated in place (here: to its final state by stop)
    first, last, refreshes = json.loads(outputs[2][0]["text"])
    assert last["received"] > first["received"] > 0 and last["cans"] >= first["cans"] > 0
    assert refreshes >= 2
    assert "image/png" in outputs[3][0]["data"]


async def test_counters_rise_while_a_simulator_runs(shared_broker):
    subject = unique("dash")
    col = await trashlab.Collector(shared_broker.url, subject).start()
    sim = await trashlab.Simulator(shared_broker.url, subject, interval=0.005, seed=2).start()
    dash = trashlab.LiveDashboard(col, refresh=0.1, renderer="image").start()
    try:
        seen = [(dash.counters()["received"], dash.counters()["cans"], dash.refreshes)]
        for _ in range(3):  # the counters and the picture keep moving
            await eventually(lambda: dash.counters()["received"] > seen[-1][0] and dash.refreshes > seen[-1][2],
                             "the dashboard counting more readings and refreshing again", seen=lambda: f"{seen}")
            seen.append((dash.counters()["received"], dash.counters()["cans"], dash.refreshes))
        await eventually(lambda: dash.counters()["cans"] > 1, "readings of a second can",
                         seen=lambda: f"{dash.counters()}")
        col.add(b"not json", subject)
        assert dash.counters()["rejected"] == 1
    finally:
        dash.stop()
        await sim.stop()
        await col.stop()
    assert not dash.running


@pytest.mark.parametrize("renderer", ["image", "widget"])
def test_one_figure_reused_and_closed_on_stop(renderer):
    col = filled()
    before_fig, before_plt = figures(), plt.get_fignums()
    dash = trashlab.LiveDashboard(col, renderer=renderer)
    assert figures() == before_fig + 1
    for i in range(15):
        col.add(trashlab.message.encode(str(i), 99.0))
        dash.refresh()
        dash._png()
    assert figures() == before_fig + 1 and plt.get_fignums() == before_plt
    assert dash.counters()["received"] == 515
    dash.stop()
    assert dash.closed and figures() == before_fig
    assert dash.snapshot().data.startswith(b"\x89PNG")  # the last picture is kept


def test_fullest_cans_and_threshold_follow_the_collector():
    col = trashlab.Collector("nats://127.0.0.1:1")
    long_ago = time.time() - 30  # readings from a quiet past: the last whole second's rate is 0 at any speed
    for can, level in [("1", 10.0), ("2", 85.0), ("3", 99.5), ("2", 50.0)]:
        col.add(trashlab.message.encode(can, level), received_at=long_ago)
    dash = trashlab.LiveDashboard(col, top=3, threshold=80, renderer="image")
    dash.refresh()
    assert [t.get_text() for t in dash._top_labels] == ["can 3: 99.5 %", "can 2: 50.0 %", "can 1: 10.0 %"]
    assert [round(b.get_width(), 1) for b in dash._top_bars] == [99.5, 50.0, 10.0]
    assert dash.counters() == {"received": 4, "rejected": 0, "cans": 3, "rate": 0, "full": 1}
    assert "at or above 80 %: 1 cans" in dash._title.get_text()
    dash.stop()


async def test_pause_resume_and_stop():
    col = filled()
    dash = trashlab.LiveDashboard(col, refresh=0.05, renderer="image").start()
    await eventually(lambda: dash.refreshes > 0, "a first refresh")
    dash.pause()
    assert dash.paused and "(paused)" in dash._title.get_text()
    n = dash.refreshes
    await asyncio.sleep(0.3)  # not synchronisation: six refresh periods in which a paused dashboard must not draw
    assert dash.refreshes == n and dash.running, f"{dash.refreshes - n} refreshes while paused"
    dash.resume()
    await eventually(lambda: dash.refreshes > n, "a refresh after resume()")
    dash.stop()
    await asyncio.sleep(0)
    assert not dash.running and dash.closed
    with pytest.raises(trashlab.TrashlabError, match="create a new one"):
        dash.start()


async def test_a_new_dashboard_on_the_same_collector_replaces_the_old_one():
    col = filled()
    old = trashlab.LiveDashboard(col, refresh=0.05, renderer="image").start()
    new = trashlab.LiveDashboard(col, refresh=0.05, renderer="image").start()
    await eventually(lambda: old.closed and not old.running, "the old dashboard closing")
    assert new.running
    new.stop()


def test_buttons_pause_and_stop():
    col = filled()
    dash = trashlab.LiveDashboard(col, renderer="image")
    box = dash._make_controls()
    dash._controls["pause"].value = True
    assert dash.paused and dash._controls["pause"].description == "Resume"
    dash._controls["pause"].value = False
    assert not dash.paused
    dash._controls["stop"].click()
    assert dash.closed and dash._controls is None and box.comm is None


@pytest.mark.parametrize("kwargs, words", [
    (dict(refresh=0), "refresh"), (dict(top=0), "top"), (dict(threshold=120), "threshold"),
    (dict(window=5), "window"), (dict(renderer="svg"), "renderer"),
])
def test_bad_arguments_name_the_fix(kwargs, words):
    with pytest.raises(trashlab.errors.BadArgument, match=words):
        trashlab.LiveDashboard(filled(10), **kwargs)


def test_needs_a_collector_and_a_running_loop():
    with pytest.raises(trashlab.errors.BadArgument, match="Collector"):
        trashlab.LiveDashboard("nats://127.0.0.1:4222")
    dash = trashlab.LiveDashboard(filled(10), renderer="image")
    with pytest.raises(trashlab.TrashlabError, match="notebook cell"):
        dash.start()
    dash.stop()
