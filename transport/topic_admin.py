"""Creating the fleet's topics (the broker does not auto-create them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from contracts.errors import FleetError
from transport.connection import KafkaConnection, as_connection, start_client

# What a cluster whose default replication cannot be read gets: three copies, or one per
# broker where there are fewer.
_FALLBACK_REPLICATION = 3


class TopicSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How to create one topic; a topic that exists already is left as it is."""

    partitions: int
    # None: the cluster's own default.replication.factor.
    replication_factor: int | None = None
    configs: dict[str, str] = {}


async def ensure_topics(
    servers: str | KafkaConnection,
    topics: Mapping[str, int | TopicSpec],
    *,
    timeout_s: float = 30.0,
) -> dict[str, int]:
    """Create each topic (name -> partitions, or a TopicSpec) that does not exist yet, and
    wait until the broker describes all of them, those created with all their partitions.
    A plain partition count takes the cluster's defaults. A topic that exists is left as it
    is, with however many partitions it has: the counts the broker describes are returned.
    The fleet's topics and their specs are transport/topology.py's; this is its plumbing.

    The wait matters on a fresh broker: creation returns before the topics reach the
    metadata, and a consumer group that forms in between is assigned nothing.
    """
    specs = {
        name: spec if isinstance(spec, TopicSpec) else TopicSpec(partitions=spec)
        for name, spec in topics.items()
    }
    connection = as_connection(servers)
    admin = AIOKafkaAdminClient(**connection.options())
    try:
        await start_client(admin, connection)
        existing = set(await admin.list_topics())
        missing = {name: spec for name, spec in specs.items() if name not in existing}
        if missing:
            default = None
            if any(spec.replication_factor is None for spec in missing.values()):
                default = await default_replication(admin)
            new = [
                NewTopic(
                    name,
                    num_partitions=spec.partitions,
                    replication_factor=spec.replication_factor or default or 1,
                    topic_configs=spec.configs,
                )
                for name, spec in missing.items()
            ]
            # Another replica may create the same topics at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        expected = {name: spec.partitions if name in missing else 1 for name, spec in specs.items()}
        return await _wait_described(admin, expected, timeout_s)
    finally:
        await admin.close()


async def default_replication(admin: AIOKafkaAdminClient) -> int:
    """The cluster's ``default.replication.factor`` (what Kafka gives a topic created with
    none; aiokafka's CreateTopics cannot ask for that). Where the broker's configs cannot be
    read (ACLs), three copies, or one per broker on a smaller cluster."""
    brokers = (await admin.describe_cluster())["brokers"]
    with contextlib.suppress(KafkaError, LookupError, TypeError, ValueError):
        resource = ConfigResource(ConfigResourceType.BROKER, str(brokers[0]["node_id"]))
        (response,) = await admin.describe_configs([resource])
        for entry in response.to_object()["resources"][0]["config_entries"]:
            if entry["config_names"] == "default.replication.factor":
                return int(entry["config_value"])
    return max(1, min(_FALLBACK_REPLICATION, len(brokers)))


async def _wait_described(
    admin: AIOKafkaAdminClient, topics: dict[str, int], timeout_s: float
) -> dict[str, int]:
    """Wait until each topic is described with at least its count of partitions; the
    counts described."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        with contextlib.suppress(KafkaError):
            described = await admin.describe_topics(list(topics))
            ready = {
                d["topic"]: len(d["partitions"])
                for d in described
                if d["error_code"] == 0 and len(d["partitions"]) >= topics[d["topic"]]
            }
            if set(ready) >= set(topics):
                return ready
        if asyncio.get_running_loop().time() > deadline:
            raise FleetError(f"topics {sorted(topics)} not ready on the broker after {timeout_s}s")
        await asyncio.sleep(0.1)


async def set_topic_configs(
    servers: str | KafkaConnection, topic: str, configs: dict[str, str]
) -> None:
    """Set an existing topic's own configs to exactly ``configs``: Kafka's AlterConfigs
    replaces the set, so a config not named returns to the cluster's default."""
    connection = as_connection(servers)
    admin = AIOKafkaAdminClient(**connection.options())
    try:
        await start_client(admin, connection)
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs)
        for response in await admin.alter_configs([resource]):
            for result in response.to_object()["resources"]:
                if result["error_code"]:
                    error = for_code(result["error_code"])
                    raise error(f"altering the configs of {topic!r}: {result['error_message']}")
    finally:
        await admin.close()


async def topic_names(servers: str | KafkaConnection, prefix: str = "") -> list[str]:
    """The cluster's topics whose names start with ``prefix``, sorted. One metadata request,
    which answers with every topic of the cluster: its cost grows with all of them."""
    connection = as_connection(servers)
    admin = AIOKafkaAdminClient(**connection.options())
    try:
        await start_client(admin, connection)
        return sorted(name for name in await admin.list_topics() if name.startswith(prefix))
    finally:
        await admin.close()


async def delete_topics(servers: str | KafkaConnection, topics: list[str]) -> set[str]:
    """Delete ``topics``; the ones this call deleted. One that does not exist (never made,
    or deleted by someone else first) is left out, not an error; any other refusal (no
    right to delete, for one) is raised as Kafka's error, naming the topic."""
    connection = as_connection(servers)
    admin = AIOKafkaAdminClient(**connection.options())
    try:
        await start_client(admin, connection)
        response = await admin.delete_topics(topics)
    finally:
        await admin.close()
    deleted: set[str] = set()
    for result in response.to_object()["topic_error_codes"]:
        error = for_code(result["error_code"])
        if error is UnknownTopicOrPartitionError:
            continue
        if result["error_code"]:
            raise error(f"deleting the topic {result['topic']!r}")
        deleted.add(result["topic"])
    return deleted
