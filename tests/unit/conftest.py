"""Fixtures of the unit tests that use the real Redis (one Redis and a Redis Cluster, in
turn): a client, and a ledger in a namespace of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from providers.redis_client import RedisClient, connect_redis
from workers.idempotency import JobLedger


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisClient]:
    """A client of the test's Redis: the suite's, then a Redis Cluster (``redis_url``)."""
    client = connect_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def ledger_namespace() -> str:
    return f"unit-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ledger(redis: RedisClient, ledger_namespace: str) -> JobLedger:
    return JobLedger(redis, ledger_namespace, lock_ttl_s=2)
