"""The failure table (workers/failure_table.py): what each failure comes to, and that every
dead letter, whoever publishes it, is counted."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord

from contracts.codec import encode
from contracts.control import CancelJob
from contracts.errors import ConfigError, ContractError, ContractViolation, ErrorCode
from contracts.names import DeadLetterReason, Header, control_topic, retry_topic
from providers.errors import ProviderError
from tests.unit.job_runner_harness import Fixture, _Raising, _request
from tests.unit.job_runner_harness import _record as _record_of
from tests.unit.memory_publisher import MemoryPublisher
from transport.records import Record
from workers.control import ControlListener
from workers.dead_letter import DeadLetters
from workers.failure_table import Failure, ReplyTooLarge, failure_of
from workers.idempotency import LedgerUnavailable
from workers.metrics import WorkerMetrics
from workers.retry import RedeliveryForwarder

NAMESPACE = "unit"
DEAD = f"{NAMESPACE}.v1.generate.dead-letter"


@pytest.mark.parametrize("violation", list(ContractViolation))
def test_every_contract_violation_has_its_dead_letter_reason(
    violation: ContractViolation,
) -> None:
    assert DeadLetterReason.of(violation).value == violation.value


@pytest.mark.parametrize("violation", list(ContractViolation))
def test_a_contract_error_is_dead_lettered_as_its_violation(violation: ContractViolation) -> None:
    failure = failure_of(ContractError("bad", reason=violation))
    assert failure == Failure(
        ErrorCode.INVALID_INPUT, DeadLetterReason.of(violation), redeliver=False
    )


def test_a_retryable_provider_error_is_redelivered_then_dead_lettered() -> None:
    failure = failure_of(ProviderError(ErrorCode.RATE_LIMIT, "p.chat", "slow down"))
    assert failure == Failure(
        ErrorCode.RATE_LIMIT, DeadLetterReason.RETRIES_EXHAUSTED, redeliver=True
    )


def test_a_provider_error_not_worth_a_retry_is_only_answered() -> None:
    failure = failure_of(ProviderError(ErrorCode.AUTH, "p.chat", "bad key"))
    assert failure == Failure(ErrorCode.AUTH, None, redeliver=False)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        # The most specific type the table names wins over its base's entry.
        (
            LedgerUnavailable("Redis is unavailable"),
            Failure(ErrorCode.PROVIDER_DOWN, DeadLetterReason.LEDGER_UNAVAILABLE, False),
        ),
        (
            MessageSizeTooLargeError("too big"),
            Failure(ErrorCode.INVALID_INPUT, DeadLetterReason.REPLY_TOO_LARGE, False),
        ),
        (
            ReplyTooLarge("too big"),
            Failure(ErrorCode.INVALID_INPUT, DeadLetterReason.REPLY_TOO_LARGE, False),
        ),
        (
            KafkaTimeoutError("no metadata"),
            Failure(ErrorCode.PROVIDER_DOWN, DeadLetterReason.REPLY_UNDELIVERABLE, True),
        ),
        (ConfigError("not here"), Failure(ErrorCode.INVALID_INPUT, None, False)),
        (
            KeyError("surprise"),
            Failure(ErrorCode.INTERNAL, DeadLetterReason.HANDLER_FAILED, False),
        ),
    ],
    ids=["ledger", "message size", "reply bound", "broker", "config", "bug"],
)
def test_each_failure_comes_to_its_entry(exc: Exception, expected: Failure) -> None:
    assert failure_of(exc) == expected


def _dead_letters_counted(metrics: WorkerMetrics, reason: DeadLetterReason) -> float:
    value = metrics.registry.get_sample_value(
        "fleet_dead_letters_total", {"kind": metrics.kind, "reason": reason.value}
    )
    return value or 0.0


class _Fetches:
    """The part of AIOKafkaConsumer the forwarder and the control listener use: one fetch
    of ``records``, then none."""

    def __init__(self, topic: str, records: list[Record]) -> None:
        self._partition = TopicPartition(topic, 0)
        self._records = records
        self.fetched = asyncio.Event()

    def subscribe(self, topics: list[str]) -> None:
        pass

    def assign(self, partitions: list[TopicPartition]) -> None:
        pass

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        pass

    async def position(self, partition: TopicPartition) -> int:
        return 0

    async def getmany(
        self, *_partitions: TopicPartition, **_: Any
    ) -> dict[TopicPartition, list[Record]]:
        records, self._records = self._records, []
        if not records:
            self.fetched.set()
            await asyncio.sleep(0.01)
            return {}
        return {self._partition: records}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        pass


def _record(topic: str, value: bytes, headers: list[tuple[str, bytes]]) -> Record:
    return ConsumerRecord(topic, 0, 4, 0, 0, b"key", value, None, 3, len(value), headers)


async def test_the_forwarders_dead_letter_of_a_bad_header_is_counted() -> None:
    publisher = MemoryPublisher()
    metrics = WorkerMetrics("generate")
    tier = retry_topic("generate", 1.0, NAMESPACE)
    consumer = _Fetches(tier, [_record(tier, b"job", [(Header.RETRY_LANE, b"urgent")])])
    forwarder = RedeliveryForwarder(
        consumer=cast(AIOKafkaConsumer, consumer),
        producer=publisher,
        kind="generate",
        namespace=NAMESPACE,
        source=tier,
        dead_letters=DeadLetters(publisher, DEAD, metrics),
    )
    task = asyncio.create_task(forwarder.run())
    await asyncio.wait_for(consumer.fetched.wait(), timeout=5)
    forwarder.stop()
    await task
    (dead,) = publisher.on(DEAD)
    assert dead.headers[Header.DLQ_REASON] == b"bad_header"
    assert _dead_letters_counted(metrics, DeadLetterReason.BAD_HEADER) == 1


async def test_the_control_listeners_dead_letter_of_a_bad_message_is_counted() -> None:
    publisher = MemoryPublisher()
    metrics = WorkerMetrics("generate")
    topic = control_topic("generate", NAMESPACE)
    consumer = _Fetches(topic, [_record(topic, b"\xc1", [])])
    cancels: list[CancelJob] = []

    async def on_cancel(message: CancelJob) -> None:
        cancels.append(message)

    listener = ControlListener(
        cast(AIOKafkaConsumer, consumer),
        topic,
        on_cancel,
        dead_letters=DeadLetters(publisher, DEAD, metrics),
    )
    task = asyncio.create_task(listener.run())
    await asyncio.wait_for(consumer.fetched.wait(), timeout=5)
    listener.stop()
    await task
    (dead,) = publisher.on(DEAD)
    assert dead.headers[Header.DLQ_REASON] == b"undecodable"
    assert _dead_letters_counted(metrics, DeadLetterReason.UNDECODABLE) == 1
    assert cancels == []


async def test_the_runners_dead_letters_are_counted() -> None:
    job = Fixture(_Raising(KeyError("surprise")))
    await job.runner.run(_record_of(encode(_request())))
    assert [reason for reason, _ in job.dead_letters()] == ["handler_failed"]
    assert _dead_letters_counted(job.metrics, DeadLetterReason.HANDLER_FAILED) == 1
