"""The workers create their topics as the settings' topic families say, and otherwise with
the cluster's defaults: replication from the cluster (not a hard-coded 1)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.names import dead_letter_topic, request_topic, retry_topic
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.harness import serving
from tests.integration.scripted_chat import ScriptedChat
from transport.topic_admin import default_replication, ensure_topics
from transport.topology import TopicFamily, TopicSettings
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


async def _topic_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    entries = response.to_object()["resources"][0]["config_entries"]
    return {e["config_names"]: e["config_value"] for e in entries}


async def test_topic_families_are_created_as_configured(
    settings: WorkerSettings, infra: Infra
) -> None:
    topics = TopicSettings(
        dead_letter=TopicFamily(partitions=2, retention_ms=3_600_000),
        retry=TopicFamily(min_insync_replicas=1, retention_ms=600_000),
    )
    settings = msgspec.structs.replace(settings, topics=topics)
    worker = Worker("generate", settings, GenerateHandler(ModelRouter("chat", [ScriptedChat()])))
    async with serving(worker):
        pass
    dead = dead_letter_topic("generate", settings.namespace)
    retry = retry_topic("generate", settings.retry.tiers_s[0], settings.namespace)
    admin = AIOKafkaAdminClient(**infra.kafka_options())
    await admin.start()
    try:
        described = {d["topic"]: d for d in await admin.describe_topics([dead, retry])}
        dead_configs = await _topic_configs(admin, dead)
        retry_configs = await _topic_configs(admin, retry)
        cluster_default = await default_replication(admin)
    finally:
        await admin.close()
    assert len(described[dead]["partitions"]) == 2
    assert len(described[retry]["partitions"]) == 1
    assert dead_configs["retention.ms"] == "3600000"
    assert (retry_configs["retention.ms"], retry_configs["min.insync.replicas"]) == (
        "600000",
        "1",
    )
    replicas = {len(p["replicas"]) for d in described.values() for p in d["partitions"]}
    assert replicas == {cluster_default}


class _Admin:
    """An admin client of a cluster of ``brokers`` whose configs cannot be read (ACLs)."""

    def __init__(self, brokers: int) -> None:
        self._brokers = brokers

    async def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"node_id": i} for i in range(self._brokers)]}

    async def describe_configs(self, resources: list[Any]) -> list[Any]:
        from aiokafka.errors import KafkaError

        raise KafkaError("ClusterAuthorizationFailed")


@pytest.mark.parametrize(("brokers", "expected"), [(1, 1), (2, 2), (5, 3)])
async def test_unreadable_broker_configs_mean_three_copies_or_one_per_broker(
    brokers: int, expected: int
) -> None:
    assert await default_replication(_Admin(brokers)) == expected


def test_request_partitions_have_one_setting_and_control_topics_one_partition() -> None:
    with pytest.raises(msgspec.ValidationError, match="`partitions`"):
        TopicSettings(requests=TopicFamily(partitions=8))
    with pytest.raises(msgspec.ValidationError, match="control topic"):
        TopicSettings(control=TopicFamily(partitions=3))


async def test_a_request_topic_with_fewer_partitions_is_used_as_it_is_and_said(
    settings: WorkerSettings, infra: Infra, caplog: pytest.LogCaptureFixture
) -> None:
    """An existing topic keeps its partitions (the worker does not wait for ones it will
    never get), and the worker says that fewer of its group can get work."""
    topic = request_topic("generate", settings.namespace)
    await ensure_topics(infra.connection, {topic: 1})
    settings = msgspec.structs.replace(settings, partitions=3)
    worker = Worker("generate", settings, GenerateHandler(ModelRouter("chat", [ScriptedChat()])))
    with caplog.at_level(logging.WARNING, logger="workers.app"):
        async with serving(worker):
            pass
    assert f"{topic} has 1 partitions, fewer than partitions = 3" in caplog.text
