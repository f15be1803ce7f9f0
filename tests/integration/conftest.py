"""Fixtures and helpers of the tests that run real workers in-process against the real
broker: a namespace of their own, worker settings in it, a generate worker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from producer_sdk import FleetClient
from tests.conftest import Infra
from tests.integration.harness import serving
from workers import Worker, WorkerSettings, build_worker

MODEL = "smollm2-135m-instruct"


def new_namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def worker_settings(infra: Infra, namespace: str) -> WorkerSettings:
    return WorkerSettings(
        bootstrap_servers=infra.bootstrap_servers,
        kafka=infra.security,
        redis_url=infra.redis_url,
        namespace=namespace,
        partitions=2,
        concurrency=4,
        shutdown_grace_s=10,
    )


@asynccontextmanager
async def generate_worker_in(infra: Infra, namespace: str) -> AsyncIterator[Worker]:
    """A generate worker (SmolLM2 loaded, its group joined) serving ``namespace``."""
    async with serving(await build_worker("generate", worker_settings(infra, namespace))) as w:
        yield w


@pytest.fixture
def namespace() -> str:
    """Each test gets its own topics and consumer group (a module whose tests share one
    worker, as test_generate_e2e's do, overrides it with a module-scoped one)."""
    return new_namespace()


@pytest.fixture
def settings(infra: Infra, namespace: str) -> WorkerSettings:
    return worker_settings(infra, namespace)


@pytest.fixture
async def client(infra: Infra, namespace: str) -> AsyncIterator[FleetClient]:
    async with infra.client(namespace=namespace, default_timeout_s=60) as c:
        yield c


@pytest.fixture
async def redis_client(infra: Infra) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(infra.redis_url)
    yield client
    await client.aclose()
