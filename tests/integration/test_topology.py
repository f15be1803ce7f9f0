"""Each topic gets the topology's spec whichever path creates it (a client's reply channel,
a batch submit, a coordinator starting and taking a batch, a worker starting), described on
the real broker: partitions, replication, retention.ms, cleanup.policy, min.insync.replicas.
The batch topics are created in both orders: by a client first, and by a coordinator first."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.names import batch_command_topic, batch_input_topic, batch_status_topic
from producer_sdk import BatchClient, FleetClient
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.harness import serving
from tests.integration.scripted_chat import ScriptedChat
from tests.integration.test_batches import coordinator
from transport import topology
from transport.topic_admin import TopicSpec, default_replication
from transport.topology import TopicFamily, TopicSettings
from workers import Worker, WorkerSettings
from workers.batch.coordinator import BATCH_SENDS_TO
from workers.handlers.generate import GenerateHandler
from workers.settings import BatchSettings

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

# DescribeConfigs' source of a config set on the topic itself (not the broker's default).
_TOPIC_CONFIG = 1


class Described(msgspec.Struct, frozen=True):
    partitions: int
    replication: int
    # The topic's own configs: what its creator set (retention.ms, cleanup.policy,
    # min.insync.replicas, ...); the rest are the cluster's.
    configs: dict[str, str]


async def _describe(infra: Infra, topics: list[str]) -> tuple[dict[str, Described], int]:
    """What the broker says of each topic, and the cluster's default replication."""
    admin = AIOKafkaAdminClient(**infra.kafka_options())
    await admin.start()
    try:
        described: dict[str, Described] = {}
        for d in await admin.describe_topics(topics):
            resource = ConfigResource(ConfigResourceType.TOPIC, d["topic"])
            (response,) = await admin.describe_configs([resource])
            entries = response.to_object()["resources"][0]["config_entries"]
            configs = {
                e["config_names"]: e["config_value"]
                for e in entries
                if e["config_source"] == _TOPIC_CONFIG
            }
            replicas = {len(p["replicas"]) for p in d["partitions"]}
            assert len(replicas) == 1, d
            described[d["topic"]] = Described(len(d["partitions"]), replicas.pop(), configs)
        return described, await default_replication(admin)
    finally:
        await admin.close()


async def _assert_specs(infra: Infra, expected: dict[str, TopicSpec]) -> None:
    described, cluster_replication = await _describe(infra, sorted(expected))
    assert set(described) == set(expected)
    for name, spec in expected.items():
        topic = described[name]
        assert topic.partitions == spec.partitions, name
        assert topic.replication == (spec.replication_factor or cluster_replication), name
        assert topic.configs == spec.configs, name


def _tuned(settings: WorkerSettings) -> WorkerSettings:
    """Settings that differ from the defaults wherever a spec could follow them."""
    return msgspec.structs.replace(
        settings,
        partitions=3,
        topics=TopicSettings(
            requests=TopicFamily(min_insync_replicas=1, retention_ms=7_200_000),
            retry=TopicFamily(retention_ms=600_000),
            dead_letter=TopicFamily(partitions=2, retention_ms=-1),
        ),
        batch=BatchSettings(retention_days=2.0),
    )


async def _wait_in_progress(batches: BatchClient, batch_id: str) -> None:
    for _ in range(300):
        if (await batches.status(batch_id)).status == "in_progress":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch {batch_id} was not taken by the coordinator within 30 s")


@pytest.mark.parametrize("first", ["client", "coordinator"])
async def test_every_path_creates_its_topics_with_the_topologys_spec(
    first: str, infra: Infra, settings: WorkerSettings, tmp_path: Path
) -> None:
    settings = _tuned(settings)
    ns, plan = settings.namespace, settings.topology
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"custom_id": "a", "text": "one"}\n{"custom_id": "b", "text": "two"}\n')
    expected: dict[str, TopicSpec] = {}
    async with FleetClient(
        infra.bootstrap_servers, security=infra.security, namespace=ns
    ) as client, BatchClient(infra.connection, namespace=ns) as batches:  # fmt: skip
        expected[client.reply_address.topic] = topology.PRIVATE_REPLIES
        if first == "client":
            info = await batches.submit(rows, model="m")
            # The client made the command and status topics, before any coordinator.
            await _assert_specs(
                infra,
                {
                    batch_command_topic(ns): topology.BATCH_COMMANDS,
                    batch_status_topic(ns): topology.BATCH_STATUS,
                    batch_input_topic(info.id, ns): topology.batch_data(),
                },
            )
        async with coordinator(settings):
            if first == "coordinator":
                await _assert_specs(infra, plan.coordinator_topics(BATCH_SENDS_TO))
                info = await batches.submit(rows, model="m")
            # No embed worker: the batch stays in progress, its topics made.
            await _wait_in_progress(batches, info.id)
            expected.update(plan.coordinator_topics(BATCH_SENDS_TO))
            expected.update(plan.batch_topics(info.id))
            await _assert_specs(infra, expected)
        worker = Worker(
            "generate", settings, GenerateHandler(ModelRouter("chat", [ScriptedChat()]))
        )
        async with serving(worker):
            pass
        expected.update(plan.kind_topics("generate"))
        await _assert_specs(infra, expected)
