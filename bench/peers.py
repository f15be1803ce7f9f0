"""Case 2: the same no-op round trip through Celery and Taskiq, next to the fleet.

Celery: Redis broker and result backend, one worker process (bench/peer_celery.py).
Taskiq: taskiq-redis list-queue broker and result backend, one `taskiq worker` process
(bench/peer_taskiq.py). Fleet: case 1's ledger-on fleet run again in this run
(bench.roundtrip.fleet). Jobs/s at 1, 16 and 64 in flight, closed loop, after a warm-up.

``python -m bench.peers [--scale 0.5]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from bench import peer_celery, peer_taskiq
from bench.common import (
    add_repeat_option,
    helper,
    print_table,
    python_module,
    run_case,
)
from bench.roundtrip import LEVELS, closed_loop, fleet

# Peers are slower: fewer jobs per level keep the run short (times --scale).
JOBS = {1: 300, 16: 2000, 64: 3000}
WARMUP_JOBS = 200
FIRST_JOB_TIMEOUT_S = 60.0
# Anchors measured earlier on this machine kind (DESIGN.md), jobs/s at 1 / 16 / 64.
ANCHORS = {"celery": (388, 572, 545), "taskiq": (156, 1310, 1268)}
TARGET_TIMES = {"celery": 10.0, "taskiq": 5.0}  # the fleet at 64 in flight, DESIGN.md


def _jobs(n: int, scale: float) -> int:
    return max(int(JOBS[n] * scale), n)


def celery(scale: float) -> dict[int, float]:
    """Callers are threads: Celery's client is synchronous (``delay().get()``)."""
    queue = f"bench-celery-{uuid.uuid4().hex[:8]}"
    env = {"BENCH_QUEUE": queue}
    os.environ["BENCH_QUEUE"] = queue
    app = peer_celery.app
    app.conf.task_default_queue = queue
    command = python_module("celery", "-A", "bench.peer_celery", "worker", "-Q", queue,
                            *peer_celery.WORKER_ARGS)  # fmt: skip
    with helper(command, log_name=f"peers-{queue}", env=env, ready_line=None):
        peer_celery.noop.delay("ping").get(timeout=FIRST_JOB_TIMEOUT_S)
        _threads(16, WARMUP_JOBS)
        return {n: _threads(n, _jobs(n, scale)) for n in LEVELS}


def _threads(in_flight: int, jobs: int) -> float:
    remaining = [jobs]

    def caller() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            peer_celery.noop.delay("ping").get(timeout=60)

    lock = threading.Lock()
    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        for future in [pool.submit(caller) for _ in range(in_flight)]:
            future.result(timeout=300)
    return jobs / (time.perf_counter() - started)


async def taskiq(scale: float) -> dict[int, float]:
    queue = f"bench-taskiq-{uuid.uuid4().hex[:8]}"
    env = {"BENCH_QUEUE": queue}
    command = python_module("taskiq", "worker", "bench.peer_taskiq:broker",
                            *peer_taskiq.WORKER_ARGS)  # fmt: skip
    broker = peer_taskiq.broker
    broker.queue_name = queue  # the client publishes where this run's worker listens
    with helper(command, log_name=f"peers-{queue}", env=env, ready_line=None):
        await broker.startup()
        try:

            async def call() -> object:
                task = await peer_taskiq.noop.kiq("ping")
                result = await task.wait_result(
                    check_interval=peer_taskiq.CHECK_INTERVAL_S, timeout=60
                )
                return result.return_value

            first = await peer_taskiq.noop.kiq("ping")
            await first.wait_result(check_interval=0.05, timeout=FIRST_JOB_TIMEOUT_S)
            await closed_loop(call, 16, WARMUP_JOBS)
            return {n: await closed_loop(call, n, _jobs(n, scale)) for n in LEVELS}
        finally:
            await broker.shutdown()


PINNED = {
    "levels (jobs in flight)": LEVELS,
    "jobs per level": JOBS,
    "warm-up jobs": WARMUP_JOBS,
    "celery worker": " ".join(peer_celery.WORKER_ARGS),
    "celery client": "one thread per job in flight, delay().get()",
    "celery settings": "task_acks_late=False, worker_prefetch_multiplier=64",
    "taskiq worker": " ".join(peer_taskiq.WORKER_ARGS),
    "taskiq client": f"asyncio, kiq() + wait_result(check_interval={peer_taskiq.CHECK_INTERVAL_S})",
    "taskiq broker": "taskiq_redis.ListQueueBroker + RedisAsyncResultBackend",
    "fleet": "bench.roundtrip.fleet(idempotency=True): noop worker process, concurrency 64",
}


def report(results: dict[str, dict[int, float]]) -> str:
    rows: list[list[object]] = []
    for variant, rates in results.items():
        anchor = ANCHORS.get(variant)
        rows.append([variant, *(f"{rates[n]:,.0f}" for n in LEVELS),
                     " / ".join(f"{a:,}" for a in anchor) if anchor else ""])  # fmt: skip
    fleet_64 = results["fleet (ledger on)"][64]
    for peer, times in TARGET_TIMES.items():
        ratio = fleet_64 / results[peer][64]
        verdict = "pass" if ratio >= times else "FAIL"
        rows.append([f"fleet / {peer} at 64", "", "", f"{ratio:.1f}x (target {times:g}x)", verdict])
    return print_table(
        "no-op round trip through peers, jobs/s (same machine, same run)",
        ["variant", *(f"{n} in flight" for n in LEVELS), "DESIGN.md anchor"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the job counts")
    add_repeat_option(parser)
    args = parser.parse_args()

    def measure() -> dict[str, dict[int, float]]:
        return {
            "celery": celery(args.scale),
            "taskiq": asyncio.run(taskiq(args.scale)),
            "fleet (ledger on)": {
                n: r["jobs_per_s"]
                for n, r in asyncio.run(fleet(idempotency=True, scale=args.scale)).items()
            },
        }

    run_case(
        "peers",
        PINNED,
        measure,
        report,
        as_json=lambda results: {
            v: {str(n): r for n, r in rates.items()} for v, rates in results.items()
        },
        scale=args.scale,
        repeat=args.repeat,
    )


if __name__ == "__main__":
    main()
