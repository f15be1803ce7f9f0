"""The fairness board (workers/fairness_board.py): what each worker posts of its lanes'
tenants, read back by `fleet status --fairness`, on one Redis and on Redis Cluster."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from providers.redis_client import RedisClient
from workers.fairness_board import (
    LaneState,
    TenantState,
    board_key,
    keep_posted,
    read_board,
    render,
    worker_name,
)

LANE = LaneState(
    lane="interactive",
    slots=4,
    window=16,
    running=4,
    tenants=[
        TenantState(
            tenant="a",
            weight=2,
            queued=12,
            in_flight=3,
            credit=120,
            served=9000,
            parked=4321,
            waited=765,
        ),
        TenantState(tenant="b", weight=1, queued=0, in_flight=1, credit=0, served=700),
    ],
)


@pytest.mark.redis_cluster
async def test_a_worker_posts_its_lanes_while_it_runs_and_removes_them_when_it_stops(
    redis: RedisClient,
) -> None:
    namespace = f"unit-{uuid.uuid4().hex[:8]}"
    posted, stopping = asyncio.Event(), asyncio.Event()

    def lanes() -> list[LaneState]:
        posted.set()
        return [LANE]

    poster = asyncio.create_task(
        keep_posted(redis, namespace, "generate", lanes, stopping, every_s=0.05)
    )
    await posted.wait()
    for _ in range(100):  # until the first write is in: its HSET follows the call at once
        if board := await read_board(redis, namespace, "generate"):
            break
        await asyncio.sleep(0.01)
    assert [(s.worker, s.kind, s.lanes) for s in board] == [(worker_name(), "generate", [LANE])]
    table = render(board)
    assert " a " in table
    assert "9000" in table
    assert table.splitlines()[0].split()[-2:] == ["parked", "waited"]
    assert table.splitlines()[1].split()[-2:] == ["4321", "765"]
    stopping.set()
    await poster
    assert await read_board(redis, namespace, "generate") == []
    assert not await redis.exists(board_key(namespace, "generate"))
