"""A job parked for a retry comes back on the lane it came on: the retry header names the
lane, the tier's forwarder follows it, and `fleet dlq replay` sends a batch job's dead
letter back to the batch lane."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord

from contracts import ContractError, DeadLetterReason, ErrorCode, Header, Lane
from contracts.codec import encode
from contracts.names import batch_request_topic, request_topic, retry_topic
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.job_runner_harness import NAMESPACE, Fixture, _record, _request
from tests.unit.memory_publisher import MemoryPublisher
from transport.records import Record
from workers.dead_letter import DeadLetters
from workers.metrics import WorkerMetrics
from workers.ops.dead_letter_replay import replay_lane
from workers.ops.dead_letters import parse_dead_letter
from workers.retry import RedeliveryForwarder, retry_lane

TIER = retry_topic("generate", 1.0, NAMESPACE)


@pytest.mark.parametrize("lane", ["interactive", "batch"])
async def test_a_retryable_failure_is_parked_naming_its_lane(lane: Lane) -> None:
    job = Fixture(ScriptedChat(failures=[ErrorCode.PROVIDER_DOWN]))
    await job.runner.run(_record(encode(_request())), lane)
    (parked,) = job.publisher.on(TIER)
    assert parked.headers[Header.RETRY_LANE] == lane.encode()


def test_the_retry_lane_header_is_read_strictly() -> None:
    assert retry_lane([]) == "interactive"  # parked before there were lanes
    assert retry_lane([(Header.RETRY_LANE, b"batch")]) == "batch"
    with pytest.raises(ContractError, match="not a lane"):
        retry_lane([(Header.RETRY_LANE, b"urgent")])


class _OneBatchConsumer:
    """The part of AIOKafkaConsumer a forwarder uses: one fetch of ``records``, then none."""

    def __init__(self, records: list[Record]) -> None:
        self._records = records
        self._expected = len(records)
        self.committed: list[dict[TopicPartition, int]] = []
        self.all_committed = asyncio.Event()

    def subscribe(self, topics: list[str]) -> None:
        pass

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[Record]]:
        records, self._records = self._records, []
        if not records:
            await asyncio.sleep(0.01)
            return {}
        return {TopicPartition(TIER, 0): records}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)
        if len(self.committed) == self._expected:
            self.all_committed.set()


def _parked(offset: int, lane: bytes | None) -> Record:
    headers = [(Header.RETRY_NOT_BEFORE_MS, b"0")]
    if lane is not None:
        headers.append((Header.RETRY_LANE, lane))
    return ConsumerRecord(TIER, 0, offset, 0, 0, b"key", b"job", None, 3, 3, headers)


def _forwarder(
    consumer: _OneBatchConsumer, publisher: MemoryPublisher, dead_letter_topic: str
) -> RedeliveryForwarder:
    """A 1 s tier's forwarder of generate jobs over the fakes."""
    return RedeliveryForwarder(
        consumer=cast(AIOKafkaConsumer, consumer),
        producer=publisher,
        kind="generate",
        namespace=NAMESPACE,
        source=TIER,
        dead_letters=DeadLetters(publisher, dead_letter_topic, WorkerMetrics("generate")),
    )


async def test_the_forwarder_sends_each_parked_job_back_to_its_lane() -> None:
    publisher = MemoryPublisher()
    dead = f"{NAMESPACE}.v1.generate.dead-letter"
    records = [_parked(0, b"batch"), _parked(1, None), _parked(2, b"urgent")]
    consumer = _OneBatchConsumer(records)
    forwarder = _forwarder(consumer, publisher, dead)
    task = asyncio.create_task(forwarder.run())
    await asyncio.wait_for(consumer.all_committed.wait(), timeout=5)
    forwarder.stop()
    await task
    assert [s.topic for s in publisher.sent] == [
        batch_request_topic("generate", NAMESPACE),
        request_topic("generate", NAMESPACE),
        dead,  # a lane the fleet does not have: not a record it parked
    ]


class _BrokerAwayOnce(MemoryPublisher):
    """Kafka does not take the first send to ``topic`` (a broker restarting), then does."""

    def __init__(self, topic: str) -> None:
        super().__init__(unreachable=[topic])
        self.failed = 0

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        try:
            return await super().send(topic, *args, **kwargs)
        except KafkaTimeoutError:
            self.failed += 1
            self.unreachable.discard(topic)
            raise


async def test_the_forwarder_sends_again_while_the_broker_does_not_take_a_parked_job() -> None:
    target = request_topic("generate", NAMESPACE)
    publisher = _BrokerAwayOnce(target)
    consumer = _OneBatchConsumer([_parked(0, None)])
    forwarder = _forwarder(consumer, publisher, "unused")
    task = asyncio.create_task(forwarder.run())
    committed = asyncio.create_task(consumer.all_committed.wait())
    await asyncio.wait({task, committed}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert not task.done(), "the forwarder ended instead of sending again"
    forwarder.stop()
    await task
    assert publisher.failed == 1
    assert [s.topic for s in publisher.sent] == [target]
    assert consumer.committed == [{TopicPartition(TIER, 0): 1}]


class _LaneTooSmall(MemoryPublisher):
    """The lane's topic takes less than the retry tier took: the parked job never fits."""

    def __init__(self, lane_topic: str) -> None:
        super().__init__()
        self._lane_topic = lane_topic

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        if topic == self._lane_topic:
            raise MessageSizeTooLargeError(f"{topic} takes at most 100 bytes")
        return await super().send(topic, *args, **kwargs)


async def test_a_parked_job_its_lane_refuses_for_good_is_dead_lettered_not_retried() -> None:
    target = request_topic("generate", NAMESPACE)
    publisher = _LaneTooSmall(target)
    consumer = _OneBatchConsumer([_parked(0, None)])
    forwarder = _forwarder(consumer, publisher, "dead")
    task = asyncio.create_task(forwarder.run())
    await asyncio.wait_for(consumer.all_committed.wait(), timeout=10)
    forwarder.stop()
    await task
    (letter,) = publisher.on("dead")
    assert letter.headers[Header.DLQ_REASON] == DeadLetterReason.OVERSIZED.value.encode()
    assert consumer.committed == [{TopicPartition(TIER, 0): 1}]  # the tier moves on


def _dead_letter(source_topic: str, extra: list[tuple[str, bytes]] | None = None) -> Record:
    value = encode(_request())
    headers = [(Header.DLQ_SOURCE_TOPIC, source_topic.encode()), *(extra or [])]
    dead = f"{NAMESPACE}.v1.generate.dead-letter"
    return ConsumerRecord(dead, 0, 0, 0, 0, b"key", value, None, 3, len(value), headers)


def test_a_dead_letter_is_replayed_to_the_lane_it_came_from() -> None:
    def lane_of(record: Record) -> Lane:
        return replay_lane(parse_dead_letter("generate", record), "generate", NAMESPACE)

    assert lane_of(_dead_letter(batch_request_topic("generate", NAMESPACE))) == "batch"
    assert lane_of(_dead_letter(request_topic("generate", NAMESPACE))) == "interactive"
    # Dead-lettered by a retry tier's forwarder: its retry header says which lane.
    assert lane_of(_dead_letter(TIER, [(Header.RETRY_LANE, b"batch")])) == "batch"
    assert lane_of(_dead_letter(TIER, [(Header.RETRY_LANE, b"urgent")])) == "interactive"
