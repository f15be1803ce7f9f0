"""Where a no-op job's cost goes, at 64 in flight: CPU per job of each process, Redis
commands and round trips per job, Kafka records per job, and (with ``--py-spy DIR``) where
the worker and the client spend their CPU.

``python -m bench.job_cost [--jobs 6000] [--no-idempotency] [--py-spy DIR]``

Redis: ``INFO commandstats`` (calls per command) and ``INFO stats`` ``total_reads_processed``
(the server's read events: one per round trip a client makes, pipelined or not), both reset
before the measured jobs. Kafka: the end offsets of the namespace's topics and of
``__consumer_offsets`` (commits) before and after. Only the client and the job's topics run
in the measured window, so nothing else adds to the counts. It uses only the SDK, the no-op
worker and the local services, so it runs on older trees too (``PYTHONPATH=OLD_TREE``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.common import (
    BOOTSTRAP,
    REDIS_URL,
    CpuMeter,
    helper,
    namespace,
    print_table,
    python_module,
    service_pids,
    start_services,
)
from bench.noop_worker import NOOP_MODEL
from producer_sdk import FleetClient

IN_FLIGHT = 64
WARMUP_JOBS = 300


async def end_offsets(consumer: AIOKafkaConsumer, topics: dict[str, int]) -> dict[str, int]:
    """Total end offset (records written) of each topic (name: partitions)."""
    totals: dict[str, int] = {}
    for topic, partitions in topics.items():
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        totals[topic] = sum((await consumer.end_offsets(tps)).values())
    return totals


async def topics_of(ns: str) -> dict[str, int]:
    """The namespace's topics and the commit log, with their partition counts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if ns in t] + ["__consumer_offsets"]
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {d["topic"]: len(d["partitions"]) for d in described}


def py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into a collapsed-stack file (py-spy must be on PATH)."""
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "1000",
         "--duration", str(int(seconds)), "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def top_functions(collapsed: Path, n: int = 25) -> list[tuple[str, float, float]]:
    """(function, self share, inclusive share) of the samples, heaviest self first."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [f.split(" (")[0] + " " + f.split("/")[-1].rstrip(")") for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return [(f, c / total, inclusive[f] / total) for f, c in own.most_common(n)]


async def run(jobs: int, *, idempotency: bool, spy_dir: Path | None) -> dict[str, Any]:
    ns = namespace("cost")
    command = python_module(
        "bench.noop_worker", "--namespace", ns, "--concurrency", "64", "--partitions", "4",
        *([] if idempotency else ["--no-idempotency"]),
    )  # fmt: skip
    redis = aioredis.from_url(REDIS_URL)
    with helper(command, log_name=f"job-cost-{ns}") as worker:
        async with FleetClient(BOOTSTRAP, namespace=ns) as client:
            remaining = 0

            async def caller() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await client.generate("ping", model=NOOP_MODEL, timeout_s=60)

            remaining = WARMUP_JOBS
            await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
            offsets = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
            await offsets.start()
            topics = await topics_of(ns)
            before = await end_offsets(offsets, topics)
            await redis.config_resetstat()
            meter = CpuMeter({"client": os.getpid(), "worker": worker.pid, **service_pids()})
            spies: list[tuple[str, subprocess.Popen[bytes], Path]] = []
            if spy_dir is not None:
                seconds = max(3.0, jobs / 2000)
                for name, pid in (("worker", worker.pid), ("client", os.getpid())):
                    out = spy_dir / f"{name}.txt"
                    spies.append((name, py_spy(pid, out, seconds), out))
            meter.start()
            started = time.perf_counter()
            remaining = jobs
            await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
            elapsed = time.perf_counter() - started
            cpu = meter.stop()
            stats = await redis.info("stats")
            commands = await redis.info("commandstats")
            after = await end_offsets(offsets, topics)
            await offsets.stop()
            for _, spy, _ in spies:
                spy.wait()
    await redis.aclose()
    records = {t: after[t] - before[t] for t in topics if after[t] != before[t]}
    return {
        "jobs_per_s": jobs / elapsed,
        "cpu_us_per_job": {k: v / jobs * 1e6 for k, v in cpu.items()},
        "redis_reads_per_job": stats["total_reads_processed"] / jobs,
        "redis_commands_per_job": {
            k.removeprefix("cmdstat_"): v["calls"] / jobs
            for k, v in commands.items()
            if v["calls"] >= jobs / 100
        },
        "records_per_job": {_short(t, ns): n / jobs for t, n in records.items()},
        "profiles": {name: top_functions(out) for name, _, out in spies if out.is_file()},
    }


def _short(topic: str, ns: str) -> str:
    return topic.replace(ns, "NS")


def report(result: dict[str, Any], variant: str) -> None:
    cpu = result["cpu_us_per_job"]
    print_table(
        f"{variant}: {result['jobs_per_s']:,.0f} jobs/s at {IN_FLIGHT} in flight",
        ["measure", "per job"],
        [
            *([f"CPU us: {k}", f"{v:.0f}"] for k, v in cpu.items()),
            ["CPU us: all", f"{sum(cpu.values()):.0f}"],
            ["Redis round trips (server read events)", f"{result['redis_reads_per_job']:.2f}"],
            *([f"Redis {k}", f"{v:.2f}"] for k, v in result["redis_commands_per_job"].items()),
            *([f"records: {k}", f"{v:.2f}"] for k, v in result["records_per_job"].items()),
        ],
    )
    for name, rows in result["profiles"].items():
        print_table(
            f"{name}: where its samples were (py-spy)",
            ["function", "self", "inclusive"],
            [[f, f"{s:.1%}", f"{i:.1%}"] for f, s, i in rows],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=6000)
    parser.add_argument("--no-idempotency", action="store_true")
    parser.add_argument("--py-spy", type=Path, help="sample worker and client into this dir")
    args = parser.parse_args()
    start_services()
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args.jobs, idempotency=not args.no_idempotency, spy_dir=args.py_spy))
    report(result, "ledger off" if args.no_idempotency else "ledger on")


if __name__ == "__main__":
    main()
