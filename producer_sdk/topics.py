"""Creating the fleet's topics (the broker does not auto-create them)."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from contracts.errors import FleetError


async def ensure_topics(
    bootstrap_servers: str,
    topics: dict[str, int],
    *,
    configs: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create each topic (name -> partitions) that does not exist yet, and wait until the
    broker describes all of them with their partitions.

    The wait matters on a fresh broker: creation returns before the topics reach the
    metadata, and a consumer group that forms in between is assigned nothing.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name, num_partitions=partitions, replication_factor=1, topic_configs=configs or {}
            )
            for name, partitions in topics.items()
            if name not in existing
        ]
        if missing:
            # Another replica may create the same topics at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        await _wait_described(admin, topics, timeout_s)
    finally:
        await admin.close()


async def _wait_described(
    admin: AIOKafkaAdminClient, topics: dict[str, int], timeout_s: float
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        with contextlib.suppress(KafkaError):
            described = await admin.describe_topics(list(topics))
            ready = {
                d["topic"]
                for d in described
                if d["error_code"] == 0 and len(d["partitions"]) >= topics[d["topic"]]
            }
            if ready >= set(topics):
                return
        if asyncio.get_running_loop().time() > deadline:
            raise FleetError(f"topics {sorted(topics)} not ready on the broker after {timeout_s}s")
        await asyncio.sleep(0.1)


async def delete_topics(bootstrap_servers: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        await admin.start()
        await admin.delete_topics(topics)
    finally:
        await admin.close()
