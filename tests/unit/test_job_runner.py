"""Every outcome of one job in the runner, without a broker (tests/unit/job_runner_harness.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import msgspec
import pytest

from contracts import (
    CancelJob,
    ConfigError,
    DeadLetterReason,
    ErrorCode,
    ErrorReply,
    GenerateResult,
    Header,
    TextDelta,
)
from contracts.codec import encode
from providers.errors import ProviderError
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.job_runner_harness import (
    MODEL,
    REPLIES,
    Fixture,
    _final,
    _probe,
    _Raising,
    _record,
    _request,
)
from workers.handlers.reply_stream import ChunkStamper
from workers.metrics import Outcome


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


async def test_a_deadline_message_says_whether_the_job_ran_before() -> None:
    past = int(time.time() * 1000) - 1000
    fresh = Fixture()
    await fresh.runner.run(_record(encode(_request(deadline_ms=past))))
    first = _final(fresh.publisher.replies(REPLIES))
    assert isinstance(first, ErrorReply)
    assert first.message == (
        "the request's deadline passed while it waited for a worker: it was not run"
    )
    retried = Fixture()
    headers = [
        (Header.RETRY_COUNT, b"3"),
        (Header.RETRY_REASON, b"provider_down: llama-server.chat: HTTP 503 [provider_down]"),
        (Header.RETRY_ATTEMPT, b"3"),
    ]
    await retried.runner.run(_record(encode(_request(deadline_ms=past)), headers))
    last = _final(retried.publisher.replies(REPLIES))
    assert isinstance(last, ErrorReply)
    assert last.code is ErrorCode.TIMEOUT
    assert last.attempt == 3
    assert "before a worker started it" not in last.message
    assert "it had run and failed 3 times (the last time: provider_down: llama-server" in (
        last.message
    )
    assert retried.chat.calls == 0


async def test_a_context_overflow_is_answered_at_once_and_never_retried() -> None:
    overflow = ProviderError(
        ErrorCode.CONTEXT_LENGTH_EXCEEDED, "scripted.chat", "the prompt is 5210 tokens"
    )
    job = Fixture(_Raising(overflow))
    await job.runner.run(_record(encode(_request())))
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert not final.retryable
    assert job.publisher.on("unit.v1.generate.retry-1s") == []
    assert job.dead_letters() == []


async def test_a_retryable_failure_is_parked_on_a_retry_topic() -> None:
    job = Fixture(ScriptedChat(failures=[ErrorCode.PROVIDER_DOWN]))
    await job.runner.run(_record(encode(_request())))
    (parked,) = job.publisher.on("unit.v1.generate.retry-1s")
    assert parked.headers[Header.RETRY_COUNT] == b"1"
    assert parked.headers[Header.RETRY_ATTEMPT] == b"1"  # it ran as attempt 0
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


async def test_a_reply_topic_the_broker_does_not_know_dead_letters_jobs_unrun() -> None:
    job = Fixture(topic_probe=_probe(0))  # the broker says the topic does not exist
    await job.runner.run(_record(encode(_request("job-1"))))
    await job.runner.run(_record(encode(_request("job-2"))))
    reasons = [reason for reason, _ in job.dead_letters()]
    assert reasons == [DeadLetterReason.REPLY_TOPIC_GONE] * 2
    assert job.chat.calls == 0  # nothing was run for nobody
    assert job.publisher.replies(REPLIES) == []


async def test_a_reply_topic_that_vanishes_mid_job_dead_letters_it_and_skips_the_next() -> None:
    answers = iter([1, 0])  # there when the job is admitted, gone when its replies fail
    job = Fixture(topic_probe=lambda topic: _next(answers))
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


async def test_a_reply_too_large_for_the_broker_is_a_typed_error_at_once() -> None:
    job = Fixture(ScriptedChat(pieces=("x" * 5000,)))
    job.publisher.max_bytes = 4000
    await job.runner.run(_record(encode(_request("big-1"))))
    ((reason, _),) = job.dead_letters()
    assert reason == DeadLetterReason.REPLY_TOO_LARGE
    final = _final(job.publisher.replies(REPLIES))
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.INVALID_INPUT
    assert "too large to send back" in final.message
    assert final.seq == 0  # numbered as the refused chunk was: the caller waits for seq 0
    # The caller's reply topic is not taken for gone: its next request is answered.
    job.publisher.max_bytes = 1_048_576
    await job.runner.run(_record(encode(_request("small-1"))))
    assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)


@pytest.mark.parametrize("broker_says", [1, None], ids=["topic exists", "no answer"])
async def test_a_transient_broker_error_redelivers_the_job_and_dead_letters_nothing(
    broker_says: int | None,
) -> None:
    job = Fixture(topic_probe=_probe(broker_says))
    job.publisher.unreachable.add(REPLIES)  # a broker restarting, a leader moving
    await job.runner.run(_record(encode(_request("job-1"))))
    assert job.dead_letters() == []
    (parked,) = job.publisher.on("unit.v1.generate.retry-1s")
    assert parked.headers[Header.RETRY_COUNT] == b"1"
    assert parked.headers[Header.RETRY_ATTEMPT] == b"1"  # it ran as attempt 0
    job.publisher.unreachable.clear()  # the broker is back
    await job.runner.run(_record(encode(_request("job-2"))))
    assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)
    assert job.chat.calls == 2  # the second job ran: the topic was not taken for gone


async def _next(answers: Iterator[int]) -> int | None:
    return next(answers)


def test_the_stamper_numbers_chunks_from_zero() -> None:
    stamper = ChunkStamper("r", 2)
    assert [stamper.next_seq() for _ in range(3)] == [0, 1, 2]
