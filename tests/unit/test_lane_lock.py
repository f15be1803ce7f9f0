"""The lane lock of a model that serves one call at a time: interactive waiters go first,
each lane in order, and a waiter that gives up takes nothing with it."""

from __future__ import annotations

import asyncio

import pytest

from contracts.names import Lane
from providers.lane_lock import LaneLock


async def _queue(lock: LaneLock, order: list[str], name: str, lane: Lane) -> asyncio.Task[None]:
    async def take() -> None:
        async with lock.hold(lane):
            order.append(name)
            await asyncio.sleep(0)

    task = asyncio.create_task(take())
    await asyncio.sleep(0)  # queued now
    return task


async def test_interactive_waiters_go_before_batch_waiters_that_came_first() -> None:
    lock, order = LaneLock(), list[str]()
    async with lock.hold("batch"):
        tasks = [
            await _queue(lock, order, "b1", "batch"),
            await _queue(lock, order, "b2", "batch"),
            await _queue(lock, order, "i1", "interactive"),
            await _queue(lock, order, "i2", "interactive"),
        ]
        assert (lock.waiting("batch"), lock.waiting("interactive")) == (2, 2)
    await asyncio.gather(*tasks)
    assert order == ["i1", "i2", "b1", "b2"]


async def test_a_cancelled_waiter_leaves_the_lock_to_the_next() -> None:
    lock, order = LaneLock(), list[str]()
    async with lock.hold("interactive"):
        doomed = await _queue(lock, order, "gone", "interactive")
        kept = await _queue(lock, order, "kept", "batch")
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
    await asyncio.wait_for(kept, timeout=1)
    assert order == ["kept"]


async def test_a_waiter_cancelled_just_as_it_was_handed_the_lock_passes_it_on() -> None:
    lock, order = LaneLock(), list[str]()
    held = lock.hold("batch")
    await held.__aenter__()
    doomed = await _queue(lock, order, "gone", "interactive")
    kept = await _queue(lock, order, "kept", "batch")
    await held.__aexit__(None, None, None)  # hands the lock to "gone", which has not run yet
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await asyncio.wait_for(kept, timeout=1)
    assert order == ["kept"]
    async with lock.hold("interactive"):  # free again
        pass
