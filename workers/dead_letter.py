"""Dead-letter publishing: the original bytes, plus the reason and where they came from.
Every dead letter of a worker goes through here, and is counted here."""

from __future__ import annotations

from contracts.names import Header
from transport.publisher import Publisher
from transport.records import Record
from workers.failure_table import Failure
from workers.metrics import WorkerMetrics


class DeadLetters:
    def __init__(self, producer: Publisher, topic: str, metrics: WorkerMetrics) -> None:
        self._producer = producer
        self._metrics = metrics
        self.topic = topic

    async def publish(self, record: Record, failure: Failure, detail: str) -> None:
        """Store the message with the failure's reason, and count it (``fleet_dead_letters``);
        returns once Kafka has it. A failure without a reason keeps no dead letter."""
        if failure.reason is None:
            return
        original = [(k, v) for k, v in record.headers if not k.startswith(Header.DLQ_PREFIX)]
        headers = [
            *original,
            (Header.DLQ_REASON, failure.reason.value.encode()),
            (Header.DLQ_DETAIL, detail[:2000].encode()),
            (Header.DLQ_ERROR_CODE, failure.code.value.encode()),
            (Header.DLQ_SOURCE_TOPIC, record.topic.encode()),
            (Header.DLQ_SOURCE_PARTITION, str(record.partition).encode()),
            (Header.DLQ_SOURCE_OFFSET, str(record.offset).encode()),
        ]
        await self._producer.send_and_wait(
            self.topic, value=record.value, key=record.key, headers=headers
        )
        self._metrics.dead_letters.labels(self._metrics.kind, failure.reason.value).inc()
