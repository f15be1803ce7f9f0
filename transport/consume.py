"""The one consume loop: every fetch of the fleet is a turn of ``rounds``.

The variants the fleet needs are built on it:

- ``GroupLoop`` (``transport/group.py``): a consumer-group member whose records run as tasks,
  committed once finished (the job consumer, the batch coordinator);
- ``each_record``: a group member that handles each record in turn (the retry forwarder);
- ``tail``: one partition from its beginning or its end, for as long as the caller wants
  (the control listener, the batch status board, ``BatchClient.follow``);
- ``read_range``: partitions from one offset to another each, then done (the topic reader,
  whole topics or their last records; the dead-letter listing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from typing import Literal, Protocol, TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from contracts.errors import FleetError
from transport.records import Record

log = logging.getLogger(__name__)

Batches: TypeAlias = dict[TopicPartition, list[Record]]

# How long a round waits for records when none are there yet.
ROUND_WAIT_MS = 200
# A follower whose fetch failed (the broker restarting) tries again after this.
_FETCH_RETRY_S = 1.0
# A loop with no room polls at least this often, paused, to keep its group membership.
_HOLD_S = 1.0


class Room(Protocol):
    """How many records a loop may take now (a lane's free job slots)."""

    def room(self) -> int: ...

    def watch(self) -> asyncio.Event:
        """Set at the next change of ``room``: taken before an await, so none is missed."""
        ...

    async def wait(self, change: asyncio.Event, timeout_s: float) -> None:
        """Until ``change`` (from ``watch``) is set, or ``timeout_s`` has passed."""
        ...


class ReadStalled(FleetError):
    """A bounded read got nothing for too long before its end offsets."""


async def rounds(
    consumer: AIOKafkaConsumer,
    *,
    stopping: asyncio.Event | None = None,
    partitions: Collection[TopicPartition] = (),
    wait_ms: int = ROUND_WAIT_MS,
    max_records: int | None = None,
    room: Room | None = None,
    retry_errors: bool = False,
) -> AsyncIterator[Batches]:
    """Fetch after fetch until ``stopping`` is set (or the caller stops iterating), each
    turn's records by partition: empty turns too, so a caller can act between fetches.

    ``partitions`` (read again at each turn, so a caller may shrink it) limits a fetch to
    those; none means every partition the consumer holds. With a ``room``, a turn takes at
    most that many records, and a turn without room holds instead (see ``_hold``). With
    ``retry_errors`` a failed fetch is logged and tried again: a follower that must outlive
    a broker restart."""
    while stopping is None or not stopping.is_set():
        limit = max_records
        if room is not None:
            change = room.watch()
            limit = room.room()
            if limit <= 0:
                await _hold(consumer, room, change)
                yield {}
                continue
            if paused := consumer.paused():
                consumer.resume(*paused)
        try:
            batches = await _fetch(consumer, partitions, wait_ms, limit)
        except KafkaError as exc:
            if not retry_errors:
                raise
            log.warning("fetching %s failed (%s); trying again", _names(consumer), exc)
            await asyncio.sleep(_FETCH_RETRY_S)
            continue
        yield batches


def each(batches: Batches) -> Iterator[tuple[TopicPartition, Record]]:
    """The records of one turn, partition by partition, in offset order."""
    for tp, records in batches.items():
        for record in records:
            yield tp, record


async def each_record(
    consumer: AIOKafkaConsumer,
    handle: Callable[[TopicPartition, Record], Awaitable[None]],
    *,
    stopping: asyncio.Event,
    max_records: int | None = None,
) -> None:
    """Handle every record the consumer fetches, one after the other, until ``stopping``
    is set; records fetched but not handled by then are left to the next fetch."""
    async for batches in rounds(consumer, stopping=stopping, max_records=max_records):
        for tp, record in each(batches):
            if stopping.is_set():
                return
            await handle(tp, record)


async def tail(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    *,
    start: Literal["beginning", "end"],
    stopping: asyncio.Event | None = None,
    wait_ms: int = ROUND_WAIT_MS,
    retry_errors: bool = False,
    positioned: asyncio.Event | None = None,
) -> AsyncIterator[list[Record]]:
    """Follow one partition from its beginning or its end: each turn's records (an empty
    list when none came), for as long as the caller iterates. ``positioned`` is set once the
    start is a known offset: aiokafka resolves a seek lazily, and a partition whose leader
    is not elected yet (a topic just made) resolves "the end" only later, past whatever was
    written meanwhile."""
    consumer.assign([tp])
    if start == "beginning":
        await consumer.seek_to_beginning(tp)
    else:
        await consumer.seek_to_end(tp)
    await consumer.position(tp)  # waits out a leader election, retrying
    if positioned is not None:
        positioned.set()
    async for batches in rounds(
        consumer, stopping=stopping, partitions=(tp,), wait_ms=wait_ms, retry_errors=retry_errors
    ):
        yield batches.get(tp, [])


async def read_range(
    consumer: AIOKafkaConsumer,
    starts: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
    *,
    wait_ms: int = 1000,
    stall_s: float | None = None,
) -> AsyncIterator[Record]:
    """Every record from ``starts`` up to ``ends`` (exclusive) of each partition, in offset
    order within a partition. Compaction and retention leave gaps: a partition is done when
    the consumer's position reaches its end, not at a given record. With ``stall_s``, a read
    that gets nothing for that long before its end is a ReadStalled naming the partitions
    left."""
    pending = {tp for tp in starts if ends[tp] > starts[tp]}
    if not pending:
        return
    consumer.assign(sorted(pending))
    for tp in pending:
        consumer.seek(tp, starts[tp])
    progress = time.monotonic()
    async for batches in rounds(consumer, partitions=pending, wait_ms=wait_ms):
        for tp, record in each(batches):
            if record.offset < ends[tp]:
                yield record
            progress = time.monotonic()
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        if not pending:
            return
        if stall_s is not None and time.monotonic() - progress > stall_s:
            topics = sorted({tp.topic for tp in pending})
            where = ", ".join(f"{tp.partition}" for tp in sorted(pending))
            raise ReadStalled(
                f"reading {', '.join(topics)} got nothing for {stall_s:g}s before its end "
                f"(partitions {where}): is the broker up?"
            )


async def _hold(consumer: AIOKafkaConsumer, room: Room, change: asyncio.Event) -> None:
    """No room: poll with every partition paused (a consumer that stops polling for
    max.poll.interval loses its group membership), then wait, a second at most, for the
    room to change. A partition assigned since the pause is not paused yet: what it
    returns is put back, to be fetched again."""
    consumer.pause(*consumer.assignment())
    for tp, records in (await _fetch(consumer, (), 0, None)).items():
        if records:
            consumer.seek(tp, records[0].offset)
    await room.wait(change, _HOLD_S)


async def _fetch(
    consumer: AIOKafkaConsumer,
    partitions: Collection[TopicPartition],
    wait_ms: int,
    max_records: int | None,
) -> Batches:
    """One fetch: the fleet's only call of ``getmany``."""
    batches: Batches = await consumer.getmany(
        *partitions, timeout_ms=wait_ms, max_records=max_records
    )
    return batches


def _names(consumer: AIOKafkaConsumer) -> str:
    return ", ".join(sorted({tp.topic for tp in consumer.assignment()})) or "the broker"
