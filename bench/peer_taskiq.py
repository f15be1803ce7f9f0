"""The Taskiq side of bench/peers.py: one no-op task, taskiq-redis broker and results.

The queue name comes from BENCH_QUEUE so each run starts on an empty queue.
"""

from __future__ import annotations

import os

from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from bench.common import REDIS_URL

QUEUE = os.environ.get("BENCH_QUEUE", "bench-taskiq")
# What the worker is started with (bench/peers.py prints these).
WORKER_ARGS = ("--workers", "1", "--max-async-tasks", "64", "--log-level", "WARNING")
# How often a waiting caller asks the result backend (taskiq's default is 0.2 s).
CHECK_INTERVAL_S = 0.005

broker = ListQueueBroker(REDIS_URL, queue_name=QUEUE).with_result_backend(
    RedisAsyncResultBackend(REDIS_URL, result_ex_time=600)
)


@broker.task(task_name="bench.noop")
async def noop(text: str) -> str:
    return "ok"
