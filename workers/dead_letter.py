"""Dead-letter publishing: the original bytes, plus the reason and where they came from.
Every dead letter of a worker goes through here, and is counted here.

An original that does not fit beside the dead-letter headers (a message near the broker's
limit) is kept as a pointer instead: the same headers, its size and digest, and where it
is (its topic, partition and offset), with an empty value. The limit is whichever refuses
it, the producer's ``max_request_size`` or the topic's ``max.message.bytes``: both answer
MessageSizeTooLargeError, so nothing here assumes a size.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from aiokafka.errors import MessageSizeTooLargeError

from contracts.names import Header
from transport.publisher import Publisher
from transport.records import Record
from workers.failure_table import Failure
from workers.metrics import WorkerMetrics

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

# What a pointer keeps of the original's own headers and key: those a reader needs (content
# type, request id, signature, trace context) are far smaller; a foreign producer's may not be.
_KEPT_HEADER_BYTES = 16_384
_KEPT_KEY_BYTES = 1_024


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
            (Header.DLQ_REASON, failure.reason.value.encode()),
            (Header.DLQ_DETAIL, detail[:2000].encode()),
            (Header.DLQ_ERROR_CODE, failure.code.value.encode()),
            (Header.DLQ_SOURCE_TOPIC, record.topic.encode()),
            (Header.DLQ_SOURCE_PARTITION, str(record.partition).encode()),
            (Header.DLQ_SOURCE_OFFSET, str(record.offset).encode()),
        ]
        try:
            await self._producer.send_and_wait(
                self.topic, value=record.value, key=record.key, headers=[*original, *headers]
            )
        except MessageSizeTooLargeError as exc:
            # Sending it again would be refused again, and the job behind it would never
            # end: the pointer is small whatever the original was.
            log.warning(
                "the dead letter of %s[%d]@%d is too large to keep whole (%s): its value is "
                "left out",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            await self._producer.send_and_wait(
                self.topic,
                value=b"",
                key=_small(record.key),
                headers=[*_within(original, _KEPT_HEADER_BYTES), *headers, *_digest(record)],
            )
        self._metrics.dead_letters.labels(self._metrics.kind, failure.reason.value).inc()


def _digest(record: Record) -> Headers:
    value = record.value or b""
    return [
        (Header.DLQ_ORIGINAL_BYTES, str(len(value)).encode()),
        (Header.DLQ_ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode()),
    ]


def _small(key: bytes | None) -> bytes | None:
    return key if key is None or len(key) <= _KEPT_KEY_BYTES else None


def _within(headers: Sequence[tuple[str, bytes]], budget: int) -> Headers:
    """The headers, in order, as long as they fit ``budget`` bytes together."""
    kept: Headers = []
    for key, value in headers:
        budget -= len(key) + len(value or b"")
        if budget < 0:
            break
        kept.append((key, value))
    return kept
