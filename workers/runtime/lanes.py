"""The lane gate: shares one worker's job slots between its interactive and batch lanes.

The interactive lane may always run ``slots`` jobs of its own, as if there were no batch
lane. A batch job starts only in what the interactive lane leaves: while fewer than
``slots - 1`` jobs of both lanes run (one slot always stays free for the next interactive
job, so the interactive lane has no job waiting), and never more than ``batch_limit`` batch
jobs at once (docs/decisions/0021-priority-lanes.md).

A job waiting for its tenant's turn (``max_in_flight``) lends its slot back while it waits,
so other tenants' jobs run in it. The jobs held, waiting or running, stay within twice the
slots, and a job whose turn comes runs at once, even while the slots are full
(docs/decisions/0043-concurrency-per-tenant.md).
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
        self._waiting = 0  # jobs that lent their slot while they wait for their turn
        self._changed = asyncio.Event()

    def running(self, lane: Lane) -> int:
        return self._running[lane]

    def room(self, lane: Lane) -> int:
        """How many jobs of ``lane`` may start now."""
        interactive, batch = self._running["interactive"], self._running["batch"]
        # Jobs held here, waiting or running, stay within twice the slots.
        held = 2 * self.slots - interactive - batch - self._waiting
        if lane == "interactive":
            return max(min(self.slots - interactive, held), 0)
        left = self.slots - self._reserve - interactive - batch
        return max(min(left, self.batch_limit - batch, held), 0)

    def started(self, lane: Lane) -> None:
        self._running[lane] += 1

    def finished(self, lane: Lane) -> None:
        self._running[lane] -= 1
        self.notify()

    def waiting(self, lane: Lane) -> None:
        """A running job of ``lane`` waits for its turn: its slot is lent back."""
        self._waiting += 1
        self.finished(lane)

    def resumed(self, lane: Lane) -> None:
        """A job that waited takes a slot again (its turn came, or it ends)."""
        self._waiting -= 1
        self.started(lane)

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
