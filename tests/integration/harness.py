"""What the integration tests share: an in-process worker run for the length of a block,
reading a kind's dead-letter topic from the start, the cluster's topic names, how often the
ledger says each job ran, and waiting for a condition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis

from contracts import dead_letter_topic
from tests.conftest import Infra
from workers import Worker
from workers.idempotency import JobKeys, job_ref

# A job as the ledger knows it: its kind, tenant and request id.
Job = tuple[str, str, str]


@asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` until the block ends; fail at once if it cannot join its group."""
    task = asyncio.create_task(worker.run())
    ready = asyncio.create_task(worker.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # the worker failed to start: show why
    assert ready in done, f"the {worker.kind} worker did not join its group within 60s"
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=60)


async def read_dead_letters(
    infra: Infra, namespace: str, expected: int, kind: str = "generate"
) -> list[ConsumerRecord[bytes, bytes]]:
    """The dead letters of ``kind``, read until ``expected`` are in (or 10 s have passed)."""
    consumer = AIOKafkaConsumer(
        dead_letter_topic(kind, namespace),
        **infra.kafka_options(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    dead: list[ConsumerRecord[bytes, bytes]] = []
    try:
        for _ in range(20):  # one fetch may hold only part of what is there
            batches = await consumer.getmany(timeout_ms=500)
            dead += [r for records in batches.values() for r in records]
            if len(dead) >= expected:
                break
    finally:
        await consumer.stop()
    return dead


async def topic_names(infra: Infra) -> set[str]:
    """Every topic the cluster has now."""
    admin = AIOKafkaAdminClient(**infra.kafka_options())
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def ledger_runs(redis_url: str, namespace: str, jobs: list[Job]) -> dict[Job, int]:
    """How many times each job ran, by the once-only ledger: each start counts an attempt,
    and a start that found the last attempt's run never ended (its worker was killed, or its
    lock lapsed) counts a crash as well. Attempts less crashes: the runs that were not a
    killed run's takeover (0 for a job refused before it started)."""
    redis = Redis.from_url(redis_url)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for kind, tenant, request_id in jobs:
                keys = JobKeys.of(namespace, job_ref(kind, tenant, request_id))
                pipe.mget(keys.attempt, keys.crashes)
            counts: list[list[bytes | None]] = await pipe.execute()
    finally:
        await redis.aclose()
    return {
        job: int(attempts or 0) - int(crashes or 0)
        for job, (attempts, crashes) in zip(jobs, counts, strict=True)
    }


async def until(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    """Return as soon as ``condition`` holds (looked at every 50 ms); fail after ``timeout_s``."""
    for _ in range(int(timeout_s * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached within {timeout_s}s")
