"""Parking through the job consumer and its real group loop, over fakes of the broker's two
sides (a consumer of one partition, the in-memory publisher): a parked record is finished,
so its offset committed, only once the broker has acknowledged its copy (decision 0045).

Three records on one partition, one slot, a window of 2: B's job at offset 0 takes the slot
(held by the model), A's at 1 waits, A's at 2 is beyond A's share (2 x 1/2) and is parked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.codec import encode
from contracts.errors import ErrorCode
from contracts.names import Header, parked_topic
from contracts.replies import ErrorReply
from tests.integration.harness import until
from tests.integration.scripted_chat import ScriptedChat
from tests.unit.job_runner_harness import NAMESPACE, REPLIES, REQUESTS, Fixture, _request
from tests.unit.memory_publisher import MemoryPublisher
from transport.records import Record
from workers.parking import ParkingLot
from workers.runtime.consumer import JobConsumer
from workers.runtime.lanes import LaneGate
from workers.settings import FairnessSettings

PARKED = parked_topic("generate", NAMESPACE)
PARTITION = TopicPartition(REQUESTS, 0)


class _OnePartition:
    """The part of AIOKafkaConsumer a lane's group loop uses: one partition, whose
    ``records`` the first fetches return (as many as the room allows); the commits."""

    def __init__(self, records: list[Record]) -> None:
        self._records = records
        self.commits: list[int] = []

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        pass

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    def paused(self) -> set[TopicPartition]:
        return set()

    def resume(self, *partitions: TopicPartition) -> None:
        pass

    def pause(self, *partitions: TopicPartition) -> None:
        pass

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Record]]:
        if not self._records or max_records is None:  # max_records None: paused
            await asyncio.sleep(0.01)
            return {}
        taken, self._records = self._records[:max_records], self._records[max_records:]
        return {PARTITION: taken}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets[PARTITION])


class _NeverAcknowledged(MemoryPublisher):
    """Takes every send, but never acknowledges a copy sent to the park topic."""

    def __init__(self) -> None:
        super().__init__()
        self.parking = asyncio.Event()

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Any:
        if topic == PARKED:
            self.parking.set()
            await asyncio.Event().wait()
        return await super().send_and_wait(topic, value, key, partition, timestamp_ms, headers)


def _job(offset: int, tenant: str, deadline_ms: int | None = None) -> Record:
    value = encode(_request(f"{tenant}-{offset}", tenant=tenant, deadline_ms=deadline_ms))
    headers = [(Header.TENANT, tenant.encode())]
    return ConsumerRecord(REQUESTS, 0, offset, 0, 0, b"key", value, None, 3, len(value), headers)


class _Lane:
    def __init__(self, publisher: MemoryPublisher, *, last_deadline_ms: int | None = None) -> None:
        self.chat = ScriptedChat()
        self.answers = self.chat.gate = asyncio.Event()  # every answer waits for it
        self.fixture = Fixture(chat=self.chat, publisher=publisher)
        records = [_job(0, "b"), _job(1, "a"), _job(2, "a", last_deadline_ms)]
        self.partition = _OnePartition(records)
        self.jobs = JobConsumer(
            consumer=cast(AIOKafkaConsumer, self.partition),
            topic=REQUESTS,
            runner=self.fixture.runner,
            gate=LaneGate(1, 0),
            commit_interval_s=0.01,
            shutdown_grace_s=0.05,
            metrics=self.fixture.metrics,
            fairness=FairnessSettings(window=2),
            parking=ParkingLot(publisher, "generate", NAMESPACE, delay_s=0.2),
        )
        self.task = asyncio.create_task(self.jobs.run())

    def parked(self) -> float:
        labels = {"kind": "generate", "lane": "interactive", "tenant": "a"}
        registry = self.fixture.metrics.registry
        return registry.get_sample_value("fleet_tenant_jobs_parked_total", labels) or 0

    async def stop(self) -> None:
        self.jobs.stop()
        await asyncio.wait_for(self.task, timeout=10)


async def test_a_parked_record_is_finished_once_its_copy_is_acknowledged() -> None:
    publisher = MemoryPublisher()
    lane = _Lane(publisher)
    await until(lambda: lane.parked() == 1)
    (copy,) = publisher.on(PARKED)
    assert copy.value == _job(2, "a").value
    assert copy.headers[Header.TENANT] == b"a"
    assert copy.headers[Header.RETRY_LANE] == b"interactive"
    assert Header.RETRY_NOT_BEFORE_MS in copy.headers
    assert Header.RETRY_COUNT not in copy.headers  # not a retry
    lane.answers.set()
    await until(lambda: 3 in lane.partition.commits)
    await lane.stop()
    assert lane.chat.calls == 2  # B's job and A's first: A's second runs when it is back


async def test_a_copy_never_acknowledged_is_not_finished_at_shutdown() -> None:
    publisher = _NeverAcknowledged()
    lane = _Lane(publisher)
    await publisher.parking.wait()
    lane.answers.set()
    await until(lambda: 2 in lane.partition.commits)  # offsets 0 and 1 answered
    await lane.stop()  # the park is cancelled after the grace period
    assert lane.partition.commits[-1] == 2, lane.partition.commits
    assert lane.parked() == 0
    assert lane.chat.calls == 2  # offset 2 is fetched again by whoever owns it next


async def test_a_copy_the_broker_refuses_waits_its_turn_here() -> None:
    lane = _Lane(MemoryPublisher(unreachable=[PARKED]))
    await until(lambda: lane.chat.calls == 1)
    lane.answers.set()
    await until(lambda: 3 in lane.partition.commits)
    await lane.stop()
    assert lane.chat.calls == 3
    assert lane.parked() == 0


async def test_a_record_past_its_deadline_is_not_parked_but_ends_with_timeout() -> None:
    publisher = MemoryPublisher()
    lane = _Lane(publisher, last_deadline_ms=int(time.time() * 1000) - 1000)
    await until(lambda: lane.chat.calls == 1)
    lane.answers.set()
    await until(lambda: 3 in lane.partition.commits)
    await lane.stop()
    assert lane.parked() == 0
    assert publisher.on(PARKED) == []
    assert lane.chat.calls == 2  # B's job and A's first; A's second was not run
    (final,) = [r for r in publisher.replies(REPLIES) if r.request_id == "a-2"]
    assert isinstance(final, ErrorReply)
    assert final.code is ErrorCode.TIMEOUT
