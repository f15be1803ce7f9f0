"""The lane gate: shares one worker's job slots between its interactive and batch lanes.

The interactive lane may always run ``slots`` jobs of its own, as if there were no batch
lane. A batch job starts only in what the interactive lane leaves: while fewer than
``slots - 1`` jobs of both lanes run (one slot always stays free for the next interactive
job, so the interactive lane has no job waiting), and never more than ``batch_limit`` batch
jobs at once (docs/decisions/0021-priority-lanes.md).
"""

from __future__ import annotations

import asyncio
import contextlib

from contracts.names import LANES, Lane


class LaneGate:
    def __init__(self, slots: int, batch_limit: int) -> None:
        self.slots = slots
        self.batch_limit = batch_limit
        # The slot kept free for interactive work (none to keep when there is only one).
        self._reserve = 1 if slots > 1 else 0
        self._running: dict[Lane, int] = dict.fromkeys(LANES, 0)
        self._changed = asyncio.Event()

    def running(self, lane: Lane) -> int:
        return self._running[lane]

    def room(self, lane: Lane) -> int:
        """How many jobs of ``lane`` may start now."""
        interactive, batch = self._running["interactive"], self._running["batch"]
        if lane == "interactive":
            return max(self.slots - interactive, 0)
        left = self.slots - self._reserve - interactive - batch
        return max(min(left, self.batch_limit - batch), 0)

    def started(self, lane: Lane) -> None:
        self._running[lane] += 1

    def finished(self, lane: Lane) -> None:
        self._running[lane] -= 1
        self.notify()

    def notify(self) -> None:
        """Wake whoever waits for room (a job ended, or a consumer is stopping)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def watch(self) -> asyncio.Event:
        """Set at the next change: taken before an await, so no change is missed."""
        return self._changed

    @staticmethod
    async def wait(change: asyncio.Event, timeout_s: float) -> None:
        """Until ``change`` (from ``watch``) is set, or ``timeout_s`` has passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(change.wait(), timeout=timeout_s)
