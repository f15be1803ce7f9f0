"""Fixtures of the unit tests: for those that use the real Redis (one Redis and a Redis
Cluster, in turn), a client and a ledger in a namespace of its own; for those that check
manifests and documents against schemas, the checking tools."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator

import pytest

from providers.redis_client import RedisClient, connect_redis
from tests.conftest import REPO
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


@pytest.fixture(scope="session")
def manifest_tools() -> dict[str, str]:
    """Paths of the checking tools, installed (once) by deploy/local/manifest-tools.sh."""
    done = subprocess.run(
        ["bash", str(REPO / "deploy/local/manifest-tools.sh"), "install"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"manifest-tools.sh failed:\n{done.stderr}"
    paths = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert {"KUBECONFORM", "KUSTOMIZE", "COMPOSE_SCHEMA", "ASYNCAPI_SCHEMA"} <= set(paths)
    return paths
