"""Real worker processes killed and stopped under load: no job lost, none done twice, and a
restarted stream is announced to the caller, who ends with exactly one complete answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from contracts import GenerateResult, TextDelta
from contracts.names import DEFAULT_TENANT
from producer_sdk import FleetClient, GenerateEvent, StreamRestarted
from tests.conftest import Infra
from tests.integration.conftest import MODEL
from tests.integration.worker_processes import WorkerProcess
from workers.idempotency import JobKeys, job_ref

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.model, pytest.mark.slow]

CONFIG = """
partitions = 2
session_timeout_ms = 6000
# Short enough that a dead worker's jobs are taken over by the time the group rebalances
# (session timeout 6 s), long enough that a loaded machine never lets a live lock lapse.
lock_ttl_s = 5.0
shutdown_grace_s = 30.0

# Two model processes share the machine: one thread each (llama.cpp's threads spin while
# they wait, so two processes with a thread per core each slow both down many times over).
[[chat]]
name = "local-llama"
config = { n_threads = 1 }
"""


@pytest.fixture
async def two_workers(
    infra: Infra, namespace: str, tmp_path: Path
) -> AsyncIterator[list[WorkerProcess]]:
    config = tmp_path / "worker.toml"
    config.write_text(CONFIG)
    workers = [
        WorkerProcess("generate", infra, namespace, config, tmp_path / f"worker-{i}.log")
        for i in range(2)
    ]
    try:
        for worker in workers:
            await worker.wait_ready()
        yield workers
    finally:
        for worker in workers:
            worker.ensure_stopped()


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    for _ in range(int(timeout_s * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s}s")


async def test_kill_9_mid_stream_restarts_the_job_on_another_worker(
    two_workers: list[WorkerProcess], client: FleetClient
) -> None:
    events: list[GenerateEvent] = []

    async def consume() -> None:
        # 120 tokens (300 once): the kill comes after the fifth, so the job still has over
        # a second to run on one thread (1.6 s; 300 tokens took 4 s of CPU), and the redo,
        # all of them again, costs that much less. A job that ended first fails `busy`.
        stream = client.stream_generate(
            "Write a long story about a dragon who learns to cook.",
            model=MODEL,
            max_tokens=120,
            temperature=0,
            timeout_s=120,
        )
        async for event in stream:
            events.append(event)

    reader = asyncio.create_task(consume())
    await _until(lambda: sum(isinstance(e, TextDelta) for e in events) >= 5, timeout_s=60)
    busy = [w for w in two_workers if await w.metric("fleet_jobs_in_flight") > 0]
    assert len(busy) == 1, "exactly one worker should be running the job"
    busy[0].kill()
    await asyncio.wait_for(reader, timeout=120)

    restarts = [i for i, e in enumerate(events) if isinstance(e, StreamRestarted)]
    assert len(restarts) == 1, "the caller is told once that the stream restarted"
    finals = [e for e in events if isinstance(e, GenerateResult)]
    assert len(finals) == 1
    final = finals[0]
    assert final.attempt >= 1
    before = "".join(e.text for e in events[: restarts[0]] if isinstance(e, TextDelta))
    after = "".join(e.text for e in events[restarts[0] :] if isinstance(e, TextDelta))
    assert after == final.text  # the restarted stream is complete on its own
    assert final.text.startswith(before)  # greedy decoding: the redo repeats the same words


async def test_sigterm_under_load_loses_nothing_and_repeats_nothing(
    two_workers: list[WorkerProcess], client: FleetClient, infra: Infra, namespace: str
) -> None:
    prompts = [f"Give me one word that rhymes with number {i}." for i in range(16)]
    results: list[GenerateResult] = []
    restarted: list[StreamRestarted] = []

    async def ask(prompt: str) -> None:
        async for event in client.stream_generate(
            prompt, model=MODEL, max_tokens=24, temperature=0, timeout_s=180
        ):
            if isinstance(event, GenerateResult):
                results.append(event)
            elif isinstance(event, StreamRestarted):
                restarted.append(event)

    asks = asyncio.gather(*(ask(p) for p in prompts))
    await _until(lambda: len(results) >= 3, timeout_s=90)
    stopping = two_workers[0]
    stopping.terminate()
    await asyncio.wait_for(asks, timeout=180)
    assert await asyncio.to_thread(stopping.wait, 60) == 0  # a clean exit

    assert len(results) == len(prompts)
    assert len({r.request_id for r in results}) == len(prompts)
    assert restarted == []
    assert all(r.attempt == 0 for r in results)
    redis = aioredis.Redis.from_url(infra.redis_url)
    try:
        keys = [
            JobKeys.of(namespace, job_ref("generate", DEFAULT_TENANT, r.request_id))
            for r in results
        ]
        attempts = [await redis.get(k.attempt) for k in keys]
    finally:
        await redis.aclose()
    assert attempts == [b"1"] * len(prompts)  # every job started exactly once


async def test_a_worker_joining_does_not_restart_a_running_job(
    infra: Infra, namespace: str, tmp_path: Path, client: FleetClient
) -> None:
    # A grace period far shorter than the job: only a job kept running across the
    # rebalance (the ledger guards it) can end without a restart.
    config = tmp_path / "worker.toml"
    config.write_text(CONFIG.replace("shutdown_grace_s = 30.0", "shutdown_grace_s = 0.5"))
    first = WorkerProcess("generate", infra, namespace, config, tmp_path / "first.log")
    second: WorkerProcess | None = None
    events: list[GenerateEvent] = []
    try:
        await first.wait_ready()
        stream = client.stream_generate(
            "Write a long story about a dragon who learns to cook.",
            model=MODEL,
            max_tokens=200,
            temperature=0,
            timeout_s=120,
        )

        async def consume() -> None:
            async for event in stream:
                events.append(event)

        reader = asyncio.create_task(consume())
        await _until(lambda: sum(isinstance(e, TextDelta) for e in events) >= 5, timeout_s=60)
        second = WorkerProcess("generate", infra, namespace, config, tmp_path / "second.log")
        await second.wait_ready()  # ready: the group rebalanced to give it a partition
        await asyncio.wait_for(reader, timeout=120)
    finally:
        first.ensure_stopped()
        if second is not None:
            second.ensure_stopped()

    assert not [e for e in events if isinstance(e, StreamRestarted)]
    (final,) = [e for e in events if isinstance(e, GenerateResult)]
    assert final.attempt == 0
    assert final.text == "".join(e.text for e in events if isinstance(e, TextDelta))
