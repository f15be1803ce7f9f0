"""A three-broker cluster (replication factor 3, min.insync.replicas 2) loses a broker to
kill -9 under load: every job is answered, once, and no final answer comes back twice."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.codec import decode_chunk
from contracts.names import Header, request_topic
from contracts.replies import Final
from producer_sdk import FleetClient
from providers.router import ModelRouter
from tests.conftest import Infra
from tests.integration.harness import serving
from tests.integration.private_services import PrivateKafkaCluster
from tests.integration.scripted_chat import ScriptedChat
from workers import Worker, WorkerSettings
from workers.handlers.generate import GenerateHandler

pytestmark = [pytest.mark.kafka, pytest.mark.private_kafka, pytest.mark.redis, pytest.mark.slow]

JOBS = 240
IN_FLIGHT = 24
MODEL = "scripted-model"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PrivateKafkaCluster]:
    cluster = PrivateKafkaCluster(tmp_path / "fleet-home")
    cluster.run("start")
    try:
        yield cluster
    finally:
        cluster.kill_all()  # throwaway brokers: kill -9 skips three controlled shutdowns


async def _leader_port(admin: AIOKafkaAdminClient, topic: str) -> int:
    (described,) = await admin.describe_topics([topic])
    leader = described["partitions"][0]["leader"]
    brokers = (await admin.describe_cluster())["brokers"]
    return int(next(b["port"] for b in brokers if b["node_id"] == leader))


async def _final_records(servers: str, topic: str) -> dict[str, list[tuple[int, int]]]:
    """(attempt, seq) of every final reply on ``topic``, per request id."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None)
    await consumer.start()
    finals: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                headers = dict(record.headers)
                if Header.HEARTBEAT in headers or not record.value:
                    continue
                chunk = decode_chunk(record.value, headers.get(Header.CONTENT_TYPE, b"").decode())
                if isinstance(chunk, Final):
                    finals[chunk.request_id].append((chunk.attempt, chunk.seq))
    finally:
        await consumer.stop()
    return finals


async def test_a_broker_killed_under_load_loses_and_duplicates_nothing(
    cluster: PrivateKafkaCluster, infra: Infra, namespace: str
) -> None:
    settings = WorkerSettings(
        bootstrap_servers=cluster.bootstrap_servers,
        redis_url=infra.redis_url,
        namespace=namespace,
        partitions=6,
        concurrency=8,
        shutdown_grace_s=10,
        kafka_request_timeout_ms=10_000,
    )
    chat = ScriptedChat(echo=True, pieces=(" .", " ."), piece_delay_s=0.02)
    workers = [
        Worker("generate", settings, GenerateHandler(ModelRouter("chat", [chat]))) for _ in range(2)
    ]
    async with (
        serving(workers[0]),
        serving(workers[1]),
        FleetClient(
            cluster.bootstrap_servers, namespace=namespace, default_timeout_s=120
        ) as client,
    ):
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
        await admin.start()
        try:
            (requests,) = await admin.describe_topics([request_topic("generate", namespace)])
            victim = cluster.node_at(await _leader_port(admin, client.reply_address.topic))
        finally:
            await admin.close()
        assert {len(p["replicas"]) for p in requests["partitions"]} == {3}

        answers: dict[str, str] = {}
        gate = asyncio.Semaphore(IN_FLIGHT)
        quarter_done = asyncio.Event()

        async def one(i: int) -> None:
            prompt = f"job {i} {uuid.uuid4().hex[:6]}"
            async with gate:
                result = await client.generate(prompt, model=MODEL, request_id=f"job-{i}")
            answers[f"job-{i}"] = result.text
            if len(answers) >= JOBS // 4:
                quarter_done.set()
            assert result.text.startswith(prompt), (prompt, result.text)

        jobs = [asyncio.create_task(one(i)) for i in range(JOBS)]
        await quarter_done.wait()
        await asyncio.to_thread(cluster.kill, victim)  # the leader of the client's replies
        killed_at = len(answers)
        await asyncio.gather(*jobs)
        finals = await _final_records(cluster.bootstrap_servers, client.reply_address.topic)

    assert killed_at < JOBS, "the broker died after the load was over"
    assert sorted(answers) == sorted(f"job-{i}" for i in range(JOBS))
    # A final answer may be written twice by a produce retry, but then as the same chunk
    # (attempt, seq), which the SDK drops: never two different final answers.
    assert set(finals) == set(answers)
    assert {rid: len(set(marks)) for rid, marks in finals.items() if len(set(marks)) > 1} == {}
    # The work itself ran once per job: redeliveries were answered from the ledger.
    assert chat.calls == JOBS
