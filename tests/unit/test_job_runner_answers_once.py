"""One answer per job, on the real Redis: the final reply is stored before it is sent, so a
worker that dies at the send is replayed and not run again; two runs of one job send the
answer of the first to store it; and a job that has answered never gets a timeout after it
(docs/decisions/0028-final-stored-before-sent.md)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import pytest

from contracts import ChatMessage, ErrorReply, GenerateRequest, GenerateResult, TextDelta
from contracts.codec import decode_chunk, encode
from contracts.replies import Final, ReplyChunk
from providers.chat import ChatEvent, ChatParams
from providers.redis_client import RedisClient
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.job_runner_harness import REPLIES, Fixture, _record, _request
from tests.unit.memory_publisher import MemoryPublisher, Sent
from workers.failure_table import ReplyTooLarge
from workers.handlers.reply_stream import ChunkStamper, ReplyStream
from workers.idempotency import AlreadyDone, JobKeys, JobLedger, job_ref
from workers.metrics import Outcome
from workers.settings import ReplyLimits

JOB_1 = job_ref("generate", "default", "job-1")  # what the runner claims job-1 as


class _DiesAtTheFinal(MemoryPublisher):
    """A producer whose worker is killed when the job's final chunk reaches it: as it is
    handed over ("send"), or after, before the broker acknowledged it ("ack")."""

    def __init__(self, when: str) -> None:
        super().__init__()
        self.when = when
        self.reached = asyncio.Event()

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        if topic != REPLIES or not isinstance(decode_chunk(value or b""), Final):
            return await super().send(topic, value, key, partition, timestamp_ms, headers)
        self.reached.set()
        if self.when == "send":
            await asyncio.Event().wait()  # the worker dies here
        self.sent.append(Sent(topic, value, key, partition, dict(headers or [])))
        return asyncio.get_running_loop().create_future()  # never acknowledged


class _Gated(ScriptedChat):
    """A model that starts, then answers only once the test lets it."""

    def __init__(self, pieces: tuple[str, ...] = ("Hello", ", ", "world")) -> None:
        super().__init__(pieces=pieces)
        self.started = asyncio.Event()
        self.go = asyncio.Event()

    async def stream_chat(
        self, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatEvent]:
        self.started.set()
        await self.go.wait()
        async for event in super().stream_chat(messages, params):
            yield event


def _answers(chunks: list[ReplyChunk]) -> list[GenerateResult]:
    return [c for c in chunks if isinstance(c, GenerateResult)]


def _errors(chunks: list[ReplyChunk]) -> list[ErrorReply]:
    return [c for c in chunks if isinstance(c, ErrorReply)]


def _past_its_deadline(request: GenerateRequest) -> GenerateRequest:
    """The same job delivered again once its deadline is behind it (its deadline moved into
    the past here, where a real redelivery would wait for the clock)."""
    return msgspec.structs.replace(request, deadline_ms=int(time.time() * 1000) - 1000)


@pytest.mark.redis
@pytest.mark.redis_cluster
@pytest.mark.parametrize("when", ["send", "ack"])
async def test_a_worker_killed_at_the_final_leaves_it_replayed_not_run_again(
    when: str, ledger: JobLedger, redis: RedisClient, ledger_namespace: str
) -> None:
    publisher = _DiesAtTheFinal(when)
    killed = Fixture(ledger=ledger, publisher=publisher)
    record = _record(encode(_request()))
    dying = asyncio.create_task(killed.runner.run(record))
    await publisher.reached.wait()
    # Killed: cancelled, as near to kill -9 as one process gets. Its finally blocks run
    # (a job that was not stored is released, not left for its lock to expire), so a
    # second run would come at once rather than after the lock's TTL.
    dying.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dying
    # The next worker gets the redelivery.
    survivor = Fixture(ledger=JobLedger(redis, ledger_namespace, lock_ttl_s=2))
    await survivor.runner.run(record)
    assert killed.chat.calls + survivor.chat.calls == 1
    assert survivor.count(Outcome.REPLAYED) == 1
    # Replayed as a stream of its own (a new attempt): the text, then the final.
    *deltas, answer = survivor.publisher.replies(REPLIES)
    assert isinstance(answer, GenerateResult)
    assert answer.text == "Hello, world"
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == answer.text
    assert {c.attempt for c in deltas} == {answer.attempt}


@pytest.mark.redis
async def test_an_answered_job_delivered_after_its_deadline_is_replayed_not_timed_out(
    ledger: JobLedger,
) -> None:
    job = Fixture(ledger=ledger)
    request = _request(deadline_ms=int(time.time() * 1000) + 60_000)
    await job.runner.run(_record(encode(request)))
    # Its worker was killed before it committed: the job comes again, its deadline gone.
    await job.runner.run(_record(encode(_past_its_deadline(request))))
    replies = job.publisher.replies(REPLIES)
    assert _errors(replies) == []
    assert len(_answers(replies)) == 2  # the answer, and its replay
    assert job.count(Outcome.REPLAYED) == 1
    assert job.count(Outcome.EXPIRED) == 0
    assert job.chat.calls == 1


@pytest.mark.redis
async def test_a_delivery_past_its_deadline_waits_for_the_run_in_flight_and_gets_its_answer(
    redis: RedisClient, ledger_namespace: str
) -> None:
    # One worker runs the job; a second delivery of it (a rebalance, a retry copy) comes
    # after its deadline, while the first still runs.
    running = Fixture(_Gated(), ledger=JobLedger(redis, ledger_namespace, lock_ttl_s=2))
    late = Fixture(ledger=JobLedger(redis, ledger_namespace, lock_ttl_s=2, poll_s=0.01))
    request = _request(deadline_ms=int(time.time() * 1000) + 60_000)
    first = asyncio.create_task(running.runner.run(_record(encode(request))))
    assert isinstance(running.chat, _Gated)
    await running.chat.started.wait()
    second = asyncio.create_task(late.runner.run(_record(encode(_past_its_deadline(request)))))
    running.chat.go.set()
    await asyncio.gather(first, second)
    late_replies = late.publisher.replies(REPLIES)
    assert _errors(late_replies) == []
    (answer,) = _answers(late_replies)
    assert answer.text == "Hello, world"
    assert late.count(Outcome.REPLAYED) == 1
    assert running.chat.calls + late.chat.calls == 1


@pytest.mark.redis
async def test_a_timeout_is_not_kept_so_a_resubmission_with_a_later_deadline_runs(
    ledger: JobLedger,
) -> None:
    job = Fixture(ledger=ledger)
    request = _request(deadline_ms=int(time.time() * 1000) + 60_000)
    await job.runner.run(_record(encode(_past_its_deadline(request))))
    (expired,) = job.publisher.replies(REPLIES)
    assert isinstance(expired, ErrorReply)
    assert job.count(Outcome.EXPIRED) == 1
    await job.runner.run(_record(encode(request)))  # the lock was released, not left to expire
    assert isinstance(job.publisher.replies(REPLIES)[-1], GenerateResult)
    assert job.chat.calls == 1


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_a_run_whose_lock_lapsed_sends_the_answer_stored_first(
    redis: RedisClient, ledger_namespace: str
) -> None:
    # Worker A runs the job; Redis loses its lock (a restart that outlasted the lock's TTL),
    # worker B takes the job over and answers first. A's own answer must not follow B's.
    a = Fixture(_Gated(pieces=("from A",)), ledger=JobLedger(redis, ledger_namespace))
    b = Fixture(ScriptedChat(pieces=("from B",)), ledger=JobLedger(redis, ledger_namespace))
    record = _record(encode(_request()))
    first = asyncio.create_task(a.runner.run(record))
    assert isinstance(a.chat, _Gated)
    await a.chat.started.wait()
    await redis.delete(JobKeys.of(ledger_namespace, JOB_1).lock)
    await b.runner.run(record)
    (b_answer,) = _answers(b.publisher.replies(REPLIES))
    assert (b_answer.text, b_answer.attempt) == ("from B", 1)
    a.chat.go.set()
    await first
    # A sends B's answer as a stream of its own, above both runs' attempts: a caller that
    # followed either run starts over and reads one answer, streamed and then final.
    *_, restart, a_answer = a.publisher.replies(REPLIES)
    assert isinstance(restart, TextDelta)
    assert (restart.text, restart.attempt, restart.seq) == ("from B", 2, 0)
    assert isinstance(a_answer, GenerateResult)
    assert (a_answer.text, a_answer.attempt, a_answer.seq) == ("from B", 2, 1)
    assert [c.text for c in _answers(a.publisher.replies(REPLIES))] == ["from B"]
    assert await JobLedger(redis, ledger_namespace).claim(JOB_1) == AlreadyDone(encode(b_answer))


@pytest.mark.redis
@pytest.mark.redis_cluster
async def test_the_first_final_stored_stays(ledger: JobLedger) -> None:
    assert await ledger.finish(JOB_1, b"first") is None
    assert await ledger.finish(JOB_1, b"second") == b"first"
    assert await ledger.claim(JOB_1) == AlreadyDone(b"first")


async def test_a_final_too_large_for_one_message_is_refused_before_it_is_kept() -> None:
    # Kept first and refused by the broker after, it would be the job's answer for good,
    # one that no delivery could send.
    kept: list[Final] = []

    async def keep(final: Final) -> None:
        kept.append(final)

    publisher = MemoryPublisher()
    stream = ReplyStream(publisher, _request().reply_to, limits=ReplyLimits(part_bytes=2_000))
    stream.keep_finals(keep)
    stamper = ChunkStamper("job-1", 0)
    big = GenerateResult(**stamper.head(), text="x" * 3_000, model="m")
    with pytest.raises(ReplyTooLarge, match=r"replies.part_bytes = 2000"):
        await stream.send(big)
    assert kept == []
    assert publisher.sent == []
