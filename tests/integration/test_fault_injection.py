"""Faults while the fleet works: generate, embed and vector jobs from one client while worker
processes are killed with ``kill -9``, Redis restarts and the broker restarts (all at once,
and one fault at a time). Every job must end with its answer or a typed error (none by
deadline), no stream may splice two attempts or end twice, every acknowledged vector must be
in the store afterwards, nothing of this live client may be dead-lettered as undeliverable,
and jobs sent after the faults must all succeed. docs/reliability.md reports the counts."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from contracts import DeadLetterReason, GenerateResult, Header, TextDelta, VectorRecord
from contracts.names import DEFAULT_TENANT, dead_letter_topic
from producer_sdk import DeadlineExceeded, FleetClient, FleetRequestError, StreamRestarted
from providers.vectorstores.redis_vectors import RedisVectorsConfig
from tests.conftest import Infra
from tests.integration.private_services import PrivateKafka, PrivateRedis, private_infra
from tests.integration.worker_processes import WorkerProcess
from transport.topic_reader import read_to_end
from workers.handlers.vectors import tenant_collection

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.private_kafka,
    pytest.mark.redis,
    pytest.mark.model,
    pytest.mark.slow,
]

CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"
# Short leases and sessions: a killed worker's jobs move on within seconds.
CONFIG = """
partitions = 4
session_timeout_ms = 6000
lock_ttl_s = 3.0
# Four worker processes, three with a model, on the machine: one model thread each.
model_threads = 1
"""
WORKERS = {"generate": 2, "embed": 1, "vectors": 1}
JOB_TIMEOUT_S = 100.0
UNDELIVERABLE = {DeadLetterReason.REPLY_UNDELIVERABLE, DeadLetterReason.REPLY_TOPIC_GONE}


class Fleet:
    """Worker processes of each kind; a killed one is replaced at once, as a supervisor
    (systemd, Kubernetes) would."""

    def __init__(self, infra: Infra, namespace: str, home: Path) -> None:
        self._infra, self._namespace, self._home = infra, namespace, home
        self._config = home / "worker.toml"
        self._config.write_text(CONFIG)
        self.live: list[tuple[str, WorkerProcess]] = []
        self.started = 0
        self.kills = 0

    def start(self, kind: str) -> WorkerProcess:
        self.started += 1
        log = self._home / f"{kind}-{self.started}.log"
        worker = WorkerProcess(kind, self._infra, self._namespace, self._config, log)
        self.live.append((kind, worker))
        return worker

    async def start_all(self) -> None:
        workers = [self.start(kind) for kind, count in WORKERS.items() for _ in range(count)]
        await asyncio.gather(*(w.wait_ready(timeout_s=180) for w in workers))

    def kill_one(self, rng: random.Random) -> None:
        kind, worker = self.live.pop(rng.randrange(len(self.live)))
        worker.kill()
        self.kills += 1
        self.start(kind)

    def stop_all(self) -> None:
        for _, worker in self.live:
            worker.ensure_stopped()


@dataclass
class Tally:
    answered: collections.Counter[str] = field(default_factory=collections.Counter)
    typed_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    restarts_seen: int = 0
    by_deadline: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # untyped errors, spliced streams
    acknowledged_vectors: list[str] = field(default_factory=list)

    @property
    def ended(self) -> int:
        return sum(self.answered.values()) + sum(self.typed_errors.values())

    def summary(self) -> dict[str, object]:
        return {
            "answered": dict(self.answered),
            "typed_errors": dict(self.typed_errors),
            "restarts_seen": self.restarts_seen,
            "by_deadline": len(self.by_deadline),
            "broken": len(self.broken),
            "acknowledged_vectors": len(self.acknowledged_vectors),
        }


class Jobs:
    """Mixed jobs from one client, each counted by how it ended."""

    def __init__(self, client: FleetClient, collection: str, tally: Tally) -> None:
        self._client, self._collection, self.tally = client, collection, tally
        self._n = 0

    async def generate(self) -> None:
        text, results = "", 0
        stream = self._client.stream_generate(
            f"Say a word about number {self._n}.",
            model=CHAT_MODEL,
            max_tokens=6,
            timeout_s=JOB_TIMEOUT_S,
        )
        async for event in stream:
            if isinstance(event, StreamRestarted):
                text = ""
                self.tally.restarts_seen += 1
            elif isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, GenerateResult):
                results += 1
                if event.text != text:
                    self.tally.broken.append(f"spliced stream: {text!r} != {event.text!r}")
        if results != 1:
            self.tally.broken.append(f"a stream ended with {results} results")
        self.tally.answered["generate"] += 1

    async def embed(self) -> None:
        texts = [f"text {self._n} part {i}" for i in range(1 + self._n % 3)]
        result = await self._client.embed(texts, model=EMBED_MODEL, timeout_s=JOB_TIMEOUT_S)
        if len(result.vectors) != len(texts):
            self.tally.broken.append(f"{len(result.vectors)} vectors for {len(texts)} texts")
        self.tally.answered["embed"] += 1

    async def upsert(self) -> None:
        point = f"point-{self._n}"
        rng = random.Random(self._n)
        record = VectorRecord(id=point, vector=[rng.uniform(-1, 1) for _ in range(8)])
        result = await self._client.upsert(self._collection, [record], timeout_s=JOB_TIMEOUT_S)
        if result.upserted == 1:
            self.tally.acknowledged_vectors.append(point)
        self.tally.answered["vectors"] += 1

    async def one(self) -> None:
        self._n += 1
        job: Callable[[], Awaitable[None]] = (self.generate, self.embed, self.upsert)[self._n % 3]
        try:
            await job()
        except FleetRequestError as exc:
            self.tally.typed_errors[exc.code.value] += 1
        except DeadlineExceeded as exc:
            self.tally.by_deadline.append(str(exc))
        except Exception as exc:
            self.tally.broken.append(repr(exc))

    async def send(self, count: int, per_second: float, in_flight: int = 24) -> None:
        """``count`` jobs at a steady pace, at most ``in_flight`` at once, until all ended."""
        slots = asyncio.Semaphore(in_flight)

        async def limited() -> None:
            async with slots:
                await self.one()

        tasks = []
        for _ in range(count):
            tasks.append(asyncio.create_task(limited()))
            await asyncio.sleep(1 / per_second)
        await asyncio.gather(*tasks)


async def _dead_letter_reasons(infra: Infra, namespace: str) -> collections.Counter[str]:
    """Why each dead letter of the run was written (read once the jobs have all ended)."""
    reasons: collections.Counter[str] = collections.Counter()
    for kind in WORKERS:
        async for record in read_to_end(infra.connection, dead_letter_topic(kind, namespace)):
            reasons[dict(record.headers)[Header.DLQ_REASON].decode()] += 1
    return reasons


async def _missing_vectors(redis_url: str, collection: str, points: list[str]) -> list[str]:
    key = f"{RedisVectorsConfig().key_prefix}:{tenant_collection(DEFAULT_TENANT, collection)}"
    redis = aioredis.Redis.from_url(redis_url)
    try:
        found = [await redis.execute_command("VEMB", key, p) for p in points]  # type: ignore[no-untyped-call]
    finally:
        await redis.aclose()
    return [p for p, vector in zip(points, found, strict=True) if not vector]


Faults = Callable[[Fleet, PrivateKafka, PrivateRedis], Awaitable[None]]


async def _everything_at_once(fleet: Fleet, kafka: PrivateKafka, redis: PrivateRedis) -> None:
    rng = random.Random(13)
    for step in range(12):
        await asyncio.sleep(2.5)
        fleet.kill_one(rng)
        if step == 3:
            await asyncio.to_thread(redis.stop)
            await asyncio.to_thread(redis.start)
        if step == 7:
            await asyncio.to_thread(kafka.stop)
            await asyncio.to_thread(kafka.start)


async def _redis_restart(fleet: Fleet, kafka: PrivateKafka, redis: PrivateRedis) -> None:
    await asyncio.sleep(5)
    await asyncio.to_thread(redis.stop)
    await asyncio.to_thread(redis.start)


async def _broker_down_20s(fleet: Fleet, kafka: PrivateKafka, redis: PrivateRedis) -> None:
    await asyncio.sleep(5)
    await asyncio.to_thread(kafka.stop)
    await asyncio.sleep(20)
    await asyncio.to_thread(kafka.start)


SCENARIOS: dict[str, tuple[Faults, int]] = {
    "kill9-redis-and-broker-restart": (_everything_at_once, 300),
    "redis-restart-alone": (_redis_restart, 120),
    "broker-down-20s-alone": (_broker_down_20s, 120),
}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_every_job_ends_through_faults(
    scenario: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="aiokafka")  # the client's reconnect noise
    faults, count = SCENARIOS[scenario]
    kafka, redis = PrivateKafka(tmp_path / "home"), PrivateRedis(tmp_path / "home")
    await asyncio.to_thread(kafka.start)
    await asyncio.to_thread(redis.start)
    infra = private_infra(kafka, redis)
    namespace = f"faults-{uuid.uuid4().hex[:8]}"
    fleet = Fleet(infra, namespace, tmp_path)
    collection = "acknowledged"
    tally = Tally()
    try:
        await fleet.start_all()
        async with infra.client(namespace=namespace) as client:
            jobs = Jobs(client, collection, tally)
            started = time.monotonic()
            await asyncio.gather(jobs.send(count, per_second=10), faults(fleet, kafka, redis))
            faulty_s = time.monotonic() - started

            after = Tally()
            await Jobs(client, collection, after).send(30, per_second=30)
        missing = await _missing_vectors(redis.url, collection, tally.acknowledged_vectors)
        dead = await _dead_letter_reasons(infra, namespace)
    finally:
        fleet.stop_all()
        kafka.discard()  # throwaway services: kill -9 skips their clean shutdowns
        redis.discard()

    report = {
        "scenario": scenario,
        "jobs": count,
        "worker_kills": fleet.kills,
        "seconds": round(faulty_s),
        **tally.summary(),
        "dead_letters": dict(dead),
        "after_the_faults": after.summary(),
    }
    print(json.dumps(report))  # the counts docs/reliability.md reports (pytest -s shows it)
    assert tally.by_deadline == [], tally.by_deadline[:3]
    assert tally.broken == [], tally.broken[:3]
    assert tally.ended == count
    assert missing == []
    assert not UNDELIVERABLE & set(dead), dead
    assert after.answered == {"generate": 10, "embed": 10, "vectors": 10}, after.summary()
