"""Fixtures that run a real generate worker in-process against the real broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from producer_sdk import FleetClient
from tests.conftest import Infra
from tests.integration.harness import serving
from workers import Worker, WorkerSettings, build_worker

MODEL = "smollm2-135m-instruct"


@pytest.fixture
def namespace() -> str:
    """Each test gets its own topics and consumer group."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(infra: Infra, namespace: str) -> WorkerSettings:
    return WorkerSettings(
        bootstrap_servers=infra.bootstrap_servers,
        kafka=infra.security,
        redis_url=infra.redis_url,
        namespace=namespace,
        partitions=2,
        concurrency=4,
        shutdown_grace_s=10,
    )


@pytest.fixture
async def generate_worker(settings: WorkerSettings) -> AsyncIterator[Worker]:
    async with serving(await build_worker("generate", settings)) as worker:
        yield worker


@pytest.fixture
async def client(infra: Infra, namespace: str) -> AsyncIterator[FleetClient]:
    async with infra.client(namespace=namespace, default_timeout_s=60) as c:
        yield c


@pytest.fixture
async def redis_client(infra: Infra) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(infra.redis_url)
    yield client
    await client.aclose()
