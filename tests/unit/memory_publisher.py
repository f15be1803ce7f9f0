"""A Publisher that keeps what it is given, for driving the job runner without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from contracts.codec import decode_chunk
from contracts.replies import ReplyChunk


class Sent(msgspec.Struct, frozen=True):
    topic: str
    value: bytes | None
    key: bytes | None
    partition: int | None
    headers: dict[str, bytes]


class MemoryPublisher:
    def __init__(self, unreachable: Sequence[str] = (), max_bytes: int = 1_048_576) -> None:
        self.sent: list[Sent] = []
        self.max_bytes = max_bytes  # the producer's max_request_size
        # Topics whose sends fail as a send to a deleted topic does (after its timeout).
        self.unreachable = set(unreachable)

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        if topic in self.unreachable:
            raise KafkaTimeoutError(f"no metadata for {topic}")
        # Counted as aiokafka counts it: value, key, headers and the record's overhead.
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers or []))
        if size > self.max_bytes:
            raise MessageSizeTooLargeError(f"the message is {size} bytes")
        self.sent.append(Sent(topic, value, key, partition, dict(headers or [])))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Any:
        return await (await self.send(topic, value, key, partition, timestamp_ms, headers))

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]

    def replies(self, topic: str) -> list[ReplyChunk]:
        return [decode_chunk(s.value or b"") for s in self.on(topic)]
