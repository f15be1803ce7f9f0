"""Faults while the fleet works: generate, embed and vector jobs (and rerank and speech jobs
where workers are killed) from three tenants weighted 2:1:1, while worker processes are
killed with ``kill -9``, Redis restarts and the broker restarts (all at once, and one fault
at a time). Every job must end with its answer or a typed error (none by deadline), no
stream may splice two attempts or end twice, no job may run twice (the ledger counts each
start), jobs must have waited in the workers' fair queues, every acknowledged vector must be
in the store afterwards, nothing of these live clients may be dead-lettered as undeliverable,
and jobs sent after the faults must all succeed. docs/reliability.md reports the counts."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import re
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from contracts import (
    DeadLetterReason,
    GenerateResult,
    Header,
    SpeechAudio,
    SpeechResult,
    TextDelta,
    VectorRecord,
)
from contracts.names import dead_letter_topic
from producer_sdk import DeadlineExceeded, FleetClient, FleetRequestError, StreamRestarted
from providers.redis_client import REDIS_FAILURES
from providers.vectorstores.redis_vectors import RedisVectorsConfig
from tests.conftest import Infra
from tests.integration.harness import Job, ledger_runs
from tests.integration.private_services import PrivateKafka, PrivateRedis, private_infra
from tests.integration.worker_processes import WorkerProcess
from transport.topic_reader import read_to_end
from workers.fairness_board import read_board
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
RERANK_MODEL = "all-minilm-l6-v2-biencoder"
VOICE = "espeak-ng"
# Three tenants, A weighted twice B and C, and A sends twice as many jobs as each of them.
TENANTS = ("a", "b", "a", "c")
# Short leases and sessions: a killed worker's jobs move on within seconds. Two slots a lane
# and a fair queue two records deep beyond them: a burst of generate jobs beyond the slots
# (send's `burst`, burst_of) fills the lane on any machine, so jobs wait in a fair queue.
CONFIG = """
partitions = 4
session_timeout_ms = 6000
lock_ttl_s = 3.0
concurrency = 2
# Four to six worker processes, most with a model, on the machine: one model thread each.
model_threads = 1

[fairness]
weights = { a = 2.0, b = 1.0, c = 1.0 }
window = 2
"""
# The slots of one worker's lane: CONFIG's `concurrency`.
SLOTS_PER_WORKER: int = tomllib.loads(CONFIG)["concurrency"]
WORKERS = {"generate": 2, "embed": 1, "vectors": 1}
# Rerank and speech workers only where workers are killed: their kinds' faults are kill -9s
# (Redis and the broker are shared by every kind), and each worker started costs the suite.
WITH_RERANK_AND_SPEECH = {**WORKERS, "rerank": 1, "speech": 1}
JOB_TIMEOUT_S = 100.0
UNDELIVERABLE = {DeadLetterReason.REPLY_UNDELIVERABLE, DeadLetterReason.REPLY_TOPIC_GONE}


class Fleet:
    """Worker processes of each kind; a killed one is replaced at once, as a supervisor
    (systemd, Kubernetes) would."""

    def __init__(self, infra: Infra, namespace: str, home: Path, workers: dict[str, int]) -> None:
        self._infra, self._namespace, self._home = infra, namespace, home
        self._config = home / "worker.toml"
        self._config.write_text(CONFIG)
        self._workers = workers
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
        workers = [self.start(k) for k, count in self._workers.items() for _ in range(count)]
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
    acknowledged_vectors: list[tuple[str, str]] = field(default_factory=list)  # tenant, id
    sent: list[Job] = field(default_factory=list)
    by_tenant: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def ended(self) -> int:
        return sum(self.answered.values()) + sum(self.typed_errors.values())

    def summary(self) -> dict[str, object]:
        return {
            "answered": dict(self.answered),
            "by_tenant": dict(self.by_tenant),
            "typed_errors": dict(self.typed_errors),
            "restarts_seen": self.restarts_seen,
            "by_deadline": len(self.by_deadline),
            "broken": len(self.broken),
            "acknowledged_vectors": len(self.acknowledged_vectors),
        }


class Jobs:
    """Jobs of ``kinds`` in turn from the tenants' clients in TENANTS' turn, each counted
    by how it ended."""

    def __init__(
        self,
        clients: dict[str, FleetClient],
        kinds: list[str],
        collection: str,
        tally: Tally,
        prefix: str,
    ) -> None:
        self._clients, self._kinds, self._collection = clients, kinds, collection
        self.tally, self._prefix = tally, prefix
        self._n = 0

    async def generate(self, client: FleetClient, n: int, request_id: str) -> None:
        text, results = "", 0
        stream = client.stream_generate(
            f"Say a word about number {n}.",
            model=CHAT_MODEL,
            max_tokens=6,
            timeout_s=JOB_TIMEOUT_S,
            request_id=request_id,
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

    async def embed(self, client: FleetClient, n: int, request_id: str) -> None:
        texts = [f"text {n} part {i}" for i in range(1 + n % 3)]
        result = await client.embed(
            texts, model=EMBED_MODEL, timeout_s=JOB_TIMEOUT_S, request_id=request_id
        )
        if len(result.vectors) != len(texts):
            self.tally.broken.append(f"{len(result.vectors)} vectors for {len(texts)} texts")
        self.tally.answered["embed"] += 1

    async def upsert(self, client: FleetClient, n: int, request_id: str) -> None:
        point = f"point-{n}"
        rng = random.Random(n)
        record = VectorRecord(id=point, vector=[rng.uniform(-1, 1) for _ in range(8)])
        result = await client.upsert(
            self._collection, [record], timeout_s=JOB_TIMEOUT_S, request_id=request_id
        )
        if result.upserted == 1:
            self.tally.acknowledged_vectors.append((client.tenant, point))
        self.tally.answered["vectors"] += 1

    async def rerank(self, client: FleetClient, n: int, request_id: str) -> None:
        documents = [f"a note on number {n + i}" for i in range(1 + n % 4)]
        result = await client.rerank(
            f"number {n}",
            documents,
            model=RERANK_MODEL,
            timeout_s=JOB_TIMEOUT_S,
            request_id=request_id,
        )
        if sorted(r.index for r in result.results) != list(range(len(documents))):
            self.tally.broken.append(f"ranks {result.results} of {len(documents)} documents")
        self.tally.answered["rerank"] += 1

    async def speech(self, client: FleetClient, n: int, request_id: str) -> None:
        audio, results = 0, 0
        stream = client.stream_speech(
            f"Number {n}.",
            model=VOICE,
            voice="alloy",
            timeout_s=JOB_TIMEOUT_S,
            request_id=request_id,
        )
        async for event in stream:
            if isinstance(event, StreamRestarted):
                audio = 0
                self.tally.restarts_seen += 1
            elif isinstance(event, SpeechAudio):
                audio += len(event.audio)
            elif isinstance(event, SpeechResult):
                results += 1
                if audio == 0 and event.audio_bytes:
                    # A final replayed from the ledger, which keeps no audio (decision
                    # 0041): what `FleetClient.speech` raises as AudioIncomplete.
                    self.tally.typed_errors["audio_incomplete"] += 1
                    return
                if event.audio_bytes != audio:
                    self.tally.broken.append(f"spliced audio: {audio} of {event.audio_bytes}")
        if results != 1:
            self.tally.broken.append(f"a speech stream ended with {results} results")
        self.tally.answered["speech"] += 1

    async def one(self) -> None:
        self._n += 1
        n = self._n
        kind, tenant = self._kinds[n % len(self._kinds)], TENANTS[n % len(TENANTS)]
        request_id = f"{self._prefix}-{n}"
        self.tally.sent.append((kind, tenant, request_id))
        self.tally.by_tenant[tenant] += 1
        jobs: dict[str, Callable[[FleetClient, int, str], Awaitable[None]]] = {
            "generate": self.generate,
            "embed": self.embed,
            "vectors": self.upsert,
            "rerank": self.rerank,
            "speech": self.speech,
        }
        try:
            await jobs[kind](self._clients[tenant], n, request_id)
        except FleetRequestError as exc:
            self.tally.typed_errors[exc.code.value] += 1
        except DeadlineExceeded as exc:
            self.tally.by_deadline.append(str(exc))
        except Exception as exc:
            self.tally.broken.append(repr(exc))

    async def send(
        self, count: int, per_second: float, in_flight: int = 24, burst: int = 0
    ) -> None:
        """``count`` jobs, the first ``burst`` at once and the rest at a steady pace, at most
        ``in_flight`` (or ``burst``, where that is more) at once, until all ended."""
        slots = asyncio.Semaphore(max(in_flight, burst))

        async def limited() -> None:
            async with slots:
                await self.one()

        tasks = []
        for sent in range(count):
            tasks.append(asyncio.create_task(limited()))
            if sent >= burst:
                await asyncio.sleep(1 / per_second)
        await asyncio.gather(*tasks)


async def _dead_letter_reasons(
    infra: Infra, namespace: str, kinds: list[str]
) -> collections.Counter[str]:
    """Why each dead letter of the run was written (read once the jobs have all ended)."""
    reasons: collections.Counter[str] = collections.Counter()
    for kind in kinds:
        async for record in read_to_end(infra.connection, dead_letter_topic(kind, namespace)):
            reasons[dict(record.headers)[Header.DLQ_REASON].decode()] += 1
    return reasons


async def _missing_vectors(
    redis_url: str, collection: str, points: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    prefix = RedisVectorsConfig().key_prefix
    redis = aioredis.Redis.from_url(redis_url)
    try:
        found = [
            await redis.execute_command(  # type: ignore[no-untyped-call]
                "VEMB", f"{prefix}:{tenant_collection(tenant, collection)}", point
            )
            for tenant, point in points
        ]
    finally:
        await redis.aclose()
    return [p for p, vector in zip(points, found, strict=True) if not vector]


# What workers log when they run a job again on purpose: a run that failed is retried
# through the retry tiers (workers/retry.py), and one that could not send its stream or end
# (the broker away) runs again (workers/runtime/consumer.py). Neither run's answer left.
RETRIED = re.compile(r"retry \d+ of b'([^']+)'")
COULD_NOT_END = re.compile(r"job at (\S+)\[(\d+)\]@(\d+) could not end")


def _logged_reruns(home: Path) -> tuple[set[str], set[tuple[str, int, int]]]:
    """By the logs of every worker started in ``home``: the request ids of the jobs retried,
    and where the records are (topic, partition, offset) whose runs could not end."""
    logs = [log.read_text(errors="replace") for log in home.glob("*.log")]
    retried = {found[1] for text in logs for found in RETRIED.finditer(text)}
    could_not_end = {
        (found[1], int(found[2]), int(found[3]))
        for text in logs
        for found in COULD_NOT_END.finditer(text)
    }
    return retried, could_not_end


async def _run_again_on_purpose(infra: Infra, home: Path) -> set[str]:
    """The request ids of the jobs that workers ran again on purpose (a record's key is its
    request id)."""
    retried, could_not_end = await asyncio.to_thread(_logged_reruns, home)
    for topic in {topic for topic, _, _ in could_not_end}:
        async for record in read_to_end(infra.connection, topic):
            if (topic, record.partition, record.offset) in could_not_end and record.key:
                retried.add(record.key.decode())
    return retried


class FairQueues:
    """How many jobs of each tenant waited in the workers' fair queues, per kind, as the
    workers' fairness boards in Redis showed them (each worker writes its own every 2 s, a
    count since it began; a killed worker's count is kept from its last board)."""

    def __init__(self, redis_url: str, namespace: str, kinds: list[str]) -> None:
        self._redis_url, self._namespace, self._kinds = redis_url, namespace, kinds
        self._by_worker: dict[tuple[str, str, str], int] = {}

    @property
    def waited(self) -> dict[str, collections.Counter[str]]:
        waited = {kind: collections.Counter[str]() for kind in self._kinds}
        for (kind, _, tenant), count in self._by_worker.items():
            waited[kind][tenant] += count
        return waited

    async def watch(self, done: asyncio.Event) -> None:
        redis = aioredis.Redis.from_url(self._redis_url)
        try:
            while not done.is_set():
                for kind in self._kinds:
                    try:
                        boards = await read_board(redis, self._namespace, kind)
                    except REDIS_FAILURES:
                        continue  # Redis is restarting: the next look sees it back
                    for board in boards:
                        waited: collections.Counter[str] = collections.Counter()
                        for lane in board.lanes:
                            waited.update({t.tenant: t.waited for t in lane.tenants})
                        for tenant, count in waited.items():
                            self._by_worker[kind, board.worker, tenant] = count
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), timeout=0.5)
        finally:
            await redis.aclose()


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


@dataclass(frozen=True)
class Scenario:
    faults: Faults
    jobs: int
    workers: dict[str, int]


def burst_of(scenario: Scenario) -> int:
    """Jobs sent at once to start ``scenario``: the kinds take turns, so this holds twice
    the generate workers' slots in generate jobs (as many of every kind). As many as the
    slots run; the others wait in the lanes' fair queues (two records a lane) or behind
    them in Kafka."""
    generate_slots = SLOTS_PER_WORKER * scenario.workers["generate"]
    return 2 * generate_slots * len(scenario.workers)


SCENARIOS: dict[str, Scenario] = {
    "kill9-redis-and-broker-restart": Scenario(_everything_at_once, 300, WITH_RERANK_AND_SPEECH),
    "redis-restart-alone": Scenario(_redis_restart, 120, WORKERS),
    "broker-down-20s-alone": Scenario(_broker_down_20s, 120, WORKERS),
}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_every_job_ends_through_faults(
    name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="aiokafka")  # the client's reconnect noise
    scenario = SCENARIOS[name]
    kinds = list(scenario.workers)
    kafka, redis = PrivateKafka(tmp_path / "home"), PrivateRedis(tmp_path / "home")
    await asyncio.to_thread(kafka.start)
    await asyncio.to_thread(redis.start)
    infra = private_infra(kafka, redis)
    namespace = f"faults-{uuid.uuid4().hex[:8]}"
    fleet = Fleet(infra, namespace, tmp_path, scenario.workers)
    queues = FairQueues(redis.url, namespace, kinds)
    collection = "acknowledged"
    tally, after = Tally(), Tally()
    try:
        await fleet.start_all()
        async with contextlib.AsyncExitStack() as stack:
            clients = {
                tenant: await stack.enter_async_context(
                    infra.client(namespace=namespace, tenant=tenant)
                )
                for tenant in sorted(set(TENANTS))
            }
            jobs = Jobs(clients, kinds, collection, tally, prefix="job")
            faulty = asyncio.Event()
            watching = asyncio.create_task(queues.watch(faulty))
            started = time.monotonic()
            await asyncio.gather(
                # A burst first: more generate jobs than the workers' slots at once, so
                # some wait in a fair queue on any machine.
                jobs.send(scenario.jobs, per_second=10, burst=burst_of(scenario)),
                scenario.faults(fleet, kafka, redis),
            )
            faulty_s = time.monotonic() - started
            faulty.set()
            await watching

            # Ten of each kind, from the three tenants.
            await Jobs(clients, kinds, collection, after, prefix="after").send(
                10 * len(kinds), per_second=30
            )
        missing = await _missing_vectors(redis.url, collection, tally.acknowledged_vectors)
        dead = await _dead_letter_reasons(infra, namespace, kinds)
        runs = await ledger_runs(redis.url, namespace, tally.sent + after.sent)
        run_again = await _run_again_on_purpose(infra, tmp_path)
    finally:
        fleet.stop_all()
        kafka.discard()  # throwaway services: kill -9 skips their clean shutdowns
        redis.discard()

    # A job ran twice where the ledger counts more than one run besides the takeovers of
    # killed runs, and no worker ran it again on purpose (a retry, or a run that could not
    # reach the broker: its answer never left).
    run_twice = sorted(job for job, count in runs.items() if count > 1 and job[2] not in run_again)
    not_run = sorted(job for job, count in runs.items() if count < 1)
    report = {
        "scenario": name,
        "jobs": scenario.jobs,
        "worker_kills": fleet.kills,
        "seconds": round(faulty_s),
        **tally.summary(),
        "waited_in_fair_queues": {kind: dict(c) for kind, c in queues.waited.items() if c},
        "runs": dict(collections.Counter(runs.values())),
        "run_again_on_purpose": len(run_again),
        "dead_letters": dict(dead),
        "after_the_faults": after.summary(),
    }
    print(json.dumps(report))  # the counts docs/reliability.md reports (pytest -s shows it)
    assert tally.by_deadline == [], tally.by_deadline[:3]
    assert tally.broken == [], tally.broken[:3]
    assert tally.ended == scenario.jobs
    assert missing == []
    assert not UNDELIVERABLE & set(dead), dead
    assert after.answered == {kind: 10 for kind in kinds}, after.summary()
    assert run_twice == [], run_twice[:5]
    assert not_run == [], not_run[:5]  # every job here starts: none is refused
    # The jobs did wait in the fair queues: the weights chose among them.
    assert sum(queues.waited["generate"].values()) > 0, queues.waited
