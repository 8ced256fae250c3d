"""What the notebook's live views (LiveDashboard, FlowMap) share: a refresh task on the kernel's event
loop that can pause, one live view per target (a re-run cell replaces the old one), and stopping once."""

from __future__ import annotations

import asyncio
import weakref
from typing import Optional, TypeVar

from .. import _hooks
from ..errors import TrashlabError

V = TypeVar("V", bound="LiveView")


class LiveView:
    """A view redrawn by a background task: ``running`` while the task runs, ``paused`` while it skips redraws."""

    #: the running views of this kind (each subclass has its own set)
    _running: "weakref.WeakSet[LiveView]" = weakref.WeakSet()
    #: how the view is called in messages, and how to make a new one after stop()
    _noun = "view"
    _again = "a new one"
    _task: "Optional[asyncio.Task]" = None
    _paused: bool = False
    _stopped: bool = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._running = weakref.WeakSet()

    @property
    def running(self) -> bool:
        """True while the refresh task runs (also while paused)."""
        return self._task is not None and not self._task.done()

    @property
    def paused(self) -> bool:
        """True while refreshing is paused."""
        return self._paused

    def start(self: V) -> V:
        """Start refreshing as a task on the running event loop (displaying the view does this)."""
        if self._stopped:
            raise TrashlabError(f"this {self._noun} was stopped: create a new one with {self._again}")
        if self.running:
            return self
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise TrashlabError(f"{type(self).__name__} needs a running event loop: use it in a notebook cell "
                                "(or in async code)") from None  # the cause says the same: no running loop
        for other in list(type(self)._running):  # a re-run cell replaces its old view of the same thing
            if other is not self and self._replaces(other):
                other.stop()
        type(self)._running.add(self)
        self._task = loop.create_task(self._run(), name=f"trashlab-{type(self).__name__}")
        return self

    def _replaces(self, other: "LiveView") -> bool:
        """True when ``other`` (a running view of this kind) shows what this one shows."""
        raise NotImplementedError

    async def _run(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _end_task(self) -> bool:
        """The first part of stop(): cancel the refresh task, forget the view; False if it was stopped already."""
        if self._stopped:
            return False
        self._stopped = True
        type(self)._running.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        return True


def _stop_views() -> int:
    """Stop every running live view of every kind (a clean-up: their servers are about to go); return how many."""
    stopped = 0
    kinds = list(LiveView.__subclasses__())
    while kinds:
        kind = kinds.pop()
        kinds += kind.__subclasses__()
        for view in list(kind._running):
            view.stop()
            stopped += 1
    return stopped


_hooks.on_cleanup("views", "live views", _stop_views)
