"""What the job runner needs of a Kafka producer: hand a message over (``send``, whose
future resolves once the broker stored it) or hand it over and wait (``send_and_wait``).

``AIOKafkaProducer`` satisfies it as it is, with no wrapper on the hot path; unit tests pass
an in-memory publisher and drive every outcome of a job without a broker.
"""

from __future__ import annotations

import asyncio
import time
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


# How many partitions a topic has (0: the broker says it does not exist), or None when the
# broker cannot say within a few seconds.
TopicProbe = Callable[[str], Awaitable[int | None]]

_PROBE_TIMEOUT_S = 5.0
# A fetched view of the cluster answers for this long (a topic created since is found by
# the producer's own metadata once anything is sent to it).
_PROBE_REUSE_S = 2.0
# A topic missing from a fresh view is looked for once more this much later.
_PROBE_CONFIRM_S = 1.0


def broker_topic_probe(producer: AIOKafkaProducer, own_topic: str) -> TopicProbe:
    """A TopicProbe that asks the broker the producer talks to: from the producer's metadata
    when it knows the topic, else from one fetch of the cluster's metadata (which, unlike a
    send, never registers the topic with the producer nor waits for it to appear). A broker
    that has just started may answer before it knows every topic: an answer that lacks
    ``own_topic`` (the worker's own request topic, which exists) says nothing."""

    fetched: list[tuple[float, Any]] = []  # the latest cluster metadata, and when
    one_fetch = asyncio.Lock()  # jobs of a new client share one fetch, not one each

    async def cluster(*, fresher_than: float) -> Any:
        async with one_fetch:
            if fetched and fetched[0][0] > fresher_than:
                return fetched[0][1]
            metadata = await asyncio.wait_for(
                producer.client.fetch_all_metadata(), timeout=_PROBE_TIMEOUT_S
            )
            fetched[:] = [(time.monotonic(), metadata)]
            return metadata

    async def count(topic: str, *, fresher_than: float) -> int | None:
        try:
            metadata = await cluster(fresher_than=fresher_than)
        except (KafkaError, OSError, TimeoutError):
            return None
        if not metadata.partitions_for_topic(own_topic):
            return None  # a view of a broker still starting, or of another cluster
        return len(metadata.partitions_for_topic(topic) or ())

    async def partitions(topic: str) -> int | None:
        known = producer.client.cluster.partitions_for_topic(topic)
        if known:
            return len(known)
        asked = time.monotonic()
        found = await count(topic, fresher_than=asked - _PROBE_REUSE_S)
        if found != 0:
            return found
        # Not there: asked again, of a view fetched after the question and once more a
        # moment later (a topic created a moment ago may reach one broker's view late).
        found = await count(topic, fresher_than=asked)
        if found == 0:
            await asyncio.sleep(_PROBE_CONFIRM_S)
            found = await count(topic, fresher_than=time.monotonic())
        return found

    return partitions
