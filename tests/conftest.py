"""Real Kafka and Redis for the tests, started once per session by the project's scripts
(and PostgreSQL, for the tests that ask for ``postgres_dsn``).

FLEET_TEST_INFRA=local (default) runs deploy/local/services.sh (idempotent: running
services are reused). FLEET_TEST_INFRA=testcontainers starts both in Docker instead, for
machines with a Docker engine.

FLEET_TEST_KAFKA=sasl_ssl runs the suite through the local broker's SASL_SSL listener
(SCRAM-SHA-512, the local CA) instead of its plain one; ``ssl``, through its TLS listener
with a client certificate.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts.secrets import Secret
from producer_sdk import FleetClient
from providers.redis_client import RedisPool
from providers.shared import Shared
from transport.connection import PLAINTEXT, SECURITY_ENV, KafkaConnection, KafkaSecurity
from workers.ops.local_kafka import local_secured_listeners

REPO = Path(__file__).resolve().parents[1]


class Infra(msgspec.Struct, frozen=True):
    bootstrap_servers: str
    redis_url: str
    security: KafkaSecurity = PLAINTEXT

    @property
    def connection(self) -> KafkaConnection:
        return KafkaConnection(bootstrap_servers=self.bootstrap_servers, security=self.security)

    def kafka_options(self) -> dict[str, Any]:
        """What a raw aiokafka client of a test is opened with."""
        return self.connection.options()

    def client(self, **options: Any) -> FleetClient:
        return FleetClient(self.bootstrap_servers, security=self.security, **options)

    def kafka_env(self) -> dict[str, str]:
        """The FLEET_* variables that point a worker process at this Kafka."""
        env = {"FLEET_BOOTSTRAP_SERVERS": self.bootstrap_servers}
        for name, field in SECURITY_ENV.items():
            value = getattr(self.security, field)
            if value is not None and value != getattr(PLAINTEXT, field):
                env[name] = value.reveal() if isinstance(value, Secret) else str(value)
        return env


def _local_infra() -> Infra:
    subprocess.run(["bash", str(REPO / "deploy/local/services.sh"), "start"], check=True)
    kafka_port = os.environ.get("FLEET_KAFKA_PORT", "19092")
    redis_port = os.environ.get("FLEET_REDIS_PORT", "16379")
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    listener = os.environ.get("FLEET_TEST_KAFKA", "plaintext")
    if listener == "plaintext":
        return Infra(f"127.0.0.1:{kafka_port}", redis_url)
    secured = local_secured_listeners()
    if listener == "sasl_ssl":
        return Infra(secured.sasl_ssl, redis_url, secured.sasl())
    if listener == "ssl":
        return Infra(secured.ssl, redis_url, secured.mutual_tls())
    raise pytest.UsageError(
        f"FLEET_TEST_KAFKA={listener!r}: expected 'plaintext', 'sasl_ssl' or 'ssl'"
    )


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


def _local_redis_cluster() -> str:
    script = str(REPO / "deploy/local/redis-cluster.sh")
    subprocess.run(["bash", script, "start"], check=True)
    url = subprocess.run(["bash", script, "url"], check=True, capture_output=True, text=True)
    return url.stdout.strip()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``redis_cluster`` (its subject is keys or scripts) runs twice: on the
    suite's Redis and on a three-master Redis Cluster. Other Redis tests run once."""
    if "redis_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "redis_cluster"
    ):
        metafunc.parametrize("redis_url", ["redis", "cluster"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """The Redis of a Redis-backed test: the suite's, or for tests marked ``redis_cluster``
    also a Redis Cluster (deploy/local/redis-cluster.sh, started on first use)."""
    if getattr(request, "param", "redis") == "cluster":
        return _local_redis_cluster()
    infra: Infra = request.getfixturevalue("infra")
    return infra.redis_url


@pytest.fixture
async def shared(redis_url: str) -> AsyncIterator[Shared]:
    """What a worker process would hand its providers: a Redis pool on the test Redis."""
    pool = RedisPool(redis_url)
    yield Shared(redis=pool)
    await pool.aclose()


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """PostgreSQL 18 + pgvector from deploy/local/postgres.sh (idempotent: reuses a running
    one), for the pgvector store's tests and the vectors worker's over it."""
    subprocess.run(["bash", str(REPO / "deploy/local/postgres.sh"), "start"], check=True)
    port = os.environ.get("FLEET_PG_PORT", "15432")
    return f"postgresql://postgres@127.0.0.1:{port}/fleet"
