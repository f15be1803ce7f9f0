"""The runner with the once-only ledger on the real Redis: replays, cancels before the start,
poison jobs, and a Redis that stays away."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from contracts import (
    CancelJob,
    DeadLetterReason,
    ErrorCode,
    ErrorReply,
    GenerateResult,
    Header,
    TextDelta,
)
from contracts.codec import encode
from providers.redis_client import RedisClient, connect_redis
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.job_runner_harness import (
    REPLIES,
    Fixture,
    _final,
    _record,
    _request,
)
from workers.idempotency import AlreadyDone, JobKeys, JobLedger, Started, job_ref
from workers.metrics import Outcome

JOB_1 = job_ref("generate", "default", "job-1")  # what the runner claims job-1 as


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_a_finished_job_delivered_again_is_replayed_not_rerun(ledger: JobLedger) -> None:
    job = Fixture(ledger=ledger)
    record = _record(encode(_request()))
    await job.runner.run(record)
    first = job.publisher.replies(REPLIES)[-1]
    assert isinstance(first, GenerateResult)
    sent_first = len(job.publisher.replies(REPLIES))
    await job.runner.run(record)
    delta, replayed = job.publisher.replies(REPLIES)[sent_first:]
    assert job.chat.calls == 1
    assert job.count(Outcome.REPLAYED) == 1
    assert isinstance(replayed, GenerateResult)
    # The same answer as a stream of its own, under an attempt above the first run's
    # (decision 0028): a caller who saw the first run's chunks but not its final takes it,
    # and so does one who saw nothing.
    assert replayed.attempt > first.attempt
    assert replayed == msgspec.structs.replace(first, attempt=replayed.attempt, seq=1)
    assert delta == TextDelta(
        request_id=first.request_id, attempt=replayed.attempt, seq=0, text=first.text
    )


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_a_batch_lane_answer_is_not_kept_so_a_redelivery_runs_again(
    ledger: JobLedger, redis: RedisClient, ledger_namespace: str
) -> None:
    # The batch's output topic counts each row once; the ledger keeps no batch answers.
    job = Fixture(ledger=ledger)
    record = _record(encode(_request()))
    await job.runner.run(record, "batch")
    assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)
    assert await redis.exists(JobKeys.of(ledger_namespace, JOB_1).done) == 0
    await job.runner.run(record, "batch")  # the lock was released, not left to expire
    assert job.chat.calls == 2
    assert job.count(Outcome.REPLAYED) == 0
    assert isinstance(await ledger.claim(JOB_1), Started)


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_a_job_cancelled_before_it_starts_is_never_run(ledger: JobLedger) -> None:
    job = Fixture(ledger=ledger)
    request = _request(deadline_ms=int(time.time() * 1000) + 60_000)
    await job.runner.cancel(
        CancelJob(request_id="job-1", tenant="default", submission=str(request.deadline_ms))
    )
    await job.runner.run(_record(encode(request)))
    assert job.chat.calls == 0
    assert job.publisher.on(REPLIES) == []
    assert job.count(Outcome.SKIPPED_CANCELLED) == 1


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_a_job_that_crashed_its_workers_too_often_is_dead_lettered(
    ledger: JobLedger, redis: RedisClient, ledger_namespace: str
) -> None:
    # Four earlier workers each claimed the job and died: nothing released it, each lock
    # was left to expire. Three crashes are retried (max_crash_attempts); not a fourth.
    for _ in range(4):
        await JobLedger(redis, ledger_namespace, lock_ttl_s=0.05).claim(JOB_1)
        await asyncio.sleep(0.1)
    job = Fixture(ledger=ledger)
    await job.runner.run(_record(encode(_request())))
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.WORKER_CRASHED
    assert "died 4 times" in detail
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert job.chat.calls == 0


async def test_a_redelivered_job_replies_with_the_next_attempt_without_the_ledger() -> None:
    job = Fixture()
    await job.runner.run(_record(encode(_request()), [(Header.RETRY_COUNT, b"2")]))
    chunks = job.publisher.replies(REPLIES)
    assert {c.attempt for c in chunks} == {2}
    assert [c.seq for c in chunks] == [0, 1, 2, 3]  # a fresh stream, numbered from 0


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_attempts_keep_rising_after_redis_lost_the_counter(
    ledger: JobLedger, redis: RedisClient, ledger_namespace: str
) -> None:
    job = Fixture(ScriptedChat(failures=[ErrorCode.PROVIDER_DOWN]), ledger=ledger)
    for _ in range(2):  # two deliveries by crash takeover: attempts 0 and 1 in the ledger
        await JobLedger(redis, ledger_namespace, lock_ttl_s=0.05).claim(JOB_1)
        await asyncio.sleep(0.1)
    await job.runner.run(_record(encode(_request())))  # attempt 2 fails: parked
    (parked,) = job.publisher.on("unit.v1.generate.retry-1s")
    assert parked.headers[Header.RETRY_ATTEMPT] == b"3"
    # Redis lost everything it knew about the job. (A thousand keys a SCAN step: the suite's
    # Redis holds every other test's keys too, and ten a step took seconds to walk them.)
    async for key in redis.scan_iter(f"fleet:{ledger_namespace}:*", count=1000):
        await redis.delete(key)
    assert parked.value is not None
    await job.runner.run(_record(parked.value, list(parked.headers.items())))
    chunks = job.publisher.replies(REPLIES)
    assert {c.attempt for c in chunks} == {3}
    assert isinstance(chunks[-1], GenerateResult)


@pytest.mark.parametrize(
    "dead_url", ["redis://127.0.0.1:1/0", "redis+cluster://127.0.0.1:1/"], ids=["redis", "cluster"]
)
async def test_a_ledger_that_stays_down_ends_the_job_with_a_typed_error(dead_url: str) -> None:
    dead_redis = connect_redis(dead_url)  # nothing listens there
    try:
        job = Fixture(ledger=JobLedger(dead_redis, "unit"))
        await job.runner.run(_record(encode(_request())))
    finally:
        await dead_redis.aclose()
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.LEDGER_UNAVAILABLE
    assert "Redis is unavailable" in detail
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.PROVIDER_DOWN
    assert final.retryable
    assert job.chat.calls == 0


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_a_second_tenant_reusing_a_request_id_gets_its_own_answer(ledger: JobLedger) -> None:
    job = Fixture(ledger=ledger)
    await job.runner.run(_record(encode(_request("shared-id", tenant="acme"))))
    await job.runner.run(_record(encode(_request("shared-id", tenant="globex"))))
    assert job.chat.calls == 2  # globex's job ran: acme's stored answer is acme's alone
    assert job.count(Outcome.REPLAYED) == 0
    await job.runner.run(_record(encode(_request("shared-id", tenant="acme"))))
    assert job.chat.calls == 2
    assert job.count(Outcome.REPLAYED) == 1


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_stored_answers_do_not_cross_kinds_or_tenants(ledger: JobLedger) -> None:
    await ledger.finish(job_ref("generate", "acme", "x"), b"a generate result")
    assert await ledger.claim(job_ref("embed", "acme", "x")) == Started(0)
    assert await ledger.claim(job_ref("generate", "globex", "x")) == Started(0)
    assert await ledger.claim(job_ref("generate", "acme", "x")) == AlreadyDone(b"a generate result")
