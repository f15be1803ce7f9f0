"""One topology: transport/topology.py is the only caller of topic creation, and every path
that creates a topic gets one spec for it, whatever the settings
(docs/decisions/0024-one-topology.md). tests/integration/test_topology.py describes the
topics each path creates on the real broker."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from contracts.names import (
    BATCH_KIND,
    DEFAULT_NAMESPACE,
    JOB_KINDS,
    LANES,
    batch_command_topic,
    batch_input_topic,
    batch_output_topic,
    batch_request_topic,
    batch_status_topic,
    request_topic,
)
from producer_sdk.batches import BatchClient
from tests.conftest import REPO
from transport import topology
from transport.connection import KafkaConnection
from transport.topic_admin import TopicSpec
from transport.topology import TopicFamily, TopicSettings
from workers.app import Worker
from workers.batch.coordinator import BATCH_SENDS_TO, BatchCoordinator
from workers.handlers import JobHandler
from workers.retry import RetryPolicy
from workers.settings import BatchSettings, WorkerSettings

PACKAGES = ("contracts", "transport", "providers", "producer_sdk", "workers")
CREATION = {"ensure_topics", "create_topics"}
# The topology asks for topics; the admin module is the plumbing it asks through (its
# ensure_topics calls aiokafka's create_topics).
ALLOWED = {"transport/topology.py", "transport/topic_admin.py"}

# Settings that move every knob a topic spec could follow.
TUNED = WorkerSettings(
    namespace="tuned",
    partitions=12,
    group_id=None,
    retry=RetryPolicy(tiers_s=(2.0, 20.0)),
    topics=TopicSettings(
        requests=TopicFamily(replication_factor=3, min_insync_replicas=2, retention_ms=7_000),
        retry=TopicFamily(partitions=2, retention_ms=60_000),
        dead_letter=TopicFamily(partitions=3, replication_factor=2, retention_ms=-1),
        control=TopicFamily(min_insync_replicas=1),
    ),
    batch=BatchSettings(retention_days=2.0),
)
SETTINGS = [WorkerSettings(), TUNED]


def _creation_sites(path: Path) -> list[str]:
    """Where ``path`` calls or imports a topic-creation function."""
    sites = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in CREATION:
                sites.append(f"{path.relative_to(REPO)}:{node.lineno} calls {name}")
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in CREATION:
                    sites.append(f"{path.relative_to(REPO)}:{node.lineno} imports {alias.name}")
    return sites


def test_only_the_topology_creates_topics() -> None:
    sources = sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))
    sites = [
        site
        for path in sources
        if str(path.relative_to(REPO)) not in ALLOWED
        for site in _creation_sites(path)
    ]
    assert sites == []


def test_the_allowed_sites_are_where_they_say() -> None:
    """The allow-list names real files, and the topology does create through ensure_topics."""
    assert all((REPO / name).exists() for name in ALLOWED)
    assert any("calls ensure_topics" in s for s in _creation_sites(REPO / "transport/topology.py"))


@pytest.mark.parametrize("settings", SETTINGS, ids=["defaults", "tuned"])
def test_the_batch_topics_have_one_spec_whichever_side_creates_them(
    settings: WorkerSettings,
) -> None:
    """The SDK creates the command, status and input topics with the topology's constants
    (it reads no worker setting); the coordinator creates the same specs, whatever its
    settings say of partitions and families."""
    ns = settings.namespace
    coordinator = settings.topology.coordinator_topics(BATCH_SENDS_TO)
    assert coordinator[batch_command_topic(ns)] == topology.BATCH_COMMANDS
    assert coordinator[batch_status_topic(ns)] == topology.BATCH_STATUS
    # Replication has one rule: the families the settings give, else the cluster's. No
    # family covers the batch topics, so every side leaves it to the cluster.
    assert topology.BATCH_COMMANDS.replication_factor is None
    assert topology.BATCH_STATUS.replication_factor is None
    # Input and output keep a batch as long as each other: `[batch] retention_days`.
    batch = settings.topology.batch_topics("b1")
    days = settings.batch.retention_days
    expected = TopicSpec(partitions=1, configs={"retention.ms": str(int(days * 86_400_000))})
    assert batch == {
        batch_input_topic("b1", ns): expected,
        batch_output_topic("b1", ns): expected,
    }


def test_the_sdk_creates_a_batch_input_as_the_default_coordinator_keeps_it() -> None:
    batch = WorkerSettings().topology.batch_topics("b1")
    assert batch[batch_input_topic("b1")] == topology.batch_data()
    assert BatchSettings().retention_days == topology.BATCH_RETENTION_DAYS


@pytest.mark.parametrize("settings", SETTINGS, ids=["defaults", "tuned"])
def test_a_kinds_request_topics_have_one_spec_whether_worker_or_coordinator_creates_them(
    settings: WorkerSettings,
) -> None:
    ns, plan = settings.namespace, settings.topology
    coordinator = plan.coordinator_topics(BATCH_SENDS_TO)
    for kind in JOB_KINDS:
        worker = plan.kind_topics(kind)
        assert worker[batch_request_topic(kind, ns)] == worker[request_topic(kind, ns)]
        if kind in BATCH_SENDS_TO:
            assert coordinator[batch_request_topic(kind, ns)] == worker[request_topic(kind, ns)]


def test_a_kinds_topics_follow_its_families() -> None:
    ns = TUNED.namespace
    topics = TUNED.topology.kind_topics("embed")
    assert topics == {
        f"{ns}.v1.embed.requests": TopicSpec(
            partitions=12,
            replication_factor=3,
            configs={"min.insync.replicas": "2", "retention.ms": "7000"},
        ),
        f"{ns}.v1.embed.batch-requests": TopicSpec(
            partitions=12,
            replication_factor=3,
            configs={"min.insync.replicas": "2", "retention.ms": "7000"},
        ),
        f"{ns}.v1.embed.dead-letter": TopicSpec(
            partitions=3, replication_factor=2, configs={"retention.ms": "-1"}
        ),
        f"{ns}.v1.embed.control": TopicSpec(partitions=1, configs={"min.insync.replicas": "1"}),
        f"{ns}.v1.embed.retry-2s": TopicSpec(partitions=2, configs={"retention.ms": "60000"}),
        f"{ns}.v1.embed.retry-20s": TopicSpec(partitions=2, configs={"retention.ms": "60000"}),
        # The park topic (decision 0045) is a deferred topic of the retry family.
        f"{ns}.v1.embed.parked": TopicSpec(partitions=2, configs={"retention.ms": "60000"}),
    }
    # Without settings: the cluster's defaults, one partition but on the request topics.
    plain = WorkerSettings().topology.kind_topics("embed")
    assert all(spec == TopicSpec(partitions=spec.partitions) for spec in plain.values())
    assert {name: spec.partitions for name, spec in plain.items() if spec.partitions > 1} == {
        request_topic("embed"): 4,
        batch_request_topic("embed"): 4,
    }


def test_private_reply_topics_keep_an_hour_on_one_partition() -> None:
    assert TopicSpec(partitions=1, configs={"retention.ms": "3600000"}) == topology.PRIVATE_REPLIES


def test_the_status_topic_is_compacted_in_hour_segments() -> None:
    assert topology.BATCH_STATUS.partitions == 1
    assert topology.BATCH_STATUS.configs["cleanup.policy"] == "compact"
    assert topology.BATCH_STATUS.configs["segment.ms"] == "3600000"


def test_every_consumer_group_is_named_by_the_topology() -> None:
    plan = WorkerSettings(namespace="ns", retry=RetryPolicy(tiers_s=(1.0, 2.5))).topology
    assert plan.group("embed") == "ns.embed.workers"
    assert plan.group(BATCH_KIND) == "ns.batch.workers"
    assert [plan.lane_group("embed", lane) for lane in LANES] == [
        "ns.embed.workers",
        "ns.embed.workers.batch",
    ]
    assert [plan.retry_group("embed", d) for d in plan.retry_tiers_s] == [
        "ns.embed.workers.retry-1s",
        "ns.embed.workers.retry-2.5s",
    ]
    assert plan.replay_group("embed") == "ns.embed.dlq-replay"
    assert plan.parked_group("embed") == "ns.embed.workers.parked"
    # `group_id` replaces the kind's group, and the lanes and tiers follow it.
    shared = msgspec.structs.replace(plan, group_id="mine")
    assert (shared.lane_group("embed", "batch"), shared.retry_group("embed", 1.0)) == (
        "mine.batch",
        "mine.retry-1s",
    )


def test_the_settings_groups_are_the_topologys() -> None:
    settings = WorkerSettings(namespace="ns", group_id="g")
    for kind in (*JOB_KINDS, BATCH_KIND):
        assert settings.group_for(kind) == settings.topology.group(kind)
        for lane in LANES:
            assert settings.lane_group(kind, lane) == settings.topology.lane_group(kind, lane)


class _Stop(Exception):
    """Ends a path right after it asked for its topics."""


class _Broker:
    """Records what each path asks the topology to create (and to alter)."""

    def __init__(self, *, stop: bool = False) -> None:
        self.created: dict[str, TopicSpec] = {}
        self.altered: dict[str, dict[str, str]] = {}
        self.stop = stop

    async def ensure_topics(
        self, servers: object, topics: Mapping[str, int | TopicSpec]
    ) -> dict[str, int]:
        for name, spec in topics.items():
            assert isinstance(spec, TopicSpec), f"{name}: a bare partition count"
            self.created[name] = spec
        if self.stop:
            raise _Stop
        return {name: cast(TopicSpec, spec).partitions for name, spec in topics.items()}

    async def set_topic_configs(self, servers: object, topic: str, configs: dict[str, str]) -> None:
        self.altered[topic] = configs


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> _Broker:
    recorder = _Broker()
    monkeypatch.setattr(topology, "ensure_topics", recorder.ensure_topics)
    monkeypatch.setattr(topology, "set_topic_configs", recorder.set_topic_configs)
    return recorder


class _Producer:
    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
        return None


async def test_a_batch_submit_creates_what_the_coordinator_does(
    broker: _Broker, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"custom_id": "a", "text": "one"}\n')
    client = BatchClient(KafkaConnection(bootstrap_servers="unused:9092"))
    client._producer = cast(Any, _Producer())
    info = await client.submit(rows, model="m")
    sdk = dict(broker.created)
    assert sdk == {
        batch_input_topic(info.id): topology.batch_data(),
        batch_status_topic(): topology.BATCH_STATUS,
        batch_command_topic(): topology.BATCH_COMMANDS,
    }
    batch_input = batch_input_topic(info.id)
    for settings in SETTINGS:
        settings = msgspec.structs.replace(settings, namespace=DEFAULT_NAMESPACE)
        broker.created.clear()
        broker.altered.clear()
        broker.stop = True
        with pytest.raises(_Stop):
            await BatchCoordinator(settings).run()
        for name in (batch_command_topic(), batch_status_topic()):
            assert broker.created[name] == sdk[name]
        # The coordinator that takes the batch keeps its input as long as its output.
        broker.stop = False
        await topology.take_batch(settings.connection, settings.topology, info.id)
        output = broker.created[batch_output_topic(info.id)]
        # Altered where `retention_days` differs from what the client created it with.
        kept = broker.altered.get(batch_input, sdk[batch_input].configs)
        assert (
            kept == output.configs == settings.topology.batch_topics(info.id)[batch_input].configs
        )


@pytest.mark.parametrize("settings", SETTINGS, ids=["defaults", "tuned"])
async def test_a_worker_creates_its_kinds_topics_as_the_topology_names_them(
    broker: _Broker, settings: WorkerSettings
) -> None:
    broker.stop = True
    worker = Worker("embed", settings, cast(JobHandler[Any], object()))
    with pytest.raises(_Stop):
        await worker.run()
    assert broker.created == settings.topology.kind_topics("embed")
