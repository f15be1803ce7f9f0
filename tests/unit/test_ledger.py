"""The once-only ledger on the real Redis: crash counting for poison jobs."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from providers.redis_client import RedisClient
from workers.idempotency import AlreadyDone, CrashedTooOften, JobKeys, JobLedger, Started

pytestmark = [pytest.mark.redis, pytest.mark.redis_cluster]

LOCK_TTL_S = 0.2


def _worker(redis: RedisClient, namespace: str) -> JobLedger:
    """One worker's ledger (each has its own owner id, as each process does)."""
    return JobLedger(redis, namespace, lock_ttl_s=LOCK_TTL_S, max_crash_attempts=1, poll_s=0.05)


async def _crash_after_claim(ledger: JobLedger, request_id: str) -> Started | CrashedTooOften:
    """Claim, then die: no finish, no release; the lock is left to expire."""
    claim = await ledger.claim(request_id)
    assert isinstance(claim, Started | CrashedTooOften)
    await asyncio.sleep(LOCK_TTL_S * 2)
    return claim


async def test_a_job_that_kills_its_workers_is_refused_after_max_crash_attempts(
    redis: RedisClient,
) -> None:
    namespace, job = f"test-{uuid.uuid4().hex[:8]}", "job-1"
    assert await _crash_after_claim(_worker(redis, namespace), job) == Started(0)
    assert await _crash_after_claim(_worker(redis, namespace), job) == Started(1)  # one retry
    last = _worker(redis, namespace)
    assert await last.claim(job) == CrashedTooOften(attempt=2, crashes=2)
    await last.finish(job, b"the error reply")
    assert await _worker(redis, namespace).claim(job) == AlreadyDone(b"the error reply")


async def test_jobs_handed_back_are_not_counted_as_crashes(redis: RedisClient) -> None:
    namespace, job = f"test-{uuid.uuid4().hex[:8]}", "job-1"
    for attempt in range(4):  # shutdowns and failures release the job: never a crash
        ledger = _worker(redis, namespace)
        assert await ledger.claim(job) == Started(attempt)
        await ledger.release(job)
    crashes = await redis.get(JobKeys.of(namespace, job).crashes)
    assert crashes is None
