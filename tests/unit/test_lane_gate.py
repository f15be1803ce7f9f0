"""The lane gate: the interactive lane keeps every slot it had; the batch lane runs only in
what it leaves, one slot short, and never past its own limit."""

from __future__ import annotations

import asyncio

from workers.runtime.lanes import LaneGate


def _run(gate: LaneGate, interactive: int = 0, batch: int = 0) -> None:
    for _ in range(interactive):
        gate.started("interactive")
    for _ in range(batch):
        gate.started("batch")


def test_an_idle_worker_gives_the_batch_lane_its_limit() -> None:
    gate = LaneGate(slots=8, batch_limit=3)
    assert gate.room("interactive") == 8
    assert gate.room("batch") == 3


def test_batch_jobs_never_take_the_interactive_lanes_slots() -> None:
    gate = LaneGate(slots=4, batch_limit=4)
    _run(gate, batch=3)
    assert gate.room("batch") == 0  # the fourth slot stays free
    assert gate.room("interactive") == 4  # as if there were no batch jobs


def test_a_busy_interactive_lane_closes_the_batch_lane() -> None:
    gate = LaneGate(slots=4, batch_limit=2)
    _run(gate, interactive=2)
    assert gate.room("batch") == 1
    gate.started("interactive")
    assert gate.room("batch") == 0
    gate.finished("interactive")
    gate.finished("interactive")
    assert gate.room("batch") == 2


def test_with_one_slot_batch_work_runs_only_while_no_interactive_job_does() -> None:
    gate = LaneGate(slots=1, batch_limit=1)
    assert gate.room("batch") == 1
    gate.started("interactive")
    assert gate.room("batch") == 0
    assert gate.room("interactive") == 0


def test_a_batch_limit_of_zero_never_opens() -> None:
    gate = LaneGate(slots=64, batch_limit=0)
    assert gate.room("batch") == 0


async def test_a_finished_job_wakes_a_waiter_that_watched_before_it() -> None:
    gate = LaneGate(slots=2, batch_limit=1)
    _run(gate, interactive=2)
    change = gate.watch()  # taken before the job ends: the change is not missed
    gate.finished("interactive")
    waiter = asyncio.create_task(LaneGate.wait(change, timeout_s=5))
    await asyncio.wait_for(waiter, timeout=1)
    assert gate.room("batch") == 0  # one interactive job still runs, one slot kept free
    assert gate.room("interactive") == 1


async def test_a_wait_without_change_ends_at_its_timeout() -> None:
    gate = LaneGate(slots=2, batch_limit=1)
    change = gate.watch()
    await LaneGate.wait(change, timeout_s=0.01)
    assert not change.is_set()
