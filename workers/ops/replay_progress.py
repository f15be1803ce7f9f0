"""Which dead letters ``fleet dlq replay`` has dealt with, so that replaying the same dead
letters twice runs nothing twice. It lives in the consumer group
``<namespace>.<kind>.dlq-replay``, committed per partition of the dead-letter topic after
each record the replay deals with (republished, or refused for good).

A group's commit holds one offset and a metadata string per partition. The offset is the
first record not yet dealt with: every record below it was. A filtered replay
(``--reason``, ``--request-id``, ``--since``) passes over records it does not select and must
leave them to a later replay, so the offset stops at the first of them; the records dealt
with past it are listed in the metadata, as offset ranges. That list has a bound (Kafka
refuses metadata over ``offset.metadata.max.bytes``, 4 KiB by default): a filtered replay
that would need more stops with an error that says so.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from contracts.errors import FleetError
from transport.connection import start_client
from workers.settings import WorkerSettings

# Under Kafka's default offset.metadata.max.bytes (4096), with room to spare.
MAX_METADATA_CHARS = 3000


class _Beyond(msgspec.Struct, frozen=True):
    """The metadata of one partition's commit: ranges [first, last] dealt with past the
    committed offset."""

    done: list[tuple[int, int]] = []


_encode_beyond = msgspec.json.Encoder().encode
_decode_beyond = msgspec.json.Decoder(_Beyond).decode


class PartitionProgress:
    """The dead letters of one partition a replay has dealt with: every offset below
    ``committed``, and those in ``beyond``."""

    def __init__(self, committed: int = 0, beyond: set[int] | None = None) -> None:
        self.committed = committed
        self.beyond = set(beyond or ())
        self._advance()

    @classmethod
    def from_commit(cls, offset: int, metadata: str) -> PartitionProgress:
        """What a commit says (offset -1: the group never committed here). Metadata the
        replay did not write counts as none."""
        try:
            ranges = _decode_beyond(metadata).done if metadata else []
        except msgspec.DecodeError:
            ranges = []
        beyond = {o for first, last in ranges for o in range(first, last + 1)}
        return cls(max(offset, 0), beyond)

    def dealt_with(self, offset: int) -> bool:
        return offset < self.committed or offset in self.beyond

    def mark(self, offset: int) -> None:
        if not self.dealt_with(offset):
            self.beyond.add(offset)
            self._advance()

    def skip_to(self, offset: int) -> None:
        """Nothing below ``offset`` is left (retention deleted it)."""
        if offset > self.committed:
            self.committed = offset
            self.beyond = {o for o in self.beyond if o >= offset}
            self._advance()

    def _advance(self) -> None:
        while self.committed in self.beyond:
            self.beyond.remove(self.committed)
            self.committed += 1

    def metadata(self) -> str:
        ranges: list[tuple[int, int]] = []
        for offset in sorted(self.beyond):
            if ranges and ranges[-1][1] == offset - 1:
                ranges[-1] = (ranges[-1][0], offset)
            else:
                ranges.append((offset, offset))
        return _encode_beyond(_Beyond(ranges)).decode() if ranges else ""


class ReplayProgress:
    """The replay group's progress on every partition of one dead-letter topic: loaded on
    entry, committed by ``commit``."""

    def __init__(
        self, settings: WorkerSettings, kind: str, partitions: list[TopicPartition]
    ) -> None:
        self.group = settings.topology.replay_group(kind)
        self.partitions = {tp: PartitionProgress() for tp in partitions}
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Self:
        if not self.partitions:
            return self  # no dead-letter topic: nothing to remember
        await self._load()
        # Commits only: its partitions are paused, it never fetches.
        consumer = AIOKafkaConsumer(
            **self._settings.connection.options(), group_id=self.group, enable_auto_commit=False
        )
        await start_client(consumer, self._settings.connection)
        self._consumer = consumer
        consumer.assign(list(self.partitions))
        consumer.pause(*self.partitions)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _load(self) -> None:
        admin = AIOKafkaAdminClient(**self._settings.connection.options())
        await start_client(admin, self._settings.connection)
        try:
            committed = await admin.list_consumer_group_offsets(
                self.group, partitions=list(self.partitions)
            )
        finally:
            await admin.close()
        for tp, meta in committed.items():
            if tp in self.partitions and meta is not None:
                self.partitions[tp] = PartitionProgress.from_commit(meta.offset, meta.metadata)

    def dealt_with(self, tp: TopicPartition, offset: int) -> bool:
        return self.partitions[tp].dealt_with(offset)

    def check_room(self, tp: TopicPartition, offset: int) -> None:
        """Raise before dealing with a record whose mark the commit could not hold."""
        progress = self.partitions[tp]
        trial = PartitionProgress(progress.committed, {*progress.beyond, offset})
        if len(trial.metadata()) > MAX_METADATA_CHARS:
            raise FleetError(
                f"{tp.topic}[{tp.partition}]: too many records dealt with past offset "
                f"{progress.committed}, which this filtered replay passes over, to remember "
                "them all; replay that record first (a wider --reason, or no filter)"
            )

    async def commit(self, tp: TopicPartition, offset: int) -> None:
        """Remember that the record at ``offset`` has been dealt with."""
        progress = self.partitions[tp]
        progress.mark(offset)
        meta = OffsetAndMetadata(progress.committed, progress.metadata())
        assert self._consumer is not None, "commit within the block"
        await self._consumer.commit({tp: meta})
