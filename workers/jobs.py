"""Runs one Kafka record as a job: decode, check, handle, reply; every failure has a place.

Bad input goes to the dead-letter topic with the reason (and an error reply when the reply
address can be read); provider failures become error replies. Nothing here raises except
cancellation, so one bad job never stops the worker.
"""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from contracts.codec import AnyRequest, content_type_of, decode_request, decode_request_head
from contracts.envelope import ReplyAddress
from contracts.errors import ConfigError, ContractError, ErrorCode
from contracts.names import Header
from providers.errors import ProviderError
from workers.dead_letter import DeadLetters
from workers.handler import JobHandler
from workers.replies import ChunkStamper, ReplyStream

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(
        self,
        *,
        kind: str,
        handler: JobHandler,
        producer: AIOKafkaProducer,
        dead_letters: DeadLetters,
        max_payload_bytes: int,
    ) -> None:
        self._kind = kind
        self._handler = handler
        self._producer = producer
        self._dead_letters = dead_letters
        self._max_payload_bytes = max_payload_bytes

    async def run(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            await self._run(record)
        except KafkaError as exc:
            # Typically the reply topic is gone (its client went away): keep the job.
            log.warning(
                "replies for %s[%d]@%d undeliverable: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            await self._dead_letters.publish(
                record, ErrorCode.INTERNAL, f"reply_undeliverable: {exc!r}"
            )

    async def _run(self, record: ConsumerRecord[bytes, bytes]) -> None:
        payload = record.value or b""
        declared = _header(record, Header.CONTENT_TYPE)
        content_type = content_type_of(payload, declared)
        try:
            request = decode_request(
                self._kind, payload, content_type=content_type, max_bytes=self._max_payload_bytes
            )
        except ContractError as exc:
            await self._reject(record, content_type, exc)
            return
        stamper = ChunkStamper(request.request_id, request.attempt)
        stream = ReplyStream(self._producer, request.reply_to, content_type)
        if request.deadline_ms is not None and request.deadline_ms < time.time() * 1000:
            await stream.send(
                stamper.error(
                    ErrorCode.TIMEOUT, "the request's deadline passed before a worker started it"
                )
            )
            await stream.flush()
            return
        await self._handle(request, stamper, stream)
        await stream.flush()

    async def _handle(
        self, request: AnyRequest, stamper: ChunkStamper, stream: ReplyStream
    ) -> None:
        try:
            async for chunk in self._handler.handle(request, stamper):
                await stream.send(chunk)
        except ProviderError as exc:
            log.warning("job %s failed: %s", request.request_id, exc)
            await stream.send(stamper.error(exc.code, exc.detail))
        except ConfigError as exc:
            await stream.send(stamper.error(ErrorCode.INVALID_INPUT, str(exc)))
        except Exception:
            log.exception("job %s crashed in the %s handler", request.request_id, self._kind)
            await stream.send(
                stamper.error(ErrorCode.INTERNAL, f"the {self._kind} worker failed on this job")
            )

    async def _reject(
        self, record: ConsumerRecord[bytes, bytes], content_type: str, exc: ContractError
    ) -> None:
        log.warning(
            "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
        )
        await self._dead_letters.publish(record, ErrorCode.INVALID_INPUT, f"{exc.reason}: {exc}")
        head = decode_request_head(record.value or b"", content_type)
        if head is None or not head.request_id or head.reply_to is None:
            return
        stamper = ChunkStamper(head.request_id, head.attempt)
        stream = ReplyStream(self._producer, _safe_address(head.reply_to), content_type)
        await stream.send(stamper.error(ErrorCode.INVALID_INPUT, str(exc)))
        await stream.flush()


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


def _safe_address(address: ReplyAddress) -> ReplyAddress | None:
    return address if address.topic else None
