"""Every outcome of one job in the runner, without a broker: an in-memory publisher takes
the replies, dead letters and retries (the ledger cases use the real Redis)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as aioredis
from aiokafka.structs import ConsumerRecord

from contracts import (
    CancelJob,
    ChatMessage,
    ConfigError,
    DeadLetterReason,
    ErrorCode,
    ErrorReply,
    GenerateRequest,
    GenerateResult,
    Header,
    TextDelta,
)
from contracts.codec import encode
from contracts.envelope import ReplyAddress
from contracts.replies import ReplyChunk
from contracts.signing import sign
from providers.call_retry import CallRetryPolicy
from providers.errors import ProviderError
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.memory_publisher import MemoryPublisher
from workers.dead_letter import DeadLetters
from workers.handlers.generate import GenerateHandler
from workers.idempotency import JobLedger
from workers.metrics import Outcome, WorkerMetrics
from workers.retry import RedeliveryScheduler, RetryPolicy
from workers.runtime.publisher import TopicProbe
from workers.runtime.records import Record
from workers.runtime.reply_stream import ChunkStamper
from workers.runtime.runner import JobRunner

NAMESPACE = "unit"
REQUESTS = "unit.v1.generate.requests"
DEAD = "unit.v1.generate.dead-letter"
REPLIES = "unit.v1.replies.caller"
MODEL = "scripted-model"


# Redis that stays away fails a claim in milliseconds here, not after the real ~15 s.
FAST_LEDGER_RETRY = CallRetryPolicy(max_attempts=2, base_delay_s=0.01)


class Fixture:
    def __init__(
        self,
        chat: ScriptedChat | None = None,
        ledger: JobLedger | None = None,
        ledger_retry: CallRetryPolicy = FAST_LEDGER_RETRY,
        topic_probe: TopicProbe | None = None,
        tenant_keys: dict[str, bytes] | None = None,
    ) -> None:
        self.chat = chat or ScriptedChat()
        self.publisher = MemoryPublisher()
        self.metrics = WorkerMetrics("generate")
        self.runner = JobRunner(
            kind="generate",
            handler=GenerateHandler(ModelRouter("chat", [self.chat])),
            producer=self.publisher,
            dead_letters=DeadLetters(self.publisher, DEAD),
            max_payload_bytes=100_000,
            metrics=self.metrics,
            ledger=ledger,
            retries=RedeliveryScheduler(
                self.publisher, "generate", NAMESPACE, RetryPolicy(max_retries=2)
            ),
            ledger_retry=ledger_retry,
            topic_probe=topic_probe,
            tenant_keys=tenant_keys,
        )

    def count(self, outcome: Outcome) -> float:
        value = self.metrics.registry.get_sample_value(
            "fleet_jobs_total", {"kind": "generate", "outcome": outcome.value}
        )
        return value or 0.0

    def dead_letters(self) -> list[tuple[str, str]]:
        return [
            (s.headers[Header.DLQ_REASON].decode(), s.headers[Header.DLQ_DETAIL].decode())
            for s in self.publisher.on(DEAD)
        ]


def _request(request_id: str = "job-1", **fields: object) -> GenerateRequest:
    return GenerateRequest(
        request_id=request_id,
        model=MODEL,
        messages=[ChatMessage(role="user", content="hi")],
        reply_to=ReplyAddress(topic=REPLIES, partition=0),
        **fields,  # type: ignore[arg-type]
    )


def _record(value: bytes, headers: list[tuple[str, bytes]] | None = None) -> Record:
    return ConsumerRecord(REQUESTS, 0, 7, 0, 0, b"key", value, None, 3, len(value), headers or [])


def _final(chunks: list[ReplyChunk]) -> ReplyChunk:
    assert chunks, "no reply was sent"
    return chunks[-1]


async def test_ok_streams_deltas_in_order_then_the_result() -> None:
    job = Fixture()
    await job.runner.run(_record(encode(_request())))
    chunks = job.publisher.replies(REPLIES)
    assert [c.seq for c in chunks] == [0, 1, 2, 3]
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == "Hello, world"
    assert isinstance(chunks[-1], GenerateResult)
    assert job.count(Outcome.OK) == 1
    assert job.dead_letters() == []
    tokens = job.metrics.registry.get_sample_value(
        "fleet_tokens_total", {"kind": "generate", "type": "output"}
    )
    assert tokens == 3  # ScriptedChat's usage: one token per piece


async def test_a_request_of_a_newer_schema_version_is_refused_with_a_dead_letter() -> None:
    job = Fixture()
    await job.runner.run(_record(encode(_request(schema_version=2))))
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.UNSUPPORTED_VERSION
    assert "upgrade the workers" in detail
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.INVALID_INPUT
    assert job.chat.calls == 0


async def test_undecodable_bytes_are_dead_lettered_with_no_reply() -> None:
    job = Fixture()
    await job.runner.run(_record(b"\xc1 not msgpack"))
    assert [reason for reason, _ in job.dead_letters()] == [DeadLetterReason.UNDECODABLE]
    assert job.publisher.on(REPLIES) == []
    assert job.count(Outcome.REJECTED) == 1
    assert job.chat.calls == 0


async def test_a_schema_violation_is_dead_lettered_and_answered_when_the_address_reads() -> None:
    job = Fixture()
    bad = msgspec.msgpack.encode(
        {"kind": "generate", "request_id": "job-1", "model": MODEL, "messages": [],
         "reply_to": {"topic": REPLIES, "partition": 0}}
    )  # fmt: skip
    await job.runner.run(_record(bad))
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.SCHEMA
    assert "messages" in detail
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.INVALID_INPUT


async def test_a_job_past_its_deadline_is_answered_with_timeout_and_not_run() -> None:
    job = Fixture()
    past = int(time.time() * 1000) - 1000
    await job.runner.run(_record(encode(_request(deadline_ms=past))))
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.TIMEOUT
    assert job.chat.calls == 0
    assert job.count(Outcome.EXPIRED) == 1


async def test_a_retryable_failure_is_parked_on_a_retry_topic() -> None:
    job = Fixture(ScriptedChat(failures=[ErrorCode.PROVIDER_DOWN]))
    await job.runner.run(_record(encode(_request())))
    (parked,) = job.publisher.on("unit.v1.generate.retry-1s")
    assert parked.headers[Header.RETRY_COUNT] == b"1"
    assert job.publisher.on(REPLIES) == []  # the caller keeps waiting for the retry
    assert job.count(Outcome.RETRIED) == 1
    redelivered = job.metrics.registry.get_sample_value(
        "fleet_redeliveries_total", {"kind": "generate", "delay_s": "1"}
    )
    assert redelivered == 1


async def test_exhausted_retries_are_dead_lettered_and_the_caller_gets_the_error() -> None:
    job = Fixture(ScriptedChat(failures=[ErrorCode.RATE_LIMIT]))
    record = _record(encode(_request()), [(Header.RETRY_COUNT, b"2")])
    await job.runner.run(record)
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.RETRIES_EXHAUSTED
    assert detail.startswith("rate_limit: ")
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.RATE_LIMIT
    assert final.retryable


class _Raising(ScriptedChat):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def stream_chat(self, messages, params):  # type: ignore[no-untyped-def]
        raise self.error
        yield  # a generator, like the real ones


async def test_a_handler_that_crashes_is_dead_lettered_and_answered_internal() -> None:
    job = Fixture(_Raising(KeyError("surprise")))
    await job.runner.run(_record(encode(_request())))
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.HANDLER_FAILED
    assert "surprise" in detail
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.INTERNAL
    assert job.count(Outcome.ERROR) == 1


async def test_a_config_error_is_answered_invalid_input_without_a_dead_letter() -> None:
    job = Fixture(_Raising(ConfigError("temperature is not allowed here")))
    await job.runner.run(_record(encode(_request())))
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.INVALID_INPUT
    assert "temperature" in final.message
    assert job.dead_letters() == []


async def test_a_non_retryable_provider_error_is_answered_without_a_retry() -> None:
    job = Fixture(_Raising(ProviderError(ErrorCode.AUTH, "scripted.chat", "bad key")))
    await job.runner.run(_record(encode(_request())))
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.AUTH
    assert job.publisher.on("unit.v1.generate.retry-1s") == []
    assert job.dead_letters() == []


def _probe(answer: bool | None) -> TopicProbe:
    async def exists(topic: str) -> bool | None:
        return answer

    return exists


async def test_an_unreachable_reply_topic_dead_letters_the_job_and_skips_the_next() -> None:
    job = Fixture(topic_probe=_probe(False))  # the broker says the topic is gone
    job.publisher.unreachable.add(REPLIES)
    await job.runner.run(_record(encode(_request("job-1"))))
    await job.runner.run(_record(encode(_request("job-2"))))
    reasons = [reason for reason, _ in job.dead_letters()]
    assert reasons == [DeadLetterReason.REPLY_UNDELIVERABLE, DeadLetterReason.REPLY_TOPIC_GONE]
    assert job.chat.calls == 1  # the second job was not run for nobody


async def test_a_job_cancelled_while_it_runs_stops_and_sends_nothing_more() -> None:
    job = Fixture(ScriptedChat(pieces=("a",) * 50, piece_delay_s=0.05))
    running = asyncio.create_task(job.runner.run(_record(encode(_request()))))
    while len(job.publisher.on(REPLIES)) < 2:  # noqa: ASYNC110 (polls the publisher's list)
        await asyncio.sleep(0.01)
    await job.runner.cancel(CancelJob(request_id="job-1", tenant="default"))
    await asyncio.wait_for(running, timeout=10)
    assert job.count(Outcome.CANCELLED) == 1
    assert not any(isinstance(c, GenerateResult) for c in job.publisher.replies(REPLIES))
    assert job.chat.cancelled == 1


@pytest.fixture
async def redis(infra: Infra) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(infra.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def ledger_namespace() -> str:
    return f"unit-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ledger(redis: aioredis.Redis, ledger_namespace: str) -> JobLedger:
    return JobLedger(redis, ledger_namespace, lock_ttl_s=2)


@pytest.mark.redis
async def test_a_finished_job_delivered_again_is_replayed_not_rerun(ledger: JobLedger) -> None:
    job = Fixture(ledger=ledger)
    record = _record(encode(_request()))
    await job.runner.run(record)
    first = job.publisher.replies(REPLIES)[-1]
    await job.runner.run(record)
    replayed = job.publisher.replies(REPLIES)[-1]
    assert job.chat.calls == 1
    assert job.count(Outcome.REPLAYED) == 1
    assert isinstance(replayed, GenerateResult)
    assert replayed == msgspec.structs.replace(first, seq=0)


@pytest.mark.redis
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
async def test_a_job_that_crashed_its_workers_too_often_is_dead_lettered(
    ledger: JobLedger, redis: aioredis.Redis, ledger_namespace: str
) -> None:
    # Four earlier workers each claimed the job and died: nothing released it, each lock
    # was left to expire. Three crashes are retried (max_crash_attempts); not a fourth.
    for _ in range(4):
        await JobLedger(redis, ledger_namespace, lock_ttl_s=0.05).claim("job-1")
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


async def test_a_ledger_that_stays_down_ends_the_job_with_a_typed_error() -> None:
    dead_redis = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens there
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


async def test_a_reply_too_large_for_the_broker_is_a_typed_error_at_once() -> None:
    job = Fixture(ScriptedChat(pieces=("x" * 5000,)))
    job.publisher.max_bytes = 4000
    await job.runner.run(_record(encode(_request("big-1"))))
    ((reason, _),) = job.dead_letters()
    assert reason == DeadLetterReason.REPLY_TOO_LARGE
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.INVALID_INPUT
    assert "too large for one reply message" in final.message
    assert final.seq == 0  # numbered as the refused chunk was: the caller waits for seq 0
    # The caller's reply topic is not taken for gone: its next request is answered.
    job.publisher.max_bytes = 1_048_576
    await job.runner.run(_record(encode(_request("small-1"))))
    assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)


@pytest.mark.parametrize("broker_says", [True, None], ids=["topic exists", "no answer"])
async def test_a_transient_broker_error_redelivers_the_job_and_dead_letters_nothing(
    broker_says: bool | None,
) -> None:
    job = Fixture(topic_probe=_probe(broker_says))
    job.publisher.unreachable.add(REPLIES)  # a broker restarting, a leader moving
    await job.runner.run(_record(encode(_request("job-1"))))
    assert job.dead_letters() == []
    (parked,) = job.publisher.on("unit.v1.generate.retry-1s")
    assert parked.headers[Header.RETRY_COUNT] == b"1"
    job.publisher.unreachable.clear()  # the broker is back
    await job.runner.run(_record(encode(_request("job-2"))))
    assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)
    assert job.chat.calls == 2  # the second job ran: the topic was not taken for gone


KEYS = {"acme": b"acme-secret-key", "globex": b"globex-secret-key"}


def _signed(request: GenerateRequest, key: bytes | None) -> Record:
    value = encode(request)
    headers = [] if key is None else [(Header.TENANT_SIGNATURE, sign(key, value))]
    return _record(value, headers)


async def test_a_request_signed_with_its_tenants_key_runs() -> None:
    job = Fixture(tenant_keys=KEYS)
    await job.runner.run(_signed(_request(tenant="acme"), KEYS["acme"]))
    assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)
    assert job.dead_letters() == []


@pytest.mark.parametrize(
    ("tenant", "key", "why"),
    [
        ("acme", KEYS["globex"], "does not match tenant 'acme'"),  # globex posing as acme
        ("acme", None, "not signed"),
        ("initech", KEYS["acme"], "'initech' is not configured"),
    ],
    ids=["forged", "unsigned", "unknown tenant"],
)
async def test_a_request_whose_tenant_cannot_be_verified_is_refused_with_auth(
    tenant: str, key: bytes | None, why: str
) -> None:
    job = Fixture(tenant_keys=KEYS)
    await job.runner.run(_signed(_request(tenant=tenant), key))
    ((reason, detail),) = job.dead_letters()
    assert reason == DeadLetterReason.TENANT_UNVERIFIED
    assert why in detail
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.AUTH
    assert job.chat.calls == 0  # nothing ran, nothing was read


async def test_a_signature_covers_every_byte_of_the_request() -> None:
    job = Fixture(tenant_keys=KEYS)
    record = _signed(_request(tenant="acme"), KEYS["acme"])
    tampered = encode(_request(tenant="acme", max_tokens=999))
    await job.runner.run(_record(tampered, list(record.headers)))
    ((reason, _),) = job.dead_letters()
    assert reason == DeadLetterReason.TENANT_UNVERIFIED


async def test_another_tenants_cancel_stops_nothing() -> None:
    job = Fixture(ScriptedChat(pieces=("a",) * 20, piece_delay_s=0.01))
    running = asyncio.create_task(job.runner.run(_record(encode(_request()))))
    while not job.publisher.on(REPLIES):  # noqa: ASYNC110 (polls the publisher's list)
        await asyncio.sleep(0.01)
    await job.runner.cancel(CancelJob(request_id="job-1", tenant="someone-else"))
    await asyncio.wait_for(running, timeout=10)
    assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)
    assert job.count(Outcome.CANCELLED) == 0


@pytest.mark.redis
async def test_another_tenants_cancel_of_a_queued_job_is_ignored(ledger: JobLedger) -> None:
    job = Fixture(ledger=ledger)
    request = _request(deadline_ms=int(time.time() * 1000) + 60_000)
    submission = str(request.deadline_ms)
    await job.runner.cancel(
        CancelJob(request_id="job-1", tenant="someone-else", submission=submission)
    )
    await job.runner.run(_record(encode(request)))
    assert job.chat.calls == 1  # its own tenant never cancelled it
    assert job.count(Outcome.SKIPPED_CANCELLED) == 0


def test_the_stamper_numbers_chunks_from_zero() -> None:
    stamper = ChunkStamper("r", 2)
    assert [stamper.next_seq() for _ in range(3)] == [0, 1, 2]
