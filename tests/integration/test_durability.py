"""The local Redis keeps what the fleet acknowledged across a crash of Redis itself: every
vector upserted and every job recorded done (a second later: the append-only file is
fsynced every second)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from providers.redis_client import RedisPool
from providers.shared import Shared
from providers.vectorstores import VectorItem, vector_stores
from tests.integration.private_services import PrivateRedis
from workers.idempotency import AlreadyDone, JobLedger, Started

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "fleet-home")
    server.start()
    yield server
    server.stop()


async def _fsynced(url: str) -> None:
    """Return once everything written so far is in the append-only file on disk: a write
    after it, fsynced (WAITAOF on the connection that wrote it; within the second)."""
    redis = aioredis.Redis.from_url(url)
    try:
        async with redis.pipeline(transaction=False) as pipe:  # one connection for both
            pipe.set("durability:fsync-marker", 1)
            pipe.execute_command("WAITAOF", 1, 0, 10_000)
            _, (local, _replicas) = await pipe.execute()
    finally:
        await redis.aclose()
    assert local == 1, "the append-only file was not fsynced within 10 s"


async def test_acknowledged_vectors_and_done_jobs_survive_a_redis_crash(
    private_redis: PrivateRedis,
) -> None:
    pool = RedisPool(private_redis.url)  # a worker's: the store and the ledger share it
    store = vector_stores.create("redis", {}, Shared(redis=pool))
    await store.load()
    items = [VectorItem(id=f"doc-{i}", vector=[1.0, float(i), 0.5]) for i in range(200)]
    assert await store.upsert("durable", items) == 200
    ledger = JobLedger(pool.client(), "durability")
    for i in range(50):
        assert await ledger.claim(f"job-{i}") == Started(0)
        await ledger.finish(f"job-{i}", f"answer {i}".encode())
    assert len(pool) == 1

    await _fsynced(private_redis.url)
    private_redis.crash()
    private_redis.start()
    # A client that was connected before the crash works at once: its dead connection is
    # noticed and replaced, not failed on for the next minute.
    assert await ledger.claim("job-0") == AlreadyDone(b"answer 0")
    await store.aclose()
    await pool.aclose()

    pool = RedisPool(private_redis.url)
    store = vector_stores.create("redis", {}, Shared(redis=pool))
    redis = aioredis.Redis.from_url(private_redis.url)
    try:
        await store.load()
        count = await redis.execute_command("VCARD", "fleet:vectors:durable")  # type: ignore[no-untyped-call]
        assert count == len(items)
        hits = await store.query("durable", [1.0, 7.0, 0.5], top_k=3)
        assert "doc-7" in {m.id for m in hits}  # int8-quantised: a neighbour may tie it
        ledger = JobLedger(redis, "durability")
        replies = [await ledger.claim(f"job-{i}") for i in range(50)]
        assert replies == [AlreadyDone(f"answer {i}".encode()) for i in range(50)]
    finally:
        await redis.aclose()
        await store.aclose()
        await pool.aclose()
