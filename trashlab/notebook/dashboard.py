"""A live dashboard for a :class:`~trashlab.Collector` in a notebook cell.

``trashlab.LiveDashboard(col)`` as the last line of a cell shows, updated in place every ``refresh``
seconds by a task on the kernel's event loop: how full the cans are (a histogram of the latest level
per can and one of every reading), the fullest cans against a threshold line, the message rate over
the last minutes, and counters (received, rejected, distinct cans), with pause/resume and stop buttons.

One matplotlib figure is built once and only its artists change (bar heights, line data, texts), so
nothing piles up. It reads the collector's running aggregates (fixed histogram bins, the latest level
per can, a per-second rate ring buffer) and never its rows: a refresh costs the same at 1k or 1M rows.

Renderers: ``"widget"`` (ipympl: the figure is a widget redrawn with ``draw_idle``, smooth in
JupyterLab; a headless run still stores a PNG of it) or ``"image"`` (a PNG replaced in place with
``update_display``; works anywhere IPython displays images). ``"auto"`` picks ipympl when installed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._live import LiveView
from .._compat import ipympl_canvas, png
from ..services.collector import Collector
from ..errors import BadArgument, TrashlabError

log = logging.getLogger("trashlab")

_RENDERERS = ("auto", "widget", "image")
_FULL = "#c0392b"
_OK = "#4a90c2"


def _nice_limit(value: float, current: float) -> float:
    """A y-limit from 1, 2, 5 x 10^k that only changes when ``value`` outgrows it or falls far below it."""
    if 0 < value <= current and value * 5 > current:
        return current  # keep it: tick labels (the costly part of a draw) stay the same
    limit = 10.0
    while limit < value * 1.1:
        for step in (2.0, 2.5, 2.0):
            limit *= step
            if limit >= value * 1.1:
                break
    return limit


class _TextStamps:
    """Short texts rendered once and pasted as pixels afterwards: glyphs are the costliest part of a frame.

    A label is stamped in two pieces (``"can 135:"`` and ``" 97.3 %"``) so that a few thousand
    cached pieces cover every label a dashboard shows; both share one baseline.
    """

    _shared: dict = {}

    def __init__(self, figure: Figure, fontsize: float) -> None:
        from matplotlib.backends.backend_agg import RendererAgg
        from matplotlib.text import Text
        from matplotlib.transforms import IdentityTransform

        height = round(fontsize * 2.2 * figure.dpi / 72)
        self._renderer = RendererAgg(round(3 * figure.dpi), height, figure.dpi)  # transparent: stamps go over bars
        self._text = Text(2, round(height * 0.3), "", fontsize=fontsize, va="baseline", transform=IdentityTransform())
        self._text.set_figure(figure)
        # shared by every dashboard with this font size and resolution: a re-run cell starts warm
        self._pieces: dict = _TextStamps._shared.setdefault((fontsize, figure.dpi), {})

    def piece(self, text: str) -> Any:
        """RGBA pixels of ``text``, starting 2 px left of where the glyphs start."""
        image = self._pieces.get(text)
        if image is None:
            import numpy as np

            if len(self._pieces) > 4096:
                self._pieces.clear()
            self._renderer.clear()
            self._text.set_text(text)
            self._text.draw(self._renderer)
            rgba = np.asarray(self._renderer.buffer_rgba())
            used = np.flatnonzero(rgba[..., 3].any(axis=0))
            # rows bottom first, as the Agg renderer's draw_image takes them
            image = self._pieces[text] = rgba[::-1, :used[-1] + 2 if len(used) else 1].copy()
        return image

    def paste(self, renderer: Any, texts: list, x: float, y: float) -> None:
        """Draw the pieces one after another from display point (x, y), vertically centred on y."""
        gc = renderer.new_gc()
        for text in texts:
            image = self.piece(text)
            renderer.draw_image(gc, round(x) - 2, round(y - image.shape[0] / 2), image)
            x += image.shape[1] - 2
        gc.restore()


def _one_artist(ax: Any, bars: Any) -> Any:
    """One collection drawing ``bars`` (a BarContainer, kept as the model and hidden): one draw call
    instead of one per bar, which was most of a refresh's drawing."""
    from matplotlib.collections import PolyCollection

    first = bars[0]
    collection = PolyCollection([], edgecolors=first.get_edgecolor(), linewidths=first.get_linewidth(),
                                zorder=first.get_zorder(), snap=True)
    ax.add_collection(collection, autolim=False)
    bars.collection = collection
    for bar in bars:
        bar.set_visible(False)
    _copy_bars(bars)
    return collection


def _copy_bars(bars: Any) -> None:
    """Give the collection the bars' current rectangles and colours."""
    verts = []
    for bar in bars:
        x, y, w, h = bar.get_x(), bar.get_y(), bar.get_width(), bar.get_height()
        verts.append(((x, y), (x, y + h), (x + w, y + h), (x + w, y)))
    bars.collection.set_verts(verts)
    bars.collection.set_facecolors([bar.get_facecolor() for bar in bars])


def _ipympl_available() -> bool:
    try:
        import ipympl.backend_nbagg  # noqa: F401
    except Exception:  # blind: whatever keeps ipympl from loading, the dashboard draws without it
        return False
    return True


class LiveDashboard(LiveView):
    """Live histograms, fullest cans, rate and counters of a Collector; display it in a notebook cell."""

    _noun = "dashboard"
    _again = "trashlab.LiveDashboard(col)"

    def __init__(self, collector: Collector, refresh: float = 0.5, *, top: int = 10, threshold: float = 80.0,
                 window: int = 120, renderer: str = "auto", dpi: int = 72) -> None:
        if not isinstance(collector, Collector):
            raise BadArgument(f"LiveDashboard needs a trashlab.Collector, got {type(collector).__name__}: "
                              "create one with `col = await trashlab.Collector(url).start()`")
        if not isinstance(refresh, (int, float)) or not refresh > 0:
            raise BadArgument(f"refresh={refresh!r} must be a positive number of seconds, e.g. 0.5")
        if not isinstance(top, int) or not 1 <= top <= 50:
            raise BadArgument(f"top={top!r} must be a whole number from 1 to 50, e.g. 10")
        if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 100:
            raise BadArgument(f"threshold={threshold!r} must be a level from 0 to 100 %, e.g. 80")
        if not isinstance(window, int) or not 10 <= window <= 600:
            raise BadArgument(f"window={window!r} must be 10 to 600 seconds of rate history, e.g. 120")
        if renderer not in _RENDERERS:
            raise BadArgument(f"renderer={renderer!r} is not one of {', '.join(_RENDERERS)}")
        if renderer == "auto":
            renderer = "widget" if _ipympl_available() else "image"
        elif renderer == "widget" and not _ipympl_available():
            raise TrashlabError("renderer='widget' needs ipympl: run `pip install ipympl` (or use renderer='image')")
        self.collector = collector
        self.refresh_interval = float(refresh)
        self.top = top
        self.threshold = float(threshold)
        self.window = window
        self.renderer = renderer
        self.refreshes = 0
        self.last_refresh_seconds = 0.0
        self._handle: Any = None
        self._controls: Any = None
        self._last_png = b""
        self._build_figure(dpi)

    # ----- the figure, built once ----------------------------------------------------------
    def _build_figure(self, dpi: int) -> None:
        fig = Figure(figsize=(10, 6.2), dpi=dpi, layout="constrained")
        if self.renderer == "widget":
            self._canvas, self._manager = ipympl_canvas(fig)
        else:
            self._canvas = FigureCanvasAgg(fig)
            self._manager = None
        self.figure = fig
        ax_latest, ax_all = fig.add_subplot(2, 2, 1), fig.add_subplot(2, 2, 2)
        ax_top, ax_rate = fig.add_subplot(2, 2, 3), fig.add_subplot(2, 2, 4)
        edges, counts = self.collector.histogram()
        width = edges[1] - edges[0]
        self._hist = {}
        dynamic: list = []
        for key, ax, title in ((True, ax_latest, "latest level per can"), (False, ax_all, "every reading")):
            bars = ax.bar(edges[:-1], counts, width=width, align="edge", color=_OK, edgecolor="white")
            dynamic += [_one_artist(ax, bars), ax.axvline(self.threshold, color=_FULL, linestyle="--", linewidth=1)]
            ax.set_xlim(0, 100)
            ax.set_title(f"Level distribution: {title}", fontsize=10)
            ax.set_xlabel("level (%)", fontsize=9)
            ax.set_ylabel("cans" if key else "readings", fontsize=9)
            self._hist[key] = (ax, bars)
        self._top_bars = ax_top.barh(range(self.top), [0.0] * self.top, color=_OK)
        self._top_labels = [ax_top.text(1, i, "", va="center", fontsize=8) for i in range(self.top)]
        self._top_pieces: list = [()] * self.top  # the same labels in two pieces, stamped in live frames
        self._stamps = _TextStamps(fig, 8)
        self._ax_top = ax_top
        dynamic += [_one_artist(ax_top, self._top_bars),
                    ax_top.axvline(self.threshold, color=_FULL, linestyle="--", linewidth=1), *self._top_labels]
        ax_top.set_xlim(0, 100)
        ax_top.set_ylim(self.top - 0.5, -0.7)
        ax_top.set_yticks([])
        ax_top.set_xlabel("latest level (%)", fontsize=9)
        ax_top.set_title(f"Fullest {self.top} cans (red: at or above {self.threshold:g} %)", fontsize=10)
        (self._rate_line,) = ax_rate.plot([], [], color=_OK)
        ax_rate.set_xlim(-self.window, 0)
        ax_rate.set_title("Message rate", fontsize=10)
        ax_rate.set_xlabel("seconds ago", fontsize=9)
        ax_rate.set_ylabel("readings / s", fontsize=9)
        self._ax_rate = ax_rate
        self._title = fig.suptitle("", fontsize=11)
        self._dynamic = dynamic + [self._rate_line, self._title]
        self._label_set = set(self._top_labels)
        self._background: Any = None
        self._background_key: Any = None
        self._ylims = {ax_latest: 10.0, ax_all: 10.0, ax_rate: 10.0}
        for ax in self._ylims:
            ax.set_ylim(0, 100_000)  # room for wide tick labels
        # lay the figure out once, then freeze it: a layout engine would re-run at every draw
        self._title.set_text("received 0")
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        for ax, limit in self._ylims.items():
            ax.set_ylim(0, limit)

    # ----- one refresh: read aggregates, move artists, render ----------------------------------
    def counters(self) -> dict:
        """The numbers shown: received, rejected, distinct cans, rate (last whole second), full cans.

        ``full`` counts cans whose latest level falls in a 5 % bin at or above the threshold.
        """
        col = self.collector
        history = col.rate_history(2)
        _, latest = col.histogram(latest=True)
        edges = col.histogram()[0]
        full = sum(c for e, c in zip(edges, latest) if e >= self.threshold)
        return {"received": col.count, "rejected": col.rejected_count, "cans": col.cans,
                "rate": history[0][1], "full": full}

    def refresh(self) -> None:
        """Update the figure and counters from the collector now (the background task calls this)."""
        if self.figure is None:
            return
        t0 = time.perf_counter()
        col = self.collector
        for latest, (ax, bars) in self._hist.items():
            _, counts = col.histogram(latest=latest)
            for bar, c in zip(bars, counts):
                bar.set_height(c)
            self._set_ylim(ax, max(counts))
        fullest = col.fullest(self.top)
        for i, (bar, label) in enumerate(zip(self._top_bars, self._top_labels)):
            if i < len(fullest):
                can, level = fullest[i]
                bar.set_width(level)
                bar.set_color(_FULL if level >= self.threshold else _OK)
                label.set_text(f"can {can}: {level:.1f} %")
                self._top_pieces[i] = (f"can {can}:", f" {level:.1f} %")
            else:
                bar.set_width(0)
                label.set_text("")
                self._top_pieces[i] = ()
        for bars in [bars for _, bars in self._hist.values()] + [self._top_bars]:
            _copy_bars(bars)
        history = col.rate_history(self.window + 1)[:-1]  # whole seconds only
        now = history[-1][0] + 1
        self._rate_line.set_data([s - now for s, _ in history], [c for _, c in history])
        self._set_ylim(self._ax_rate, max(c for _, c in history))
        n = self.counters()
        state = " (stopped)" if self._stopped else " (paused)" if self._paused else ""
        text = (f"received {n['received']:,}   rejected {n['rejected']:,}   distinct cans {n['cans']:,}   "
                f"rate {n['rate']:,}/s   at or above {self.threshold:g} %: {n['full']:,} cans{state}")
        self._title.set_text(text)
        if self._controls is not None:
            self._controls["counters"].value = f"<b>{text}</b>"
        self._render()
        self.refreshes += 1
        self.last_refresh_seconds = time.perf_counter() - t0

    def _set_ylim(self, ax: Any, value: float) -> None:
        limit = _nice_limit(value, self._ylims[ax])
        if limit != self._ylims[ax]:
            self._ylims[ax] = limit
            ax.set_ylim(0, limit)

    def _draw(self, still: bool = True) -> None:
        """Render into the canvas, redrawing only what changes: axes, ticks and labels are a cached background.

        Live frames leave out the counters line above the plots (the counters widget beside the buttons
        shows it, and text is the costliest part of a frame); still pictures carry it.
        """
        self._title.set_visible(still)
        canvas = self._canvas
        key = (tuple(self._ylims.values()), canvas.get_width_height(physical=True))
        if self._background is None or key != self._background_key:
            for artist in self._dynamic:
                artist.set_visible(False)
            FigureCanvasAgg.draw(canvas)  # the Agg draw only (ipympl's own draw would also send this frame)
            self._background, self._background_key = canvas.copy_from_bbox(self.figure.bbox), key
            for artist in self._dynamic:
                artist.set_visible(artist is not self._title or still)
        else:
            canvas.restore_region(self._background)
        renderer = canvas.get_renderer()
        stamp = not still and self._stamps is not None
        for artist in self._dynamic:
            if not (stamp and artist in self._label_set):
                artist.draw(renderer)
        if stamp:
            to_display = self._ax_top.transData.transform
            for i, pieces in enumerate(self._top_pieces):
                if pieces:
                    x, y = to_display((1, i))
                    self._stamps.paste(renderer, pieces, x, y)

    def _png(self, still: bool = True) -> bytes:
        import numpy as np

        self._draw(still)
        return png(np.asarray(self._canvas.buffer_rgba()))

    def _render(self) -> None:
        if self.renderer == "widget":
            self._draw(still=self._stopped)
            self._canvas.blit()  # ipympl sends the changed pixels to the front end
            return
        picture = self._png(still=self._stopped)
        if self._handle is not None:
            from IPython.display import Image

            self._handle.update(Image(picture))

    def snapshot(self) -> Any:
        """A still image of the dashboard now (an IPython Image), e.g. to keep in a notebook's output."""
        from IPython.display import Image

        if self._stopped:
            return Image(self._last_png)
        self.refresh()
        return Image(self._png())

    # ----- lifecycle -------------------------------------------------------------------------
    def _replaces(self, other: LiveView) -> bool:
        """A re-run cell's dashboard of the same collector (or one of the same name) replaces the old one."""
        assert isinstance(other, LiveDashboard)
        return other.collector is self.collector or other.collector.name == self.collector.name

    async def _run(self) -> None:
        was_running = self.collector.running
        while True:
            if was_running and not self.collector.running:  # stopped, or replaced by a re-run cell
                self.stop()
                return
            was_running = was_running or self.collector.running
            if not self._paused:
                try:
                    self.refresh()
                except Exception as e:  # blind: a view never raises into the kernel's loop: one line, then it stops refreshing
                    log.warning("trashlab: dashboard stopped refreshing: %s", e)
                    return
            await asyncio.sleep(self.refresh_interval)

    def pause(self) -> None:
        """Stop redrawing for now (messages keep being collected)."""
        self._paused = True
        self._sync_button()
        if not self._stopped:
            self.refresh()

    def resume(self) -> None:
        """Redraw again after :meth:`pause`."""
        self._paused = False
        self._sync_button()

    def stop(self) -> None:
        """Stop for good: cancel the task, leave a last still image, close the figure and the widgets."""
        if not self._end_task():
            return
        try:
            self.refresh()
            self._last_png = self._png()
            if self.renderer == "widget" and self._handle is not None:
                from IPython.display import Image

                self._handle.update(Image(self._last_png))  # the closed widget's place keeps the picture
        finally:
            if self._controls is not None:
                for widget in self._controls.values():
                    widget.close()
                self._controls = None
            if self._manager is not None:
                self._manager.toolbar.close()  # an open widget stays registered (and so would the figure)
                self._manager.destroy()  # closes the ipympl canvas widget
                self._manager = None
            self.figure.clear()
            # drop every artist too: each one refers back to the figure
            # (typed as they are while running: nothing reads them once closed)
            self.figure = self._canvas = self._hist = self._top_bars = self._top_labels = None  # type: ignore[assignment]
            self._rate_line = self._ax_rate = self._title = self._dynamic = self._background = self._ylims = None  # type: ignore[assignment]
            self._ax_top = self._label_set = self._stamps = None  # type: ignore[assignment]
            self._handle = None

    @property
    def closed(self) -> bool:
        """True once stopped: the figure is released."""
        return self.figure is None

    # ----- display ---------------------------------------------------------------------------
    def _sync_button(self) -> None:
        if self._controls is not None:
            button = self._controls["pause"]
            button.value = self._paused
            button.description = "Resume" if self._paused else "Pause"
            button.icon = "play" if self._paused else "pause"

    def _make_controls(self) -> Any:
        import ipywidgets as w

        pause = w.ToggleButton(value=self._paused, description="Pause", icon="pause",
                               tooltip="stop redrawing for now; messages keep being collected",
                               layout=w.Layout(width="110px"))
        stop = w.Button(description="Stop", icon="stop", tooltip="stop the dashboard for good",
                        layout=w.Layout(width="110px"))
        counters = w.HTML("")
        pause.observe(lambda change: self.pause() if change["new"] else self.resume(), names="value")
        stop.on_click(lambda _: self.stop())
        box = w.HBox([pause, stop, counters])
        self._controls = {"pause": pause, "stop": stop, "counters": counters, "box": box}
        self._sync_button()
        return box

    def _ipython_display_(self) -> None:
        from IPython.display import Image, display

        if self._stopped:
            display(Image(self._last_png))
            return
        display(self._make_controls())
        self.refresh()
        if self.renderer == "widget":
            # the canvas widget; a front end without widgets (a headless run) keeps its PNG instead
            self._title.set_visible(True)
            self._handle = display(self._canvas, display_id=True)
        else:
            self._handle = display(Image(self._png()), display_id=True)
        self.start()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "paused" if self._paused else "running" if self.running else "idle"
        return (f"<LiveDashboard of {self.collector!r}, {state}, every {self.refresh_interval:g}s, "
                f"{self.refreshes} refreshes, renderer={self.renderer}>")
