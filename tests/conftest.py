"""Real Kafka and Redis for the tests, started once per session by the project's scripts.

FLEET_TEST_INFRA=local (default) runs deploy/local/services.sh (idempotent: running
services are reused). FLEET_TEST_INFRA=testcontainers starts both in Docker instead, for
machines with a Docker engine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from providers.redis_client import RedisPool
from providers.shared import Shared

REPO = Path(__file__).resolve().parents[1]


class Infra(msgspec.Struct, frozen=True):
    bootstrap_servers: str
    redis_url: str


def _local_infra() -> Infra:
    subprocess.run(["bash", str(REPO / "deploy/local/services.sh"), "start"], check=True)
    kafka_port = os.environ.get("FLEET_KAFKA_PORT", "19092")
    redis_port = os.environ.get("FLEET_REDIS_PORT", "16379")
    return Infra(f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0")


def _container_infra() -> Iterator[Infra]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    with (
        KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka,
        RedisContainer("redis:8") as redis,
    ):
        host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
        yield Infra(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0")


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    choice = os.environ.get("FLEET_TEST_INFRA", "local")
    if choice == "local":
        yield _local_infra()
    elif choice == "testcontainers":
        yield from _container_infra()
    else:
        raise pytest.UsageError(
            f"FLEET_TEST_INFRA={choice!r}: expected 'local' or 'testcontainers'"
        )


@pytest.fixture
async def shared(infra: Infra) -> AsyncIterator[Shared]:
    """What a worker process would hand its providers: a Redis pool on the test Redis."""
    pool = RedisPool(infra.redis_url)
    yield Shared(redis=pool)
    await pool.aclose()
