"""Reading a whole topic: every record from the start up to the end it has now."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.errors import FleetError
from transport.connection import KafkaConnection, start_client
from transport.consume import read_range

# Records fetched per round trip (a batch's output records are a few hundred kB each).
_FETCH_BYTES = 16 * 1024 * 1024


class TopicMissing(FleetError):
    """The topic to read does not exist (never made, or deleted)."""


async def read_to_end(
    connection: KafkaConnection, topic: str
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic``, partition after partition, from the first one kept up to
    the end offsets taken when reading starts (records written later are not waited for).
    A topic that does not exist is a TopicMissing naming it."""
    consumer = AIOKafkaConsumer(
        **connection.options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=_FETCH_BYTES,
        max_partition_fetch_bytes=_FETCH_BYTES,
    )
    await start_client(consumer, connection)
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
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            async for record in read_range(consumer, {tp: starts[tp]}, {tp: ends[tp]}):
                yield record
    finally:
        await consumer.stop()
