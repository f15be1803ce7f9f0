"""Reading topics whole or their last records, against the real broker: a topic deleted
while it is read ends the read (aiokafka alone would fetch its partitions forever)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from tests.conftest import Infra
from transport.topic_admin import delete_topics, ensure_topics
from transport.topic_reader import TopicMissing, _consumer, _offsets, last_records, read_to_end

pytestmark = [pytest.mark.kafka]


async def _write(infra: Infra, records: dict[TopicPartition, list[bytes]]) -> None:
    producer = AIOKafkaProducer(**infra.kafka_options())
    await producer.start()
    try:
        for tp, values in records.items():
            for value in values:
                await producer.send_and_wait(tp.topic, value, partition=tp.partition)
    finally:
        await producer.stop()


async def test_a_topic_deleted_while_it_is_read_is_topic_missing(
    infra: Infra, namespace: str
) -> None:
    topic = f"{namespace}.two-partitions"
    await ensure_topics(infra.connection, {topic: 2})
    await _write(infra, {TopicPartition(topic, 0): [b"a"], TopicPartition(topic, 1): [b"b"]})
    reading = read_to_end(infra.connection, topic)
    first = await anext(reading)
    # Partition 0 is read through before partition 1 is fetched: gone by then.
    assert await delete_topics(infra.connection, [topic]) == {topic}
    with pytest.raises(TopicMissing, match="deleted while it was read"):
        await anext(reading)
    assert first.value == b"a"
    # Deleted already: the broker's "unknown topic" is no error, and none was deleted.
    assert await delete_topics(infra.connection, [topic]) == set()


async def test_last_records_are_each_partitions_last_one(infra: Infra, namespace: str) -> None:
    full, empty, deleted = (f"{namespace}.{name}" for name in ("full", "empty", "deleted"))
    await ensure_topics(infra.connection, {full: 2, empty: 1, deleted: 1})
    await _write(
        infra,
        {
            TopicPartition(full, 0): [b"first", b"last"],
            TopicPartition(full, 1): [b"only"],
            TopicPartition(deleted, 0): [b"gone"],
        },
    )
    await delete_topics(infra.connection, [deleted])
    asked = [TopicPartition(t, 0) for t in (full, empty, deleted, f"{namespace}.never")]
    found = await last_records(infra.connection, [*asked, TopicPartition(full, 1)])
    lasts = {TopicPartition(full, 0): b"last", TopicPartition(full, 1): b"only"}
    assert {tp: record.value for tp, record in found.items()} == lasts
    under = await last_records(infra.connection, prefix=f"{namespace}.")
    assert {tp: record.value for tp, record in under.items()} == lasts
    await delete_topics(infra.connection, [full, empty])


async def test_a_topic_deleted_before_its_offsets_are_had_is_left_out(
    infra: Infra, namespace: str
) -> None:
    """The moment between a read's look at the metadata and its offsets request, held open:
    aiokafka alone would ask for the offsets until its request timeout (40 s), then fail
    them all."""
    kept, deleted = (TopicPartition(f"{namespace}.{name}", 0) for name in ("kept", "deleted"))
    await ensure_topics(infra.connection, {kept.topic: 1, deleted.topic: 1})
    consumer = await _consumer(infra.connection)
    gone: set[str] = set()
    try:
        await consumer._client.set_topics([kept.topic, deleted.topic])  # seen, as by a read
        await delete_topics(infra.connection, [deleted.topic])
        starts, ends = await _offsets(consumer, [kept, deleted], gone)
    finally:
        await consumer.stop()
    assert (starts, ends, gone) == ({kept: 0}, {kept: 0}, {deleted.topic})
    await delete_topics(infra.connection, [kept.topic])
