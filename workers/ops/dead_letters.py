"""A kind's dead-letter topic, read from its beginning to the end offsets it had when the
read began (no consumer group: reading it changes nothing, and an empty topic ends the read
at once), each record parsed into what an operator asks of it; and which of them a
``fleet dlq`` command selects."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.codec import AnyRequest, decode_request, decode_request_head
from contracts.errors import ContractError
from contracts.names import Header, dead_letter_topic
from transport.connection import start_client
from transport.consume import read_range
from transport.records import Record, header
from workers.settings import WorkerSettings

# A read that gets no record and no nearer its end offsets for this long has stalled.
_STALL_S = 30.0


class DeadLetterInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What ``fleet dlq list`` shows of one dead letter (one JSON object with ``--json``).
    None: the record does not say."""

    partition: int  # of the dead-letter topic
    offset: int
    timestamp_ms: int  # when it was dead-lettered
    request_id: str | None
    tenant: str | None  # only when the request decodes
    reason: str  # a DeadLetterReason value, as the header says ("unknown" without one)
    detail: str  # what happened, in words
    error_code: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One dead letter: what it says, and the original message it keeps."""

    info: DeadLetterInfo
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    # The original request, or why it does not decode as one of this kind.
    request: AnyRequest | ContractError


def parse_dead_letter(kind: str, record: Record) -> DeadLetter:
    value = bytes(record.value or b"")
    content_type = header(record, Header.CONTENT_TYPE)
    request: AnyRequest | ContractError
    try:
        request = decode_request(kind, value, content_type=content_type)
    except ContractError as exc:
        request = exc
    if isinstance(request, ContractError):
        head = decode_request_head(value, content_type)
        request_id = head.request_id if head is not None else None
        tenant = None
    else:
        request_id, tenant = request.request_id, request.tenant
    info = DeadLetterInfo(
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=int(record.timestamp),
        request_id=request_id or header(record, Header.REQUEST_ID),
        tenant=tenant,
        reason=header(record, Header.DLQ_REASON) or "unknown",
        detail=header(record, Header.DLQ_DETAIL) or "",
        error_code=header(record, Header.DLQ_ERROR_CODE),
        source_topic=header(record, Header.DLQ_SOURCE_TOPIC),
        source_partition=_number(header(record, Header.DLQ_SOURCE_PARTITION)),
        source_offset=_number(header(record, Header.DLQ_SOURCE_OFFSET)),
    )
    return DeadLetter(
        info=info,
        key=record.key,
        value=value,
        headers=tuple((k, bytes(v)) for k, v in record.headers),
        request=request,
    )


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


class DeadLetterFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which dead letters a command selects; an empty field selects every one."""

    reasons: frozenset[str] = frozenset()
    request_ids: frozenset[str] = frozenset()
    since_ms: int | None = None  # dead-lettered at or after this time

    @classmethod
    def of(
        cls,
        reasons: Sequence[str] | None = None,
        request_ids: Sequence[str] | None = None,
        since_s: float | None = None,
    ) -> DeadLetterFilter:
        """The filter of a command's options; ``since_s``: dead-lettered that long ago at most."""
        since_ms = None if since_s is None else int((time.time() - since_s) * 1000)
        return cls(
            reasons=frozenset(reasons or ()),
            request_ids=frozenset(request_ids or ()),
            since_ms=since_ms,
        )

    def selects(self, info: DeadLetterInfo) -> bool:
        return (
            (not self.reasons or info.reason in self.reasons)
            and (not self.request_ids or info.request_id in self.request_ids)
            and (self.since_ms is None or info.timestamp_ms >= self.since_ms)
        )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``2h``, ``7d`` or ``1w`` (a command option: what
    is not a duration is an ``argparse`` error that says so)."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: say 90s, 15m, 2h or 7d")
    return float(match[1]) * _UNIT_S[match[2]]


class DeadLetterReader:
    """Reads the dead-letter topic of one kind to the end offsets it had on entry."""

    def __init__(self, settings: WorkerSettings, kind: str) -> None:
        self.kind = kind
        self.topic = dead_letter_topic(kind, settings.namespace)
        self._settings = settings
        # Its partitions (none when it does not exist yet), where each starts (retention
        # deletes from the front) and where each ended on entry: the read stops there.
        self.partitions: list[TopicPartition] = []
        self.starts: dict[TopicPartition, int] = {}
        self.ends: dict[TopicPartition, int] = {}
        self._consumer = AIOKafkaConsumer(
            **settings.connection.options(), group_id=None, enable_auto_commit=False
        )

    async def __aenter__(self) -> Self:
        self.partitions = [TopicPartition(self.topic, p) for p in await self._partitions()]
        consumer = self._consumer
        await start_client(consumer, self._settings.connection)
        try:
            if self.partitions:
                self.starts = await consumer.beginning_offsets(self.partitions)
                self.ends = await consumer.end_offsets(self.partitions)
        except BaseException:
            await consumer.stop()
            raise
        return self

    async def _partitions(self) -> list[int]:
        """The topic's partition numbers; none when it does not exist."""
        admin = AIOKafkaAdminClient(**self._settings.connection.options())
        await start_client(admin, self._settings.connection)
        try:
            if self.topic not in await admin.list_topics():
                return []
            described = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        return sorted(p["partition"] for p in described[0]["partitions"])

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._consumer.stop()

    async def letters(self) -> AsyncIterator[DeadLetter]:
        """Every dead letter there was on entry, in offset order within each partition."""
        async for record in self._records():
            yield parse_dead_letter(self.kind, record)

    async def _records(self) -> AsyncIterator[Record]:
        # Empty, or no dead-letter topic yet: nothing was ever dead-lettered.
        async for record in read_range(self._consumer, self.starts, self.ends, stall_s=_STALL_S):
            yield record
