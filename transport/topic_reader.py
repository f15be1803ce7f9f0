"""Reading topics whole, or only their last records, up to the end offsets they have when
reading starts. A topic deleted while it is read ends the read instead of stalling it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.errors import FleetError
from transport.connection import KafkaConnection, start_client
from transport.consume import ReadStalled, read_range

# Records fetched per round trip (a batch's output records are a few hundred kB each).
_FETCH_BYTES = 16 * 1024 * 1024
# How long a read gets nothing (or waits for offsets) before it asks whether its topics are
# still there: aiokafka goes on fetching a deleted topic's partitions, getting nothing, for as
# long as it is let, and asks for their offsets again and again until its request timeout
# (40 s), failing every partition asked with them.
_GONE_CHECK_S = 2.0


class TopicMissing(FleetError):
    """The topic to read does not exist (never made, or deleted, before or while read)."""


async def read_to_end(
    connection: KafkaConnection, topic: str
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic``, partition after partition, from the first one kept up to
    the end offsets taken when reading starts (records written later are not waited for).
    A topic that does not exist, or is deleted before the read is through, is a
    TopicMissing naming it."""
    consumer = await _consumer(connection)
    try:
        # A fresh metadata fetch (the topic may be seconds old): aiokafka's consumer has no
        # public call that returns a topic's partitions from one.
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise TopicMissing(f"topic {topic!r} does not exist")
        # Into the consumer's own view too: asked for offsets of a topic it lacks, it fetches
        # them only after a retry backoff (100 ms on every read).
        await consumer._client.add_topic(topic)
        gone: set[str] = set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        starts, ends = await _offsets(consumer, tps, gone)
        for tp in tps:
            if not gone:
                async for record in _read_while_there(consumer, {tp: starts[tp]}, ends, gone):
                    yield record
            if gone:
                raise TopicMissing(f"topic {topic!r} was deleted while it was read")
    finally:
        await consumer.stop()


async def last_records(
    connection: KafkaConnection,
    partitions: Collection[TopicPartition] = (),
    *,
    prefix: str | None = None,
) -> dict[TopicPartition, ConsumerRecord[bytes, bytes]]:
    """The last record of each of ``partitions``, and of every partition of every topic
    whose name starts with ``prefix`` (when given), fetched for all of them together: one
    metadata request (for the cluster's every topic), one offsets request each way and one
    fetch per broker, however many partitions, and only the last records' bytes. A
    partition that holds no record (empty, or retention took its last one) or whose topic
    does not exist, or is deleted while it is read, has none."""
    consumer = await _consumer(connection)
    try:
        cluster = await consumer._client.fetch_all_metadata()
        there = [
            tp
            for tp in partitions
            if tp.partition in (cluster.partitions_for_topic(tp.topic) or ())
        ]
        if prefix is not None:
            there += [
                TopicPartition(topic, partition)
                for topic in sorted(cluster.topics())
                if topic.startswith(prefix)
                for partition in sorted(cluster.partitions_for_topic(topic) or ())
            ]
        if not there:
            return {}
        await consumer._client.set_topics({tp.topic for tp in there})  # as in read_to_end
        starts, ends = await _offsets(consumer, there, set())
        lasts = {tp: max(ends[tp] - 1, starts[tp]) for tp in starts}
        return {
            TopicPartition(record.topic, record.partition): record
            async for record in _read_while_there(consumer, lasts, ends, set())
        }
    finally:
        await consumer.stop()


async def _consumer(connection: KafkaConnection) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        **connection.options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=_FETCH_BYTES,
        max_partition_fetch_bytes=_FETCH_BYTES,
    )
    await start_client(consumer, connection)
    return consumer


async def _offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], gone: set[str]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The first and the end offset of each of ``partitions`` whose topic is there; one
    deleted before its offsets are had is left out (its topic added to ``gone``). Asked
    with its topics all there, a slow broker is waited for as aiokafka waits."""
    while partitions:
        try:
            async with asyncio.timeout(_GONE_CHECK_S):
                return await _first_and_end(consumer, partitions)
        except TimeoutError:
            cluster = await consumer._client.fetch_all_metadata()
            there = [tp for tp in partitions if cluster.partitions_for_topic(tp.topic)]
            if len(there) == len(partitions):
                return await _first_and_end(consumer, partitions)
            gone.update({tp.topic for tp in partitions} - {tp.topic for tp in there})
            partitions = there
    return {}, {}


async def _first_and_end(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    return await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)


async def _read_while_there(
    consumer: AIOKafkaConsumer,
    starts: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
    gone: set[str],
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """``read_range``, where a partition whose topic is deleted while it is read is given up
    (its topic added to ``gone``) instead of waited for forever. A read that stalls with its
    topics all there waits on, as ``read_range`` does: the broker may be coming back."""
    positions = {tp: start for tp, start in starts.items() if start < ends[tp]}
    while positions:
        try:
            async for record in read_range(consumer, positions, ends, stall_s=_GONE_CHECK_S):
                yield record
            return
        except ReadStalled:
            cluster = await consumer._client.fetch_all_metadata()
            left: dict[TopicPartition, int] = {}
            for tp in positions:  # every one of them assigned by read_range
                if not cluster.partitions_for_topic(tp.topic):
                    gone.add(tp.topic)
                elif (position := await consumer.position(tp)) < ends[tp]:
                    left[tp] = position
            positions = left
