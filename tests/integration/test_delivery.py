"""Delivery guarantees of the worker over the real broker and Redis: once-only execution,
delayed retries, dead letters after exhausted retries, long calls without rebalances."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import msgspec
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from contracts import ErrorCode, GenerateResult, Header, TextDelta
from contracts.secrets import Secret
from producer_sdk import DeadlineExceeded, FleetClient, FleetRequestError, StreamRestarted
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.harness import read_dead_letters, serving, until
from tests.integration.scripted_chat import ScriptedChat
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler
from workers.idempotency import JobKeys, job_ref
from workers.ops.inspect import consumer_lag, job_state
from workers.retry import RetryPolicy

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

MODEL = "scripted-model"


@asynccontextmanager
async def running(settings: WorkerSettings, chat: ScriptedChat) -> AsyncIterator[Worker]:
    async with serving(
        Worker("generate", settings, GenerateHandler(ModelRouter("chat", [chat])))
    ) as w:
        yield w


def _count(worker: Worker, outcome: str) -> float:
    value = worker.metrics.registry.get_sample_value(
        "fleet_jobs_total", {"kind": "generate", "outcome": outcome}
    )
    return value or 0.0


async def test_the_same_request_id_twice_runs_the_model_once(
    settings: WorkerSettings, client: FleetClient
) -> None:
    chat = ScriptedChat()
    async with running(settings, chat) as worker:
        first = await client.generate("hi", model=MODEL, request_id="same-id-1")
        events = [
            e async for e in client.stream_generate("hi", model=MODEL, request_id="same-id-1")
        ]
    assert chat.calls == 1
    assert _count(worker, "ok") == 1
    assert _count(worker, "replayed") == 1
    assert len(events) == 1  # the stored final answer, replayed
    replay = events[0]
    assert isinstance(replay, GenerateResult)
    assert replay.text == first.text == "Hello, world"


async def test_a_retryable_failure_goes_through_the_retry_topic_and_succeeds(
    settings: WorkerSettings, client: FleetClient
) -> None:
    chat = ScriptedChat(failures=[ErrorCode.RATE_LIMIT], retry_after_s=0.5)
    settings = msgspec.structs.replace(
        settings, retry=RetryPolicy(max_retries=2, tiers_s=(0.5, 1.0))
    )
    async with running(settings, chat) as worker:
        events = [e async for e in client.stream_generate("hi", model=MODEL)]
    final = events[-1]
    assert isinstance(final, GenerateResult)
    assert final.text == "Hello, world"
    assert final.attempt == 1  # the second attempt answered
    assert not any(isinstance(e, StreamRestarted) for e in events)  # attempt 0 sent nothing
    assert chat.calls == 2
    assert _count(worker, "retried") == 1


async def test_exhausted_retries_end_in_an_error_reply_and_a_dead_letter(
    settings: WorkerSettings, client: FleetClient, infra: Infra
) -> None:
    chat = ScriptedChat(failures=[ErrorCode.PROVIDER_DOWN] * 5)
    settings = msgspec.structs.replace(settings, retry=RetryPolicy(max_retries=2, tiers_s=(0.2,)))
    async with running(settings, chat):
        with pytest.raises(FleetRequestError) as info:
            await client.generate("hi", model=MODEL)
    assert info.value.code is ErrorCode.PROVIDER_DOWN
    assert info.value.retryable
    assert chat.calls == 3  # the first try and two retries
    dead = await read_dead_letters(infra, settings.namespace, expected=1)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers[Header.DLQ_REASON] == b"retries_exhausted"
    assert headers[Header.DLQ_DETAIL].decode().startswith("provider_down: ")
    assert headers[Header.RETRY_COUNT] == b"2"


async def test_a_non_retryable_failure_is_answered_at_once(
    settings: WorkerSettings, client: FleetClient
) -> None:
    chat = ScriptedChat(failures=[ErrorCode.AUTH])
    async with running(settings, chat):
        with pytest.raises(FleetRequestError) as info:
            await client.generate("hi", model=MODEL)
    assert info.value.code is ErrorCode.AUTH
    assert not info.value.retryable
    assert chat.calls == 1


async def test_a_context_overflow_is_answered_once_without_the_retry_topics(
    settings: WorkerSettings, client: FleetClient
) -> None:
    chat = ScriptedChat(failures=[ErrorCode.CONTEXT_LENGTH_EXCEEDED])
    async with running(settings, chat) as worker:
        with pytest.raises(FleetRequestError) as info:
            await client.generate("a very long prompt", model=MODEL)
    assert info.value.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert not info.value.retryable
    assert chat.calls == 1
    assert _count(worker, "retried") == 0


async def test_a_deadline_says_whether_the_answer_had_begun(
    settings: WorkerSettings, client: FleetClient
) -> None:
    slow_start = ScriptedChat(delay_s=3.0)
    async with running(settings, slow_start):
        with pytest.raises(DeadlineExceeded) as silent:
            await client.generate("hi", model=MODEL, timeout_s=1.0)
    assert not silent.value.started
    assert "no worker had started answering it" in str(silent.value)
    talker = ScriptedChat(pieces=("word ",) * 100, piece_delay_s=0.05)  # 5 s in all
    async with running(settings, talker):
        with pytest.raises(DeadlineExceeded) as cut:
            async for _ in client.stream_generate("talk", model=MODEL, timeout_s=1.5):
                pass
    assert cut.value.started
    assert cut.value.attempt == 0
    assert "the answer had begun" in str(cut.value)
    assert "of attempt 0) but did not finish" in str(cut.value)


@pytest.mark.slow
async def test_a_model_call_three_poll_intervals_long_does_not_cost_the_group_membership(
    settings: WorkerSettings, client: FleetClient
) -> None:
    # A poll loop blocked by the call would be thrown out of the group after 2 seconds; the
    # call takes 6 (the client enforces max.poll.interval, so the broker allows this short one).
    # aiokafka's heartbeat task wakes at the interval's end, so one interval past it is
    # already caught; 2 s stays twice the 1 s a lane without room holds between polls.
    chat = ScriptedChat(delay_s=6.0)
    settings = msgspec.structs.replace(settings, max_poll_interval_ms=2_000)
    async with running(settings, chat) as worker:
        result = await client.generate("hi", model=MODEL, timeout_s=120)
        assert worker.jobs.revocations == 0
    assert result.text == "Hello, world"
    assert result.attempt == 0
    assert chat.calls == 1


async def test_operators_see_lag_and_job_state(
    settings: WorkerSettings, client: FleetClient
) -> None:
    async with running(settings, ScriptedChat()) as worker:
        await client.generate("hi", model=MODEL, request_id="inspect-me")
        # The worker's own view (its /metrics lag gauge): everything fetched.
        assert set((await worker.jobs.lag()).values()) <= {0}
        for _ in range(100):  # the commit follows the final reply within commit_interval_s
            rows = await consumer_lag(settings)
            if sum(r.committed or 0 for r in rows if r.kind == "generate") == 1:
                break
            await asyncio.sleep(0.1)
    generate = [r for r in rows if r.kind == "generate" and r.source == "interactive"]
    assert len(generate) == settings.partitions
    assert sum(r.end for r in generate) == 1
    assert all(r.lag == 0 for r in generate)
    # The batch lane is listed too, under its own group: nothing sent there.
    batch = [r for r in rows if r.kind == "generate" and r.source == "batch"]
    assert len(batch) == settings.partitions
    assert {r.group for r in batch} == {settings.lane_group("generate", "batch")}
    assert all(r.end == 0 and r.lag == 0 for r in batch)
    state = await job_state(settings, "inspect-me", kind="generate")
    assert (state.done, state.running, state.attempts) == (True, False, 1)
    assert not (await job_state(settings, "never-sent", kind="generate")).attempts


async def test_a_caller_that_stops_listening_stops_the_job(
    settings: WorkerSettings, client: FleetClient
) -> None:
    chat = ScriptedChat(pieces=("word ",) * 100, piece_delay_s=0.05)  # 5 s if left alone
    async with running(settings, chat) as worker:
        stream = client.stream_generate("talk", model=MODEL, request_id="walk-away")
        async with contextlib.aclosing(stream):
            async for event in stream:
                if isinstance(event, TextDelta) and event.seq == 2:
                    break
        await until(lambda: _count(worker, "cancelled") == 1)
        state = await job_state(settings, "walk-away", kind="generate")
    assert chat.cancelled == 1
    assert (state.done, state.running) == (False, False)


async def _until_true(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Return once ``check()`` holds (asked every 50 ms); fail after 20 s."""
    for _ in range(400):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within 20 s")


async def test_a_job_cancelled_before_it_starts_never_runs_and_can_be_resubmitted(
    settings: WorkerSettings, client: FleetClient, redis_client: aioredis.Redis
) -> None:
    chat = ScriptedChat()
    chat.gate = asyncio.Event()  # the first job holds the only slot until the test lets it go
    # One partition, one job at a time: the second request queues behind the first.
    settings = msgspec.structs.replace(settings, partitions=1, concurrency=1)
    ledger = JobKeys.of(settings.namespace, job_ref("generate", client.tenant, "q-1"))

    async def second_request_in_kafka() -> bool:
        rows = await consumer_lag(settings)
        return sum(r.end for r in rows if r.kind == "generate" and r.source == "interactive") == 2

    async def cancel_recorded() -> bool:
        return bool(await redis_client.exists(ledger.cancelled))

    async with running(settings, chat) as worker:
        first = asyncio.create_task(client.generate("first", model=MODEL))
        await until(lambda: chat.calls == 1)
        queued = asyncio.create_task(client.generate("second", model=MODEL, request_id="q-1"))
        await _until_true(second_request_in_kafka, "the second request in Kafka")
        queued.cancel()  # the caller gives up while the job waits in Kafka
        with pytest.raises(asyncio.CancelledError):
            await queued
        # The slot is let go once the worker has recorded the cancel in the ledger.
        await _until_true(cancel_recorded, "the cancel recorded in the ledger")
        chat.gate.set()
        assert (await first).text == "Hello, world"
        await until(lambda: _count(worker, "skipped_cancelled") == 1)
        assert chat.calls == 1
        again = await client.generate("second", model=MODEL, request_id="q-1")
    assert again.text == "Hello, world"  # a new submission of the same id is not cancelled
    assert chat.calls == 2


async def test_jobs_of_a_client_that_went_away_are_dead_lettered_without_running(
    settings: WorkerSettings, infra: Infra
) -> None:
    chat = ScriptedChat()
    # One job at a time: the second is fetched after the first found the topic gone.
    settings = msgspec.structs.replace(settings, kafka_request_timeout_ms=2000, concurrency=1)
    gone = {"topic": f"{settings.namespace}.v1.replies.gone-client", "partition": 0}
    producer = AIOKafkaProducer(**infra.kafka_options())
    async with running(settings, chat):
        await producer.start()
        try:
            for i in range(2):
                request = {
                    "kind": "generate",
                    "request_id": f"orphan-{i}",
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "hi"}],
                    "reply_to": gone,
                }
                await producer.send_and_wait(
                    f"{settings.namespace}.v1.generate.requests",
                    json.dumps(request).encode(),
                    key=b"same-partition",
                )
        finally:
            await producer.stop()
        dead = await read_dead_letters(infra, settings.namespace, expected=2)
    reasons = sorted(dict(r.headers)[Header.DLQ_REASON].decode() for r in dead)
    # The broker says the reply topic does not exist before the first job runs.
    assert reasons == ["reply_topic_gone", "reply_topic_gone"]
    assert chat.calls == 0  # nothing was run for nobody


async def test_a_forged_tenant_is_refused_end_to_end(
    settings: WorkerSettings, infra: Infra
) -> None:
    keys = {"acme": Secret("acme-signing-key"), "globex": Secret("globex-signing-key")}
    settings = msgspec.structs.replace(settings, tenant_keys=keys)
    chat = ScriptedChat()

    def client(key: str) -> FleetClient:
        return infra.client(namespace=settings.namespace, tenant="acme", tenant_key=key)

    async with running(settings, chat):
        async with client("acme-signing-key") as acme:
            answer = await acme.generate("hi", model=MODEL)
        async with client("globex-signing-key") as forger:  # globex posing as acme
            with pytest.raises(FleetRequestError) as info:
                await forger.generate("hi", model=MODEL)
    assert answer.text == "Hello, world"
    assert info.value.code is ErrorCode.AUTH
    assert "does not match tenant 'acme'" in str(info.value)
    assert chat.calls == 1
