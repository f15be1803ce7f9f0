"""Fixtures of the unit tests that use the real Redis: a client, and a ledger in a namespace
of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.conftest import Infra
from workers.idempotency import JobLedger


@pytest.fixture
async def redis(infra: Infra) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(infra.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def ledger_namespace() -> str:
    return f"unit-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ledger(redis: aioredis.Redis, ledger_namespace: str) -> JobLedger:
    return JobLedger(redis, ledger_namespace, lock_ttl_s=2)
