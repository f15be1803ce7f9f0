"""What the integration tests share: an in-process worker run for the length of a block,
and reading a kind's dead-letter topic from the start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from contracts import dead_letter_topic
from tests.conftest import Infra
from workers import Worker


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
