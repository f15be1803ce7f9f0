"""Dead-letter publishing: the original bytes, plus the reason and where they came from."""

from __future__ import annotations

from contracts.errors import ErrorCode
from contracts.names import DeadLetterReason, Header
from transport.publisher import Publisher
from transport.records import Record


class DeadLetters:
    def __init__(self, producer: Publisher, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def publish(
        self, record: Record, code: ErrorCode, reason: DeadLetterReason, detail: str
    ) -> None:
        """Store the message with the reason; returns once Kafka has it."""
        original = [(k, v) for k, v in record.headers if not k.startswith(Header.DLQ_PREFIX)]
        headers = [
            *original,
            (Header.DLQ_REASON, reason.value.encode()),
            (Header.DLQ_DETAIL, detail[:2000].encode()),
            (Header.DLQ_ERROR_CODE, code.value.encode()),
            (Header.DLQ_SOURCE_TOPIC, record.topic.encode()),
            (Header.DLQ_SOURCE_PARTITION, str(record.partition).encode()),
            (Header.DLQ_SOURCE_OFFSET, str(record.offset).encode()),
        ]
        await self._producer.send_and_wait(
            self.topic, value=record.value, key=record.key, headers=headers
        )
