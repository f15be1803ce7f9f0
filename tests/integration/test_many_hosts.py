"""Workers on many hosts: three `vectors` worker processes, each in a network namespace of
its own (a host, joined to this one by a veth pair on a bridge: tests/integration/
netns_hosts.py), share one consumer group on a broker and a Redis that listen on the
bridge. Under load one host's link is taken down: its member leaves the group, the other
two take all six partitions, and every upsert is answered and in the store, none lost."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from contracts import VectorRecord
from contracts.names import DEFAULT_TENANT, request_topic
from producer_sdk import FleetClient
from providers.vectorstores.redis_vectors import RedisVectorsConfig
from tests.integration.netns_hosts import NetnsHost, NetnsTopology, netns_hosts
from tests.integration.private_services import PrivateKafka, PrivateRedis, private_infra
from tests.integration.worker_processes import WorkerProcess
from transport.partitioning import key_partitioner
from workers.handlers.vectors import tenant_collection
from workers.settings import WorkerSettings

pytestmark = [pytest.mark.kafka, pytest.mark.private_kafka, pytest.mark.redis, pytest.mark.slow]

PARTITIONS = 6
# The broker's minimum session: a host that drops off is out of the group within seconds;
# short leases let its unfinished jobs be taken over as soon.
CONFIG = f"""
partitions = {PARTITIONS}
session_timeout_ms = 6000
lock_ttl_s = 3.0
"""
JOBS = 300
PER_SECOND = 20  # 15 s of load: the group settles (6 s session) well inside it
IN_FLIGHT = 48
DOWN_AFTER = 80  # answers before one host's link goes down
DIMENSIONS = 8
COLLECTION = "many-hosts"

Members = dict[str, set[int]]  # a member's host address: the request partitions it holds


@pytest.fixture
def hosts() -> Iterator[NetnsTopology]:
    with netns_hosts(3) as topology:
        yield topology


async def _members(admin: AIOKafkaAdminClient, group: str, topic: str) -> Members:
    """Each member of ``group`` (by the address it connects from) and its partitions of
    ``topic``, once the group is Stable; {} while it rebalances."""
    (response,) = await admin.describe_consumer_groups([group])
    (described,) = response.to_object()["groups"]
    if described["state"] != "Stable":
        return {}
    members: Members = {}
    for member in described["members"]:
        host = member["client_host"].lstrip("/")
        members.setdefault(host, set())
        if member["member_assignment"]:
            assignment = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
            members[host] |= {tp.partition for tp in assignment.partitions() if tp.topic == topic}
    return members


async def _wait_for_group(
    admin: AIOKafkaAdminClient,
    group: str,
    topic: str,
    settled: Callable[[Members], bool],
    timeout_s: float,
) -> Members:
    members: Members = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        members = await _members(admin, group, topic)
        if settled(members):
            return members
        await asyncio.sleep(0.5)
    raise AssertionError(f"group {group} did not settle in {timeout_s}s: {members}")


def _spread_over(addresses: set[str]) -> Callable[[Members], bool]:
    """The members are exactly these hosts, each holds partitions, together all of them,
    none twice."""

    def settled(members: Members) -> bool:
        held = [p for partitions in members.values() for p in partitions]
        return (
            set(members) == addresses
            and all(members.values())
            and sorted(held) == list(range(PARTITIONS))
        )

    return settled


def _partition_of(request_id: str) -> int:
    """Where the client's producer (its partitioner, keyed by request id) sends it."""
    every = list(range(PARTITIONS))
    return key_partitioner(request_id.encode(), every, every)


async def _missing(redis_url: str, ids: list[str]) -> list[str]:
    key = f"{RedisVectorsConfig().key_prefix}:{tenant_collection(DEFAULT_TENANT, COLLECTION)}"
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for point in ids:
                pipe.execute_command("VEMB", key, point)
            found = await pipe.execute()
    finally:
        await redis.aclose()
    return [point for point, vector in zip(ids, found, strict=True) if not vector]


class Load:
    """Upserts of distinct ids at a steady pace, each one's answer or error recorded."""

    def __init__(self, client: FleetClient) -> None:
        self._client = client
        self.answered: dict[int, float] = {}  # job: when its answer came (point-<job>)
        self.failed: list[str] = []
        self.enough = asyncio.Event()

    async def _one(self, i: int, slots: asyncio.Semaphore) -> None:
        point = f"point-{i}"
        rng = random.Random(i)
        record = VectorRecord(id=point, vector=[rng.uniform(-1, 1) for _ in range(DIMENSIONS)])
        async with slots:
            try:
                result = await self._client.upsert(
                    COLLECTION, [record], request_id=f"upsert-{i}", timeout_s=90
                )
            except Exception as exc:
                self.failed.append(f"{point}: {exc!r}")
                return
        if result.upserted != 1:
            self.failed.append(f"{point}: upserted {result.upserted}")
            return
        self.answered[i] = time.monotonic()
        if len(self.answered) >= DOWN_AFTER:
            self.enough.set()

    async def run(self) -> None:
        slots = asyncio.Semaphore(IN_FLIGHT)
        tasks = []
        for i in range(JOBS):
            tasks.append(asyncio.create_task(self._one(i, slots)))
            await asyncio.sleep(1 / PER_SECOND)
        await asyncio.gather(*tasks)


async def _take_down(victim: NetnsHost, load: Load) -> tuple[float, int]:
    await asyncio.wait_for(load.enough.wait(), 60)
    victim.link_down()
    return time.monotonic(), len(load.answered)


@pytest.mark.timeout(300)
async def test_a_host_that_drops_off_hands_its_partitions_over_and_loses_nothing(
    hosts: NetnsTopology, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="aiokafka")
    home = tmp_path / "home"
    kafka = PrivateKafka(home, host=hosts.gateway)
    redis = PrivateRedis(home, host=hosts.gateway)
    await asyncio.gather(asyncio.to_thread(kafka.start), asyncio.to_thread(redis.start))
    infra = private_infra(kafka, redis)
    namespace = f"hosts-{uuid.uuid4().hex[:8]}"
    group = WorkerSettings(namespace=namespace).group_for("vectors")
    topic = request_topic("vectors", namespace)
    config = tmp_path / "worker.toml"
    config.write_text(CONFIG)
    workers = [
        WorkerProcess(
            "vectors",
            infra,
            namespace,
            config,
            tmp_path / f"{host.name}.log",
            prefix=host.prefix,
            health_host=host.address,
        )
        for host in hosts.hosts
    ]
    victim, survivors = hosts.hosts[0], hosts.hosts[1:]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        await asyncio.gather(*(w.wait_ready(timeout_s=120) for w in workers))
        await admin.start()
        everyone = {host.address for host in hosts.hosts}
        before = await _wait_for_group(admin, group, topic, _spread_over(everyone), 60)

        async with infra.client(namespace=namespace, default_timeout_s=90) as client:
            load = Load(client)
            sending = asyncio.create_task(load.run())
            down_at, answered_at_down = await _take_down(victim, load)
            remaining = {host.address for host in survivors}
            after = await _wait_for_group(admin, group, topic, _spread_over(remaining), 60)
            rebalanced_at = time.monotonic()
            await sending
        missing = await _missing(redis.url, [f"point-{i}" for i in sorted(load.answered)])
        served = [await w.metric("fleet_jobs_total") for w in workers[1:]]
    finally:
        await admin.close()
        for worker in workers:
            worker.ensure_stopped()
        kafka.discard()  # throwaway services: kill -9 skips their clean shutdowns
        redis.discard()

    print(
        f"before: {before}; after {rebalanced_at - down_at:.1f}s: {after}; "
        f"answered at the link's loss: {answered_at_down}; served by the others: {served}"
    )
    assert answered_at_down < JOBS, "the link went down after the load was over"
    assert load.failed == [], load.failed[:5]
    assert sorted(load.answered) == list(range(JOBS))
    assert missing == []
    # The lost host's partitions were served by the others: jobs on them answered once it
    # was gone, all by the two left (the only ones that could still reply).
    moved = before[victim.address]
    late = [i for i, at in load.answered.items() if at > down_at]
    assert any(_partition_of(f"upsert-{i}") in moved for i in late), moved
    assert any(at > rebalanced_at for at in load.answered.values())
    assert sum(served) >= len(late)
