"""Case 1: the no-op job round trip through the fleet against raw aiokafka request/reply.

Fleet: FleetClient.generate -> Kafka -> generate worker process (bench/noop_worker.py, a
chat provider that yields one piece at once) -> reply topic -> SDK. Measured with the Redis
idempotency ledger on (the default) and off. Raw: an aiokafka producer sends a request, a
consumer-group responder process (bench/raw_responder.py) answers on a reply topic, the
requester demultiplexes by key. Jobs/s at 1, 16 and 64 in flight, closed loop.

``python -m bench.roundtrip [--scale 0.5]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import (
    BOOTSTRAP,
    CpuMeter,
    add_repeat_option,
    helper,
    helpers,
    namespace,
    print_table,
    python_module,
    run_case,
    service_pids,
)
from bench.noop_worker import NOOP_MODEL
from bench.raw_responder import CONSUMER_SETTINGS, PRODUCER_SETTINGS
from producer_sdk import FleetClient

LEVELS = (1, 16, 64)
# Jobs measured per level (times --scale); fewer at 1 in flight, where each is a full trip.
JOBS = {1: 400, 16: 3000, 64: 6000}
WARMUP_JOBS = 300
PARTITIONS = 4
WORKER_CONCURRENCY = 64

Call = Callable[[], Awaitable[object]]
# {in_flight: {"jobs_per_s": x, "cpu_us_per_job": {process: us}}}
LevelResults = dict[int, dict[str, Any]]


async def closed_loop(call: Call, in_flight: int, jobs: int) -> float:
    """Jobs/s with ``in_flight`` callers each starting a new job when theirs ends."""
    remaining = jobs

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(in_flight))), timeout=300)
    return jobs / (time.perf_counter() - started)


async def measure(
    call: Call, scale: float, server: int | Collection[int], jobs: Mapping[int, int] = JOBS
) -> LevelResults:
    """Warm up, then each level (``jobs``: jobs per level in flight): jobs/s and CPU
    microseconds per job of every process (``server``: the worker or responder processes)."""
    meter = CpuMeter({"client": os.getpid(), "server": server, **service_pids()})
    await closed_loop(call, 16, WARMUP_JOBS)
    results: LevelResults = {}
    for n, count in jobs.items():
        jobs_at_n = max(int(count * scale), n)
        meter.start()
        rate = await closed_loop(call, n, jobs_at_n)
        cpu = meter.stop()
        results[n] = {
            "jobs_per_s": rate,
            "cpu_us_per_job": {k: v / jobs_at_n * 1e6 for k, v in cpu.items()},
        }
    return results


async def fleet(
    *,
    idempotency: bool,
    scale: float,
    workers: int = 1,
    partitions: int = PARTITIONS,
    jobs: Mapping[int, int] = JOBS,
) -> LevelResults:
    """``workers`` worker processes in one consumer group, started side by side."""
    ns = namespace("rt")
    command = python_module(
        "bench.noop_worker",
        "--namespace", ns,
        "--concurrency", str(WORKER_CONCURRENCY),
        "--partitions", str(partitions),
        *([] if idempotency else ["--no-idempotency"]),
    )  # fmt: skip
    with helpers([command] * workers, log_name=f"roundtrip-fleet-{ns}") as started:
        async with FleetClient(BOOTSTRAP, namespace=ns) as client:

            async def call() -> object:
                return await client.generate("ping", model=NOOP_MODEL, timeout_s=60)

            return await measure(call, scale, [worker.pid for worker in started], jobs)


async def raw(scale: float, jobs: Mapping[int, int] = JOBS) -> LevelResults:
    run = uuid.uuid4().hex[:8]
    requests, replies = f"bench-raw-{run}.requests", f"bench-raw-{run}.replies"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(requests, PARTITIONS, 1), NewTopic(replies, 1, 1)])
        with helper(python_module("bench.raw_responder", "--topic", requests),
                    log_name=f"roundtrip-raw-{run}") as responder:  # fmt: skip
            return await _raw_requester(requests, replies, scale, responder.pid, jobs)
    finally:
        await admin.delete_topics([requests, replies])
        await admin.close()


async def _raw_requester(
    requests: str, replies: str, scale: float, responder_pid: int, jobs: Mapping[int, int]
) -> LevelResults:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, **PRODUCER_SETTINGS)
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    waiting: dict[bytes, asyncio.Future[bytes]] = {}
    await producer.start()
    await consumer.start()
    tp = TopicPartition(replies, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.position(tp)

    async def route() -> None:
        async for message in consumer:
            future = waiting.pop(message.key, None)
            if future is not None and not future.done():
                future.set_result(message.value)

    router = asyncio.create_task(route())
    headers = [("reply-to", replies.encode())]

    async def call() -> object:
        key = uuid.uuid4().hex.encode()
        future = asyncio.get_running_loop().create_future()
        waiting[key] = future
        await producer.send_and_wait(requests, b"ping", key=key, headers=headers)
        return await asyncio.wait_for(future, timeout=60)

    try:
        return await measure(call, scale, responder_pid, jobs)
    finally:
        router.cancel()
        await asyncio.gather(router, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


PINNED = {
    "levels (jobs in flight)": LEVELS,
    "jobs per level": JOBS,
    "warm-up jobs per case": WARMUP_JOBS,
    "request topic partitions": PARTITIONS,
    "worker concurrency": WORKER_CONCURRENCY,
    "producers (SDK, worker, raw)": PRODUCER_SETTINGS,
    "raw responder consumer": {**CONSUMER_SETTINGS, "getmany max_records": 256},
    "consumers' fetch": "aiokafka defaults (fetch_max_wait_ms=500, fetch_min_bytes=1)",
    "worker commit interval": "0.2 s (WorkerSettings default)",
    "worker / responder": "one separate process each",
}


async def run(scale: float = 1.0) -> dict[str, LevelResults]:
    """All three variants in one run: {variant: {in_flight: results}}."""
    return {
        "raw aiokafka": await raw(scale),
        "fleet (ledger on)": await fleet(idempotency=True, scale=scale),
        "fleet (ledger off)": await fleet(idempotency=False, scale=scale),
    }


def report(results: dict[str, LevelResults]) -> str:
    raw_levels = results["raw aiokafka"]
    rows = []
    for variant, levels in results.items():
        row: list[object] = [variant]
        for n in LEVELS:
            rate = levels[n]["jobs_per_s"]
            ratio = rate / raw_levels[n]["jobs_per_s"]
            row.append(f"{rate:,.0f}" + ("" if variant.startswith("raw") else f" ({ratio:.2f}x)"))
        cpu = levels[64]["cpu_us_per_job"]
        raw_cpu = sum(raw_levels[64]["cpu_us_per_job"].values())
        row.append(f"{cpu['client']:.0f} / {cpu['server']:.0f} / {cpu.get('kafka', 0):.0f}"
                   f" / {cpu.get('redis', 0):.0f}")  # fmt: skip
        row.append(f"{raw_cpu / sum(cpu.values()):.2f}")
        rows.append(row)
    return print_table(
        "no-op round trip, jobs/s (ratio to raw aiokafka in the same run; target >= 0.5, aim 0.8)",
        [
            "variant",
            *(f"{n} in flight" for n in LEVELS),
            "CPU us/job at 64: client / worker / Kafka / Redis",
            "raw CPU / this CPU",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the job counts")
    add_repeat_option(parser)
    args = parser.parse_args()
    run_case(
        "roundtrip",
        PINNED,
        lambda: asyncio.run(run(args.scale)),
        report,
        as_json=lambda results: {
            v: {str(n): r for n, r in levels.items()} for v, levels in results.items()
        },
        scale=args.scale,
        repeat=args.repeat,
    )


if __name__ == "__main__":
    main()
