"""JobLedger.reopen on the real Redis (and a Redis Cluster): what `fleet dlq replay` does to
a dead-lettered job's ledger record before it republishes the job."""

from __future__ import annotations

import asyncio

import pytest

from contracts.codec import encode
from contracts.errors import ErrorCode
from contracts.replies import ErrorReply, GenerateResult
from providers.redis_client import RedisClient
from workers.idempotency import AlreadyDone, CrashedTooOften, JobLedger, Reopening, Started

pytestmark = [pytest.mark.redis, pytest.mark.redis_cluster]

JOB = "generate/acme/req-1"
FAILED = encode(ErrorReply(request_id="req-1", seq=0, code=ErrorCode.INTERNAL, message="boom"))
ANSWERED = encode(GenerateResult(request_id="req-1", seq=0, text="hi", model="m"))


def _ledger(redis: RedisClient, namespace: str) -> JobLedger:
    return JobLedger(redis, namespace, lock_ttl_s=0.2, max_crash_attempts=0, poll_s=0.05)


async def test_a_failed_job_runs_again_as_a_later_attempt(
    redis: RedisClient, ledger_namespace: str
) -> None:
    ledger = _ledger(redis, ledger_namespace)
    assert await ledger.claim(JOB) == Started(0)
    await ledger.finish(JOB, FAILED)
    assert await ledger.claim(JOB) == AlreadyDone(FAILED)
    assert await ledger.reopen(JOB) is Reopening.REOPENED
    assert await ledger.claim(JOB) == Started(1)  # attempt numbers still only rise


async def test_a_job_that_has_succeeded_is_left_as_it_is(
    redis: RedisClient, ledger_namespace: str
) -> None:
    ledger = _ledger(redis, ledger_namespace)
    assert await ledger.claim(JOB) == Started(0)
    await ledger.finish(JOB, ANSWERED)
    assert await ledger.reopen(JOB) is Reopening.SUCCEEDED
    assert await ledger.claim(JOB) == AlreadyDone(ANSWERED)


async def test_a_running_job_is_left_as_it_is_and_an_unknown_one_runs(
    redis: RedisClient, ledger_namespace: str
) -> None:
    ledger = _ledger(redis, ledger_namespace)
    assert await ledger.reopen("generate/acme/never-seen") is Reopening.REOPENED
    assert await ledger.claim(JOB) == Started(0)
    assert await ledger.reopen(JOB) is Reopening.RUNNING


async def test_a_job_that_crashed_its_workers_gets_its_crash_count_back(
    redis: RedisClient, ledger_namespace: str
) -> None:
    dead = _ledger(redis, ledger_namespace)
    assert await dead.claim(JOB) == Started(0)
    await asyncio.sleep(0.4)  # its worker died: no finish, no release; the lock lapsed
    survivor = _ledger(redis, ledger_namespace)
    claim = await survivor.claim(JOB)
    assert isinstance(claim, CrashedTooOften)
    await survivor.finish(JOB, FAILED)  # given up: dead-lettered as worker_crashed
    assert await survivor.reopen(JOB) is Reopening.REOPENED
    assert await survivor.claim(JOB) == Started(2)
