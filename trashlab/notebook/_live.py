"""What the notebook's live views (LiveDashboard, FlowMap) share: a refresh task that can pause."""

from __future__ import annotations

import asyncio
from typing import Optional


class LiveView:
    """A view redrawn by a background task: ``running`` while the task runs, ``paused`` while it skips redraws."""

    _task: "Optional[asyncio.Task]" = None
    _paused: bool = False

    @property
    def running(self) -> bool:
        """True while the refresh task runs (also while paused)."""
        return self._task is not None and not self._task.done()

    @property
    def paused(self) -> bool:
        """True while refreshing is paused."""
        return self._paused
