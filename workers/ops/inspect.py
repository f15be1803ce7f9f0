"""What operators ask the fleet: how far behind each kind's consumers are, where a job is,
and which reply topics belong to clients that are gone."""

from __future__ import annotations

import time

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.errors import ConfigError
from contracts.names import DEFAULT_TENANT, JOB_KINDS, LANES, Header, lane_topic, reply_topic
from providers.redis_client import connect_redis
from transport.connection import start_client
from transport.topic_admin import topic_names
from transport.topic_reader import last_records
from workers.budgets import Budgets, Standing
from workers.fairness_board import read_board
from workers.fairness_board import render as render_board
from workers.idempotency import JobKeys, job_ref
from workers.settings import WorkerSettings


class PartitionLag(msgspec.Struct, frozen=True):
    kind: str
    group: str
    partition: int
    committed: int | None  # None: the group never committed here
    end: int
    # Which topic of the kind: a lane's request topic ("interactive", "batch"), or one whose
    # forwarders bring records back after a wait ("retry-5s", "parked").
    source: str = "interactive"

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


async def consumer_lag(settings: WorkerSettings) -> list[PartitionLag]:
    """Committed offset, end offset and lag of every partition of each kind's lanes' request
    topics and of its retry tiers' and park topics, each for the group that reads it."""
    admin = AIOKafkaAdminClient(**settings.connection.options())
    consumer = AIOKafkaConsumer(**settings.connection.options(), group_id=None)
    try:
        await start_client(admin, settings.connection)
        await start_client(consumer, settings.connection)
        existing = set(await admin.list_topics())
        rows: list[PartitionLag] = []
        ns = settings.namespace
        for kind in JOB_KINDS:
            sources: dict[str, tuple[str, str]] = {
                lane: (lane_topic(kind, lane, ns), settings.lane_group(kind, lane))
                for lane in LANES
            }
            sources.update(settings.topology.deferred(kind))
            for source, (topic, group) in sources.items():
                if topic not in existing:
                    continue
                described = await admin.describe_topics([topic])
                numbers = sorted(p["partition"] for p in described[0]["partitions"])
                partitions = [TopicPartition(topic, p) for p in numbers]
                ends = await consumer.end_offsets(partitions)
                committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
                for tp in partitions:
                    meta = committed.get(tp)
                    offset = meta.offset if meta is not None and meta.offset >= 0 else None
                    rows.append(PartitionLag(kind, group, tp.partition, offset, ends[tp], source))
        return rows
    finally:
        await consumer.stop()
        await admin.close()


class JobState(msgspec.Struct, frozen=True):
    request_id: str
    attempts: int
    running: bool
    done: bool


async def job_state(
    settings: WorkerSettings, request_id: str, *, kind: str, tenant: str = DEFAULT_TENANT
) -> JobState:
    """What the once-only ledger knows of one request id of one kind and tenant."""
    redis = connect_redis(settings.redis_url)
    keys = JobKeys.of(settings.namespace, job_ref(kind, tenant, request_id))
    try:
        attempts, lock, done = await redis.mget(keys.attempt, keys.lock, keys.done)
    finally:
        await redis.aclose()
    return JobState(
        request_id=request_id,
        attempts=int(attempts or 0),
        running=lock is not None,
        done=done is not None,
    )


async def budget_standings(settings: WorkerSettings, tenant: str | None = None) -> list[Standing]:
    """Each budgeted tenant's spend, reservations and limit in its current period (only
    ``tenant``'s when named)."""
    tenants = sorted(settings.budgets) if tenant is None else [tenant]
    if tenant is not None and tenant not in settings.budgets:
        named = ", ".join(sorted(settings.budgets)) or "none"
        raise ConfigError(f"tenant {tenant!r} has no budget in [budgets] (tenants: {named})")
    redis = connect_redis(settings.redis_url)
    try:
        budgets = Budgets(redis, settings.namespace, settings.budgets)
        found = [await budgets.standing(name) for name in tenants]
    finally:
        await redis.aclose()
    return [standing for standing in found if standing is not None]


async def fairness_state(settings: WorkerSettings, kinds: list[str]) -> str:
    """Each live worker's lanes of ``kinds``: per tenant, what waits, runs and was served
    (workers/fairness_board.py), as a table."""
    redis = connect_redis(settings.redis_url)
    try:
        states = [s for kind in kinds for s in await read_board(redis, settings.namespace, kind)]
    finally:
        await redis.aclose()
    return render_board(states) if states else "no worker has posted its state (none running?)"


class StaleReplyTopic(msgspec.Struct, frozen=True):
    topic: str
    silent_s: float  # since its newest message


class ReplyTopicSurvey(msgspec.Struct, frozen=True):
    stale: list[StaleReplyTopic]  # silent longer than asked: their clients are gone
    # Holding no message at all: a client that has not sent its first heartbeat yet, or
    # one gone so long that retention emptied its topic. Their age is unknown until the
    # janitor stamps them (``stamp_unseen``); a later run then judges them by that stamp.
    empty: list[str]


async def survey_reply_topics(settings: WorkerSettings, older_than_s: float) -> ReplyTopicSurvey:
    """Reply topics whose client died without closing: nothing written to them, not even the
    client's heartbeat, for ``older_than_s``; and those that hold nothing at all."""
    prefix = reply_topic("", settings.namespace)
    named = set(settings.reply_topics)  # shared by design: never a dead client's
    topics = [t for t in await topic_names(settings.connection, prefix) if t not in named]
    stale: list[StaleReplyTopic] = []
    empty: list[str] = []
    now_ms = time.time() * 1000
    # A topic deleted meanwhile (its client closed) has no last record: taken for empty.
    newest = await last_records(settings.connection, [TopicPartition(t, 0) for t in topics])
    for topic in topics:
        last = newest.get(TopicPartition(topic, 0))
        if last is None:
            empty.append(topic)
        elif (silent_s := (now_ms - last.timestamp) / 1000) > older_than_s:
            stale.append(StaleReplyTopic(topic, silent_s))
    return ReplyTopicSurvey(stale, empty)


async def stamp_unseen(settings: WorkerSettings, topics: list[str]) -> None:
    """Write a heartbeat of the janitor's own into each empty reply topic: from now on its
    silence can be measured, and a live client's first heartbeat overwrites nothing."""
    producer = AIOKafkaProducer(**settings.connection.options())
    await start_client(producer, settings.connection)
    try:
        for topic in topics:
            await producer.send_and_wait(
                topic, b"", partition=0, headers=[(Header.HEARTBEAT, b"janitor")]
            )
    finally:
        await producer.stop()
