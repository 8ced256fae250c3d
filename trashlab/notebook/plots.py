"""Small pictures for the notebooks: level distributions, latest levels, counts side by side.

Every function returns a matplotlib Figure and leaves no open figure behind (no duplicate plots at
the end of a cell). :func:`live_histogram` redraws one figure in place while messages arrive.
"""

from __future__ import annotations

import asyncio
import time
from typing import Mapping, Optional

import matplotlib

from ..services.collector import Collector


def _figure(size=(6, 3)):
    import matplotlib.pyplot as plt

    # not interactive while the figure is made (ipympl would display it at once), by the rcParam alone:
    # plt.ioff()/ion() also (un)register IPython's post_execute hook, and an Interrupt landing between the
    # two left it half-registered, so every later plot raised ValueError
    was = matplotlib.is_interactive()
    matplotlib.interactive(False)
    try:
        fig, ax = plt.subplots(figsize=size)
    finally:
        matplotlib.interactive(was)
    plt.close(fig)  # we display it ourselves; the inline backend must not show it again
    return fig, ax


def _draw_histogram(ax, levels, title: str) -> None:
    ax.clear()
    ax.hist(list(levels), bins=10, range=(0, 100), color="#4c72b0", edgecolor="white")
    ax.set_xlim(0, 100)
    ax.set_xlabel("level (% full)")
    ax.set_ylabel("readings")
    ax.set_title(title)


def level_histogram(levels, title: str = "trash levels") -> "matplotlib.figure.Figure":
    """A histogram of levels (a sequence, a Series or a Collector's readings) in ten 10 % bins."""
    if isinstance(levels, Collector):
        levels = levels.frame()["level"]
    fig, ax = _figure()
    _draw_histogram(ax, levels, f"{title} ({len(levels)} readings)")
    fig.tight_layout()
    return fig


async def live_histogram(collector: Collector, seconds: float = 3.0, every: float = 0.5,
                         title: str = "trash levels arriving") -> None:
    """Redraw the collector's level histogram every ``every`` s for ``seconds`` s, in place, while it collects.

    Returns nothing, so the cell shows the one live picture (not a second copy at the end).
    """
    from IPython.display import display

    fig, ax = _figure()
    handle = display(fig, display_id=True)
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        levels = collector.frame()["level"]
        _draw_histogram(ax, levels, f"{title}: {len(levels)} readings"
                                    + (f", {left:.1f} s to go" if left > 0 else ""))
        fig.tight_layout()
        if handle is not None:
            handle.update(fig)
        if left <= 0:
            return None
        await asyncio.sleep(min(every, left))


def levels_bar(frame, title: str = "latest level per can", limit: int = 30) -> "matplotlib.figure.Figure":
    """Bars of the latest level per can (a ``query_levels()`` / ``Collector.latest()`` frame), fullest first."""
    top = frame.sort_values("level", ascending=False).head(limit)
    fig, ax = _figure((7, 3))
    colors = ["#c44e52" if v >= 80 else "#4c72b0" for v in top["level"]]
    ax.bar(top["can_id"].astype(str), top["level"], color=colors)
    ax.set_ylim(0, 100)
    ax.set_ylabel("level (% full)")
    ax.set_xlabel("can id")
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    shown = f"{len(top)} fullest of {len(frame)} cans" if len(frame) > limit else f"{len(frame)} cans"
    ax.set_title(f"{title} ({shown}; red: 80 % or more)")
    fig.tight_layout()
    return fig


def counts_bar(counts: Mapping[str, float], title: str, ylabel: str = "messages",
               expected: Optional[float] = None) -> "matplotlib.figure.Figure":
    """Bars for a few named counts (per simulator, per subscriber ...), with an optional reference line."""
    counts = dict(counts)  # a dict or a pandas Series
    fig, ax = _figure((6, 3))
    ax.bar([str(k) for k in counts], list(counts.values()), color="#55a868")
    if expected is not None:
        ax.axhline(expected, color="#333333", linestyle="--", linewidth=1, label=f"{expected:g}")
        ax.legend(loc="lower right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig
