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
TopicProbe = Callable[[str], Awaitable[bool | None]]

_PROBE_TIMEOUT_S = 5.0


def broker_topic_probe(producer: AIOKafkaProducer) -> TopicProbe:
    """A TopicProbe that asks the broker the producer talks to, through its metadata."""

    async def exists(topic: str) -> bool | None:
        try:
            metadata = await asyncio.wait_for(
                producer.client.fetch_all_metadata(), timeout=_PROBE_TIMEOUT_S
            )
        except (KafkaError, OSError, TimeoutError):
            return None
        return topic in metadata.topics()

    return exists
