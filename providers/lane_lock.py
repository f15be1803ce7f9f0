"""A lock for one model that serves calls one at a time: whoever waits for it on the
interactive lane goes before anyone waiting on the batch lane (in order within a lane)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

from contracts.names import LANES, Lane


class LaneLock:
    def __init__(self) -> None:
        self._held = False
        self._waiters: dict[Lane, deque[asyncio.Future[None]]] = {lane: deque() for lane in LANES}

    def waiting(self, lane: Lane) -> int:
        return sum(not f.done() for f in self._waiters[lane])

    @contextlib.asynccontextmanager
    async def hold(self, lane: Lane) -> AsyncIterator[None]:
        await self._acquire(lane)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, lane: Lane) -> None:
        if not self._held and not any(self.waiting(w) for w in LANES):
            self._held = True
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiters[lane].append(turn)
        try:
            await turn  # the releaser hands the lock over by setting it: _held stays True
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # handed over just as the waiter was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters[lane].remove(turn)
            raise

    def _release(self) -> None:
        for lane in LANES:  # interactive first
            waiters = self._waiters[lane]
            while waiters:
                turn = waiters.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._held = False
