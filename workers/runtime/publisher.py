"""What the job runner needs of a Kafka producer: hand a message over (``send``, whose
future resolves once the broker stored it) or hand it over and wait (``send_and_wait``).

``AIOKafkaProducer`` satisfies it as it is, with no wrapper on the hot path; unit tests pass
an in-memory publisher and drive every outcome of a job without a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

Headers = Sequence[tuple[str, bytes]]


class Publisher(Protocol):
    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[Any]: ...

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
    ) -> Any: ...


# Whether a topic exists, asked of the broker: None when the broker did not answer.
# How many partitions a topic has (0: the broker says it does not exist), or None when the
# broker cannot say within a few seconds.
TopicProbe = Callable[[str], Awaitable[int | None]]

_PROBE_TIMEOUT_S = 5.0


def broker_topic_probe(producer: AIOKafkaProducer, own_topic: str) -> TopicProbe:
    """A TopicProbe that asks the broker the producer talks to: from the producer's metadata
    when it knows the topic, else from one fetch of the cluster's metadata (which, unlike a
    send, never registers the topic with the producer nor waits for it to appear). A broker
    that has just started may answer before it knows every topic: an answer that lacks
    ``own_topic`` (the worker's own request topic, which exists) says nothing."""

    async def partitions(topic: str) -> int | None:
        known = producer.client.cluster.partitions_for_topic(topic)
        if known:
            return len(known)
        try:
            metadata = await asyncio.wait_for(
                producer.client.fetch_all_metadata(), timeout=_PROBE_TIMEOUT_S
            )
        except (KafkaError, OSError, TimeoutError):
            return None
        if not metadata.partitions_for_topic(own_topic):
            return None
        return len(metadata.partitions_for_topic(topic) or ())

    return partitions
